#!/usr/bin/env bash
# Builds the operator's stack from the Go module proxy, for collector-config/stack.sh and the
# tests/stack_*.rs end-to-end tests:
#   otelcol-tenant-otel  an OpenTelemetry Collector with exactly the components that
#                        collector-config/otel-collector.yaml uses (collector-config/otelcol/)
#   jaeger               Jaeger v2, github.com/jaegertracing/jaeger/cmd/jaeger (collector-config/jaeger/)
# Versions are pinned by the go.mod and go.sum files of those two modules. Everything lands outside
# the repository, in $TENANT_OTEL_CACHE (default ${XDG_CACHE_HOME:-$HOME/.cache}/tenant-otel):
# the binaries in bin/, the Go module and build caches in go/. Each binary is keyed by a hash of its
# module's files and the Go version, so a second run builds nothing and only says "up to date".
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"

cache="${TENANT_OTEL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/tenant-otel}"
bin="$cache/bin"
mkdir -p "$bin" "$cache/go"

go_cmd="$(command -v go || true)"
[ -n "$go_cmd" ] || go_cmd=/usr/local/go/bin/go
[ -x "$go_cmd" ] || { echo "build-stack: no Go toolchain (go not on PATH, nor /usr/local/go/bin/go)" >&2; exit 1; }

export GOMODCACHE="$cache/go/mod" GOCACHE="$cache/go/build"
# -modcacherw: the module cache can be removed with rm -rf like the rest of the cache.
# -buildvcs=false: the binaries must not depend on the state of the checkout they were built in.
export GOFLAGS="-trimpath -buildvcs=false -modcacherw"
go_version="$("$go_cmd" version)"

# Two builds at once (two checkouts, CI beside a developer) would race on the same files.
exec 9>"$bin/.lock"
flock 9

# The version of module $2 that the go.mod in directory $1 requires.
pinned() {
  awk -v m="$2" '$1 == m { print $2; exit } $1 == "require" && $2 == m { print $3; exit }' "$1/go.mod"
}

# build NAME MODULE_DIR PACKAGE LABEL: builds PACKAGE in MODULE_DIR into $bin/NAME unless the
# binary there was built from the same files with the same Go.
build() {
  local name="$1" dir="$repo/collector-config/$2" pkg="$3" label="$4" key
  key="$({ echo "$go_version"; cat "$dir/go.mod" "$dir/go.sum"; find "$dir" -name '*.go' -print0 | sort -z | xargs -0r cat; } | sha256sum | cut -d' ' -f1)"
  if [ -x "$bin/$name" ] && [ "$(cat "$bin/.$name.key" 2>/dev/null)" = "$key" ]; then
    echo "up to date: $name ($label)"
    return
  fi
  echo "== building $name ($label) into $bin"
  local start=$SECONDS
  # A binary appears whole or not at all: a test starting meanwhile never runs half a file.
  (cd "$dir" && nice -n 10 "$go_cmd" build -ldflags="-s -w" -o "$bin/.$name.new" "$pkg")
  mv -f "$bin/.$name.new" "$bin/$name"
  echo "$key" >"$bin/.$name.key"
  echo "== built $name in $((SECONDS - start)) s"
}

contrib=github.com/open-telemetry/opentelemetry-collector-contrib
build otelcol-tenant-otel otelcol . \
  "contrib $(pinned "$repo/collector-config/otelcol" "$contrib/processor/tailsamplingprocessor"), core $(pinned "$repo/collector-config/otelcol" go.opentelemetry.io/collector/otelcol)"
build jaeger jaeger github.com/jaegertracing/jaeger/cmd/jaeger \
  "jaeger $(pinned "$repo/collector-config/jaeger" github.com/jaegertracing/jaeger)"
