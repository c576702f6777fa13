"""deploy/kubernetes/: two setups of the same gateway, checked by Kubernetes' schemas and
against each other, the image and the gateway's configuration.

- ``sqlite/``: a StatefulSet of one pod, its store on the pod's volume.
- ``postgresql/``: a Deployment of several pods sharing one database, a PodDisruptionBudget
  that lets a node drain take one at a time, spread over nodes.

Every manifest passes ``kubernetes-validate --strict`` (the test extra; it validates offline
against the schemas it bundles) for the oldest Kubernetes these files are written for and the
newest the tool knows. Then what no schema sees: the ConfigMap's file passes ``cmpp-gateway
check-config`` with exactly the environment the pod gets from the Secret; the Secret's keys
are what the pod references; the probes and ports are the file's listen addresses; the grace
period outlasts drain_timeout; the Services and the disruption budget select the pods.
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

from gateway.config import split_host_port
from tests.deploy.test_deploy import CONTAINER_CONFIG, DEPLOY, PROMETHEUS, read_image

KUBERNETES = DEPLOY / "kubernetes"
SETUPS = ("sqlite", "postgresql")
WORKLOADS = {"sqlite": "StatefulSet", "postgresql": "Deployment"}
# unhealthyPodEvictionPolicy (both budgets) is on by default from 1.27 (beta), and the
# Deployment's topology spread's nodeTaintsPolicy from 1.26.
OLDEST_KUBERNETES = "1.27"
# The configuration's keys whose values name environment variables the pod must set.
ENV_KEYS = ("password_env", "master_secret_env", "store_env", "store_password_env")


def manifests(setup: str) -> dict[tuple[str, str], dict]:
    """(kind, name) -> document, of every YAML file of a setup."""
    found = {}
    for path in sorted((KUBERNETES / setup).glob("*.yaml")):
        for document in yaml.safe_load_all(path.read_text(encoding="utf-8")):
            if document:
                key = (document["kind"], document["metadata"]["name"])
                assert key not in found, f"{setup}: {key} twice"
                found[key] = document
    return found


def one_of_kind(found: dict, kind: str) -> dict:
    [document] = [d for (k, _), d in found.items() if k == kind]
    return document


def of_kind(found: dict, kind: str) -> list[dict]:
    return [d for (k, _), d in found.items() if k == kind]


class Setup:
    """One setup's manifests, and what the tests compare in them."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.found = manifests(name)
        self.workload = one_of_kind(self.found, WORKLOADS[name])
        self.configmap = one_of_kind(self.found, "ConfigMap")
        self.secret = one_of_kind(self.found, "Secret")
        self.text = self.configmap["data"]["gateway.toml"]
        self.config = tomllib.loads(self.text)
        self.pod = self.workload["spec"]["template"]["spec"]
        [self.container] = self.pod["containers"]
        self.labels = self.workload["spec"]["template"]["metadata"]["labels"]

    def secret_refs(self) -> dict[str, dict]:
        """Variable -> the secretKeyRef the container's variable comes from."""
        refs = {}
        for variable in self.container["env"]:
            assert set(variable) == {"name", "valueFrom"}, variable      # only from Secrets
            refs[variable["name"]] = variable["valueFrom"]["secretKeyRef"]
        assert "envFrom" not in self.container
        return refs

    def pod_environment(self) -> dict[str, str]:
        """The variables the container gets, their values taken from the Secrets here."""
        secrets = {s["metadata"]["name"]: s["stringData"] for s in of_kind(self.found, "Secret")}
        return {name: secrets[ref["name"]][ref["key"]] for name, ref in self.secret_refs().items()}

    def named_variables(self) -> set[str]:
        """Every environment variable the ConfigMap's file names."""
        tables = [self.config["gateway"], *self.config.get("channels", {}).values(),
                  *self.config.get("apps", {}).values()]
        return {table[key] for table in tables for key in ENV_KEYS if key in table}

    def listen_port(self, key: str) -> int:
        return split_host_port(self.config["gateway"][key])[1]


@pytest.fixture(params=SETUPS)
def setup(request) -> Setup:
    return Setup(request.param)


# ============================================================================= the schemas

