#!/usr/bin/env bash
# backup-agent (main container, backup image, every member when backups are enabled).
#
#   backup-agent.sh           serve requests on BACKUP_AGENT_PORT (one at a time) and metrics on
#                             BACKUP_METRICS_PORT; on ordinal 0 also run the binlog archiver.
#                             Any of them ending ends the container, so the kubelet restarts it.
#   backup-agent.sh request   one request, run by socat per connection: reads one line,
#                               status       -> "ready" or "not-ready: <why>" (this member's readiness)
#                               backup <id>  -> the backup's log, then "RESULT ok|failed ..."
#   backup-agent.sh metrics   one HTTP response in the Prometheus text format (run by socat)
#
# The backup CronJob only asks and listens: the data goes from this member straight to the
# store, so no backup ever crosses the network to another pod (the NetworkPolicy admits only
# the set's backup job pods to BACKUP_AGENT_PORT).
set -euo pipefail
# shellcheck source=common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

: "${BACKUP_AGENT_PORT:=3308}"
: "${BACKUP_METRICS_PORT:=9105}"
: "${AGENT_BIND_ADDRESS:=}"
: "${AGENT_STATE_DIR:=${TMPDIR:-/tmp}/backup-agent}"
: "${BACKUP_MAX_SECONDS:=21600}"
export AGENT_STATE_DIR
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
SELF="$HERE/$(basename "${BASH_SOURCE[0]}")"

listen() {  # listen PORT: socat's listening address for PORT
    local address="TCP-LISTEN:$1,reuseaddr,fork,max-children=1"
    [[ -n $AGENT_BIND_ADDRESS ]] && address+=",bind=$AGENT_BIND_ADDRESS"
    printf '%s\n' "$address"
}

request() {
    local line verb id why status
    IFS= read -r -t 10 line || line=""
    line=${line%$'\r'}
    read -r verb id <<<"$line"
    case "$verb" in
        status)
            if why=$(bash "$HERE/readiness.sh" 2>&1); then printf 'ready\n'; else printf 'not-ready: %s\n' "${why//$'\n'/ }"; fi ;;
        backup)
            log "backup $id requested"
            mkdir -p "$AGENT_STATE_DIR"
            set +e
            # The requester sees the whole log; so does this container's.
            timeout "$BACKUP_MAX_SECONDS" bash "$HERE/backup.sh" "$id" 2>&1 | tee -a /dev/stderr
            status=${PIPESTATUS[0]}
            set -e
            if ((status == 0)); then
                date -u +%s >"$AGENT_STATE_DIR/backup-last-success"
            else
                date -u +%s >"$AGENT_STATE_DIR/backup-last-failure"
                printf 'RESULT failed exit %s\n' "$status"
            fi ;;
        *)
            printf 'RESULT failed unknown request %q\n' "$verb" ;;
    esac
}

metric() {  # metric NAME HELP VALUE
    printf '# HELP %s %s\n# TYPE %s gauge\n%s %s\n' "$1" "$2" "$1" "$1" "$3"
}

read_state() { local value; value=$(cat "$AGENT_STATE_DIR/$1" 2>/dev/null) || value=$2; printf '%s' "${value:-$2}"; }

metrics() {
    local body now
    IFS= read -r -t 5 _ || true  # the request line; headers are not needed
    now=$(date -u +%s)
    body=$(
        metric atomic_mysql_backup_agent_up "1 while the backup agent answers." 1
        metric atomic_mysql_backup_last_success_timestamp_seconds \
            "When the last good backup of the set finished (0 = none known)." "$(read_state backup-latest-finished 0)"
        metric atomic_mysql_backup_last_failure_timestamp_seconds \
            "When a backup on this member last failed (0 = never)." "$(read_state backup-last-failure 0)"
        if [[ $(my_ordinal) == 0 ]]; then
            metric atomic_mysql_binlog_archive_last_event_timestamp_seconds \
                "Time of the last event in the newest archived binlog." "$(read_state archive-last-time 0)"
            metric atomic_mysql_binlog_archive_checked_timestamp_seconds \
                "When the archiver last compared the server's binlogs with the archive." "$(read_state archive-checked 0)"
            metric atomic_mysql_binlog_archive_pending_files "Closed binlogs not archived yet." "$(read_state archive-pending 0)"
            metric atomic_mysql_binlog_archive_oldest_pending_timestamp_seconds \
                "When the oldest closed binlog not archived yet was closed (0 = none)." "$(read_state archive-oldest-pending 0)"
            metric atomic_mysql_binlog_archive_gap "1 when a binlog was purged before it was archived." "$(read_state archive-gaps 0)"
        fi
        metric atomic_mysql_backup_agent_time_seconds "The agent's clock, for lag computations." "$now"
    )
    printf 'HTTP/1.0 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: %d\r\n\r\n%s\n' \
        "$((${#body} + 1))" "$body"
}

# latest_loop: the newest good backup's finish time, for the metrics of this member.
latest_loop() {
    # shellcheck source=s3.sh
    source "$HERE/s3.sh"
    s3_env
    local finished
    while true; do
        if finished=$(s3_get backups/latest.json 2>/dev/null | json_field finished); then
            mkdir -p "$AGENT_STATE_DIR"
            epoch_of "$finished" >"$AGENT_STATE_DIR/backup-latest-finished.new" &&
                mv "$AGENT_STATE_DIR/backup-latest-finished.new" "$AGENT_STATE_DIR/backup-latest-finished"
        fi
        sleep 60
    done
}

main() {
    case "${1:-}" in
        request) request; return ;;
        metrics) metrics; return ;;
    esac
    local ordinal
    ordinal=$(my_ordinal)
    mkdir -p "$AGENT_STATE_DIR"
    log "serving backup requests on port $BACKUP_AGENT_PORT and metrics on $BACKUP_METRICS_PORT"
    # -t: the requester half-closes after its one line; the backup's answer may take hours.
    socat -t "$BACKUP_MAX_SECONDS" "$(listen "$BACKUP_AGENT_PORT")" "EXEC:bash $SELF request" &
    socat "$(listen "$BACKUP_METRICS_PORT" | sed 's/,max-children=1//')" "EXEC:bash $SELF metrics" &
    latest_loop &
    if ((ordinal == 0)); then
        bash "$HERE/archive-binlogs.sh" &
    fi
    wait -n
    log "FATAL: a part of the backup agent stopped; exiting so that the kubelet restarts the container"
    exit 1
}

main "$@"
