#!/usr/bin/env bash
# preStop (mysqld container): make the shutdown that follows short and bounded.
#
# The kubelet runs this, then sends mysqld SIGTERM; both must end within the pod's
# terminationGracePeriodSeconds (budget.termination_grace_seconds). Measured on MariaDB 10.11: with
# a replica that stopped reading (its TCP buffers full), mysqld's shutdown waits on that replica's
# binlog dump thread, blocked in a network write, until net_write_timeout (60 s) expires; KILL
# CONNECTION on the dump thread releases it at once (tests/.../test_lifecycle_rehearsal.py).
#   1. Stop accepting writes: read_only (MySQL: super_read_only), bounded by lock_wait_timeout,
#      so that nothing commits on the primary that its replicas might not receive.
#   2. Close every binlog dump connection: replicas reconnect after MASTER_CONNECT_RETRY (10 s)
#      and find the server gone or read-only; they lose nothing (GTID auto-positioning).
# Each step is bounded (connect and lock timeouts, the whole under PRESTOP_TIMEOUT_SECONDS); a step
# that fails is logged and the next runs: the shutdown must go on whatever this script manages.
set -uo pipefail
: "${PRESTOP_TIMEOUT_SECONDS:=20}"  # the whole hook, enforced (budget.PRESTOP_BUDGET_SECONDS)
: "${PRESTOP_LOCK_SECONDS:=5}"      # at most this long waiting for commits in flight before read_only
# A hung server could hold each client call for its connect timeout and more: the hook as a whole
# runs under timeout(1), so that mysqld's shutdown always keeps its share of the grace period.
if [[ -z ${PRESTOP_BOUNDED:-} ]]; then
    PRESTOP_BOUNDED=1 exec timeout "$PRESTOP_TIMEOUT_SECONDS" "$BASH" "${BASH_SOURCE[0]}" "$@"
fi
# shellcheck source=common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

if [[ $MYSQL_ENGINE == mysql ]]; then read_only=super_read_only; else read_only=read_only; fi

if printf 'SET SESSION lock_wait_timeout = %d;\nSET GLOBAL %s = ON;\n' "$PRESTOP_LOCK_SECONDS" "$read_only" |
    root_sql --connect-timeout=3; then
    log "$read_only is ON: no more writes before the shutdown"
else
    log "could not set $read_only (within ${PRESTOP_LOCK_SECONDS}s); shutting down anyway"
fi

dump_threads=$(printf "SELECT ID FROM information_schema.PROCESSLIST WHERE COMMAND LIKE 'Binlog Dump%%';\n" |
    root_sql --connect-timeout=3) || { log "could not list the binlog dump threads"; exit 0; }
killed=0
for id in $dump_threads; do
    [[ $id =~ ^[0-9]+$ ]] || continue
    # A thread may end by itself between the list and the kill: not an error.
    if printf 'KILL CONNECTION %d;\n' "$id" | root_sql --connect-timeout=3 2>/dev/null; then killed=$((killed + 1)); fi
done
log "closed $killed binlog dump connection(s); mysqld shuts down next"
exit 0
