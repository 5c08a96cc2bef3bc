#!/usr/bin/env bash
# A Portcullis cluster on loopback: three gateway nodes sharing keys and
# rate limits through Redis, with a replica and three Sentinels, so a Redis
# failover can be tried on one machine.
#
#   deploy/cluster/local-cluster.sh up DIR        start everything, wait until ready
#   deploy/cluster/local-cluster.sh failover DIR  kill the Redis master (SIGKILL)
#   deploy/cluster/local-cluster.sh down DIR      stop everything started in DIR
#
# Environment for `up`:
#   PORTCULLIS_BIN  the gateway binary        (default: target/release/portcullis)
#   UPSTREAM_URL    the upstream to route to  (default: http://127.0.0.1:8081, e.g.
#                   `cargo run --release -p portcullis-example-upstream`)
#
# `up` writes DIR/cluster.env (ports, files) and DIR/ca.pem; each node logs
# to DIR/nodeN.log and audits to DIR/nodeN-audit.log. Needs redis-server,
# openssl and python3 (to find free ports).
set -euo pipefail

cmd="${1:-}"
dir="${2:-}"
[[ -n "$cmd" && -n "$dir" ]] || { sed -n '2,16p' "$0" >&2; exit 2; }

stop_all() {
    [[ -f "$dir/pids" ]] || return 0
    while read -r pid; do
        kill -KILL "$pid" 2>/dev/null || true
    done < "$dir/pids"
    rm -f "$dir/pids"
}

case "$cmd" in
down)
    stop_all
    exit 0
    ;;
failover)
    # shellcheck disable=SC1091
    source "$dir/cluster.env"
    port=$(redis-cli -p "$SENTINEL1_PORT" sentinel get-master-addr-by-name portcullis | sed -n 2p)
    pid=$(redis-cli -p "$port" info server | tr -d '\r' | sed -n 's/^process_id://p')
    kill -KILL "$pid"
    echo "killed the Redis master on port $port (pid $pid)"
    exit 0
    ;;
up) ;;
*) echo "unknown command $cmd" >&2; exit 2 ;;
esac

bin="${PORTCULLIS_BIN:-target/release/portcullis}"
upstream="${UPSTREAM_URL:-http://127.0.0.1:8081}"
[[ -x "$bin" ]] || { echo "no gateway binary at $bin (cargo build --release -p portcullis)" >&2; exit 1; }
bin="$(cd "$(dirname "$bin")" && pwd)/$(basename "$bin")"
mkdir -p "$dir/policies"
dir="$(cd "$dir" && pwd)"
: > "$dir/pids"
trap 'echo "startup failed; see $dir/*.log" >&2; stop_all' ERR

read -r -a ports <<< "$(python3 - <<'PY'
import socket
socks = [socket.socket() for _ in range(11)]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in socks))
PY
)"
master=${ports[0]} replica=${ports[1]}
sentinels=("${ports[2]}" "${ports[3]}" "${ports[4]}")
https=("${ports[5]}" "${ports[6]}" "${ports[7]}")
admin=("${ports[8]}" "${ports[9]}" "${ports[10]}")

redis-server --bind 127.0.0.1 --port "$master" --dir "$dir" --dbfilename master.rdb \
    --save "" --appendonly no --repl-diskless-sync-delay 0 --logfile "$dir/redis-master.log" </dev/null >/dev/null 2>&1 &
echo $! >> "$dir/pids"
redis-server --bind 127.0.0.1 --port "$replica" --dir "$dir" --dbfilename replica.rdb \
    --save "" --appendonly no --replicaof 127.0.0.1 "$master" --logfile "$dir/redis-replica.log" \
    </dev/null >/dev/null 2>&1 &
echo $! >> "$dir/pids"
for i in 0 1 2; do
    cat > "$dir/sentinel$((i + 1)).conf" <<CONF
bind 127.0.0.1
port ${sentinels[$i]}
sentinel monitor portcullis 127.0.0.1 $master 2
sentinel down-after-milliseconds portcullis 1000
sentinel failover-timeout portcullis 5000
sentinel parallel-syncs portcullis 1
CONF
    redis-server "$dir/sentinel$((i + 1)).conf" --sentinel --logfile "$dir/sentinel$((i + 1)).log" \
        </dev/null >/dev/null 2>&1 &
    echo $! >> "$dir/pids"
done

# One certificate for all nodes (they serve the same name), a pepper and an
# admin token shared by the cluster.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
    -keyout "$dir/ca.key" -out "$dir/ca.pem" -subj "/CN=local cluster CA" 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
    -keyout "$dir/key.pem" -out "$dir/node.csr" -subj /CN=localhost 2>/dev/null
printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=critical,CA:FALSE\nextendedKeyUsage=serverAuth\n' > "$dir/node.ext"
openssl x509 -req -in "$dir/node.csr" -CA "$dir/ca.pem" -CAkey "$dir/ca.key" -CAcreateserial \
    -days 2 -extfile "$dir/node.ext" -out "$dir/node.pem" 2>/dev/null
rm -f "$dir/ca.key" "$dir/node.csr" "$dir/node.ext"
openssl rand -hex 32 > "$dir/pepper"
openssl rand -hex 32 > "$dir/admin-token"
chmod 600 "$dir/key.pem" "$dir/pepper" "$dir/admin-token"

cat > "$dir/policies/orders.yaml" <<YAML
partners:
  acme:
    limits:
      rate: {requests: 100000, per: 1m}
  globex: {}
upstreams:
  orders:
    url: $upstream
routes:
  - name: list-orders
    methods: [GET]
    path: /partners/{partner}/orders
    upstream: orders
YAML

for i in 0 1 2; do
    n=$((i + 1))
    cat > "$dir/node$n.yaml" <<YAML
listen:
  https: "127.0.0.1:${https[$i]}"
admin:
  address: "127.0.0.1:${admin[$i]}"
  token_file: admin-token
tls:
  certificate: node.pem
  private_key: key.pem
keys:
  store: redis
  pepper_file: pepper
  redis:
    sentinel:
      master: portcullis
      addresses: ["127.0.0.1:${sentinels[0]}", "127.0.0.1:${sentinels[1]}", "127.0.0.1:${sentinels[2]}"]
    timeout: 250ms
    lease: 2s
    replicas_ack: 1
policies: [policies/*.yaml]
reload:
  watch_interval: 0s
audit:
  output: file
  path: node$n-audit.log
server:
  threads: 1
  pid_file: node$n.pid
  upgrade_sock: node$n-upgrade.sock
YAML
done

# The replica must hold the data before anything can be written: a
# failover to an empty replica would lose every key.
for _ in $(seq 100); do
    redis-cli -p "$replica" info replication 2>/dev/null | grep -q "master_link_status:up" && break
    sleep 0.1
done
redis-cli -p "$replica" info replication | grep -q "master_link_status:up" \
    || { echo "the replica did not sync" >&2; false; }

# Every Sentinel must know the master, the replica and the two other
# Sentinels (they find each other through the master every 2 s): a master
# lost before that can never be failed over, as no quorum can form.
sentinel_ready() {
    local info
    info=$(redis-cli -p "$1" sentinel master portcullis 2>/dev/null | tr -d '\r') || return 1
    grep -A1 -x "num-other-sentinels" <<< "$info" | tail -n1 | grep -qx 2 &&
        grep -A1 -x "num-slaves" <<< "$info" | tail -n1 | grep -qx 1
}
for port in "${sentinels[@]}"; do
    for _ in $(seq 200); do
        sentinel_ready "$port" && break
        sleep 0.1
    done
    sentinel_ready "$port" || { echo "Sentinel on port $port never saw the whole group" >&2; false; }
done

for i in 0 1 2; do
    n=$((i + 1))
    (cd "$dir" && exec "$bin" run --config "node$n.yaml" </dev/null > "node$n.log" 2>&1) &
    echo $! >> "$dir/pids"
done

for i in 0 1 2; do
    ready=0
    for _ in $(seq 300); do
        if curl -fsS "http://127.0.0.1:${admin[$i]}/readyz" >/dev/null 2>&1; then
            ready=1
            break
        fi
        sleep 0.1
    done
    [[ $ready == 1 ]] || { echo "node $((i + 1)) is not ready" >&2; false; }
done

cat > "$dir/cluster.env" <<ENV
REDIS_MASTER_PORT=$master
REDIS_REPLICA_PORT=$replica
SENTINEL1_PORT=${sentinels[0]}
SENTINEL2_PORT=${sentinels[1]}
SENTINEL3_PORT=${sentinels[2]}
NODE1_HTTPS=127.0.0.1:${https[0]}
NODE2_HTTPS=127.0.0.1:${https[1]}
NODE3_HTTPS=127.0.0.1:${https[2]}
NODE1_ADMIN=127.0.0.1:${admin[0]}
NODE2_ADMIN=127.0.0.1:${admin[1]}
NODE3_ADMIN=127.0.0.1:${admin[2]}
CA=$dir/ca.pem
ADMIN_TOKEN_FILE=$dir/admin-token
ENV
trap - ERR
echo "cluster up: $dir/cluster.env"
