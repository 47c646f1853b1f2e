#!/usr/bin/env bash
# Stages the build context of the runtime image and builds it from the release binaries already
# built (make build): stripped binaries, libduckdb.so and the model files, verified against
# scripts/deps.sha256, plus deploy/docker/Dockerfile. Nothing else of the repository is sent.
# Usage: scripts/image.sh [BIN_DIR]
#   CODEINTEL_IMAGE       tag to build (codeintel:dev)
#   CODEINTEL_REDIS_IMAGE Redis image built from the same base (codeintel-redis:bookworm; empty: none)
#   CODEINTEL_BASE_IMAGE  the BASE build argument (codeintel-base:bookworm, which scripts/image-base.sh
#                         builds when it is missing; debian:bookworm-slim where Docker Hub is reachable)
# Needs a running docker daemon (scripts/with-dockerd.sh starts one).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
. "$here/docker-lib.sh"
bin=${1:-${CARGO_TARGET_DIR:-$cache/target}/release}
image=${CODEINTEL_IMAGE:-codeintel:dev}
redis_image=${CODEINTEL_REDIS_IMAGE-codeintel-redis:bookworm}
base=${CODEINTEL_BASE_IMAGE:-codeintel-base:bookworm}
bins="codeintel vector-svc lexical-svc hydrate-svc answer-svc"

for b in $bins; do
  [ -x "$bin/$b" ] || { echo "$bin/$b is missing: build the release binaries first (make build)" >&2; exit 1; }
done
if ! docker image inspect "$base" >/dev/null 2>&1; then
  case $base in
    codeintel-base:*) CODEINTEL_BASE_IMAGE=$base "$here/image-base.sh" ;;
    *) echo "pulling $base"; docker pull "$base" ;;
  esac
fi

ctx=$cache/docker/context
rm -rf "$ctx"
mkdir -p "$ctx/bin" "$ctx/lib" "$ctx/models"
for b in $bins; do
  # Debug info out, symbols kept: panics still print function names (strip -s would save ~20%).
  objcopy --strip-debug "$bin/$b" "$ctx/bin/$b"
done
cp "$cache/lib/libduckdb.so" "$cache/lib/libonnxruntime.so.1.32.0" "$ctx/lib/"
for m in all-MiniLM-L6-v2 all-MiniLM-L6-v2-code splade-tiny smollm2-135m; do
  [ -d "$cache/models/$m" ] || { echo "$cache/models/$m is missing: make fetch" >&2; exit 1; }
  cp -r "$cache/models/$m" "$ctx/models/"
done
(cd "$ctx" && sha256sum -c --quiet "$here/deps.sha256") || { echo "checksum mismatch in the staged files" >&2; exit 1; }
chmod -R a+rX "$ctx"
cp "$root/deploy/docker/Dockerfile" "$ctx/Dockerfile"
echo "staged $ctx ($(du -sh "$ctx" | cut -f1)): $(cd "$ctx/bin" && du -ch $bins | tail -n 1 | cut -f1) of binaries"

version=$("$ctx/bin/codeintel" --version | awk '{print $2}')
revision=$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)
# --network host: the RUN steps reach the Debian mirror through the host's network, not a bridge.
# Without the buildx plugin (Debian's docker.io has none) the classic builder does it.
docker buildx version >/dev/null 2>&1 || export DOCKER_BUILDKIT=${DOCKER_BUILDKIT:-0}
docker build --network host --build-arg "BASE=$base" \
  --build-arg "VERSION=$version" --build-arg "REVISION=$revision" -t "$image" "$ctx"
if [ -n "$redis_image" ]; then
  # Its own context: only the Dockerfile.
  docker build --network host --build-arg "BASE=$base" -t "$redis_image" - <"$root/deploy/docker/redis.Dockerfile"
fi
docker image ls --filter "reference=$image" ${redis_image:+--filter "reference=$redis_image"}
