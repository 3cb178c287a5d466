"""The Kubernetes manifests in deploy/: rendered with kustomize, validated offline, and held to the deployment's rules.

Every test runs on what ``kustomize build`` produces (base and the example overlay), not on the source files, so a
patch or a generator that changes an object is checked as the cluster would receive it.
"""

from __future__ import annotations

import copy
import re
from pathlib import Path, PurePosixPath
from typing import Any

import jsonschema
import pytest
import yaml

from processor.settings import load_settings
from processor.subscriptions import (
    describe_subscriptions,
    load_subscriptions_file,
    load_subscriptions_text,
    preset_subscriptions,
)
from tests.deploy.conftest import DEPLOY, TARGETS
from tests.deploy.k8s import (
    OLDEST_K8S,
    container_env,
    container_port,
    find,
    newest_k8s,
    one,
    processor_container,
    quantity,
    validate,
)

# The first run builds kustomize from source (one to two minutes on two cores); later runs take about a second.
pytestmark = pytest.mark.timeout(900)

Objects = list[dict[str, Any]]
OVERLAY = "overlays/example"
CLEVERTAP_CONCURRENCY_PER_ACCOUNT = 15
# What the shutdown needs after the drain deadline: commit the done offsets, leave the group, flush the DLQ producer.
SHUTDOWN_MARGIN_S = 10
# librdkafka's sasl.mechanism → KEDA's kafka trigger `sasl`.
KEDA_SASL = {"PLAIN": "plaintext", "SCRAM-SHA-256": "scram_sha256", "SCRAM-SHA-512": "scram_sha512",
             "GSSAPI": "gssapi", "OAUTHBEARER": "oauthbearer"}
SECRET_LOOKING = re.compile(r"PASSCODE|PASSWORD|SECRET|TOKEN|BASIC_AUTH|SASL_USERNAME|SASL_OAUTHBEARER|KEY_PEM")