def kubernetes_validate(paths: list[Path], versions: list[str]) -> list[str]:
    """What ``kubernetes-validate --strict`` finds wrong in ``paths`` for each version: its
    ERROR lines, and its WARN lines too (a kind or apiVersion it has no schema for is only a
    warning to it, with exit status 0), and any resource it did not say passed."""
    if importlib.util.find_spec("kubernetes_validate") is None:
        pytest.fail("kubernetes-validate is not installed: pip install -e '.[test]'")
    command = [sys.executable, "-m", "kubernetes_validate", "--strict"]
    command += [arg for version in versions for arg in ("-k", version)]
    result = subprocess.run(command + [str(p) for p in paths], capture_output=True, text=True,
                            timeout=120)
    lines = (result.stdout + result.stderr).splitlines()
    problems = [line for line in lines if not line.startswith("INFO ")]
    passed = set(re.findall(r"^INFO (\S+) passed for resource (\S+) against version (\S+)$",
                            result.stdout, re.M))
    for path in paths:
        for document in filter(None, yaml.safe_load_all(path.read_text(encoding="utf-8"))):
            resource = f"{document['kind'].lower()}/{document['metadata']['name']}"
            problems += [f"{path}: {resource} did not pass for {version}" for version in versions
                         if (str(path), resource, version) not in passed]
    if result.returncode != 0 and not problems:
        problems.append(f"exit status {result.returncode}")
    return problems


def schema_versions() -> list[str]:
    """The oldest Kubernetes these files are for, and the newest the tool has schemas of (as
    major.minor: the tool reports the version it validated against so)."""
    from kubernetes_validate.utils import latest_version, major_minor
    return [OLDEST_KUBERNETES, major_minor(latest_version())]


def test_every_manifest_passes_kubernetes_validate_strict():
    paths = sorted(KUBERNETES.glob("*/*.yaml"))
    assert {p.parent.name for p in paths} == set(SETUPS)
    assert kubernetes_validate(paths, schema_versions()) == []


def test_kubernetes_validate_finds_what_a_cluster_would_refuse(tmp_path):
    """The check above can fail: a misspelt field (only --strict sees it), a wrong type, a
    kind no schema knows (only a warning to the tool), each in a copy of the Deployment."""
    deployment = (KUBERNETES / "postgresql" / "deployment.yaml").read_text(encoding="utf-8")
    broken = {
        "misspelt": deployment.replace("terminationGracePeriodSeconds:", "terminationGrace:"),
        "wrong-type": deployment.replace("replicas: 3 ", 'replicas: "3" '),
        "unknown-kind": deployment.replace("kind: Deployment", "kind: Deploymnt"),
    }
    for name, text in broken.items():
        assert text != deployment, name
        (tmp_path / f"{name}.yaml").write_text(text, encoding="utf-8")
    for name in broken:
        problems = kubernetes_validate([tmp_path / f"{name}.yaml"], [OLDEST_KUBERNETES])
        assert problems and all(name in p for p in problems), (name, problems)
    [misspelt, *_] = kubernetes_validate([tmp_path / "misspelt.yaml"], [OLDEST_KUBERNETES])
    assert "'terminationGrace' was unexpected" in misspelt


# ============================================================================= the gateway's file

def check_config(text: str, env: dict[str, str], tmp_path: Path) -> subprocess.CompletedProcess:
    """``cmpp-gateway check-config`` on ``text`` with only ``env`` (and PATH) set."""
    path = tmp_path / "gateway.toml"
    path.write_text(text, encoding="utf-8")
    path.chmod(0o600)
    return subprocess.run([sys.executable, "-m", "gateway.cli", "check-config", str(path)],
                          env={"PATH": os.environ.get("PATH", ""), **env}, capture_output=True,
                          text=True, timeout=60)


