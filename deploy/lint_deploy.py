#!/usr/bin/env python3
"""Structural checks of deploy/: Kubernetes manifests, systemd unit, Dockerfile.

Standard library plus PyYAML, and jsonschema for the gateway/policy schemas
(the kubernetes-validate venv of deploy/check.sh brings both). Every failed
assertion is printed as

    lint_deploy: FAIL: <file>: <what is wrong>

and the exit status is 1 if there was any. Usage:

    python3 deploy/lint_deploy.py [--deploy DIR] [--portcullis BIN]

--portcullis BIN additionally lays the Kubernetes ConfigMap and the container
sample config out in a temporary directory (with throwaway secrets and a
self-signed certificate) and runs `BIN check` on them.
"""

import argparse
import fnmatch
import os
import posixpath
import re
import shutil
import subprocess
import sys
import tempfile

try:
    import yaml
except ImportError:  # pragma: no cover
    sys.exit("lint_deploy: PyYAML is required (deploy/check.sh runs this with its venv's python)")

FAILURES = []
CHECKS = 0

# Gateway defaults (docs/src/reference/configuration.md, "Gateway file").
DEFAULT_GRACE = 10.0
DEFAULT_DRAIN = 5.0
ADMIN_PORT_DEFAULT = 9901


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
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*", str(value))
    if not m:
        return default
    n = float(m.group(1))
    return n * {"ms": 0.001, "s": 1, "m": 60, "h": 3600, None: 1}[m.group(2)]


def port_of(address):
    return int(str(address).rsplit(":", 1)[1])



# --- JSON Schemas of the gateway and policy files (schemas/portcullis/) ---------

SCHEMA_DIR = None  # set in main(): <repo>/schemas/portcullis


def schema_errors(kind, document):
    """Messages of the shipped JSON Schema `kind` (gateway|policy) for document, or None if unavailable."""
    if SCHEMA_DIR is None:
        return None
    path = os.path.join(SCHEMA_DIR, f"{kind}.json")
    try:
        import json
        import jsonschema
    except ImportError:
        return None
    if not os.path.isfile(path):
        return None
    validator = jsonschema.Draft202012Validator(json.load(open(path)))
    return [f"{'/'.join(str(p) for p in e.absolute_path) or '(top)'}: {e.message}"
            for e in sorted(validator.iter_errors(document), key=lambda e: list(map(str, e.absolute_path)))]


def check_schema(kind, document, where):
    errors = schema_errors(kind, document)
    if errors is None:
        return
    check(not errors, where, f"does not match schemas/portcullis/{kind}.json: " + "; ".join(errors[:5]))


# --- Kubernetes -----------------------------------------------------------------


def load_kustomization(directory, seen=None):
    """Resources named by directory/kustomization.yaml, recursively: [(file, doc)]."""
    seen = seen if seen is not None else set()
    kfile = os.path.join(directory, "kustomization.yaml")
    docs = []
    if not check(os.path.isfile(kfile), directory, "no kustomization.yaml"):
        return docs
    k = yaml.safe_load(open(kfile)) or {}
    for res in k.get("resources", []) or []:
        path = os.path.normpath(os.path.join(directory, res))
        if path in seen:
            continue
        seen.add(path)
        if os.path.isdir(path):
            docs += load_kustomization(path, seen)
        elif check(os.path.isfile(path), kfile, f"resource {res} does not exist"):
            for doc in yaml.safe_load_all(open(path)):
                if doc:
                    docs.append((os.path.relpath(path), doc))
    return docs


def pod_specs(docs):
    for f, d in docs:
        kind = d.get("kind")
        if kind in ("Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"):
            yield f, d, d["spec"]["template"]["spec"]
        elif kind == "CronJob":
            yield f, d, d["spec"]["jobTemplate"]["spec"]["template"]["spec"]
        elif kind == "Pod":
            yield f, d, d["spec"]


def lint_pod_security(docs):
    n = 0
    for f, d, spec in pod_specs(docs):
        name = f"{f}: {d['kind']}/{d['metadata']['name']}"
        psc = spec.get("securityContext") or {}
        check(spec.get("automountServiceAccountToken") is False, name,
              "automountServiceAccountToken must be false")
        for host in ("hostNetwork", "hostPID", "hostIPC"):
            check(not spec.get(host), name, f"{host} must not be set")
        check(psc.get("runAsNonRoot") is True, name, "pod securityContext.runAsNonRoot must be true")
        check(psc.get("runAsUser", 1) != 0, name, "pod securityContext.runAsUser must not be 0")
        containers = (spec.get("initContainers") or []) + (spec.get("containers") or [])
        check(containers, name, "no containers")
        for c in containers:
            n += 1
            cname = f"{name} container {c.get('name')}"
            sc = c.get("securityContext") or {}
            non_root = sc.get("runAsNonRoot", psc.get("runAsNonRoot"))
            check(non_root is True, cname, "must run as non-root (runAsNonRoot: true)")
            check(sc.get("runAsUser", psc.get("runAsUser", 1)) != 0, cname, "runAsUser must not be 0")
            check(sc.get("readOnlyRootFilesystem") is True, cname, "readOnlyRootFilesystem must be true")
            check(sc.get("allowPrivilegeEscalation") is False, cname,
                  "allowPrivilegeEscalation must be false")
            check(not sc.get("privileged"), cname, "must not be privileged")
            caps = sc.get("capabilities") or {}
            check("ALL" in (caps.get("drop") or []), cname, "capabilities.drop must contain ALL")
            check(not caps.get("add"), cname, f"adds capabilities {caps.get('add')}")
            seccomp = (sc.get("seccompProfile") or psc.get("seccompProfile") or {}).get("type")
            check(seccomp in ("RuntimeDefault", "Localhost"), cname,
                  "seccompProfile must be RuntimeDefault (pod or container)")
            res = c.get("resources") or {}
            for kind in ("requests", "limits"):
                check((res.get(kind) or {}).get("memory") and (res.get(kind) or {}).get("cpu"), cname,
                      f"resources.{kind} must set cpu and memory")
    check(n > 0, "kubernetes", "no pod templates found")


