#!/usr/bin/env bash
# Builds the helm CLI from its Go module with the machine's Go toolchain, once: the binary,
# the module cache and the build cache all live under the download cache, so a second run
# only checks the version and returns. Prints the binary's path on stdout.
set -euo pipefail
HELM_VERSION="${HELM_VERSION:-v3.22.0}"
cache="${SIGNET_CACHE_DIR:-$(cd "$(dirname "$0")/.." && pwd)/.cache}"
bin_dir="$cache/helm/$HELM_VERSION/bin"
helm="$bin_dir/helm"
if [[ -x "$helm" ]] && "$helm" version --short 2>/dev/null | grep -q "^$HELM_VERSION"; then
  echo "$helm"
  exit 0
fi
if ! command -v go >/dev/null && [[ -x /usr/local/go/bin/go ]]; then
  PATH="/usr/local/go/bin:$PATH"
fi
command -v go >/dev/null || { echo "helm-tools: the Go toolchain is needed to build helm" >&2; exit 1; }
mkdir -p "$bin_dir"
echo "helm-tools: building helm $HELM_VERSION from its Go module (first run only)" >&2
GOBIN="$bin_dir" GOPATH="$cache/go" GOMODCACHE="$cache/go/mod" GOCACHE="$cache/go/build" \
  GOFLAGS=-mod=mod CGO_ENABLED=0 \
  go install -ldflags "-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION" \
  "helm.sh/helm/v3/cmd/helm@$HELM_VERSION" >&2
echo "$helm"
