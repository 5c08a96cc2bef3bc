#!/usr/bin/env bash
# Creates the secrets of the docker compose quickstart (deploy/compose/compose.yaml)
# with openssl, and names their directory in deploy/compose/.env, which
# compose reads (PORTCULLIS_COMPOSE_SECRETS). Neither is committed
# (deploy/compose/.gitignore).
#
#     bash deploy/compose/init.sh [DIR]     # default: deploy/compose/secrets
#
# PORTCULLIS_COMPOSE_ENV=FILE writes the variable to FILE instead of
# deploy/compose/.env (deploy/compose/check.py uses it to try this script in a
# temporary directory).
#
# Files (each is mounted into the containers that need it as /run/secrets/<name>):
#   gateway.pem, gateway.key   self-signed P-256 certificate for localhost and
#                              127.0.0.1, valid 30 days: a quickstart
#                              certificate, not one to put in front of partners
#   pepper                     keys.pepper_file: 64 hex characters
#   admin-token                admin.token_file: the admin API's bearer token
#   audit-chain-key            audit.chain_key_file
#   redis-password             keys.redis.password_file (and the Redis healthcheck)
#   redis-auth.conf            `requirepass "<the same password>"`, included by redis.conf
#   grafana-admin-password     Grafana's `admin` password
#
# Existing files are kept, so running it again is safe: delete a file to
# have it made anew. A new pepper invalidates every issued key; a new Redis
# password needs both redis-password and redis-auth.conf deleted.
#
# Permissions: the directory is 0700, so no other user of this host can read
# it; the files are 0644, because the containers read them through bind
# mounts as their own users (65532 gateway, 999 Redis, 472 Grafana), which
# are not this host user. Inside the containers only those files are visible.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
default_dir="$here/secrets"
dir="${1:-$default_dir}"
env_file="${PORTCULLIS_COMPOSE_ENV:-$here/.env}"

if [[ "${1:-}" == "-h" || "${1:-}" == "--help" ]]; then
    sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d' | sed 's/^# \{0,1\}//'
    exit 0
fi
[[ $# -le 1 ]] || { echo "init.sh: usage: bash deploy/compose/init.sh [DIR]" >&2; exit 2; }
command -v openssl >/dev/null 2>&1 || { echo "init.sh: openssl not found" >&2; exit 1; }

umask 077
mkdir -p "$dir"
chmod 0700 "$dir"
dir="$(cd "$dir" && pwd)"

made=()
kept=()

# write NAME CONTENT: CONTENT into DIR/NAME (0644) unless that exists. A
# function argument, not a pipe: the arrays above must see the result, and
# no secret appears in a process's arguments.
write() {
    local target="$dir/$1"
    if [[ -s "$target" ]]; then
        kept+=("$1")
        return
    fi
    # `$(openssl ...)` in an argument does not stop the script when it fails.
    [[ -n "${2//[[:space:]]/}" ]] || { echo "init.sh: could not generate $1 (openssl failed?)" >&2; exit 1; }
    local tmp
    tmp="$(mktemp "$dir/.$1.XXXXXX")"
    printf '%s' "$2" >"$tmp"
    chmod 0644 "$tmp"
    mv -f "$tmp" "$target"
    made+=("$1")
}

hex32() { openssl rand -hex 32; }

# TLS: both files together, or neither.
if [[ -s "$dir/gateway.pem" && -s "$dir/gateway.key" ]]; then
    kept+=(gateway.pem gateway.key)
else
    tmpd="$(mktemp -d "$dir/.tls.XXXXXX")"
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
        -keyout "$tmpd/gateway.key" -out "$tmpd/gateway.pem" -days 30 \
        -subj "/CN=localhost" -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
        >/dev/null 2>"$tmpd/err" || { cat "$tmpd/err" >&2; rm -rf "$tmpd"; echo "init.sh: openssl req failed" >&2; exit 1; }
    chmod 0644 "$tmpd/gateway.key" "$tmpd/gateway.pem"
    mv -f "$tmpd/gateway.key" "$dir/gateway.key"
    mv -f "$tmpd/gateway.pem" "$dir/gateway.pem"
    rm -rf "$tmpd"
    made+=(gateway.pem gateway.key)
fi

write pepper "$(hex32)"$'\n'
write admin-token "$(hex32)"$'\n'
write audit-chain-key "$(hex32)"$'\n'

# The Redis password: one value in two files, or neither is made anew.
if [[ -s "$dir/redis-password" && -s "$dir/redis-auth.conf" ]]; then
    kept+=(redis-password redis-auth.conf)
elif [[ -e "$dir/redis-password" || -e "$dir/redis-auth.conf" ]]; then
    echo "init.sh: only one of $dir/redis-password and redis-auth.conf exists; delete both to make a new Redis password" >&2
    exit 1
else
    password="$(hex32)"
    write redis-password "$password"$'\n'
    write redis-auth.conf "requirepass \"$password\""$'\n'
    unset password
fi

# No trailing newline: Grafana uses the file's content as it is.
write grafana-admin-password "$(openssl rand -hex 16)"

# compose reads .env beside compose.yaml. A relative path there is relative
# to compose.yaml's directory.
if [[ "$dir" == "$default_dir" ]]; then
    value="./secrets"
else
    value="$dir"
fi
line="PORTCULLIS_COMPOSE_SECRETS=$value"
if [[ -f "$env_file" ]] && grep -q '^PORTCULLIS_COMPOSE_SECRETS=' "$env_file"; then
    if ! grep -qxF "$line" "$env_file"; then
        tmp="$(mktemp "$env_file.XXXXXX")"
        grep -v '^PORTCULLIS_COMPOSE_SECRETS=' "$env_file" >"$tmp" || true
        echo "$line" >>"$tmp"
        mv -f "$tmp" "$env_file"
    fi
else
    echo "$line" >>"$env_file"
fi
chmod 0600 "$env_file"

[[ ${#made[@]} -eq 0 ]] || echo "init.sh: created in $dir: ${made[*]}"
[[ ${#kept[@]} -eq 0 ]] || echo "init.sh: kept in $dir: ${kept[*]}"
echo "init.sh: $env_file: $line"
echo "init.sh: next: docker compose -f ${here#"$PWD"/}/compose.yaml up --build"