def matches(selector_labels, labels):
    return bool(selector_labels) and all(labels.get(k) == v for k, v in selector_labels.items())


def find(docs, kind, pred=lambda d: True):
    return [(f, d) for f, d in docs if d.get("kind") == kind and pred(d)]


def gateway_deployment(docs):
    deps = find(docs, "Deployment", lambda d: any(
        "portcullis" in (c.get("image") or "") for c in d["spec"]["template"]["spec"]["containers"]))
    if not check(len(deps) == 1, "kubernetes", f"expected one Deployment running the portcullis image, found {len(deps)}"):
        return None
    return deps[0]


def container_port(container, ref):
    if isinstance(ref, int):
        return ref
    for p in container.get("ports") or []:
        if p.get("name") == ref:
            return p.get("containerPort")
    return None


def secret_keys(kdir, name):
    """Keys of Secret `name` in secret.template.yaml (the manifests never hold real Secrets)."""
    path = os.path.join(kdir, "secret.template.yaml")
    if not os.path.isfile(path):
        return None
    for doc in yaml.safe_load_all(open(path)):
        if doc and doc.get("kind") == "Secret" and doc["metadata"]["name"] == name:
            return set((doc.get("stringData") or {}).keys()) | set((doc.get("data") or {}).keys())
    return None


def volume_files(kdir, volume, configmaps):
    """(set of relative file paths the volume provides or None if unknown, writable?)."""
    if "configMap" in volume:
        cm = configmaps.get(volume["configMap"]["name"])
        items = volume["configMap"].get("items")
        if items:
            return {i["path"] for i in items}, False
        return (set(cm["data"].keys()) if cm else None), False
    if "secret" in volume:
        items = volume["secret"].get("items")
        if items:
            return {i["path"] for i in items}, False
        return secret_keys(kdir, volume["secret"]["secretName"]), False
    if "projected" in volume:
        files = set()
        for src in volume["projected"].get("sources") or []:
            for kind in ("secret", "configMap"):
                if kind in src:
                    items = src[kind].get("items")
                    if items:
                        files |= {i["path"] for i in items}
                    elif kind == "secret":
                        files |= secret_keys(kdir, src[kind]["name"]) or set()
                    else:
                        cm = configmaps.get(src[kind]["name"])
                        files |= set(cm["data"].keys()) if cm else set()
        return files, False
    if "emptyDir" in volume:
        return None, True
    return None, False


