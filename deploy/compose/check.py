#!/usr/bin/env python3
"""Offline checks of the docker compose quickstart (deploy/compose/).

No container engine is needed, and none is started. Checks:

 1. compose.yaml as the Compose Specification requires: YAML without
    duplicate keys, variables interpolated as compose does (`$$`, `${VAR}`,
    `${VAR:-default}`, `${VAR:?error}`), then validated against the
    specification's JSON Schema when one is given (`--compose-spec FILE` or
    $COMPOSE_SPEC_SCHEMA: github.com/compose-spec/compose-spec's
    schema/compose-spec.json; it is not copied into this repository) and the
    jsonschema module is there; and, with or without it: top-level keys
    name/services/networks/volumes/secrets only (no `version`), each service
    with image or build, every port a string that parses, every network,
    volume, secret and depends_on reference defined.
 2. Hardening: the gateway non-root (the Dockerfile's USER), read_only, all
    capabilities dropped, no-new-privileges, tmpfs only where the gateway
    file writes, every mount read-only; the admin port (and Prometheus and
    Grafana) published on 127.0.0.1 only; the upstream and Redis not
    published; no service privileged, with added capabilities, host
    namespaces or the Docker socket; stop_grace_period above the gateway's
    drain; every bind-mounted host path present in the repository, every
    secret file one that init.sh writes; every ${VAR} documented in
    README.md; secrets/ and .env git-ignored.
 3. Wiring: the gateway file and the policies against
    schemas/portcullis/*.json; every file the gateway file names is a secret
    or mount the gateway service has; upstream and Redis addresses name
    services on a network the gateway shares, on the port they listen on;
    policies/orders.yaml here equals the repository's but for the upstream
    URL; Prometheus scrapes the gateway's admin port and loads alerts.yml;
    Grafana's data source and dashboard paths match their mounts.
 4. init.sh, when openssl is installed: run into a temporary directory
    (twice: the second run must keep every file), file modes and formats.
 5. With --portcullis BIN: `BIN check` on the gateway file laid out as the
    container sees it, with init.sh's secrets (the upstream's compose host
    name replaced by 127.0.0.1, which resolves outside compose).
 6. `docker compose config -q`, only when the compose plugin (or a
    standalone docker-compose) is installed, which is found without running
    docker; skipped with a message otherwise, as on CI. PORTCULLIS_NO_DOCKER=1
    skips it anyway.

Every failure is printed as `compose/check.py: FAIL: <file>: <what>`; the
exit status is 1 if there was any.

    python3 deploy/compose/check.py [--dir DIR] [--portcullis BIN] [--require-jsonschema]
"""

import argparse
import fnmatch
import json
import os
import posixpath
import re
import shutil
import stat
import subprocess
import sys
import tempfile

try:
    import yaml
except ImportError:  # pragma: no cover
    sys.exit("compose/check.py: PyYAML is required (deploy/check.sh runs this with its venv's python)")

PROG = "compose/check.py"
FAILURES = []
CHECKS = 0

SCHEMA_SOURCE = "compose-spec/compose-spec schema/compose-spec.json"

TOP_LEVEL = {"name", "services", "networks", "volumes", "secrets"}
# The services and their roles; compose.yaml may not drop any of them.
GATEWAY, UPSTREAM, REDIS, PROMETHEUS, GRAFANA, JAEGER = "gateway", "upstream", "redis", "prometheus", "grafana", "jaeger"
LOOPBACK = {"127.0.0.1", "::1", "[::1]"}
SECRETS_VAR = "PORTCULLIS_COMPOSE_SECRETS"


def fail(where, msg):
    FAILURES.append(f"{where}: {msg}")


def check(cond, where, msg):
    global CHECKS
    CHECKS += 1
    if not cond:
        fail(where, msg)
    return bool(cond)


def duration_seconds(value, default):
    if value is None:
        return default
    total, text = 0.0, str(value).strip()
    parts = re.findall(r"(\d+(?:\.\d+)?)\s*(ms|us|s|m|h)", text)
    if not parts or re.sub(r"(\d+(?:\.\d+)?)\s*(ms|us|s|m|h)", "", text).strip():
        return None
    for n, unit in parts:
        total += float(n) * {"us": 1e-6, "ms": 0.001, "s": 1, "m": 60, "h": 3600}[unit]
    return total


def port_of(address):
    return int(str(address).rsplit(":", 1)[1])


# --- YAML without duplicate keys -------------------------------------------------


class StrictLoader(yaml.SafeLoader):
    pass


def _mapping(loader, node, deep=False):
    seen = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
        seen.add(key)
    return yaml.SafeLoader.construct_mapping(loader, node, deep=deep)


StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping)


def load_yaml(path, where=None):
    where = where or rel(path)
    if not check(os.path.isfile(path), where, "missing"):
        return None
    try:
        with open(path) as f:
            return yaml.load(f, Loader=StrictLoader)
    except yaml.YAMLError as e:
        check(False, where, f"not valid YAML: {e}")
        return None


# --- compose interpolation -------------------------------------------------------

VAR = re.compile(r"\$(?:(\$)|\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?+])([^}]*))?\}|([A-Za-z_][A-Za-z0-9_]*)|)")


def interpolate(value, env, used, where):
    """Compose's interpolation of one string; records (name, operator) in used."""
    out, pos = [], 0
    for m in VAR.finditer(value):
        out.append(value[pos:m.start()])
        pos = m.end()
        if m.group(1):
            out.append("$")
            continue
        name = m.group(2) or m.group(5)
        if not name:
            check(False, where, f"invalid interpolation in {value!r}: a lone `$` (write `$$` for a literal one)")
            continue
        op, arg = m.group(3), m.group(4) or ""
        used.setdefault(name, set()).add(op or "")
        v = env.get(name)
        unset_or_empty = v is None or (v == "" and op and op.startswith(":"))
        if op in (":-", "-"):
            out.append(arg if unset_or_empty else v)
        elif op in (":?", "?"):
            check(arg.strip(), where, f"${{{name}{op}}} has no error message: say how to set {name}")
            out.append("" if v is None else v)
        elif op in (":+", "+"):
            out.append("" if unset_or_empty else arg)
        else:
            out.append(v or "")
    out.append(value[pos:])
    return "".join(out)


