#!/usr/bin/env bash
# sidecar (main container, backup image).
#
#   sidecar.sh          set up this pod, then serve backups on CLONE_PORT forever:
#                       ordinal 0 creates/updates the replication, backup and verify accounts
#                       and root's password, on the final server only (not the image's init server);
#                       a replica with a fresh clone starts replication from the clone's
#                       GTID position (at most once: the position file is renamed after).
#                       Meanwhile, every SIDECAR_CHECK_SECONDS: a rotated Secret is applied
#                       (the primary ALTERs the accounts, replicas re-authenticate replication),
#                       and the binlogs are held to BINLOG_MAX_BYTES, with an ALARM line when
#                       the data volume is DISK_ALARM_PERCENT full.
#   sidecar.sh stream   write one backup stream to stdout (run by socat per connection).
set -euo pipefail
# shellcheck source=common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

: "${MYSQL_VERSION:=8.4}"
: "${SOURCE_CONNECT_RETRY:=10}"   # seconds between the replica's reconnection attempts
: "${BACKUP_PARALLEL:=1}"         # the backup tool's copy threads (mysqlCloneThreads)
: "${SIDECAR_CHECK_SECONDS:=10}"  # between checks for a rotated Secret and the binlogs' size
# The primary applies a rotated Secret this long after its own copy changed: the kubelet refreshes
# each pod's copy on its own sync (up to its sync period, 1 minute, plus the cache's delay:
# kubernetes.io/docs/concepts/configuration/secret/#using-secrets-as-files-from-a-pod), and a
# replica that still has the old files can log in only while the old passwords are valid.
: "${ROTATION_DELAY_SECONDS:=120}"
: "${BINLOG_MAX_BYTES:=0}"        # 0: no bound by size (config.binlog_env derives it from the volume)
: "${BINLOG_FILE_BYTES:=0}"       # max_binlog_size; 0 leaves the server's
: "${DISK_ALARM_PERCENT:=80}"
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
        password_variable root_password root-password
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

# The Secret's keys as the sidecar applies them.
# exporter-password: the metrics account (docs/backup.md) rotates like the others.
CREDENTIAL_KEYS=(root-password replication-password backup-password verify-password exporter-password)

# remember_applied KEY...: the mounted values are now in effect on this server (common.sh login_file).
remember_applied() {
    local key
    mkdir -p "$MYSQL_STATE_DIR"
    chmod 700 "$MYSQL_STATE_DIR"
    for key in "$@"; do
        (umask 077 && cp "$(secret_file "$key")" "$(applied_file "$key.new")") &&
            mv "$(applied_file "$key.new")" "$(applied_file "$key")"
    done
}

# rotated KEY...: the keys whose mounted value differs from the applied one (or has none yet).
rotated() {
    local key applied
    for key in "$@"; do
        applied=$(applied_file "$key")
        if [[ ! -s $applied || $(<"$(secret_file "$key")") != "$(<"$applied")" ]]; then printf '%s\n' "$key"; fi
    done
}

# accepted USER KEY: the server accepts the mounted value of KEY for USER.
accepted() {
    "$MYSQL_CLIENT" --defaults-extra-file=<(client_cnf "$1" "$2") --socket="$MYSQL_SOCKET" \
        --connect-timeout=3 --batch --skip-column-names -e 'SELECT 1' >/dev/null 2>&1
}

