"""Checks of the deployment kit under deploy/, run by deploy/validate.sh.

Every check adds a problem instead of stopping, so one run lists everything
wrong; the exit status is 1 if there is any. The checks:

- Kubernetes: each manifest against the Kubernetes 1.30 schemas (strict), the
  ServiceMonitor (a CRD) by its own structure, the kustomization rendered (with
  kubectl when present, else by reading kustomization.yaml), and what the
  objects must agree on: ports, probe paths, mounts, labels and the policies
  the kit promises (replicas, security context, resources, anti-affinity).
- Compose and Dockerfile: ports, volumes, health checks, users and paths
  agree with deploy/docker/gateway.toml and with each other.
- systemd: `systemd-analyze verify` and an exposure score of at most 2.0.
- Prometheus: promtool checks the rules, runs their unit tests, checks the
  compose scrape config and the dashboard's expressions; every alert has a
  firing and a quiet test case.

The metric names in the alerts and the dashboard are compared with the real
exporter by the Rust test tests/integration/deploy_assets.rs.
"""

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

import kubernetes_validate
import yaml

KUBERNETES_VERSION = "1.30.0"
ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "kubernetes"
# Manifests kept out of the kustomization on purpose (see kustomization.yaml).
K8S_TEMPLATES = {"secret.yaml"}
# Kinds without a schema in kubernetes-validate, each with a check of its own.
CUSTOM_KINDS = {("monitoring.coreos.com/v1", "ServiceMonitor")}
# The highest `systemd-analyze security` exposure the unit may have (0 to 10).
SYSTEMD_MAX_EXPOSURE = 2.0
ALERT_JOB = "scim-ldap-gateway"

problems: list[str] = []


def problem(where: str, message: str) -> None:
    # A tool's multi-line output stays readable under the bullet.
    problems.append(f"{where}: {message}".replace("\n", "\n      "))


def rel(path: Path) -> str:
    return str(path.relative_to(ROOT))


