#!/usr/bin/env python3
"""Folds LoRA deltas (`scripts/train/embed.py`'s lora.safetensors) into a BERT model folder.

Writes OUT_DIR with the base folder's config.json and tokenizer.json and a model.safetensors
whose targeted matrices are `W + (alpha / rank) * B @ A`, every other tensor as it was. The
delta's sha256 and the base weights' sha256 must be the ones lora.json names: a delta trained
on other weights is refused. The product is summed rank by rank in float64 with elementwise
operations only (no BLAS), then rounded to float32, so the bytes are the same on every machine.

Usage: merge_lora.py BASE_DIR LORA_DIR OUT_DIR
"""
import hashlib
import json
import os
import shutil
import sys

import numpy as np
from safetensors.numpy import load_file, save_file


def sha256(path):
    h = hashlib.sha256()
    with open(path, 'rb') as f:
        for block in iter(lambda: f.read(1 << 20), b''):
            h.update(block)
    return h.hexdigest()


def main():
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    base_dir, lora_dir, out_dir = sys.argv[1:]
    meta = json.load(open(os.path.join(lora_dir, 'lora.json')))
    delta_file = os.path.join(lora_dir, 'lora.safetensors')
    base_file = os.path.join(base_dir, 'model.safetensors')
    for what, path, want in [('delta', delta_file, meta['weights_sha256']),
                             ('base weights', base_file, meta['base']['sha256']),
                             ('tokenizer', os.path.join(base_dir, 'tokenizer.json'), meta['base']['tokenizer_sha256'])]:
        got = sha256(path)
        if got != want:
            sys.exit(f'{path}: sha256 {got}, but {lora_dir}/lora.json says the {what} are {want}')
    base = load_file(base_file)
    delta = load_file(delta_file)
    scale = float(meta['alpha']) / float(meta['rank'])
    merged = dict(base)
    for target in meta['targets']:
        a = delta[target + '.lora_a'].astype(np.float64)  # (rank, in)
        b = delta[target + '.lora_b'].astype(np.float64)  # (out, rank)
        w = base[target + '.weight']
        if w.shape != (b.shape[0], a.shape[1]):
            sys.exit(f'{target}: base {w.shape}, delta {(b.shape[0], a.shape[1])}')
        acc = np.zeros(w.shape, dtype=np.float64)
        for k in range(a.shape[0]):
            acc += b[:, k:k + 1] * a[k:k + 1, :]
        merged[target + '.weight'] = (w.astype(np.float64) + scale * acc).astype(np.float32)
    os.makedirs(out_dir, exist_ok=True)
    for name in ('config.json', 'tokenizer.json'):
        shutil.copyfile(os.path.join(base_dir, name), os.path.join(out_dir, name))
    tmp = os.path.join(out_dir, 'model.safetensors.tmp')
    save_file({k: np.ascontiguousarray(merged[k]) for k in sorted(merged)}, tmp)
    os.chmod(tmp, 0o644)
    os.replace(tmp, os.path.join(out_dir, 'model.safetensors'))
    print(f'{out_dir}/model.safetensors: {len(meta["targets"])} matrices merged (rank {meta["rank"]}, '
          f'scale {scale}) into {base_file}')


if __name__ == '__main__':
    main()