def test_the_configmap_passes_check_config_with_the_environment_the_pod_gets(setup, tmp_path):
    env = setup.pod_environment()
    assert setup.named_variables() <= set(env)
    result = check_config(setup.text, env, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "# channel cmcc-gd: receipt codes of provider 'cmcc-gd'" in result.stdout
    url = setup.config["gateway"].get("store_env")          # shown: it holds no password
    assert not [name for name, value in env.items() if name != url and value in result.stdout]


def test_the_secret_holds_exactly_the_keys_the_pod_references_as_placeholders(setup):
    refs = setup.secret_refs()
    assert all(ref["name"] == setup.secret["metadata"]["name"] for ref in refs.values())
    assert all(ref["key"] == variable for variable, ref in refs.items())  # one name for both
    values = setup.secret["stringData"]
    assert "data" not in setup.secret and setup.secret["type"] == "Opaque"
    assert {ref["key"] for ref in refs.values()} == set(values) == setup.named_variables()
    assert all("REPLACE-ME" in value for value in values.values()), "placeholders stay marked"


def test_the_sqlite_configmap_is_deploy_gateway_toml():
    assert Setup("sqlite").text == CONTAINER_CONFIG.read_text(encoding="utf-8")


def test_the_postgresql_configmap_is_deploy_gateway_toml_with_the_database_as_store():
    config = Setup("postgresql").config
    container = tomllib.loads(CONTAINER_CONFIG.read_text(encoding="utf-8"))
    gateway = dict(config.pop("gateway"))
    assert {gateway.pop("store_env"), gateway.pop("store_password_env")} == \
        {"CMPP_STORE_URL", "CMPP_STORE_PASSWORD"}
    container_gateway = container.pop("gateway")
    assert container_gateway.pop("store").endswith(".sqlite")
    assert gateway == container_gateway and config == container
    url = Setup("postgresql").secret["stringData"]["CMPP_STORE_URL"]
    assert url.startswith("postgresql://") and "@" in url


# ============================================================================= the pod

def test_the_ports_and_probes_are_the_configurations_listen_addresses(setup):
    image = read_image()
    ports = {p["name"]: p["containerPort"] for p in setup.container["ports"]}
    assert ports == {"api": setup.listen_port("api_listen"),
                     "metrics": setup.listen_port("metrics_listen")}
    assert sorted(ports.values()) == sorted(image.exposed)
    assert all(split_host_port(setup.config["gateway"][key])[0] == "0.0.0.0"
               for key in ("api_listen", "metrics_listen"))
    for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz"),
                        ("startupProbe", "/healthz")):
        assert setup.container[probe]["httpGet"] == {"path": path, "port": "metrics"}, probe


def test_the_pod_runs_the_images_command_on_the_mounted_configuration(setup):
    image, pod, container = read_image(), setup.pod, setup.container
    assert container.get("command") is None and container["args"] == image.cmd
    config_path = Path(container["args"][container["args"].index("--config") + 1])
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    config_mount = mounts[str(config_path.parent)]
    assert config_mount["readOnly"] is True
    source = volumes[config_mount["name"]]["configMap"]
    assert source["name"] == setup.configmap["metadata"]["name"]
    assert source["defaultMode"] & 0o007 == 0, "not world-readable (the daemon warns)"
    assert {"key": "gateway.toml", "path": config_path.name} in source["items"]
    assert "/tmp" in mounts and "emptyDir" in volumes[mounts["/tmp"]["name"]]


def test_the_grace_period_outlasts_drain_timeout(setup):
    assert setup.pod["terminationGracePeriodSeconds"] > setup.config["gateway"]["drain_timeout"]


def test_the_pod_runs_as_the_images_user_on_a_read_only_root(setup):
    uid = int(read_image().user.split(":")[0])
    pod, container = setup.pod["securityContext"], setup.container["securityContext"]
    assert pod["runAsNonRoot"] is True and pod["runAsUser"] == uid != 0
    assert pod["seccompProfile"] == {"type": "RuntimeDefault"}
    assert container["readOnlyRootFilesystem"] is True
    assert container["allowPrivilegeEscalation"] is False
    assert container["capabilities"]["drop"] == ["ALL"]
    assert setup.pod["automountServiceAccountToken"] is False
    resources = setup.container["resources"]
    assert resources["requests"]["cpu"] and resources["requests"]["memory"]
    assert resources["limits"]["memory"]


def test_the_sqlite_store_is_on_the_volume_of_a_single_pod():
    sqlite = Setup("sqlite")
    spec, image = sqlite.workload["spec"], read_image()
    assert spec["replicas"] == 1
    store = Path(sqlite.config["gateway"]["store"])
    assert str(store.parent) in image.volumes
    mounts = {m["mountPath"]: m for m in sqlite.container["volumeMounts"]}
    [claim] = [c for c in spec["volumeClaimTemplates"]
               if c["metadata"]["name"] == mounts[str(store.parent)]["name"]]
    assert claim["spec"]["accessModes"] == ["ReadWriteOnce"]
    assert claim["metadata"]["name"] not in {v["name"] for v in sqlite.pod["volumes"]}


def test_the_postgresql_replicas_share_the_channels_connections_on_separate_nodes():
    postgresql = Setup("postgresql")
    spec = postgresql.workload["spec"]
    replicas = spec["replicas"]
    assert replicas > 1
    # Each replica can hold one of a channel's connections (README.md).
    assert all(replicas <= c["connections"] for c in postgresql.config["channels"].values())
    # A rollout stops a pod before starting its replacement: never more pods than replicas.
    assert spec["strategy"]["rollingUpdate"] == {"maxSurge": 0, "maxUnavailable": 1}
    # No volume of its own: the store is the database.
    assert "volumeClaimTemplates" not in spec
    assert all(set(v) & {"configMap", "emptyDir"} for v in postgresql.pod["volumes"])
    [by_node] = [c for c in postgresql.pod["topologySpreadConstraints"]
                 if c["topologyKey"] == "kubernetes.io/hostname"]
    assert by_node["maxSkew"] == 1 and by_node["whenUnsatisfiable"] == "DoNotSchedule"
    assert by_node["labelSelector"]["matchLabels"].items() <= postgresql.labels.items()