def load_yaml_docs(path: Path) -> list:
    try:
        return [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
    except (OSError, yaml.YAMLError) as e:
        problem(rel(path), f"cannot read it as YAML: {e}")
        return []


def dig(obj, *keys, default=None):
    """obj[k1][k2]..., or default where a level is missing."""
    for k in keys:
        if isinstance(obj, dict) and k in obj:
            obj = obj[k]
        elif isinstance(obj, list) and isinstance(k, int) and -len(obj) <= k < len(obj):
            obj = obj[k]
        else:
            return default
    return obj


# --- The gateway's configs ---------------------------------------------------------------


class GatewayConfig:
    """The facts of a gateway config file that deployments must agree with."""

    def __init__(self, path: Path):
        self.path = path
        self.data = tomllib.loads(path.read_text())
        listeners = self.data.get("listeners", [])
        self.listener_ports = [port_of(l["address"]) for l in listeners]
        self.https = all(l.get("protocol", "https") == "https" for l in listeners)
        self.admin_address = dig(self.data, "admin", "address")
        self.admin_port = port_of(self.admin_address) if self.admin_address else None
        self.tls_files = [dig(self.data, "tls", k) for k in ("cert_file", "key_file")]
        secrets = [t["secret"] for t in self.data.get("tokens", [])]
        secrets.append(dig(self.data, "directory", "bind_password", default={}))
        self.secret_envs = [s["env"] for s in secrets if "env" in s]
        self.secret_files = [s["file"] for s in secrets if "file" in s]
        if dig(self.data, "directory", "ca_file"):
            self.secret_files.append(self.data["directory"]["ca_file"])
        directory = self.data.get("directory", {})
        self.directory_urls = directory.get("urls") or [directory.get("url")]
        self.directory_urls += directory.get("read_urls", [])
        self.shutdown_grace = dig(self.data, "limits", "shutdown_grace_secs", default=30)


def port_of(address: str) -> int:
    return int(address.rsplit(":", 1)[1])


def url_port(url: str) -> int:
    m = re.match(r"^(ldaps?)://[^/]*?(?::(\d+))?(/.*)?$", url)
    if not m:
        return 0
    return int(m.group(2)) if m.group(2) else (636 if m.group(1) == "ldaps" else 389)


def under(path: str, mounts: dict[str, str]) -> str | None:
    """The mount (target → source) that holds `path`, if any."""
    for target in mounts:
        if path == target or path.startswith(target.rstrip("/") + "/"):
            return target
    return None


# --- Kubernetes --------------------------------------------------------------------------


def check_kubernetes(config: GatewayConfig) -> None:
    kustomization_path = K8S / "kustomization.yaml"
    kustomization = (load_yaml_docs(kustomization_path) or [{}])[0]
    resources = kustomization.get("resources", [])
    generated = [
        f for g in kustomization.get("configMapGenerator", []) for f in g.get("files", [])
    ]
    for name in resources + generated:
        if not (K8S / name).is_file():
            problem(rel(kustomization_path), f"lists {name}, which does not exist")
    for path in sorted(K8S.glob("*.y*ml")):
        if path.name not in set(resources) | K8S_TEMPLATES | {"kustomization.yaml"}:
            problem(
                rel(path),
                "is neither a resource of kustomization.yaml nor a known template; "
                "list it there or in K8S_TEMPLATES of deploy/validate.py",
            )
    if set(resources) & K8S_TEMPLATES:
        problem(rel(kustomization_path), f"lists a template: {set(resources) & K8S_TEMPLATES}")

    objects = []
    for name in resources + sorted(K8S_TEMPLATES):
        for doc in load_yaml_docs(K8S / name):
            validate_object(doc, name)
            objects.append(doc)
    rendered = render_kustomization(kustomization, generated)
    for doc in rendered:
        validate_object(doc, "kubectl kustomize output")
    check_kustomized(rendered, kustomization)
    check_objects({(o.get("kind"), dig(o, "metadata", "name")): o for o in objects}, config)


def validate_object(doc: dict, where: str) -> None:
    kind, api = doc.get("kind"), doc.get("apiVersion")
    if (api, kind) in CUSTOM_KINDS:
        check_service_monitor(doc, where)
        return
    try:
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
    except kubernetes_validate.ValidationError as e:
        path = ".".join(str(p) for p in e.path)
        problem(where, f"{kind}/{dig(doc, 'metadata', 'name')}: {path}: {e.message}")
    except kubernetes_validate.SchemaNotFoundError:
        problem(where, f"no Kubernetes {KUBERNETES_VERSION} schema for {api} {kind}")


def check_service_monitor(doc: dict, where: str) -> None:
    """The ServiceMonitor fields this kit uses, typed as the Prometheus Operator's CRD has them."""
    name = f"{where}: ServiceMonitor/{dig(doc, 'metadata', 'name')}"
    allowed_top = {"apiVersion", "kind", "metadata", "spec"}
    allowed_spec = {"selector", "endpoints", "namespaceSelector", "jobLabel", "targetLabels"}
    allowed_endpoint = {"port", "path", "scheme", "interval", "scrapeTimeout", "honorLabels"}
    if set(doc) - allowed_top:
        problem(name, f"unexpected keys {sorted(set(doc) - allowed_top)}")
    if not isinstance(dig(doc, "metadata", "name"), str):
        problem(name, "metadata.name is required")
    spec = doc.get("spec") or {}
    if set(spec) - allowed_spec:
        problem(name, f"unexpected spec keys {sorted(set(spec) - allowed_spec)}")
    labels = dig(spec, "selector", "matchLabels")
    if not isinstance(labels, dict) or not labels:
        problem(name, "spec.selector.matchLabels must select the Service")
    endpoints = spec.get("endpoints")
    if not isinstance(endpoints, list) or not endpoints:
        problem(name, "spec.endpoints must be a non-empty list")
        return
    for i, e in enumerate(endpoints):
        where_e = f"{name}: spec.endpoints[{i}]"
        if set(e) - allowed_endpoint:
            problem(where_e, f"unexpected keys {sorted(set(e) - allowed_endpoint)}")
        if not isinstance(e.get("port"), str):
            problem(where_e, "port must name a Service port")
        if e.get("scheme", "http") not in ("http", "https"):
            problem(where_e, f"scheme {e.get('scheme')!r} is not http or https")
        for key in ("interval", "scrapeTimeout"):
            if key in e and not re.fullmatch(r"(\d+(ms|s|m|h))+", str(e[key])):
                problem(where_e, f"{key} {e[key]!r} is not a Prometheus duration")
        if "path" in e and not str(e["path"]).startswith("/"):
            problem(where_e, "path must start with /")


def render_kustomization(kustomization: dict, generated: list[str]) -> list:
    """The kustomization's output: from kubectl when there is one, else its generated ConfigMap."""
    kubectl = shutil.which("kubectl")
    if kubectl:
        run = subprocess.run(
            [kubectl, "kustomize", str(K8S)], capture_output=True, text=True, check=False
        )
        if run.returncode != 0:
            problem("kubectl kustomize deploy/kubernetes", run.stderr.strip())
            return []
        return [d for d in yaml.safe_load_all(run.stdout) if d]
    print("    kubectl not found: building the kustomization's ConfigMap by hand", file=sys.stderr)
    data = {name: (K8S / name).read_text() for name in generated if (K8S / name).is_file()}
    return [
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": g["name"], "namespace": kustomization.get("namespace")},
            "data": data,
        }
        for g in kustomization.get("configMapGenerator", [])
    ]


