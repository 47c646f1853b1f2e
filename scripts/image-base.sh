#!/usr/bin/env bash
# Builds the local Debian base image codeintel-base:bookworm (what debian:bookworm-slim is, made
# here with debootstrap because no image registry is reachable) and caches its root filesystem as
# $CODEINTEL_CACHE/docker/debian-bookworm-minbase.tar, so a later run only imports the tarball.
# Usage: scripts/image-base.sh   (REBUILD=1 debootstraps again; DEBIAN_MIRROR overrides the mirror)
# Needs a running docker daemon (scripts/with-dockerd.sh starts one).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/docker-lib.sh"
image=${CODEINTEL_BASE_IMAGE:-codeintel-base:bookworm}
tarball=$cache/docker/debian-bookworm-minbase.tar

if [ "${REBUILD:-0}" != 1 ] && docker image inspect "$image" >/dev/null 2>&1; then
  echo "$image is already there"
  exit 0
fi
mkdir -p "$cache/docker"
if [ "${REBUILD:-0}" = 1 ] || [ ! -s "$tarball" ]; then
  command -v debootstrap >/dev/null || { echo "debootstrap is not installed: make docker-deps" >&2; exit 1; }
  mirror=$(debian_mirror) security=$(debian_security_mirror)
  root=$(mktemp -d "$cache/docker/rootfs.XXXXXX")
  trap 'rm -rf "$root" "$tarball.tmp"' EXIT
  echo "debootstrap --variant=minbase bookworm from $mirror ..."
  debootstrap --variant=minbase bookworm "$root" "$mirror" >"$cache/docker/debootstrap.log" 2>&1 ||
    { tail -n 20 "$cache/docker/debootstrap.log" >&2; exit 1; }
  # What the official slim image adds on top of minbase: its apt sources (updates and security
  # too), no documentation, man pages or translations, and apt caches cleaned after each install.
  rm -f "$root/etc/apt/sources.list"
  cat >"$root/etc/apt/sources.list.d/debian.sources" <<SOURCES
Types: deb
URIs: $mirror
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: $security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SOURCES
  cat >"$root/etc/dpkg/dpkg.cfg.d/docker" <<'DPKG'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/groff/*
path-exclude /usr/share/info/*
path-exclude /usr/share/linda/*
path-exclude /usr/share/lintian/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
path-exclude /usr/share/man/*
DPKG
  cat >"$root/etc/apt/apt.conf.d/docker-clean" <<'APT'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache ""; Dir::Cache::srcpkgcache "";
APT
  echo 'Acquire::Languages "none";' >"$root/etc/apt/apt.conf.d/docker-no-languages"
  find "$root/usr/share/doc" -mindepth 1 -not -name copyright -not -type d -delete 2>/dev/null || true
  rm -rf "$root"/usr/share/{man,info,groff,lintian,linda}/* "$root"/usr/share/locale/*/ \
    "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin "$root"/var/cache/apt/archives/*.deb \
    "$root"/var/log/* "$root"/tmp/* "$root"/dev/*
  echo "$image (debootstrap minbase bookworm, $mirror, $(date -u +%Y-%m-%d))" >"$root/etc/codeintel-base"
  tar --numeric-owner -C "$root" -cf "$tarball.tmp" .
  mv "$tarball.tmp" "$tarball"
  echo "cached $tarball ($(du -h "$tarball" | cut -f1))"
fi
echo "importing $tarball as $image"
docker import --change 'CMD ["bash"]' "$tarball" "$image" >/dev/null
docker image ls "$image"