@pytest.fixture(params=TARGETS)
def target(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name


@pytest.fixture
def objects(rendered: dict[str, Objects], target: str) -> Objects:
    return rendered[target]


@pytest.fixture
def overlay(rendered: dict[str, Objects]) -> Objects:
    return rendered[OVERLAY]


def pod_spec(objects: Objects) -> dict[str, Any]:
    spec: dict[str, Any] = one(objects, "Deployment")["spec"]["template"]["spec"]
    return spec


# ---- rendering and schemas ----------------------------------------------------------------------------------------


def test_base_and_overlay_render_the_expected_objects(rendered: dict[str, Objects]) -> None:
    kinds = {target: sorted(o["kind"] for o in objects) for target, objects in rendered.items()}
    core = ["ConfigMap", "ConfigMap", "Deployment", "PodDisruptionBudget", "Service", "ServiceAccount"]
    assert kinds["base"] == core
    assert kinds[OVERLAY] == sorted([*core, "Namespace", "ScaledObject", "ServiceMonitor", "TriggerAuthentication"])
    namespaced = [o for o in rendered[OVERLAY] if o["kind"] != "Namespace"]
    assert {o["metadata"].get("namespace") for o in namespaced} == {"clevertap-processor"}


@pytest.mark.parametrize("k8s_version", [OLDEST_K8S, newest_k8s()])
def test_every_object_is_valid_against_its_schema(objects: Objects, k8s_version: str) -> None:
    for obj in objects:
        try:
            validate(obj, k8s_version)
        except jsonschema.ValidationError as exc:
            pytest.fail(f"{obj['kind']}/{obj['metadata']['name']} (Kubernetes {k8s_version}): {exc.message} "
                        f"at {'/'.join(map(str, exc.absolute_path))}")


@pytest.mark.parametrize(
    ("kind", "path", "value"),
    [
        ("Deployment", ["spec", "template", "spec", "containers", 0, "livenesProbe"], {}),  # misspelt field
        ("Deployment", ["spec", "template", "spec", "terminationGracePeriodSeconds"], "45"),  # wrong type
        ("Service", ["spec", "ports", 0, "port"], "metrics"),
        ("ScaledObject", ["spec", "triggers", 0, "metadata", "allowIdleConsumers"], False),  # CRD: strings only
        ("ScaledObject", ["spec", "triggers", 0, "metadata", "lagTreshold"], "10"),  # unknown scaler parameter
        ("ScaledObject", ["spec", "maxReplicas"], 6),
        ("TriggerAuthentication", ["spec", "secretTargetRef", 0, "secret"], "x"),
        ("ServiceMonitor", ["spec", "endpoints", 0, "interval"], "30 seconds"),
    ],
)
def test_the_validation_catches_mistakes(overlay: Objects, kind: str, path: list[Any], value: Any) -> None:
    broken = copy.deepcopy(one(overlay, kind))
    node = broken
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    with pytest.raises(jsonschema.ValidationError):
        validate(broken, OLDEST_K8S)


# ---- the pod ------------------------------------------------------------------------------------------------------


def test_probes_use_livez_and_readyz_on_the_metrics_port(objects: Objects) -> None:
    container = processor_container(objects)
    metrics_port = int(container_env(container, objects)["METRICS_PORT"])
    for probe, path in (("livenessProbe", "/livez"), ("readinessProbe", "/readyz")):
        assert probe in container, f"{probe} is missing"
        http = container[probe]["httpGet"]
        assert http["path"] == path
        assert container_port(container, http["port"]) == metrics_port


def test_grace_period_outlasts_the_drain_deadline(objects: Objects) -> None:
    container = processor_container(objects)
    env = container_env(container, objects)
    assert "PROCESSOR_DRAIN_TIMEOUT_S" in env, "set the drain deadline explicitly next to the grace period"
    drain = float(env["PROCESSOR_DRAIN_TIMEOUT_S"])
    grace = pod_spec(objects)["terminationGracePeriodSeconds"]
    assert grace > drain
    assert grace >= drain + SHUTDOWN_MARGIN_S, f"{grace}s leaves under {SHUTDOWN_MARGIN_S}s to commit and close"


def test_pod_runs_unprivileged_on_a_read_only_root(objects: Objects) -> None:
    pod = pod_spec(objects)
    container = processor_container(objects)
    pod_sc, sc = pod.get("securityContext", {}), container["securityContext"]
    assert sc.get("runAsNonRoot", pod_sc.get("runAsNonRoot")) is True
    assert sc.get("runAsUser", pod_sc.get("runAsUser", 1)) != 0
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"]["drop"] == ["ALL"] and not sc["capabilities"].get("add")
    assert sc.get("privileged") is not True
    seccomp = sc.get("seccompProfile", pod_sc.get("seccompProfile", {}))
    assert seccomp.get("type") == "RuntimeDefault"
    assert pod["automountServiceAccountToken"] is False
    assert pod["enableServiceLinks"] is False
    # The only writable path: /tmp, an emptyDir. Python writes no bytecode.
    volumes = {v["name"]: v for v in pod["volumes"]}
    tmp = [m for m in container["volumeMounts"] if m["mountPath"] == "/tmp"]
    assert len(tmp) == 1 and "emptyDir" in volumes[tmp[0]["name"]]
    assert all(m.get("readOnly") for m in container["volumeMounts"] if "emptyDir" not in volumes[m["name"]])
    assert container_env(container, objects)["PYTHONDONTWRITEBYTECODE"] == "1"


def test_resources_have_requests_and_limits(objects: Objects) -> None:
    resources = processor_container(objects)["resources"]
    for name in ("cpu", "memory"):
        request, limit = resources["requests"][name], resources["limits"][name]
        assert 0 < quantity(request) <= quantity(limit), f"{name}: request {request}, limit {limit}"


def test_rollout_replaces_rather_than_surges(objects: Objects) -> None:
    # A surged pod may get no partition and then never turns ready: the rollout would stall.
    strategy = one(objects, "Deployment")["spec"]["strategy"]
    assert strategy["type"] == "RollingUpdate"
    assert strategy["rollingUpdate"] == {"maxSurge": 0, "maxUnavailable": 1}


# ---- secrets ------------------------------------------------------------------------------------------------------


def test_no_secret_values_are_rendered(objects: Objects) -> None:
    for secret in find(objects, "Secret"):
        name = secret["metadata"]["name"]
        assert not secret.get("data") and not secret.get("stringData"), f"Secret {name} has values"
    container = processor_container(objects)
    for item in container.get("env", []):
        if SECRET_LOOKING.search(item["name"]) and not item["name"].endswith("_FILE"):
            assert "value" not in item, f"{item['name']} holds a value: mount a Secret and use {item['name']}_FILE"
    for config_map in find(objects, "ConfigMap"):
        leaked = [key for key in config_map.get("data", {}) if SECRET_LOOKING.search(key) and not key.endswith("_FILE")]
        assert not leaked, f"ConfigMap {config_map['metadata']['name']} holds secrets: {leaked}"


def test_no_secret_values_are_committed_under_deploy() -> None:
    for path in sorted(DEPLOY.rglob("*.y*ml")):
        for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")):
            if isinstance(doc, dict) and doc.get("kind") == "Secret":
                assert not doc.get("data") and not doc.get("stringData"), f"{path} commits secret values"


def test_every_file_setting_points_into_a_mounted_volume(objects: Objects) -> None:
    """``*_FILE`` and path settings name a key of a Secret or ConfigMap that is mounted where they say."""
    pod, container = pod_spec(objects), processor_container(objects)
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["mountPath"]: volumes[m["name"]] for m in container["volumeMounts"]}
    env = container_env(container, objects)
    paths = {k: v for k, v in env.items() if k.endswith("_FILE") or k == "KAFKA_CONFIG_SSL_CA_LOCATION"}
    assert "CLEVERTAP_PASSCODE_FILE" in paths and "SUBSCRIPTIONS_FILE" in paths
    for name, value in paths.items():
        path = PurePosixPath(value)
        volume = mounts.get(str(path.parent))
        assert volume is not None, f"{name}={value}: nothing is mounted at {path.parent}"
        source = volume.get("secret") or volume.get("configMap")
        assert source is not None, f"{name}: {path.parent} is not a Secret or ConfigMap volume"
        if "items" in source:
            assert path.name in {item["path"] for item in source["items"]}, f"{name}: no key mounted as {path.name}"
        elif "configMap" in volume:
            assert path.name in one(objects, "ConfigMap", source["name"])["data"]
        if SECRET_LOOKING.search(name):
            assert "secret" in volume, f"{name} must come from a Secret"