def check_kustomized(rendered: list, kustomization: dict) -> None:
    where = "kustomization.yaml"
    namespace = kustomization.get("namespace")
    maps = [d for d in rendered if d.get("kind") == "ConfigMap"]
    if not maps:
        problem(where, "renders no ConfigMap with the config")
    for doc in rendered:
        if doc.get("kind") != "Namespace" and dig(doc, "metadata", "namespace") != namespace:
            problem(where, f"{doc.get('kind')} is not put in namespace {namespace}")
    for deployment in (d for d in rendered if d.get("kind") == "Deployment"):
        names = {dig(v, "configMap", "name") for v in dig(deployment, "spec", "template", "spec", "volumes", default=[])}
        if not {dig(m, "metadata", "name") for m in maps} & names:
            problem(where, "the rendered Deployment mounts none of the rendered ConfigMaps")


def check_objects(objects: dict, config: GatewayConfig) -> None:
    def get(kind: str) -> dict:
        obj = objects.get((kind, "scim-ldap-gateway"))
        if obj is None:
            problem("deploy/kubernetes", f"no {kind} named scim-ldap-gateway")
            return {}
        return obj

    deployment, service = get("Deployment"), get("Service")
    pod = dig(deployment, "spec", "template", default={})
    pod_labels = dig(pod, "metadata", "labels", default={})
    spec = pod.get("spec", {})
    containers = spec.get("containers", [{}])
    c = containers[0]
    where = "deployment.yaml"

    if dig(deployment, "spec", "replicas", default=1) < 2:
        problem(where, "replicas must be at least 2")
    if dig(deployment, "spec", "selector", "matchLabels") != pod_labels:
        problem(where, "spec.selector.matchLabels must equal the pod's labels")
    ports = {p.get("name"): p.get("containerPort") for p in c.get("ports", [])}
    if ports.get("https") not in config.listener_ports:
        problem(where, f"container port https {ports.get('https')} is not the listener port {config.listener_ports}")
    if ports.get("admin") != config.admin_port:
        problem(where, f"container port admin {ports.get('admin')} is not the admin port {config.admin_port}")
    for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
        got = (dig(c, probe, "httpGet", "path"), dig(c, probe, "httpGet", "port"))
        if got not in ((path, "admin"), (path, config.admin_port)):
            problem(where, f"{probe} must GET {path} on the admin port, not {got}")
    for kind in ("requests", "limits"):
        for resource in ("cpu", "memory"):
            if not dig(c, "resources", kind, resource):
                problem(where, f"resources.{kind}.{resource} is missing")
    security = c.get("securityContext", {})
    for key, want in (("readOnlyRootFilesystem", True), ("allowPrivilegeEscalation", False)):
        if security.get(key) is not want:
            problem(where, f"container securityContext.{key} must be {want}")
    if dig(security, "capabilities", "drop") != ["ALL"]:
        problem(where, "container securityContext.capabilities.drop must be [ALL]")
    pod_security = spec.get("securityContext", {})
    if not (pod_security.get("runAsNonRoot") or security.get("runAsNonRoot")):
        problem(where, "runAsNonRoot must be true")
    if pod_security.get("runAsUser", 0) == 0:
        problem(where, "runAsUser must be a non-zero uid (the image's 65532)")
    for ctx in (pod_security, security):
        if dig(ctx, "seccompProfile", "type") != "RuntimeDefault":
            problem(where, "seccompProfile.type must be RuntimeDefault (pod and container)")
    if not dig(spec, "affinity", "podAntiAffinity"):
        problem(where, "pod anti-affinity is missing")
    if spec.get("terminationGracePeriodSeconds", 30) <= config.shutdown_grace:
        problem(where, f"terminationGracePeriodSeconds must exceed shutdown_grace_secs ({config.shutdown_grace})")

    # The config, TLS pair and secrets are where gateway.toml and the command line look.
    mounts = {m["mountPath"]: m["name"] for m in c.get("volumeMounts", [])}
    volumes = {v["name"]: v for v in spec.get("volumes", [])}
    args = c.get("args", [])
    config_path = args[args.index("--config") + 1] if "--config" in args else None
    mount = under(config_path or "", mounts)
    if mount is None or "configMap" not in volumes.get(mounts[mount], {}):
        problem(where, f"the config {config_path} is not on a ConfigMap mount")
    elif config_path != f"{mount}/{config.path.name}":
        problem(where, f"--config {config_path} is not {mount}/{config.path.name}, the generated key")
    secret_keys = secret_template_keys()
    for path in config.tls_files + config.secret_files:
        mount = under(path, mounts)
        secret = dig(volumes.get(mounts.get(mount, ""), {}), "secret", "secretName")
        if secret is None:
            problem(where, f"{path} (from gateway.toml) is not on a Secret mount")
        elif secret in secret_keys and Path(path).name not in secret_keys[secret]:
            problem("secret.yaml", f"{secret} has no key {Path(path).name} for {path}")
        elif secret not in secret_keys and Path(path).name not in ("tls.crt", "tls.key"):
            problem(where, f"{path}: {secret} is not in secret.yaml, and a kubernetes.io/tls Secret has only tls.crt and tls.key")
    if any(m.get("subPath") for m in c.get("volumeMounts", [])):
        problem(where, "subPath mounts never see Secret updates; mount whole directories")

    # Service, autoscaler, disruption budget, network policy, ServiceMonitor and Ingress.
    if dig(service, "spec", "selector") != pod_labels:
        problem("service.yaml", "the selector must equal the pod's labels")
    service_ports = {p.get("name"): p for p in dig(service, "spec", "ports", default=[])}
    for name, p in service_ports.items():
        if p.get("targetPort") not in ports and p.get("targetPort") not in ports.values():
            problem("service.yaml", f"port {name} targets {p.get('targetPort')}, no container port")
    hpa = get("HorizontalPodAutoscaler")
    if hpa.get("apiVersion") != "autoscaling/v2":
        problem("hpa.yaml", "use autoscaling/v2")
    if dig(hpa, "spec", "scaleTargetRef", "name") != dig(deployment, "metadata", "name"):
        problem("hpa.yaml", "scaleTargetRef must name the Deployment")
    if dig(hpa, "spec", "minReplicas", default=1) < 2:
        problem("hpa.yaml", "minReplicas must be at least 2")
    pdb = get("PodDisruptionBudget")
    if dig(pdb, "spec", "selector", "matchLabels") != pod_labels:
        problem("pdb.yaml", "the selector must equal the pod's labels")
    check_network_policy(get("NetworkPolicy"), pod_labels, config)
    monitor = get("ServiceMonitor")
    if dig(monitor, "spec", "selector", "matchLabels") != dig(service, "metadata", "labels"):
        problem("servicemonitor.yaml", "the selector must match the Service's labels")
    for e in dig(monitor, "spec", "endpoints", default=[]):
        if service_ports.get(e.get("port"), {}).get("targetPort") not in ("admin", config.admin_port):
            problem("servicemonitor.yaml", f"endpoint port {e.get('port')} is not the Service's admin port")
    if dig(service, "metadata", "name") != ALERT_JOB:
        problem("service.yaml", f"the alerts expect the job (the Service's name) {ALERT_JOB}")
    ingress = get("Ingress")
    annotations = dig(ingress, "metadata", "annotations", default={})
    for rule in dig(ingress, "spec", "rules", default=[]):
        for p in dig(rule, "http", "paths", default=[]):
            backend = dig(p, "backend", "service", default={})
            if backend.get("name") != dig(service, "metadata", "name"):
                problem("ingress.yaml", f"backend {backend.get('name')} is not the Service")
            port = dig(backend, "port", "name")
            if service_ports.get(port, {}).get("targetPort") not in ("https", *config.listener_ports):
                problem("ingress.yaml", f"backend port {port} is not the SCIM port")
    tls_upstream = annotations.get("nginx.ingress.kubernetes.io/backend-protocol") == "HTTPS" or (
        annotations.get("nginx.ingress.kubernetes.io/ssl-passthrough") == "true"
    )
    if config.https != tls_upstream:
        problem("ingress.yaml", "the gateway speaks HTTPS: re-encrypt (backend-protocol HTTPS) or pass TLS through")