def interpolate_tree(node, env, used, where):
    if isinstance(node, dict):
        return {k: interpolate_tree(v, env, used, where) for k, v in node.items()}
    if isinstance(node, list):
        return [interpolate_tree(v, env, used, where) for v in node]
    if isinstance(node, str):
        return interpolate(node, env, used, where)
    return node


# --- ports -----------------------------------------------------------------------

PORT = re.compile(r"^(?:(?:(?P<ip>\[[0-9a-fA-F:]+\]|[0-9.]+|[A-Za-z0-9.-]+):)?(?P<host>\d+(?:-\d+)?)?:)?"
                  r"(?P<container>\d+(?:-\d+)?)(?:/(?P<proto>tcp|udp|sctp))?$")


def parse_port(spec):
    """(host_ip or None, host_port or None, container_port, proto) of a short-syntax port, or None."""
    m = PORT.match(spec)
    if not m:
        return None
    ports = [m.group("host"), m.group("container")]
    for p in ports:
        if p and not all(1 <= int(x) <= 65535 for x in p.split("-")):
            return None
    ip = m.group("ip")
    if ip and not m.group("host"):
        return None  # "ip::container" (random host port) is valid compose, but not used here
    return ip, m.group("host"), m.group("container"), m.group("proto") or "tcp"


# --- helpers ---------------------------------------------------------------------

ROOT = None      # the repository
COMPOSE = None   # deploy/compose (or --dir)


def rel(path):
    try:
        r = os.path.relpath(path, ROOT)
        return path if r.startswith("..") else r
    except ValueError:
        return path


def host_path(source):
    return os.path.normpath(os.path.join(COMPOSE, source))


def as_list(value):
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def service_networks(svc):
    n = svc.get("networks")
    if n is None:
        return {"default"}
    return set(n) if isinstance(n, (list, dict)) else set()


def service_secrets(svc):
    """target path in the container -> secret name."""
    out = {}
    for s in svc.get("secrets") or []:
        if isinstance(s, str):
            out[f"/run/secrets/{s}"] = s
        elif isinstance(s, dict):
            target = s.get("target") or s.get("source")
            out[target if target.startswith("/") else f"/run/secrets/{target}"] = s.get("source")
    return out


def mounts(svc):
    """[(type, source, target, read_only)] from short and long volume syntax."""
    out = []
    for v in svc.get("volumes") or []:
        if isinstance(v, str):
            parts = v.split(":")
            source, target = (parts[0], parts[1]) if len(parts) > 1 else (None, parts[0])
            opts = parts[2].split(",") if len(parts) > 2 else []
            kind = "bind" if source and (source.startswith((".", "/", "~"))) else ("volume" if source else "anonymous")
            out.append((kind, source, target, "ro" in opts))
        elif isinstance(v, dict):
            out.append((v.get("type"), v.get("source"), v.get("target"), bool(v.get("read_only"))))
    return out


def mount_for(svc, path):
    best = None
    for m in mounts(svc):
        t = (m[2] or "").rstrip("/")
        if path == t or path.startswith(t + "/"):
            if best is None or len(t) > len(best[2].rstrip("/")):
                best = m
    return best


def container_to_host(svc, path):
    """Host path of a file the service sees at `path` through a bind mount, or None."""
    m = mount_for(svc, path)
    if not m or m[0] != "bind":
        return None
    t = m[2].rstrip("/")
    return os.path.normpath(os.path.join(host_path(m[1]), posixpath.relpath(path, t))) if path != t else host_path(m[1])


def dockerfile_user(path):
    """The last USER of the final stage, or None."""
    user, in_final = None, False
    lines = open(path).read().replace("\\\n", " ").splitlines()
    froms = [i for i, l in enumerate(lines) if l.strip().upper().startswith("FROM ")]
    for l in lines[froms[-1]:] if froms else []:
        if l.strip().upper().startswith("USER "):
            user = l.split(None, 1)[1].strip()
            in_final = True
    return user if in_final else None


def command_list(svc):
    c = svc.get("command")
    return c if isinstance(c, list) else (c.split() if isinstance(c, str) else None)


def listen_port_of(svc):
    """The port a service's `--listen ADDR` names (the example upstream)."""
    cmd = command_list(svc) or []
    for i, a in enumerate(cmd):
        if a == "--listen" and i + 1 < len(cmd):
            return port_of(cmd[i + 1])
        if a.startswith("--listen="):
            return port_of(a.split("=", 1)[1])
    return None


def schema_validator(path):
    try:
        import jsonschema
    except ImportError:
        return None
    with open(path) as f:
        schema = json.load(f)
    # compose-spec.json names draft-07 by a URL jsonschema does not know.
    cls = jsonschema.Draft7Validator if "draft-07" in str(schema.get("$schema", "")) else \
        jsonschema.validators.validator_for(schema)
    return cls(schema)


def schema_check(validator, document, where, what):
    if validator is None or document is None:
        return
    errors = sorted(validator.iter_errors(document), key=lambda e: list(map(str, e.absolute_path)))
    msgs = [f"{'/'.join(str(p) for p in e.absolute_path) or '(top)'}: {e.message}" for e in errors]
    check(not msgs, where, f"does not match {what}: " + "; ".join(msgs[:6]))


# --- 1 and 2: compose.yaml -------------------------------------------------------


