"""A real single-node Apache Kafka broker (KRaft, broker and controller in one JVM) for tests and the demo.

The broker is the genuine Apache Kafka server, resolved from Maven Central by ``scripts/kafka/pom.xml``
into a local jar cache once, then started as ``java -cp '<libs>/*' kafka.Kafka server.properties`` on
127.0.0.1 with free ports.

CLI::

    python -m processor.embedded.kafka_broker fetch   # only fill the jar cache
    python -m processor.embedded.kafka_broker run     # start, print bootstrap servers, wait for Ctrl-C
"""

from __future__ import annotations

import argparse
import atexit
import base64
import contextlib
import fcntl
import hashlib
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
import xml.etree.ElementTree as ET
from collections import deque
from pathlib import Path
from types import FrameType, TracebackType
from typing import IO, Self

__all__ = [
    "KafkaBroker",
    "ensure_kafka_jars",
    "kafka_version",
    "main",
]

_REPO_ROOT = Path(__file__).resolve().parents[2]
POM_PATH = _REPO_ROOT / "scripts" / "kafka" / "pom.xml"

_MARKER_NAME = "COMPLETE"
_LIBS_NAME = "libs"
_POM_NS = "{http://maven.apache.org/POM/4.0.0}"

_LOG_TAIL_LINES = 60
_LISTENERS_RE = re.compile(r"^listeners=PLAINTEXT://127\.0\.0\.1:(\d+),CONTROLLER://127\.0\.0\.1:(\d+)$", re.MULTILINE)

# Kafka's own start script asks for a 1 GiB heap; a test broker holding a few topics needs far less,
# and the machine also runs the processor and the tests.
_BROKER_JVM_FLAGS = ["-Xms128m", "-Xmx512m", "-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20"]

# Runs in a separate small Python process, one per broker JVM. The JVM lives in its own session, so when
# its owner dies without running atexit (SIGKILL, an unhandled SIGTERM, e.g. from `timeout`) nothing
# would ever end it. The watchdog holds the read end of a pipe whose only writer is the owner: a byte
# means "stopped on purpose", bare EOF means the owner is gone and the JVM must go too. The JVM's start
# time from /proc guards against signalling a recycled pid.
_WATCHDOG_SOURCE = """
import os, signal, sys, time
pid = int(sys.argv[1])
def start_time():
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None
def alive(expected):
    if expected is not None and start_time() != expected:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True
expected = start_time()
if sys.stdin.buffer.read() or not alive(expected):
    sys.exit(0)
os.kill(pid, signal.SIGTERM)
deadline = time.monotonic() + 15
while alive(expected) and time.monotonic() < deadline:
    time.sleep(0.1)
if alive(expected):
    os.kill(pid, signal.SIGKILL)
"""


def _pom_path() -> Path:
    override = os.environ.get("KAFKA_BROKER_POM")
    path = Path(override) if override else POM_PATH
    if not path.is_file():
        raise RuntimeError(
            f"Kafka broker pom not found at {path}; it lives in the source tree at scripts/kafka/pom.xml "
            "(set KAFKA_BROKER_POM to point at it when running from an installed package)"
        )
    return path


def kafka_version() -> str:
    """The Kafka version pinned in the pom, which is the single place the version is written down."""
    root = ET.parse(_pom_path()).getroot()
    node = root.find(f"{_POM_NS}properties/{_POM_NS}kafka.version")
    if node is None or not (node.text or "").strip():
        raise RuntimeError(f"{_pom_path()} has no <properties><kafka.version>")
    return (node.text or "").strip()


def _java_executable() -> str:
    java_home = os.environ.get("JAVA_HOME")
    if java_home:
        candidate = Path(java_home) / "bin" / "java"
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    found = shutil.which("java")
    if found is None:
        raise RuntimeError(
            "java not found on PATH (nor in $JAVA_HOME/bin): the Kafka broker needs a Java 17+ runtime, "
            "e.g. `apt-get install openjdk-17-jre-headless`"
        )
    return found


def _cache_dir() -> Path:
    override = os.environ.get("KAFKA_JARS_CACHE")
    if override:
        return Path(override).expanduser()
    return Path.home() / ".cache" / "clevertap-processor" / f"kafka-{kafka_version()}"