def secret_template_keys() -> dict[str, set[str]]:
    keys = {}
    for name in K8S_TEMPLATES:
        for doc in load_yaml_docs(K8S / name):
            if doc.get("kind") == "Secret":
                keys[dig(doc, "metadata", "name")] = set(doc.get("stringData", {})) | set(doc.get("data", {}))
    return keys


def check_network_policy(policy: dict, pod_labels: dict, config: GatewayConfig) -> None:
    where = "networkpolicy.yaml"
    if dig(policy, "spec", "podSelector", "matchLabels") != pod_labels:
        problem(where, "podSelector must select the gateway's pods")
    if sorted(dig(policy, "spec", "policyTypes", default=[])) != ["Egress", "Ingress"]:
        problem(where, "policyTypes must be Ingress and Egress")

    def ports(rules):
        return {p.get("port") for r in rules for p in r.get("ports", [])}

    ingress = dig(policy, "spec", "ingress", default=[])
    if any(not r.get("ports") or not r.get("from") for r in ingress):
        problem(where, "every ingress rule must name its sources and ports")
    allowed_in = set(config.listener_ports) | {config.admin_port}
    if not ports(ingress) <= allowed_in or not set(config.listener_ports) <= ports(ingress):
        problem(where, f"ingress ports {sorted(ports(ingress))} must be the SCIM port, plus the admin port")
    egress = dig(policy, "spec", "egress", default=[])
    if any(not r.get("ports") for r in egress):
        problem(where, "every egress rule must name its ports")
    directory_ports = {url_port(u) for u in config.directory_urls}
    if ports(egress) != directory_ports | {53}:
        problem(where, f"egress ports {sorted(ports(egress))} must be DNS and the directory's {sorted(directory_ports)}")


