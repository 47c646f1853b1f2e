#!/usr/bin/env bash
# Mines the training set of issue 19 from public code: fetches every archive of sources.txt
# (pinned by sha256), checks that no package is in ../shared/bench/EXCLUDE.txt, records each
# one's license from the archive into MANIFEST.tsv (and stops on a non-permissive one), then
# scripts/train/mine.py strips doc comments and docstrings from a copy and writes one query per
# documented definition (its doc's first sentence), with the definition as gold.
#
# Usage: scripts/train/mine.sh [OUT]   (default $CODEINTEL_CACHE/train)
# Writes OUT/src/ (the archives unpacked), OUT/corpus/ (the stripped copy),
# OUT/queries.jsonl and OUT/MANIFEST.tsv. Needs the training venv (make train-venv).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cache=${CODEINTEL_CACHE:-/var/cache/codeintel}
out=${1:-$cache/train}
exclude=${EXCLUDE:-$here/../../../shared/bench/EXCLUDE.txt}
py=${TRAIN_PYTHON:-$cache/venv-train/bin/python}
dl=$cache/dl/train
mkdir -p "$out/src" "$dl"

[ -f "$exclude" ] || { echo "no exclusion list at $exclude (set EXCLUDE=...)" >&2; exit 1; }
# Refuse any package the exclusion list names (a trailing * covers a family).
python3 - "$exclude" "$here/sources.txt" <<'PY'
import fnmatch, sys
rules = [l.split() for l in open(sys.argv[1]) if l.strip() and not l.startswith('#')]
bad = []
for l in open(sys.argv[2]):
    if not l.strip() or l.startswith('#'):
        continue
    eco, name = l.split()[:2]
    for r in rules:
        if r[0] in (eco, 'python-stdlib') and fnmatch.fnmatch(name.lower(), r[1].lower()) and r[0] == eco:
            bad.append(f'{eco} {name} (rule "{" ".join(r)}")')
if bad:
    sys.exit('excluded packages in sources.txt: ' + ', '.join(bad))
PY

fetch() { # url file sha256
  if [ ! -f "$2" ] || ! echo "$3  $2" | sha256sum -c --status; then
    curl -fsSL --retry 3 -o "$2.part" "$1"
    echo "$3  $2.part" | sha256sum -c --status || { echo "sha256 mismatch for $1" >&2; exit 1; }
    mv "$2.part" "$2"
  fi
}

license_of() { # ecosystem dir
  case $1 in
    crates) sed -n 's/^license *= *"\(.*\)"/\1/p' "$2/Cargo.toml" | head -1 ;;
    npm) python3 -c 'import json,sys; print(json.load(open(sys.argv[1])).get("license", ""))' "$2/package.json" ;;
    pypi) python3 - "$2" <<'PY'
import glob, sys
m = open(glob.glob(sys.argv[1] + '/*.dist-info/METADATA')[0], encoding='utf-8').read().split('\n\n')[0]
keys = {}
for line in m.splitlines():
    k, _, v = line.partition(': ')
    keys.setdefault(k, []).append(v)
lic = (keys.get('License-Expression') or [''])[0]
if not lic:
    cls = [c.split('::')[-1].strip() for c in keys.get('Classifier', []) if c.startswith('License ::')]
    lic = ' / '.join(cls) or (keys.get('License') or [''])[0].splitlines()[0]
print(lic)
PY
    ;;
  esac
}

manifest=$out/MANIFEST.tsv
printf 'ecosystem\tname\tversion\tsha256\tlicense\turl\n' >"$manifest.part"
grep -v '^#' "$here/sources.txt" | while read -r eco name version sha url; do
  [ -n "$eco" ] || continue
  file=$dl/$eco-$(basename "$url")
  fetch "$url" "$file" "$sha"
  dir=$out/src/$name-$version
  if [ ! -d "$dir" ]; then
    rm -rf "$out/src/.tmp" && mkdir -p "$out/src/.tmp"
    case $eco in
      crates) tar -xzf "$file" -C "$out/src/.tmp" && mv "$out/src/.tmp/$name-$version" "$dir" ;;
      npm) tar -xzf "$file" -C "$out/src/.tmp" && mv "$out/src/.tmp/package" "$dir" ;;
      pypi) python3 -m zipfile -e "$file" "$out/src/.tmp" && mv "$out/src/.tmp" "$dir" ;;
    esac
    rm -rf "$out/src/.tmp"
  fi
  lic=$(license_of "$eco" "$dir")
  # Permissive licenses only: no copyleft, nothing unstated.
  if ! grep -qiE 'MIT|Apache|BSD|ISC|Unlicense|Zlib|PSF|Python Software' <<<"$lic" || grep -qiE 'GPL' <<<"$lic"; then
    echo "$eco $name $version: license '$lic' is not a permissive one; remove it from sources.txt" >&2
    exit 1
  fi
  printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$eco" "$name" "$version" "$sha" "$lic" "$url" >>"$manifest.part"
done
mv "$manifest.part" "$manifest"
"$py" "$here/mine.py" "$out/src" "$out/corpus" "$out/queries.jsonl"
echo "training sources: $(($(wc -l <"$manifest") - 1)) packages ($manifest); $(wc -l <"$out/queries.jsonl") queries"
