#!/usr/bin/env bash
# Every check: lint, types, and the whole test suite (unit and integration, on a real local Kafka broker).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/ruff check processor tests
.venv/bin/mypy
exec .venv/bin/pytest -p no:cacheprovider "$@"