def lint_structure(doc, where):
    check("version" not in doc, where, "`version` is obsolete in the Compose Specification: remove it")
    extra = sorted(k for k in doc if k not in TOP_LEVEL and not str(k).startswith("x-") and k != "version")
    check(not extra, where, f"top-level keys must be {sorted(TOP_LEVEL)} (or x-*), not {extra}")
    services = doc.get("services")
    if not check(isinstance(services, dict) and services, where, "services must be a non-empty mapping"):
        return False
    for name in (GATEWAY, UPSTREAM, REDIS, PROMETHEUS, GRAFANA):
        check(name in services, where, f"service {name} is missing")
    nets = set((doc.get("networks") or {}).keys())
    vols = set((doc.get("volumes") or {}).keys())
    secrets = set((doc.get("secrets") or {}).keys())
    for name, svc in services.items():
        sw = f"{where}: services.{name}"
        if not check(isinstance(svc, dict), sw, "must be a mapping"):
            continue
        check(re.fullmatch(r"[a-zA-Z0-9._-]+", name), sw, "service names may only use a-z A-Z 0-9 . _ -")
        check(svc.get("image") or svc.get("build"), sw, "needs image or build")
        build = svc.get("build")
        if isinstance(build, (dict, str)):
            b = {"context": build} if isinstance(build, str) else build
            ctx = host_path(b.get("context", "."))
            if check(os.path.isdir(ctx), sw, f"build.context {b.get('context')} is not a directory"):
                df = os.path.join(ctx, b.get("dockerfile", "Dockerfile"))
                check(os.path.isfile(df), sw, f"build.dockerfile {rel(df)} does not exist")
        if isinstance(svc.get("image"), str) and not build:
            check(re.search(r":[\w][\w.-]*$|@sha256:[0-9a-f]{64}$", svc["image"]) and not svc["image"].endswith(":latest"),
                  sw, f"image {svc['image']} must be pinned to a tag (not latest) or digest")
        for p in svc.get("ports") or []:
            if check(isinstance(p, str), sw, f"port {p!r} must be a quoted string (YAML reads some numbers a:b as base 60)"):
                check(parse_port(p), sw, f"port {p!r} does not parse as [[IP:]HOST:]CONTAINER[/PROTO]")
        for n in service_networks(svc):
            check(n in nets or (n == "default" and "networks" not in svc), sw, f"network {n} is not defined under networks:")
        for kind, source, target, _ in mounts(svc):
            check(target and target.startswith("/"), sw, f"volume target {target!r} must be an absolute path")
            if kind == "volume":
                check(source in vols, sw, f"named volume {source} is not defined under volumes:")
        for s in service_secrets(svc).values():
            check(s in secrets, sw, f"secret {s} is not defined under secrets:")
        deps = svc.get("depends_on") or {}
        for d, cond in (deps.items() if isinstance(deps, dict) else ((d, {}) for d in deps)):
            check(d in services, sw, f"depends_on {d} is not a service")
            c = (cond or {}).get("condition", "service_started")
            check(c in ("service_started", "service_healthy", "service_completed_successfully"), sw,
                  f"depends_on {d}: unknown condition {c}")
            if c == "service_healthy" and d in services:
                check(services[d].get("healthcheck"), sw, f"depends_on {d} is service_healthy, but {d} has no healthcheck")
    return True


