#!/usr/bin/env bash
# The two other repositories of the behaviour questions (issue 19, item 5;
# bench/behaviour/*.json): the crate object_store 0.12.5 and the PyPI sdist of packaging 24.2,
# pinned by sha256 (the crate's is the checksum Cargo.lock records). Neither is in
# ../shared/bench/EXCLUDE.txt nor among the training packages (scripts/train/sources.txt).
#
# Usage: scripts/behaviour-sources.sh [DIR]   (default $CODEINTEL_CACHE/behaviour)
# Then:  codeintel --data-root R1 index DIR/object_store-0.12.5 --repo object_store
#        codeintel --data-root R2 index DIR/packaging-24.2 --repo packaging
set -euo pipefail
cache=${CODEINTEL_CACHE:-/var/cache/codeintel}
dir=${1:-$cache/behaviour}
dl=$cache/dl
mkdir -p "$dir" "$dl"

fetch() { # url file sha256
  if [ ! -f "$2" ] || ! echo "$3  $2" | sha256sum -c --status; then
    curl -fsSL --retry 3 -o "$2.part" "$1"
    echo "$3  $2.part" | sha256sum -c --status || { echo "sha256 mismatch for $1" >&2; exit 1; }
    mv "$2.part" "$2"
  fi
}

fetch https://static.crates.io/crates/object_store/object_store-0.12.5.crate "$dl/object_store-0.12.5.crate" \
  fbfbfff40aeccab00ec8a910b57ca8ecf4319b335c542f2edcd19dd25a1e2a00
[ -d "$dir/object_store-0.12.5" ] || tar -xzf "$dl/object_store-0.12.5.crate" -C "$dir"

fetch https://files.pythonhosted.org/packages/d0/63/68dbb6eb2de9cb10ee4c9c14a0148804425e13c4fb20d61cce69f53106da/packaging-24.2.tar.gz "$dl/packaging-24.2.tar.gz" \
  c228a6dc5e932d346bc5739379109d49e8853dd8223571c7c5b55260edc0b97f
[ -d "$dir/packaging-24.2" ] || tar -xzf "$dl/packaging-24.2.tar.gz" -C "$dir"
echo "sources in $dir: object_store-0.12.5 packaging-24.2"
