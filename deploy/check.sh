#!/usr/bin/env bash
# Checks the deployment files in deploy/ (not deploy/monitoring/, which has its
# own check.sh):
#
#   1. Kubernetes manifests against the Kubernetes JSON schemas (strict: unknown
#      fields are errors), with kubernetes-validate from PyPI, for each version
#      in K8S_VERSIONS: every file, and the `kubectl kustomize` output when
#      kubectl is installed.
#   2. Structural assertions (deploy/lint_deploy.py): non-root, read-only root
#      filesystem, all capabilities dropped, probes on the admin port, the admin
#      port not public, PDB/HPA/NetworkPolicy wired to the Deployment, config
#      mounts matching the gateway file, Sentinel wiring, the systemd unit's
#      hardening, the Dockerfile's final stage; the shipped gateway and policy
#      files against schemas/portcullis/*.json. With a portcullis binary at
#      hand, `portcullis check` on the Kubernetes and container configurations.
#   3. `systemd-analyze verify` and `systemd-analyze security --offline` on the
#      unit, when systemd-analyze is installed.
#   4. The docker compose quickstart (deploy/compose/check.py), offline: the
#      Compose Specification's JSON Schema, hardening (non-root, read-only,
#      no capabilities, admin/Prometheus/Grafana on 127.0.0.1 only, upstream
#      and Redis unpublished), the wiring of its files, init.sh in a temporary
#      directory, `portcullis check` on its layout with a binary at hand. No
#      container engine runs; `docker compose config -q` only where the
#      compose plugin is installed.
#
# Run from the repository root:   bash deploy/check.sh
#
# Environment:
#     K8S_VERSIONS="1.30.0 1.37.0"  Kubernetes versions to validate against
#     PORTCULLIS_BIN=path           binary for `portcullis check` (default: the newer of
#                                   target/release/portcullis and target/debug/portcullis)
#     PORTCULLIS_NO_INSTALL=1       fail instead of installing kubernetes-validate
#     PORTCULLIS_DEPLOY_DIR=dir     check this copy of deploy/ instead
#
# kubernetes-validate is installed once into a venv under ${TMPDIR:-/tmp}.
# Exits non-zero, with lines starting "check.sh: FAIL:", on the first failing step.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"
cd "$root"
deploy="${PORTCULLIS_DEPLOY_DIR:-$here}"
k8s="$deploy/kubernetes"
K8S_VERSIONS="${K8S_VERSIONS:-1.30.0 1.37.0}"
KV_VERSION=1.37.0

fail() {
    echo "check.sh: FAIL: $*" >&2
    exit 1
}

step() {
    echo "==> $*"
}

for f in kubernetes/kustomization.yaml kubernetes/secret.template.yaml kubernetes/redis/configure.sh \
    systemd/portcullis.service container/Dockerfile container/portcullis.yaml lint_deploy.py \
    compose/compose.yaml compose/check.py compose/init.sh; do
    [[ -f "$deploy/$f" ]] || fail "missing file $deploy/$f"
done
command -v python3 >/dev/null 2>&1 || fail "python3 not found"

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

# --- kubernetes-validate (PyPI), in a venv of its own ---------------------------

venv="${TMPDIR:-/tmp}/portcullis-deploy-check-venv-$KV_VERSION"
py="$venv/bin/python"
# .complete is written last, so an interrupted install is redone.
if [[ ! -f "$venv/.complete" ]] || ! "$py" -c 'import kubernetes_validate, yaml' >/dev/null 2>&1; then
    if [[ "${PORTCULLIS_NO_INSTALL:-}" == 1 ]]; then
        fail "kubernetes-validate is not installed in $venv and PORTCULLIS_NO_INSTALL=1"
    fi
    step "installing kubernetes-validate==$KV_VERSION (PyPI) into $venv"
    start=$SECONDS
    rm -rf "$venv"
    if ! python3 -m venv "$venv" >/dev/null 2>&1; then
        # Debian's own python3 needs python3-venv for `-m venv`.
        if command -v apt-get >/dev/null 2>&1 && [[ "$(id -u)" == 0 ]]; then
            DEBIAN_FRONTEND=noninteractive apt-get install -y -q python3-venv >/dev/null \
                || fail "python3 -m venv failed and python3-venv could not be installed"
            rm -rf "$venv"
            python3 -m venv "$venv" || fail "python3 -m venv $venv failed"
        else
            fail "python3 -m venv failed; install python3-venv"
        fi
    fi
    "$venv/bin/pip" install --quiet --disable-pip-version-check "kubernetes-validate==$KV_VERSION" \
        || fail "pip install kubernetes-validate==$KV_VERSION failed"
    touch "$venv/.complete"
    echo "    (install took $((SECONDS - start))s)"
fi
kv() { "$py" -m kubernetes_validate "$@"; }
echo "kubernetes-validate $(kv --version 2>&1 | tail -n1); schemas for Kubernetes $("$py" -c 'import kubernetes_validate.utils as u; v=u.all_versions(); print(v[0], "to", v[-1])')"

# --- 1. schemas -----------------------------------------------------------------