def lint_gateway(kdir, docs):
    found = gateway_deployment(docs)
    if not found:
        return
    f, dep = found
    where = f"{f}: Deployment/{dep['metadata']['name']}"
    spec = dep["spec"]
    pod = spec["template"]["spec"]
    pod_labels = spec["template"]["metadata"].get("labels") or {}
    check(matches(spec["selector"].get("matchLabels") or {}, pod_labels), where,
          "selector.matchLabels must match the pod template's labels")
    check((spec.get("replicas") or 1) >= 3, where, "replicas must be >= 3")
    check(pod.get("topologySpreadConstraints") or (pod.get("affinity") or {}).get("podAntiAffinity"), where,
          "needs topologySpreadConstraints or podAntiAffinity")
    container = [c for c in pod["containers"] if "portcullis" in (c.get("image") or "")][0]
    cwhere = f"{where} container {container['name']}"

    # The gateway file the container runs with.
    args = (container.get("command") or []) + (container.get("args") or [])
    config_path = None
    for i, a in enumerate(args):
        if a in ("--config", "-c") and i + 1 < len(args):
            config_path = args[i + 1]
        elif a.startswith("--config="):
            config_path = a.split("=", 1)[1]
    if not check(args[:1] == ["run"] and config_path, cwhere, "args must be `run --config FILE`"):
        return
    configmaps = {d["metadata"]["name"]: d for _, d in find(docs, "ConfigMap")}
    volumes = {v["name"]: v for v in pod.get("volumes") or []}
    mounts = []  # (mountPath, files or None, writable)
    for m in container.get("volumeMounts") or []:
        v = volumes.get(m["name"])
        if not check(v is not None, cwhere, f"volumeMount {m['name']} has no volume"):
            continue
        check("subPath" not in m, cwhere,
              f"volumeMount {m['name']} uses subPath (files behind a subPath never update)")
        files, writable = volume_files(kdir, v, configmaps)
        mounts.append((m["mountPath"].rstrip("/"), files, writable and not m.get("readOnly"), v))

    def mount_for(path):
        best = None
        for mp, files, writable, v in mounts:
            if path == mp or path.startswith(mp + "/"):
                if best is None or len(mp) > len(best[0]):
                    best = (mp, files, writable, v)
        return best

    def provided(path, what):
        m = mount_for(path)
        if not check(m, cwhere, f"{what} {path} is on no volume mount (the root filesystem is read-only and empty)"):
            return False
        mp, files, _, _ = m
        rel = posixpath.relpath(path, mp)
        if files is None:
            return check(False, cwhere, f"{what} {path}: cannot tell which files the volume at {mp} holds")
        return check(rel in files, cwhere, f"{what} {path}: the volume at {mp} provides {sorted(files)}, not {rel}")

    if not provided(config_path, "--config"):
        return
    mp, _, _, vol = mount_for(config_path)
    cm_name = (vol.get("configMap") or {}).get("name")
    if not check(cm_name in configmaps, cwhere, f"--config {config_path} is not from a ConfigMap in the manifests"):
        return
    cm = configmaps[cm_name]
    rel = posixpath.relpath(config_path, mp)
    key = next((i["key"] for i in vol["configMap"].get("items") or [] if i["path"] == rel), rel)
    cmwhere = f"ConfigMap/{cm_name} key {key}"
    try:
        gw = yaml.safe_load(cm["data"][key])
    except Exception as e:  # noqa: BLE001
        check(False, cmwhere, f"gateway file is not YAML: {e}")
        return
    check_schema("gateway", gw, cmwhere)
    base = posixpath.dirname(config_path)

    def resolve(p):
        return p if p.startswith("/") else posixpath.normpath(posixpath.join(base, p))

    tls = gw.get("tls") or {}
    for field in ("certificate", "private_key"):
        if check(tls.get(field), cmwhere, f"tls.{field} is required"):
            provided(resolve(tls[field]), f"tls.{field}")
    keys = gw.get("keys") or {}
    if check(keys.get("pepper_file"), cmwhere, "keys.pepper_file must be set (a pepper from the environment would sit in the pod spec)"):
        provided(resolve(keys["pepper_file"]), "keys.pepper_file")
    admin = gw.get("admin") or {}
    if admin.get("token_file"):
        provided(resolve(admin["token_file"]), "admin.token_file")
    audit = gw.get("audit") or {}
    if audit.get("chain_key_file"):
        provided(resolve(audit["chain_key_file"]), "audit.chain_key_file")
    if audit.get("output") == "file":
        m = mount_for(resolve(audit.get("path", "audit.log")))
        check(m and m[2], cmwhere, "audit.path must be on a writable volume")
    server = gw.get("server") or {}
    for field, default in (("pid_file", "/tmp/portcullis.pid"), ("upgrade_sock", "/tmp/portcullis_upgrade.sock")):
        path = resolve(server.get(field, default))
        m = mount_for(posixpath.dirname(path))
        check(m and m[2] and "emptyDir" in m[3], cmwhere,
              f"server.{field} {path} must be in a writable emptyDir (read-only root filesystem)")

    store = keys.get("store", "embedded")
    check(store == "redis", cmwhere, "keys.store must be redis: the embedded store belongs to one process, and there are several replicas")
    redis = keys.get("redis") or {}
    if redis.get("password_file"):
        provided(resolve(redis["password_file"]), "keys.redis.password_file")
    if redis.get("ca"):
        provided(resolve(redis["ca"]), "keys.redis.ca")
    lint_sentinel(docs, cmwhere, redis)

    # Policies and schemas come from the volumes too.
    policy_files = []
    for pattern in gw.get("policies", ["policies/*.yaml"]):
        full = resolve(pattern)
        m = mount_for(posixpath.dirname(full))
        if not check(m and m[1] is not None, cmwhere, f"policies pattern {pattern} is on no ConfigMap/Secret volume"):
            continue
        hits = [posixpath.join(m[0], f) for f in m[1] if fnmatch.fnmatch(posixpath.join(m[0], f), full)]
        check(hits, cmwhere, f"policies pattern {pattern} matches no file the volume provides")
        policy_files += hits
    schemas_dir = resolve(gw.get("schemas", "schemas"))
    sm = mount_for(schemas_dir)
    for pf in policy_files:
        pkey = next((i["key"] for i in vol["configMap"].get("items") or []
                     if posixpath.join(mp, i["path"]) == pf), None)
        if pkey is None or pkey not in cm["data"]:
            continue
        try:
            policy = yaml.safe_load(cm["data"][pkey]) or {}
        except yaml.YAMLError as e:
            check(False, f"ConfigMap/{cm_name} key {pkey}", f"policy file is not YAML: {e}")
            continue
        check_schema("policy", policy, f"ConfigMap/{cm_name} key {pkey}")
        for route in policy.get("routes") or []:
            body = ((route.get("validate") or {}).get("body"))
            if isinstance(body, str):
                provided(posixpath.join(schemas_dir, body), f"schema of route {route.get('name')}")
        check(sm is not None, cmwhere, f"schemas directory {schemas_dir} is on no volume")

    # Ports and probes.
    https_port = port_of(gw.get("listen", {}).get("https", "0.0.0.0:8443"))
    admin_address = admin.get("address", f"127.0.0.1:{ADMIN_PORT_DEFAULT}")
    admin_port = port_of(admin_address)
    check(not str(admin_address).startswith(("127.", "[::1]", "localhost")), cmwhere,
          "admin.address must not be loopback in a pod: the kubelet probes and Prometheus use the pod address")
    check(container_port(container, "https") == https_port, cwhere,
          f"container port 'https' must be listen.https's port {https_port}")
    check(container_port(container, "admin") == admin_port, cwhere,
          f"container port 'admin' must be admin.address's port {admin_port}")
    metrics_address = (gw.get("metrics") or {}).get("address")
    if metrics_address is not None:
        check(container_port(container, "metrics") == port_of(metrics_address), cwhere,
              f"container port 'metrics' must be metrics.address's port {port_of(metrics_address)}")
    for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz"), ("startupProbe", None)):
        p = container.get(probe)
        if p is None and path is None:
            continue
        if not check(p and p.get("httpGet"), cwhere, f"{probe} must be an httpGet probe"):
            continue
        g = p["httpGet"]
        if path:
            check(g.get("path") == path, cwhere, f"{probe} must GET {path}, not {g.get('path')}")
        else:
            check(g.get("path") in ("/healthz", "/readyz"), cwhere, f"{probe} must GET /healthz or /readyz")
        check(container_port(container, g.get("port")) == admin_port, cwhere,
              f"{probe} must use the admin port {admin_port}")
        check(g.get("scheme", "HTTP") == "HTTP", cwhere, f"{probe}: the admin listener is plain HTTP")

    # Shutdown: the load balancer stops first (server.drain_delay, readyz
    # 503 while still serving, or a preStop sleep), then the drain fits in
    # the grace period.
    pre = ((container.get("lifecycle") or {}).get("preStop") or {})
    pre_s = (pre.get("sleep") or {}).get("seconds", 0)
    delay = duration_seconds(server.get("drain_delay"), 0.0)
    check(pre_s > 0 or delay > 0 or pre.get("exec"), cwhere,
          "needs server.drain_delay (or a preStop sleep) so the load balancer stops sending before the listeners close")
    check(not pre.get("exec"), cwhere, "preStop exec cannot work: the distroless image has no shell or sleep; use lifecycle.preStop.sleep")
    grace = duration_seconds(server.get("grace_period"), DEFAULT_GRACE)
    drain = duration_seconds(server.get("drain_timeout"), DEFAULT_DRAIN)
    tgps = pod.get("terminationGracePeriodSeconds", 30)
    check(tgps > pre_s + delay + grace + drain, where,
          f"terminationGracePeriodSeconds {tgps} must exceed preStop {pre_s}s + drain_delay {delay}s"
          f" + grace_period {grace}s + drain_timeout {drain}s")

    lint_services(docs, pod_labels, https_port, admin_port)
    lint_pdb_hpa(docs, dep, pod_labels)
    lint_networkpolicy(docs, pod_labels, https_port, admin_port)
    check(pod.get("serviceAccountName"), where, "serviceAccountName must name the gateway's ServiceAccount")
    sas = find(docs, "ServiceAccount", lambda d: d["metadata"]["name"] == pod.get("serviceAccountName"))
    if check(sas, where, f"ServiceAccount {pod.get('serviceAccountName')} is not in the manifests"):
        check(sas[0][1].get("automountServiceAccountToken") is False, sas[0][0],
              "ServiceAccount automountServiceAccountToken must be false")


