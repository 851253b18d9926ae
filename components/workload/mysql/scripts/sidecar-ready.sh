#!/usr/bin/env bash
# readiness/liveness of the sidecar: is the backup port listening? It reads the
# pod's socket table instead of connecting, because every connection to the
# port starts a backup.
set -euo pipefail
# shellcheck source=common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

port_hex=$(printf '%04X' "$CLONE_PORT")
for table in /proc/net/tcp /proc/net/tcp6; do
    [[ -r $table ]] || continue
    while read -r _ local_address _ state _; do
        # state 0A is LISTEN
        if [[ $local_address == *":$port_hex" && $state == 0A ]]; then exit 0; fi
    done <"$table"
done
echo "nothing listens on port $CLONE_PORT yet"
exit 1
