#!/usr/bin/env bash
# liveness (mysqld container): mysqladmin ping. It exits 0 whenever the server
# answers at all (even "access denied" or "too many connections"), so a busy but
# healthy server is never restarted; only a hung or dead one is.
set -euo pipefail
# shellcheck source=common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

exec "$MYSQL_ADMIN" --defaults-extra-file=<(client_cnf "$BACKUP_USER" backup-password) \
    --socket="$MYSQL_SOCKET" --connect-timeout=3 ping
