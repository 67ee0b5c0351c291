#!/usr/bin/python3
"""Reference timing: mini-batch SGD in numpy, the way Nielsen's network.py does it.

Variant "loop" backpropagates one example (a 784 x 1 column) at a time and sums
the per-example gradients over the mini-batch; variant "batch" does the same
mini-batch as whole matrices (one example per column). Both: sigmoid neurons,
quadratic cost C_x = 1/2 ||y - a^L||^2, STANDARD_NORMAL initial weights,
w <- w - eta/m * sum_x dC_x/dw.

Prints one JSON object per run. The loop variant may time only the first
--examples examples of the shuffled epoch; seconds_per_epoch is then that time
scaled to the full training set (the work per example is constant), and the
output says so ("extrapolated": true).
"""

import argparse
import json
import time

import numpy as np

import fmnist


def sigmoid(z):
    # exp(-z) overflows to inf for very negative z (easily in float32); the
    # result is then the correct limit 0, so the warning is noise.
    with np.errstate(over="ignore"):
        return 1.0 / (1.0 + np.exp(-z))


class Net:
    def __init__(self, sizes, dtype, seed):
        rng = np.random.default_rng(seed)
        self.w = [rng.standard_normal((n, n_in)).astype(dtype)
                  for n_in, n in zip(sizes[:-1], sizes[1:])]
        self.b = [rng.standard_normal((n, 1)).astype(dtype) for n in sizes[1:]]

    def backprop(self, x, y):
        """Gradients of sum_x C_x over the columns of x (one column or many)."""
        a = [x]
        for w, b in zip(self.w, self.b):
            a.append(sigmoid(w @ a[-1] + b))
        # sigma'(z) = a (1 - a) for the sigmoid, so z need not be kept.
        delta = (a[-1] - y) * a[-1] * (1 - a[-1])
        nabla_w = [None] * len(self.w)
        nabla_b = [None] * len(self.b)
        for i in range(len(self.w) - 1, -1, -1):
            nabla_w[i] = delta @ a[i].T
            nabla_b[i] = delta.sum(axis=1, keepdims=True)
            if i > 0:
                delta = (self.w[i].T @ delta) * a[i] * (1 - a[i])
        return nabla_w, nabla_b

    def step(self, x, y, eta, per_example):
        m = x.shape[1]
        if per_example:
            sum_w = [np.zeros_like(w) for w in self.w]
            sum_b = [np.zeros_like(b) for b in self.b]
            for j in range(m):
                nw, nb = self.backprop(x[:, j:j + 1], y[:, j:j + 1])
                for i in range(len(self.w)):
                    sum_w[i] += nw[i]
                    sum_b[i] += nb[i]
        else:
            sum_w, sum_b = self.backprop(x, y)
        scale = x.dtype.type(eta / m)
        for i in range(len(self.w)):
            self.w[i] -= scale * sum_w[i]
            self.b[i] -= scale * sum_b[i]

    def accuracy(self, x, labels):
        a = x
        for w, b in zip(self.w, self.b):
            a = sigmoid(w @ a + b)
        return float(np.mean(a.argmax(axis=0) == labels))


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", choices=sorted(fmnist.CONFIGS), default="A")
    p.add_argument("--dtype", choices=["float64", "float32"], default="float64")
    p.add_argument("--variant", choices=["loop", "batch"], default="loop")
    p.add_argument("--examples", type=int, default=60000,
                   help="time only this many examples of the epoch, then scale")
    p.add_argument("--repeats", type=int, default=1,
                   help="timed passes; the fastest is reported")
    p.add_argument("--seed", type=int, default=1)
    args = p.parse_args()

    sizes, batch, eta = fmnist.CONFIGS[args.config]
    dtype = np.dtype(args.dtype).type
    x, labels = fmnist.load(train=True, dtype=dtype)
    y = fmnist.one_hot(labels, sizes[-1], dtype)
    n = x.shape[0]
    count = min(max(args.examples, batch), n)
    net = Net(sizes, dtype, args.seed)
    rng = np.random.default_rng(args.seed + 1)
    per_example = args.variant == "loop"

    # Warm-up (caches, BLAS thread start-up), not timed.
    net.step(x[:batch].T, y[:batch].T, eta, per_example)

    best, best_cpu = float("inf"), float("inf")
    for _ in range(args.repeats):
        order = rng.permutation(n)[:count]
        start, start_cpu = time.perf_counter(), time.process_time()
        for k in range(0, count, batch):
            idx = order[k:k + batch]
            # The gather of a mini-batch is part of an epoch's cost here as in
            # the engine and in the torch reference.
            net.step(x[idx].T, y[idx].T, eta, per_example)
        best = min(best, time.perf_counter() - start)
        best_cpu = min(best_cpu, time.process_time() - start_cpu)

    print(json.dumps({
        "impl": f"numpy-{args.variant}",
        "config": args.config,
        "dtype": args.dtype,
        "examples_timed": count,
        "extrapolated": count < n,
        "seconds_timed": best,
        "seconds_per_epoch": best * n / count,
        "cpu_seconds_per_epoch": best_cpu * n / count,
    }))


if __name__ == "__main__":
    main()