def lint_hardening(doc, raw, where, gw, used):
    services = doc["services"]
    for name, svc in services.items():
        sw = f"{where}: services.{name}"
        check(not svc.get("privileged"), sw, "must not be privileged")
        check(not svc.get("cap_add"), sw, f"must not add capabilities ({svc.get('cap_add')})")
        check("ALL" in [str(c).upper() for c in as_list(svc.get("cap_drop"))], sw, "cap_drop must contain ALL")
        check(any(re.fullmatch(r"no-new-privileges(:true)?", str(o)) for o in as_list(svc.get("security_opt"))), sw,
              "security_opt must contain no-new-privileges:true")
        for ns in ("network_mode", "pid", "ipc", "uts", "userns_mode"):
            check(svc.get(ns) != "host", sw, f"{ns}: host shares the host's namespace")
        check(not svc.get("devices"), sw, "must not map devices")
        for kind, source, target, ro in mounts(svc):
            check(not (source and "docker.sock" in str(source)), sw, "must not mount the Docker socket")
            if kind == "bind":
                hp = host_path(source)
                check(os.path.exists(hp), sw, f"bind mount source {source} ({rel(hp)}) does not exist in the repository")
                check(ro, sw, f"bind mount {source} -> {target} must be read-only")
        for p in svc.get("ports") or []:
            parsed = parse_port(p) if isinstance(p, str) else None
            if not parsed:
                continue
            ip, hostp, cport, _ = parsed
            if name == GATEWAY:
                continue  # below, against the gateway file
            check(name in (PROMETHEUS, GRAFANA, JAEGER), sw, f"publishes {p}: only the gateway, Prometheus, Grafana and Jaeger may publish ports")
            check(ip in LOOPBACK, sw, f"port {p} must be bound to 127.0.0.1 (\"127.0.0.1:{hostp or cport}:{cport}\")")
    for name in (UPSTREAM, REDIS):
        svc = services.get(name) or {}
        check(not svc.get("ports"), f"{where}: services.{name}", "must not publish ports: only the gateway reaches it")

    g = services.get(GATEWAY) or {}
    gw_where = f"{where}: services.{GATEWAY}"
    check(g.get("read_only") is True, gw_where, "read_only must be true")
    user = str(g.get("user", ""))
    uid = user.split(":")[0]
    check(user and uid not in ("0", "root"), gw_where, f"user must be set and not root (is {user!r})")
    df = None
    build = g.get("build")
    if isinstance(build, dict):
        df = os.path.join(host_path(build.get("context", ".")), build.get("dockerfile", "Dockerfile"))
        check(os.path.normpath(df) == os.path.join(ROOT, "deploy", "container", "Dockerfile"), gw_where,
              "must be built from deploy/container/Dockerfile with the repository root as context")
    if df and os.path.isfile(df):
        duser = dockerfile_user(df)
        check(duser and user == duser, gw_where, f"user {user!r} must be the Dockerfile's USER {duser!r}")
    for s in (UPSTREAM,):
        svc = services.get(s) or {}
        u = str(svc.get("user", ""))
        check(u and u.split(":")[0] not in ("0", "root"), f"{where}: services.{s}", f"user must be set and not root (is {u!r})")
        check(svc.get("read_only") is True, f"{where}: services.{s}", "read_only must be true")
    cmd = command_list(g) or []
    check(cmd[:2] == ["run", "--config"] and len(cmd) == 3, gw_where, "command must be [run, --config, FILE]")

    # tmpfs only where the gateway file writes; no writable mount at all.
    server = (gw or {}).get("server") or {}
    writes = {posixpath.dirname(server.get("pid_file", "/tmp/portcullis.pid")),
              posixpath.dirname(server.get("upgrade_sock", "/tmp/portcullis_upgrade.sock"))}
    audit = (gw or {}).get("audit") or {}
    if audit.get("output") == "file":
        writes.add(posixpath.dirname(audit.get("path", "audit.log")))
    tmpfs = [t.split(":", 1)[0] for t in as_list(g.get("tmpfs"))]
    check(set(tmpfs) == writes, gw_where,
          f"tmpfs must be exactly the directories the gateway file writes ({sorted(writes)}), is {sorted(tmpfs)}")
    for t in as_list(g.get("tmpfs")):
        opts = t.split(":", 1)[1].split(",") if ":" in t else []
        for o in ("nosuid", "nodev", "noexec"):
            check(o in opts, gw_where, f"tmpfs {t.split(':', 1)[0]} must be mounted {o}")
        check(not any(o.startswith("mode=") and o != "mode=0700" for o in opts), gw_where,
              f"tmpfs {t}: the upgrade socket is mode 0666, so its directory must be 0700")
    for kind, source, target, ro in mounts(g):
        check(ro, gw_where, f"{kind} mount {target} must be read-only (the gateway writes only its tmpfs)")

    # Ports against the gateway file.
    https_port = port_of(((gw or {}).get("listen") or {}).get("https", "0.0.0.0:8443"))
    admin_port = port_of(((gw or {}).get("admin") or {}).get("address", "127.0.0.1:9901"))
    metrics_addr = ((gw or {}).get("metrics") or {}).get("address")
    private = {admin_port} | ({port_of(metrics_addr)} if metrics_addr else set())
    published = {}
    for p in g.get("ports") or []:
        parsed = parse_port(p) if isinstance(p, str) else None
        if parsed:
            ip, hostp, cport, _ = parsed
            published.setdefault(int(cport.split("-")[0]), []).append((ip, p))
            if int(cport.split("-")[0]) in private:
                check(ip in LOOPBACK, gw_where,
                      f"port {p}: the admin listener (key API) must be published on 127.0.0.1 only, never {ip or 'every address'}")
            else:
                check(int(cport) == https_port, gw_where, f"port {p} is neither listen.https ({https_port}) nor the admin port")
    check(https_port in published, gw_where, f"listen.https's port {https_port} must be published")
    check(admin_port in published, gw_where, f"the admin port {admin_port} must be published on 127.0.0.1 (health checks, curl)")
    admin_address = str(((gw or {}).get("admin") or {}).get("address", "127.0.0.1:9901"))
    check(not admin_address.startswith(("127.", "localhost", "[::1]")), gw_where,
          "admin.address must bind the container's interfaces (0.0.0.0): a loopback address is unreachable through a published port")

    grace = duration_seconds(server.get("grace_period"), 10.0)
    drain = duration_seconds(server.get("drain_timeout"), 5.0)
    delay = duration_seconds(server.get("drain_delay"), 0.0)
    sgp = duration_seconds(g.get("stop_grace_period"), 10.0)
    if check(None not in (grace, drain, delay, sgp), gw_where, "cannot read the durations"):
        check(sgp > grace + drain + delay, gw_where,
              f"stop_grace_period ({sgp}s) must exceed drain_delay + grace_period + drain_timeout ({delay + grace + drain}s)")

    # Secrets: files init.sh writes, under the variable compose refuses to run without.
    init_sh = os.path.join(COMPOSE, "init.sh")
    init_text = open(init_sh).read() if os.path.isfile(init_sh) else ""
    check(init_text, where, "init.sh is missing")
    for sname, spec in (raw.get("secrets") or {}).items():  # before interpolation
        sw = f"{where}: secrets.{sname}"
        f = (spec or {}).get("file")
        if not check(f, sw, "must be a file: secret (written by init.sh)"):
            continue
        check(f.startswith(f"${{{SECRETS_VAR}:?"), sw, f"file must start with ${{{SECRETS_VAR}:?...}} so that compose refuses to start before init.sh ran")
        base = posixpath.basename(f)
        check(re.search(rf"(^|[\s(]){re.escape(base)}([\s)]|$)", init_text, re.M) or f"/{base}" in init_text, sw,
              f"init.sh does not write {base}")
    check(SECRETS_VAR in used and any(op in (":?", "?") for op in used.get(SECRETS_VAR, ())), where,
          f"${{{SECRETS_VAR}:?...}} must guard the secret files")

    readme = os.path.join(COMPOSE, "README.md")
    text = open(readme).read() if os.path.isfile(readme) else ""
    check(text, where, "README.md is missing")
    for var in sorted(used):
        check(re.search(rf"\b{re.escape(var)}\b", text), where, f"variable {var} is not documented in README.md")

    gi = os.path.join(COMPOSE, ".gitignore")
    lines = {l.strip() for l in open(gi)} if os.path.isfile(gi) else set()
    check(lines & {"/secrets/", "secrets/", "/secrets"}, rel(gi), "must ignore /secrets/ (init.sh's output)")
    check(lines & {"/.env", ".env"}, rel(gi), "must ignore /.env (init.sh's output)")


