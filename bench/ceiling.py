"""The ceiling: consume + Avro decode only, in one process; no routing, no mapping, no HTTP, no commits.

``python -m bench.ceiling --bootstrap B --topic T --partitions 0,1,2 --expect N`` reads the given partitions from
the beginning with a confluent-kafka consumer (the processor's consumer settings, ``consume()`` in batches of the
processor's default poll size), decodes every value with :class:`processor.decode.PlainAvroDecoder` and the
bundled schema, and prints one JSON line: wall-clock time from the first ``consume()`` call (the first fetch) to
the last record decoded, CPU time of the process over the same span, and the time spent inside ``decode()``.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
import uuid

from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from processor.decode import PlainAvroDecoder, load_schema
from processor.settings import default_schema_path


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.ceiling")
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--topic", required=True)
    parser.add_argument("--partitions", required=True, help="comma-separated partition numbers")
    parser.add_argument("--expect", type=int, required=True, help="records to read before stopping")
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--timeout", type=float, default=600.0)
    parser.add_argument("--start-at", type=float, default=0.0, help="wall time to wait for (aligns two processes)")
    args = parser.parse_args(argv)

    decoder = PlainAvroDecoder(load_schema(default_schema_path()))
    decode = decoder.decode
    consumer = Consumer(
        {
            "bootstrap.servers": args.bootstrap,
            "group.id": f"bench-ceiling-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "auto.offset.reset": "earliest",
        }
    )
    partitions = [int(p) for p in args.partitions.split(",") if p]
    consumer.assign([TopicPartition(args.topic, p, OFFSET_BEGINNING) for p in partitions])
    while args.start_at and time.time() < args.start_at:
        time.sleep(0.001)

    count = errors = 0
    decode_s = 0.0
    started = time.time()
    cpu_started = _cpu()
    first_record: float | None = None
    deadline = started + args.timeout
    perf = time.perf_counter
    while count < args.expect and time.time() < deadline:
        messages = consumer.consume(args.batch, 0.1)
        if not messages:
            continue
        if first_record is None:
            first_record = time.time()
        t0 = perf()
        for message in messages:
            if message.error() is not None:
                errors += 1
                continue
            decode(message.value())
            count += 1
        decode_s += perf() - t0
    finished = time.time()
    cpu = _cpu() - cpu_started
    consumer.close()
    print(
        json.dumps(
            {
                "records": count,
                "errors": errors,
                "started_wall": started,
                "first_record_wall": first_record,
                "finished_wall": finished,
                "seconds": finished - started,
                "rate": count / (finished - started) if finished > started else 0.0,
                "cpu_seconds": cpu,
                "decode_loop_seconds": decode_s,
                "complete": count >= args.expect,
            }
        ),
        flush=True,
    )
    return 0 if count >= args.expect else 1


if __name__ == "__main__":
    sys.exit(main())
