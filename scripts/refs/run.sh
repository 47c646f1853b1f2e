#!/usr/bin/env bash
# The references table of a real repository, end to end: fetch packaging 24.2's sdist from PyPI
# (pinned by hash), index it, start the mesh, score `codeintel refs` against the jedi-built table
# (scripts/refs/packaging-24.2.json; rebuild it with scripts/refs/table.py), stop the mesh.
#   scripts/refs/run.sh [WORKDIR]       (release binaries in $CARGO_TARGET_DIR/release)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
work=${1:-$(mktemp -d)}
bin=${CARGO_TARGET_DIR:-/var/cache/codeintel/target}/release
sha=c228a6dc5e932d346bc5739379109d49e8853dd8223571c7c5b55260edc0b97f
mkdir -p "$work"
cd "$work"
if [ ! -d packaging-24.2 ]; then
  python3 -m pip download -q --no-binary :all: --no-deps packaging==24.2 -d .
  echo "$sha  packaging-24.2.tar.gz" | sha256sum -c -
  tar xzf packaging-24.2.tar.gz
fi
data=$work/data
export CODEINTEL__DATA__ROOT=$data
"$bin/codeintel" index packaging-24.2 --repo packaging --quiet
# The mesh on the configured (default) addresses of this host.
"$bin/codeintel" up >"$work/up.log" 2>&1 &
up=$!
trap 'kill $up 2>/dev/null; wait $up 2>/dev/null || true' EXIT
addr=${CODEINTEL__ANSWER__ADDR:-127.0.0.1:50051}
for _ in $(seq 120); do
  "$bin/codeintel" health "$addr" >/dev/null 2>&1 && break
  sleep 1
done
python3 "$here/score.py" "$here/packaging-24.2.json" --repo packaging --codeintel "$bin/codeintel" \
  --json "$work/refs-score.json"