# --- 3: the files the services read ----------------------------------------------


def lint_wiring(doc, where, gw, gw_host, validators):
    services = doc["services"]
    g = services.get(GATEWAY) or {}
    gw_where = rel(gw_host) if gw_host else where
    gnets = service_networks(g)
    gsecrets = service_secrets(g)

    def shares_network(name):
        return name in services and bool(gnets & service_networks(services[name]))

    if gw is None:
        return
    schema_check(validators.get("gateway"), gw, gw_where, "schemas/portcullis/gateway.json")
    config_path = (command_list(g) or [None] * 3)[-1]
    base = posixpath.dirname(config_path or "/")

    def resolve(p):
        return p if p.startswith("/") else posixpath.normpath(posixpath.join(base, p))

    def provided(path, what, secret_ok=True):
        if path in gsecrets:
            return check(secret_ok, gw_where, f"{what} {path} is a secret, but must be a file from the repository")
        hp = container_to_host(g, path)
        return check(hp and os.path.isfile(hp), gw_where,
                     f"{what} {path} is neither a secret of the gateway service nor a file on one of its bind mounts")

    tls = gw.get("tls") or {}
    keys = gw.get("keys") or {}
    redis = keys.get("redis") or {}
    for what, p in (("tls.certificate", tls.get("certificate")), ("tls.private_key", tls.get("private_key")),
                    ("keys.pepper_file", keys.get("pepper_file")),
                    ("admin.token_file", (gw.get("admin") or {}).get("token_file")),
                    ("audit.chain_key_file", (gw.get("audit") or {}).get("chain_key_file")),
                    ("keys.redis.password_file", redis.get("password_file"))):
        if p is not None:
            check(resolve(p) in gsecrets, gw_where, f"{what} {p} must be a compose secret of the gateway service (secrets stay out of the repository)")
    check(keys.get("pepper_file"), gw_where, "keys.pepper_file must be set (not PORTCULLIS_PEPPER in the environment)")
    if config_path:
        hp = container_to_host(g, config_path)
        check(hp and os.path.normpath(hp) == os.path.normpath(gw_host), rel(os.path.join(COMPOSE, "compose.yaml")),
              f"--config {config_path} must be the bind mount of {rel(gw_host)}")

    # Redis: the service, its port, its password.
    check(keys.get("store") == "redis", gw_where, "keys.store must be redis (the `redis` service)")
    url = redis.get("url") or ""
    m = re.fullmatch(r"redis://([^:/@]+)(?::(\d+))?(/\d+)?", url)
    if check(m, gw_where, f"keys.redis.url {url!r} must be redis://SERVICE:PORT/DB, with no password"):
        host, port = m.group(1), int(m.group(2) or 6379)
        check(host == REDIS and shares_network(REDIS), gw_where, f"keys.redis.url must name the `{REDIS}` service on a network the gateway shares")
        r = services.get(REDIS) or {}
        conf_path = (command_list(r) or [None, None])[1]
        conf_host = container_to_host(r, conf_path) if conf_path else None
        if check(conf_host and os.path.isfile(conf_host), f"{where}: services.{REDIS}", "command must be [redis-server, CONF] with CONF a bind-mounted file"):
            conf = open(conf_host).read()
            cport = re.search(r"^\s*port\s+(\d+)", conf, re.M)
            check(int(cport.group(1) if cport else 6379) == port, rel(conf_host), f"port must be keys.redis.url's {port}")
            check(not re.search(r"^\s*requirepass\b", conf, re.M), rel(conf_host), "the password belongs in a secret, not in the repository")
            inc = re.findall(r"^\s*include\s+(\S+)", conf, re.M)
            check(any(i in service_secrets(r) for i in inc), rel(conf_host), "must include the requirepass file from a secret of the redis service")
            check(re.search(r"^\s*protected-mode\s+yes", conf, re.M), rel(conf_host), "must say protected-mode yes (else the image's entrypoint turns it off)")
        check(redis.get("password_file") and resolve(redis["password_file"]) in gsecrets, gw_where, "keys.redis.password_file must be set")

    # Spans go to a service the gateway shares a network with, on OTLP/HTTP's port.
    traces = (gw or {}).get("traces") or {}
    if traces.get("endpoint"):
        tm = re.fullmatch(r"(https?)://([^:/@]+)(?::(\d+))?/v1/traces", str(traces["endpoint"]))
        if check(tm, gw_where, f"traces.endpoint {traces['endpoint']!r} must be http(s)://SERVICE:PORT/v1/traces"):
            check(tm.group(2) in services and shares_network(tm.group(2)), gw_where,
                  f"traces.endpoint must name a service on a network the gateway shares (is {tm.group(2)!r})")
            check(int(tm.group(3) or 0) == 4318, gw_where, "traces.endpoint must use OTLP/HTTP's port 4318")
            check(tm.group(1) == "https" or traces.get("allow_plaintext") is True, gw_where,
                  "an http:// traces.endpoint to another service needs traces.allow_plaintext: true")
        for p in ("ca", "headers_file"):
            if traces.get(p):
                provided(resolve(traces[p]), f"traces.{p}")

    # Policies: mounted, matching files, schema-valid; upstreams are services.
    policy_files = []
    for pattern in gw.get("policies", ["policies/*.yaml"]):
        full = resolve(pattern)
        hdir = container_to_host(g, posixpath.dirname(full))
        if not check(hdir and os.path.isdir(hdir), gw_where, f"policies pattern {pattern} is on no bind-mounted directory"):
            continue
        hits = sorted(os.path.join(hdir, f) for f in os.listdir(hdir) if fnmatch.fnmatch(f, posixpath.basename(full)))
        check(hits, gw_where, f"policies pattern {pattern} matches no file in {rel(hdir)}")
        policy_files += hits
    schemas_dir = resolve(gw.get("schemas", "schemas"))
    schemas_host = container_to_host(g, schemas_dir)
    check(schemas_host and os.path.isdir(schemas_host), gw_where, f"schemas {schemas_dir} is on no bind-mounted directory")
    for pf in policy_files:
        pol = load_yaml(pf) or {}
        schema_check(validators.get("policy"), pol, rel(pf), "schemas/portcullis/policy.json")
        for uname, up in (pol.get("upstreams") or {}).items():
            um = re.fullmatch(r"https?://([^:/]+)(?::(\d+))?/?", str((up or {}).get("url", "")))
            if not check(um, rel(pf), f"upstreams.{uname}.url {up.get('url')!r} must be http://SERVICE:PORT"):
                continue
            host, port = um.group(1), int(um.group(2) or 80)
            check(host in services and shares_network(host), rel(pf),
                  f"upstreams.{uname}: {host} must be a compose service on a network the gateway shares")
            if host in services:
                lp = listen_port_of(services[host])
                check(lp == port, rel(pf), f"upstreams.{uname}: port {port}, but service {host} listens on {lp}")
        for route in pol.get("routes") or []:
            body = (route.get("validate") or {}).get("body")
            if isinstance(body, str) and schemas_host:
                check(os.path.isfile(os.path.join(schemas_host, body)), rel(pf), f"route {route.get('name')}: schema {body} is not in {rel(schemas_host)}")

    # The compose copy of policies/orders.yaml differs only in the upstream URL.
    ours, theirs = os.path.join(COMPOSE, "policies", "orders.yaml"), os.path.join(ROOT, "policies", "orders.yaml")
    if os.path.isfile(ours) and os.path.isfile(theirs):
        a, b = load_yaml(ours) or {}, load_yaml(theirs) or {}
        for d in (a, b):
            for up in (d.get("upstreams") or {}).values():
                up.pop("url", None)
        check(a == b, rel(ours), "must equal policies/orders.yaml except upstreams.*.url: change both together")

    # Prometheus: scrapes the admin port of the gateway, loads alerts.yml.
    p = services.get(PROMETHEUS) or {}
    pw = f"{where}: services.{PROMETHEUS}"
    cfg = next((a.split("=", 1)[1] for a in command_list(p) or [] if a.startswith("--config.file=")), "/etc/prometheus/prometheus.yml")
    cfg_host = container_to_host(p, cfg)
    if check(cfg_host and os.path.isfile(cfg_host), pw, f"--config.file {cfg} is not a bind-mounted file"):
        prom = load_yaml(cfg_host) or {}
        admin_port = port_of((gw.get("admin") or {}).get("address", "127.0.0.1:9901"))
        jobs = {j.get("job_name"): j for j in prom.get("scrape_configs") or []}
        job = jobs.get("portcullis")
        if check(job, rel(cfg_host), "needs the job `portcullis` (the alerts and the dashboard select on it)"):
            targets = [t for sc in job.get("static_configs") or [] for t in sc.get("targets") or []]
            check(targets == [f"{GATEWAY}:{admin_port}"], rel(cfg_host), f"the portcullis job must scrape {GATEWAY}:{admin_port}, not {targets}")
            check(job.get("metrics_path", "/metrics") == "/metrics", rel(cfg_host), "metrics_path must be /metrics")
        check(bool(service_networks(p) & gnets), pw, "must share a network with the gateway")
        for rf in prom.get("rule_files") or []:
            rh = container_to_host(p, resolve_in(posixpath.dirname(cfg), rf))
            check(rh and os.path.isfile(rh), rel(cfg_host), f"rule file {rf} is not a bind-mounted file beside {cfg}")
            if rh:
                check(os.path.normpath(rh) == os.path.join(ROOT, "deploy", "monitoring", "alerts.yml"), rel(cfg_host),
                      f"rule file {rf} must be deploy/monitoring/alerts.yml")
        check(prom.get("rule_files"), rel(cfg_host), "must load alerts.yml")

    # Grafana: data source -> prometheus service; dashboards -> the shipped one.
    gr = services.get(GRAFANA) or {}
    grw = f"{where}: services.{GRAFANA}"
    ds_dir = container_to_host(gr, "/etc/grafana/provisioning/datasources")
    if check(ds_dir and os.path.isdir(ds_dir), grw, "/etc/grafana/provisioning/datasources must be a bind mount"):
        urls = [d.get("url") for f in sorted(os.listdir(ds_dir)) if f.endswith((".yaml", ".yml"))
                for d in (load_yaml(os.path.join(ds_dir, f)) or {}).get("datasources") or [] if d.get("type") == "prometheus"]
        check(urls and all(u == "http://prometheus:9090" for u in urls), rel(ds_dir), f"the Prometheus data source must be http://prometheus:9090, is {urls}")
        check(bool(service_networks(gr) & service_networks(p)), grw, "must share a network with prometheus")
    db_dir = container_to_host(gr, "/etc/grafana/provisioning/dashboards")
    if check(db_dir and os.path.isdir(db_dir), grw, "/etc/grafana/provisioning/dashboards must be a bind mount"):
        paths = [(pr.get("options") or {}).get("path") for f in sorted(os.listdir(db_dir)) if f.endswith((".yaml", ".yml"))
                 for pr in (load_yaml(os.path.join(db_dir, f)) or {}).get("providers") or []]
        for path in paths:
            hp = container_to_host(gr, path or "")
            check(hp and os.path.isfile(os.path.join(hp, "portcullis.json")), rel(db_dir),
                  f"dashboard path {path} must be a bind mount holding deploy/monitoring/grafana/portcullis.json")
        check(paths, rel(db_dir), "no dashboard provider")
    env = gr.get("environment") or {}
    env = dict(e.split("=", 1) for e in env) if isinstance(env, list) else env
    pwfile = env.get("GF_SECURITY_ADMIN_PASSWORD__FILE")
    check(pwfile in service_secrets(gr), grw, "GF_SECURITY_ADMIN_PASSWORD__FILE must name a secret of the grafana service")
    check("GF_SECURITY_ADMIN_PASSWORD" not in env, grw, "no password in the environment")


