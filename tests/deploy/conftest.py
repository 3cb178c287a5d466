"""Rendering the Kustomize trees in deploy/ with the real kustomize (built once by deploy/install-kustomize.sh)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
# Every kustomization a platform team may build; the invariant tests run on each.
TARGETS = ("base", "overlays/example")


def render(kustomize: str, target: str) -> list[dict[str, Any]]:
    proc = subprocess.run(
        [kustomize, "build", str(DEPLOY / target)], capture_output=True, text=True, timeout=120, check=False
    )
    assert proc.returncode == 0, f"kustomize build deploy/{target} failed:\n{proc.stderr}"
    return [doc for doc in yaml.safe_load_all(proc.stdout) if doc is not None]


@pytest.fixture(scope="session")
def kustomize() -> str:
    """The kustomize binary: $KUSTOMIZE when set, else the pinned version built into ~/.cache/clevertap-processor."""
    given = os.environ.get("KUSTOMIZE")
    if given:
        return given
    if shutil.which("go") is None:
        pytest.skip("Go is not installed: deploy/install-kustomize.sh builds kustomize with `go install` "
                    "(or set KUSTOMIZE to a kustomize binary)")
    proc = subprocess.run(
        ["bash", str(DEPLOY / "install-kustomize.sh")], capture_output=True, text=True, timeout=900, check=False
    )
    assert proc.returncode == 0, f"deploy/install-kustomize.sh failed:\n{proc.stderr}"
    return proc.stdout.strip().splitlines()[-1]


@pytest.fixture(scope="session")
def rendered(kustomize: str) -> dict[str, list[dict[str, Any]]]:
    return {target: render(kustomize, target) for target in TARGETS}