# A replica: the accounts arrive by replication; record the values this server accepts. Replication
# re-authenticates only when the primary refuses its stored password (the I/O thread's last error is
# 1045: the primary applied a rotation and the connection was re-established), with the mounted
# value, once per value. An established connection keeps streaming: switching before the primary
# applied would stop replication (Connecting) for as long as it waits, and the replica would serve
# ever staler reads meanwhile.
rotate_replica() {
    local key status password errno=""
    for key in root-password backup-password; do
        if [[ -n $(rotated "$key") ]]; then
            local user=root
            [[ $key == backup-password ]] && user=$BACKUP_USER
            if accepted "$user" "$key"; then remember_applied "$key"; fi
        fi
    done
    status=$(root_sql --column-names --vertical -e 'SHOW REPLICA STATUS') || return 1
    [[ -n $status ]] || return 0  # not replicating (yet): start_replication_once sets the password
    if [[ $status =~ Last_IO_Errno:[[:space:]]*([0-9]+) ]]; then errno=${BASH_REMATCH[1]}; fi
    [[ $errno == 1045 && -n $(rotated replication-password) ]] || return 0
    password=$(read_secret replication-password)
    if [[ $MYSQL_ENGINE == mysql ]]; then
        # MySQL changes the source's credentials with the receiver stopped only (the applier runs on).
        printf 'STOP REPLICA IO_THREAD;\nCHANGE REPLICATION SOURCE TO SOURCE_PASSWORD = %s;\nSTART REPLICA IO_THREAD;\n' \
            "$(sql_literal "$password")" | root_sql || return 1
    else
        # MariaDB changes a connection's settings only with both threads stopped (error 1198): the
        # applier pauses for the moment of the statement (readiness tolerates one failed probe).
        printf 'STOP SLAVE;\nCHANGE MASTER TO MASTER_PASSWORD = %s;\nSTART SLAVE;\n' \
            "$(sql_literal "$password")" | root_sql || return 1
    fi
    remember_applied replication-password
    log "replication re-authenticates with the Secret's current replication password"
}

