#!/usr/bin/env bash
# sidecar (main container, backup image).
#
#   sidecar.sh          set up this pod, then serve backups on CLONE_PORT forever:
#                       ordinal 0 creates/updates the replication, backup and verify accounts;
#                       a replica with a fresh clone starts replication from the clone's
#                       GTID position (at most once: the position file is renamed after).
#   sidecar.sh stream   write one backup stream to stdout (run by socat per connection).
set -euo pipefail
# shellcheck source=common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

: "${MYSQL_VERSION:=8.4}"
: "${SOURCE_CONNECT_RETRY:=10}"   # seconds between the replica's reconnection attempts
: "${BACKUP_PARALLEL:=1}"         # the backup tool's copy threads (mysqlCloneThreads)
[[ $BACKUP_PARALLEL =~ ^[1-9][0-9]{0,2}$ ]] || die "BACKUP_PARALLEL=$BACKUP_PARALLEL: must be a whole number from 1 to 999"
SELF="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/$(basename "${BASH_SOURCE[0]}")"

# sql_literal STRING: STRING as a single-quoted SQL literal (default sql_mode: backslash escapes on).
sql_literal() {
    local value=${1//\\/\\\\}
    printf "'%s'" "${value//\'/\'\'}"
}

read_secret() {
    local path value
    path=$(secret_file "$1")
    value=$(<"$path")
    [[ -n $value ]] || die "secret $path is empty"
    printf '%s' "$value"
}

# password_variable NAME SECRET: a statement setting the session variable @NAME to the
# secret's value, hex-encoded so that no quoting can go wrong and the value never appears
# as text (users.sql reads the variables; it never holds a password itself).
password_variable() {
    local value
    value=$(read_secret "$2")
    printf "SET @%s = CONVERT(X'%s' USING utf8mb4);\n" "$1" "$(hex "$value")"
}

ensure_users() {
    local variables
    [[ -s $MYSQL_CONFIG_DIR/users.sql ]] || die "$MYSQL_CONFIG_DIR/users.sql is missing"
    # Read every secret before talking to the server: a missing one stops here, not halfway.
    variables=$(
        password_variable replication_password replication-password
        password_variable backup_password backup-password
        password_variable verify_password verify-password
        password_variable exporter_password exporter-password
    )
    {
        printf '%s\n' "$variables"
        cat "$MYSQL_CONFIG_DIR/users.sql"
    } | root_sql || die "creating the replication, backup, verify and exporter accounts failed"
    log "replication, backup and verify accounts are in place (and the exporter's)"
}

query() {  # query SQL: one value from the local server, as root
    printf '%s\n' "$1" | root_sql
}

# The statements that point this replica at the primary. Re-running them is safe:
# the position is only ever set when the server's own GTID state does not yet
# cover the clone's, which stops being true as soon as replication has run.
mysql_statements() {
    local gtid=$1 host=$2 port=$3 password=$4 covered reset
    if [[ $MYSQL_VERSION == 8.0 ]]; then reset="RESET MASTER"; else reset="RESET BINARY LOGS AND GTIDS"; fi
    printf 'STOP REPLICA;\n'
    covered=$(query "SELECT GTID_SUBSET('$gtid', @@GLOBAL.gtid_executed);") || die "cannot read gtid_executed"
    if [[ $covered != 1 ]]; then
        [[ $(query "SELECT GTID_SUBSET(@@GLOBAL.gtid_executed, '$gtid');") == 1 ]] ||
            die "gtid_executed of this server is not within the clone's GTID set '$gtid': it has diverged"
        # super_read_only blocks changing gtid_purged; nothing else can write meanwhile
        # (this pod is not ready and replication is stopped).
        printf 'SET GLOBAL super_read_only = OFF;\n%s;\n' "$reset"
        printf "SET GLOBAL gtid_purged = '%s';\n" "$gtid"
        printf 'SET GLOBAL super_read_only = ON;\n'
    fi
    printf 'RESET REPLICA ALL;\n'
    printf "CHANGE REPLICATION SOURCE TO SOURCE_HOST = %s, SOURCE_PORT = %d, " "$(sql_literal "$host")" "$port"
    printf "SOURCE_USER = %s, SOURCE_PASSWORD = %s, " "$(sql_literal "$REPLICATION_USER")" "$(sql_literal "$password")"
    # caching_sha2_password: TLS (the server's auto-generated certificate) and, failing
    # that, the source's RSA key; GTID auto-positioning; retry for days, not 10 minutes.
    # Verified TLS: the set's CA and the source's name (MySQL's SOURCE_SSL alone encrypts without
    # checking whom it talks to); GTID auto-positioning; retry for days, not 10 minutes.
    printf "SOURCE_SSL = 1, SOURCE_SSL_CA = %s, SOURCE_SSL_VERIFY_SERVER_CERT = 1, " "$(sql_literal "$MYSQL_TLS_DIR/ca.crt")"
    printf 'SOURCE_AUTO_POSITION = 1, SOURCE_CONNECT_RETRY = %d, SOURCE_RETRY_COUNT = 86400;\n' "$SOURCE_CONNECT_RETRY"
    printf 'START REPLICA;\n'
}

mariadb_statements() {
    local gtid=$1 host=$2 port=$3 password=$4 current
    printf 'STOP SLAVE;\n'
    current=$(query 'SELECT @@GLOBAL.gtid_current_pos;') || die "cannot read gtid_current_pos"
    if [[ -n $gtid ]] && ! mariadb_gtid_covers "$current" "$gtid"; then
        printf "SET GLOBAL gtid_slave_pos = '%s';\n" "$gtid"
    fi
    printf 'RESET SLAVE ALL;\n'
    printf "CHANGE MASTER TO MASTER_HOST = %s, MASTER_PORT = %d, " "$(sql_literal "$host")" "$port"
    printf "MASTER_USER = %s, MASTER_PASSWORD = %s, " "$(sql_literal "$REPLICATION_USER")" "$(sql_literal "$password")"
    # Verified TLS: the set's CA, and the primary's certificate must name the host dialled.
    printf "MASTER_SSL = 1, MASTER_SSL_CA = %s, MASTER_SSL_VERIFY_SERVER_CERT = 1, " "$(sql_literal "$MYSQL_TLS_DIR/ca.crt")"
    printf 'MASTER_USE_GTID = slave_pos, MASTER_CONNECT_RETRY = %d;\n' "$SOURCE_CONNECT_RETRY"
    printf 'START SLAVE;\n'
}

start_replication_once() {
    local info statements password host port
    if ! info=$(binlog_info_file "$MYSQL_DATA_DIR"); then
        log "no clone position pending; replication continues from the server's own state"
        return 0
    fi
    parse_binlog_info "$info" || die "cannot use the clone position in $info"
    password=$(read_secret replication-password)
    tls_files
    host=$(peer_host 0)
    port=$(peer_mysql_port 0)
    wait_for_server root root-password
    log "starting replication from $host:$port at the clone position (file $BINLOG_FILE, pos $BINLOG_POS, GTID '${BINLOG_GTID}')"
    if [[ $MYSQL_ENGINE == mysql ]]; then
        statements=$(mysql_statements "$BINLOG_GTID" "$host" "$port" "$password")
    else
        statements=$(mariadb_statements "$BINLOG_GTID" "$host" "$port" "$password")
    fi
    printf '%s\n' "$statements" | root_sql || die "starting replication from the clone position failed"
    # At most once: a restarted sidecar finds no position file and leaves replication alone.
    mv "$info" "$info.applied"
    log "replication started"
}

serve_backups() {
    local listen
    # A peer that fails the handshake (no certificate, another CA's, plain TCP) never reaches the
    # backup command: socat runs it only after mutual TLS succeeded (common.sh clone_tls).
    listen="OPENSSL-LISTEN:$CLONE_PORT,reuseaddr,fork,max-children=1,$(clone_tls)"
    [[ -n $CLONE_BIND_ADDRESS ]] && listen+=",bind=$CLONE_BIND_ADDRESS"
    log "serving backups on port $CLONE_PORT (mutual TLS)"
    # -U: data flows from the backup command to the peer only.
    # -b: 1 MiB reads and writes instead of socat's 8 KiB (a backup is bytes in bulk).
    exec socat -U -b 1048576 "$listen" "EXEC:bash $SELF stream"
}

stream_backup() {
    log "streaming a backup to a peer ($BACKUP_PARALLEL copy threads)"
    # The backup tools read their option files twice (server, then client groups),
    # so a pipe would be empty the second time: use a private file in CLIENT_CNF_DIR
    # (a memory-backed emptyDir in the pod), removed on exit.
    STREAM_CNF=$(mktemp "${CLIENT_CNF_DIR:-${TMPDIR:-/tmp}}/backup-client.XXXXXX")
    trap 'rm -f "$STREAM_CNF"' EXIT
    chmod 600 "$STREAM_CNF"
    client_cnf "$BACKUP_USER" backup-password >"$STREAM_CNF"
    # The handler's stdout is the peer's socket: diagnostics go to stderr only.
    # No --slave-info: the receiver uses the GTID position in the binlog info, which a
    # replica's backup carries too (log_replica_updates), and never the source's file/pos.
    # --parallel copies that many data files at once (into the one stream): the copy is bound by
    # reads, which one thread issues one at a time.
    if "$BACKUP_TOOL" --defaults-extra-file="$STREAM_CNF" \
        --backup --stream=xbstream --parallel="$BACKUP_PARALLEL" --socket="$MYSQL_SOCKET" \
        --datadir="$MYSQL_DATA_DIR" --target-dir="${TMPDIR:-/tmp}"; then
        log "backup stream sent"
    else
        die "backup stream failed; the peer sees a truncated stream and refuses it"
    fi
}

main() {
    if [[ ${1:-} == stream ]]; then
        stream_backup
        return
    fi
    local ordinal
    ordinal=$(my_ordinal)
    if ((ordinal == 0)); then
        wait_for_server root root-password
        ensure_users
    else
        start_replication_once
    fi
    serve_backups
}

main "$@"
