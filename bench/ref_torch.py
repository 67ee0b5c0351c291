#!/usr/bin/python3
"""Reference: the same mini-batch SGD in PyTorch (Debian's python3-torch).

--mode time: seconds for one epoch of Config A or C (see fmnist.CONFIGS), the
  fastest of --repeats timed epochs after a one-batch warm-up; one JSON line.
--mode train: trains for --epochs and prints test accuracy after every epoch,
  then a JSON line with the best and final accuracy.

The update is API.md's: g_w = 1/m sum_x dC_x/dw + (lambda/n) w, g_b without
the L2 term, v <- mu v - eta g, w <- w + v. torch.optim.SGD with momentum mu
and dampening 0 keeps u <- mu u + g and steps w <- w - eta u, which is the same
sequence of weights (v = -eta u while eta is constant). Weight decay lambda/n is
put only on the weight matrices (a parameter group without it for the biases).
"""

import argparse
import json
import time

import numpy as np
import torch
import torch.nn.functional as F

import fmnist


def build(sizes, init, dtype, seed):
    g = torch.Generator().manual_seed(seed)
    layers = []
    for n_in, n in zip(sizes[:-1], sizes[1:]):
        lin = torch.nn.Linear(n_in, n, dtype=dtype)
        std = 1.0 if init == "standard" else n_in ** -0.5
        with torch.no_grad():
            lin.weight.copy_(torch.randn(n, n_in, generator=g, dtype=dtype) * std)
            lin.bias.copy_(torch.randn(n, generator=g, dtype=dtype))
        layers.append(lin)
    return torch.nn.ModuleList(layers)


ACTIVATIONS = {"sigmoid": torch.sigmoid, "relu": torch.relu, "tanh": torch.tanh}


def forward_z(layers, hidden, x):
    """z^L (the output layer's weighted input) for a batch of rows x."""
    a = x
    for lin in layers[:-1]:
        a = ACTIVATIONS[hidden](lin(a))
    return layers[-1](a)


def cost(z, y_onehot, labels, output, cost_name):
    """Mean over the batch of C_x for the given output activation and cost."""
    m = z.shape[0]
    if cost_name == "quadratic":
        a = ACTIVATIONS[output](z)
        return 0.5 * ((a - y_onehot) ** 2).sum() / m
    if output == "softmax":
        return F.cross_entropy(z, labels)  # -ln a_y, averaged
    return F.binary_cross_entropy_with_logits(z, y_onehot, reduction="sum") / m


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--mode", choices=["time", "train"], default="time")
    p.add_argument("--config", choices=sorted(fmnist.CONFIGS), default=None,
                   help="sizes/batch/eta of a named config (sigmoid, quadratic)")
    p.add_argument("--sizes", default="784,30,10")
    p.add_argument("--hidden", choices=sorted(ACTIVATIONS), default="sigmoid")
    p.add_argument("--output", choices=["sigmoid", "softmax"], default="sigmoid")
    p.add_argument("--cost", choices=["quadratic", "cross_entropy"],
                   default="quadratic")
    p.add_argument("--init", choices=["standard", "scaled"], default="standard")
    p.add_argument("--batch", type=int, default=10)
    p.add_argument("--eta", type=float, default=3.0)
    p.add_argument("--mu", type=float, default=0.0)
    p.add_argument("--lam", type=float, default=0.0,
                   help="network2.py's lambda; g_w gets + (lambda/n) w")
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--dtype", choices=["float64", "float32"], default="float64")
    p.add_argument("--threads", type=int, default=1,
                   help="torch.set_num_threads (intra-op); inter-op is 1")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--seed", type=int, default=1)
    args = p.parse_args()

    torch.set_num_threads(args.threads)
    torch.set_num_interop_threads(1)
    if args.config:
        sizes, args.batch, args.eta = fmnist.CONFIGS[args.config]
    else:
        sizes = [int(s) for s in args.sizes.split(",")]
    if args.output == "softmax" and args.cost != "cross_entropy":
        p.error("softmax output goes with --cost cross_entropy")
    np_dtype = np.dtype(args.dtype).type
    dtype = torch.float64 if args.dtype == "float64" else torch.float32

    x_np, labels_np = fmnist.load(train=True, dtype=np_dtype)
    x = torch.from_numpy(x_np)
    labels = torch.from_numpy(labels_np)
    y = torch.from_numpy(fmnist.one_hot(labels_np, sizes[-1], np_dtype))
    n = x.shape[0]

    torch.manual_seed(args.seed)
    layers = build(sizes, args.init, dtype, args.seed)
    opt = torch.optim.SGD([
        {"params": [l.weight for l in layers], "weight_decay": args.lam / n},
        {"params": [l.bias for l in layers], "weight_decay": 0.0},
    ], lr=args.eta, momentum=args.mu)
    shuffle = torch.Generator().manual_seed(args.seed + 1)

    def sgd_step(idx):
        opt.zero_grad(set_to_none=True)
        c = cost(forward_z(layers, args.hidden, x[idx]), y[idx], labels[idx],
                 args.output, args.cost)
        c.backward()
        opt.step()

    def epoch():
        """(wall, CPU) seconds of one epoch of SGD."""
        order = torch.randperm(n, generator=shuffle)
        start, start_cpu = time.perf_counter(), time.process_time()
        for k in range(0, n, args.batch):
            sgd_step(order[k:k + args.batch])
        return time.perf_counter() - start, time.process_time() - start_cpu

    name = args.config or "custom"
    if args.mode == "time":
        sgd_step(torch.arange(args.batch))  # warm-up, not timed
        times = [epoch() for _ in range(args.repeats)]
        print(json.dumps({"impl": "torch", "config": name, "dtype": args.dtype,
                          "threads": args.threads, "repeats": args.repeats,
                          "seconds_per_epoch": min(t[0] for t in times),
                          "cpu_seconds_per_epoch": min(t[1] for t in times),
                          "all": [t[0] for t in times]}))
        return

    xt_np, lt_np = fmnist.load(train=False, dtype=np_dtype)
    xt, lt = torch.from_numpy(xt_np), torch.from_numpy(lt_np)
    best, best_epoch, acc = 0.0, 0, 0.0
    print(f"{'epoch':>5} {'test_acc':>8} {'seconds':>8}", flush=True)
    for e in range(1, args.epochs + 1):
        seconds, _ = epoch()
        with torch.no_grad():
            pred = forward_z(layers, args.hidden, xt).argmax(dim=1)
            acc = float((pred == lt).double().mean())
        if acc > best:
            best, best_epoch = acc, e
        print(f"{e:>5} {acc:>8.4f} {seconds:>8.2f}", flush=True)
    print(json.dumps({"impl": "torch", "config": name, "args": vars(args),
                      "best_test_accuracy": best, "best_epoch": best_epoch,
                      "final_test_accuracy": acc}))


if __name__ == "__main__":
    main()