def test_the_manifest_environment_passes_the_processors_own_validation(overlay: Objects, tmp_path: Path) -> None:
    """Stand the mounted files up in a temporary root and give the settings parser the pod's environment."""
    pod, container = pod_spec(overlay), processor_container(overlay)
    env = container_env(container, overlay)
    volumes = {v["name"]: v for v in pod["volumes"]}
    for mount in container["volumeMounts"]:
        root = tmp_path / mount["mountPath"].lstrip("/")
        root.mkdir(parents=True)
        volume = volumes[mount["name"]]
        if "configMap" in volume:
            for key, text in one(overlay, "ConfigMap", volume["configMap"]["name"])["data"].items():
                (root / key).write_text(text, encoding="utf-8")
        elif "secret" in volume:
            for item in volume["secret"]["items"]:
                (root / item["path"]).write_text(f"placeholder-{item['key']}\n", encoding="utf-8")
    mount_paths = [m["mountPath"] for m in container["volumeMounts"]]
    for name, value in env.items():
        if any(value.startswith(f"{m}/") for m in mount_paths):
            env[name] = str(tmp_path / value.lstrip("/"))

    settings = load_settings(env)

    assert settings.drain_timeout_s == float(env["PROCESSOR_DRAIN_TIMEOUT_S"])
    assert settings.metrics_port == int(env["METRICS_PORT"])
    assert settings.max_concurrency == int(env["CLEVERTAP_MAX_CONCURRENCY"])
    assert settings.kafka_extra["security.protocol"] == "SASL_SSL"
    assert settings.kafka_extra["sasl.password"] == "placeholder-password"
    assert settings.clevertap_passcode.reveal() == "placeholder-passcode"
    assert settings.subscriptions_file is not None
    assert load_subscriptions_file(settings.subscriptions_file)


# ---- config, disruption budget, metrics ---------------------------------------------------------------------------


def subscriptions_text(objects: Objects) -> tuple[str, str]:
    """(file name, text) of the subscriptions file the pod reads: SUBSCRIPTIONS_FILE inside its ConfigMap volume."""
    container = processor_container(objects)
    path = PurePosixPath(container_env(container, objects)["SUBSCRIPTIONS_FILE"])
    mount = next(m for m in container["volumeMounts"] if m["mountPath"] == str(path.parent))
    volume = next(v for v in pod_spec(objects)["volumes"] if v["name"] == mount["name"])
    config_map = one(objects, "ConfigMap", volume["configMap"]["name"])
    text: str = config_map["data"][path.name]
    return str(path), text


def test_subscriptions_config_map_holds_a_file_the_processor_accepts(objects: Objects) -> None:
    source, text = subscriptions_text(objects)
    subscriptions = load_subscriptions_text(text, source)  # raises ConfigError naming every problem
    assert any(s.enabled for s in subscriptions)


def test_base_subscriptions_are_the_quick_setup_presets(rendered: dict[str, Objects]) -> None:
    source, text = subscriptions_text(rendered["base"])
    assert describe_subscriptions(load_subscriptions_text(text, source)) == describe_subscriptions(
        preset_subscriptions()
    ), "deploy/base/subscriptions.yaml is stale: regenerate it as its header says"


