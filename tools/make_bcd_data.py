#!/usr/bin/python3
"""Synthetic data sets of seed 001 section 7 (block-coordinate descent).

  section 7.1  a two-layer tanh network y = W3 tanh(W2 tanh(W1 u)), p = 20,
               q = 5, hidden sizes 12 and 6, W_l(i, j) ~ Bernoulli(0.3) x
               Uniform[-0.5, 0.5] (about 70% zeros); inputs u ~ N(0, Sigma),
               Sigma = M M^T - lambda_min(M M^T) I with M ~ Uniform[-0.5, 0.5]^{p x p};
               1,000 training points and 500 test points drawn with an
               independent Sigma (as in the seed);
  section 7.2  a truly implicit ReLU model y = C x, x = relu(A x + B u), n = 20,
               A random with every row's l1 norm 0.5 (||A||_inf = 0.5), B column
               sparse with 10 nonzero columns out of p = 100 (Gaussian entries),
               C Gaussian, q = 1, D = 0; u ~ N(0, I), m = 400 points.

Inputs are written with 4 significant digits and the targets are computed
from the written inputs (in float64, the 7.2 states by Picard iteration to
1e-15), so the files are exact data for each other. Text files, one vector
per line (tacit's --input / --targets format):

  ffnn_train_U.txt ffnn_train_Y.txt ffnn_test_U.txt ffnn_test_Y.txt   (7.1)
  recovery_U.txt recovery_Y.txt recovery_support.txt                  (7.2)

recovery_support.txt lists the 10 true input columns (0-based), one line.
Deterministic: numpy's default_rng(seed) for 7.1 and default_rng(seed + 1000)
for 7.2; the committed tests/data/bcd is --seed 0.

  /usr/bin/python3 tools/make_bcd_data.py --seed 0 --out tests/data/bcd
"""

import argparse
import os

import numpy as np


def write_rows(path, rows, fmt):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        for r in rows:
            f.write(" ".join(fmt % v for v in r) + "\n")
    os.replace(tmp, path)


def rounded(a, digits=4):
    """a as it reads back from the text files."""
    return np.array([[float("%.*g" % (digits, v)) for v in r] for r in a])


def gaussian_inputs(rng, p, m):
    M = rng.uniform(-0.5, 0.5, size=(p, p))
    S = M @ M.T
    w, V = np.linalg.eigh(S)
    w = np.maximum(w - w.min(), 0.0)  # Sigma = M M^T - lambda_min I (PSD, singular)
    L = V * np.sqrt(w)
    return (L @ rng.standard_normal((p, m))).T  # m x p


def section_71(seed, out):
    rng = np.random.default_rng(seed)
    p, q, sizes = 20, 5, (12, 6)
    dims = [p, *sizes, q]
    W = []
    for l in range(3):
        mask = rng.uniform(size=(dims[l + 1], dims[l])) < 0.3
        W.append(mask * rng.uniform(-0.5, 0.5, size=(dims[l + 1], dims[l])))

    def net(U):
        return (W[2] @ np.tanh(W[1] @ np.tanh(W[0] @ U.T))).T

    for name, m in (("train", 1000), ("test", 500)):
        U = rounded(gaussian_inputs(rng, p, m))
        write_rows(os.path.join(out, "ffnn_%s_U.txt" % name), U, "%.4g")
        write_rows(os.path.join(out, "ffnn_%s_Y.txt" % name), net(U), "%.10g")


def section_72(seed, out):
    rng = np.random.default_rng(seed + 1000)
    n, p, q, m, k = 20, 100, 1, 400, 10
    A = rng.standard_normal((n, n))
    A *= 0.5 / np.abs(A).sum(axis=1, keepdims=True)
    support = np.sort(rng.choice(p, size=k, replace=False))
    B = np.zeros((n, p))
    B[:, support] = rng.standard_normal((n, k))
    C = rng.standard_normal((q, n))
    U = rounded(rng.standard_normal((m, p)))
    X = np.zeros((n, m))
    Z = B @ U.T
    for _ in range(10000):
        Xn = np.maximum(A @ X + Z, 0.0)
        step = np.abs(Xn - X).max()
        X = Xn
        if step <= 1e-15 * max(1.0, np.abs(X).max()):
            break
    else:
        raise SystemExit("section 7.2: the Picard iteration did not converge")
    Y = (C @ X).T
    write_rows(os.path.join(out, "recovery_U.txt"), U, "%.4g")
    write_rows(os.path.join(out, "recovery_Y.txt"), Y, "%.10g")
    write_rows(os.path.join(out, "recovery_support.txt"), [support], "%d")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", required=True, help="output directory")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    section_71(args.seed, args.out)
    section_72(args.seed, args.out)


if __name__ == "__main__":
    main()