# --- Compose and Dockerfile ----------------------------------------------------------------


def dockerfile_instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    out, current = [], ""
    for line in path.read_text().splitlines():
        if not current and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.rstrip().endswith("\\"):
            current += line.rstrip()[:-1] + " "
            continue
        current += line
        word, _, rest = current.strip().partition(" ")
        out.append((word.upper(), rest.strip()))
        current = ""
    return out


def exec_form(text: str) -> list[str]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        return text.split()
    return value if isinstance(value, list) else [str(value)]


def check_dockerfile(config: GatewayConfig) -> dict:
    path = DEPLOY / "Dockerfile"
    where = rel(path)
    ins = dockerfile_instructions(path)
    facts = {}
    froms = [a for i, a in ins if i == "FROM"]
    if len(froms) < 2:
        problem(where, "must be multi-stage (a build stage and a runtime stage)")
    elif not re.search(r"distroless|-slim", froms[-1]):
        problem(where, f"the runtime stage {froms[-1]!r} is neither distroless nor debian-slim")
    runs = " ".join(a for i, a in ins if i == "RUN")
    if not re.search(r"cargo build\b.*--locked", runs) or "--release" not in runs:
        problem(where, "the build must run cargo build --locked --release")
    users = [a for i, a in ins if i == "USER"]
    if not users or not re.fullmatch(r"[1-9]\d*(:[1-9]\d*)?", users[-1]):
        problem(where, f"USER must be a numeric non-root uid[:gid], not {users[-1:]}")
    exposed = {int(p.split("/")[0]) for i, a in ins if i == "EXPOSE" for p in a.split()}
    if exposed != set(config.listener_ports) | {config.admin_port}:
        problem(where, f"EXPOSE {sorted(exposed)} is not the listener and admin ports of {rel(config.path)}")
    health = [a for i, a in ins if i == "HEALTHCHECK"]
    cmd = exec_form(health[-1].split("CMD", 1)[1].strip()) if health and "CMD" in health[-1] else []
    facts["healthcheck"] = cmd
    check_probe_command(cmd, config, where + " HEALTHCHECK")
    entrypoint = [exec_form(a) for i, a in ins if i == "ENTRYPOINT"]
    command = [exec_form(a) for i, a in ins if i == "CMD"]
    facts["entrypoint"] = entrypoint[-1] if entrypoint else []
    facts["cmd"] = command[-1] if command else []
    copied = [a.split()[-1] for i, a in ins if i == "COPY" and "--from=" in a]
    if facts["entrypoint"][:1] != copied[-1:] or cmd[:1] != copied[-1:]:
        problem(where, f"ENTRYPOINT and HEALTHCHECK must run the copied binary {copied[-1:]}")
    return facts


