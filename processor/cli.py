"""Command line: ``processor run | demo | check-config``."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import sys

from processor.errors import ConfigError
from processor.logs import setup_logging
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
    try:
        return asyncio.run(_run(settings))
    except ConfigError as exc:
        log.critical("configuration error: %s", exc)
        return EXIT_CONFIG
    except FatalKafkaError as exc:
        log.critical("Kafka client failed and cannot recover: %s; records not committed will be read again", exc)
        return 1


def cmd_check_config(args: argparse.Namespace) -> int:
    settings = _settings_or_exit()
    print(json.dumps(settings.describe(), indent=2, default=str))
    print("configuration OK", file=sys.stderr)
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
    commands.add_parser("check-config", help="validate the settings and print them with secrets masked")
    args = parser.parse_args(argv)
    handlers = {"run": cmd_run, "demo": cmd_demo, "check-config": cmd_check_config, None: cmd_run}
    return handlers[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
