#!/usr/bin/env bash
# Checks the monitoring deployment files: the Prometheus scrape config, the
# alert rules and their unit tests (promtool), and that the Grafana dashboard
# and the alert rules only use metric names listed in metrics.txt.
#
# Run from anywhere (CI runs it from the repo root):
#     bash deploy/monitoring/check.sh
#
# Environment:
#     PROMTOOL=/path/to/promtool   use this promtool instead of the one on PATH
#     PORTCULLIS_NO_INSTALL=1      fail instead of installing promtool when absent
#
# Exits non-zero, with a line starting "check.sh: FAIL:", on the first failure.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
cd "$root"
mon=deploy/monitoring

fail() {
    echo "check.sh: FAIL: $*" >&2
    exit 1
}

step() {
    echo "==> $*"
}

for f in prometheus.yml alerts.yml alerts.test.yml metrics.txt grafana/portcullis.json lint_metrics.py; do
    [[ -f "$mon/$f" ]] || fail "missing file $mon/$f"
done

# --- promtool -----------------------------------------------------------------

policy_rc_created=0
cleanup() {
    if [[ "$policy_rc_created" == 1 ]]; then
        $sudo rm -f /usr/sbin/policy-rc.d || true
    fi
}
trap cleanup EXIT

sudo=""
install_promtool() {
    if [[ "${PORTCULLIS_NO_INSTALL:-}" == 1 ]]; then
        fail "promtool not found and PORTCULLIS_NO_INSTALL=1; install the Prometheus package (it ships promtool)"
    fi
    if ! command -v apt-get >/dev/null 2>&1; then
        fail "promtool not found and apt-get is not available; install Prometheus (promtool) >= 2.37 and re-run, or set PROMTOOL"
    fi
    if [[ "$(id -u)" != 0 ]]; then
        if command -v sudo >/dev/null 2>&1; then
            sudo="sudo"
        else
            fail "promtool not found; installing it needs root (or sudo), which this user does not have"
        fi
    fi
    step "installing promtool (Debian package 'prometheus')"
    # Keep the package's postinst from starting a Prometheus server: a
    # policy-rc.d that denies every start (exit 101) is honoured by invoke-rc.d
    # and deb-systemd-invoke. Only ours is removed afterwards.
    if [[ ! -e /usr/sbin/policy-rc.d ]]; then
        printf '#!/bin/sh\n# temporary, from deploy/monitoring/check.sh\nexit 101\n' \
            | $sudo tee /usr/sbin/policy-rc.d >/dev/null
        $sudo chmod 0755 /usr/sbin/policy-rc.d
        policy_rc_created=1
    fi
    local start=$SECONDS
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -q \
        || echo "check.sh: warning: apt-get update failed; trying the install with the lists there are" >&2
    # A failing service start inside a container must not end the script:
    # what matters is whether promtool is there afterwards.
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends prometheus \
        || echo "check.sh: warning: apt-get install exited non-zero (a service start can fail in a container); checking for promtool" >&2
    echo "    (install took $((SECONDS - start))s)"
    cleanup
    policy_rc_created=0
    hash -r
    command -v promtool >/dev/null 2>&1 \
        || fail "promtool still not found after installing the 'prometheus' package"
}

if [[ -n "${PROMTOOL:-}" ]]; then
    [[ -x "$PROMTOOL" ]] || fail "PROMTOOL=$PROMTOOL is not an executable"
    promtool="$PROMTOOL"
else
    command -v promtool >/dev/null 2>&1 || install_promtool
    promtool="$(command -v promtool)"
fi
echo "promtool: $promtool ($("$promtool" --version 2>&1 | head -n1))"

step "promtool check config $mon/prometheus.yml"
"$promtool" check config "$mon/prometheus.yml" || fail "promtool check config $mon/prometheus.yml"

step "promtool check rules $mon/alerts.yml"
"$promtool" check rules "$mon/alerts.yml" || fail "promtool check rules $mon/alerts.yml"

step "promtool test rules $mon/alerts.test.yml"
"$promtool" test rules "$mon/alerts.test.yml" || fail "promtool test rules $mon/alerts.test.yml (an alert unit test failed)"

# --- metric names and dashboard structure ---------------------------------------

command -v python3 >/dev/null 2>&1 || fail "python3 not found (needed for the dashboard and metric-name checks)"
tmp="$(mktemp -d)"
trap 'cleanup; rm -rf "$tmp"' EXIT
step "python3 $mon/lint_metrics.py (dashboard structure; metric names against metrics.txt)"
python3 "$mon/lint_metrics.py" \
    --metrics "$mon/metrics.txt" \
    --dashboard "$mon/grafana/portcullis.json" \
    --rules "$mon/alerts.yml" \
    --tests "$mon/alerts.test.yml" \
    --emit-dashboard-rules "$tmp/dashboard-rules.yml" \
    || fail "dashboard / metric-name lint ($mon/lint_metrics.py)"

step "promtool check rules <dashboard expressions> (every panel's PromQL parses)"
"$promtool" check rules "$tmp/dashboard-rules.yml" \
    || fail "a PromQL expression in $mon/grafana/portcullis.json does not parse (rule dashboard:panel_<id>_<refId> above)"

echo "check.sh: OK: monitoring config, alert rules, alert tests and dashboard all pass"