def lint_sentinel(docs, where, redis):
    sentinel = redis.get("sentinel")
    if not check(sentinel or redis.get("url"), where, "keys.redis needs sentinel or url"):
        return
    if not sentinel:
        return
    stss = find(docs, "StatefulSet", lambda d: any(
        "sentinel" in " ".join(c.get("command") or []) + " ".join(c.get("args") or [])
        for c in d["spec"]["template"]["spec"]["containers"]))
    if not stss:
        return  # an external Sentinel: nothing in the manifests to compare with
    sf, sts = stss[0]
    name, svc, replicas = sts["metadata"]["name"], sts["spec"]["serviceName"], sts["spec"].get("replicas", 1)
    sentinel_ports = {p["containerPort"] for c in sts["spec"]["template"]["spec"]["containers"]
                      for p in c.get("ports") or [] if p.get("name") == "sentinel"}
    expected = {f"{name}-{i}.{svc}" for i in range(replicas)}
    hosts = set()
    for a in sentinel.get("addresses") or []:
        host, port = a.rsplit(":", 1)
        hosts.add(host.split(".svc")[0].rsplit(".", 1)[0] if host.count(".") > 1 else host)
        check(int(port) in sentinel_ports, where, f"sentinel address {a}: port is not the StatefulSet's sentinel port {sorted(sentinel_ports)}")
    check(hosts == expected, where, f"sentinel addresses must name every Sentinel pod {sorted(expected)}, got {sorted(hosts)}")
    envs = {e["name"]: e.get("value") for c in sts["spec"]["template"]["spec"].get("initContainers") or []
            for e in c.get("env") or []}
    check(envs.get("MASTER_NAME", "portcullis") == sentinel.get("master"), where,
          f"sentinel.master {sentinel.get('master')!r} is not the StatefulSet's MASTER_NAME {envs.get('MASTER_NAME', 'portcullis')!r}")
    svcs = find(docs, "Service", lambda d: d["metadata"]["name"] == svc)
    if check(svcs, sf, f"headless Service {svc} is not in the manifests"):
        check(svcs[0][1]["spec"].get("clusterIP") == "None", svcs[0][0], f"Service {svc} must be headless (clusterIP: None)")