# ============================================================================= Services, budget

def test_the_services_select_the_pods_and_name_their_ports(setup):
    spec = setup.workload["spec"]
    assert spec["selector"]["matchLabels"].items() <= setup.labels.items()
    port_names = {p["name"] for p in setup.container["ports"]}
    services = {s["metadata"]["name"]: s for s in of_kind(setup.found, "Service")}
    for service in services.values():
        assert service["spec"]["selector"].items() <= setup.labels.items()
        assert all(p["targetPort"] in port_names for p in service["spec"]["ports"])
    assert "api" in {p["name"] for p in services["cmpp-gateway"]["spec"]["ports"]}
    # Prometheus scrapes each pod through the headless Service's SRV record, ready or not.
    headless = services["cmpp-gateway-headless"]["spec"]
    assert headless["clusterIP"] == "None" and headless["publishNotReadyAddresses"] is True
    assert [p["name"] for p in headless["ports"]] == ["metrics"]
    if setup.name == "sqlite":
        assert spec["serviceName"] == "cmpp-gateway-headless"
    kinds = {"ConfigMap", "Secret", "Service", "PodDisruptionBudget", WORKLOADS[setup.name]}
    assert {k for k, _ in setup.found} == kinds


def test_the_disruption_budget_selects_the_pods_and_keeps_one_serving(setup):
    pdb = one_of_kind(setup.found, "PodDisruptionBudget")
    assert pdb["apiVersion"] == "policy/v1"
    assert pdb["spec"]["selector"]["matchLabels"].items() <= setup.labels.items()
    assert pdb["spec"]["unhealthyPodEvictionPolicy"] == "AlwaysAllow"
    replicas = setup.workload["spec"]["replicas"]
    budget = pdb["spec"]
    assert len(set(budget) & {"minAvailable", "maxUnavailable"}) == 1
    evictable = budget.get("maxUnavailable", replicas - budget.get("minAvailable", 0))
    assert isinstance(evictable, int) and evictable < replicas      # one pod always serves
    if setup.name == "postgresql":
        assert evictable >= 1            # and a drain goes on by itself, a pod at a time
    else:
        assert evictable == 0            # the only pod is moved by an operator (README.md)


def test_prometheus_finds_the_pods_of_either_setup():
    scrape = yaml.safe_load((PROMETHEUS / "prometheus.yml").read_text(encoding="utf-8"))
    names = [name for job in scrape["scrape_configs"] for sd in job.get("dns_sd_configs", [])
             for name in sd["names"]]
    assert names, "a job for the Kubernetes pods"
    for setup in map(Setup, SETUPS):
        services = {s["metadata"]["name"]: s for s in of_kind(setup.found, "Service")}
        for name in names:
            port, _, service = name.partition("._tcp.")
            headless = services[service.split(".")[0]]["spec"]
            assert headless["clusterIP"] == "None"
            assert port.lstrip("_") in {p["name"] for p in headless["ports"]} == {"metrics"}


def test_the_kubernetes_readme_says_when_one_replica_and_when_several():
    text = (KUBERNETES / "README.md").read_text(encoding="utf-8")
    for words in ("One replica per channel account", "connection quota", "any connection",
                  "store is local", "Several replicas on PostgreSQL", "PodDisruptionBudget"):
        assert words.lower() in text.lower(), words


@pytest.mark.parametrize("name", SETUPS)
def test_the_readmes_commands_apply_every_manifest_but_the_secret(name):
    """Each setup's ``kubectl apply`` in README.md names every file of it except secret.yaml
    (placeholders: applied after a Secret made with kubectl, it would overwrite it)."""
    text = (KUBERNETES / "README.md").read_text(encoding="utf-8").replace("\\\n", " ")
    [command] = [line for line in text.splitlines()
                 if line.startswith("kubectl apply") and f"kubernetes/{name}/" in line]
    applied = set(re.findall(rf"-f deploy/kubernetes/{name}/(\S+)", command))
    files = {p.name for p in (KUBERNETES / name).glob("*.yaml")}
    assert applied == files - {"secret.yaml"}
