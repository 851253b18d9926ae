#!/usr/bin/env bash
# Shared helpers of the replicated MySQL/MariaDB set, sourced by every script.
#
# Every path, host and port comes from the environment, defaulting to the value
# inside the pod, so the same files run unchanged in tests on one machine.
# Nothing here prints a password: credentials reach the clients through
# --defaults-extra-file=<(...) (an anonymous pipe), never argv or disk.

: "${MYSQL_ENGINE:=mysql}"                      # mysql | mariadb
: "${MYSQL_SET_NAME:=mysql}"                    # StatefulSet name; pods are <name>-<ordinal>
: "${POD_NAME:=${HOSTNAME:-$(uname -n)}}"
: "${MYSQL_DATA_DIR:=/var/lib/mysql}"           # the server's datadir as this container sees it
: "${MYSQL_CONF_DIR:=/etc/mysql/conf.d}"        # emptyDir shared with mysqld (role + server-id)
: "${MYSQL_CONFIG_DIR:=/etc/mysql-config}"      # the ConfigMap: primary.cnf, replica.cnf, users.sql
: "${MYSQL_SECRETS_DIR:=/etc/mysql-secrets}"    # the Secret: root-, replication-, backup-, verify-password
: "${MYSQL_SOCKET:=/var/run/mysqld/mysqld.sock}"
: "${CLONE_PORT:=3307}"                         # where this pod serves backups
: "${CLONE_BIND_ADDRESS:=}"                     # empty = all addresses (pod); 127.0.0.1 in tests
: "${MYSQL_TLS_DIR:=/etc/mysql-tls}"            # the set's TLS Secret: ca.crt, tls.crt, tls.key
# Peers: {ordinal} is replaced by the peer's ordinal. The *_PORTS lists (space
# separated, indexed by ordinal) exist for rehearsals where every "pod" shares one host.
# The pods are given the fully qualified name (config.peer_host_pattern): OpenSSL would not match
# this short form to the certificate's wildcard. The short default serves rehearsals that set their own.
_default_peer_host_pattern="${MYSQL_SET_NAME}-{ordinal}.${MYSQL_SET_NAME}"  # `}` would end a ${...:=...}
: "${PEER_HOST_PATTERN:=$_default_peer_host_pattern}"
: "${PEER_MYSQL_PORT:=3306}"
: "${PEER_CLONE_PORT:=3307}"
: "${PEER_MYSQL_PORTS:=}"
: "${PEER_CLONE_PORTS:=}"
: "${WAIT_TIMEOUT:=600}"                        # seconds to wait for the local server
: "${REPLICATION_USER:=repl}"
: "${BACKUP_USER:=backup}"
# The credentials this server is known to accept, as the sidecar last applied or saw them work
# (sidecar.sh). In mysqld's socket directory: a memory emptyDir both containers share, private to
# the pod's uid, gone with the pod. During a rotation the kubelet replaces the mounted Secret's
# files before the primary has applied them (or after): clients try the mounted value, then this.
: "${MYSQL_STATE_DIR:=${MYSQL_SOCKET%/*}/set-credentials}"

# A failing command inside $(...) fails the assignment that uses it.
shopt -s inherit_errexit

SCRIPT_NAME=${SCRIPT_NAME:-$(basename "${BASH_SOURCE[1]:-$0}" .sh)}

case "$MYSQL_ENGINE" in
    mysql)
        : "${MYSQL_CLIENT:=mysql}" "${MYSQL_ADMIN:=mysqladmin}"
        : "${BACKUP_TOOL:=xtrabackup}" "${STREAM_TOOL:=xbstream}" ;;
    mariadb)
        : "${MYSQL_CLIENT:=mariadb}" "${MYSQL_ADMIN:=mariadb-admin}"
        : "${BACKUP_TOOL:=mariadb-backup}" "${STREAM_TOOL:=mbstream}" ;;
    *)
        printf '%s: FATAL: MYSQL_ENGINE=%s: allowed values are mysql, mariadb\n' "$SCRIPT_NAME" "$MYSQL_ENGINE" >&2
        exit 1 ;;
esac

log() {
    printf '%s %s[%s]: %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$SCRIPT_NAME" "$POD_NAME" "$*" >&2
}

die() {
    log "FATAL: $*"
    exit 1
}

# ordinal_of NAME: the StatefulSet ordinal of pod NAME (<set>-<n>, no leading zeros).
ordinal_of() {
    local name=$1
    [[ $name =~ ^${MYSQL_SET_NAME}-(0|[1-9][0-9]{0,5})$ ]] || return 1
    printf '%d\n' "$((10#${BASH_REMATCH[1]}))"
}