def lint_services(docs, pod_labels, https_port, admin_port):
    selecting = [(f, d) for f, d in find(docs, "Service") if matches((d["spec"].get("selector") or {}), pod_labels)]
    check(selecting, "kubernetes", "no Service selects the gateway pods")
    public = 0
    for f, s in selecting:
        sw = f"{f}: Service/{s['metadata']['name']}"
        spec = s["spec"]
        exposed = spec.get("type") in ("LoadBalancer", "NodePort") or spec.get("externalIPs")
        admin_exposed = any(p.get("targetPort", p.get("port")) in (admin_port, "admin") or p.get("port") == admin_port
                            for p in spec.get("ports") or [])
        if exposed:
            public += 1
            check(not admin_exposed, sw, f"a public Service must not expose the admin port {admin_port}")
            check(all(p.get("targetPort", p.get("port")) in (https_port, "https") for p in spec.get("ports") or []), sw,
                  f"a public Service may only expose the HTTPS port {https_port}")
            if spec.get("type") == "LoadBalancer":
                check(spec.get("externalTrafficPolicy") == "Local", sw,
                      "externalTrafficPolicy must be Local: the gateway decides on the client address")
        elif admin_exposed:
            check(spec.get("type", "ClusterIP") == "ClusterIP", sw, "the admin port may only be on a ClusterIP Service")
    check(public >= 1, "kubernetes", "no public (LoadBalancer/NodePort) Service for the HTTPS port")


def lint_pdb_hpa(docs, dep, pod_labels):
    name = dep["metadata"]["name"]
    pdbs = [(f, d) for f, d in find(docs, "PodDisruptionBudget")
            if matches(d["spec"].get("selector", {}).get("matchLabels") or {}, pod_labels)]
    if check(pdbs, "kubernetes", f"no PodDisruptionBudget selects the labels of Deployment/{name} {pod_labels}"):
        f, pdb = pdbs[0]
        check(pdb["spec"].get("minAvailable") == 2, f, "PodDisruptionBudget minAvailable must be 2")
    hpas = [(f, d) for f, d in find(docs, "HorizontalPodAutoscaler")
            if d["spec"]["scaleTargetRef"].get("kind") == "Deployment" and d["spec"]["scaleTargetRef"].get("name") == name]
    if check(hpas, "kubernetes", f"no HorizontalPodAutoscaler targets Deployment/{name}"):
        f, hpa = hpas[0]
        check(hpa["apiVersion"] == "autoscaling/v2", f, "HPA must be autoscaling/v2")
        check(hpa["spec"]["scaleTargetRef"].get("apiVersion") == "apps/v1", f, "HPA scaleTargetRef.apiVersion must be apps/v1")
        check(any(m.get("type") == "Resource" and m["resource"]["name"] == "cpu" for m in hpa["spec"].get("metrics") or []),
              f, "HPA must scale on CPU")
        if pdbs:
            check(hpa["spec"].get("minReplicas", 1) > pdbs[0][1]["spec"].get("minAvailable", 0), f,
                  "HPA minReplicas must exceed the PDB's minAvailable, or node drains block")


def lint_networkpolicy(docs, pod_labels, https_port, admin_port):
    nps = [(f, d) for f, d in find(docs, "NetworkPolicy")
           if matches(d["spec"]["podSelector"].get("matchLabels") or {}, pod_labels)]
    if not check(nps, "kubernetes", "no NetworkPolicy selects the gateway pods"):
        return
    for f, np in nps:
        w = f"{f}: NetworkPolicy/{np['metadata']['name']}"
        spec = np["spec"]
        check("Egress" in (spec.get("policyTypes") or []), w, "policyTypes must include Egress")
        check("Ingress" in (spec.get("policyTypes") or []), w, "policyTypes must include Ingress")
        egress = spec.get("egress")
        check(egress, w, "egress must list the allowed destinations (none = everything denied, missing = check policyTypes)")
        for i, rule in enumerate(egress or []):
            check(rule.get("to"), w, f"egress[{i}] has no `to`: it allows every destination")
            check(rule.get("ports"), w, f"egress[{i}] has no `ports`: it allows every port")
            for peer in rule.get("to") or []:
                cidr = (peer.get("ipBlock") or {}).get("cidr", "")
                check(cidr not in ("0.0.0.0/0", "::/0"), w, f"egress[{i}] allows {cidr}")
        check(any(p.get("port") == 53 for r in egress or [] for p in r.get("ports") or []), w, "egress must allow DNS (53)")
        for i, rule in enumerate(spec.get("ingress") or []):
            ports = [p.get("port") for p in rule.get("ports") or []]
            if not ports or admin_port in ports or "admin" in ports:
                check(rule.get("from"), w, f"ingress[{i}] admits the admin port {admin_port} from anywhere")
                for peer in rule.get("from") or []:
                    check("ipBlock" not in peer, w, f"ingress[{i}]: admin port by ipBlock; select the monitoring namespace")
        check(any(https_port in [p.get("port") for p in r.get("ports") or []] for r in spec.get("ingress") or []),
              w, f"ingress must admit the HTTPS port {https_port}")


