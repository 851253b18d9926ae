#!/usr/bin/env bash
# readiness (mysqld container): the primary must answer a query; a replica must
# also have both replication threads running (the tutorial's `SELECT 1` keeps a
# replica whose replication broke in the read Service, serving stale data forever).
# An I/O thread that is "Connecting" (source away, retrying) still counts: the
# replica serves reads while the primary is down, as stale as the outage is long.
set -euo pipefail
# shellcheck source=common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

ordinal=$(my_ordinal)
if ((ordinal == 0)); then
    backup_sql --connect-timeout=3 -e 'SELECT 1' >/dev/null || { echo "primary does not answer"; exit 1; }
    exit 0
fi

status=$(backup_sql --connect-timeout=3 --column-names --vertical -e 'SHOW REPLICA STATUS') ||
    { echo "replica does not answer"; exit 1; }
io="" sql=""
while IFS= read -r line; do
    # MySQL 8 says Replica_*, MariaDB keeps Slave_* even for SHOW REPLICA STATUS.
    if [[ $line =~ ^[[:space:]]*(Replica|Slave)_IO_Running:[[:space:]]*(.*)$ ]]; then io=${BASH_REMATCH[2]}; fi
    if [[ $line =~ ^[[:space:]]*(Replica|Slave)_SQL_Running:[[:space:]]*(.*)$ ]]; then sql=${BASH_REMATCH[2]}; fi
done <<<"$status"

if [[ -z $io && -z $sql ]]; then
    echo "replication is not configured"
    exit 1
fi
if [[ $sql != Yes || ($io != Yes && $io != Connecting) ]]; then
    echo "replication threads stopped: IO=$io SQL=$sql"
    exit 1
fi
exit 0