def check_probe_command(cmd: list[str], config: GatewayConfig, where: str) -> None:
    want = f"http://127.0.0.1:{config.admin_port}/healthz"
    if len(cmd) < 3 or cmd[1] != "probe" or cmd[2] != want:
        problem(where, f"must run `scim-ldap-gateway probe {want}` (the admin port of {rel(config.path)}), not {cmd}")


def check_compose(config: GatewayConfig, docker: dict) -> None:
    path = DEPLOY / "compose.yaml"
    where = rel(path)
    compose = (load_yaml_docs(path) or [{}])[0]
    services = compose.get("services", {})
    for name in ("gateway", "directory", "prometheus", "grafana"):
        if name not in services:
            problem(where, f"no service {name}")
    for name, s in services.items():
        dockerfile = dig(s, "build", "dockerfile")
        if dockerfile and not (path.parent / s["build"].get("context", ".") / dockerfile).is_file():
            problem(where, f"{name}: build.dockerfile {dockerfile} does not exist")
    gateway = services.get("gateway", {})
    mounts = volume_mounts(gateway, where + ": gateway")
    command = gateway.get("command") or docker.get("cmd", [])
    config_path = command[command.index("--config") + 1] if "--config" in command else None
    source = mounts.get(config_path)
    if source is None or Path(source).resolve() != config.path:
        problem(where, f"gateway: --config {config_path} must be a mount of {rel(config.path)}")
    if command != docker.get("cmd"):
        problem(where, f"gateway: command {command} differs from the Dockerfile's CMD {docker.get('cmd')}")
    for file in config.tls_files:
        if under(file, mounts) is None:
            problem(where, f"gateway: {file} (from {rel(config.path)}) is on no volume")
    env = gateway.get("environment", {})
    for var in config.secret_envs:
        if var not in env:
            problem(where, f"gateway: the environment lacks {var}, which {rel(config.path)} reads")
    published = set()
    for p in gateway.get("ports", []):
        published.add(int(str(p).rsplit(":", 1)[1].split("/")[0]))
    if not set(config.listener_ports) <= published:
        problem(where, f"gateway: publishes {sorted(published)}, not the listener port {config.listener_ports}")
    test = dig(gateway, "healthcheck", "test", default=[])
    if test[:1] != ["CMD"]:
        problem(where, "gateway: the healthcheck must be exec form [CMD, ...]")
    check_probe_command(test[1:], config, where + ": gateway healthcheck")
    if test[1:] != docker.get("healthcheck"):
        problem(where, "gateway: the healthcheck differs from the Dockerfile's HEALTHCHECK")
    if gateway.get("read_only") is not True:
        problem(where, "gateway: read_only must be true (the image needs no writable root)")

    # Prometheus scrapes the admin port with the job name the alerts use, and loads the rules.
    prometheus = services.get("prometheus", {})
    prom_mounts = volume_mounts(prometheus, where + ": prometheus")
    prom_config_path = DEPLOY / "prometheus" / "prometheus.yml"
    prom_config = (load_yaml_docs(prom_config_path) or [{}])[0]
    jobs = {j.get("job_name"): j for j in prom_config.get("scrape_configs", [])}
    targets = [t for c in dig(jobs, ALERT_JOB, "static_configs", default=[]) for t in c.get("targets", [])]
    if targets != [f"gateway:{config.admin_port}"]:
        problem(rel(prom_config_path), f"job {ALERT_JOB} must scrape gateway:{config.admin_port}, not {targets}")
    for rule_file in prom_config.get("rule_files", []):
        source = prom_mounts.get(rule_file)
        if source is None or Path(source).resolve() != DEPLOY / "prometheus" / "alerts.yml":
            problem(where, f"prometheus: {rule_file} must be a mount of deploy/prometheus/alerts.yml")
    if Path(prom_mounts.get("/etc/prometheus/prometheus.yml", "/")).resolve() != prom_config_path:
        problem(where, "prometheus: /etc/prometheus/prometheus.yml must be deploy/prometheus/prometheus.yml")

    # Grafana: the provisioning folder, and the dashboard where the provider looks.
    grafana_mounts = volume_mounts(services.get("grafana", {}), where + ": grafana")
    provisioning = DEPLOY / "grafana" / "provisioning"
    if Path(grafana_mounts.get("/etc/grafana/provisioning", "/")).resolve() != provisioning:
        problem(where, "grafana: /etc/grafana/provisioning must be deploy/grafana/provisioning")
    provider = (load_yaml_docs(provisioning / "dashboards" / "scim-ldap-gateway.yaml") or [{}])[0]
    folder = dig(provider, "providers", 0, "options", "path")
    dashboard = DEPLOY / "grafana" / "scim-ldap-gateway.json"
    if not any(
        Path(s).resolve() == dashboard and under(t, {folder: ""}) for t, s in grafana_mounts.items()
    ):
        problem(where, f"grafana: the dashboard must be mounted under the provider's path {folder}")


