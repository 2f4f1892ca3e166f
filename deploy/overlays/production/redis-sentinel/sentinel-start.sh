#!/bin/sh
# Starts one Sentinel of the datastorage-redis-sentinel StatefulSet. It
# monitors the master the other Sentinels name (pod 0 of datastorage-redis on
# the very first start), quorum 2 of 3. Its config is written to /data, which
# it rewrites as it learns (replicas, other Sentinels, failovers).
set -eu
NS="${POD_NAMESPACE}"
SELF="$(hostname).datastorage-redis-sentinel.${NS}.svc.cluster.local"
PASSWORD="$(sed -n 's/^password:[[:space:]]*//p' /etc/datastorage/secrets/redis/credentials.yaml | sed 's/^"\(.*\)"$/\1/')"

MASTER=""
for i in 0 1 2; do
  S="datastorage-redis-sentinel-${i}.datastorage-redis-sentinel.${NS}.svc.cluster.local"
  [ "$S" = "$SELF" ] && continue
  MASTER="$(timeout 3 redis-cli -h "$S" -p 26379 --raw SENTINEL get-master-addr-by-name datastorage 2>/dev/null | head -n 1 || true)"
  [ -n "$MASTER" ] && break
done
if [ -z "$MASTER" ]; then
  MASTER="datastorage-redis-0.datastorage-redis.${NS}.svc.cluster.local"
fi

cat > /data/sentinel.conf <<CONF
port 26379
dir /data
sentinel resolve-hostnames yes
sentinel announce-hostnames yes
sentinel announce-ip ${SELF}
sentinel monitor datastorage ${MASTER} 6379 2
sentinel auth-pass datastorage ${PASSWORD}
sentinel down-after-milliseconds datastorage 10000
sentinel failover-timeout datastorage 60000
sentinel parallel-syncs datastorage 1
CONF
exec redis-server /data/sentinel.conf --sentinel
