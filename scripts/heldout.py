#!/usr/bin/env python3
"""A second benchmark from other code, built the way ../shared/bench/dev was: every doc comment
and docstring is stripped from a copy of the sources, and the first sentence (>= 5 words) of
each definition's doc becomes a natural-language query whose gold is that definition (lines of
the stripped copy). Used to check that a retrieval change helps on code it was not tuned on.

Needs py-tree-sitter (pip install tree-sitter==0.26.1 tree-sitter-rust==0.24.2
tree-sitter-python==0.25.0 tree-sitter-javascript==0.25.0, in a venv).

Usage: heldout.py SOURCES_JSON OUT_DIR, where SOURCES_JSON is a list of
[path, name, language, extension]; writes OUT_DIR/ (the stripped corpus) and
OUT_DIR.queries.jsonl (at most 120 queries per language, seeded sample). See
docs/benchmarks.md for the sources used and the figures.
"""

import os, re, json, random, shutil, sys
import tree_sitter as ts, tree_sitter_rust, tree_sitter_python, tree_sitter_javascript
LANGS = {'rust': ts.Language(tree_sitter_rust.language()), 'python': ts.Language(tree_sitter_python.language()),
         'javascript': ts.Language(tree_sitter_javascript.language())}
DEFS = {'rust': {'function_item', 'struct_item', 'enum_item', 'trait_item', 'macro_definition'},
        'python': {'function_definition', 'class_definition'},
        'javascript': {'function_declaration', 'method_definition', 'class_declaration', 'expression_statement', 'lexical_declaration', 'variable_declaration'}}
def sentence(doc):
    doc = re.sub(r'`+', '', doc)
    doc = re.sub(r'\[([^\]]+)\]\([^)]*\)', r'\1', doc)
    doc = re.sub(r'\[([^\]]+)\]', r'\1', doc)
    para = doc.strip().split('\n\n')[0]
    para = ' '.join(l.strip() for l in para.split('\n'))
    if para.startswith('@'): return None
    m = re.match(r'(.+?[.!?])(\s|$)', para)
    s = (m.group(1) if m else para).strip().rstrip('.')
    return s if len(s.split()) >= 5 else None
def process(path, rel, lang, out_root):
    src = open(path, encoding='utf-8').read()
    lines = src.split('\n')
    tree = ts.Parser(LANGS[lang]).parse(src.encode())
    remove = set(); items = []
    def walk(n):
        for c in n.children:
            if lang == 'python' and c.type in ('function_definition', 'class_definition'):
                body = c.child_by_field_name('body')
                first = body.named_children[0] if body and body.named_children else None
                if first is not None and first.type == 'expression_statement' and first.named_children and first.named_children[0].type == 'string':
                    raw = first.text.decode()
                    doc = raw.strip('rbuRBU').strip('"\'')
                    rng = range(first.start_point[0], first.end_point[0] + 1)
                    outer = c.parent if c.parent.type == 'decorated_definition' else c
                    items.append((c, outer.start_point[0], outer.end_point[0], c.start_point[0], doc))
                    remove.update(rng)
            elif lang in ('rust', 'javascript') and c.type in DEFS[lang] and (c.type not in ('expression_statement', 'lexical_declaration', 'variable_declaration') or re.search(r'=\s*(async\s+)?function|=>', c.text.decode().split('\n')[0])):
                # doc comments directly above (attributes between allowed)
                j = c.start_point[0] - 1
                start = c.start_point[0]
                outer = c.parent if (lang == 'javascript' and c.parent.type == 'export_statement') else c
                start = outer.start_point[0]; j = start - 1
                doc_lines = []
                while j >= 0:
                    t = lines[j].strip()
                    if lang == 'rust' and t.startswith('#['):
                        start = j; j -= 1; continue
                    if lang == 'rust' and t.startswith('///'):
                        doc_lines.insert(0, t[3:].strip()); remove.add(j); j -= 1; continue
                    if lang == 'javascript' and t == '' and j > 0 and lines[j - 1].strip().endswith('*/'):
                        j -= 1; continue
                    if lang == 'javascript' and t.endswith('*/'):
                        k = j
                        while k >= 0 and '/**' not in lines[k]: k -= 1
                        if k < 0: break
                        block = [re.sub(r'^\s*/?\*+/?', '', l).strip() for l in lines[k:j + 1]]
                        doc_lines = [b for b in block if not b.startswith('*/')]
                        remove.update(range(k, j + 1)); j = k - 1
                        break
                    break
                if doc_lines:
                    items.append((c, start, outer.end_point[0], c.start_point[0], '\n'.join(doc_lines)))
            if c.child_count: walk(c)
    walk(tree.root_node)
    if lang == 'rust':
        for i, l in enumerate(lines):
            if l.strip().startswith(('//!', '///')): remove.add(i)
    if lang == 'javascript':
        i = 0
        while i < len(lines):
            if lines[i].strip().startswith('/**'):
                k = i
                while k < len(lines) and '*/' not in lines[k]: k += 1
                remove.update(range(i, min(k, len(lines) - 1) + 1)); i = k + 1
            else: i += 1
    keep = [i for i in range(len(lines)) if i not in remove]
    newno = {old: new + 1 for new, old in enumerate(keep)}
    def mapped(i, forward=True):
        while i not in newno: i += 1 if forward else -1
        return newno[i]
    os.makedirs(os.path.dirname(os.path.join(out_root, rel)), exist_ok=True)
    open(os.path.join(out_root, rel), 'w').write('\n'.join(lines[i] for i in keep))
    out = []
    for c, s, e, d, doc in items:
        q = sentence(doc)
        if not q: continue
        out.append({'query': q, 'kind': 'nl', 'lang': lang,
                    'gold': [{'path': rel, 'start_line': mapped(s), 'end_line': mapped(e, False), 'def_line': mapped(d)}]})
    return out
def main():
    srcs, out_root = json.loads(sys.argv[1]), sys.argv[2]
    shutil.rmtree(out_root, ignore_errors=True)
    qs = {}
    for base, name, lang, ext in srcs:
        walked = [(os.path.dirname(base), [], [os.path.basename(base)])] if os.path.isfile(base) else sorted((dp, ds, sorted(fs)) for dp, ds, fs in os.walk(base))
        if os.path.isfile(base): base = os.path.dirname(base)
        for dp, _, fs in walked:
            if '/test' in dp or 'node_modules' in dp or '/examples' in dp or '/benches' in dp: continue
            for f in fs:
                if not f.endswith(ext) or f.startswith('test'): continue
                p = os.path.join(dp, f)
                rel = os.path.join(name, os.path.relpath(p, base))
                qs.setdefault(lang, []).extend(process(p, rel, lang, out_root))
    random.seed(7); allq = []
    for lang, v in qs.items():
        random.shuffle(v); allq += v[:120]
        print(lang, len(v), file=sys.stderr)
    with open(out_root + '.queries.jsonl', 'w') as w:
        for i, q in enumerate(allq):
            w.write(json.dumps({'id': 'gen-%04d' % i, **q}) + '\n')
if __name__ == '__main__':
    main()