# server_id_of ORDINAL: 100 + ordinal (0 is reserved: a server with id 0 never replicates).
server_id_of() {
    printf '%d\n' "$((100 + 10#$1))"
}

# my_ordinal: this pod's ordinal, or exit with a clear message.
my_ordinal() {
    ordinal_of "$POD_NAME" ||
        die "cannot derive an ordinal from pod name '$POD_NAME': expected ${MYSQL_SET_NAME}-<n> (n = 0, 1, ...)"
}

_nth() {  # _nth INDEX WORDS...: the INDEX-th word (0-based), empty when out of range
    local index=$1
    shift
    local words=("$@")
    printf '%s' "${words[index]:-}"
}

peer_host() {
    printf '%s\n' "${PEER_HOST_PATTERN//\{ordinal\}/$1}"
}

peer_mysql_port() {
    local port
    # shellcheck disable=SC2086  # word splitting of the list is intended
    port=$(_nth "$1" $PEER_MYSQL_PORTS)
    printf '%s\n' "${port:-$PEER_MYSQL_PORT}"
}

peer_clone_port() {
    local port
    # shellcheck disable=SC2086
    port=$(_nth "$1" $PEER_CLONE_PORTS)
    printf '%s\n' "${port:-$PEER_CLONE_PORT}"
}

# secret_file NAME: path of a mounted secret, which must exist and not be empty.
secret_file() {
    local path="$MYSQL_SECRETS_DIR/$1"
    [[ -s $path ]] || die "secret $path is missing or empty"
    printf '%s\n' "$path"
}

# client_cnf USER SECRET: an option file for USER with the password read from SECRET.
client_cnf() {
    client_cnf_from "$1" "$(secret_file "$2")"
}

