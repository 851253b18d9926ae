#!/usr/bin/env bash
# archive-binlogs (run by backup-agent.sh on ordinal 0, the primary): every closed binlog of
# the primary goes to s3://<bucket>/<prefix>/binlogs/<incarnation>/, in order, with an index
# entry beside it (its size, SHA-256, the GTID state it starts from and the time of its last
# event), and binlogs/current.json says how far the archive reaches.
#
# Bounded delay: the open binlog is closed (FLUSH BINARY LOGS) once it has held events for
# BINLOG_ARCHIVE_SECONDS, so a change reaches the store within that plus one poll and the upload.
# Nothing is missed across restarts: what is archived is read back from the store at start, and
# every closed binlog the server still lists that is not there is uploaded, oldest first. A hole
# (a binlog purged before it was archived) is logged and counted in the agent's metrics; a
# restore refuses to roll forward across it.
#
# The incarnation names the data dir's own binlog history (a new or restored data dir starts
# numbering at 000001 again); it is kept in the data dir, so it survives restarts.
set -euo pipefail
# shellcheck source=common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
# shellcheck source=s3.sh
source "$(dirname "${BASH_SOURCE[0]}")/s3.sh"

: "${BINLOG_ARCHIVE_SECONDS:=300}"
: "${ARCHIVE_POLL_SECONDS:=10}"
: "${AGENT_STATE_DIR:=${TMPDIR:-/tmp}/backup-agent}"
: "${MYSQL_BINLOG_TOOL:=}"
: "${ARCHIVE_ONCE:=false}"   # one pass, then exit (tests and drills)

if [[ -z $MYSQL_BINLOG_TOOL ]]; then
    if [[ $MYSQL_ENGINE == mariadb ]]; then MYSQL_BINLOG_TOOL=mariadb-binlog; else MYSQL_BINLOG_TOOL=mysqlbinlog; fi
fi
export TZ=UTC  # the binlog tool prints event times in local time
ID_FILE="$MYSQL_DATA_DIR/atomic-binlog-archive.id"

incarnation() {
    if [[ ! -s $ID_FILE ]]; then
        printf '%s-%s\n' "$(date -u +%Y%m%dT%H%M%SZ)" "$(od -An -N4 -tx1 /dev/urandom | tr -d ' \n')" >"$ID_FILE.new"
        mv "$ID_FILE.new" "$ID_FILE"
    fi
    local value
    value=$(<"$ID_FILE")
    [[ $value =~ ^[0-9]{8}T[0-9]{6}Z-[0-9a-f]{8}$ ]] || die "$ID_FILE holds '$value', not an archive incarnation"
    printf '%s\n' "$value"
}