def lint_secrets_template(kdir, docs):
    path = os.path.join(kdir, "secret.template.yaml")
    if not check(os.path.isfile(path), kdir, "secret.template.yaml is missing"):
        return
    rel = os.path.relpath(path)
    check(not find(docs, "Secret"), "kustomization.yaml", "no Secret may be among the kustomization's resources (they would carry placeholders or real secrets into git)")
    for doc in yaml.safe_load_all(open(path)):
        if not doc:
            continue
        check(doc.get("kind") == "Secret", rel, "only Secrets belong in the template")
        check(not doc.get("data"), rel, f"Secret/{doc['metadata']['name']}: use stringData placeholders, not data")
        for k, v in (doc.get("stringData") or {}).items():
            check("REPLACE-ME" in str(v), rel, f"Secret/{doc['metadata']['name']} {k}: value must be a REPLACE-ME placeholder")


def lint_kubernetes(kdir):
    docs = load_kustomization(kdir)
    lint_pod_security(docs)
    lint_gateway(kdir, docs)
    lint_secrets_template(kdir, docs)
    ns = find(docs, "Namespace")
    if check(ns, "kubernetes", "no Namespace"):
        check(ns[0][1]["metadata"].get("labels", {}).get("pod-security.kubernetes.io/enforce") == "restricted",
              ns[0][0], "Namespace must enforce the restricted Pod Security Standard")
    return docs


# --- systemd --------------------------------------------------------------------

REQUIRED_UNIT = {
    "User": "portcullis",
    "DynamicUser": "no",
    "NoNewPrivileges": "yes",
    "ProtectSystem": "strict",
    "ProtectHome": "yes",
    "PrivateTmp": "yes",
    "PrivateDevices": "yes",
    "ProtectKernelTunables": "yes",
    "ProtectKernelModules": "yes",
    "ProtectKernelLogs": "yes",
    "ProtectControlGroups": "yes",
    "ProtectClock": "yes",
    "ProtectHostname": "yes",
    "RestrictNamespaces": "yes",
    "RestrictRealtime": "yes",
    "RestrictSUIDSGID": "yes",
    "LockPersonality": "yes",
    "MemoryDenyWriteExecute": "yes",
    "SystemCallArchitectures": "native",
    "CapabilityBoundingSet": "CAP_NET_BIND_SERVICE",
    "AmbientCapabilities": "CAP_NET_BIND_SERVICE",
    "RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX",
    "RuntimeDirectory": "portcullis",
    "StateDirectory": "portcullis",
    "LogsDirectory": "portcullis",
    "ExecReload": "/bin/kill -HUP $MAINPID",
    "KillSignal": "SIGTERM",
    "LimitNOFILE": "1048576",
    "UMask": "0077",
    "Restart": "on-failure",
}


def parse_unit(path):
    values = {}
    section = None
    for raw in open(path):
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        if "=" in line and section == "Service":
            k, v = line.split("=", 1)
            values.setdefault(k.strip(), []).append(v.strip())
    return values


def lint_systemd(unit):
    where = os.path.relpath(unit)
    if not check(os.path.isfile(unit), where, "missing"):
        return
    u = parse_unit(unit)
    for k, want in REQUIRED_UNIT.items():
        got = u.get(k, [])
        check(got and got[-1] == want, where, f"{k}= must be {want!r}, is {got[-1] if got else 'unset'!r}")
    filters = " ".join(u.get("SystemCallFilter", []))
    check("@system-service" in filters.split(), where, "SystemCallFilter must allow @system-service")
    denied = " ".join(v for v in u.get("SystemCallFilter", []) if v.startswith("~"))
    for group in ("@privileged", "@resources"):
        check(group in denied.lstrip("~").split(), where, f"SystemCallFilter must deny {group} (~{group})")
    rw = " ".join(u.get("ReadWritePaths", [])).split()
    for p in ("/var/lib/portcullis", "/var/log/portcullis"):
        check(p in rw, where, f"ReadWritePaths must include {p}")
    check(any("portcullis check" in v for v in u.get("ExecStartPre", [])), where, "ExecStartPre must run `portcullis check`")
    check(any(re.search(r"portcullis run --config \S+", v) for v in u.get("ExecStart", [])), where,
          "ExecStart must be `portcullis run --config FILE`")
    stop = duration_seconds((u.get("TimeoutStopSec") or ["90s"])[-1], 90)
    check(stop > DEFAULT_GRACE + DEFAULT_DRAIN, where,
          f"TimeoutStopSec ({stop}s) must exceed server.grace_period + drain_timeout ({DEFAULT_GRACE + DEFAULT_DRAIN}s)")
    check(u.get("User", ["root"])[-1] not in ("root", "0"), where, "must not run as root")


# --- container ------------------------------------------------------------------

