#!/usr/bin/env bash
# Indexes a repository, starts the mesh, streams one answer, and stops the mesh.
# Usage: scripts/demo.sh BIN_DIR REPO_PATH REPO_NAME QUESTION
set -euo pipefail
bin=$1 repo=$2 name=$3 question=$4
home=${CODEINTEL_DEMO_HOME:-$HOME/.codeintel}
export CODEINTEL__DATA__ROOT=${CODEINTEL__DATA__ROOT:-$home/data}
"$bin/codeintel" index "$repo" --repo "$name"
log=$(mktemp -t codeintel-up.XXXXXX)
"$bin/codeintel" up >"$log" 2>&1 &
up=$!
trap 'kill -TERM $up 2>/dev/null; wait $up 2>/dev/null; cat "$log"; rm -f "$log"' EXIT
for _ in $(seq 1 120); do
  grep -q "mesh is up" "$log" && break
  kill -0 $up 2>/dev/null || { echo "codeintel up failed:"; exit 1; }
  sleep 0.5
done
grep -q "mesh is up" "$log" || { echo "mesh did not come up in 60 s"; exit 1; }
echo
echo "Q: $question"
"$bin/codeintel" ask "$question"
echo
