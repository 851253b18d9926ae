#!/usr/bin/env bash
# datadir-guard (first thing clone-mysql runs, before mysqld can start): refuse a data dir that this
# pod's server must not open.
#
# A server of another engine, or an older version than the one that last opened the data dir, does
# not refuse cleanly on its own: MariaDB opening a MySQL 8 data dir, or 10.11 opening an 11.4 one,
# gets as far as InnoDB recovery (which writes redo and undo) before it fails, and the pod
# crash-loops on a data dir it may have damaged. This check reads only: on a refusal it exits with
# one FATAL line, the init container fails and mysqld never starts, so the data dir is left exactly
# as it was (tests/components/workload/mysql/test_datadir_guard_real.py hashes it).
#
# What the data dir says about itself:
#   mysql.ibd (the MySQL 8 data dictionary)           -> mysql
#   aria_log_control (Aria, MariaDB's own engine)     -> mariadb
#   mariadb_upgrade_info / mysql_upgrade_info         -> the version that last upgraded it
#                                                        ("10.11.19-MariaDB"; MySQL < 8.0.16 wrote "8.0.15")
#   <data dir>.server (written here, next to the data dir, never in it) -> "<engine> <major.minor>"
#                                                        the version this set last started on it:
#                                                        MySQL 8.0.16+ writes no version file of its own
# The server's own engine and version come from the pod's environment (MYSQL_ENGINE, MYSQL_VERSION,
# major.minor: the stack's mysqlEngine and mysqlVersion). A newer server than the data dir is an
# upgrade and is allowed (the program allows only the supported steps, settings/load.py).
set -euo pipefail
# shellcheck source=common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

: "${MYSQL_VERSION:?MYSQL_VERSION (major.minor of the server this pod runs) must be set}"
[[ $MYSQL_VERSION =~ ^[0-9]+\.[0-9]+$ ]] || die "MYSQL_VERSION=$MYSQL_VERSION: expected major.minor, e.g. 8.4 or 11.4"
data=${MYSQL_DATA_DIR%/}
record="$data.server"

# major.minor of a version string such as 10.11.19-MariaDB-0+deb12u1; empty when it has none.
major_minor() {
    [[ $1 =~ ^([0-9]+)\.([0-9]+) ]] && printf '%s.%s' "${BASH_REMATCH[1]}" "${BASH_REMATCH[2]}"
    return 0
}

# 0 when major.minor $1 is newer than $2.
newer_than() {
    local a_major=${1%%.*} a_minor=${1#*.} b_major=${2%%.*} b_minor=${2#*.}
    ((10#$a_major > 10#$b_major || (10#$a_major == 10#$b_major && 10#$a_minor > 10#$b_minor)))
}

found_engine="" found_version="" evidence=""
if [[ -e $data/mysql.ibd ]]; then
    found_engine=mysql evidence="mysql.ibd"
fi
if [[ -e $data/aria_log_control ]]; then
    [[ -z $found_engine ]] || die "data dir $data holds both mysql.ibd and aria_log_control: not a data dir this set made; inspect it"
    found_engine=mariadb evidence="aria_log_control"
fi
for info in mariadb_upgrade_info mysql_upgrade_info; do
    [[ -f $data/$info ]] || continue
    text=$(<"$data/$info")
    found_version=$(major_minor "$text")
    if [[ $text == *MariaDB* ]]; then info_engine=mariadb; else info_engine=mysql; fi
    if [[ -n $found_engine && $found_engine != "$info_engine" ]]; then
        die "data dir $data: $evidence says $found_engine but $info says '$text': inspect it"
    fi
    found_engine=$info_engine evidence="$info ($text)"
    break
done
if [[ -f $record ]]; then
    read -r recorded_engine recorded_version _ <"$record" || true
    if [[ -n $found_engine && $recorded_engine != "$found_engine" ]]; then
        die "data dir $data: $evidence says $found_engine but $record says $recorded_engine: inspect it"
    fi
    found_engine=${found_engine:-$recorded_engine}
    # The newer of the two: a MariaDB info file lags until mariadb-upgrade runs, the record does not.
    if [[ -z $found_version ]] || newer_than "$recorded_version" "$found_version"; then
        found_version=$recorded_version evidence="$record ($recorded_engine $recorded_version)"
    fi
fi

if [[ -n $found_engine && $found_engine != "$MYSQL_ENGINE" ]]; then
    die "data dir $data was made by $found_engine ($evidence); this pod runs $MYSQL_ENGINE $MYSQL_VERSION, which cannot open it: set mysqlEngine=$found_engine back (an engine switch needs a dump and a new set)"
fi
if [[ -n $found_version ]] && newer_than "$found_version" "$MYSQL_VERSION"; then
    die "data dir $data was last opened by $found_engine $found_version ($evidence); this pod runs $MYSQL_ENGINE $MYSQL_VERSION, and a server never opens a newer data dir: set mysqlVersion=$found_version back"
fi
if [[ -z $found_engine ]]; then
    log "data dir $data holds no server yet: nothing to check"
else
    log "data dir $data: $found_engine ${found_version:-(version not recorded)} may be opened by $MYSQL_ENGINE $MYSQL_VERSION"
fi
# Written after the checks, beside the data dir: what the next start of this pod compares against.
if [[ ! -f $record ]] || [[ $(<"$record") != "$MYSQL_ENGINE $MYSQL_VERSION" ]]; then
    mkdir -p "$(dirname "$record")"  # the volume's root: there in a pod, perhaps not yet in a rehearsal
    printf '%s %s\n' "$MYSQL_ENGINE" "$MYSQL_VERSION" >"$record.tmp"
    mv "$record.tmp" "$record"
fi