mapfile -t manifests < <(find "$k8s" -name '*.yaml' ! -name kustomization.yaml | sort)
[[ ${#manifests[@]} -gt 0 ]] || fail "no manifests under $k8s"
rendered=""
if command -v kubectl >/dev/null 2>&1; then
    step "kubectl kustomize $k8s"
    kubectl kustomize "$k8s" >"$tmp/rendered.yaml" 2>"$tmp/kustomize.err" \
        || { cat "$tmp/kustomize.err" >&2; fail "kubectl kustomize $k8s failed"; }
    rendered="$tmp/rendered.yaml"
else
    echo "check.sh: kubectl not found: skipping the kustomize render (each file is still validated)"
fi
for v in $K8S_VERSIONS; do
    step "kubernetes-validate --strict -k $v (${#manifests[@]} files${rendered:+ and the kustomize output})"
    kv --strict --quiet -k "$v" "${manifests[@]}" \
        || fail "a manifest under $k8s does not validate against Kubernetes $v (above)"
    if [[ -n "$rendered" ]]; then
        kv --strict --quiet -k "$v" "$rendered" \
            || fail "the kustomize output of $k8s does not validate against Kubernetes $v (above)"
    fi
done

step "sh -n $k8s/redis/configure.sh"
sh -n "$k8s/redis/configure.sh" || fail "$k8s/redis/configure.sh has a syntax error"

# --- 2. structure ---------------------------------------------------------------

bin="${PORTCULLIS_BIN:-}"
if [[ -z "$bin" ]]; then
    # The newer of the release and debug builds, if any.
    for candidate in target/release/portcullis target/debug/portcullis; do
        if [[ -x "$candidate" ]] && { [[ -z "$bin" ]] || [[ "$candidate" -nt "$bin" ]]; }; then bin="$candidate"; fi
    done
fi
lint_args=(--deploy "$deploy")
if [[ -n "$bin" ]] && command -v openssl >/dev/null 2>&1; then
    [[ -x "$bin" ]] || fail "PORTCULLIS_BIN=$bin is not an executable"
    lint_args+=(--portcullis "$bin")
    step "lint_deploy.py (structure; \`$bin check\` on the shipped configurations)"
else
    step "lint_deploy.py (structure; no portcullis binary or openssl: skipping \`portcullis check\`)"
fi
"$py" "$deploy/lint_deploy.py" "${lint_args[@]}" || fail "structural checks (lint_deploy.py, above)"

# --- 3. systemd-analyze ----------------------------------------------------------

unit="$deploy/systemd/portcullis.service"
if command -v systemd-analyze >/dev/null 2>&1; then
    # verify insists that ExecStart's binary exists: where it is not
    # installed, a copy of the unit points at a stub instead.
    mkdir -p "$tmp/unit"
    if [[ -x /usr/local/bin/portcullis ]]; then
        cp "$unit" "$tmp/unit/portcullis.service"
    else
        printf '#!/bin/sh\nexit 0\n' >"$tmp/unit/portcullis-stub"
        chmod 0755 "$tmp/unit/portcullis-stub"
        sed "s#/usr/local/bin/portcullis#$tmp/unit/portcullis-stub#g" "$unit" >"$tmp/unit/portcullis.service"
    fi
    step "systemd-analyze verify $unit ($(systemd-analyze --version | head -n1))"
    systemd-analyze verify "$tmp/unit/portcullis.service" 2>&1 | tee "$tmp/verify.out"
    [[ "${PIPESTATUS[0]}" == 0 && ! -s "$tmp/verify.out" ]] || fail "systemd-analyze verify $unit (above)"
    if systemd-analyze security --help 2>&1 | grep -q -- '--offline'; then
        # --threshold counts in tenths: 20 = an exposure of 2.0.
        step "systemd-analyze security --offline=yes --threshold=20 $unit"
        systemd-analyze security --offline=yes --threshold=20 "$tmp/unit/portcullis.service" >"$tmp/security.out" 2>&1 \
            || { grep -E '^✗|Overall' "$tmp/security.out" >&2; fail "systemd-analyze security: exposure above 2.0 for $unit"; }
        grep 'Overall exposure' "$tmp/security.out" | sed 's/^→ /    /'
    else
        echo "check.sh: systemd-analyze has no --offline (systemd < 250): skipping the exposure score"
    fi
else
    echo "check.sh: systemd-analyze not found: skipping systemd-analyze verify/security (the unit's directives were still checked)"
fi

# --- 4. docker compose quickstart (offline) ----------------------------------------

compose_args=(--dir "$deploy/compose" --require-jsonschema)
if [[ -n "$bin" ]] && command -v openssl >/dev/null 2>&1; then
    compose_args+=(--portcullis "$bin")
    step "compose/check.py (schema, hardening, wiring, init.sh; \`$bin check\` on the compose layout)"
else
    step "compose/check.py (schema, hardening, wiring, init.sh; no portcullis binary or openssl: skipping \`portcullis check\`)"
fi
"$py" "$deploy/compose/check.py" "${compose_args[@]}" || fail "docker compose quickstart (compose/check.py, above)"

echo "check.sh: OK: deploy/ manifests, unit, Dockerfile and compose quickstart pass"