def volume_mounts(service: dict, where: str) -> dict[str, str]:
    """target → source; a named volume's source is its name, a bind's is its absolute path."""
    out = {}
    for v in service.get("volumes", []):
        parts = v.split(":") if isinstance(v, str) else [v.get("source", ""), v.get("target", "")]
        if len(parts) < 2:
            problem(where, f"volume {v!r} has no target")
            continue
        source = parts[0]
        if source.startswith((".", "/")):
            source = str((DEPLOY / source).resolve())
            if not Path(source).exists():
                problem(where, f"volume source {parts[0]} does not exist")
        out[parts[1]] = source
    return out


def check_dockerignore() -> None:
    path = ROOT / ".dockerignore"
    if not path.is_file():
        problem(".dockerignore", "is missing (the images are built from the repository root)")
        return
    patterns = {l.strip().rstrip("/") for l in path.read_text().splitlines() if l.strip() and not l.startswith("#")}
    for needed in ("target", ".git"):
        if needed not in patterns:
            problem(".dockerignore", f"must exclude {needed}")
    for kept in ("src", "Cargo.toml", "Cargo.lock", "tests", "deploy", "deploy/ldap", "deploy/lib"):
        if kept in patterns:
            problem(".dockerignore", f"excludes {kept}, which the image builds need")


# --- systemd -------------------------------------------------------------------------------


def check_systemd(binary: Path) -> None:
    unit = DEPLOY / "systemd" / "scim-ldap-gateway.service"
    where = rel(unit)
    text = unit.read_text()
    exec_start = re.search(r"^ExecStart=(\S+) serve --config (\S+)$", text, re.M)
    if not exec_start:
        problem(where, "ExecStart must be `<binary> serve --config <file>`")
        return
    if not re.search(r"^ExecReload=/bin/kill -HUP \$MAINPID$", text, re.M):
        problem(where, "ExecReload must send SIGHUP (/bin/kill -HUP $MAINPID)")
    config_dir = str(Path(exec_start.group(2)).parent)
    if not re.search(rf"^ReadOnlyPaths=.*{re.escape(config_dir)}\b", text, re.M):
        problem(where, f"ReadOnlyPaths must cover the config folder {config_dir}")
    with tempfile.TemporaryDirectory() as tmp:
        # verify insists that ExecStart exists: point it at the binary the test suite built.
        copy = Path(tmp) / unit.name
        copy.write_text(text.replace(f"ExecStart={exec_start.group(1)} ", f"ExecStart={binary} ", 1))
        for cmd in (
            ["systemd-analyze", "verify", str(copy)],
            ["systemd-analyze", "security", "--offline=yes", f"--threshold={int(SYSTEMD_MAX_EXPOSURE * 10)}", str(copy)],
        ):
            run = subprocess.run(cmd, capture_output=True, text=True, check=False)
            output = (run.stdout + run.stderr).strip()
            # verify warns about lines it ignores and still exits 0: any output is a failure.
            if run.returncode != 0 or (cmd[1] == "verify" and output):
                lines = output.splitlines()
                problem(where, f"{' '.join(cmd[:2])} objects (exit {run.returncode}): {lines[-1] if lines else ''}")


# --- Prometheus and Grafana ----------------------------------------------------------------


def promtool(*args: str) -> None:
    run = subprocess.run(["promtool", *args], capture_output=True, text=True, check=False)
    if run.returncode != 0:
        problem(f"promtool {' '.join(args)}", (run.stdout + run.stderr).strip())


