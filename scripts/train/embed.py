#!/usr/bin/env python3
"""Fine-tunes the embedded default's sentence encoder (all-MiniLM-L6-v2) for code, as LoRA deltas.

Trained on `codeintel train pairs` examples: the query is a definition's first doc sentence,
the positive is that definition as the indexer embeds it (`Chunk::embedding_text`, combined with
`Chunk::name_text` as `embed.name_view` does: the normalised mean of the two normalised
vectors), and the negatives are every other document of the batch plus `--hard` of each
example's hard negatives (same-file siblings first). The loss is the cross-entropy of the
query's cosines times `--scale` (in-batch negatives, as sentence-transformers'
MultipleNegativesRankingLoss).

Only low-rank deltas are trained: every attention projection (query, key, value, output) and
both feed-forward matrices of the six layers get `W + (alpha / rank) * B @ A`, with A and B the
only parameters that change; the artifact is A and B in f16 (about 1.3 MB at rank 16) and the
sha256 of the base weights they apply to. `scripts/onnx/merge_lora.py` folds them into a model
folder that candle and the ONNX exports load like any other.

A second round (`--init` the first round's deltas, `--mine 1`) adds our own first stage's
wrong top hits as hard negatives: before training, the model as it starts ranks each training
query against every positive of its package (the documented definitions of that package), and
the highest-ranked one that is not the query's own definition becomes one more hard negative,
unless it scores within 95% of the positive or is a near-copy of it (cosine >= 0.98 between the
two documents: the same code shipped twice), which are more likely right answers than wrong
ones. `--questions F` rewrites that fraction of the training queries as the questions people
ask (`Returns the length.` -> `which function returns the length?`), so that a question's
wrapper words do not pull it away from the code it describes.

`--query-only` trains a query tower instead: documents are embedded with the base weights (the
deltas switched off, no gradient), so an index keeps the base model's vectors and only queries
go through the deltas; `lora.json` then says `"tower": "query"`, and `reference.json` holds the
query tower's vectors of its four texts. Measured, not shipped (docs/training.md).

`--questions-pairs FILE` (`make train-questions`: questions a user would ask about the training
packages' behaviour, written by reading their code, as `codeintel train pairs` examples) makes
`--questions-share` of every batch such questions; those about the `--val-packages` never
train and are measured beside the held-out doc sentences, against the same documents.

The eight `--val-packages` (as `rerank.py`) never train it; they are measured before and after
(the held-out queries against every held-out positive and negative), and chose its settings.
The same seed, inputs and thread count are meant to give the same weights on one kind of CPU;
bf16 products differ between AMX and AVX-512 BF16, and a run on the other kind gave weights
within 0.33% of the shipped ones, not the same bytes (docs/training.md).

Usage: embed.py PAIRS_JSONL BASE_MODEL_DIR OUT_DIR [--steps N] [--batch 32] [--lr 2e-4]
       [--rank 16] [--alpha 32] [--hard 1] [--dropout 0] [--max-len 128] [--query-len 64] [--seed 19]
       [--threads 2] [--bf16] [--val-packages A,B,...] [--init DIR] [--mine 1] [--questions 0.25] [--query-only]
       [--questions-pairs FILE] [--questions-share 0.25]
Writes OUT_DIR/lora.safetensors, OUT_DIR/lora.json and OUT_DIR/reference.json.
"""
import argparse, contextlib, json, math, os, random, sys, time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from tokenizers import Tokenizer

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from rerank import Layer, VAL_PACKAGES, adamw_linear, hf_names, name_of, sha256  # noqa: E402

TARGETS = ('q', 'k', 'v', 'o', 'inter', 'out')


class LoRA(nn.Module):
    """`base(x) + scale * x A^T B^T`; B starts at zero, so training starts from the base model."""

    def __init__(self, base, rank, alpha):
        super().__init__()
        self.base = base
        self.a = nn.Parameter(torch.empty(rank, base.in_features))
        self.b = nn.Parameter(torch.zeros(base.out_features, rank))
        nn.init.kaiming_uniform_(self.a, a=math.sqrt(5))
        self.scale = alpha / rank
        self.enabled = True

    def forward(self, x):
        if not self.enabled:
            return self.base(x)
        return self.base(x) + (x @ self.a.t() @ self.b.t()) * self.scale