def resolve_in(base, p):
    return p if p.startswith("/") else posixpath.normpath(posixpath.join(base, p))


# --- 4 and 5: init.sh, `portcullis check` ----------------------------------------


def run_init(tmp):
    """Runs init.sh into tmp/secrets; returns the directory, or None."""
    where = rel(os.path.join(COMPOSE, "init.sh"))
    secrets = os.path.join(tmp, "secrets")
    env = dict(os.environ, PORTCULLIS_COMPOSE_ENV=os.path.join(tmp, "env"))
    r = subprocess.run(["bash", os.path.join(COMPOSE, "init.sh"), secrets], capture_output=True, text=True, env=env)
    if not check(r.returncode == 0, where, f"failed ({r.returncode}): {(r.stdout + r.stderr).strip()}"):
        return None
    check(stat.S_IMODE(os.stat(secrets).st_mode) == 0o700, where, "the secrets directory must be mode 0700")
    names = ["gateway.pem", "gateway.key", "pepper", "admin-token", "audit-chain-key", "redis-password",
             "redis-auth.conf", "grafana-admin-password"]
    for n in names:
        f = os.path.join(secrets, n)
        if check(os.path.isfile(f), where, f"did not write {n}"):
            check(stat.S_IMODE(os.stat(f).st_mode) == 0o644, where, f"{n} must be mode 0644 (read by the containers' users)")
    if any(not os.path.isfile(os.path.join(secrets, n)) for n in names):
        return None
    read = lambda n: open(os.path.join(secrets, n)).read()  # noqa: E731
    check(re.fullmatch(r"[0-9a-f]{64}\n?", read("pepper")), where, "pepper must be 64 hex characters")
    check(len(read("admin-token").strip()) >= 32, where, "admin-token must be at least 32 characters")
    check(len(read("audit-chain-key").strip()) >= 32, where, "audit-chain-key must be at least 32 bytes")
    check(read("redis-auth.conf").strip() == f'requirepass "{read("redis-password").strip()}"', where,
          "redis-auth.conf must be requirepass with redis-password's value")
    check(read("grafana-admin-password") and "\n" not in read("grafana-admin-password"), where,
          "grafana-admin-password must be one line without a newline")
    check(open(env["PORTCULLIS_COMPOSE_ENV"]).read().strip() == f"{SECRETS_VAR}={secrets}", where,
          f"must write {SECRETS_VAR}={secrets} to the env file")
    before = {n: read(n) for n in names}
    r = subprocess.run(["bash", os.path.join(COMPOSE, "init.sh"), secrets], capture_output=True, text=True, env=env)
    check(r.returncode == 0 and before == {n: read(n) for n in names}, where, "a second run must keep every file")
    check(open(env["PORTCULLIS_COMPOSE_ENV"]).read().count(SECRETS_VAR) == 1, where, "a second run must not repeat the variable")
    return secrets


