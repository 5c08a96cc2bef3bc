#!/usr/bin/env bash
# Portcullis side by side with nginx, HAProxy and a bare pingora proxy, the
# direct upstream as the floor: installs what is missing (Debian packages
# nginx-light, haproxy, wrk, nghttp2-client; oha and pingap from crates.io), builds the
# release binaries, then runs `compare` with the arguments given, e.g.
#   benches/compare.sh --seconds 5 --rounds 3 --latency-seconds 30 --idle 10000
# Needs 2+ CPUs (the servers run on CPU 1, the upstream and the load tools on
# CPU 0) and root for apt-get when something is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
for pair in nginx:nginx-light haproxy:haproxy wrk:wrk h2load:nghttp2-client taskset:util-linux; do
  command -v "${pair%%:*}" >/dev/null || missing+=("${pair#*:}")
done
if ((${#missing[@]})); then
  echo "installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q >/dev/null
  apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
fi
# oha measures latency only; `--latency-seconds 0` needs none.
if [[ " $* " != *" --latency-seconds 0 "* ]]; then
  command -v oha >/dev/null || cargo install oha --locked --version 1.16.0
fi
# pingap, a peer gateway on pingora (a long build, once).
if ! command -v pingap >/dev/null; then
  command -v protoc >/dev/null || {
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q >/dev/null
    apt-get install -y -q --no-install-recommends protobuf-compiler >/dev/null
  }
  cargo install pingap --version 0.13.1 --locked
fi
if (($(nproc) < 2)); then
  echo "compare needs at least 2 CPUs (one for the servers, one for the load)" >&2
  exit 1
fi

cargo build --release -p portcullis -p portcullis-example-upstream -p portcullis-benches
# 10 000 idle connections need more descriptors than the usual soft limit.
ulimit -n "$(ulimit -Hn)"
exec target/release/compare "$@"