class base_weights:
    """`with base_weights(model, on):` runs the model without its deltas (when `on`), as the
    document tower of a `--query-only` run: documents keep the base model's vectors."""

    def __init__(self, model, on=True):
        self.mods = [m for m in model.modules() if isinstance(m, LoRA)] if on else []

    def __enter__(self):
        for m in self.mods:
            m.enabled = False

    def __exit__(self, *exc):
        for m in self.mods:
            m.enabled = True


class Encoder(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        h, eps = cfg['hidden_size'], cfg['layer_norm_eps']
        self.word = nn.Embedding(cfg['vocab_size'], h)
        self.pos = nn.Embedding(cfg['max_position_embeddings'], h)
        self.segment = nn.Embedding(cfg['type_vocab_size'], h)
        self.ln = nn.LayerNorm(h, eps=eps)
        self.layers = nn.ModuleList(
            Layer(h, cfg['intermediate_size'], cfg['num_attention_heads'], eps) for _ in range(cfg['num_hidden_layers']))
        self.drop = cfg['hidden_dropout_prob']

    def forward(self, ids, mask):
        n = ids.shape[1]
        x = self.word(ids) + self.pos(torch.arange(n)) + self.segment(torch.zeros_like(ids))
        x = F.dropout(self.ln(x), self.drop, self.training)
        bias = (1.0 - mask[:, None, None, :].float()) * torch.finfo(torch.float32).min
        for layer in self.layers:
            x = layer(x, bias, self.drop)
        m = mask.unsqueeze(-1).to(x.dtype)
        return F.normalize((x * m).sum(1) / m.sum(1).clamp(min=1e-9), dim=-1)


def load_base(model, base_file, n_layers):
    names = hf_names(n_layers)
    base = {k.replace('LayerNorm.gamma', 'LayerNorm.weight').replace('LayerNorm.beta', 'LayerNorm.bias'): v
            for k, v in load_file(base_file).items()}
    state = model.state_dict()
    loaded = 0
    for ours, theirs in names.items():
        for key in (theirs, theirs[len('bert.'):]):
            if key in base:
                state[ours] = base[key]
                loaded += 1
                break
    model.load_state_dict(state)
    if loaded != len(names) - 2:  # everything but the cross-encoder's head
        sys.exit(f'{base_file}: {loaded} of {len(names) - 2} BERT tensors found')
    # The checkpoint's own names for the LoRA targets (without `bert.` when it has none).
    prefix = '' if 'encoder.layer.0.attention.self.query.weight' in base else 'bert.'
    return {ours: prefix + names[ours][len('bert.'):] for ours in names}


def add_lora(model, rank, alpha):
    for layer in model.layers:
        for t in TARGETS:
            setattr(layer, t, LoRA(getattr(layer, t), rank, alpha))
    for name, p in model.named_parameters():
        p.requires_grad_(name.endswith('.a') or name.endswith('.b'))


def load_init(model, theirs, init):
    """Starts from an earlier round's deltas (`init/lora.safetensors`, as it ships: f16)."""
    d = load_file(os.path.join(init, 'lora.safetensors'))
    for i, layer in enumerate(model.layers):
        for t in TARGETS:
            key = theirs[f'layers.{i}.{t}.weight'][:-len('.weight')]
            m = getattr(layer, t)
            a, b = d[key + '.lora_a'].float(), d[key + '.lora_b'].float()
            if a.shape != m.a.shape or b.shape != m.b.shape:
                sys.exit(f'{init}: {key} has rank {a.shape[0]}, this run {m.a.shape[0]} (--rank)')
            m.a.data, m.b.data = a, b


QUESTION_WORDS = ('how', 'what', 'where', 'which', 'why', 'when', 'who', 'does', 'is', 'can')


def as_question(q, rng):
    """A doc sentence as a question someone would ask about the code it documents. The first
    word decides the form: a third-person verb (`Returns ...`) reads `which function returns
    ...?`, an imperative (`Return ...`) `how do I return ...?`, anything else (`The handle ...`)
    `where is the handle ... defined?`; each form has three wordings, drawn by `rng`."""
    s = q.strip().rstrip('.!:;').strip()
    if not s or s.endswith('?') or s.split()[0].lower() in QUESTION_WORDS:
        return q
    first, _, rest = s.partition(' ')
    # Lower-case an ordinary leading word, never an identifier (`HTTPClient`, `parse_url`).
    if first[:1].isupper() and (len(first) == 1 or first[1:].islower()):
        first = first.lower()
    s = f'{first} {rest}'.strip()
    if first.endswith('s') and not first.endswith('ss') and first.isalpha() and first.islower():
        forms = ['which function {}?', 'what {}?', 'where is the code that {}?']
    elif first.isalpha() and first.islower() and first not in ('the', 'a', 'an', 'this', 'these', 'if'):
        forms = ['how do I {}?', 'how to {}?', 'where does the code {}?']
    else:
        forms = ['where is {} defined?', 'what is {}?', 'which code is {}?']
    return rng.choice(forms).format(s)


def mine(model, train, tok, a):
    """Our first stage's own wrong top hits (see the module's doc): for each training example,
    up to `a.mine` documents of its package that the model ranks highest without being its
    definition, each as (body, name). Also returns how the model ranks the training queries."""
    model.eval()
    docs, index, by_pkg = [], {}, {}
    for e in train:
        if e['pos_embed'] not in index:
            index[e['pos_embed']] = len(docs)
            docs.append((e['pos_embed'], e['pos_name']))
            by_pkg.setdefault(e['package'], []).append(index[e['pos_embed']])
    t0 = time.time()
    with torch.no_grad():
        named = [n for _, n in docs if n]
        name_seqs = iter(tokens(tok, named, a.max_len))
        d = documents(model, tokens(tok, [b for b, _ in docs], a.max_len),
                      [next(name_seqs) if n else None for _, n in docs], a.bf16)
        q = embed(model, tokens(tok, [e['query'] for e in train], a.query_len), a.bf16)
    mined, ranks, kept = [], [], 0
    pools = {p: torch.tensor(ix) for p, ix in by_pkg.items()}
    for i, e in enumerate(train):
        pool = pools[e['package']]
        p = index[e['pos_embed']]
        s = d[pool] @ q[i]
        pos_s = float(d[p] @ q[i])
        ranks.append(int((s > pos_s).sum()) + 1)
        ok = (pool != p) & (s < 0.95 * pos_s) & (d[pool] @ d[p] < 0.98)
        own = set(e['negs_embed'][:a.hard])
        picks = []
        for j in torch.argsort(torch.where(ok, s, torch.full_like(s, -2.0)), descending=True).tolist():
            if not ok[j] or len(picks) == a.mine:
                break
            body, name = docs[int(pool[j])]
            if body not in own:
                picks.append((body, name))
        kept += len(picks)
        mined.append(picks)
    model.train()
    r = torch.tensor(ranks, dtype=torch.float)
    stats = {'examples': len(train), 'documents': len(docs), 'mined': kept, 'seconds': round(time.time() - t0),
             'train_r1': round((r == 1).float().mean().item(), 4),
             'train_mrr10': round(torch.where(r <= 10, 1.0 / r, torch.zeros_like(r)).mean().item(), 4)}
    return mined, stats


def tokens(tok, texts, max_len):
    tok.enable_truncation(max_len)
    return [np.array(e.ids, dtype=np.int64) for e in tok.encode_batch(texts)]


def pad(seqs):
    n = max(len(s) for s in seqs)
    ids = torch.zeros(len(seqs), n, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for j, s in enumerate(seqs):
        ids[j, :len(s)] = torch.from_numpy(s)
        mask[j, :len(s)] = 1
    return ids, mask


def embed(model, seqs, bf16, size=64):
    """Vectors of token sequences, in length-sorted batches of `size` (less padding)."""
    order = sorted(range(len(seqs)), key=lambda i: len(seqs[i]))
    out = [None] * len(seqs)
    for i in range(0, len(order), size):
        idx = order[i:i + size]
        ids, mask = pad([seqs[j] for j in idx])
        with torch.autocast('cpu', dtype=torch.bfloat16, enabled=bf16):
            v = model(ids, mask).float()
        for j, row in zip(idx, v):
            out[j] = row
    return torch.stack(out)


def documents(model, bodies, names, bf16, size=64):
    """`embed.name_view`: the normalised mean of a chunk's body and name-view vectors."""
    v = embed(model, bodies, bf16, size)
    have = [i for i, n in enumerate(names) if n is not None]
    if have:
        w = embed(model, [names[i] for i in have], bf16, size)
        v = v.clone()
        v[have] = F.normalize(v[have] + w, dim=-1)
    return v


def measure(model, val, tok, a, queries=None):
    """Held-out queries against every held-out document (positives and negatives, deduplicated):
    MRR@10, R@1 and R@10 of each query's own positive. `queries` (default `val`) are the ones
    ranked, against the documents of `val` and of `queries`; another positive of the same query
    text (a question with two gold definitions) does not count against it."""
    model.eval()
    queries = val if queries is None else queries
    docs, index = [], {}
    for e in list(val) + ([] if queries is val else list(queries)):
        for body, name in [(e['pos_embed'], e['pos_name'])] + list(zip(e['negs_embed'], e['negs_name'])):
            if body not in index:
                index[body] = len(docs)
                docs.append((body, name))
    with torch.no_grad():
        with base_weights(model, a.query_only):
            d = documents(model, tokens(tok, [b for b, _ in docs], a.max_len),
                          [tokens(tok, [n], a.max_len)[0] if n else None for _, n in docs], a.bf16)
        q = embed(model, tokens(tok, [e['query'] for e in queries], a.query_len), a.bf16)
    s = q @ d.t()
    gold = torch.tensor([index[e['pos_embed']] for e in queries])
    golds = {}
    for e in queries:
        golds.setdefault(e['query'], set()).add(index[e['pos_embed']])
    for i, e in enumerate(queries):
        for j in golds[e['query']] - {int(gold[i])}:
            s[i, j] = -2.0
    rank = (s > s[torch.arange(len(queries)), gold][:, None]).sum(1) + 1
    model.train()
    rr = torch.where(rank <= 10, 1.0 / rank.float(), torch.zeros_like(rank, dtype=torch.float))
    return {'mrr10': round(rr.mean().item(), 4), 'r1': round((rank == 1).float().mean().item(), 4),
            'r10': round((rank <= 10).float().mean().item(), 4), 'queries': len(queries), 'documents': len(docs)}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('pairs')
    ap.add_argument('base')
    ap.add_argument('out')
    ap.add_argument('--steps', type=int, default=600)
    ap.add_argument('--batch', type=int, default=32)
    ap.add_argument('--lr', type=float, default=2e-4)
    ap.add_argument('--rank', type=int, default=16)
    ap.add_argument('--alpha', type=float, default=32)
    ap.add_argument('--hard', type=int, default=1)
    ap.add_argument('--scale', type=float, default=20.0)
    ap.add_argument('--dropout', type=float, default=0.0,
                    help='dropout in the encoder while training (the base weights stay frozen; 0 is also faster)')
    ap.add_argument('--max-len', type=int, default=128)
    ap.add_argument('--query-len', type=int, default=64)
    ap.add_argument('--seed', type=int, default=19)
    ap.add_argument('--threads', type=int, default=2)
    ap.add_argument('--bf16', action='store_true', help='bf16 autocast (AMX or AVX-512 BF16); f32 without')
    ap.add_argument('--val-packages', default=VAL_PACKAGES)
    ap.add_argument('--skip-before', action='store_true', help='do not measure the base model first')
    ap.add_argument('--init', help="start from this folder's lora.safetensors (an earlier round) instead of zero deltas")
    ap.add_argument('--mine', type=int, default=0,
                    help="hard negatives per example from the starting model's own wrong top hits in the package")
    ap.add_argument('--questions', type=float, default=0.0,
                    help='fraction of the training queries rewritten as questions (as_question)')
    ap.add_argument('--query-only', action='store_true',
                    help='train a query tower: documents are embedded with the base weights (no deltas, no '
                         'gradient), so an index keeps the base model\'s vectors and only queries use the deltas')
    ap.add_argument('--questions-pairs',
                    help='`codeintel train pairs` over written questions (scripts/train/questions.py): the '
                         '--val-packages ones are measured, the others train')
    ap.add_argument('--questions-share', type=float, default=0.25,
                    help='share of every batch drawn from --questions-pairs')
    a = ap.parse_args()
    random.seed(a.seed)
    np.random.seed(a.seed)
    torch.manual_seed(a.seed)
    torch.set_num_threads(a.threads)
    torch.use_deterministic_algorithms(True)

    cfg = json.load(open(os.path.join(a.base, 'config.json')))
    tok = Tokenizer.from_file(os.path.join(a.base, 'tokenizer.json'))
    tok.no_padding()
    examples = [json.loads(l) for l in open(a.pairs) if l.strip()]
    if not examples or 'pos_embed' not in examples[0] or not examples[0]['pos_embed']:
        sys.exit(f'{a.pairs} has no embedder views (pos_embed): rebuild it with this `codeintel train pairs`')
    held = set(a.val_packages.split(','))
    train = [e for e in examples if name_of(e['package']) not in held]
    val = [e for e in examples if name_of(e['package']) in held]
    missing = held - {name_of(e['package']) for e in val}
    if missing:
        sys.exit(f'--val-packages names packages with no examples: {sorted(missing)}')
    # Questions (`--questions-pairs`): the held-out packages' ones only measure, the rest train.
    extra = [json.loads(l) for l in open(a.questions_pairs) if l.strip()] if a.questions_pairs else []
    xtrain = [e for e in extra if name_of(e['package']) not in held]
    xval = [e for e in extra if name_of(e['package']) in held]
    if a.questions_pairs and (not xtrain or not xval):
        sys.exit(f'{a.questions_pairs}: {len(xtrain)} questions to train on and {len(xval)} held out; both are needed')
    model = Encoder(dict(cfg, hidden_dropout_prob=a.dropout))
    base_file = os.path.join(a.base, 'model.safetensors')
    theirs = load_base(model, base_file, cfg['num_hidden_layers'])
    add_lora(model, a.rank, a.alpha)
    init = None
    if a.init:
        load_init(model, theirs, a.init)
        init = {'weights_sha256': sha256(os.path.join(a.init, 'lora.safetensors'))}
        prior = os.path.join(a.init, 'lora.json')
        if os.path.exists(prior):
            init['training'] = json.load(open(prior)).get('training')
    before = None if a.skip_before else measure(model, val, tok, a)
    print(f'held out before training: {before}', flush=True)
    qbefore = measure(model, val, tok, a, xval) if xval and not a.skip_before else None
    if qbefore:
        print(f'held-out questions before training: {qbefore}', flush=True)
    mined, mining = [[] for _ in train], None
    if a.mine and a.query_only:
        sys.exit('--mine ranks documents with the deltas; it is not made for --query-only')
    if a.mine:
        mined, mining = mine(model, train, tok, a)
        print(f'mined: {mining}', flush=True)

    n_main = len(train)
    train = train + xtrain
    mined = mined + [[] for _ in xtrain]
    t0 = time.time()
    qrng = random.Random(a.seed + 1)
    queries = [as_question(e['query'], qrng) if qrng.random() < a.questions else e['query'] for e in train]
    rewritten = sum(q != e['query'] for q, e in zip(queries, train))
    per = 1 + a.hard + a.mine
    bodies, name_list = [], []
    for e, extra in zip(train, mined):
        hard = list(zip(e['negs_embed'], e['negs_name']))[:a.hard] + extra
        # Short of negatives (nothing mined in a package with few documented definitions):
        # repeat the last hard one, or the example's first negative, so that every example has
        # `per` documents.
        while len(hard) < per - 1:
            hard.append(hard[-1] if hard else (e['negs_embed'][0], e['negs_name'][0]))
        for body, name in [(e['pos_embed'], e['pos_name'])] + hard:
            bodies.append(body)
            name_list.append(name)
    q_tok = tokens(tok, queries, a.query_len)
    body_tok = tokens(tok, bodies, a.max_len)
    name_tok = tokens(tok, [n or '' for n in name_list], a.max_len)
    print(f'{n_main} training examples ({rewritten} as questions) and {len(xtrain)} written questions '
          f'({len(xval)} held out), {len(val)} held out '
          f'({len({e["package"] for e in val})} packages); tokenized in {time.time() - t0:.0f}s', flush=True)

    params = [p for p in model.parameters() if p.requires_grad]
    opt, sched = adamw_linear(params, a.lr, a.steps)
    order = list(range(n_main))
    rng = random.Random(a.seed)
    rng.shuffle(order)
    # `--questions-share` of every batch are questions, drawn in their own shuffled order.
    n_q = round(a.batch * a.questions_share) if xtrain else 0
    qorder = list(range(n_main, len(train)))
    rng.shuffle(qorder)
    pos, qpos, losses, t0 = 0, 0, [], time.time()
    for step in range(a.steps):
        if pos + a.batch - n_q > len(order):
            rng.shuffle(order)
            pos = 0
        if qpos + n_q > len(qorder):
            rng.shuffle(qorder)
            qpos = 0
        idx = order[pos:pos + a.batch - n_q] + qorder[qpos:qpos + n_q]
        pos += a.batch - n_q
        qpos += n_q
        docs = [i * per + k for i in idx for k in range(per)]
        q = embed(model, [q_tok[i] for i in idx], a.bf16, len(idx))
        with torch.no_grad() if a.query_only else contextlib.nullcontext(), base_weights(model, a.query_only):
            d = documents(model, [body_tok[j] for j in docs],
                          [name_tok[j] if name_list[j] is not None else None for j in docs], a.bf16, len(docs))
        scores = a.scale * (q @ d.t())
        loss = F.cross_entropy(scores, torch.arange(len(idx)) * per)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        losses.append(loss.item())
        if (step + 1) % 25 == 0 or step + 1 == a.steps:
            el = time.time() - t0
            print(f'step {step + 1}/{a.steps} loss {np.mean(losses[-25:]):.4f} '
                  f'{el:.0f}s ({el / (step + 1):.2f}s/step, epoch {(step + 1) * a.batch / len(order):.2f})', flush=True)
    train_s = time.time() - t0

    # What ships is f16: measure and describe the model after that rounding.
    delta = {}
    for i, layer in enumerate(model.layers):
        for t in TARGETS:
            m = getattr(layer, t)
            key = theirs[f'layers.{i}.{t}.weight'][:-len('.weight')]
            delta[key + '.lora_a'] = m.a.detach().to(torch.float16).contiguous()
            delta[key + '.lora_b'] = m.b.detach().to(torch.float16).contiguous()
            m.a.data = delta[key + '.lora_a'].float()
            m.b.data = delta[key + '.lora_b'].float()
    after = measure(model, val, tok, a)
    print(f'held out after training (f16 deltas): {after}', flush=True)
    qafter = measure(model, val, tok, a, xval) if xval else None
    if qafter:
        print(f'held-out questions after training (f16 deltas): {qafter}', flush=True)
    model.eval()
    reference = []
    with torch.no_grad():
        texts = [val[0]['query'], val[1]['query'], val[0]['pos_embed'], val[1]['negs_embed'][0]]
        for t in texts:
            ids, mask = pad(tokens(tok, [t], 256))
            reference.append({'text': t, 'vector': [round(x, 6) for x in model(ids, mask)[0].tolist()]})

    os.makedirs(a.out, exist_ok=True)
    with open(os.path.join(a.out, 'reference.json'), 'w') as f:
        json.dump(reference, f)
        f.write('\n')
    weights = os.path.join(a.out, 'lora.safetensors')
    save_file(delta, weights, metadata={'rank': str(a.rank), 'alpha': str(a.alpha)})
    meta = {
        'kind': 'lora',
        # `query`: the deltas make a query tower only; documents keep the base weights.
        'tower': 'query' if a.query_only else 'both',
        'base': {'package': 'all-MiniLM-L6-v2 (scripts/fetch-deps.sh)', 'file': 'model.safetensors',
                 'sha256': sha256(base_file), 'tokenizer_sha256': sha256(os.path.join(a.base, 'tokenizer.json'))},
        'weights_sha256': sha256(weights),
        'rank': a.rank,
        'alpha': a.alpha,
        'targets': sorted({k[:-len('.lora_a')] for k in delta if k.endswith('.lora_a')}),
        'input': 'query; Chunk::embedding_text with Chunk::name_text (embed.name_view)',
        'training': {'pairs': len(examples), 'train_examples': len(train), 'val_examples': len(val),
                     'steps': a.steps, 'batch': a.batch, 'hard': a.hard, 'lr': a.lr, 'scale': a.scale,
                     'dropout': a.dropout, 'max_len': a.max_len, 'query_len': a.query_len, 'seed': a.seed, 'threads': a.threads,
                     'bf16': a.bf16, 'seconds': round(train_s), 'torch': torch.__version__,
                     'val_before': before, 'val_after': after,
                     'init': init, 'mine': a.mine, 'mining': mining, 'questions': a.questions, 'query_only': a.query_only,
                     'questions_pairs': len(extra), 'questions_train': len(xtrain), 'questions_share': a.questions_share,
                     'questions_val_before': qbefore, 'questions_val_after': qafter,
                     'final_loss': round(float(np.mean(losses[-25:])), 4) if losses else None},
    }
    with open(os.path.join(a.out, 'lora.json'), 'w') as f:
        json.dump(meta, f, indent=2)
        f.write('\n')
    print(f'wrote {weights} ({os.path.getsize(weights) / 1e6:.2f} MB) in {train_s:.0f}s of training')


if __name__ == '__main__':
    main()
