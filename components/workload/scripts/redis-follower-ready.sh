#!/bin/sh
# readiness of a Redis follower (guestbook.py): it answers AND its link to the leader is up.
#
# `redis-cli ping` answers PONG from a follower that has not synced yet (empty, or still loading the
# leader's snapshot) and from one whose leader is gone: the frontend would read an empty or stale
# guestbook through the follower Service. INFO replication says master_link_status:up only once the
# initial sync completed and the link stands (https://redis.io/docs/latest/commands/info/). Liveness
# stays `ping`: a follower whose leader is away is waiting, not broken.
set -eu

port=${REDIS_PORT:-6379}
if ! info=$(redis-cli -p "$port" info replication 2>&1); then
    echo "redis does not answer on port $port: $info"
    exit 1
fi
case $info in
*"master_link_status:up"*) exit 0 ;;
*"role:master"*)
    echo "this redis is no follower (role:master)"
    exit 1 ;;
esac
state=$(printf '%s\n' "$info" | tr -d '\r' | grep -E '^(master_host|master_port|master_link_status|master_sync_in_progress|master_link_down_since_seconds):' | tr '\n' ' ')
echo "not linked to the leader yet: $state"
exit 1