SECRETISH = re.compile(r"(\.pem|\.key|\.p12|\.pfx|\.env|key|secret|pepper|token|password|credential)", re.I)


def lint_dockerfile(path):
    where = os.path.relpath(path)
    if not check(os.path.isfile(path), where, "missing"):
        return
    lines, cont = [], ""
    for raw in open(path):
        s = raw.rstrip("\n")
        if s.lstrip().startswith("#"):
            continue
        if s.endswith("\\"):
            cont += s[:-1] + " "
            continue
        lines.append((cont + s).strip())
        cont = ""
    lines = [l for l in lines if l]
    stages = []
    for l in lines:
        if l.upper().startswith("FROM "):
            stages.append([l])
        elif stages:
            stages[-1].append(l)
    if not check(len(stages) >= 2, where, "must be multi-stage (builder + runtime)"):
        return
    builder = " ".join(l for s in stages[:-1] for l in s)
    check("cargo build --release --locked -p portcullis" in builder, where,
          "the builder must run `cargo build --release --locked -p portcullis`")
    check("cmake" in builder, where, "the builder must install cmake (pingora's zlib-ng)")
    final = stages[-1]
    users = [l.split(None, 1)[1].strip() for l in final if l.upper().startswith("USER ")]
    if check(users, where, "the final stage must set USER"):
        user = users[-1].split(":")[0]
        check(user not in ("0", "root") and user != "", where, f"the final stage's USER must not be root (is {users[-1]})")
        check(user == "65532", where, f"the final stage's USER must be 65532 (is {users[-1]})")
    for l in final:
        word = l.split(None, 1)[0].upper()
        if word in ("COPY", "ADD"):
            parts = [p for p in l.split()[1:] if not p.startswith("--")]
            for src in parts[:-1]:
                check(not SECRETISH.search(src), where, f"the final stage copies {src!r}, which looks like a secret")
        if word in ("ENV", "ARG"):
            check(not SECRETISH.search(l.split(None, 1)[1].split("=")[0]), where, f"the final stage sets {l!r}: no secrets in the image")
    for s in stages:
        for l in s:
            if l.split(None, 1)[0].upper() in ("COPY", "ADD"):
                parts = [p for p in l.split()[1:] if not p.startswith("--")]
                for src in parts[:-1]:
                    check(not re.search(r"\.(pem|key|p12|pfx)$|(^|/)\.env$", src, re.I), where,
                          f"{l!r} copies key material into a build stage")
    text = "\n".join(final)
    check('ENTRYPOINT ["/usr/local/bin/portcullis"]' in text, where, "ENTRYPOINT must be [\"/usr/local/bin/portcullis\"]")
    check('CMD ["run", "--config", "/etc/portcullis/portcullis.yaml"]' in text or
          'CMD ["run","--config","/etc/portcullis/portcullis.yaml"]' in text, where,
          "CMD must be [\"run\", \"--config\", \"/etc/portcullis/portcullis.yaml\"]")
    exposed = " ".join(l.split(None, 1)[1] for l in final if l.upper().startswith("EXPOSE "))
    check(set(exposed.split()) >= {"8443", "9901"}, where, "the final stage must EXPOSE 8443 9901")


def lint_container_config(path):
    where = os.path.relpath(path)
    if not check(os.path.isfile(path), where, "missing"):
        return
    gw = yaml.safe_load(open(path)) or {}
    check_schema("gateway", gw, where)
    server = gw.get("server") or {}
    for field in ("pid_file", "upgrade_sock"):
        check(str(server.get(field, "/tmp/")).startswith("/run/portcullis/"), where,
              f"server.{field} must be under /run/portcullis (the tmpfs; the root filesystem is read-only)")
    keys = gw.get("keys") or {}
    if keys.get("store", "embedded") == "embedded":
        check(str(keys.get("path", "")).startswith("/var/lib/portcullis/"), where,
              "keys.path must be on the /var/lib/portcullis volume")
    check(keys.get("pepper_file"), where, "keys.pepper_file must be set")


# --- `portcullis check` on the shipped configurations ---------------------------