def ensure_kafka_jars() -> Path:
    """Return a directory holding the broker's runtime jars, running Maven only the first time.

    The marker file records a hash of the pom, so editing the pom (another version, another jar)
    refetches instead of silently reusing a stale classpath.
    """
    _java_executable()
    pom = _pom_path()
    pom_digest = hashlib.sha256(pom.read_bytes()).hexdigest()
    cache = _cache_dir()
    libs = cache / _LIBS_NAME
    marker = cache / _MARKER_NAME

    def is_complete() -> bool:
        try:
            return marker.read_text().strip() == pom_digest and libs.is_dir()
        except FileNotFoundError:
            return False

    if is_complete():
        return libs

    cache.mkdir(parents=True, exist_ok=True)
    # Several test processes may ask at once; one downloads, the others wait and then reuse it.
    with (cache / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if is_complete():
            return libs
        mvn = shutil.which("mvn")
        if mvn is None:
            raise RuntimeError(
                "mvn not found on PATH: Maven is needed once to fetch the Kafka broker jars from Maven "
                f"Central into {cache} (e.g. `apt-get install maven`)"
            )
        marker.unlink(missing_ok=True)
        # Leftovers of a download that was killed outright (no chance to run its cleanup).
        for stale in cache.glob("libs-partial-*"):
            shutil.rmtree(stale, ignore_errors=True)
        staging = Path(tempfile.mkdtemp(prefix="libs-partial-", dir=cache))
        print(
            f"kafka_broker: fetching Apache Kafka {kafka_version()} jars with Maven into {libs} (one-time)",
            file=sys.stderr,
            flush=True,
        )
        cmd = [
            mvn,
            "-q",
            "-B",
            "-Dstyle.color=never",
            "-f",
            str(pom),
            "dependency:copy-dependencies",
            "-DincludeScope=runtime",
            f"-DoutputDirectory={staging}",
        ]
        try:
            result = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True, check=False)
            if result.returncode != 0 or not any(staging.glob("*.jar")):
                output = (result.stdout + result.stderr).strip().splitlines()
                tail = "\n".join(output[-40:])
                raise RuntimeError(
                    f"Maven failed to fetch the Kafka jars (exit {result.returncode}): {' '.join(cmd)}\n{tail}"
                )
            if libs.exists():
                shutil.rmtree(libs)
            # mkdtemp creates the folder private to us; the jars are not secret and may be shared.
            staging.chmod(0o755)
            staging.rename(libs)
        finally:
            if staging.exists():
                shutil.rmtree(staging, ignore_errors=True)
        # Written last: an interrupted download leaves no marker and is redone next time.
        marker.write_text(pom_digest + "\n")
    return libs


def _free_ports(count: int) -> list[int]:
    # All sockets stay open until every port is chosen so the kernel cannot hand out the same one twice.
    sockets: list[socket.socket] = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            sockets.append(s)
        return [int(s.getsockname()[1]) for s in sockets]
    finally:
        for s in sockets:
            s.close()


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        # Same option the JVM sets on its listening sockets, so a port in TIME_WAIT still counts as free.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _new_cluster_id() -> str:
    # Kafka cluster ids are 16 random bytes in unpadded URL-safe base64; a leading '-' would be read
    # as an option by the storage tool's argument parser, so such ids are drawn again.
    while True:
        cid = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode("ascii").rstrip("=")
        if not cid.startswith("-"):
            return cid


def _port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def _quiet_logger() -> logging.Logger:
    # librdkafka reports every refused connection while the broker boots; those are expected here.
    logger = logging.getLogger("processor.embedded.kafka_broker.readiness")
    logger.propagate = False
    if not logger.handlers:
        logger.addHandler(logging.NullHandler())
    return logger