def check_prometheus() -> None:
    rules = DEPLOY / "prometheus" / "alerts.yml"
    tests = DEPLOY / "prometheus" / "alerts_test.yml"
    promtool("check", "rules", str(rules))
    promtool("test", "rules", str(tests))
    alerts = [
        r["alert"]
        for doc in load_yaml_docs(rules)
        for g in doc.get("groups", [])
        for r in g.get("rules", [])
        if "alert" in r
    ]
    firing, quiet = set(), set()
    for doc in load_yaml_docs(tests):
        for t in doc.get("tests", []):
            for case in t.get("alert_rule_test", []):
                (firing if case.get("exp_alerts") else quiet).add(case.get("alertname"))
    for alert in alerts:
        if alert not in firing:
            problem(rel(tests), f"{alert} has no case where it fires")
        if alert not in quiet:
            problem(rel(tests), f"{alert} has no case where it stays quiet")
    for name in (firing | quiet) - set(alerts):
        problem(rel(tests), f"tests {name}, which alerts.yml does not define")

    # The compose scrape config, with its rule file where promtool can read it.
    with tempfile.TemporaryDirectory() as tmp:
        config = (load_yaml_docs(DEPLOY / "prometheus" / "prometheus.yml") or [{}])[0]
        config["rule_files"] = [str(rules)]
        copy = Path(tmp) / "prometheus.yml"
        copy.write_text(yaml.safe_dump(config))
        promtool("check", "config", "--syntax-only", str(copy))


def check_dashboard() -> None:
    path = DEPLOY / "grafana" / "scim-ldap-gateway.json"
    where = rel(path)
    try:
        dashboard = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        problem(where, f"is not JSON: {e}")
        return
    if dashboard.get("uid") != "scim-ldap-gateway":
        problem(where, "uid must be scim-ldap-gateway (links and provisioning use it)")
    exprs = []
    ids = set()
    variables = dig(dashboard, "templating", "list", default=[])
    for var in variables:
        if var.get("type") == "query" and dig(var, "datasource", "uid") != "${datasource}":
            problem(where, f"variable {var.get('name')!r} must use the ${{datasource}} variable")
    for panel in dashboard.get("panels", []):
        if panel.get("id") in ids:
            problem(where, f"panel id {panel.get('id')} is used twice")
        ids.add(panel.get("id"))
        if panel.get("type") == "row":
            continue
        sources = [panel.get("datasource")] + [t.get("datasource") for t in panel.get("targets", [])]
        if any(dig(s, "uid") != "${datasource}" for s in sources):
            problem(where, f"panel {panel.get('title')!r} must use the ${{datasource}} variable")
        if not panel.get("targets"):
            problem(where, f"panel {panel.get('title')!r} has no query")
        exprs += [(panel.get("title"), t.get("expr", "")) for t in panel.get("targets", [])]
    # Every expression parses as PromQL once Grafana's variables are filled in.
    fill = {"$__rate_interval": "5m", "$__range": "1h", "$__interval": "1m", "$job": ".*", "$instance": ".*"}
    rules = []
    for i, (title, expr) in enumerate(exprs):
        for var, value in fill.items():
            expr = expr.replace(var, value)
        if "$" in expr:
            problem(where, f"panel {title!r} uses an unknown variable: {expr}")
        rules.append({"record": f"dashboard:panel_{i}", "expr": expr})
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / "dashboard_rules.yml"
        copy.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
        promtool("check", "rules", str(copy))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--binary", type=Path, required=True, help="the built gateway, for systemd-analyze verify")
    binary = parser.parse_args().binary.resolve()
    if not os.access(binary, os.X_OK):
        problem(str(binary), "is not an executable gateway binary; build it first (cargo build --release)")

    docker_config = GatewayConfig(DEPLOY / "docker" / "gateway.toml")
    k8s_config = GatewayConfig(K8S / "gateway.toml")
    sections = [
        ("Kubernetes manifests (schemas of Kubernetes %s, strict)" % KUBERNETES_VERSION, lambda: check_kubernetes(k8s_config)),
        ("Dockerfile, .dockerignore and compose.yaml", lambda: (check_dockerignore(), check_compose(docker_config, check_dockerfile(docker_config)))),
        ("systemd unit (systemd-analyze verify and security)", lambda: check_systemd(binary)),
        ("Prometheus rules and their unit tests (promtool)", check_prometheus),
        ("Grafana dashboard", check_dashboard),
    ]
    for title, check in sections:
        before = len(problems)
        check()
        status = "ok" if len(problems) == before else f"{len(problems) - before} problem(s)"
        print(f"    {title}: {status}", file=sys.stderr)
    if problems:
        print(f"\ndeploy/validate.py found {len(problems)} problem(s):", file=sys.stderr)
        for p in problems:
            print(f"  - {p}", file=sys.stderr)
        return 1
    print("deploy/validate.py: the deployment kit is consistent", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
