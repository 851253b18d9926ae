#!/usr/bin/env bash
# restore (two init containers of ordinal 0, only when mysqlRestoreFrom is set): start a NEW
# set's primary from a backup, rolled forward to the point asked for, before it ever serves.
#
#   restore.sh fetch    (backup image) pick the backup, stream it from the store into a staging
#                       dir next to the data dir (checked against its manifest: bytes and
#                       SHA-256), fetch and check the archived binlogs that reach the point,
#                       then --prepare.
#   restore.sh replay   (server image) start a private server on the staging dir (no network,
#                       no grants), give it the backup's GTID state, replay the binlogs up to
#                       the point, set root's password to this set's Secret, shut it down
#                       cleanly, and only then rename the staging dir onto the (empty) data dir.
#
# RESTORE_FROM is a backup id (that backup, no replay) or a UTC time T (the latest verified
# backup finished at or before T, plus every archived event before T). A data dir that already
# holds a server is never touched: if it was restored from RESTORE_FROM, both phases do nothing;
# otherwise they stop the pod. Every failure removes the staging dirs and stops the pod with a
# FATAL line, so mysqld never starts on an empty or half-restored data dir.
set -euo pipefail
# shellcheck source=common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

: "${RESTORE_FROM:=}"
: "${RESTORE_PREFIX:=}"         # where the backups are; empty = BACKUP_PREFIX
: "${RESTORE_BUCKET:=}"         # and in which bucket; empty = BACKUP_BUCKET
: "${RESTORE_STAGING_DIR:=${MYSQL_DATA_DIR%/}.restore-staging}"
: "${RESTORE_PREPARE_MEMORY:=128M}"
: "${MYSQLD:=}"                   # the server binary (replay); default per engine
: "${RESTORE_MYSQLD_ARGS:=}"      # extra server options (e.g. --user=root in rehearsals as root)
: "${MYSQL_BINLOG_TOOL:=}"
: "${RESTORE_WAIT_SECONDS:=300}"
export TZ=UTC                     # the binlog tool reads --stop-datetime in local time

MARKER=atomic-restored-from
BINLOG_DIR=${RESTORE_STAGING_DIR}.binlogs
phase=${1:-}
[[ $phase == fetch || $phase == replay ]] || die "usage: restore.sh fetch|replay"
if [[ $MYSQL_ENGINE == mariadb ]]; then
    : "${MYSQLD:=mariadbd}" "${MYSQL_BINLOG_TOOL:=mariadb-binlog}"
else
    : "${MYSQLD:=mysqld}" "${MYSQL_BINLOG_TOOL:=mysqlbinlog}"
fi

ordinal=$(my_ordinal)
if ((ordinal != 0)); then
    log "ordinal $ordinal clones from its predecessor; only ordinal 0 restores"
    exit 0
fi
[[ -n $RESTORE_FROM ]] || { log "no restore asked for"; exit 0; }

if [[ -d $MYSQL_DATA_DIR/mysql ]]; then
    if [[ -f $MYSQL_DATA_DIR/$MARKER ]] && [[ $(head -n1 "$MYSQL_DATA_DIR/$MARKER") == "$RESTORE_FROM" ]]; then
        log "data dir was restored from $RESTORE_FROM already; nothing to do"
        exit 0
    fi
    die "data dir $MYSQL_DATA_DIR already holds a server; a restore never overwrites one: restore into a new set (another mysqlName or stack), or set mysqlRestoreFrom empty"
fi
if [[ -d $MYSQL_DATA_DIR ]] && [[ -n $(ls -A "$MYSQL_DATA_DIR") ]]; then
    die "data dir $MYSQL_DATA_DIR is not empty but has no mysql/ schema; refusing to restore over it (inspect and empty it)"
fi

cleanup_and_die() {
    stop_private_server
    rm -rf "$RESTORE_STAGING_DIR" "$BINLOG_DIR"
    die "$1"
}

REPLAY_PID=""
stop_private_server() {  # the replay phase's server, if it runs: stopped before its files are removed
    [[ -n $REPLAY_PID ]] || return 0
    kill "$REPLAY_PID" 2>/dev/null || true
    local waited=0
    while kill -0 "$REPLAY_PID" 2>/dev/null && ((waited++ < 60)); do sleep 1; done
    kill -9 "$REPLAY_PID" 2>/dev/null || true
    wait "$REPLAY_PID" 2>/dev/null || true
    REPLAY_PID=""
}

