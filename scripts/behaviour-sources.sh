#!/usr/bin/env bash
# The other repositories of the behaviour questions (issue 19, item 5; bench/behaviour/*.json):
# the crates object_store 0.12.5 and indicatif 0.18.6 and the PyPI sdists of packaging 24.2 and
# tenacity 9.1.2, pinned by sha256 (a crate's is the checksum Cargo.lock records, a sdist's the
# digest PyPI lists). None is in ../shared/bench/EXCLUDE.txt nor among the training packages
# (scripts/train/sources.txt). The indicatif and tenacity questions were written from the code
# alone, before any search over it was run, and no setting was chosen on them.
#
# Usage: scripts/behaviour-sources.sh [DIR]   (default $CODEINTEL_CACHE/behaviour)
# Then:  codeintel --data-root R1 index DIR/object_store-0.12.5 --repo object_store
#        codeintel --data-root R2 index DIR/packaging-24.2 --repo packaging
#        (and DIR/indicatif-0.18.6 --repo indicatif, DIR/tenacity-9.1.2 --repo tenacity)
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
fetch https://static.crates.io/crates/indicatif/indicatif-0.18.6.crate "$dl/indicatif-0.18.6.crate" \
  9433806cd6b4ec1aba79c021c7e4c58fb4c3b9977c085062e611ac929998fb0c
[ -d "$dir/indicatif-0.18.6" ] || tar -xzf "$dl/indicatif-0.18.6.crate" -C "$dir"

fetch https://files.pythonhosted.org/packages/0a/d4/2b0cd0fe285e14b36db076e78c93766ff1d529d70408bd1d2a5a84f1d929/tenacity-9.1.2.tar.gz "$dl/tenacity-9.1.2.tar.gz" \
  1169d376c297e7de388d18b4481760d478b0e99a777cad3a9c86e556f4b697cb
[ -d "$dir/tenacity-9.1.2" ] || tar -xzf "$dl/tenacity-9.1.2.tar.gz" -C "$dir"
echo "sources in $dir: object_store-0.12.5 packaging-24.2 indicatif-0.18.6 tenacity-9.1.2"
