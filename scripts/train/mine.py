#!/usr/bin/env python3
"""Training queries from unpacked packages, made the way scripts/heldout.py makes the second
benchmark: doc comments and docstrings are stripped from a copy of the sources, and the first
sentence (>= 5 words) of each documented definition's doc becomes a query whose gold is that
definition (lines of the stripped copy), so a model learns to find code from what it does,
not from its own comment. Tests, examples, benches and minified files are left out.

Usage: mine.py SRC_DIR CORPUS_DIR QUERIES_JSONL [--per-package N]
SRC_DIR holds one folder per package (NAME-VERSION); at most N queries (default 3000) are kept
per package (a seeded sample) so that the largest packages do not drown the others.
"""
import json, os, random, shutil, sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..'))
from heldout import process  # noqa: E402

EXT = {'.rs': 'rust', '.py': 'python', '.js': 'javascript', '.mjs': 'javascript', '.cjs': 'javascript'}
SKIP_DIRS = ('/test', '/tests', 'node_modules', '/examples', '/benches', '/bench', '/fuzz', '/docs')


def main():
    args = sys.argv[1:]
    per_package = 3000
    if '--per-package' in args:
        i = args.index('--per-package')
        per_package = int(args[i + 1])
        del args[i:i + 2]
    src, corpus, out = args
    shutil.rmtree(corpus, ignore_errors=True)
    rng = random.Random(19)
    total = {}
    with open(out + '.part', 'w') as w:
        n = 0
        for pkg in sorted(os.listdir(src)):
            base = os.path.join(src, pkg)
            qs = []
            for dp, dirs, fs in os.walk(base):
                dirs.sort()
                rel_dp = '/' + os.path.relpath(dp, base)
                if any(s in rel_dp for s in SKIP_DIRS):
                    continue
                for f in sorted(fs):
                    lang = EXT.get(os.path.splitext(f)[1])
                    if not lang or f.startswith('test') or '.min.' in f:
                        continue
                    p = os.path.join(dp, f)
                    if os.path.getsize(p) > 1_000_000:
                        continue
                    rel = os.path.join(pkg, os.path.relpath(p, base))
                    try:
                        found = process(p, rel, lang, corpus)
                    except (UnicodeDecodeError, RecursionError):
                        continue
                    for q in found:
                        q['package'] = pkg
                    qs.extend(found)
            rng.shuffle(qs)
            for q in qs[:per_package]:
                w.write(json.dumps({'id': 'train-%06d' % n, **q}) + '\n')
                n += 1
                total[q['lang']] = total.get(q['lang'], 0) + 1
            print(f'{pkg}: {len(qs)} documented definitions, {min(len(qs), per_package)} kept', file=sys.stderr)
    os.replace(out + '.part', out)
    print('queries per language:', json.dumps(total), file=sys.stderr)


if __name__ == '__main__':
    main()
