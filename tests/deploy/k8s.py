"""Offline validation of rendered objects, and small readers for the tests.

Built-in kinds: the Kubernetes OpenAPI schemas shipped in the ``kubernetes-validate`` package, strict (an unknown field
is an error). Custom resources (KEDA, Prometheus Operator): the JSON schemas in ``schemas/`` beside this file, which
reuse the Kubernetes definitions of the same version for metadata, selectors and HPA behaviour.
"""

from __future__ import annotations

import functools
import json
import re
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
from referencing import Registry, Resource

SCHEMAS = Path(__file__).resolve().parent / "schemas"
CUSTOM_SCHEMAS = {
    ("keda.sh/v1alpha1", "ScaledObject"): "scaledobject-keda-v1alpha1.json",
    ("keda.sh/v1alpha1", "TriggerAuthentication"): "triggerauthentication-keda-v1alpha1.json",
    ("monitoring.coreos.com/v1", "ServiceMonitor"): "servicemonitor-monitoring-v1.json",
}
# The oldest Kubernetes version the manifests support, and the newest the installed package knows.
OLDEST_K8S = "1.30"


def newest_k8s() -> str:
    return ".".join(kubernetes_validate.utils.latest_version().split(".")[:2])


@functools.cache
def _definitions(version: str) -> Resource[Any]:
    root = resources.files("kubernetes_validate") / "kubernetes-json-schema"
    folder = root / f"v{version}.0-local-strict"
    data = json.loads((folder / "_definitions.json").read_text(encoding="utf-8"))
    return Resource.from_contents(data)


@functools.cache
def _custom_validator(file_name: str, version: str) -> jsonschema.protocols.Validator:
    schema = json.loads((SCHEMAS / file_name).read_text(encoding="utf-8"))
    registry: Registry[Any] = _definitions(version) @ Registry()
    validator_class = jsonschema.validators.validator_for(schema)
    validator_class.check_schema(schema)
    return validator_class(schema, registry=registry)


def validate(obj: dict[str, Any], version: str) -> None:
    """Raise ``jsonschema.ValidationError`` (or kubernetes_validate's errors) when ``obj`` is not a valid object."""
    custom = CUSTOM_SCHEMAS.get((obj.get("apiVersion", ""), obj.get("kind", "")))
    if custom is not None:
        _custom_validator(custom, version).validate(obj)
    else:
        kubernetes_validate.validate(obj, version, strict=True)


def find(objects: list[dict[str, Any]], kind: str, name: str | None = None) -> list[dict[str, Any]]:
    return [o for o in objects if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)]


def one(objects: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    found = find(objects, kind, name)
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def processor_container(objects: list[dict[str, Any]]) -> dict[str, Any]:
    containers = one(objects, "Deployment")["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1, "the pod runs the processor alone"
    container: dict[str, Any] = containers[0]
    return container


def container_env(container: dict[str, Any], objects: list[dict[str, Any]]) -> dict[str, str]:
    """The environment the container starts with: envFrom ConfigMaps first, then ``env`` (which wins).

    A value from ``valueFrom`` (a Secret key, a field) is shown as ``<valueFrom>``: it is not in the manifests.
    """
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        assert set(source) == {"configMapRef"}, f"only ConfigMaps feed envFrom: {source}"
        config_map = one(objects, "ConfigMap", source["configMapRef"]["name"])
        env.update(config_map.get("data", {}))
    for item in container.get("env", []):
        env[item["name"]] = item.get("value", "<valueFrom>")
    return env


def container_port(container: dict[str, Any], port: int | str) -> int:
    """A probe's or Service's port (a number or a container port's name) as a number."""
    if isinstance(port, int):
        return port
    for declared in container.get("ports", []):
        if declared.get("name") == port:
            number: int = declared["containerPort"]
            return number
    raise AssertionError(f"the container declares no port named {port!r}")


_QUANTITY = re.compile(r"^([0-9.]+)(m|k|M|G|T|Ki|Mi|Gi|Ti)?$")
_FACTORS = {None: 1.0, "m": 1e-3, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12,
            "Ki": 2.0**10, "Mi": 2.0**20, "Gi": 2.0**30, "Ti": 2.0**40}


def quantity(value: str | int) -> float:
    """A Kubernetes resource quantity ("250m", "768Mi", "1") as a number."""
    match = _QUANTITY.match(str(value))
    assert match, f"not a resource quantity this test understands: {value!r}"
    return float(match.group(1)) * _FACTORS[match.group(2)]
