#!/bin/sh
# Starts one Redis server of the datastorage-redis StatefulSet. The current
# master is whoever the Sentinels name; only when none answers (the very first
# start) is pod 0 the master and the others its replicas. Every server
# announces its stable DNS name, so the Sentinels (resolve-hostnames yes) keep
# knowing it across pod restarts and new IPs.
set -eu
NS="${POD_NAMESPACE}"
SELF="$(hostname).datastorage-redis.${NS}.svc.cluster.local"
PASSWORD="$(sed -n 's/^password:[[:space:]]*//p' /etc/datastorage/secrets/redis/credentials.yaml | sed 's/^"\(.*\)"$/\1/')"

MASTER=""
for i in 0 1 2; do
  S="datastorage-redis-sentinel-${i}.datastorage-redis-sentinel.${NS}.svc.cluster.local"
  MASTER="$(timeout 3 redis-cli -h "$S" -p 26379 --raw SENTINEL get-master-addr-by-name datastorage 2>/dev/null | head -n 1 || true)"
  [ -n "$MASTER" ] && break
done
if [ -z "$MASTER" ]; then
  MASTER="datastorage-redis-0.datastorage-redis.${NS}.svc.cluster.local"
fi

set -- redis-server --port 6379 --dir /data \
  --appendonly yes --appendfsync everysec --save "" \
  --requirepass "$PASSWORD" --masterauth "$PASSWORD" \
  --replica-announce-ip "$SELF"
if [ "$MASTER" != "$SELF" ]; then
  set -- "$@" --replicaof "$MASTER" 6379
fi
exec "$@"
