"""The processor as operators run it: a separate process, configured by environment, stopped by SIGTERM."""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import time

import pytest

from processor.embedded.clevertap_standin import StandinConfig, StandinThread
from processor.embedded.events import create_topics, encode_plain, produce
from tests.integration.helpers import BASE_TS, SCHEMA, committed_and_end_offsets, iso, unique

pytestmark = pytest.mark.integration


def base_env(**values: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KAFKA_", "CLEVERTAP_", "PROCESSOR_", "SCHEMA"))}
    env.update(values)
    return env


def test_bad_configuration_exits_2_naming_every_setting_without_secrets() -> None:
    passcode = secrets.token_hex(16)
    env = base_env(
        KAFKA_BOOTSTRAP_SERVERS="127.0.0.1:1", KAFKA_TOPICS="events", CLEVERTAP_ACCOUNT_ID="ACC",
        CLEVERTAP_PASSCODE=passcode, CLEVERTAP_REGION="eu9", CLEVERTAP_MAX_CONCURRENCY="40",
    )
    done = subprocess.run(
        [sys.executable, "-m", "processor", "run"], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2
    assert done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert lines == [
        "configuration error: CLEVERTAP_REGION: must be one of eu1, in1, us1, sg1, aps3, mec1, sk1, got 'eu9'",
        "configuration error: CLEVERTAP_MAX_CONCURRENCY: must be between 1 and 15, got 40",
    ]
    assert passcode not in done.stderr


def test_check_config_masks_secrets() -> None:
    passcode, kafka_password = secrets.token_hex(16), secrets.token_hex(16)
    env = base_env(
        KAFKA_BOOTSTRAP_SERVERS="broker:9092", KAFKA_TOPICS="events", CLEVERTAP_ACCOUNT_ID="ACC",
        CLEVERTAP_PASSCODE=passcode, CLEVERTAP_REGION="eu1", KAFKA_CONFIG_SASL_PASSWORD=kafka_password,
        KAFKA_CONFIG_SASL_USERNAME="svc",
    )
    done = subprocess.run(
        [sys.executable, "-m", "processor", "check-config"], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    shown = json.loads(done.stdout)
    assert shown["clevertap_passcode"] == "****"
    assert shown["kafka_extra"] == {"sasl.password": "****", "sasl.username": "svc"}
    assert shown["clevertap_base_url"] == "https://eu1.api.clevertap.com"
    assert passcode not in done.stdout + done.stderr
    assert kafka_password not in done.stdout + done.stderr


def test_run_delivers_then_sigterm_drains_commits_and_never_prints_secrets(kafka_bootstrap: str) -> None:
    topic, group = unique("proc"), unique("group")
    create_topics(kafka_bootstrap, {topic: 2})
    events = [
        {"messageId": f"m{i}", "type": "identify", "userId": f"u{i}", "timestamp": iso(BASE_TS + i),
         "traits": {"plan": "gold", "seq": i}}
        for i in range(120)
    ]
    produce(kafka_bootstrap, topic, [(e["userId"].encode(), encode_plain(SCHEMA, e)) for e in events])
    passcode, kafka_password = secrets.token_hex(16), secrets.token_hex(16)
    standin = StandinThread(StandinConfig(account_id="ACC", passcode=passcode))
    standin.start()
    try:
        # Credentials refused first: the processor must say so, dead-letter nothing, and resume by itself.
        standin.config.auth_failing = True
        env = base_env(
            KAFKA_BOOTSTRAP_SERVERS=kafka_bootstrap, KAFKA_TOPICS=topic, KAFKA_GROUP_ID=group,
            CLEVERTAP_ACCOUNT_ID="ACC", CLEVERTAP_PASSCODE=passcode, CLEVERTAP_BASE_URL=standin.base_url,
            KAFKA_CONFIG_SASL_PASSWORD=kafka_password, PROCESSOR_CREDENTIALS_RETRY_S="0.5",
            PROCESSOR_COMMIT_INTERVAL_S="0.2", LOG_FORMAT="json", LOG_LEVEL="debug", METRICS_PORT="0",
        )
        process = subprocess.Popen(
            [sys.executable, "-m", "processor", "run"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            text=True,
        )
        try:
            deadline = time.monotonic() + 30
            while standin.counters()["status_counts"].get("401", 0) < 1 and time.monotonic() < deadline:
                time.sleep(0.1)
            assert standin.counters()["status_counts"].get("401", 0) >= 1
            time.sleep(1.0)
            standin.config.auth_failing = False
            deadline = time.monotonic() + 60
            while standin.records_accepted < len(events) and time.monotonic() < deadline:
                time.sleep(0.1)
            assert standin.records_accepted == len(events)
            time.sleep(0.5)
            process.send_signal(signal.SIGTERM)
            output, _ = process.communicate(timeout=60)
        finally:
            if process.poll() is None:
                process.kill()
                process.communicate()
        assert process.returncode == 0, output
    finally:
        standin.stop()

    assert passcode not in output
    assert kafka_password not in output
    records = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
    non_json = [line for line in output.splitlines() if line and not line.startswith("{")]
    assert non_json == []
    messages = [r["message"] for r in records]
    assert any("CleverTap refuses the credentials" in m for m in messages)
    assert any("credentials accepted again" in m for m in messages)
    assert any(m.startswith("SIGTERM: stopping") for m in messages)
    assert ["dead-lettered", "0"] in [m.split() for m in messages]
    assert sorted(standin.profiles) == sorted(f"u{i}" for i in range(120))
    committed, ends = committed_and_end_offsets(kafka_bootstrap, topic, group, 2)
    assert committed == ends
    assert sum(ends) == 120
