#!/bin/sh
# Writes this pod's redis.conf and sentinel.conf (run by the init container of
# deploy/kubernetes/redis/statefulset.yaml; kept in the `redis-scripts`
# ConfigMap). The master is whatever a running Sentinel says it is; when no
# Sentinel answers (first start of the whole set), DEFAULT_MASTER is.
#
# Environment (the StatefulSet sets the first four; the rest have defaults):
#   POD_NAME, NAMESPACE        from the downward API
#   STS_NAME, HEADLESS         the StatefulSet and its headless Service
#   REPLICAS                   number of pods (default 3)
#   CLUSTER_DOMAIN             default cluster.local
#   SELF_HOST                  name others reach this pod by (default: its FQDN)
#   SENTINEL_PEERS             "host:port ..." of every Sentinel (default: all pods' FQDNs)
#   DEFAULT_MASTER             "host:port" (default: pod 0)
#   REDIS_PORT, SENTINEL_PORT  default 6379, 26379
#   MASTER_NAME, QUORUM        default portcullis, 2
#   PASSWORD_FILE              Redis AUTH password (default /secrets/password)
#   SENTINEL_PASSWORD_FILE     password of the Sentinels' peer user (default /secrets/sentinel-password)
#   CONF_DIR, DATA_DIR         default /conf, /data
set -eu

: "${REPLICAS:=3}"
: "${CLUSTER_DOMAIN:=cluster.local}"
: "${REDIS_PORT:=6379}"
: "${SENTINEL_PORT:=26379}"
: "${MASTER_NAME:=portcullis}"
: "${QUORUM:=2}"
: "${PASSWORD_FILE:=/secrets/password}"
: "${SENTINEL_PASSWORD_FILE:=/secrets/sentinel-password}"
: "${CONF_DIR:=/conf}"
: "${DATA_DIR:=/data}"

fqdn() { echo "$1.${HEADLESS}.${NAMESPACE}.svc.${CLUSTER_DOMAIN}"; }

if [ -z "${SELF_HOST:-}" ]; then SELF_HOST="$(fqdn "$POD_NAME")"; fi
if [ -z "${SENTINEL_PEERS:-}" ]; then
    SENTINEL_PEERS=""
    i=0
    while [ "$i" -lt "$REPLICAS" ]; do
        SENTINEL_PEERS="$SENTINEL_PEERS $(fqdn "$STS_NAME-$i"):$SENTINEL_PORT"
        i=$((i + 1))
    done
fi
if [ -z "${DEFAULT_MASTER:-}" ]; then DEFAULT_MASTER="$(fqdn "$STS_NAME-0"):$REDIS_PORT"; fi

read_secret() {
    value="$(cat "$1")"
    case "$value" in
        "" | *[!A-Za-z0-9_.+/=-]*)
            echo "configure.sh: $1 must be non-empty and use only A-Z a-z 0-9 _ . + / = -" >&2
            exit 1 ;;
    esac
    echo "$value"
}
password="$(read_secret "$PASSWORD_FILE")"
sentinel_password="$(read_secret "$SENTINEL_PASSWORD_FILE")"

# Ask every other Sentinel for the current master.
master=""
for peer in $SENTINEL_PEERS; do
    [ "$peer" = "$SELF_HOST:$SENTINEL_PORT" ] && continue
    reply="$(REDISCLI_AUTH="" timeout 3 redis-cli --raw -h "${peer%:*}" -p "${peer##*:}" \
        SENTINEL get-master-addr-by-name "$MASTER_NAME" 2>/dev/null || true)"
    host="$(echo "$reply" | sed -n 1p)"
    port="$(echo "$reply" | sed -n 2p)"
    case "$port" in
        "" | *[!0-9]*) continue ;;
    esac
    if [ -n "$host" ]; then
        master="$host:$port"
        echo "configure.sh: Sentinel $peer names master $master"
        break
    fi
done
if [ -z "$master" ]; then
    master="$DEFAULT_MASTER"
    echo "configure.sh: no Sentinel answered; default master $master"
fi
master_host="${master%:*}"
master_port="${master##*:}"

umask 077
mkdir -p "$CONF_DIR"
{
    echo "bind * -::*"
    echo "port $REDIS_PORT"
    echo "dir $DATA_DIR"
    echo "appendonly yes"
    echo "requirepass \"$password\""
    echo "masterauth \"$password\""
    echo "replica-announce-ip $SELF_HOST"
    echo "replica-announce-port $REDIS_PORT"
    echo "maxmemory-policy noeviction"
    if [ "$master_host:$master_port" != "$SELF_HOST:$REDIS_PORT" ]; then
        echo "replicaof $master_host $master_port"
    fi
} > "$CONF_DIR/redis.conf"

{
    echo "port $SENTINEL_PORT"
    echo "dir $CONF_DIR"
    echo "sentinel resolve-hostnames yes"
    echo "sentinel announce-hostnames yes"
    echo "sentinel announce-ip $SELF_HOST"
    echo "sentinel announce-port $SENTINEL_PORT"
    # Clients (the gateway, this script) may only look the master up; the
    # Sentinels talk to each other as `sentinel-peer`. Without this anyone who
    # reaches port 26379 could point every gateway at another Redis.
    echo "user default on nopass resetchannels -@all +ping +role +sentinel|masters +sentinel|master +sentinel|slaves +sentinel|replicas +sentinel|sentinels +sentinel|get-master-addr-by-name"
    echo "user sentinel-peer on >$sentinel_password allchannels +@all"
    echo "sentinel sentinel-user sentinel-peer"
    echo "sentinel sentinel-pass $sentinel_password"
    echo "sentinel monitor $MASTER_NAME $master_host $master_port $QUORUM"
    echo "sentinel auth-pass $MASTER_NAME $password"
    echo "sentinel down-after-milliseconds $MASTER_NAME 5000"
    echo "sentinel failover-timeout $MASTER_NAME 60000"
    echo "sentinel parallel-syncs $MASTER_NAME 1"
} > "$CONF_DIR/sentinel.conf"

echo "configure.sh: $SELF_HOST is $( [ "$master_host:$master_port" = "$SELF_HOST:$REDIS_PORT" ] && echo master || echo "replica of $master")"
