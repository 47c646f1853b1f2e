#!/usr/bin/env bash
# A real corpus of about 100,000 chunks for the scale benchmark of issue 18 (Search latency and
# memory at that size; not yet measured): the sources of two large PyPI packages and ten large crates from crates.io,
# every archive pinned by version and sha256 (the crates' hashes are the checksums Cargo.lock
# records). None of them is in ../shared/bench/EXCLUDE.txt; the corpus is used for speed and
# memory only, never to tune or train.
#
# Usage: scripts/corpus-100k.sh [DIR]   (default $CODEINTEL_CACHE/corpus-100k)
# Then:  codeintel --data-root R index DIR --repo big
set -euo pipefail
cache=${CODEINTEL_CACHE:-/var/cache/codeintel}
dir=${1:-$cache/corpus-100k}
dl=$cache/dl/corpus-100k
mkdir -p "$dir" "$dl"

# name version sha256 url
pypi=(
  "sympy 1.14.0 e091cc3e99d2141a0ba2847328f5479b05d94a6635cb96148ccb3f34671bd8f5 https://files.pythonhosted.org/packages/a2/09/77d55d46fd61b4a135c444fc97158ef34a095e5681d0a6c10b75bf356191/sympy-1.14.0-py3-none-any.whl"
  "django 6.1.3 a0530e3fdac55d34ccc5893c36f6c57d7a7083064f3d414537e51473648b3290 https://files.pythonhosted.org/packages/77/f2/adbe0352c6673f7b608724be5f69962c80ba1d06f8ed60fa4bfbec258b08/django-6.1.3-py3-none-any.whl"
)
crates=(
  "tantivy 0.24.2 64a966cb0e76e311f09cf18507c9af192f15d34886ee43d7ba7c7e3803660c43"
  "parquet 58.4.0 d298093b2dec60289dce0684c986d0f7679e9dd15771c2c65406e1aaf604a704"
  "jiff 1.0.2 c5e77cbfb9fff4798e283c2d69dff39fc2c45e7da017e5ce95b654e46ea41236"
  "candle-core 0.11.1 d11c8be87cfbaef9ebb62fb3f850d1fc8e00cc1d11d393fdbe55a4d5c2cdb325"
  "candle-transformers 0.11.1 2b1e1abeac23d7df4f94e8a3852b3dbb661d332e37c3bef479507bac867187b2"
  "syn 2.0.119 872831b642d1a07999a962a351ed35b955ea2cfc8f3862091e2a240a84f17297"
  "regex-automata 0.4.19 41d60ef07df457506a0a1a2073112eb4aae5733dbd2813c3da77d1b0fd441158"
  "rustls 0.23.46 48e13bd8c0e9365c43cfa5c9e8f9ad49d3c8444926c9aac819e0e4dc503c8fdf"
  "petgraph 0.8.3 8701b58ea97060d5e5b155d383a69952a60943f0e6dfe30b04c287beb0b27455"
  "rmcp 3.11.0 391f153431ab68664d946513ea0cb3edbca78eaf99c5a983036cacab6220d85b"
)

fetch() { # url file sha256
  if [ ! -f "$2" ] || ! echo "$3  $2" | sha256sum -c --status; then
    curl -fsSL --retry 3 -o "$2.part" "$1"
    echo "$3  $2.part" | sha256sum -c --status || { echo "sha256 mismatch for $1" >&2; exit 1; }
    mv "$2.part" "$2"
  fi
}

for entry in "${pypi[@]}"; do
  read -r name version sha url <<<"$entry"
  file=$dl/$(basename "$url")
  fetch "$url" "$file" "$sha"
  if [ ! -d "$dir/$name-$version" ]; then
    rm -rf "$dir/.tmp" && mkdir -p "$dir/.tmp"
    python3 -m zipfile -e "$file" "$dir/.tmp"
    # The wheel holds the package and its dist-info; only the package is source.
    rm -rf "$dir"/.tmp/*.dist-info
    mv "$dir/.tmp" "$dir/$name-$version"
  fi
done
for entry in "${crates[@]}"; do
  read -r name version sha <<<"$entry"
  file=$dl/$name-$version.crate
  fetch "https://static.crates.io/crates/$name/$name-$version.crate" "$file" "$sha"
  [ -d "$dir/$name-$version" ] || tar -xzf "$file" -C "$dir"
done
printf '%s\n' "${pypi[@]}" "${crates[@]}" | awk '{print $1, $2, $3}' >"$dir/SOURCES.txt"
echo "corpus in $dir: $(find "$dir" -name '*.py' -o -name '*.rs' | wc -l) source files, $(find "$dir" \( -name '*.py' -o -name '*.rs' \) -exec cat {} + | wc -l) lines"
