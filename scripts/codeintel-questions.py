#!/usr/bin/env python3
"""Questions about this repository's behaviour, each with the code a maintainer would point to
(issue 19, item 5: code should rank before the docs and config that mention the behaviour).
Writes bench/codeintel-questions.jsonl in the dev set's format, the gold spans found from each
definition's first line to its closing brace in the current tree, so rerun it after the code
moves. Run from the repository root; score with ../shared/bench/score.py.
"""
import json

Q = [
    ("how does the answer service fuse dense and lexical results?",
     [("services/answer-svc/src/fusion.rs", "pub fn fuse("), ("services/answer-svc/src/fusion.rs", "pub fn rrf("),
      ("services/answer-svc/src/fusion.rs", "pub fn dbsf("), ("services/answer-svc/src/pipeline/stages.rs", "pub fn fuse_lists(")]),
    ("how are exact symbol definitions kept ahead of the fused results?",
     [("services/answer-svc/src/pipeline/stages.rs", "pub fn exact_first(")]),
    ("how is a query routed to the identifier or the natural-language plan?",
     [("services/answer-svc/src/pipeline/stages.rs", "pub fn route("), ("services/answer-svc/src/pipeline/stages.rs", "pub fn classify(")]),
    ("what does the answer service return when every retriever fails?",
     [("services/answer-svc/src/pipeline/stages.rs", "pub fn all_failed(")]),
    ("how does the rerank client fall back from /rerank to /score?",
     [("services/answer-svc/src/rerank.rs", "    async fn call(")]),
    ("how are the indexes a rerank server returns validated?", [("services/answer-svc/src/rerank.rs", "fn finish(")]),
    ("how are answer traces written to Parquet files?",
     [("services/answer-svc/src/traces.rs", "fn write_file("), ("services/answer-svc/src/traces.rs", "pub fn to_batch(")]),
    ("how are answer service errors mapped to gRPC status codes?", [("services/answer-svc/src/error.rs", "    pub fn code(")]),
    ("how are SPLADE term weights computed from the masked language model logits?",
     [("shared/codeintel-models/src/sparse.rs", "    fn encode_batch(")]),
    ("how does the local cross-encoder score query and chunk pairs?",
     [("shared/codeintel-models/src/rerank.rs", "    pub fn score(")]),
    ("how is the request time budget shared between retrieval, hydration and reranking?",
     [("services/answer-svc/src/pipeline/stages.rs", "    pub async fn retrieve(")]),
    ("how are the three retrievers queried in parallel?",
     [("services/answer-svc/src/pipeline/stages.rs", "    pub async fn fan_out(")]),
    ("how does the answer service hydrate the fused chunk ids?",
     [("services/answer-svc/src/pipeline/stages.rs", "    pub async fn hydrate_stage(")]),
    ("what text does the embedder see for a chunk?", [("shared/codeintel-core/src/chunk.rs", "    pub fn embedding_text(")]),
    ("how does the reranker blend cross-encoder scores with the fusion order?",
     [("services/answer-svc/src/retrievers.rs", "pub fn blend(")]),
]


def span(path, head):
    lines = open(path).read().split('\n')
    for i, line in enumerate(lines):
        if line.startswith(head):
            depth, started = 0, False
            for j in range(i, len(lines)):
                depth += lines[j].count('{') - lines[j].count('}')
                started = started or '{' in lines[j]
                if started and depth <= 0:
                    return i + 1, j + 1
    raise SystemExit(f'{head!r} not found in {path}')


with open('bench/codeintel-questions.jsonl', 'w') as w:
    for n, (q, golds) in enumerate(Q):
        gold = []
        for path, head in golds:
            s, e = span(path, head)
            gold.append({'path': path, 'start_line': s, 'end_line': e, 'def_line': s})
        w.write(json.dumps({'id': 'ci-%02d' % (n + 1), 'query': q, 'kind': 'nl', 'lang': 'rust', 'gold': gold}) + '\n')
print(f'{len(Q)} questions -> bench/codeintel-questions.jsonl')
