#!/usr/bin/env python3
"""Offline validation of the CodeIntel Helm charts (no cluster, no helm binary).

1. lints every chart under deploy/helm with the Helm 4 SDK (helm-python-sdk), strict: a warning
   fails like an error;
2. renders each chart with its default values and the scenarios below (GPU, object store, every
   optional feature on), and checks that values meant to be refused are refused;
3. validates every rendered manifest against the Kubernetes JSON schemas of kubernetes-validate in
   strict mode (no unknown fields), for the oldest Kubernetes the charts support and the newest
   the package ships. ServiceMonitor is a CRD with no schema there: it is skipped by kind and
   checked structurally instead;
4. checks what the charts promise: gRPC startup/readiness/liveness probes on the gRPC port of every
   service container, the locked-down securityContext on every container, config TOML that
   parses and holds only keys of docs/configuration.md with the documented types, addresses on
   0.0.0.0 matching the container ports, answer-svc's backends resolving to headless Services of
   the same render, the GPU limit in GPU mode (and nowhere else), and more (see check_render).

Exits 1 on any lint finding of warning level or above, schema violation or broken promise.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import hashlib
import os
import re
import tempfile
import sys
import time
import tomllib
from collections import Counter
from pathlib import Path

import helm_python as helm
import yaml
from kubernetes_validate import utils as kv

HERE = Path(__file__).resolve().parent
DOCS = HERE.parent.parent / "docs" / "configuration.md"

# kubeVersion ">=1.30.0-0" in every Chart.yaml (native gRPC probes are GA since 1.27, the preStop
# sleep action is on by default since 1.30), and the newest schemas kubernetes-validate ships.
KUBE_VERSIONS = ["1.30.0", kv.latest_version()]
LINT_KUBE_VERSION = "v1.30.0"
RELEASE, NAMESPACE = "codeintel", "codeintel"

# Custom resources without a schema in kubernetes-validate: not schema-validated, checked below.
CRD_KINDS = {("monitoring.coreos.com/v1", "ServiceMonitor")}

# Keys not yet in docs/configuration.md (none now). Only rendered when set.
PENDING_KEYS: dict[str, str] = {}

# binary -> (config section, gRPC port, metrics port)
SERVICES = {
    "vector-svc": ("vector", 50052, 9102),
    "lexical-svc": ("lexical", 50053, 9103),
    "hydrate-svc": ("hydrate", 50054, 9104),
    "answer-svc": ("answer", 50051, 9101),
}
CONFIG_PATH = "/etc/codeintel/config.toml"


class Failures:
    def __init__(self) -> None:
        self.items: list[str] = []
        self.checks = 0

    def check(self, ok: bool, where: str, what: str) -> bool:
        self.checks += 1
        if not ok:
            self.items.append(f"{where}: {what}")
        return ok


F = Failures()


# --- docs/configuration.md ---------------------------------------------------------------------


def documented_keys(path: Path = DOCS) -> dict[str, str]:
    """key -> type (bool, int, float, str, list or any) from the table of docs/configuration.md.

    A row may name several keys of one section (`lexical.addr` / `.metrics_addr` / `.reload_ms`)
    with as many defaults (`127.0.0.1:50053` / `127.0.0.1:9103` / `2000`).
    """
    keys: dict[str, str] = {}
    for line in path.read_text().splitlines():
        if not line.startswith("| `"):
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        names = re.findall(r"`([^`]+)`", cells[0])
        defaults = [d.strip() for d in cells[1].split(" / ")] if len(names) > 1 else [cells[1].strip()]
        section = None
        for i, name in enumerate(names):
            if name.startswith("."):
                name = f"{section}{name}"
            section = name.split(".")[0]
            default = defaults[i] if i < len(defaults) else ""
            keys[name] = value_type(default)
    return keys


def value_type(default: str) -> str:
    if default == "empty":
        return "str"
    if default == "number of cores":
        return "int"
    m = re.fullmatch(r"`([^`]*)`", default)
    if not m:
        return "any"
    v = m.group(1)
    if v.startswith("["):
        return "list"
    if v in ("true", "false"):
        return "bool"
    if re.fullmatch(r"-?\d+", v):
        return "int"
    if re.fullmatch(r"-?\d+\.\d+", v):
        return "float"
    return "str"


def type_ok(want: str, v: object) -> bool:
    if want == "any":
        return True
    if want == "bool":
        return isinstance(v, bool)
    if want == "int":
        return isinstance(v, int) and not isinstance(v, bool)
    if want == "float":  # the services' float keys take an integer too (serde widens it)
        return isinstance(v, (int, float)) and not isinstance(v, bool)
    if want == "list":
        return isinstance(v, list) and all(isinstance(x, str) for x in v)
    return isinstance(v, str)


# --- rendering ---------------------------------------------------------------------------------


def deep_merge(a: dict, b: dict) -> dict:
    out = copy.deepcopy(a)
    for k, v in b.items():
        out[k] = deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def load_values(chart: str, files: list[str], overrides: dict) -> dict:
    values: dict = {}
    for f in files:
        values = deep_merge(values, yaml.safe_load((HERE / chart / f).read_text()) or {})
    return deep_merge(values, overrides)


def render(chart: str, values: dict) -> list[tuple[str, dict]]:
    """(template path, manifest) of every non-empty document the chart renders."""
    with helm.Chart.load(str(HERE / chart)) as c:
        out = c.render(values=values, name=RELEASE, namespace=NAMESPACE, is_install=True, revision=1)
    docs = []
    for source, text in sorted(out.items()):
        if source.endswith("NOTES.txt"):
            continue
        for doc in yaml.safe_load_all(text):
            if doc:
                docs.append((source, doc))
    return docs


# --- schema validation -------------------------------------------------------------------------

# kubernetes-validate reads and parses its schema files on every call; they never change.
kv.schema_contents = functools.lru_cache(maxsize=None)(kv.schema_contents)


def validate_schema(where: str, doc: dict, kinds: Counter, skipped: Counter) -> None:
    key = (doc.get("apiVersion"), doc.get("kind"))
    if key in CRD_KINDS:
        skipped[key[1]] += 1
        return
    for version in KUBE_VERSIONS:
        F.checks += 1
        try:
            kv.validate(doc, version, strict=True)
        except kv.ValidationError as e:
            path = ".".join(str(p) for p in e.path)
            F.items.append(f"{where}: schema {version}: {path}: {e.message}")
        except kv.SchemaNotFoundError as e:
            F.items.append(f"{where}: {e.message} (add it to CRD_KINDS only if it is a CRD)")
    kinds[key[1]] += 1


# --- promises ----------------------------------------------------------------------------------


def pod_specs(doc: dict) -> list[dict]:
    kind = doc["kind"]
    if kind in ("Deployment", "StatefulSet", "Job"):
        return [doc["spec"]["template"]]
    if kind == "CronJob":
        return [doc["spec"]["jobTemplate"]["spec"]["template"]]
    return []


def selects(selector: dict, labels: dict) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def check_render(label: str, docs: list[tuple[str, dict]], expect: dict, keys: dict[str, str]) -> None:
    """Checks one render. expect: gpu (bool), internal_backends (bool), s3 (bool)."""
    by_kind: dict[str, dict[str, dict]] = {}
    names = Counter()
    for source, d in docs:
        name = d["metadata"]["name"]
        names[(d["kind"], name)] += 1
        by_kind.setdefault(d["kind"], {})[name] = d
        limit = 52 if d["kind"] == "CronJob" else 63
        F.check(len(name) <= limit, f"{label} {d['kind']}/{name}", f"name longer than {limit}")
        for k, v in (d["metadata"].get("labels") or {}).items():
            F.check(len(str(v)) <= 63, f"{label} {d['kind']}/{name}", f"label {k} longer than 63")
        F.check(d["metadata"].get("namespace") == NAMESPACE, f"{label} {d['kind']}/{name}", "namespace is not the release's")
    for (kind, name), n in names.items():
        F.check(n == 1, f"{label} {kind}/{name}", f"rendered {n} times")

    configmaps = by_kind.get("ConfigMap", {})
    services = by_kind.get("Service", {})
    deployments = by_kind.get("Deployment", {})
    tomls: dict[str, dict] = {}

    # Every config file parses and holds documented keys of documented types.
    for name, cm in configmaps.items():
        text = (cm.get("data") or {}).get("config.toml")
        if text is None:
            continue
        where = f"{label} ConfigMap/{name}"
        try:
            cfg = tomllib.loads(text)
        except tomllib.TOMLDecodeError as e:
            F.check(False, where, f"config.toml does not parse: {e}")
            continue
        tomls[name] = cfg
        sections = {k.split(".")[0] for k in keys}
        for section, table in cfg.items():
            if not F.check(isinstance(table, dict) and section in sections, where, f"[{section}] is not a section of docs/configuration.md"):
                continue
            for key, v in table.items():
                full = f"{section}.{key}"
                want = keys.get(full) or PENDING_KEYS.get(full)
                if F.check(want is not None, where, f"{full} is not in docs/configuration.md"):
                    F.check(type_ok(want, v), where, f"{full} = {v!r} is not a {want}")

    # Pods: security, volumes, probes, config.
    for kind in ("Deployment", "StatefulSet", "Job", "CronJob"):
        for name, d in by_kind.get(kind, {}).items():
            claims = [t["metadata"]["name"] for t in d["spec"].get("volumeClaimTemplates", [])]
            for tmpl in pod_specs(d):
                where = f"{label} {kind}/{name}"
                check_pod(where, tmpl, configmaps, tomls, by_kind, expect, claims)
            if kind == "Deployment":
                F.check(selects(d["spec"]["selector"]["matchLabels"], d["spec"]["template"]["metadata"]["labels"]),
                        f"{label} Deployment/{name}", "selector does not match its pod labels")

    # Services select pods and name their ports.
    for name, s in services.items():
        where = f"{label} Service/{name}"
        targets = [t for (_, d) in docs for t in pod_specs(d) if selects(s["spec"].get("selector", {}), t["metadata"].get("labels") or {})]
        if F.check(bool(targets), where, "selects no pod of the render"):
            ports = {p.get("name") for t in targets for c in t["spec"]["containers"] for p in c.get("ports", [])}
            for p in s["spec"]["ports"]:
                F.check(p.get("targetPort") in ports, where, f"targetPort {p.get('targetPort')} is no container port")

    # Every service Deployment has its headless Service.
    for name, d in deployments.items():
        c = d["spec"]["template"]["spec"]["containers"][0]
        if c["name"] not in SERVICES:
            continue
        headless = [s for s in services.values() if s["spec"].get("clusterIP") == "None" and selects(s["spec"]["selector"], d["spec"]["template"]["metadata"]["labels"])]
        F.check(len(headless) == 1, f"{label} Deployment/{name}", "has no headless Service")

    # answer-svc reaches headless Services of this render; Redis too when it is bundled.
    for name, cfg in tomls.items():
        a = cfg.get("answer")
        if not a or "vector_url" not in a:
            continue
        where = f"{label} ConfigMap/{name}"
        for key in ("vector_url", "lexical_url", "hydrate_url"):
            for url in a[key].split(","):
                m = re.fullmatch(r"http://([A-Za-z0-9.-]+):(\d+)", url)
                if not F.check(bool(m), where, f"answer.{key}: {url!r} is not http://host:port"):
                    continue
                if expect.get("internal_backends"):
                    s = services.get(m.group(1))
                    if F.check(s is not None and s["spec"].get("clusterIP") == "None", where, f"answer.{key}: {m.group(1)} is no headless Service of the render"):
                        F.check(int(m.group(2)) in [p["port"] for p in s["spec"]["ports"]], where, f"answer.{key}: port {m.group(2)} is not served by {m.group(1)}")
        if expect.get("redis_secret"):
            F.check("redis_url" not in a, where, "answer.redis_url in the file although the URL comes from a Secret")
        if "StatefulSet" in by_kind and any("redis" in n for n in by_kind["StatefulSet"]):
            m = re.fullmatch(r"redis://([A-Za-z0-9.-]+):(\d+)(/\d+)?", a.get("redis_url", ""))
            F.check(bool(m) and m.group(1) in services, where, f"answer.redis_url {a.get('redis_url')!r} is not the bundled Redis Service")

    # HPA and PDB point at Deployments of the render.
    for name, h in by_kind.get("HorizontalPodAutoscaler", {}).items():
        target = deployments.get(h["spec"]["scaleTargetRef"]["name"])
        if F.check(target is not None, f"{label} HPA/{name}", "scales no Deployment of the render"):
            F.check("replicas" not in target["spec"], f"{label} HPA/{name}", "its Deployment also sets replicas")
    for name, p in by_kind.get("PodDisruptionBudget", {}).items():
        F.check(any(selects(p["spec"]["selector"]["matchLabels"], d["spec"]["template"]["metadata"]["labels"]) for d in deployments.values()),
                f"{label} PDB/{name}", "selects no Deployment")

    # ServiceMonitors (not schema-validated): one Service each, with the named port.
    for name, sm in by_kind.get("ServiceMonitor", {}).items():
        where = f"{label} ServiceMonitor/{name}"
        sel = sm["spec"]["selector"]["matchLabels"]
        matched = [s for s in services.values() if selects(sel, s["metadata"].get("labels") or {})]
        if F.check(len(matched) == 1, where, f"selects {len(matched)} Services, want 1 (each pod scraped once)"):
            ports = {p["name"] for p in matched[0]["spec"]["ports"]}
            for ep in sm["spec"]["endpoints"]:
                F.check(ep.get("port") in ports, where, f"endpoint port {ep.get('port')} is not a port of Service/{matched[0]['metadata']['name']}")

    # GPU: the limit, tag, placement and device in GPU renders, and nowhere else.
    gpu_limits = [c for (_, d) in docs for t in pod_specs(d) for c in t["spec"]["containers"] if "nvidia.com/gpu" in ((c.get("resources") or {}).get("limits") or {})]
    vector = [(n, d) for n, d in deployments.items() if d["spec"]["template"]["spec"]["containers"][0]["name"] == "vector-svc"]
    if expect.get("gpu"):
        F.check(len(gpu_limits) >= 1, label, "GPU render has no container with an nvidia.com/gpu limit")
        for n, d in vector:
            spec = d["spec"]["template"]["spec"]
            c = spec["containers"][0]
            where = f"{label} Deployment/{n}"
            F.check(int(c["resources"]["limits"].get("nvidia.com/gpu", 0)) >= 1, where, "no nvidia.com/gpu limit")
            F.check(c["image"].split(":")[-1].endswith("gpu"), where, f"image {c['image']} is not the GPU variant")
            F.check(bool(spec.get("nodeSelector")), where, "no GPU node selector")
            F.check(any(t.get("key") == "nvidia.com/gpu" for t in spec.get("tolerations", [])), where, "no nvidia.com/gpu toleration")
            F.check(tomls.get(n, {}).get("vector", {}).get("device") == "gpu", where, "vector.device is not gpu")
    else:
        F.check(not gpu_limits, label, "a CPU render asks for nvidia.com/gpu")
        for n, _ in vector:
            F.check(tomls.get(n, {}).get("vector", {}).get("device") != "gpu", f"{label} ConfigMap/{n}", "vector.device = gpu outside GPU mode")

    # One embedding contract: the indexer and the services agree on embed, sparse and data.root
    # (thread counts, batch sizes and timeouts aside: how fast each side runs is its own business).
    indexer = next((cfg for n, cfg in tomls.items() if n.endswith("-indexer")), None)
    if indexer is not None:
        for n, cfg in tomls.items():
            sec = next(iter(SERVICES[b][0] for b in SERVICES if n.endswith(b)), None)
            if sec in ("vector", "lexical", "hydrate"):
                for s in ("embed", "sparse"):
                    mine, theirs = (strip_tuning(c.get(s, {})) for c in (cfg, indexer))
                    F.check(mine == theirs, f"{label} ConfigMap/{n}", f"[{s}] {mine} differs from the indexer's {theirs}")
                F.check(cfg.get("data", {}).get("root") == indexer.get("data", {}).get("root"), f"{label} ConfigMap/{n}", "data.root differs from the indexer's")


TUNING = {"workers", "batch_size", "remote_batch_size", "timeout_ms"}


def strip_tuning(table: dict) -> dict:
    return {k: v for k, v in table.items() if k not in TUNING}


def check_pod(where: str, tmpl: dict, configmaps: dict, tomls: dict, by_kind: dict, expect: dict, claims: list[str]) -> None:
    spec = tmpl["spec"]
    psc = spec.get("securityContext") or {}
    F.check(psc.get("runAsNonRoot") is True, where, "pod securityContext.runAsNonRoot is not true")
    F.check(spec.get("automountServiceAccountToken") is False, where, "mounts a service account token")
    volumes = {v["name"]: v for v in spec.get("volumes", [])}
    for name in claims:  # a StatefulSet's volumeClaimTemplates
        volumes.setdefault(name, {"name": name, "persistentVolumeClaim": {"claimName": name}})
    for v in volumes.values():
        if "configMap" in v:
            F.check(v["configMap"]["name"] in configmaps, where, f"volume {v['name']}: ConfigMap {v['configMap']['name']} is not rendered")
        if "persistentVolumeClaim" in v and "PersistentVolumeClaim" in by_kind and v["name"] == "data" and v["name"] not in claims:
            F.check(v["persistentVolumeClaim"]["claimName"] in by_kind["PersistentVolumeClaim"], where, "data volume names a claim the render does not create")
    for c in spec.get("initContainers", []) + spec["containers"]:
        cw = f"{where} container {c['name']}"
        sc = c.get("securityContext") or {}
        F.check(sc.get("readOnlyRootFilesystem") is True, cw, "readOnlyRootFilesystem is not true")
        F.check(sc.get("allowPrivilegeEscalation") is False, cw, "allowPrivilegeEscalation is not false")
        F.check("ALL" in ((sc.get("capabilities") or {}).get("drop") or []), cw, "does not drop ALL capabilities")
        F.check((sc.get("runAsNonRoot", psc.get("runAsNonRoot"))) is True, cw, "runAsNonRoot is not true")
        F.check(((sc.get("seccompProfile") or psc.get("seccompProfile") or {}).get("type")) == "RuntimeDefault", cw, "seccompProfile is not RuntimeDefault")
        F.check(all(k in ("cpu", "memory", "nvidia.com/gpu", "ephemeral-storage") for k in ((c.get("resources") or {}).get("limits") or {})), cw, "unexpected resource limit")
        F.check("memory" in ((c.get("resources") or {}).get("limits") or {}), cw, "no memory limit")
        mounts = {m["mountPath"]: m for m in c.get("volumeMounts", [])}
        for m in mounts.values():
            F.check(m["name"] in volumes, cw, f"mounts {m['name']}, which is no volume of the pod")
        if c["image"].split(":")[0].endswith("codeintel"):
            tmp = mounts.get("/tmp")
            F.check(tmp is not None and "emptyDir" in volumes.get(tmp["name"], {}), cw, "no emptyDir on /tmp")
        if c["name"] in SERVICES:
            check_service_container(cw, c, tmpl, volumes, mounts, configmaps, tomls, expect)
        if c["name"] == "index":
            cmd = c["command"]
            F.check(cmd[:2] == ["codeintel", "index"] and cmd[2].startswith("/repos/") and cmd[3] == "--repo" and cmd[5:7] == ["--config", CONFIG_PATH],
                    cw, f"command {cmd} is not codeintel index /repos/NAME --repo NAME --config {CONFIG_PATH}")
            F.check("/repos" in mounts, cw, "no /repos mount")
            data = mounts.get(expect.get("mount_path", "/data"))
            if not expect.get("s3"):
                F.check(data is not None and not data.get("readOnly", False), cw, "the data root is not mounted read-write")


def check_service_container(cw, c, tmpl, volumes, mounts, configmaps, tomls, expect) -> None:
    section, _, _ = SERVICES[c["name"]]
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    F.check(c["command"] == [c["name"], "--config", CONFIG_PATH], cw, f"command {c['command']}")
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        p = c.get(probe) or {}
        F.check((p.get("grpc") or {}).get("port") == ports.get("grpc"), cw, f"{probe} is not a gRPC probe on the gRPC port")
    sp = c.get("startupProbe") or {}
    F.check(sp.get("failureThreshold", 3) * sp.get("periodSeconds", 10) >= 300, cw, "startupProbe allows less than 5 minutes for model and index loading")
    ann = tmpl["metadata"].get("annotations") or {}
    if "prometheus.io/port" in ann:
        F.check(int(ann["prometheus.io/port"]) == ports.get("metrics"), cw, "prometheus.io/port is not the metrics port")
    cfg_mount = next((m for m in mounts.values() if m["mountPath"] == "/etc/codeintel"), None)
    cm_name = (volumes.get(cfg_mount["name"], {}).get("configMap") or {}).get("name") if cfg_mount else None
    cfg = tomls.get(cm_name)
    if not F.check(cfg is not None, cw, "no parsed config.toml mounted at /etc/codeintel"):
        return
    text = configmaps[cm_name]["data"]["config.toml"]
    F.check(ann.get("checksum/config") == sha256(text.rstrip("\n")), cw, "checksum/config is not the hash of the mounted config")
    own = cfg.get(section, {})
    F.check(own.get("addr") == f"0.0.0.0:{ports.get('grpc')}", cw, f"{section}.addr {own.get('addr')!r} is not 0.0.0.0:<grpc port>")
    F.check(own.get("metrics_addr") == f"0.0.0.0:{ports.get('metrics')}", cw, f"{section}.metrics_addr {own.get('metrics_addr')!r} is not 0.0.0.0:<metrics port>")
    if section in ("vector", "lexical", "hydrate"):
        root = cfg.get("data", {}).get("root", "")
        env = {e["name"] for e in c.get("env", [])}
        if expect.get("s3"):
            F.check(root.startswith("s3://"), cw, f"data.root {root!r} is not an s3:// URL")
            F.check({"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"} <= env, cw, "no object-store credentials in env")
        else:
            m = mounts.get(root)
            F.check(m is not None and "persistentVolumeClaim" in volumes.get(m["name"], {}), cw, f"data.root {root!r} is not a mounted claim")
    if section == "answer" and expect.get("redis_secret"):
        F.check("CODEINTEL__ANSWER__REDIS_URL" in {e["name"] for e in c.get("env", [])}, cw, "the Redis URL Secret is not in env")
    if section == "answer" and cfg.get("answer", {}).get("traces", True):
        td = cfg.get("answer", {}).get("trace_dir")
        F.check(td in mounts and not mounts[td].get("readOnly", False), cw, f"answer.trace_dir {td!r} is not a writable mount")


# --- scenarios ---------------------------------------------------------------------------------

SERVICE_CHARTS = ["vector-svc", "lexical-svc", "hydrate-svc", "answer-svc"]

FULL_SERVICE = {
    "replicaCount": 2,
    "autoscaling": {"enabled": True},
    "metrics": {"serviceMonitor": {"enabled": True, "labels": {"release": "prometheus"}}},
    "serviceAccount": {"create": True},
    "affinity": {"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [{"weight": 100, "podAffinityTerm": {"topologyKey": "kubernetes.io/hostname", "labelSelector": {"matchLabels": {"app.kubernetes.io/part-of": "codeintel"}}}}]}},
    "config": {"telemetry": {"otlp_endpoint": "http://otel-collector:4318", "sample_ratio": 0.25}},
}

FULL_UMBRELLA = {
    "global": {"codeintel": {
        "image": {"tag": "1.2.3"},
        "config": {"embed": {"max_tokens": 256, "name_view": True}, "sparse": {"enabled": True}, "telemetry": {"otlp_endpoint": "http://otel-collector:4318"}},
    }},
    "indexer": {
        "repos": [
            {"name": "codeintel", "git": {"url": "https://example.com/org/codeintel.git", "ref": "main"}},
            {"name": "Very_Long.Repository-Name-With-Parts", "path": "checkouts/long"},
        ],
        "sourceVolume": {"persistentVolumeClaim": {"claimName": "checkouts", "readOnly": True}},
        "cron": {"enabled": True, "timeZone": "Etc/UTC"},
        "config": {"embed": {"workers": 2}, "index": {"keep_versions": 3, "compact_ratio": 0.05}},
        "job": {"activeDeadlineSeconds": 7200},
    },
    "redis": {"persistence": {"enabled": True}},
    "vector-svc": deep_merge(FULL_SERVICE, {"config": {"vector": {"repos": ["team-a-*"], "nprobe": 16, "gpu_memory_fraction": 0.5}}}),
    "lexical-svc": deep_merge(FULL_SERVICE, {"config": {"lexical": {"repos": ["team-a-*"], "doc_boost": 0.5}}}),
    "hydrate-svc": FULL_SERVICE,
    "answer-svc": deep_merge(FULL_SERVICE, {
        "llm": {"url": "http://vllm-chat:8000", "model": "Qwen/Qwen2.5-Coder-7B-Instruct"},
        "rerank": {"url": "http://vllm-rerank:8000", "model": "BAAI/bge-reranker-v2-m3"},
        "config": {"answer": {"fusion": "rrf", "rrf_k": 30, "identifier_routing": False, "sparse_weight": 0}},
    }),
}

# (label, chart, values files, overrides, expectations)
SCENARIOS = (
    [(f"{c} defaults", c, [], {}, {}) for c in SERVICE_CHARTS]
    + [(f"{c} full", c, [], FULL_SERVICE, {}) for c in SERVICE_CHARTS]
    + [
        ("vector-svc gpu", "vector-svc", ["values-gpu.yaml"], {}, {"gpu": True}),
        ("vector-svc s3", "vector-svc", [], {"dataRoot": {"type": "s3", "s3": {"url": "s3://bucket/indexes", "existingSecret": "s3"}}}, {"s3": True}),
        ("answer-svc external", "answer-svc", [], {"backends": {"vector": {"urls": ["http://shard-a-vector-svc-headless:50052", "http://shard-b-vector-svc-headless:50052"]}}, "redis": {"existingSecret": "redis"}, "traces": {"existingClaim": "traces"}}, {"redis_secret": True}),
        ("codeintel defaults", "codeintel", [], {}, {"internal_backends": True}),
        ("codeintel gpu", "codeintel", ["values-gpu.yaml"], {}, {"internal_backends": True, "gpu": True}),
        ("codeintel s3", "codeintel", ["values-s3.yaml"], {"indexer": {"repos": [{"name": "r", "git": {"url": "https://example.com/r.git"}}]}}, {"internal_backends": True, "s3": True}),
        ("codeintel ext. redis", "codeintel", [], {"redis": {"enabled": False}, "answer-svc": {"redis": {"existingSecret": "redis"}}}, {"internal_backends": True, "redis_secret": True}),
        ("codeintel full", "codeintel", [], FULL_UMBRELLA, {"internal_backends": True}),
        ("codeintel full+gpu", "codeintel", ["values-gpu.yaml"], FULL_UMBRELLA, {"internal_backends": True, "gpu": True}),
    ]
)

# Values the charts must refuse: (label, chart, overrides, words of the expected message).
REFUSED = [
    ("bundled Redis off, URL left on it", "codeintel", {"redis": {"enabled": False}}, "redis.enabled is false"),
    ("vector-svc off, no backend URL", "codeintel", {"vector-svc": {"enabled": False}}, "vector-svc.enabled is false"),
    ("config list of tables", "vector-svc", {"config": {"vector": {"repos": [{"glob": "a"}]}}}, "config lists hold strings"),
    ("bad data root type", "hydrate-svc", {"dataRoot": {"type": "nfs"}}, "dataRoot.type"),
    ("s3 without a URL", "codeintel", {"global": {"codeintel": {"dataRoot": {"type": "s3"}}}}, "s3://bucket"),
    ("bad backend URL", "answer-svc", {"backends": {"lexical": {"urls": ["lexical:50053"]}}}, "is not http://host:port"),
    ("repo name with a slash", "codeintel", {"indexer": {"repos": [{"name": "org/repo", "git": {"url": "https://x/y.git"}}]}}, "must be letters"),
    ("repo path out of the volume", "codeintel", {"indexer": {"repos": [{"name": "r", "path": "../etc"}], "sourceVolume": {"emptyDir": {}}}}, "leaves the source volume"),
    ("repo with no source", "codeintel", {"indexer": {"repos": [{"name": "r"}]}}, "indexer.sourceVolume is empty"),
]

# Renders the checker itself must flag (a checker that passes everything proves nothing).
FLAGGED = [
    ("unknown key", "vector-svc", {"config": {"vector": {"bogus": 1}}}, "vector.bogus is not in docs/configuration.md"),
    ("undocumented section", "lexical-svc", {"config": {"cache": {"dir": "/x"}}}, "[cache] is not a section"),
    ("float for an integer key", "vector-svc", {"config": {"vector": {"nprobe": 1.5}}}, "vector.nprobe = 1.5 is not a int"),
    ("string for a bool key", "answer-svc", {"config": {"answer": {"identifier_routing": "yes"}}}, "answer.identifier_routing = 'yes' is not a bool"),
    ("embedding contract split", "codeintel", {"vector-svc": {"config": {"embed": {"model_id": "other"}}}}, "[embed] {'model_id': 'other'} differs"),
]


@contextlib.contextmanager
def quiet_symlink_notes():
    """Drops the Helm loader's "found symbolic link in path" INFO lines (the subcharts are symlinks
    on purpose), which Go writes straight to file descriptor 2; anything else written there is
    passed on."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as tmp:
        os.dup2(tmp.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            for line in tmp.read().decode(errors="replace").splitlines(keepends=True):
                if "found symbolic link in path" not in line:
                    sys.stderr.write(line)
            sys.stderr.flush()


def lint(chart: str, values: dict | None, label: str) -> tuple[int, list[str]]:
    report = helm.lint(str(HERE / chart), values, strict=True, with_subcharts=True, kube_version=LINT_KUBE_VERSION)
    infos = []
    for m in report.get("messages", []):
        if m["severity"] >= 2:
            F.items.append(f"lint {label}: {m['path']}: {m['error']}")
        else:
            infos.append(f"{m['path']}: {m['error']}")
    for e in report.get("errors", []):
        F.items.append(f"lint {label}: {e}")
    F.checks += 1
    return report.get("total_charts_linted", 0), infos


def main() -> int:
    start = time.monotonic()
    keys = documented_keys()
    F.check(len(keys) >= 80, "docs/configuration.md", f"only {len(keys)} keys parsed from its table")
    charts = sorted(p.parent.name for p in HERE.glob("*/Chart.yaml"))
    print(f"helm SDK {helm.helm_sdk_version()} (helm-python-sdk {helm.__version__}), kubernetes-validate schemas {', '.join(KUBE_VERSIONS)}")
    print(f"docs/configuration.md: {len(keys)} keys in {len({k.split('.')[0] for k in keys})} sections (+ {len(PENDING_KEYS)} pending: {', '.join(PENDING_KEYS)})")

    # 1. lint (subcharts included, strict) and dependencies present.
    linted = 0
    for chart in charts:
        try:
            n, infos = lint(chart, None, chart)
            extra = ""
            if (HERE / chart / "values-gpu.yaml").exists():
                lint(chart, load_values(chart, ["values-gpu.yaml"], {}), f"{chart} (values-gpu.yaml)")
                extra = " + values-gpu.yaml"
            for dep in helm.dependency_list(str(HERE / chart)):
                F.check(dep["status"] in ("ok", "unpacked"), f"{chart} dependency {dep['name']}", f"status {dep['status']}")
        except helm.HelmError as e:
            F.items.append(f"lint {chart}: {e}")
            print(f"lint {chart:14s} FAILED: {e}")
            continue
        linted += 1
        print(f"lint {chart:14s} {n} chart(s), subcharts included{extra}; info: {'; '.join(infos) or 'none'}")

    # 2-4. render, validate, check.
    kinds: Counter = Counter()
    skipped: Counter = Counter()
    manifests = unrendered = 0
    for label, chart, files, overrides, expect in SCENARIOS:
        try:
            docs = render(chart, load_values(chart, files, overrides))
        except helm.HelmError as e:
            F.items.append(f"render {label}: {e}")
            unrendered += 1
            continue
        for source, d in docs:
            validate_schema(f"{label} {source} {d.get('kind')}/{d['metadata'].get('name')}", d, kinds, skipped)
        check_render(label, docs, expect, keys)
        manifests += len(docs)
        print(f"render {label:22s} {len(docs):3d} manifests: {', '.join(f'{k} {n}' for k, n in sorted(Counter(d['kind'] for _, d in docs).items()))}")

    if unrendered:  # a chart that does not load or render: the checks below would only repeat it
        return report(start, linted, charts, manifests, kinds, skipped, 0, 0)

    # Config changes roll the pods.
    a = {n: d for _, d in render("vector-svc", {}) for n in [d["metadata"]["name"]] if d["kind"] == "Deployment"}
    b = {n: d for _, d in render("vector-svc", {"config": {"vector": {"nprobe": 16}}}) for n in [d["metadata"]["name"]] if d["kind"] == "Deployment"}
    for n in a:
        F.check(a[n]["spec"]["template"]["metadata"]["annotations"]["checksum/config"] != b[n]["spec"]["template"]["metadata"]["annotations"]["checksum/config"],
                f"vector-svc Deployment/{n}", "checksum/config does not change with the config")

    refused = 0
    for label, chart, overrides, words in REFUSED:
        try:
            render(chart, overrides)
            F.items.append(f"refuse {label}: rendered, but must fail ({words})")
        except helm.HelmError as e:
            if F.check(words in str(e), f"refuse {label}", f"failed with another message: {e}"):
                refused += 1
    flagged = 0
    for label, chart, overrides, words in FLAGGED:
        saved, F.items = F.items, []
        check_render(label, render(chart, overrides), {}, keys)
        found, F.items = F.items, saved
        if F.check(any(words in f for f in found), f"self-test {label}", f"the checker did not flag it (got {found})"):
            flagged += 1

    # The schema check itself: strict mode must refuse an unknown field and a wrong type.
    deployment = next(d for _, d in render("vector-svc", {}) if d["kind"] == "Deployment")
    broken = []
    unknown = copy.deepcopy(deployment)
    unknown["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["grpc"]["prot"] = 1
    broken.append(("unknown field", unknown))
    wrong = copy.deepcopy(deployment)
    wrong["spec"]["replicas"] = "two"
    broken.append(("wrong type", wrong))
    for what, doc in broken:
        saved, F.items = F.items, []
        validate_schema(f"self-test {what}", doc, Counter(), Counter())
        found, F.items = F.items, saved
        if F.check(len(found) == len(KUBE_VERSIONS), f"self-test schema {what}", "strict validation did not refuse it"):
            flagged += 1

    return report(start, linted, charts, manifests, kinds, skipped, refused, flagged)


def report(start, linted, charts, manifests, kinds, skipped, refused, flagged) -> int:
    elapsed = time.monotonic() - start
    print()
    print(f"charts linted: {linted} of {len(charts)} ({', '.join(charts)})")
    print(f"renders: {len(SCENARIOS)} scenarios, {manifests} manifests")
    print(f"schema-validated (strict, Kubernetes {' and '.join(KUBE_VERSIONS)}): {sum(kinds.values())} manifests: "
          + ", ".join(f"{k} {n}" for k, n in sorted(kinds.items())))
    print("skipped from schema validation (CRDs, no schema shipped): " + (", ".join(f"{k} {n}" for k, n in sorted(skipped.items())) or "none") + " (checked structurally)")
    print(f"refused as they must be: {refused}/{len(REFUSED)}; checker self-tests flagged: {flagged}/{len(FLAGGED) + 2}")
    print(f"checks: {F.checks}, failures: {len(F.items)}, {elapsed:.1f} s")
    if F.items:
        print("\nFAILED:")
        for f in F.items:
            print(f"  {f}")
        return 1
    print("OK")
    return 0


if __name__ == "__main__":
    with quiet_symlink_notes():
        rc = main()
    sys.exit(rc)
