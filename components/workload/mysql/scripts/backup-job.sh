#!/usr/bin/env bash
# backup-job (the backup CronJob's container, backup image): choose the member to back up and
# ask its backup agent for one backup; the job's result is the backup's.
#
# A ready replica is chosen (the highest ordinal: the lower ones serve the clones of new
# members); the primary only when no replica is ready, and then with a warning. "Ready" is the
# member's own readiness check (replication threads running), asked from its agent.
set -euo pipefail
# shellcheck source=common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

: "${MYSQL_REPLICAS:?MYSQL_REPLICAS is not set}"
: "${PEER_AGENT_PORT:=3308}"
: "${PEER_AGENT_PORTS:=}"
: "${BACKUP_MAX_SECONDS:=21600}"

agent_port() {
    local port
    # shellcheck disable=SC2086  # word splitting of the list is intended
    port=$(_nth "$1" $PEER_AGENT_PORTS)
    printf '%s\n' "${port:-$PEER_AGENT_PORT}"
}

ask() {  # ask ORDINAL LINE [SECONDS]: send one request line to a member's agent, print its answer
    printf '%s\n' "$2" | socat -t "${3:-15}" - "TCP:$(peer_host "$1"):$(agent_port "$1"),connect-timeout=10"
}

is_ready() {
    local answer
    answer=$(ask "$1" status 2>&1) || answer="no answer from its backup agent"
    if [[ $answer == ready ]]; then return 0; fi
    log "${MYSQL_SET_NAME}-$1 is not a candidate: ${answer:-no answer}"
    return 1
}

id=$(date -u +%Y%m%dT%H%M%SZ)
chosen=""
for ((ordinal = MYSQL_REPLICAS - 1; ordinal >= 1; ordinal--)); do
    if is_ready "$ordinal"; then chosen=$ordinal; break; fi
done
if [[ -z $chosen ]]; then
    is_ready 0 || die "no member of ${MYSQL_SET_NAME} is ready; no backup taken"
    chosen=0
    log "warning: no replica is ready; backing up the primary ${MYSQL_SET_NAME}-0"
fi
log "backup $id of ${MYSQL_SET_NAME}-$chosen"
out=$(mktemp "${TMPDIR:-/tmp}/backup-job.XXXXXX")
trap 'rm -f "$out"' EXIT
set +e
ask "$chosen" "backup $id" "$BACKUP_MAX_SECONDS" | tee "$out" >&2
set -e
result=$(grep -E '^RESULT ' "$out" | tail -n 1) || result=""
[[ $result == "RESULT ok $id "* ]] ||
    die "backup $id of ${MYSQL_SET_NAME}-$chosen failed: $(grep -E 'FATAL|RESULT' "$out" | tail -n 2 | tr '\n' ' ')"
log "backup $id of ${MYSQL_SET_NAME}-$chosen is stored and verified"
