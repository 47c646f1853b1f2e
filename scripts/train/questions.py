#!/usr/bin/env python3
"""Written questions about the training packages' behaviour, as mined queries for
`codeintel train pairs`.

Each `scripts/train/questions/PACKAGE.json` holds questions a user would ask about how that
package behaves ("If I add one month to January 31st, what date do I get?"), each with the
first line (`head`) of every definition that implements the answer, its `path` relative to the
package. They were written by reading the package's code, not its docs, for the training
packages of `scripts/train/sources.txt` only (never a package of `../shared/bench/EXCLUDE.txt`
or of an evaluation set). This finds each head's line in `CORPUS/PACKAGE/PATH` (the stripped
copy `make train-data` writes) and writes one query line per question, in
`scripts/train/mine.py`'s shape (`id`, `query`, `kind`, `lang`, `package`, `gold` with
`def_line`; the first gold definition is the positive, and `codeintel train pairs` draws none of
the others as a negative), so that `codeintel train pairs` cuts the positives and negatives with our own
chunker, as for the mined doc sentences.

A later batch of questions lives in its own folder (`scripts/train/questions-next/`, written
for a round not yet trained); name several folders to use them together. The first folder's
ids are `question-PACKAGE-NN`, the k-th's `question-PACKAGE-kNN`, so earlier ids never change.

Usage: questions.py CORPUS OUT_JSONL [QUESTIONS_DIR...]
"""
import glob
import json
import os
import sys

LANGS = {'.rs': 'rust', '.py': 'python', '.js': 'javascript', '.mjs': 'javascript', '.cjs': 'javascript',
         '.ts': 'typescript'}


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    corpus, out = sys.argv[1], sys.argv[2]
    qdirs = sys.argv[3:] or [os.path.join(os.path.dirname(os.path.abspath(__file__)), 'questions')]
    files = []
    for k, qdir in enumerate(qdirs):
        found = sorted(glob.glob(os.path.join(qdir, '*.json')))
        if not found:
            sys.exit(f'{qdir}: no question files')
        files += [(k, f) for f in found]
    lines, missing, ambiguous = [], [], 0
    for k, f in files:
        package = os.path.basename(f)[:-len('.json')]
        prefix = f'{k}' if k else ''
        for n, q in enumerate(json.load(open(f))):
            gold = []
            for g in q['gold']:
                path = os.path.join(corpus, package, g['path'])
                try:
                    text = open(path, encoding='utf-8', errors='replace').read().split('\n')
                except OSError as e:
                    missing.append(f'{package}/{g["path"]}: {e.strerror}')
                    continue
                head = g['head'].rstrip()
                hits = [i for i, line in enumerate(text) if line.rstrip() == head] or \
                       [i for i, line in enumerate(text) if line.startswith(head)]
                if not hits:
                    missing.append(f'{package}/{g["path"]}: no line starts with {head!r}')
                    continue
                ambiguous += len(hits) > 1
                gold.append({'path': f'{package}/{g["path"]}', 'start_line': hits[0] + 1,
                             'end_line': hits[0] + 1, 'def_line': hits[0] + 1})
            if gold:
                ext = os.path.splitext(gold[0]['path'])[1]
                lines.append({'id': f'question-{package}-{prefix}{n:02d}', 'query': q['query'], 'kind': 'nl',
                              'lang': LANGS.get(ext, ext.lstrip('.')), 'package': package, 'gold': gold})
    with open(out, 'w') as o:
        for line in lines:
            o.write(json.dumps(line) + '\n')
    for m in missing:
        print(f'skipped: {m}', file=sys.stderr)
    print(f'{out}: {len(lines)} questions from {len({os.path.basename(f) for _, f in files})} packages '
          f'({len(missing)} gold definitions not found, {ambiguous} heads on more than one line: the first is used)')


if __name__ == '__main__':
    main()
