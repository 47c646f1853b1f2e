#!/usr/bin/env bash
# The second benchmark (docs/benchmarks.md, "A second check on other code"): fetches its pinned
# sources (two crates, six npm packages, seven modules of the Python 3.11 standard library that
# runs this script) and builds the stripped corpus and queries with scripts/heldout.py.
#
# Usage: scripts/heldout-sources.sh OUT_DIR   (PYTHON: a python with py-tree-sitter, for
# example the venv of `make train-venv`). Writes OUT_DIR/corpus/ and OUT_DIR/corpus.queries.jsonl.
# These packages are evaluation material: scripts/train/sources.txt must never hold them.
set -euo pipefail
out=${1:?usage: heldout-sources.sh OUT_DIR}
py=${PYTHON:-python3}
here=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$out/dl" "$out/src"

while read -r name version sha url; do
  file=$out/dl/$(basename "$url")
  if [ ! -f "$file" ] || ! echo "$sha  $file" | sha256sum -c --status; then
    curl -fsSL --retry 3 -o "$file.part" "$url"
    echo "$sha  $file.part" | sha256sum -c --status || { echo "sha256 mismatch for $url" >&2; exit 1; }
    mv "$file.part" "$file"
  fi
  if [ ! -d "$out/src/$name" ]; then
    rm -rf "$out/src/.tmp" && mkdir -p "$out/src/.tmp"
    tar -xzf "$file" -C "$out/src/.tmp"
    mv "$out/src/.tmp/"* "$out/src/$name"
    rm -rf "$out/src/.tmp"
  fi
done <<'EOF'
bytes 1.12.2 776dfebd015e2d8732c684a2c71003674ccb49457b539b9e82151ba38e96dd7c https://static.crates.io/crates/bytes/bytes-1.12.2.crate
http 1.5.0 918d3568bebf352712bc2ef3d46a8bcf1a75b373be6539de198e9105cbbf9ce0 https://static.crates.io/crates/http/http-1.5.0.crate
express 4.22.3 5414b9a1a1a87a182475559c39b471f8bea7b069160c76a7876818b1da80a09c https://registry.npmjs.org/express/-/express-4.22.3.tgz
send 1.2.1 fa254fb316dd23ddcb2beebd533b23788aec4cf6a3dba58af34150170435c472 https://registry.npmjs.org/send/-/send-1.2.1.tgz
body-parser 2.4.0 3f6e22dc9710a8bd5942fee8dfbd4632b54980cc2f33854f1ec1e314b17b2357 https://registry.npmjs.org/body-parser/-/body-parser-2.4.0.tgz
finalhandler 2.1.1 22949bfc51a620b3598bbe67d65619a9efd781d52704a38d7ba675e248a8b872 https://registry.npmjs.org/finalhandler/-/finalhandler-2.1.1.tgz
serve-static 2.2.1 36d4f72bb59372eb18202fee25ff3d8bf46655f0121830fbe32e32cbdc625f43 https://registry.npmjs.org/serve-static/-/serve-static-2.2.1.tgz
cookie 1.1.1 0e9342b066986722098d9b108b238033862eae90b3d53ff90581538264d91b60 https://registry.npmjs.org/cookie/-/cookie-1.1.1.tgz
EOF

stdlib=$("$py" -c 'import sysconfig; print(sysconfig.get_paths()["stdlib"])')
"$py" -c 'import sys; assert sys.version_info[:2] == (3, 11), "the second set uses the Python 3.11 standard library"'
s=$out/src
sources=$(cat <<EOF
[["$s/bytes/src", "bytes", "rust", ".rs"], ["$s/http/src", "http", "rust", ".rs"],
 ["$stdlib/argparse.py", "cpython", "python", ".py"], ["$stdlib/configparser.py", "cpython", "python", ".py"],
 ["$stdlib/textwrap.py", "cpython", "python", ".py"], ["$stdlib/shlex.py", "cpython", "python", ".py"],
 ["$stdlib/fractions.py", "cpython", "python", ".py"], ["$stdlib/calendar.py", "cpython", "python", ".py"],
 ["$stdlib/email/_header_value_parser.py", "cpython/email", "python", ".py"],
 ["$s/express/lib", "express", "javascript", ".js"], ["$s/send", "send", "javascript", ".js"],
 ["$s/body-parser", "body-parser", "javascript", ".js"], ["$s/finalhandler", "finalhandler", "javascript", ".js"],
 ["$s/serve-static", "serve-static", "javascript", ".js"], ["$s/cookie", "cookie", "javascript", ".js"]]
EOF
)
"$py" "$here/heldout.py" "$sources" "$out/corpus"
echo "second set: $(find "$out/corpus" -type f | wc -l) files, $(wc -l <"$out/corpus.queries.jsonl") queries in $out"
