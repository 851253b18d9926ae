#!/usr/bin/env bash
# clone-mysql (init container, backup image): give a new replica the data of ordinal-1.
#
# Runs only when the data dir has no system schema yet and the ordinal is not 0.
# The stream is received and prepared in a staging dir next to the data dir and
# renamed into place only when complete, so an interrupted clone can never look
# like data on the next attempt (the tutorial's `[[ -d mysql ]]` check would then
# start an empty or half-copied replica). An empty or truncated stream stops the
# pod with a FATAL line instead.
set -euo pipefail
# shellcheck source=common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

: "${CLONE_STAGING_DIR:=${MYSQL_DATA_DIR%/}.clone-staging}"
: "${CLONE_CONNECT_ATTEMPTS:=10}"
: "${CLONE_RETRY_DELAY:=2}"
: "${CLONE_PREPARE_MEMORY:=128M}"
: "${CLONE_PARALLEL:=1}"             # the stream tool's worker threads (mysqlCloneThreads)
[[ $CLONE_PARALLEL =~ ^[1-9][0-9]{0,2}$ ]] || die "CLONE_PARALLEL=$CLONE_PARALLEL: must be a whole number from 1 to 999"

"$BASH" "$(dirname "${BASH_SOURCE[0]}")/datadir-guard.sh"  # refuses a data dir of another engine or a newer version
ordinal=$(my_ordinal)

if [[ -d $MYSQL_DATA_DIR/mysql ]]; then
    log "data dir $MYSQL_DATA_DIR already holds a server; no clone"
    exit 0
fi
if ((ordinal == 0)); then
    log "ordinal 0 is the primary: the server image initialises its empty data dir"
    exit 0
fi
if [[ -d $MYSQL_DATA_DIR ]] && [[ -n $(ls -A "$MYSQL_DATA_DIR") ]]; then
    die "data dir $MYSQL_DATA_DIR is not empty but has no mysql/ schema; refusing to clone over it (inspect and empty it)"
fi

source_ordinal=$((ordinal - 1))
host=$(peer_host "$source_ordinal")
port=$(peer_clone_port "$source_ordinal")

# receive: copy the peer's backup stream to stdout, over mutual TLS (common.sh clone_tls): this end
# refuses a peer whose certificate the set's CA did not sign or that does not name $host, and the
# peer refuses this end without the set's certificate. socat is in the MariaDB and Percona
# XtraBackup images; 1 MiB reads and writes (its default is 8 KiB): a clone is bytes in bulk.
command -v socat >/dev/null 2>&1 || die "socat is not installed in this image"
tls=$(clone_tls)
receive() {
    socat -u -b 1048576 "OPENSSL:$host:$port,connect-timeout=10,$tls" STDOUT
}

rm -rf "$CLONE_STAGING_DIR"
received=false
for ((attempt = 1; attempt <= CLONE_CONNECT_ATTEMPTS; attempt++)); do
    mkdir -p "$CLONE_STAGING_DIR"
    log "cloning from $host:$port (attempt $attempt of $CLONE_CONNECT_ATTEMPTS)"
    set +e
    # Parallel extraction writes several files at once: one writer alone does not keep an EBS
    # volume's queue full, nor keep up with the stream on one core.
    receive | "$STREAM_TOOL" -x --parallel="$CLONE_PARALLEL" -C "$CLONE_STAGING_DIR"
    statuses=("${PIPESTATUS[@]}")
    set -e
    if ((statuses[0] == 0 && statuses[1] == 0)) && [[ -n $(ls -A "$CLONE_STAGING_DIR") ]]; then
        received=true
        break
    fi
    if [[ -n $(ls -A "$CLONE_STAGING_DIR") ]]; then
        # Part of a stream arrived: the peer failed mid-backup. Retrying is fine, but log why.
        log "clone stream from $host:$port broke (receiver exit ${statuses[0]}, $STREAM_TOOL exit ${statuses[1]})"
    fi
    rm -rf "$CLONE_STAGING_DIR"
    ((attempt < CLONE_CONNECT_ATTEMPTS)) && sleep "$CLONE_RETRY_DELAY"
done

if [[ $received != true ]]; then
    rm -rf "$CLONE_STAGING_DIR"
    die "empty or failed clone stream from $host:$port after $CLONE_CONNECT_ATTEMPTS attempts; refusing to start an empty replica"
fi
if ! checkpoints_file "$CLONE_STAGING_DIR" >/dev/null; then
    rm -rf "$CLONE_STAGING_DIR"
    die "clone stream from $host:$port is incomplete (no backup checkpoints file); refusing to start a half-copied replica"
fi

log "preparing the backup with $BACKUP_TOOL"
if ! "$BACKUP_TOOL" --prepare --use-memory="$CLONE_PREPARE_MEMORY" --target-dir="$CLONE_STAGING_DIR"; then
    rm -rf "$CLONE_STAGING_DIR"
    die "$BACKUP_TOOL --prepare failed on the clone from $host:$port"
fi
[[ -d $CLONE_STAGING_DIR/mysql ]] || {
    rm -rf "$CLONE_STAGING_DIR"
    die "prepared clone from $host:$port has no mysql/ schema"
}
binlog_info_file "$CLONE_STAGING_DIR" >/dev/null ||
    log "warning: the clone carries no binlog position; the sidecar will replicate from the source's current GTID state"

# The source's replication settings must not come along (a file on MariaDB):
# the sidecar points this replica at the primary itself.
rm -f "$CLONE_STAGING_DIR/master.info" "$CLONE_STAGING_DIR/relay-log.info" "$CLONE_STAGING_DIR/multi-master.info"

# The kubelet may already have created the (empty) data dir for the subPath mount.
[[ -d $MYSQL_DATA_DIR ]] && rmdir "$MYSQL_DATA_DIR"
mv "$CLONE_STAGING_DIR" "$MYSQL_DATA_DIR"
log "clone from $host:$port complete; server_id will be $(server_id_of "$ordinal")"
