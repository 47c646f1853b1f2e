"""Precision and recall of `codeintel refs` against a references table (scripts/refs/table.py).

    python scripts/refs/score.py TABLE.json --repo NAME [--codeintel BIN] [--set answer.addr=...]

Runs `codeintel refs SYMBOL --repo NAME --json` for each row of the table against the running
mesh and compares `path:line` sets (the definition's own line left out of both). Prints the
totals, the figures per symbol kind (class, function, method) and per resolution that
CodeIntel reported, and the rows with the most misses; `--json` writes them too.
"""

import argparse
import collections
import json
import subprocess
import sys


def kind_of(symbol):
    last = symbol.rsplit(".", 1)[-1]
    if "." in symbol:
        return "method"
    return "class" if last[:1].isupper() and not last.isupper() else "function"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("table")
    ap.add_argument("--repo", required=True)
    ap.add_argument("--codeintel", default="codeintel")
    ap.add_argument("--set", action="append", default=[])
    ap.add_argument("--json", help="write the figures here")
    args = ap.parse_args()
    table = json.load(open(args.table))
    sets = [a for s in args.set for a in ("--set", s)]
    tp = fp = fn = 0
    by_kind = collections.defaultdict(lambda: [0, 0, 0])
    by_resolution = collections.Counter()
    right_by_resolution = collections.Counter()
    worst = []
    for symbol, row in table["rows"].items():
        out = subprocess.run(
            [args.codeintel, *sets, "refs", symbol, "--repo", args.repo, "--json", "--limit", "1000"],
            capture_output=True,
            text=True,
        )
        if out.returncode != 0:
            sys.exit(f"codeintel refs {symbol} failed: {out.stderr.strip()}")
        expected = set(row["references"]) - {row["defined"]}
        got = {}
        for line in out.stdout.splitlines():
            r = json.loads(line)
            got[f"{r['path']}:{r['line']}"] = r["resolution"]
        got.pop(row["defined"], None)
        hit = expected & set(got)
        k = by_kind[kind_of(symbol)]
        k[0] += len(hit)
        k[1] += len(got) - len(hit)
        k[2] += len(expected) - len(hit)
        tp, fp, fn = tp + len(hit), fp + len(got) - len(hit), fn + len(expected) - len(hit)
        for place, res in got.items():
            by_resolution[res] += 1
            right_by_resolution[res] += place in expected
        worst.append((len(expected) - len(hit) + len(got) - len(hit), symbol, sorted(expected - set(got)), sorted(set(got) - expected)))

    def pr(t, f, n):
        return t / max(t + f, 1), t / max(t + n, 1)

    p, r = pr(tp, fp, fn)
    figures = {
        "symbols": len(table["rows"]),
        "expected": tp + fn,
        "found": tp + fp,
        "precision": round(p, 3),
        "recall": round(r, 3),
        "by_kind": {k: dict(zip(("precision", "recall"), map(lambda x: round(x, 3), pr(*v))), right=v[0], wrong=v[1], missed=v[2]) for k, v in sorted(by_kind.items())},
        "by_resolution": {k: {"found": n, "right": right_by_resolution[k]} for k, n in by_resolution.most_common()},
    }
    print(f"{args.repo}: {figures['symbols']} symbols, {tp + fn} expected references, {tp + fp} found")
    print(f"precision {p:.3f} recall {r:.3f} ({tp} right, {fp} wrong, {fn} missed)")
    for k, v in figures["by_kind"].items():
        print(f"  {k:<8} precision {v['precision']:.3f} recall {v['recall']:.3f} ({v['right']} right, {v['wrong']} wrong, {v['missed']} missed)")
    for k, v in figures["by_resolution"].items():
        print(f"  resolution {k:<10} {v['found']} found, {v['right']} right")
    print("most wrong or missed:")
    for n, symbol, missed, wrong in sorted(worst, reverse=True)[:8]:
        print(f"  {symbol}: missed {missed[:4]}{'…' if len(missed) > 4 else ''} wrong {wrong[:4]}{'…' if len(wrong) > 4 else ''}")
    if args.json:
        json.dump(figures, open(args.json, "w"), indent=1)


if __name__ == "__main__":
    main()
