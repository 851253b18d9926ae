#!/usr/bin/env bash
# backup ID (run by backup-agent.sh on the member the backup CronJob chose): a physical backup
# of this member, streamed to s3://<bucket>/<prefix>/backups/ID/backup.xbstream as a multipart
# upload (nothing staged on disk), then verified and described by a manifest beside it.
#
# A backup counts only once its manifest exists, and the manifest is written last: after the
# backup tool said "completed OK!", the upload finished, and the object read back from the
# store has exactly the bytes and SHA-256 that went out. Anything less deletes the partial
# object and says why. Restores and `make verify` read manifests only.
set -euo pipefail
# shellcheck source=common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
# shellcheck source=s3.sh
source "$(dirname "${BASH_SOURCE[0]}")/s3.sh"

: "${BACKUP_RETENTION_DAYS:=7}"
: "${MYSQL_VERSION:=}"
: "${BACKUP_PARALLEL:=1}"         # the backup tool's copy threads (mysqlCloneThreads, as the clone's sender)
[[ $BACKUP_PARALLEL =~ ^[1-9][0-9]{0,2}$ ]] || die "BACKUP_PARALLEL=$BACKUP_PARALLEL: must be a whole number from 1 to 999"

id=${1:-}
[[ $id =~ $BACKUP_ID_PATTERN ]] || die "backup id '$id' is not a UTC time like 20261201T031700Z"
dir="backups/$id"
ordinal=$(my_ordinal)
if ((ordinal == 0)); then role=primary; else role=replica; fi

s3_env
s3_check
if s3_size "$dir/manifest.json" >/dev/null; then die "backup $id exists already at $(s3_url "$dir/")"; fi

work=$(mktemp -d "${TMPDIR:-/tmp}/backup.XXXXXX")
# The backup tools read their option file twice, so it is a private file in the memory-backed
# CLIENT_CNF_DIR (as for the clone stream), removed on exit with the work dir.
cnf=$(mktemp "${CLIENT_CNF_DIR:-$work}/backup-client.XXXXXX")
trap 'rm -rf "$work" "$cnf"' EXIT
chmod 600 "$cnf"
client_cnf "$BACKUP_USER" backup-password >"$cnf"

result() {  # result STATUS MESSAGE: what `make verify` and the agent's metrics read
    s3_put_text "backups/last-result.json" \
        "{\"id\": \"$id\", \"status\": \"$1\", \"source\": \"$POD_NAME\", \"time\": \"$(date -u +%FT%TZ)\", \"message\": \"${2//\"/\'}\"}" ||
        log "could not record the result in $(s3_url backups/last-result.json)"
}

fail() {
    s3_delete_dir "$dir" >/dev/null 2>&1 || true
    result failed "$1"
    die "$1"
}

# The archive the primary writes binlogs to: a restore to a point after this backup reads it.
incarnation=$(s3_get "binlogs/current.json" 2>/dev/null | json_field incarnation) || incarnation=""
started=$(date -u +%FT%TZ)
log "backing up $role $POD_NAME to $(s3_url "$dir/backup.xbstream") ($BACKUP_PARALLEL copy threads)"

mkfifo "$work/hash"
sha256sum <"$work/hash" >"$work/sha256" &
hasher=$!
set +e
"$BACKUP_TOOL" --defaults-extra-file="$cnf" --backup --stream=xbstream --parallel="$BACKUP_PARALLEL" --socket="$MYSQL_SOCKET" \
    --datadir="$MYSQL_DATA_DIR" --target-dir="$work" --extra-lsndir="$work/lsn" 2>"$work/tool.log" |
    tee "$work/hash" | s3_put_stream "$dir/backup.xbstream" 2>"$work/upload.log"
statuses=("${PIPESTATUS[@]}")
wait "$hasher"
hashed=$?
set -e
# The upload first: when it fails the backup tool dies on a broken pipe, which says nothing of why.
if ((statuses[2] != 0)); then
    fail "upload to $(s3_url "$dir/backup.xbstream") failed: $(s3_explain "$(cat "$work/upload.log")")"