# Binlogs: at most BINLOG_MAX_BYTES (whole files, oldest first, never the one being written). A
# replica still reading a file keeps it: the server refuses to purge a file in use by a connected
# replica (PURGE BINARY LOGS), which this reports as an ALARM instead of breaking that replica.
limit_binlogs() {
    ((BINLOG_MAX_BYTES > 0)) || return 0
    local logs name size total=0 names=() sizes=() i drop=0 keep_from
    logs=$(printf 'SHOW BINARY LOGS\n' | root_sql) || return 1
    while IFS=$'\t' read -r name size _; do
        [[ -n $name && $size =~ ^[0-9]+$ ]] || continue
        names+=("$name")
        sizes+=("$size")
        total=$((total + size))
    done <<<"$logs"
    ((total > BINLOG_MAX_BYTES)) || return 0
    for ((i = 0; i < ${#names[@]} - 1; i++)); do
        ((total - drop > BINLOG_MAX_BYTES)) || break
        drop=$((drop + sizes[i]))
    done
    keep_from=${names[i]}
    [[ $keep_from =~ ^[A-Za-z0-9._-]+$ ]] || { log "binlog name '$keep_from' is not a plain file name"; return 1; }
    if ((i == 0)); then
        log "ALARM: binlogs take $total bytes, over the bound of $BINLOG_MAX_BYTES, all in the file being written"
    elif printf "PURGE BINARY LOGS TO '%s';\n" "$keep_from" | root_sql; then
        log "binlogs took $total bytes, over the bound of $BINLOG_MAX_BYTES: purged the $i oldest ($drop bytes), kept from $keep_from"
    else
        log "ALARM: binlogs take $total bytes, over the bound of $BINLOG_MAX_BYTES, and the oldest could not be purged (a replica still reads them)"
    fi
}

# An ALARM line while the data volume is DISK_ALARM_PERCENT full or more (readiness unchanged: a
# full disk is for an operator to act on, and a not-ready pod would only take reads away).
check_disk() {
    local report usage
    # POSIX df: a header line, then "filesystem blocks used available capacity% mountpoint" (no awk:
    # the backup images need not have one).
    report=$(df -P "$MYSQL_DATA_DIR") || return 1
    read -r _ _ _ _ usage _ < <(tail -n 1 <<<"$report")
    usage=${usage%\%}
    [[ $usage =~ ^[0-9]+$ ]] || return 1
    if ((usage >= DISK_ALARM_PERCENT)); then
        log "ALARM: data volume $usage% full (alarm at $DISK_ALARM_PERCENT%): grow mysqlStorageSize or free space before it fills"
    fi
}

maintain() {
    local ordinal=$1
    ROTATION_SEEN=0
    if ((BINLOG_FILE_BYTES > 0)); then
        printf 'SET GLOBAL max_binlog_size = %d;\n' "$BINLOG_FILE_BYTES" | root_sql ||
            log "could not set max_binlog_size to $BINLOG_FILE_BYTES"
    fi
    local sleeper=""
    # Stopped with the listener: the pending sleep too (it would hold the container's output open).
    trap 'kill "$sleeper" 2>/dev/null; exit 0' TERM
    while true; do
        sleep "$SIDECAR_CHECK_SECONDS" &
        sleeper=$!
        wait "$sleeper"
        # Each step in its own subshell: a failure (a die) is logged and retried at the next check.
        if ((ordinal == 0)); then
            rotate_primary || log "checking the Secret for a rotation failed; retrying in ${SIDECAR_CHECK_SECONDS}s"
        else
            (rotate_replica) || log "applying the rotated Secret failed; retrying in ${SIDECAR_CHECK_SECONDS}s"
        fi
        (limit_binlogs) || log "checking the binlogs' size failed; retrying in ${SIDECAR_CHECK_SECONDS}s"
        (check_disk) || log "checking the data volume's usage failed"
    done
}

# The primary: a rotated Secret is applied (every account, root included, in one batch: users.sql)
# ROTATION_DELAY_SECONDS after this pod's copy changed. root logs in with the mounted password or,
# until the batch ran, the applied one (login_file). State (ROTATION_SEEN) lives in this shell.
rotate_primary() {
    local keys seen
    keys=$(rotated "${CREDENTIAL_KEYS[@]}")
    if [[ -n $keys ]] && ((ROTATION_SEEN > 0)) && (($(date +%s) - ROTATION_SEEN >= ROTATION_DELAY_SECONDS)); then
        # The batch itself runs in a subshell (ensure_users dies on failure).
        if (ensure_users && remember_applied "${CREDENTIAL_KEYS[@]}"); then
            log "rotated: ${keys//$'\n'/, } (the replicas follow by replication)"
            ROTATION_SEEN=0
        else
            log "applying the rotated Secret failed; retrying in ${SIDECAR_CHECK_SECONDS}s"
        fi
        return 0
    fi
    if [[ -z $keys ]]; then
        ROTATION_SEEN=0
    elif ((ROTATION_SEEN == 0)); then
        ROTATION_SEEN=$(date +%s)
        seen=${keys//$'\n'/, }
        log "the Secret changed ($seen); applying it in ${ROTATION_DELAY_SECONDS}s, once every pod's copy is current"
    fi
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
    remember_applied replication-password
    log "replication started"
}

serve_backups() {
    local listen ordinal=$1 listener maintainer status=0
    # A peer that fails the handshake (no certificate, another CA's, plain TCP) never reaches the
    # backup command: socat runs it only after mutual TLS succeeded (common.sh clone_tls).
    listen="OPENSSL-LISTEN:$CLONE_PORT,reuseaddr,fork,max-children=1,$(clone_tls)"
    [[ -n $CLONE_BIND_ADDRESS ]] && listen+=",bind=$CLONE_BIND_ADDRESS"
    log "serving backups on port $CLONE_PORT (mutual TLS)"
    maintain "$ordinal" &
    maintainer=$!
    # -U: data flows from the backup command to the peer only.
    # -b: 1 MiB reads and writes instead of socat's 8 KiB (a backup is bytes in bulk).
    socat -U -b 1048576 "$listen" "EXEC:bash $SELF stream" &
    listener=$!
    # The container lives as long as both (it used to exec socat): whichever ends first ends the other
    # and the container, so the kubelet restarts it; SIGTERM stops both.
    trap 'kill "$listener" "$maintainer" 2>/dev/null; wait "$listener"; exit 0' TERM INT
    wait -n || status=$?
    if ! kill -0 "$listener" 2>/dev/null; then
        kill "$maintainer" 2>/dev/null || true
    else
        log "the maintenance loop ended (status $status); stopping the backup listener"
        kill "$listener" 2>/dev/null || true
        ((status != 0)) || status=1
    fi
    wait 2>/dev/null || true
    exit "$status"
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
        remember_applied "${CREDENTIAL_KEYS[@]}"
    else
        start_replication_once
        # What this replica's server accepts now; a value it does not yet accept waits for the primary.
        accepted root root-password && remember_applied root-password
        accepted "$BACKUP_USER" backup-password && remember_applied backup-password
    fi
    serve_backups "$ordinal"
}

main "$@"