def run_gateway_check(binary, deploy, kdir, docs):
    tmp = tempfile.mkdtemp(prefix="portcullis-deploy-check-")
    try:
        cert, key = os.path.join(tmp, "cert.pem"), os.path.join(tmp, "key.pem")
        r = subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                            "-nodes", "-keyout", key, "-out", cert, "-days", "2", "-subj", "/CN=localhost"],
                           capture_output=True, text=True)
        if r.returncode != 0:
            print(f"lint_deploy: skipped `portcullis check`: openssl failed: {r.stderr.strip()}")
            return
        secret = "ab" * 32

        def materialise(gateway_text, layout, root):
            # layout: absolute path in the pod/container -> content or None (file copied from repo)
            text = gateway_text
            for absolute in sorted({"/etc/portcullis", "/run/portcullis", "/var/lib/portcullis", "/var/log/portcullis"}):
                text = text.replace(absolute, root + absolute)
            for p, content in layout.items():
                full = root + p
                os.makedirs(os.path.dirname(full), exist_ok=True)
                if isinstance(content, tuple):
                    shutil.copy(content[0], full)
                else:
                    open(full, "w").write(content)
            for d in ("/run/portcullis", "/var/lib/portcullis", "/var/log/portcullis"):
                os.makedirs(root + d, exist_ok=True)
            return text

        # 1. The Kubernetes ConfigMap, laid out as the Deployment mounts it.
        found = gateway_deployment(docs)
        if found:
            _, dep = found
            pod = dep["spec"]["template"]["spec"]
            c = [c for c in pod["containers"] if "portcullis" in (c.get("image") or "")][0]
            args = c.get("args") or []
            config_path = args[args.index("--config") + 1]
            cms = {d["metadata"]["name"]: d for _, d in find(docs, "ConfigMap")}
            volumes = {v["name"]: v for v in pod.get("volumes") or []}
            layout = {}
            for m in c.get("volumeMounts") or []:
                v = volumes[m["name"]]
                if "configMap" in v:
                    cm = cms[v["configMap"]["name"]]
                    for it in v["configMap"].get("items") or [{"key": k, "path": k} for k in cm["data"]]:
                        text = cm["data"][it["key"]]
                        # Upstream host names must resolve at load; the shipped one only does in a cluster.
                        text = re.sub(r"url: https?://[^\s#]+", "url: http://127.0.0.1:9", text)
                        layout[posixpath.join(m["mountPath"], it["path"])] = text
                elif "secret" in v or "projected" in v:
                    files, _ = volume_files(kdir, v, cms)
                    for f in files or []:
                        if f.endswith((".crt", "certificate")) or f == "tls.crt":
                            layout[posixpath.join(m["mountPath"], f)] = (cert,)
                        elif f.endswith(".key") or f == "tls.key":
                            layout[posixpath.join(m["mountPath"], f)] = (key,)
                        else:
                            layout[posixpath.join(m["mountPath"], f)] = secret + "\n"
            root = os.path.join(tmp, "k8s")
            gw_text = layout.pop(config_path)
            text = materialise(gw_text, layout, root)
            open(root + config_path, "w").write(text)
            r = subprocess.run([binary, "check", "--config", root + config_path], capture_output=True, text=True)
            check(r.returncode == 0, "kubernetes/configmap.yaml",
                  "`portcullis check` refuses the ConfigMap's gateway file:\n    " + (r.stdout + r.stderr).strip().replace("\n", "\n    "))
            if r.returncode == 0:
                print(f"lint_deploy: portcullis check (Kubernetes ConfigMap): {r.stdout.strip().replace(root, '')}")

        # 2. The container sample config with the repository's policies and schemas.
        sample = os.path.join(deploy, "container", "portcullis.yaml")
        if os.path.isfile(sample):
            repo = os.path.dirname(os.path.abspath(deploy))
            root = os.path.join(tmp, "container")
            layout = {
                "/etc/portcullis/tls/gateway.pem": (cert,),
                "/etc/portcullis/tls/gateway.key": (key,),
                "/etc/portcullis/secrets/pepper": secret + "\n",
                "/etc/portcullis/secrets/admin-token": secret + "\n",
                "/etc/portcullis/secrets/audit-chain-key": secret + "\n",
            }
            text = materialise(open(sample).read(), layout, root)
            shutil.copytree(os.path.join(repo, "policies"), root + "/etc/portcullis/policies")
            shutil.copytree(os.path.join(repo, "schemas"), root + "/etc/portcullis/schemas")
            open(root + "/etc/portcullis/portcullis.yaml", "w").write(text)
            r = subprocess.run([binary, "check", "--config", root + "/etc/portcullis/portcullis.yaml"],
                               capture_output=True, text=True)
            check(r.returncode == 0, "container/portcullis.yaml",
                  "`portcullis check` refuses it:\n    " + (r.stdout + r.stderr).strip().replace("\n", "\n    "))
            if r.returncode == 0:
                print(f"lint_deploy: portcullis check (container sample): {r.stdout.strip().replace(root, '')}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--deploy", default=os.path.dirname(os.path.abspath(__file__)))
    ap.add_argument("--portcullis", help="a portcullis binary to run `check` with")
    a = ap.parse_args()
    global SCHEMA_DIR
    SCHEMA_DIR = os.path.join(os.path.dirname(os.path.abspath(a.deploy)), "schemas", "portcullis")
    if schema_errors("gateway", {}) is None:
        print(f"lint_deploy: no {SCHEMA_DIR}/gateway.json (or no jsonschema): skipping the JSON Schema checks of the gateway files")
    kdir = os.path.join(a.deploy, "kubernetes")
    docs = lint_kubernetes(kdir)
    lint_systemd(os.path.join(a.deploy, "systemd", "portcullis.service"))
    lint_dockerfile(os.path.join(a.deploy, "container", "Dockerfile"))
    lint_container_config(os.path.join(a.deploy, "container", "portcullis.yaml"))
    if a.portcullis and not FAILURES:
        run_gateway_check(a.portcullis, a.deploy, kdir, docs)
    for f in FAILURES:
        print(f"lint_deploy: FAIL: {f}", file=sys.stderr)
    if FAILURES:
        print(f"lint_deploy: {len(FAILURES)} of {CHECKS} checks failed", file=sys.stderr)
        return 1
    print(f"lint_deploy: OK: {CHECKS} checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
