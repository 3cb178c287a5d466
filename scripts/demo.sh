#!/usr/bin/env bash
# The main job on an embedded default: local Kafka broker, CleverTap stand-in, the sample events in schemas/examples.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/processor demo "$@"