# client_cnf_from USER FILE: an option file for USER with the password read from FILE.
# Double quotes and backslashes are escaped; a password with a line break is refused.
client_cnf_from() {
    local user=$1 password
    password=$(<"$2") || return 1
    [[ $password != *$'\n'* ]] || die "secret $2 contains a line break"
    password=${password//\\/\\\\}
    password=${password//\"/\\\"}
    printf '[client]\nuser=%s\npassword="%s"\n' "$user" "$password"
    # xtrabackup and mariadb-backup also read their own group.
    printf '[xtrabackup]\nuser=%s\npassword="%s"\n' "$user" "$password"
}

# applied_file SECRET: where the value this server is known to accept for SECRET is kept.
applied_file() {
    printf '%s\n' "$MYSQL_STATE_DIR/$1"
}

# login_file USER SECRET: the file whose password USER logs in with: the mounted secret, unless a
# rotation is under way (the applied value differs) and only the applied value is accepted yet.
login_file() {
    local user=$1 mounted applied
    mounted=$(secret_file "$2")
    applied=$(applied_file "$2")
    if [[ -s $applied && $(<"$mounted") != "$(<"$applied")" ]] &&
        ! "$MYSQL_CLIENT" --defaults-extra-file=<(client_cnf_from "$user" "$mounted") \
            --socket="$MYSQL_SOCKET" --connect-timeout=3 --batch --skip-column-names -e 'SELECT 1' >/dev/null 2>&1 &&
        "$MYSQL_CLIENT" --defaults-extra-file=<(client_cnf_from "$user" "$applied") \
            --socket="$MYSQL_SOCKET" --connect-timeout=3 --batch --skip-column-names -e 'SELECT 1' >/dev/null 2>&1; then
        printf '%s\n' "$applied"
        return 0
    fi
    printf '%s\n' "$mounted"
}

# sql USER SECRET [client args...]: run the SQL on stdin against the local server.
sql() {
    local user=$1 file
    file=$(login_file "$1" "$2")
    shift 2
    "$MYSQL_CLIENT" --defaults-extra-file=<(client_cnf_from "$user" "$file") \
        --socket="$MYSQL_SOCKET" --batch --skip-column-names "$@"
}

root_sql() { sql root root-password "$@"; }
backup_sql() { sql "$BACKUP_USER" backup-password "$@"; }

# tls_files: the set's CA, certificate and key, each present and not empty, or exit.
tls_files() {
    local name
    for name in ca.crt tls.crt tls.key; do
        [[ -s $MYSQL_TLS_DIR/$name ]] || die "TLS file $MYSQL_TLS_DIR/$name is missing or empty (the set's TLS Secret)"
    done
}

# clone_tls: socat's OpenSSL options for both ends of the clone channel. Mutual TLS with the set's
# own CA: each end presents the set's certificate and accepts only a peer whose certificate that
# CA signed (verify=1 also makes the listener refuse a client without one); TLS 1.2 or later. The
# client also checks the listener's name against the host it dials (socat's default).
clone_tls() {
    tls_files
    printf 'cert=%s,key=%s,cafile=%s,verify=1,openssl-min-proto-version=TLS1.2' \
        "$MYSQL_TLS_DIR/tls.crt" "$MYSQL_TLS_DIR/tls.key" "$MYSQL_TLS_DIR/ca.crt"
}

# hex STRING: the bytes of STRING as hex digits, for X'..' literals (no quoting issues).
hex() {
    printf '%s' "$1" | od -An -v -tx1 | tr -d ' \n'
}

# wait_for_server USER SECRET: until the local server answers a query over its socket and is the
# final one, at most WAIT_TIMEOUT seconds. The server images' entrypoints initialise an empty data
# dir on a temporary server started with --skip-networking on the same socket (docker_temp_server_start
# in both docker-entrypoint.sh), then stop it and exec the real one: a server without networking is
# that temporary one, and whatever is done on it (accounts) may be cut off by its shutdown.
wait_for_server() {
    local user=$1 secret=$2 waited=0 networking
    until networking=$(sql "$user" "$secret" -e 'SELECT @@GLOBAL.skip_networking' 2>/dev/null) &&
        [[ $networking == 0 ]]; do
        ((waited < WAIT_TIMEOUT)) || die "the local server did not answer within ${WAIT_TIMEOUT}s (socket $MYSQL_SOCKET), or only as the image's temporary init server (skip_networking=${networking:-?})"
        if [[ ${networking:-} == 1 && ${_told_temporary:-0} == 0 ]]; then
            log "the server on $MYSQL_SOCKET is the image's temporary init server (skip_networking=1); waiting for the final one"
            _told_temporary=1
        fi
        sleep 1
        waited=$((waited + 1))
    done
}

# binlog_info_file DIR: the backup's binlog-position file (MariaDB 11 renamed it).
binlog_info_file() {
    local name
    for name in xtrabackup_binlog_info mariadb_backup_binlog_info; do
        [[ -f $1/$name ]] && { printf '%s\n' "$1/$name"; return 0; }
    done
    return 1
}

# checkpoints_file DIR: present only when a backup stream arrived complete.
checkpoints_file() {
    local name
    for name in xtrabackup_checkpoints mariadb_backup_checkpoints; do
        [[ -s $1/$name ]] && { printf '%s\n' "$1/$name"; return 0; }
    done
    return 1
}

# parse_binlog_info FILE: sets BINLOG_FILE, BINLOG_POS and BINLOG_GTID.
# The file is "<file>\t<pos>[\t<gtid set>]"; XtraBackup wraps long MySQL GTID
# sets over several lines (after the commas), so everything after the position,
# whitespace removed, is the set. Values are checked because they end up in SQL.
parse_binlog_info() {
    local content
    content=$(<"$1") || return 1
    content=${content//$'\r'/}
    if [[ ! $content =~ ^[[:space:]]*([^[:space:]]+)[[:space:]]+([0-9]+)([[:space:]]+(.*))?$ ]]; then
        log "unreadable binlog info in $1"
        return 1
    fi
    BINLOG_FILE=${BASH_REMATCH[1]}
    # shellcheck disable=SC2034  # read by sidecar.sh, which sources this file
    BINLOG_POS=${BASH_REMATCH[2]}
    BINLOG_GTID=${BASH_REMATCH[4]//[[:space:]]/}
    if [[ ! $BINLOG_FILE =~ ^[A-Za-z0-9._-]+$ ]]; then
        log "binlog file name '$BINLOG_FILE' in $1 is not a plain file name"
        return 1
    fi
    # MySQL: uuid[:tag]:ranges,...   MariaDB: domain-server-seq,...
    if [[ ! $BINLOG_GTID =~ ^[0-9A-Za-z_:,-]*$ ]]; then
        log "GTID set '$BINLOG_GTID' in $1 has unexpected characters"
        return 1
    fi
    return 0
}

# mariadb_gtid_covers CURRENT WANTED: true when, for every replication domain of
# WANTED, CURRENT holds a sequence number at least as high (MariaDB GTID positions
# are one "domain-server-seq" per domain).
mariadb_gtid_covers() {
    local current=$1 wanted=$2 item domain seq
    declare -A have=()
    local IFS=,
    for item in $current; do
        [[ $item =~ ^([0-9]+)-[0-9]+-([0-9]+)$ ]] || continue
        have[${BASH_REMATCH[1]}]=${BASH_REMATCH[2]}
    done
    for item in $wanted; do
        [[ $item =~ ^([0-9]+)-[0-9]+-([0-9]+)$ ]] || return 1
        domain=${BASH_REMATCH[1]}
        seq=${BASH_REMATCH[2]}
        [[ -n ${have[$domain]:-} ]] && ((10#${have[$domain]} >= 10#$seq)) || return 1
    done
    return 0
}
