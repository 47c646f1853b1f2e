"""Builds a table of expected references for a real Python repository with jedi, a static
analyser that resolves names (imports, attributes of known types, scopes): an oracle that
shares no code and no rules with CodeIntel's tree-sitter references.

    python scripts/refs/table.py ROOT --out TABLE.json [--symbols 80] [--seed 17]

For every class, function and method defined under ROOT (files in hidden, test-data or
virtualenv folders are skipped), jedi's references across ROOT, minus the definition itself,
as `path:line`. Symbols are named as CodeIntel names them (`Class.method`, `function`), and a
name defined more than once (overloads, two classes with one method name) is dropped, so that
each row has one meaning. A seeded sample of `--symbols` rows with at least one reference is
written, in name order, with the jedi version and the repository's files hashed, so that the
table can be checked against the tree it came from.
"""

import argparse
import hashlib
import json
import pathlib
import random
import sys

import jedi

SKIP = {".git", ".venv", "venv", "node_modules", "__pycache__", "build", "dist", ".tox"}


def files(root):
    for p in sorted(root.rglob("*.py")):
        rel = p.relative_to(root)
        if any(part in SKIP or part.startswith(".") for part in rel.parts):
            continue
        yield p, rel.as_posix()


def qualified(name):
    """`Class.method` for a method, `function` / `Class` at module level; None when nested
    in a function (CodeIntel does not name those)."""
    parent = name.parent()
    if parent is None or parent.type == "module":
        return name.name
    if parent.type == "class":
        grand = parent.parent()
        if grand is None or grand.type == "module":
            return f"{parent.name}.{name.name}"
    return None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("root", type=pathlib.Path)
    ap.add_argument("--out", type=pathlib.Path, required=True)
    ap.add_argument("--symbols", type=int, default=80)
    ap.add_argument("--seed", type=int, default=17)
    args = ap.parse_args()
    root = args.root.resolve()
    project = jedi.Project(path=root, added_sys_path=[str(root / "src"), str(root)], smart_sys_path=False)
    defs = {}  # symbol -> list of (path, line, column, script path)
    digest = hashlib.sha256()
    for path, rel in files(root):
        text = path.read_text(encoding="utf-8", errors="replace")
        digest.update(rel.encode() + b"\0" + hashlib.sha256(text.encode()).digest())
        script = jedi.Script(code=text, path=path, project=project)
        for n in script.get_names(all_scopes=True, definitions=True, references=False):
            if n.type not in ("class", "function"):
                continue
            q = qualified(n)
            if q is None:
                continue
            defs.setdefault(q, []).append((rel, n.line, n.column, path))
    rows = {}
    for symbol, places in sorted(defs.items()):
        if len(places) != 1:
            continue
        rel, line, column, path = places[0]
        script = jedi.Script(path=path, project=project)
        found = set()
        for r in script.get_references(line, column, include_builtins=False, scope="project"):
            if r.module_path is None:
                continue
            try:
                rpath = pathlib.Path(r.module_path).resolve().relative_to(root).as_posix()
            except ValueError:
                continue
            if rpath == rel and r.line == line:
                continue
            found.add(f"{rpath}:{r.line}")
        if found:
            rows[symbol] = {"defined": f"{rel}:{line}", "references": sorted(found)}
        print(f"{symbol}: {len(found)}", file=sys.stderr)
    picked = sorted(random.Random(args.seed).sample(sorted(rows), min(args.symbols, len(rows))))
    table = {
        "root": root.name,
        "jedi": jedi.__version__,
        "tree_sha256": digest.hexdigest(),
        "symbols_with_references": len(rows),
        "rows": {s: rows[s] for s in picked},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(table, indent=1) + "\n")
    total = sum(len(r["references"]) for r in table["rows"].values())
    print(f"{len(picked)} symbols, {total} references -> {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
