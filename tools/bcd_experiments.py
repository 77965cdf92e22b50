#!/usr/bin/python3
"""Seed 001 sections 7.1 and 7.2 with tacit: block-coordinate descent (tacit bcd)
against gradient training (tacit train).

  7.1  the two-layer tanh network: BCD's test RMSE after each of 5 iterations
       against a network of the same shape trained by Adam (tacit train);
  7.2  support recovery: the inputs read by B (its nonzero columns) after BCD
       with the column penalty and after proximal gradient with the group
       lasso on input groups (tacit train --group-lasso --groups inputs, then
       tacit prune's kept_inputs), F1 against the true support; the same
       two-stage (a screen by the group lasso, then --refit-select: refits on
       the screened inputs and backward elimination by the training loss)
       with gradient refits and with BCD refits.

Data: tests/data/bcd (generator seed 0, committed) and tools/make_bcd_data.py
--seed S for the further seeds, generated into a scratch directory.

  /usr/bin/python3 tools/bcd_experiments.py build/tacit --seeds 1 2 3 4 5
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

# The commands (without data paths and output); the README quotes them.
BCD_71 = ["--init", "mlp:20,12,6,5,phi=tanh", "--seed", "1", "--iterations", "5",
          "--layer-eps", "1e-2", "--mu", "1e-2", "--state-sweeps", "4"]
ADAM_71 = ["--init", "mlp:20,12,6,5,phi=tanh", "--seed", "1", "--loss", "squared",
           "--optimizer", "adam", "--lr", "0.01", "--batch-size", "50", "--epochs", "150"]
BCD_72 = ["--init", "implicit:n=10,p=100,q=1,density=1,kappa=0.5", "--seed", "1",
          "--iterations", "150", "--lambda", "1", "--mu", "1", "--kappa", "0.5",
          "--group-lasso", "0.3", "--reweight", "20", "--ab-iterations", "100"]
# The same with the states' scale fixed (relu is 2-homogeneous: without it the
# relaxation shrinks the states towards 0 and the penalty with them).
BCD_72_SCALED = BCD_72 + ["--state-scale", "1"]
PROX_72 = ["--init", "implicit:n=10,p=100,q=1,density=1,kappa=0.5", "--seed", "1",
           "--loss", "squared", "--kappa", "0.5", "--optimizer", "sgd", "--lr", "0.003",
           "--momentum", "0.9", "--batch-size", "40", "--epochs", "200", "--group-lasso", "1",
           "--groups", "inputs", "--reweight", "20"]
# Two stages: the adaptive group lasso (one reweighting, after 200 epochs)
# screens, then refits without the penalty on the screened inputs select.
PROX_72_SELECT = ["--init", "implicit:n=10,p=100,q=1,density=1,kappa=0.5", "--seed", "1",
                  "--loss", "squared", "--kappa", "0.5", "--optimizer", "sgd", "--lr",
                  "0.003", "--momentum", "0.9", "--batch-size", "40", "--epochs", "400",
                  "--group-lasso", "1", "--groups", "inputs", "--reweight", "200",
                  "--refit-select", "0.5", "--refit-epochs", "1000", "--trial-epochs", "200"]
# BCD --state-scale 1, then the same selection with BCD refits.
BCD_72_SELECT = BCD_72_SCALED + ["--refit-select", "0.5"]
# BCD --state-scale 1 with the relaxation tightened: lambda and mu times 1.03
# per iteration (x 84 over 150 iterations).
BCD_72_GROWTH = BCD_72_SCALED + ["--growth", "1.03"]
# The same with the penalty grown alongside (the (A, B)-step keeps its
# balance between divergence and penalty while the relaxation tightens).
BCD_72_GROWTH_PEN = BCD_72_GROWTH + ["--penalty-growth", "1.03"]


def run(cmd):
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit("failed (%d): %s\n%s" % (r.returncode, " ".join(cmd), r.stderr))
    try:
        return [json.loads(r.stdout)]  # one document (tacit prune --json)
    except json.JSONDecodeError:
        return [json.loads(l) for l in r.stdout.splitlines() if l.strip()]


def f1(found, truth):
    found, truth = set(found), set(truth)
    tp = len(found & truth)
    if tp == 0:
        return 0.0
    p, r = tp / len(found), tp / len(truth)
    return 2 * p * r / (p + r)


def section_71(tacit, data, work):
    d = lambda f: os.path.join(data, f)
    bcd = run([tacit, "bcd", *BCD_71, "-i", d("ffnn_train_U.txt"), "--targets",
               d("ffnn_train_Y.txt"), "--test-input", d("ffnn_test_U.txt"),
               "--test-targets", d("ffnn_test_Y.txt"), "-o",
               os.path.join(work, "bcd71.tacit"), "--json"])
    per_iteration = [l["test_rmse"] for l in bcd if l.get("event") == "iteration"]
    adam = run([tacit, "train", *ADAM_71, "-i", d("ffnn_train_U.txt"), "--targets",
                d("ffnn_train_Y.txt"), "--test-input", d("ffnn_test_U.txt"),
                "--test-targets", d("ffnn_test_Y.txt"), "-o",
                os.path.join(work, "adam71.tacit"), "--json"])
    epochs = [l for l in adam if l.get("event") == "epoch"]
    return per_iteration, epochs[-1]["validation_loss"] ** 0.5


def section_72(tacit, data, work):
    d = lambda f: os.path.join(data, f)
    with open(d("recovery_support.txt")) as f:
        truth = [int(v) for v in f.read().split()]
    bcd = run([tacit, "bcd", *BCD_72, "-i", d("recovery_U.txt"), "--targets",
               d("recovery_Y.txt"), "-o", os.path.join(work, "bcd72.tacit"), "--json"])
    found_bcd = bcd[-1]["inputs_read"]
    scaled = run([tacit, "bcd", *BCD_72_SCALED, "-i", d("recovery_U.txt"), "--targets",
                  d("recovery_Y.txt"), "-o", os.path.join(work, "bcd72s.tacit"), "--json"])
    found_scaled = scaled[-1]["inputs_read"]
    rmse = (bcd[-1]["train_rmse"], scaled[-1]["train_rmse"])
    model = os.path.join(work, "prox72.tacit")
    run([tacit, "train", *PROX_72, "-i", d("recovery_U.txt"), "--targets",
         d("recovery_Y.txt"), "-o", model, "--json"])
    pruned = run([tacit, "prune", model, "-o", os.path.join(work, "prox72_small.tacit"),
                  "--json"])
    found_prox = pruned[-1]["kept_inputs"]
    model = os.path.join(work, "sel72.tacit")
    sel = run([tacit, "train", *PROX_72_SELECT, "-i", d("recovery_U.txt"), "--targets",
               d("recovery_Y.txt"), "-o", model, "--json"])
    screened = sel[-1]["candidates"]
    pruned = run([tacit, "prune", model, "-o", os.path.join(work, "sel72_small.tacit"),
                  "--json"])
    found_sel = pruned[-1]["kept_inputs"]
    bsel = run([tacit, "bcd", *BCD_72_SELECT, "-i", d("recovery_U.txt"), "--targets",
                d("recovery_Y.txt"), "-o", os.path.join(work, "bcd72sel.tacit"), "--json"])
    found_bsel = bsel[-1]["inputs_read"]
    grow = run([tacit, "bcd", *BCD_72_GROWTH, "-i", d("recovery_U.txt"), "--targets",
                d("recovery_Y.txt"), "-o", os.path.join(work, "bcd72g.tacit"), "--json"])
    found_grow = grow[-1]["inputs_read"]
    gpen = run([tacit, "bcd", *BCD_72_GROWTH_PEN, "-i", d("recovery_U.txt"), "--targets",
                d("recovery_Y.txt"), "-o", os.path.join(work, "bcd72gp.tacit"), "--json"])
    found_gpen = gpen[-1]["inputs_read"]
    rmse = rmse + (bsel[-1]["train_rmse"], grow[-1]["train_rmse"], gpen[-1]["train_rmse"])
    return (truth, found_bcd, found_scaled, found_prox, rmse, screened, found_sel,
            found_bsel, found_grow, found_gpen)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("tacit", help="the tacit command (build/tacit)")
    ap.add_argument("--seeds", type=int, nargs="*", default=[1, 2, 3, 4, 5],
                    help="further generator seeds (besides the committed data)")
    ap.add_argument("--only", choices=["7.1", "7.2"], help="one section only")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as work:
        sets = [("committed (seed 0)", os.path.join(ROOT, "tests", "data", "bcd"))]
        for s in args.seeds:
            out = os.path.join(work, "seed%d" % s)
            subprocess.run([sys.executable, os.path.join(HERE, "make_bcd_data.py"),
                            "--seed", str(s), "--out", out], check=True)
            sets.append(("seed %d" % s, out))
        if args.only != "7.2":
            print("7.1: test RMSE, BCD after iterations 1-5 | Adam | gap (BCD - Adam)")
            for name, data in sets:
                per, adam = section_71(args.tacit, data, work)
                print("%s: %s | %.4f | %+.4f" % (name, ", ".join("%.4f" % v for v in per),
                                                 adam, per[-1] - adam), flush=True)
        if args.only != "7.1":
            print("7.2: F1 (inputs read, true ones among them) | proximal gradient | two-stage "
                  "(screened; selected) | BCD | BCD --state-scale 1 | the same + BCD refit "
                  "selection | the same with --growth 1.03 | and --penalty-growth 1.03; BCD "
                  "training RMSE (plain, scaled, refit-selected, growth, penalty growth)")
            for name, data in sets:
                (truth, fb, fs, fp, rmse, scr, fsel, fbsel, fg, fgp) = section_72(
                    args.tacit, data, work)
                t = set(truth)
                cell = lambda f: "%.3f (%d, %d)" % (f1(f, truth), len(f), len(t & set(f)))
                print("%s: prox %s | two-stage (%d, %d); %s | BCD %s | scaled %s | "
                      "+select %s | growth %s | penalty growth %s; RMSE %s" %
                      (name, cell(fp), len(scr), len(t & set(scr)), cell(fsel), cell(fb),
                       cell(fs), cell(fbsel), cell(fg), cell(fgp),
                       ", ".join("%.2f" % v for v in rmse)),
                      flush=True)

if __name__ == "__main__":
    main()