# binlog_meta FILE: "START_GTID_STATE<TAB>LAST_EVENT_TIME" of a closed binlog, from the binlog
# tool's own decoding: the Gtid_list (MariaDB) or Previous-GTIDs (MySQL) event at its start,
# and the timestamp of its last event (the rotation to the next file).
binlog_meta() {
    local decoded start last
    decoded=$("$MYSQL_BINLOG_TOOL" --base64-output=decode-rows "$1" 2>/dev/null | grep -E '^#[0-9]{6} |^# [0-9a-f-]+:' ) ||
        return 1
    if [[ $MYSQL_ENGINE == mariadb ]]; then
        start=$(grep -m1 -oE 'Gtid list \[[^]]*\]' <<<"$decoded" | sed -E 's/^Gtid list \[(.*)\]$/\1/') || start=""
    else
        # The set follows on "# " lines, wrapped after each comma (one UUID per line).
        start=$(awk '/Previous-GTIDs/ {on = 1; next} on && /^# [0-9a-fA-F-]+:/ {sub(/^# /, ""); printf "%s", $0; next}
                     on {exit}' <<<"$decoded") || start=""
    fi
    last=$(grep -E '^#[0-9]{6} +[0-9]{1,2}:[0-9]{2}:[0-9]{2} server id' <<<"$decoded" | tail -n1 |
        sed -E 's/^#([0-9]{2})([0-9]{2})([0-9]{2}) +([0-9]{1,2}):([0-9]{2}):([0-9]{2}).*/20\1-\2-\3T\4:\5:\6Z/')
    [[ $last =~ $RESTORE_TIME_PATTERN ]] || return 1
    printf '%s\t%s\n' "${start//[[:space:]]/}" "$last"
}

number_of() { local n=${1##*.}; printf '%d\n' "$((10#$n))"; }

state() {  # state NAME VALUE: for the agent's metrics endpoint
    mkdir -p "$AGENT_STATE_DIR"
    printf '%s\n' "$2" >"$AGENT_STATE_DIR/$1.new" && mv "$AGENT_STATE_DIR/$1.new" "$AGENT_STATE_DIR/$1"
}

archive_one() {  # archive_one NAME
    local name=$1 path="$MYSQL_DATA_DIR/$1" meta sha size stored index
    meta=$(binlog_meta "$path") || { log "cannot decode binlog $name; retrying on the next pass"; return 1; }
    sha=$(sha256sum "$path" | cut -d' ' -f1)
    size=$(stat -c %s "$path")
    s3_put_file "$path" "binlogs/$inc/$name" || { log "uploading $name failed; retrying on the next pass"; return 1; }
    stored=$(s3_size "binlogs/$inc/$name") || stored=-1
    [[ $stored == "$size" ]] || { log "uploaded $name has $stored bytes, not $size; retrying"; return 1; }
    index=$(printf '{"name": "%s", "bytes": %s, "sha256": "%s", "start_gtid": "%s", "end_time": "%s", "incarnation": "%s"}' \
        "$name" "$size" "$sha" "${meta%%$'\t'*}" "${meta##*$'\t'}" "$inc")
    s3_put_text "binlogs/$inc/$name.json" "$index" || { log "writing the index of $name failed; retrying"; return 1; }
    s3_put_text "binlogs/current.json" "{\"incarnation\": \"$inc\", \"last\": \"$name\", \"end_time\": \"${meta##*$'\t'}\", \"updated\": \"$(date -u +%FT%TZ)\"}" ||
        log "could not update $(s3_url binlogs/current.json)"
    state archive-last-name "$name"
    state archive-last-time "$(epoch_of "${meta##*$'\t'}")"
    log "archived $name ($size bytes, events up to ${meta##*$'\t'})"
}

main() {
    s3_env
    wait_for_server "$BACKUP_USER" backup-password
    s3_check
    inc=$(incarnation)
    state archive-incarnation "$inc"
    declare -A archived=()
    while IFS= read -r entry; do
        [[ $entry == *.json || $entry == */ ]] || archived[$entry]=1
    done < <(s3_ls "binlogs/$inc" || die "cannot list the archive $(s3_url "binlogs/$inc/")")
    # Backups record the incarnation they can be rolled forward with, even before its first binlog is archived.
    if ((${#archived[@]} == 0)); then
        s3_put_text "binlogs/current.json" "{\"incarnation\": \"$inc\", \"last\": \"\", \"end_time\": \"\", \"updated\": \"$(date -u +%FT%TZ)\"}" ||
            die "cannot write $(s3_url binlogs/current.json)"
    fi
    log "archiving closed binlogs to $(s3_url "binlogs/$inc/") (${#archived[@]} there already); a change is archived within ${BINLOG_ARCHIVE_SECONDS}s + one ${ARCHIVE_POLL_SECONDS}s poll"
    last_number=""
    for name in "${!archived[@]}"; do
        n=$(number_of "$name")
        [[ -z $last_number ]] || ((n > last_number)) && last_number=$n
    done
    open_name="" open_size="" dirty_since=""
    state archive-gaps 0

    while true; do
        listing=$(backup_sql -e 'SHOW BINARY LOGS') || { log "cannot list binlogs; retrying"; sleep "$ARCHIVE_POLL_SECONDS"; continue; }
        mapfile -t names < <(cut -f1 <<<"$listing" | sed '/^$/d')
        pending=0
        oldest_pending=""
        for ((i = 0; i + 1 < ${#names[@]}; i++)); do
            name=${names[i]}
            [[ -n ${archived[$name]:-} ]] && continue
            n=$(number_of "$name")
            if [[ -n $last_number ]] && ((n > last_number + 1)); then
                log "GAP: binlogs after number $last_number up to $name are not archived and no longer on the server; a restore cannot roll forward across them"
                state archive-gaps 1
            fi
            if archive_one "$name"; then
                archived[$name]=1
                last_number=$n
            else
                pending=$((pending + 1))
                [[ -n $oldest_pending ]] || oldest_pending=$(stat -c %Y "$MYSQL_DATA_DIR/$name" 2>/dev/null || date +%s)
                break  # in order: never one after a binlog that is not there yet
            fi
        done
        state archive-pending "$pending"
        state archive-oldest-pending "${oldest_pending:-0}"
        state archive-checked "$(date -u +%s)"
        # The open binlog: close it once it has held events for BINLOG_ARCHIVE_SECONDS.
        current=${names[${#names[@]}-1]:-}
        size=$(grep -E "^${current}[[:space:]]" <<<"$listing" | cut -f2)
        if [[ $current != "$open_name" ]]; then
            open_name=$current open_size=$size dirty_since=""
        elif [[ $size != "$open_size" && -z $dirty_since ]]; then
            dirty_since=$(date -u +%s)
        fi
        if [[ -n $dirty_since ]] && (($(date -u +%s) - dirty_since >= BINLOG_ARCHIVE_SECONDS - ARCHIVE_POLL_SECONDS)); then
            log "closing $current (events waiting since $(date -u -d "@$dirty_since" +%FT%TZ))"
            backup_sql -e 'FLUSH BINARY LOGS' || log "FLUSH BINARY LOGS failed; retrying on the next pass"
            continue
        fi
        [[ $ARCHIVE_ONCE == true ]] && exit 0
        sleep "$ARCHIVE_POLL_SECONDS"
    done
}

# Sourced (tests), it only defines the functions above.
if [[ ${BASH_SOURCE[0]} == "$0" ]]; then
    main "$@"
fi