# ------------------------------------------------------------------ fetch

# pick_backup: the id of the backup RESTORE_FROM names (sets MANIFEST).
pick_backup() {
    local id entry finished best="" target
    if [[ $RESTORE_FROM =~ $BACKUP_ID_PATTERN ]]; then
        MANIFEST=$(s3_get "backups/$RESTORE_FROM/manifest.json") ||
            die "no verified backup $RESTORE_FROM at $(s3_url "backups/$RESTORE_FROM/") (a backup without manifest.json never completed)"
        printf '%s\n' "$RESTORE_FROM"
        return
    fi
    target=$(epoch_of "$RESTORE_FROM")
    while IFS= read -r entry; do
        id=${entry%/}
        [[ $id =~ $BACKUP_ID_PATTERN ]] || continue
        (($(epoch_of "$id") <= target)) || continue
        [[ -z $best || $id > $best ]] || continue
        finished=$(s3_get "backups/$id/manifest.json" | json_field finished) || continue
        (($(epoch_of "$finished") <= target)) && best=$id
    done < <(s3_ls backups || die "cannot list $(s3_url backups/)")
    [[ -n $best ]] || die "no verified backup finished at or before $RESTORE_FROM under $(s3_url backups/)"
    MANIFEST=$(s3_get "backups/$best/manifest.json")
    printf '%s\n' "$best"
}

