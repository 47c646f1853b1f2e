#!/usr/bin/env python3
"""Questions about how two other real repositories behave (issue 19, item 5), each with the
definitions a maintainer would point to: bench/behaviour/NAME.json holds the questions and
each gold definition's first line; this writes bench/behaviour/NAME.jsonl in the dev set's
format with the spans found in the source tree (Rust: to the closing brace; Python: to the end
of the indented block). Sources: scripts/behaviour-sources.sh.

Usage: scripts/behaviour-questions.py SRC_DIR bench/behaviour/NAME.json
Score: codeintel --data-root R eval bench/behaviour/NAME.jsonl --mode hybrid --out res.jsonl
       python3 ../shared/bench/score.py bench/behaviour/NAME.jsonl res.jsonl --strict
"""
import json
import re
import sys


# What braces in a Rust line do not count: char literals ('{'), one-line strings ("{}") and
# line comments. Raw and multi-line strings are rare enough in definitions to leave out.
RUST_NOT_CODE = re.compile(r"""'(?:\\.|[^\\'])'|"(?:\\.|[^"\\])*"|//.*""")


def brace_span(lines, i):
    depth, started = 0, False
    for j in range(i, len(lines)):
        code = RUST_NOT_CODE.sub('', lines[j])
        depth += code.count('{') - code.count('}')
        started = started or '{' in code
        if started and depth <= 0:
            return j
    raise SystemExit(f'no closing brace after line {i + 1}')


def indent_span(lines, i):
    indent = len(lines[i]) - len(lines[i].lstrip())
    end = i
    # The signature may run over several lines; the body is what is indented deeper after it.
    j = i + 1
    while j < len(lines):
        line = lines[j]
        if line.strip() and len(line) - len(line.lstrip()) <= indent and not line.lstrip().startswith(')'):
            break
        if line.strip():
            end = j
        j += 1
    return end


def main():
    src, table = sys.argv[1], sys.argv[2]
    questions = json.load(open(table))
    name = table.rsplit('/', 1)[-1].removesuffix('.json')
    out = table.removesuffix('.json') + '.jsonl'
    lang_of = {'.rs': 'rust', '.py': 'python'}
    with open(out, 'w') as w:
        for n, q in enumerate(questions):
            gold, langs = [], set()
            for g in q['gold']:
                path, head = g['path'], g['head']
                lines = open(f'{src}/{path}').read().split('\n')
                at = [i for i, line in enumerate(lines) if line.startswith(head)]
                if len(at) != 1:
                    raise SystemExit(f'{path}: {len(at)} lines start with {head!r}')
                i = at[0]
                ext = path[path.rfind('.'):]
                end = brace_span(lines, i) if ext == '.rs' else indent_span(lines, i)
                gold.append({'path': path, 'start_line': i + 1, 'end_line': end + 1, 'def_line': i + 1})
                langs.add(lang_of[ext])
            row = {'id': f'{name}-{n + 1:02d}', 'query': q['query'], 'kind': 'nl', 'lang': langs.pop(), 'gold': gold}
            w.write(json.dumps(row) + '\n')
    print(f'{len(questions)} questions -> {out}')


if __name__ == '__main__':
    main()