def test_disruption_budget_covers_the_pods_and_lets_nodes_drain(objects: Objects) -> None:
    pdb = one(objects, "PodDisruptionBudget")["spec"]
    pod_labels = one(objects, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert pdb["selector"]["matchLabels"].items() <= pod_labels.items()
    # With a single replica, minAvailable: 1 would block every node drain.
    assert "minAvailable" not in pdb and pdb["maxUnavailable"] >= 1


def test_metrics_service_exposes_the_metrics_port(objects: Objects) -> None:
    container = processor_container(objects)
    metrics_port = int(container_env(container, objects)["METRICS_PORT"])
    service = one(objects, "Service")
    pod_labels = one(objects, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()
    ports = {p["name"]: p for p in service["spec"]["ports"]}
    assert container_port(container, ports["metrics"]["targetPort"]) == metrics_port
    assert any(p["containerPort"] == metrics_port and p.get("name") == "metrics" for p in container["ports"])


def test_service_monitor_scrapes_the_metrics_service(overlay: Objects) -> None:
    monitor = one(overlay, "ServiceMonitor")["spec"]
    service = one(overlay, "Service")
    assert monitor["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    (endpoint,) = monitor["endpoints"]
    assert endpoint["port"] in {p["name"] for p in service["spec"]["ports"]}
    assert endpoint["path"] == "/metrics"
    seconds = {"interval": 0, "scrapeTimeout": 0}
    for key in seconds:
        match = re.fullmatch(r"(\d+)s", endpoint[key])
        assert match, f"{key}: write it in seconds"
        seconds[key] = int(match.group(1))
    assert seconds["scrapeTimeout"] <= seconds["interval"]


# ---- autoscaling --------------------------------------------------------------------------------------------------


def test_keda_scales_the_deployment_on_its_own_consumer_group(overlay: Objects) -> None:
    scaled = one(overlay, "ScaledObject")
    deployment = one(overlay, "Deployment")
    env = container_env(processor_container(overlay), overlay)
    target_ref = scaled["spec"]["scaleTargetRef"]
    assert (target_ref.get("apiVersion", "apps/v1"), target_ref.get("kind", "Deployment"), target_ref["name"]) == (
        "apps/v1", "Deployment", deployment["metadata"]["name"])
    assert "replicas" not in deployment["spec"], "the autoscaler owns the replica count"
    (trigger,) = scaled["spec"]["triggers"]
    meta = trigger["metadata"]
    assert trigger["type"] == "kafka"
    assert meta["bootstrapServers"] == env["KAFKA_BOOTSTRAP_SERVERS"]
    assert meta["consumerGroup"] == env["KAFKA_GROUP_ID"]
    assert meta["topic"] in env["KAFKA_TOPICS"].split(",")
    # The processor's default auto.offset.reset is earliest.
    assert meta["offsetResetPolicy"] == env.get("KAFKA_CONFIG_AUTO_OFFSET_RESET", "earliest")
    assert meta["allowIdleConsumers"] == "false"
    assert meta["sasl"] == KEDA_SASL[env["KAFKA_CONFIG_SASL_MECHANISM"]]
    assert meta["tls"] == ("enable" if env["KAFKA_CONFIG_SECURITY_PROTOCOL"] in {"SSL", "SASL_SSL"} else "disable")


def test_keda_reads_kafka_with_the_pods_credentials(overlay: Objects) -> None:
    trigger = one(overlay, "ScaledObject")["spec"]["triggers"][0]
    auth = one(overlay, "TriggerAuthentication", trigger["authenticationRef"]["name"])
    mounted = {v["secret"]["secretName"] for v in pod_spec(overlay)["volumes"] if "secret" in v}
    refs = auth["spec"]["secretTargetRef"]
    assert {r["parameter"] for r in refs} == {"username", "password", "ca"}
    assert {r["name"] for r in refs} <= mounted


def test_max_replicas_is_the_partition_count_and_respects_clevertaps_concurrency(overlay: Objects) -> None:
    scaled = one(overlay, "ScaledObject")
    partitions = int(scaled["metadata"]["annotations"]["clevertap-processor/kafka-topic-partitions"])
    spec = scaled["spec"]
    assert spec["maxReplicaCount"] == partitions, "more replicas than partitions sit idle"
    assert 1 <= spec["minReplicaCount"] <= spec["maxReplicaCount"]
    concurrency = int(container_env(processor_container(overlay), overlay)["CLEVERTAP_MAX_CONCURRENCY"])
    assert spec["maxReplicaCount"] * concurrency <= CLEVERTAP_CONCURRENCY_PER_ACCOUNT, (
        "CleverTap's 15 concurrent requests per account are shared by every replica"
    )


def test_overlay_pins_the_image(overlay: Objects) -> None:
    image = processor_container(overlay)["image"]
    name, _, tag = image.rpartition(":")
    assert name and "/" not in tag and tag not in {"", "latest"}, f"pin a version: {image}"