def run_gateway_check(binary, doc, gw_host, secrets, tmp):
    g = doc["services"][GATEWAY]
    root = os.path.join(tmp, "root")

    def place(container_path, host_src):
        dst = root + container_path
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        (shutil.copytree if os.path.isdir(host_src) else shutil.copy)(host_src, dst)

    for kind, source, target, _ in mounts(g):
        if kind == "bind":
            place(target, host_path(source))
    for target, name in service_secrets(g).items():
        f = (doc["secrets"][name] or {}).get("file", "")
        place(target, os.path.join(secrets, posixpath.basename(f)))
    for t in as_list(g.get("tmpfs")):
        os.makedirs(root + t.split(":", 1)[0], exist_ok=True)
    config = (command_list(g) or [])[-1]
    # Absolute container paths -> the laid-out root; compose host names
    # resolve only inside compose.
    for dirpath, _, files in os.walk(root + "/etc/portcullis"):
        for f in files:
            if f.endswith((".yaml", ".yml")):
                p = os.path.join(dirpath, f)
                text = open(p).read()
                for prefix in ("/etc/portcullis", "/run/secrets", "/run/portcullis"):
                    text = re.sub(rf"(?<![\w/.]){re.escape(prefix)}(?=/|\s|$)", root + prefix, text)
                text = re.sub(r"url: http://upstream:", "url: http://127.0.0.1:", text)
                open(p, "w").write(text)
    r = subprocess.run([binary, "check", "--config", root + config], capture_output=True, text=True)
    out = (r.stdout + r.stderr).strip().replace(root, "")
    if check(r.returncode == 0, rel(gw_host), "`portcullis check` refuses the compose layout:\n    " + out.replace("\n", "\n    ")):
        print(f"{PROG}: portcullis check (compose layout, init.sh secrets): {out}")


# --- 6: docker compose config ----------------------------------------------------