# plan_binlogs GTID INCARNATION TARGET: the archived binlogs to replay, one name per line, or die
# saying which one is missing or how far the archive reaches.
plan_binlogs() {
    local gtid=$1 inc=$2 target=$3 names=() name index start end number previous="" started=false reached=false
    mapfile -t names < <(s3_ls "binlogs/$inc" | grep -E '\.json$' | sed 's/\.json$//' | sort)
    ((${#names[@]})) || die "the binlog archive $(s3_url "binlogs/$inc/") is empty: cannot roll forward to $RESTORE_FROM"
    local chosen=()
    for name in "${names[@]}"; do
        index=$(s3_get "binlogs/$inc/$name.json") || die "index of $name unreadable"
        start=$(json_field start_gtid <<<"$index") || start=""
        end=$(json_field end_time <<<"$index") || die "index of $name has no end_time"
        number=$((10#${name##*.}))
        if [[ $started == false ]]; then
            # The last binlog that starts at or before the backup's position comes first. MySQL:
            # every binlog from the first (mysqlbinlog --exclude-gtids skips what the backup has);
            # that the first starts within the backup's set is checked by the replay phase's
            # server (GTID_SUBSET), which bash cannot compute.
            if [[ $MYSQL_ENGINE == mysql && ${#chosen[@]} == 0 ]] ||
                { [[ $MYSQL_ENGINE == mariadb ]] && mariadb_gtid_covers "$gtid" "$start"; }; then
                [[ $MYSQL_ENGINE == mysql ]] && started=true
                chosen=("$name")
                previous=$number
                (($(epoch_of "$end") >= target)) && reached=true || reached=false
                continue
            fi
            ((${#chosen[@]})) ||
                die "binlogs before $name are missing from the archive (it starts at GTID '$start', after the backup's '$gtid'): refusing to claim $RESTORE_FROM"
            started=true
        fi
        [[ $reached == true ]] && break
        ((number == previous + 1)) ||
            die "binlog number $((previous + 1)) is missing from the archive $(s3_url "binlogs/$inc/") (next is $name): refusing to claim $RESTORE_FROM"
        chosen+=("$name")
        previous=$number
        (($(epoch_of "$end") >= target)) && reached=true
    done
    [[ $reached == true ]] ||
        die "the binlog archive reaches only $end (${names[-1]}), before $RESTORE_FROM: refusing to claim that point (the binlog holding it is not archived yet)"
    printf '%s\n' "${chosen[@]}"
}

fetch() {
    # shellcheck source=s3.sh
    source "$(dirname "${BASH_SOURCE[0]}")/s3.sh"
    [[ -z $RESTORE_PREFIX ]] || BACKUP_PREFIX=$RESTORE_PREFIX
    [[ -z $RESTORE_BUCKET ]] || BACKUP_BUCKET=$RESTORE_BUCKET
    [[ $RESTORE_FROM =~ $BACKUP_ID_PATTERN || $RESTORE_FROM =~ $RESTORE_TIME_PATTERN ]] ||
        die "RESTORE_FROM='$RESTORE_FROM' is neither a backup id (20261201T031700Z) nor a UTC time (2026-12-01T10:21:41Z)"
    s3_env
    s3_check
    local id bytes sha stored gtid inc work
    MANIFEST=""
    id=$(pick_backup)
    MANIFEST=$(s3_get "backups/$id/manifest.json")
    bytes=$(json_field bytes <<<"$MANIFEST") || die "manifest of $id has no size"
    sha=$(json_field sha256 <<<"$MANIFEST") || die "manifest of $id has no SHA-256"
    gtid=$(json_field gtid <<<"$MANIFEST") || gtid=""
    inc=$(json_field binlog_incarnation <<<"$MANIFEST") || inc=""
    [[ $gtid =~ ^[0-9A-Za-z_:,-]*$ ]] || die "the manifest's GTID '$gtid' has unexpected characters"
    log "restoring backup $id ($bytes bytes, GTID '$gtid') from $(s3_url "backups/$id/")"
    stored=$(s3_size "backups/$id/backup.xbstream") || die "backup $id has a manifest but no backup.xbstream"
    ((stored == bytes)) || die "backup $id is damaged: the stored object has $stored bytes, its manifest says $bytes; refusing it"

    local binlogs=()
    if [[ $RESTORE_FROM =~ $RESTORE_TIME_PATTERN ]]; then
        [[ -n $inc ]] || die "backup $id recorded no binlog archive (none was running): it can be restored as itself (mysqlRestoreFrom=$id), not rolled forward to $RESTORE_FROM"
        mapfile -t binlogs < <(plan_binlogs "$gtid" "$inc" "$(epoch_of "$RESTORE_FROM")"; echo "END")
        [[ ${binlogs[-1]:-} == END ]] || exit 1
        unset 'binlogs[-1]'
        ((${#binlogs[@]})) || exit 1
        log "rolling forward to $RESTORE_FROM with ${#binlogs[@]} archived binlogs of $inc: ${binlogs[*]}"
    fi

    rm -rf "$RESTORE_STAGING_DIR" "$BINLOG_DIR"
    mkdir -p "$RESTORE_STAGING_DIR" "$BINLOG_DIR"
    work=$(mktemp -d "${TMPDIR:-/tmp}/restore.XXXXXX")
    mkfifo "$work/hash"
    sha256sum <"$work/hash" >"$work/sha256" &
    local hasher=$! statuses
    set +e
    s3_get "backups/$id/backup.xbstream" | tee "$work/hash" | "$STREAM_TOOL" -x -C "$RESTORE_STAGING_DIR"
    statuses=("${PIPESTATUS[@]}")
    wait "$hasher"
    set -e
    # A stream cut short by the extractor hashes short too: the checksum speaks first.
    ((statuses[0] == 0 || statuses[0] == 141)) || cleanup_and_die "reading backup $id from the store failed"
    [[ $(cut -d' ' -f1 "$work/sha256") == "$sha" ]] ||
        cleanup_and_die "backup $id is damaged: its SHA-256 is $(cut -d' ' -f1 "$work/sha256"), its manifest says $sha; refusing it"
    ((statuses[2] == 0)) || cleanup_and_die "$STREAM_TOOL could not extract backup $id (exit ${statuses[2]}): the stream is damaged"
    checkpoints_file "$RESTORE_STAGING_DIR" >/dev/null ||
        cleanup_and_die "backup $id is incomplete (no backup checkpoints file)"

    local name index
    for name in "${binlogs[@]}"; do
        index=$(s3_get "binlogs/$inc/$name.json") || cleanup_and_die "index of binlog $name unreadable"
        s3_get "binlogs/$inc/$name" >"$BINLOG_DIR/$name" || cleanup_and_die "binlog $name could not be read from the archive"
        [[ $(sha256sum "$BINLOG_DIR/$name" | cut -d' ' -f1) == "$(json_field sha256 <<<"$index")" ]] ||
            cleanup_and_die "archived binlog $name is damaged (SHA-256 differs from its index): refusing to claim $RESTORE_FROM"
        printf '%s\n' "$name" >>"$BINLOG_DIR/replay.list"
    done
    rm -rf "$work"

    log "preparing backup $id with $BACKUP_TOOL"
    "$BACKUP_TOOL" --prepare --use-memory="$RESTORE_PREPARE_MEMORY" --target-dir="$RESTORE_STAGING_DIR" ||
        cleanup_and_die "$BACKUP_TOOL --prepare failed on backup $id"
    [[ -d $RESTORE_STAGING_DIR/mysql ]] || cleanup_and_die "prepared backup $id has no mysql/ schema"
    # The source's replication and archive state must not come along.
    rm -f "$RESTORE_STAGING_DIR/master.info" "$RESTORE_STAGING_DIR/relay-log.info" \
        "$RESTORE_STAGING_DIR/multi-master.info" "$RESTORE_STAGING_DIR/atomic-binlog-archive.id"
    local first_start=""
    if ((${#binlogs[@]})); then
        first_start=$(s3_get "binlogs/$inc/${binlogs[0]}.json" | json_field start_gtid) || first_start=""
    fi
    {
        printf 'id=%s\n' "$id"
        printf 'gtid=%s\n' "$gtid"
        printf 'first_start=%s\n' "$first_start"
    } >"$BINLOG_DIR/restore.env"
    log "backup $id fetched and prepared; the replay phase finishes the restore"
}

# ------------------------------------------------------------------ replay

replay() {
    [[ -d $RESTORE_STAGING_DIR/mysql && -f $BINLOG_DIR/restore.env ]] ||
        cleanup_and_die "no fetched backup in $RESTORE_STAGING_DIR (the fetch phase did not finish)"
    local id gtid work pid status sock_dir sock
    id=$(sed -n 's/^id=//p' "$BINLOG_DIR/restore.env")
    gtid=$(sed -n 's/^gtid=//p' "$BINLOG_DIR/restore.env")
    work=$(mktemp -d "${TMPDIR:-/tmp}/replay.XXXXXX")
    # A unix socket path is limited to 107 bytes: a short directory of its own.
    sock_dir=$(mktemp -d /tmp/restore-sock.XXXXXX)
    sock=$sock_dir/mysqld.sock
    {
        printf '[mysqld]\n'
        # The set's config without its TLS: this server has no network to protect (and the replay
        # container mounts no TLS Secret), so its ssl_* and require_secure_transport lines stay out.
        cat "$MYSQL_CONF_DIR"/*.cnf 2>/dev/null |
            grep -vE '^\[|^[[:space:]]*(ssl_[a-z_]+|tls_version|require_secure_transport)[[:space:]]*=' || true
        printf '[mysqld]\ndatadir=%s\nsocket=%s\npid_file=%s/mysqld.pid\nlog_error=%s/error.log\n' \
            "$RESTORE_STAGING_DIR" "$sock" "$work" "$work"
        printf 'skip_networking=ON\nskip_grant_tables=ON\ntmpdir=%s\n' "$work"
    } >"$work/my.cnf"
    # shellcheck disable=SC2086  # RESTORE_MYSQLD_ARGS is a list of options
    "$MYSQLD" --defaults-file="$work/my.cnf" $RESTORE_MYSQLD_ARGS >"$work/mysqld.out" 2>&1 &
    pid=$!
    REPLAY_PID=$pid
    local waited=0
    until "$MYSQL_CLIENT" --no-defaults --socket="$sock" -uroot -e 'SELECT 1' >/dev/null 2>&1; do
        kill -0 "$pid" 2>/dev/null ||
            { tail -n 20 "$work/error.log" >&2 || true; REPLAY_PID=""; cleanup_and_die "the server did not start on the restored data"; }
        ((waited++ < RESTORE_WAIT_SECONDS)) || { cleanup_and_die "the server on the restored data did not answer in ${RESTORE_WAIT_SECONDS}s"; }
        sleep 1
    done
    local client=("$MYSQL_CLIENT" --no-defaults --socket="$sock" -uroot --batch --skip-column-names)
    if [[ $MYSQL_ENGINE == mariadb && -n $gtid ]]; then
        # The restored primary continues the backup's GTID history: replicas cloned from it and
        # the replayed events (strict mode) both need it.
        printf "RESET MASTER;\nSET GLOBAL gtid_binlog_state = '%s';\n" "$gtid" | "${client[@]}" ||
            { cleanup_and_die "setting the GTID state '$gtid' failed"; }
    fi
    local first_start
    first_start=$(sed -n 's/^first_start=//p' "$BINLOG_DIR/restore.env")
    if [[ $MYSQL_ENGINE == mysql && -n $first_start ]]; then
        [[ $first_start =~ ^[0-9A-Za-z_:,-]+$ ]] || cleanup_and_die "the archive's GTID set '$first_start' has unexpected characters"
        [[ $(printf "SELECT GTID_SUBSET('%s', @@GLOBAL.gtid_executed);\n" "$first_start" | "${client[@]}") == 1 ]] ||
            cleanup_and_die "binlogs before the archive's first one are missing (it starts after GTID set '$first_start', which the backup does not hold): refusing to claim $RESTORE_FROM"
    fi
    if [[ -s $BINLOG_DIR/replay.list ]]; then
        local files=() stop
        mapfile -t files < <(sed "s|^|$BINLOG_DIR/|" "$BINLOG_DIR/replay.list")
        stop=$(date -u -d "$RESTORE_FROM" '+%F %T')
        log "replaying ${#files[@]} binlogs from GTID '$gtid' up to $stop UTC"
        set +e
        if [[ $MYSQL_ENGINE == mariadb ]]; then
            "$MYSQL_BINLOG_TOOL" ${gtid:+--start-position="$gtid"} --stop-datetime="$stop" "${files[@]}" | "${client[@]}"
        else
            "$MYSQL_BINLOG_TOOL" ${gtid:+--exclude-gtids="$gtid"} --stop-datetime="$stop" "${files[@]}" | "${client[@]}"
        fi
        status=("${PIPESTATUS[@]}")
        set -e
        ((status[0] == 0 && status[1] == 0)) ||
            { cleanup_and_die "replaying the binlogs failed (binlog tool exit ${status[0]}, client exit ${status[1]})"; }
    fi
    # Every root account of the restored data gets this set's root password (the source set's
    # may differ), outside the binlog. The statements are built by the server (QUOTE()) and pass
    # through a pipe only.
    local secret password statements
    # secret_file dies in its own subshell: test it here, so that the private server is stopped too.
    secret=$(secret_file root-password) || cleanup_and_die "the new set's root password is missing"
    password=$(<"$secret")
    # (No FLUSH PRIVILEGES before the last session: from then on the server asks new sessions for passwords.)
    statements=$({
        printf "SET @pw = CONVERT(X'%s' USING utf8mb4);\n" "$(hex "$password")"
        printf "SELECT CONCAT('ALTER USER IF EXISTS ''root''@', QUOTE(Host), ' IDENTIFIED BY ', QUOTE(@pw), ';') FROM mysql.user WHERE User = 'root';\n"
    } | "${client[@]}" --raw) || { cleanup_and_die "reading the restored data's root accounts failed"; }
    [[ -n $statements ]] || { cleanup_and_die "the restored data has no root account"; }
    printf 'SET SESSION sql_log_bin = 0;\nFLUSH PRIVILEGES;\n%s\nSHUTDOWN;\n' "$statements" | "${client[@]}" 2>"$work/client.err" ||
        cleanup_and_die "setting root's password on the restored data failed: $(tail -n 1 "$work/client.err")"
    waited=0
    while kill -0 "$pid" 2>/dev/null; do
        ((waited++ < RESTORE_WAIT_SECONDS)) || cleanup_and_die "the server on the restored data did not shut down"
        sleep 1
    done
    wait "$pid" || true
    REPLAY_PID=""
    rm -rf "$work" "$sock_dir"
    # The clone position inside the backup belongs to the source; ordinal 0 never uses it.
    for name in xtrabackup_binlog_info mariadb_backup_binlog_info; do
        [[ -f $RESTORE_STAGING_DIR/$name ]] && mv "$RESTORE_STAGING_DIR/$name" "$RESTORE_STAGING_DIR/$name.restored"
    done
    printf '%s\nbackup %s, restored %s\n' "$RESTORE_FROM" "$id" "$(date -u +%FT%TZ)" >"$RESTORE_STAGING_DIR/$MARKER"
    [[ -d $MYSQL_DATA_DIR ]] && rmdir "$MYSQL_DATA_DIR"
    mv "$RESTORE_STAGING_DIR" "$MYSQL_DATA_DIR"
    rm -rf "$BINLOG_DIR"
    log "restore of backup $id to $RESTORE_FROM complete"
}

"$phase"
