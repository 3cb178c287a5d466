#!/usr/bin/env bash
# Installs the pinned kustomize into the project's cache and prints the binary's path on stdout.
# Built from source by `go install` through the Go module proxy (needs Go >= 1.24; ~1-2 minutes the first time on two
# cores, instant afterwards). The tests in tests/deploy call this; so can CI or a developer:
#   "$(deploy/install-kustomize.sh)" build deploy/overlays/example
# Environment: KUSTOMIZE_VERSION (default below), CLEVERTAP_PROCESSOR_CACHE (default ~/.cache/clevertap-processor).
set -euo pipefail

version="${KUSTOMIZE_VERSION:-v5.8.1}"
cache="${CLEVERTAP_PROCESSOR_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/clevertap-processor}"
target="$cache/bin/kustomize-$version"

if [ -x "$target" ]; then
  echo "$target"
  exit 0
fi
if ! command -v go >/dev/null 2>&1; then
  echo "install-kustomize: Go is not installed; kustomize $version is built with 'go install'" >&2
  exit 3
fi

mkdir -p "$cache/bin"
work="$(mktemp -d "$cache/bin/.install-XXXXXX")"
trap 'rm -rf "$work"' EXIT
echo "install-kustomize: building sigs.k8s.io/kustomize/kustomize/v5@$version with $(go version | cut -d' ' -f3)" >&2
GOBIN="$work" GOFLAGS="${GOFLAGS:+$GOFLAGS }-mod=mod" \
  go install "sigs.k8s.io/kustomize/kustomize/v5@$version" >&2
"$work/kustomize" version >&2
# Rename into place last, so an interrupted install never leaves a half-written binary at $target.
mv "$work/kustomize" "$target"
echo "$target"