class KafkaBroker:
    """One Apache Kafka process in KRaft combined mode, listening on 127.0.0.1 only.

    Ports and the data directory are chosen on the first ``start()`` and kept, so ``stop()`` or
    ``kill()`` followed by ``start()`` brings back the same broker with its topics and messages.
    When no ``workdir`` is given a temporary one is created and removed again on ``__exit__``.
    """

    def __init__(self, workdir: Path | None = None, port: int | None = None) -> None:
        self._owns_workdir = workdir is None
        self._workdir = Path(workdir) if workdir is not None else Path(tempfile.mkdtemp(prefix="kafka-broker-"))
        self._port: int | None = port
        self._controller_port: int | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._last_pid: int | None = None
        self._log_handle: IO[bytes] | None = None
        self._log_offset = 0
        self._watchdog: subprocess.Popen[bytes] | None = None
        self._watchdog_pipe: int | None = None
        self._atexit_registered = False

    @property
    def workdir(self) -> Path:
        return self._workdir

    @property
    def log_path(self) -> Path:
        """Everything the broker JVM writes (log4j, stdout, stderr) goes here, appended on restart."""
        return self._workdir / "broker.log"

    @property
    def data_dir(self) -> Path:
        return self._workdir / "data"

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("KafkaBroker has no port yet: call start() first")
        return self._port

    @property
    def bootstrap_servers(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        """Pid of the JVM last started; kept after stop()/kill() so callers can check it is gone."""
        return self._last_pid

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def _previous_ports(self) -> tuple[int, int] | None:
        # A workdir reused by a new KafkaBroker (e.g. `run --workdir` twice) keeps its address when it can.
        try:
            text = (self._workdir / "server.properties").read_text()
        except FileNotFoundError:
            return None
        match = _LISTENERS_RE.search(text)
        if match is None:
            return None
        broker_port, controller_port = int(match[1]), int(match[2])
        if self._port not in (None, broker_port):
            return None
        if not (_port_free(broker_port) and _port_free(controller_port)):
            return None
        return broker_port, controller_port

    def _choose_ports(self) -> None:
        if self._controller_port is not None:
            return
        previous = self._previous_ports()
        if previous is not None:
            self._port, self._controller_port = previous
        elif self._port is None:
            self._port, self._controller_port = _free_ports(2)
        else:
            ports = _free_ports(2)
            self._controller_port = ports[0] if ports[0] != self._port else ports[1]

    def _write_config(self) -> tuple[Path, Path]:
        port, cport = self.port, self._controller_port
        props = "\n".join(
            [
                "process.roles=broker,controller",
                "node.id=1",
                # Dynamic quorum (Kafka 4.x): the controller finds itself through the bootstrap list and
                # the storage is formatted with --standalone, which makes this node the only voter.
                f"controller.quorum.bootstrap.servers=127.0.0.1:{cport}",
                f"listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{cport}",
                f"advertised.listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{cport}",
                "controller.listener.names=CONTROLLER",
                "inter.broker.listener.name=PLAINTEXT",
                "listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
                f"log.dirs={self.data_dir}",
                "num.partitions=1",
                "auto.create.topics.enable=true",
                # Internal topics default to replication 3, which a single node can never satisfy.
                "offsets.topic.replication.factor=1",
                "transaction.state.log.replication.factor=1",
                "transaction.state.log.min.isr=1",
                "share.coordinator.state.topic.replication.factor=1",
                "share.coordinator.state.topic.min.isr=1",
                # The default 3 s delay helps only when many consumers join at once; tests pay it per join.
                "group.initial.rebalance.delay.ms=0",
                # After a crash (kill()) the controller keeps the dead incarnation registered until its
                # session expires (default 9 s) and the restarted broker cannot register before that.
                "broker.heartbeat.interval.ms=500",
                "broker.session.timeout.ms=4000",
                "",
            ]
        )
        server_properties = self._workdir / "server.properties"
        server_properties.write_text(props)

        log4j = "\n".join(
            [
                "status = warn",
                "appender.out.type = Console",
                "appender.out.name = OUT",
                "appender.out.target = SYSTEM_OUT",
                "appender.out.layout.type = PatternLayout",
                "appender.out.layout.pattern = [%d] %p %m (%c)%n",
                "rootLogger.level = INFO",
                "rootLogger.appenderRef.out.ref = OUT",
                # Per-request logging and the state-change chatter drown the lines that explain a failure.
                "logger.request.name = kafka.request.logger",
                "logger.request.level = WARN",
                "logger.state.name = state.change.logger",
                "logger.state.level = WARN",
                "",
            ]
        )
        log4j_properties = self._workdir / "log4j2.properties"
        log4j_properties.write_text(log4j)
        return server_properties, log4j_properties

    def _java_command(
        self, libs: Path, log4j_properties: Path, jvm_flags: list[str], main_class: str, *args: str
    ) -> list[str]:
        return [
            _java_executable(),
            *jvm_flags,
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={log4j_properties}",
            "-cp",
            f"{libs}/*",
            main_class,
            *args,
        ]

    def _format_storage(self, libs: Path, server_properties: Path, log4j_properties: Path) -> None:
        if (self.data_dir / "meta.properties").is_file():
            return
        cmd = self._java_command(
            libs,
            log4j_properties,
            # A one-shot tool: the optimising JIT and a concurrent GC only add start-up time here.
            ["-Xmx256m", "-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC"],
            "kafka.tools.StorageTool",
            "format",
            "--standalone",
            "--cluster-id",
            _new_cluster_id(),
            "--config",
            str(server_properties),
        )
        result = subprocess.run(
            cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True, cwd=self._workdir, check=False
        )
        with self.log_path.open("a") as log:
            log.write(result.stdout)
            log.write(result.stderr)
        if result.returncode != 0:
            raise RuntimeError(
                f"Kafka storage format failed (exit {result.returncode}):\n{result.stdout}{result.stderr}"
            )

    def _startup_errors(self, limit: int = 6) -> str:
        # The tail is mostly shutdown noise after a failed start; the cause is the first ERROR of this run.
        try:
            with self.log_path.open("rb") as f:
                f.seek(self._log_offset)
                text = f.read().decode("utf-8", errors="replace")
        except FileNotFoundError:
            return ""
        lines = text.splitlines()
        errors: list[str] = []
        for i, line in enumerate(lines):
            if "] ERROR " not in line:
                continue
            errors.append(line)
            # The exception's own message sits on the line right after the log record.
            if i + 1 < len(lines) and not lines[i + 1].startswith(("[", "\t", " ")):
                errors.append("    " + lines[i + 1])
            if len(errors) >= limit:
                break
        if not errors:
            return ""
        return "; first errors:\n" + "\n".join(errors)

    def log_tail(self, lines: int = _LOG_TAIL_LINES) -> str:
        try:
            with self.log_path.open("r", errors="replace") as f:
                return "".join(deque(f, maxlen=lines))
        except FileNotFoundError:
            return "(no broker log yet)"

    def start(self, timeout: float = 60) -> None:
        """Start the broker and return once it answers metadata requests on ``bootstrap_servers``."""
        if self.running:
            return
        # The previous JVM may have died by itself; drop its handles before starting a new one.
        self._release()
        deadline = time.monotonic() + timeout
        libs = ensure_kafka_jars()
        self._workdir.mkdir(parents=True, exist_ok=True)
        self._choose_ports()
        server_properties, log4j_properties = self._write_config()
        self._format_storage(libs, server_properties, log4j_properties)

        self._log_handle = self.log_path.open("ab")
        self._log_offset = self._log_handle.tell()
        cmd = self._java_command(libs, log4j_properties, _BROKER_JVM_FLAGS, "kafka.Kafka", str(server_properties))
        # A session of its own keeps the terminal's Ctrl-C from reaching the JVM, so the owner can
        # still stop it cleanly (and a test can decide when it dies).
        self._proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=self._log_handle,
            stderr=subprocess.STDOUT,
            cwd=self._workdir,
            start_new_session=True,
        )
        self._last_pid = self._proc.pid
        self._start_watchdog(self._proc.pid)
        if not self._atexit_registered:
            # The JVM is outside our process group, so nothing else would end it if the owner forgets.
            atexit.register(self._kill_at_exit)
            self._atexit_registered = True

        try:
            self._wait_ready(deadline, timeout)
        except BaseException:
            self.kill()
            raise

    def _wait_ready(self, deadline: float, timeout: float) -> None:
        from confluent_kafka.admin import AdminClient

        admin: AdminClient | None = None
        while True:
            proc = self._proc
            if proc is None or proc.poll() is not None:
                code = None if proc is None else proc.returncode
                raise RuntimeError(
                    f"Kafka broker exited during startup (exit {code}){self._startup_errors()}\n"
                    f"last lines of {self.log_path}:\n{self.log_tail()}"
                )
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(
                    f"Kafka broker not ready on {self.bootstrap_servers} after {timeout:.0f}s"
                    f"{self._startup_errors()}\nlast lines of {self.log_path}:\n{self.log_tail()}"
                )
            # A plain TCP probe first: cheaper than a client, and keeps librdkafka from retrying early.
            if not _port_open(self.port):
                time.sleep(0.2)
                continue
            if admin is None:
                admin = AdminClient({"bootstrap.servers": self.bootstrap_servers}, logger=_quiet_logger())
            try:
                metadata = admin.list_topics(timeout=min(5.0, max(0.5, remaining)))
            except Exception:
                time.sleep(0.2)
                continue
            if metadata.brokers:
                return

    def stop(self, timeout: float = 30) -> None:
        """SIGTERM the broker JVM (a clean, controlled shutdown), then SIGKILL it after ``timeout``."""
        proc = self._proc
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self._release()

    def kill(self) -> None:
        """SIGKILL the broker JVM, as a crash would; ``start()`` afterwards recovers the same data."""
        proc = self._proc
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()
        self._release()

    def _start_watchdog(self, pid: int) -> None:
        read_end, write_end = os.pipe()
        try:
            self._watchdog = subprocess.Popen(
                [sys.executable, "-c", _WATCHDOG_SOURCE, str(pid)],
                stdin=read_end,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )
        except BaseException:
            os.close(write_end)
            raise
        finally:
            os.close(read_end)
        self._watchdog_pipe = write_end

    def _release(self) -> None:
        """Forget a JVM that has already exited, and dismiss its watchdog."""
        self._proc = None
        if self._log_handle is not None:
            self._log_handle.close()
            self._log_handle = None
        if self._watchdog_pipe is not None:
            with contextlib.suppress(OSError):
                os.write(self._watchdog_pipe, b"stopped")
            os.close(self._watchdog_pipe)
            self._watchdog_pipe = None
        if self._watchdog is not None:
            try:
                self._watchdog.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._watchdog.kill()
                self._watchdog.wait()
            self._watchdog = None

    def _kill_at_exit(self) -> None:
        with contextlib.suppress(Exception):
            self.kill()

    def close(self) -> None:
        """Stop the broker and remove the work directory if this object created it."""
        self.stop()
        if self._atexit_registered:
            atexit.unregister(self._kill_at_exit)
            self._atexit_registered = False
        if self._owns_workdir:
            shutil.rmtree(self._workdir, ignore_errors=True)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _run(workdir: Path | None, port: int | None, timeout: float) -> int:
    stop_requested = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop_requested.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)

    broker = KafkaBroker(workdir=workdir, port=port)
    try:
        broker.start(timeout=timeout)
        print(broker.bootstrap_servers, flush=True)
        print(
            f"kafka_broker: Kafka {kafka_version()} up (pid {broker.pid}), log in {broker.log_path}; Ctrl-C to stop",
            file=sys.stderr,
            flush=True,
        )
        while not stop_requested.wait(1.0):
            if not broker.running:
                print(
                    f"kafka_broker: broker exited unexpectedly; last lines of {broker.log_path}:\n{broker.log_tail()}",
                    file=sys.stderr,
                    flush=True,
                )
                return 1
        print("kafka_broker: stopping", file=sys.stderr, flush=True)
        return 0
    finally:
        if workdir is None:
            broker.close()
        else:
            broker.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m processor.embedded.kafka_broker",
        description="Fetch or run a local single-node Apache Kafka broker (KRaft) on 127.0.0.1.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("fetch", help="only download the broker jars into the cache and print their directory")
    run = sub.add_parser("run", help="start the broker, print its bootstrap servers, run until Ctrl-C/SIGTERM")
    run.add_argument("--port", type=int, default=None, help="broker port on 127.0.0.1 (default: a free one)")
    run.add_argument(
        "--workdir",
        type=Path,
        default=None,
        help="keep config, data and log here across runs (default: a temporary directory, removed on exit)",
    )
    run.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for the broker to be ready")
    args = parser.parse_args(argv)

    if args.command == "fetch":
        print(ensure_kafka_jars(), flush=True)
        return 0
    return _run(args.workdir, args.port, args.timeout)


if __name__ == "__main__":
    sys.exit(main())
