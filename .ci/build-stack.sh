#!/usr/bin/env bash
# Builds the operator's stack from the Go module proxy, for collector-config/stack.sh and the
# tests/stack_*.rs end-to-end tests:
#   otelcol-tenant-otel  an OpenTelemetry Collector with exactly the components that
#                        collector-config/otel-collector.yaml uses (collector-config/otelcol/)
#   jaeger               Jaeger v2, github.com/jaegertracing/jaeger/cmd/jaeger (collector-config/jaeger/)
#   prometheus3          Prometheus 3 with its OTLP receiver, github.com/prometheus/prometheus/cmd/prometheus
#                        (collector-config/prometheus3/), built with `remove_all_sd`: of the service
#                        discoveries only static, file and http are kept, and no web UI is compiled
#                        in (its API is all the tests and stack.sh need). TENANT_OTEL_SKIP_PROMETHEUS3=1
#                        leaves it out.
#   otelhttp-peer        Go's reference HTTP instrumentation (otelhttp) as a client and a server peer
#                        of rag_service, for tests/stack_otelhttp.rs (collector-config/peers/otelhttp/)
# Versions are pinned by the go.mod and go.sum files of those modules. Everything lands outside
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

# build NAME MODULE_DIR PACKAGE LABEL [GO_BUILD_ARGS...]: builds PACKAGE in MODULE_DIR into
# $bin/NAME unless the binary there was built from the same files and arguments with the same Go.
build() {
  local name="$1" dir="$repo/collector-config/$2" pkg="$3" label="$4" key
  shift 4
  # The arguments count only when given, so adding them kept the keys of the builds without any.
  key="$({ echo "$go_version"; [ $# -eq 0 ] || echo "$*"; cat "$dir/go.mod" "$dir/go.sum"; find "$dir" -name '*.go' -print0 | sort -z | xargs -0r cat; } | sha256sum | cut -d' ' -f1)"
  if [ -x "$bin/$name" ] && [ "$(cat "$bin/.$name.key" 2>/dev/null)" = "$key" ]; then
    echo "up to date: $name ($label)"
    return
  fi
  echo "== building $name ($label) into $bin"
  local start=$SECONDS
  # A binary appears whole or not at all: a test starting meanwhile never runs half a file.
  (cd "$dir" && nice -n 10 "$go_cmd" build -ldflags="-s -w" "$@" -o "$bin/.$name.new" "$pkg")
  mv -f "$bin/.$name.new" "$bin/$name"
  echo "$key" >"$bin/.$name.key"
  echo "== built $name in $((SECONDS - start)) s"
}

contrib=github.com/open-telemetry/opentelemetry-collector-contrib
build otelcol-tenant-otel otelcol . \
  "contrib $(pinned "$repo/collector-config/otelcol" "$contrib/processor/tailsamplingprocessor"), core $(pinned "$repo/collector-config/otelcol" go.opentelemetry.io/collector/otelcol)"
build jaeger jaeger github.com/jaegertracing/jaeger/cmd/jaeger \
  "jaeger $(pinned "$repo/collector-config/jaeger" github.com/jaegertracing/jaeger)"
build otelhttp-peer peers/otelhttp . \
  "otelhttp $(pinned "$repo/collector-config/peers/otelhttp" go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp)"
if [ "${TENANT_OTEL_SKIP_PROMETHEUS3:-}" != 1 ]; then
  prometheus_module="$(pinned "$repo/collector-config/prometheus3" github.com/prometheus/prometheus)"
  # Module v0.X.Y is Prometheus 3.X/100.Y (v0.316.0 is 3.16.0); the version flag says so.
  prometheus_version="$(echo "$prometheus_module" | awk -F. '{ printf "3.%d.%s", substr($2, 2) + 0, $3 }')"
  build prometheus3 prometheus3 github.com/prometheus/prometheus/cmd/prometheus \
    "prometheus $prometheus_version, module $prometheus_module" \
    -tags remove_all_sd -ldflags="-s -w -X github.com/prometheus/common/version.Version=$prometheus_version"
fi