fi
if ((statuses[0] != 0)) || ! grep -q 'completed OK!' "$work/tool.log"; then
    tail -n 5 "$work/tool.log" >&2
    fail "$BACKUP_TOOL failed (exit ${statuses[0]}): $(tail -n 1 "$work/tool.log" | cut -c1-200)"
fi
((statuses[1] == 0 && hashed == 0)) || fail "hashing the stream failed (tee exit ${statuses[1]}, sha256sum exit $hashed)"
finished=$(date -u +%FT%TZ)
sha=$(cut -d' ' -f1 "$work/sha256")
size=$(s3_size "$dir/backup.xbstream") || fail "the uploaded backup is not in the store"

# Read it back: the object must be the stream that went out, byte for byte.
log "verifying $size bytes read back from the store"
set +e
back=$(s3_get "$dir/backup.xbstream" | sha256sum | cut -d' ' -f1)
set -e
[[ $back == "$sha" ]] || fail "the stored backup reads back with SHA-256 $back, not the $sha that was sent"

# Where the backup's data stops in the binlog history (GTID position), from the tool's own info.
info=""
for name in xtrabackup_info mariadb_backup_info; do [[ -f $work/lsn/$name ]] && info=$work/lsn/$name; done
gtid="" binlog_file="" binlog_pos=""
if [[ -n $info ]]; then
    line=$(grep -E '^binlog_pos' "$info" || true)
    [[ $line =~ filename\ \'([^\']*)\' ]] && binlog_file=${BASH_REMATCH[1]}
    [[ $line =~ position\ \'([0-9]*)\' ]] && binlog_pos=${BASH_REMATCH[1]}
    [[ $line =~ GTID\ of\ the\ last\ change\ \'([^\']*)\' ]] && gtid=${BASH_REMATCH[1]//[[:space:]]/}
fi
[[ $gtid =~ ^[0-9A-Za-z_:,-]*$ ]] || fail "the backup's GTID position '$gtid' has unexpected characters"

manifest=$(printf '{"id": "%s", "engine": "%s", "version": "%s", "source": "%s", "role": "%s", "started": "%s", "finished": "%s", "bytes": %s, "sha256": "%s", "gtid": "%s", "binlog_file": "%s", "binlog_pos": "%s", "binlog_incarnation": "%s", "object": "backup.xbstream", "verified": "read back, SHA-256 equal"}' \
    "$id" "$MYSQL_ENGINE" "$MYSQL_VERSION" "$POD_NAME" "$role" "$started" "$finished" "$size" "$sha" "$gtid" \
    "$binlog_file" "$binlog_pos" "$incarnation")
s3_put_text "$dir/manifest.json" "$manifest" || fail "writing the manifest failed"
s3_put_text "backups/latest.json" "$manifest" || log "could not update $(s3_url backups/latest.json)"
result ok "$size bytes, SHA-256 $sha"
log "backup $id complete: $size bytes, GTID '$gtid'"

# Retention: backups older than BACKUP_RETENTION_DAYS go, never the newest good one; and
# archived binlogs older than the oldest kept backup go with them (nothing a kept backup
# could be rolled forward with).
now=$(date -u +%s)
oldest_kept=$now
while IFS= read -r entry; do
    old=${entry%/}
    [[ $old =~ $BACKUP_ID_PATTERN && $old != "$id" ]] || continue
    age=$((now - $(epoch_of "$old")))
    good=false
    s3_size "backups/$old/manifest.json" >/dev/null && good=true
    # A backup without a manifest never completed: gone after a day (one may still be running).
    if ((age > BACKUP_RETENTION_DAYS * 86400)) || { [[ $good == false ]] && ((age > 86400)); }; then
        log "retention: deleting backup $old"
        s3_delete_dir "backups/$old" || log "could not delete backup $old"
    elif [[ $good == true ]] && ((now - age < oldest_kept)); then
        oldest_kept=$((now - age))
    fi
done < <(s3_ls backups || true)
keep=$((now - oldest_kept + 3600))
_rclone delete --min-age "${keep}s" --exclude /current.json "$(_remote binlogs)/" 2>/dev/null || true
printf 'RESULT ok %s %s %s\n' "$id" "$size" "$sha"
