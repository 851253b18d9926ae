#!/usr/bin/env bash
# init-mysql (init container, server image): pick this pod's role by ordinal.
# Writes server-id (100 + ordinal) and the primary or replica fragment into the
# conf.d emptyDir that mysqld reads. Ordinal 0 is the primary.
set -euo pipefail
# shellcheck source=common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

ordinal=$(my_ordinal)
if ((ordinal == 0)); then role=primary; else role=replica; fi

source_cnf="$MYSQL_CONFIG_DIR/$role.cnf"
[[ -s $source_cnf ]] || die "$source_cnf is missing or empty"
mkdir -p "$MYSQL_CONF_DIR"
# The emptyDir outlives container restarts; never leave the other role's file behind.
rm -f "$MYSQL_CONF_DIR/primary.cnf" "$MYSQL_CONF_DIR/replica.cnf"
cp "$source_cnf" "$MYSQL_CONF_DIR/$role.cnf"
{
    printf '[mysqld]\n'
    printf 'server_id=%s\n' "$(server_id_of "$ordinal")"
    # Shown by SHOW REPLICAS on the source: which pod is which.
    printf 'report_host=%s\n' "$(peer_host "$ordinal")"
} >"$MYSQL_CONF_DIR/server-id.cnf"

log "ordinal $ordinal: role $role, server_id $(server_id_of "$ordinal")"
