"""Command line: ``processor run | demo | check-config | presets | preview | redrive | replay``."""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import logging
import os
import signal
import sys
from pathlib import Path

from processor.errors import ConfigError
from processor.logs import setup_logging
from processor.redrive import add_redrive_parser, cmd_redrive
from processor.replay import add_replay_parser, cmd_replay
from processor.settings import Settings, load_settings

log = logging.getLogger("processor")

EXIT_CONFIG = 2
EXIT_BREAKER = 3


def _settings_or_exit() -> Settings:
    try:
        return load_settings()
    except ConfigError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        for note in getattr(exc, "__notes__", []):
            for line in note.splitlines():
                print(f"configuration error: {line}", file=sys.stderr)
        raise SystemExit(EXIT_CONFIG) from None


async def _run(settings: Settings) -> int:
    from processor.app import run_processor

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    signals_seen = 0

    def on_signal(signum: int) -> None:
        nonlocal signals_seen
        signals_seen += 1
        if signals_seen == 1:
            log.warning(
                "%s: stopping: finishing in-flight records (up to %.0fs), committing, closing; "
                "send it again to exit at once", signal.Signals(signum).name, settings.drain_timeout_s,
            )
            stop.set()
        else:
            log.error("second signal: exiting at once; records not committed will be re-read")
            os._exit(130)

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, on_signal, signum)
    log.info(
        "consuming %s as group %s; CleverTap %s", ",".join(settings.kafka_topics), settings.kafka_group_id,
        settings.clevertap_base_url,
    )
    result = await run_processor(settings, stop=stop)
    for line in result.stats.summary_lines():
        log.info(line)
    if result.breaker_message is not None:
        log.critical("%s", result.breaker_message)
        return EXIT_BREAKER
    return 0 if result.drained else 1


def cmd_run(args: argparse.Namespace) -> int:
    from processor.kafka.source import FatalKafkaError

    settings = _settings_or_exit()
    setup_logging(settings.log_level, settings.log_format)
    # Records are acyclic and freed by reference counting; the cyclic collector's passes only rescan the thousands of
    # records in flight (decoded events, mapped records): at the default thresholds (700, 10, 10) that is 15-20 % of
    # the CPU per record. Start-up objects are frozen out of the scans; collections become ~140x rarer.
    gc.freeze()
    gc.set_threshold(100_000, 50, 100)
    try:
        return asyncio.run(_run(settings))
    except ConfigError as exc:
        log.critical("configuration error: %s", exc)
        return EXIT_CONFIG
    except FatalKafkaError as exc:
        log.critical("Kafka client failed and cannot recover: %s; records not committed will be read again", exc)
        return 1


def _print_config_errors(errors: list[ConfigError]) -> None:
    for exc in errors:
        print(f"configuration error: {exc}", file=sys.stderr)
        for note in getattr(exc, "__notes__", []):
            for line in note.splitlines():
                print(f"configuration error: {line}", file=sys.stderr)


def cmd_check_config(args: argparse.Namespace) -> int:
    """Validate the settings and the subscriptions (both, so every problem is listed at once); print the
    effective configuration, secrets masked, or exit 2 with the reasons."""
    from processor.subscriptions import describe_subscriptions, load_subscriptions_file, preset_subscriptions

    errors: list[ConfigError] = []
    settings: Settings | None = None
    try:
        settings = load_settings()
    except ConfigError as exc:
        errors.append(exc)
    if settings is not None:
        path = settings.subscriptions_file
    else:
        raw = os.environ.get("SUBSCRIPTIONS_FILE", "").strip()
        path = Path(raw) if raw else None
    subscriptions = []
    try:
        if path is None:
            subscriptions = preset_subscriptions()
        elif path.is_file():  # a missing file is already reported by load_settings
            subscriptions = load_subscriptions_file(path)
    except ConfigError as exc:
        errors.append(exc)
    if errors or settings is None:
        _print_config_errors(errors)
        return EXIT_CONFIG
    shown = settings.describe()
    shown["subscriptions_source"] = str(path) if path is not None else "Quick Setup presets"
    shown["subscriptions"] = describe_subscriptions(subscriptions)
    print(json.dumps(shown, indent=2, default=str))
    print("configuration OK", file=sys.stderr)
    return 0


def cmd_presets(args: argparse.Namespace) -> int:
    from processor.subscriptions import presets_yaml

    sys.stdout.write(presets_yaml())
    return 0


def cmd_preview(args: argparse.Namespace) -> int:
    from processor.preview import (
        PreviewInputError,
        load_preview_subscriptions,
        preview_event,
        read_event_file,
        read_kafka_event,
        render_text,
    )

    if (args.file is None) == (args.topic is None) or (args.topic is not None and args.offset is None):
        print("preview: give one event: a FILE, or --topic with --partition and --offset", file=sys.stderr)
        return EXIT_CONFIG
    try:
        subscriptions, source = load_preview_subscriptions(args.subscriptions)
        if args.topic is not None:
            event = read_kafka_event(args.topic, args.partition, args.offset)
        else:
            event = read_event_file(args.file, index=args.index, schema_path=args.schema)
    except ConfigError as exc:
        _print_config_errors([exc])
        return EXIT_CONFIG
    except PreviewInputError as exc:
        print(f"preview: {exc}", file=sys.stderr)
        return 1
    results = preview_event(event, subscriptions)
    if args.json:
        for entry in results:
            if "request" in entry:
                entry["request"]["body"] = json.loads(entry["request"]["body"])
        print(json.dumps({"subscriptions": source, "event": event, "results": results}, indent=2, default=str))
    else:
        print(f"subscriptions: {source}")
        print(render_text(results))
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from processor.demo import run_demo

    setup_logging("WARNING", "text")
    return asyncio.run(run_demo())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="processor", description="Kafka to CleverTap stream processor (configured by environment variables)"
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.add_parser("run", help="consume and deliver to CleverTap until SIGTERM/SIGINT (the default)")
    commands.add_parser("demo", help="run on an embedded default: local broker, CleverTap stand-in, sample events")
    commands.add_parser(
        "check-config", help="validate settings and subscriptions; print them with secrets masked (exit 2 if invalid)"
    )
    commands.add_parser("presets", help="print the Quick Setup subscriptions as YAML, to copy and edit")
    preview = commands.add_parser(
        "preview", help="show, for one event, what every subscription would send to CleverTap (nothing is sent)"
    )
    preview.add_argument("file", nargs="?", help="a JSON, JSON Lines or Avro file with the event ('-': stdin)")
    preview.add_argument("--index", type=int, default=0, help="which event of a list / JSON Lines / Avro file")
    preview.add_argument("--schema", type=Path, help="writer schema of a bare Avro body (default AVRO_SCHEMA_FILE)")
    preview.add_argument("--topic", help="read the event from Kafka (with the processor's settings) ...")
    preview.add_argument("--partition", type=int, default=0, help="... this partition (default 0) ...")
    preview.add_argument("--offset", type=int, help="... at this offset")
    preview.add_argument("--subscriptions", help="subscriptions file (default SUBSCRIPTIONS_FILE, else the presets)")
    preview.add_argument("--json", action="store_true", help="print JSON instead of text")
    add_redrive_parser(commands)
    add_replay_parser(commands)
    args = parser.parse_args(argv)
    handlers = {
        "run": cmd_run, "demo": cmd_demo, "check-config": cmd_check_config, "presets": cmd_presets,
        "preview": cmd_preview, "redrive": cmd_redrive, "replay": cmd_replay,
        None: cmd_run,
    }
    return handlers[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