def compose_command():
    """The compose v2 command line, found without running anything: the
    `docker compose` plugin in one of the CLI's plugin directories, or a
    standalone `docker-compose`; None when there is neither."""
    if os.environ.get("PORTCULLIS_NO_DOCKER") == "1":
        return None
    docker = shutil.which("docker")
    if docker:
        dirs = [os.path.join(os.environ.get("DOCKER_CONFIG") or os.path.expanduser("~/.docker"), "cli-plugins"),
                "/usr/local/lib/docker/cli-plugins", "/usr/local/libexec/docker/cli-plugins",
                "/usr/lib/docker/cli-plugins", "/usr/libexec/docker/cli-plugins"]
        if any(os.access(os.path.join(d, "docker-compose"), os.X_OK) for d in dirs):
            return [docker, "compose"]
    standalone = shutil.which("docker-compose")
    return [standalone] if standalone else None


def run_docker_config(compose_file, secrets, tmp):
    cmd = compose_command()
    if cmd is None:
        why = "PORTCULLIS_NO_DOCKER=1" if os.environ.get("PORTCULLIS_NO_DOCKER") == "1" else "no docker compose plugin or docker-compose found"
        print(f"{PROG}: {why}: skipped `docker compose config -q` (the checks above ran without it)")
        return
    if secrets is None:
        secrets = os.path.join(tmp, "dummy-secrets")
        os.makedirs(secrets, exist_ok=True)
        for spec in (yaml.safe_load(open(compose_file)).get("secrets") or {}).values():
            open(os.path.join(secrets, posixpath.basename(spec["file"])), "w").write("x\n")
    env = dict(os.environ, **{SECRETS_VAR: secrets})
    # `config` only reads and resolves the files: no engine is contacted.
    r = subprocess.run(cmd + ["-f", compose_file, "config", "-q"], capture_output=True, text=True, env=env)
    check(r.returncode == 0, rel(compose_file), f"`docker compose config -q` failed: {(r.stdout + r.stderr).strip()}")
    if r.returncode == 0:
        print(f"{PROG}: docker compose config -q: OK")


# --- main ------------------------------------------------------------------------


def main():
    global ROOT, COMPOSE
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dir", default=os.path.dirname(os.path.abspath(__file__)), help="the compose folder (default: this file's)")
    ap.add_argument("--repo", help="the repository root (default: two levels above --dir)")
    ap.add_argument("--portcullis", help="a portcullis binary to run `check` with")
    ap.add_argument("--require-jsonschema", action="store_true", help="fail instead of skipping the JSON Schema checks")
    ap.add_argument("--compose-spec", default=os.environ.get("COMPOSE_SPEC_SCHEMA"),
                    help="the Compose Specification's JSON Schema (default: $COMPOSE_SPEC_SCHEMA; skipped without)")
    a = ap.parse_args()
    COMPOSE = os.path.abspath(a.dir)
    ROOT = os.path.abspath(a.repo or os.path.join(COMPOSE, "..", ".."))
    compose_file = os.path.join(COMPOSE, "compose.yaml")
    where = rel(compose_file)

    validators = {}
    compose_validator = None
    if a.compose_spec:
        if check(os.path.isfile(a.compose_spec), a.compose_spec, "no such file (--compose-spec)"):
            compose_validator = schema_validator(a.compose_spec)
    else:
        print(f"{PROG}: no Compose Specification schema given (--compose-spec): "
              "checking the structure compose.yaml uses by this script's own rules only")
    have_jsonschema = schema_validator(os.path.join(ROOT, "schemas", "portcullis", "gateway.json")) is not None
    if not have_jsonschema:
        msg = "the jsonschema module is not installed: skipping the JSON Schema checks"
        if a.require_jsonschema:
            check(False, PROG, msg)
        else:
            print(f"{PROG}: {msg}")
    else:
        for kind in ("gateway", "policy"):
            p = os.path.join(ROOT, "schemas", "portcullis", f"{kind}.json")
            if check(os.path.isfile(p), rel(p), "missing"):
                validators[kind] = schema_validator(p)

    raw = load_yaml(compose_file)
    if isinstance(raw, dict):
        used = {}
        # The secrets directory as init.sh names it by default.
        doc = interpolate_tree(raw, {SECRETS_VAR: "./secrets"}, used, where)
        schema_check(compose_validator, doc, where, f"the Compose Specification ({SCHEMA_SOURCE})")
        if lint_structure(doc, where):
            gw_host = None
            g = doc["services"].get(GATEWAY) or {}
            cmd = command_list(g) or []
            if cmd:
                gw_host = container_to_host(g, cmd[-1])
            gw = load_yaml(gw_host) if gw_host and os.path.isfile(gw_host) else None
            check(gw is not None, where, "the gateway's --config is not a bind-mounted file of deploy/compose")
            lint_hardening(doc, raw, where, gw, used)
            lint_wiring(doc, where, gw, gw_host, validators)
        else:
            doc = None
    else:
        if raw is not None:
            check(False, where, "must be a mapping")
        doc = None

    tmp = tempfile.mkdtemp(prefix="portcullis-compose-check-")
    try:
        secrets = None
        if shutil.which("openssl"):
            secrets = run_init(tmp)
        else:
            print(f"{PROG}: openssl not found: skipped running init.sh")
        if a.portcullis:
            if doc is None or FAILURES or secrets is None:
                print(f"{PROG}: skipped `portcullis check`: fix the failures above first (or install openssl)")
            else:
                run_gateway_check(a.portcullis, doc, gw_host, secrets, tmp)
        if doc is not None:
            run_docker_config(compose_file, secrets, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    for f in FAILURES:
        print(f"{PROG}: FAIL: {f}", file=sys.stderr)
    if FAILURES:
        print(f"{PROG}: {len(FAILURES)} of {CHECKS} checks failed", file=sys.stderr)
        return 1
    print(f"{PROG}: OK: {CHECKS} checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
