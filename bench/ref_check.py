#!/usr/bin/python3
"""Checks that the Python references compute the gradient they claim to.

1. ref_numpy_loop's per-example loop and whole-batch variants give the same
   summed gradient (they share Net.backprop, called on one column at a time or
   on all columns).
2. That gradient, divided by m, equals torch autograd's gradient of the mean
   quadratic cost 1/m sum_x 1/2 ||y - a^L||^2 for the same weights (skipped
   when torch is not installed).
3. ref_torch's cost() for softmax + cross-entropy equals -ln a_y computed by
   hand, and one SGD step with momentum and weight decay on the weights only
   equals API.md's rule written out.
Everything in float64 on a random [7, 5, 4, 3] net and 6 examples; tolerance
1e-12 relative to the largest entry (all are sums of a few dozen products of
O(1) numbers, so only rounding differs).
Exit 0 when all checks pass; prints what failed otherwise.
"""

import sys

import numpy as np

import ref_numpy_loop

TOL = 1e-12


def close(a, b):
    scale = max(1.0, float(np.max(np.abs(b))))
    return float(np.max(np.abs(np.asarray(a) - np.asarray(b)))) <= TOL * scale


def main():
    failures = []
    rng = np.random.default_rng(7)
    sizes = [7, 5, 4, 3]
    net = ref_numpy_loop.Net(sizes, np.float64, seed=3)
    m = 6
    x = rng.random((sizes[0], m))
    y = np.eye(sizes[-1])[:, rng.integers(0, sizes[-1], m)]

    batch_w, batch_b = net.backprop(x, y)
    loop_w = [np.zeros_like(w) for w in net.w]
    loop_b = [np.zeros_like(b) for b in net.b]
    for j in range(m):
        nw, nb = net.backprop(x[:, j:j + 1], y[:, j:j + 1])
        for i in range(len(net.w)):
            loop_w[i] += nw[i]
            loop_b[i] += nb[i]
    for i in range(len(net.w)):
        if not (close(loop_w[i], batch_w[i]) and close(loop_b[i], batch_b[i])):
            failures.append(f"loop and batch gradients differ in layer {i + 1}")

    try:
        import torch
    except ImportError:
        print("torch not installed: checks 2 and 3 skipped")
        torch = None

    if torch is not None:
        import ref_torch
        w = [torch.tensor(a, requires_grad=True) for a in net.w]
        b = [torch.tensor(a[:, 0], requires_grad=True) for a in net.b]
        a = torch.tensor(x.T)
        for wi, bi in zip(w, b):
            a = torch.sigmoid(a @ wi.T + bi)
        c = 0.5 * ((a - torch.tensor(y.T)) ** 2).sum() / m
        c.backward()
        for i in range(len(w)):
            if not (close(w[i].grad.numpy(), batch_w[i] / m) and
                    close(b[i].grad.numpy(), batch_b[i][:, 0] / m)):
                failures.append(f"numpy and torch gradients differ, layer {i + 1}")

        # 3a. softmax + log-likelihood cost.
        z = torch.tensor(rng.standard_normal((m, 3)))
        labels = torch.tensor(rng.integers(0, 3, m))
        onehot = torch.nn.functional.one_hot(labels, 3).double()
        got = float(ref_torch.cost(z, onehot, labels, "softmax", "cross_entropy"))
        zn = z.numpy()
        p = np.exp(zn - zn.max(axis=1, keepdims=True))
        p /= p.sum(axis=1, keepdims=True)
        want = float(-np.mean(np.log(p[np.arange(m), labels.numpy()])))
        if abs(got - want) > TOL * max(1.0, abs(want)):
            failures.append(f"softmax cross-entropy {got} != {want}")

        # 3b. Two steps of torch SGD (momentum, weight decay on weights only)
        # against v <- mu v - eta (g + (lambda/n) w), w <- w + v.
        layers = ref_torch.build([4, 3], "scaled", torch.float64, seed=5)
        lin = layers[0]
        eta, mu, decay = 0.1, 0.9, 0.01
        opt = torch.optim.SGD([
            {"params": [lin.weight], "weight_decay": decay},
            {"params": [lin.bias], "weight_decay": 0.0},
        ], lr=eta, momentum=mu)
        w_ref = lin.weight.detach().numpy().copy()
        b_ref = lin.bias.detach().numpy().copy()
        vw, vb = np.zeros_like(w_ref), np.zeros_like(b_ref)
        xin = torch.tensor(rng.random((m, 4)))
        for _ in range(2):
            opt.zero_grad()
            loss = (lin(xin) ** 2).sum() / m
            loss.backward()
            gw = lin.weight.grad.numpy().copy()
            gb = lin.bias.grad.numpy().copy()
            opt.step()
            vw = mu * vw - eta * (gw + decay * w_ref)
            vb = mu * vb - eta * gb
            w_ref = w_ref + vw
            b_ref = b_ref + vb
        if not (close(lin.weight.detach().numpy(), w_ref) and
                close(lin.bias.detach().numpy(), b_ref)):
            failures.append("torch SGD step differs from API.md's update rule")

    for f in failures:
        print("FAIL:", f)
    if not failures:
        print("all reference checks passed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
