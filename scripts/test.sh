#!/usr/bin/env bash
# Every check: lint, types, and the whole test suite (unit and integration, on a real local Kafka broker).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# The manifest tests render deploy/ with kustomize, built once from the Go module proxy into the cache; without Go
# those tests skip and say so.
if command -v go >/dev/null 2>&1; then
  bash deploy/install-kustomize.sh >/dev/null || echo "test.sh: kustomize could not be built; see tests/deploy" >&2
fi
.venv/bin/ruff check processor tests
.venv/bin/mypy
exec .venv/bin/pytest -p no:cacheprovider "$@"
