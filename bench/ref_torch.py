#!/usr/bin/env python3
"""bench/ref_torch.py: the PyTorch side of `make bench` (comparison 2): a fastText-style model
with a hidden layer, EmbeddingBag(mean, sparse gradients) -> Linear(dim, hidden) -> ReLU ->
Dropout -> Linear(hidden, labels), trained by plain SGD with fastText's schedule (learning
rate decaying linearly to zero over all steps), on the exact tokens the other tools get.
The loss is summed over the batch, so the learning rate is per example as in fastText.
The embedding keeps PyTorch's N(0, 1) initialisation: with fastText's tiny uniform one, the
hidden layer starts constant and plain SGD never left the majority class in our trials.
Runs in bench/venv. Not a general trainer: just what the bench times.

  train --train FT --test FT --batch B --lr LR [--epoch 5 --dim 100 --hidden 256 ...]
  pilot --train FT --test FT --lrs 0.02,0.05,0.1 --batches 16,64,256  (see below)

Ids are built as fastText builds them: every training word gets a row (minCount 1), each
bigram of consecutive words hashes into `bucket` extra rows. Unknown test words are dropped.
The timed part is the training loop alone (data loading and id building are not counted),
which favours PyTorch; `train_seconds` is that loop, `tokens` the word tokens of one pass.

`pilot` trains one pass on the first quarter of the data for each batch size and learning
rate and prints the fastest setting whose accuracy is within one point of the best one seen:
"best batch size for PyTorch" means the best throughput at no loss of accuracy.
Each step prints one JSON line on stdout.
"""
import argparse
import json
import math
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

BIGRAM_MUL = 116049371  # fastText's multiplier for word-n-gram hashing


def read_ft(path):
    labels, docs = [], []
    with open(path, encoding="utf-8") as f:
        for line in f:
            lab, _, text = line.rstrip("\n").partition(" ")
            labels.append(lab)
            docs.append(text.split())
    return labels, docs


class Encoded:
    """All examples as one flat id tensor plus per-example offsets (EmbeddingBag's input)."""

    def __init__(self, docs, labels, vocab, label_ids, bucket, ngrams):
        nwords = len(vocab)
        ids, offsets, ys = [], [], []
        pos = 0
        for words, lab in zip(docs, labels):
            w = [vocab[t] for t in words if t in vocab]
            row = list(w)
            if ngrams >= 2:
                for a, b in zip(w, w[1:]):
                    row.append(nwords + ((a * BIGRAM_MUL + b) % bucket))
            offsets.append(pos)
            ids.extend(row)
            pos += len(row)
            ys.append(label_ids.get(lab, -1))
        self.ids = torch.tensor(np.asarray(ids, dtype=np.int64))
        self.offsets = torch.tensor(np.asarray(offsets + [pos], dtype=np.int64))
        self.y = torch.tensor(np.asarray(ys, dtype=np.int64))
        self.n = len(ys)

    def batch(self, i0, i1):
        s, e = int(self.offsets[i0]), int(self.offsets[i1])
        return self.ids[s:e], self.offsets[i0:i1] - s, self.y[i0:i1]


class Net(nn.Module):
    def __init__(self, rows, dim, hidden, labels, dropout):
        super().__init__()
        self.emb = nn.EmbeddingBag(rows, dim, mode="mean", sparse=True)
        self.fc1 = nn.Linear(dim, hidden)
        self.drop = nn.Dropout(dropout)
        self.fc2 = nn.Linear(hidden, labels)

    def forward(self, ids, offsets):
        return self.fc2(self.drop(F.relu(self.fc1(self.emb(ids, offsets)))))


def train(enc, nlabels, a, batch, lr, epochs, limit=None):
    torch.manual_seed(a.seed)
    n = enc.n if limit is None else min(enc.n, limit)
    net = Net(enc.rows, a.dim, a.hidden, nlabels, a.dropout)
    opt = torch.optim.SGD(net.parameters(), lr=lr)
    steps = epochs * math.ceil(n / batch)
    step = 0
    net.train()
    t0 = time.perf_counter()
    for _ in range(epochs):
        for i0 in range(0, n, batch):
            ids, offs, y = enc.batch(i0, min(n, i0 + batch))
            for g in opt.param_groups:
                g["lr"] = lr * (1.0 - step / steps)
            opt.zero_grad(set_to_none=True)
            loss = F.cross_entropy(net(ids, offs), y, reduction="sum")
            loss.backward()
            opt.step()
            step += 1
    return net, time.perf_counter() - t0


@torch.no_grad()
def accuracy(net, enc):
    net.eval()
    correct = 0
    for i0 in range(0, enc.n, 4096):
        ids, offs, y = enc.batch(i0, min(enc.n, i0 + 4096))
        correct += int((net(ids, offs).argmax(1) == y).sum())
    return correct / max(1, enc.n)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("step", choices=["train", "pilot"])
    ap.add_argument("--train", required=True)
    ap.add_argument("--test", required=True)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--batches", default="16,64,256")
    ap.add_argument("--lr", type=float, default=0.05)
    ap.add_argument("--lrs", default="0.02,0.05,0.1")
    ap.add_argument("--epoch", type=int, default=5)
    ap.add_argument("--dim", type=int, default=100)
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--dropout", type=float, default=0.2)
    ap.add_argument("--word-ngrams", type=int, default=2)
    ap.add_argument("--bucket", type=int, default=2000000)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)

    tl, td = read_ft(a.train)
    vl, vd = read_ft(a.test)
    counts = {}
    for d in td:
        for t in d:
            counts[t] = counts.get(t, 0) + 1
    vocab = {t: i for i, t in enumerate(sorted(counts, key=lambda t: (-counts[t], t)))}
    label_ids = {l: i for i, l in enumerate(sorted(set(tl)))}
    train_enc = Encoded(td, tl, vocab, label_ids, a.bucket, a.word_ngrams)
    test_enc = Encoded(vd, vl, vocab, label_ids, a.bucket, a.word_ngrams)
    train_enc.rows = test_enc.rows = len(vocab) + a.bucket
    tokens = sum(len(d) for d in td)

    if a.step == "train":
        net, secs = train(train_enc, len(label_ids), a, a.batch, a.lr, a.epoch)
        print(json.dumps({"train_seconds": secs, "tokens": tokens, "epochs": a.epoch,
                          "batch": a.batch, "lr": a.lr, "accuracy": accuracy(net, test_enc),
                          "examples": test_enc.n, "torch": torch.__version__}))
    else:
        limit = max(1, train_enc.n // 4)
        ptokens = sum(len(d) for d in td[:limit])
        tried = []
        for b in [int(x) for x in a.batches.split(",")]:
            for lr in [float(x) for x in a.lrs.split(",")]:
                net, secs = train(train_enc, len(label_ids), a, b, lr, 1, limit)
                tried.append({"batch": b, "lr": lr, "tokens_per_second": ptokens / secs,
                              "accuracy": accuracy(net, test_enc)})
        best_acc = max(t["accuracy"] for t in tried)
        ok = [t for t in tried if t["accuracy"] >= best_acc - 0.01]
        pick = max(ok, key=lambda t: t["tokens_per_second"])
        print(json.dumps({"batch": pick["batch"], "lr": pick["lr"], "tried": tried}))


if __name__ == "__main__":
    main()
