#!/usr/bin/env bash
# Channels, FLOPs, accuracy and solve time of the small Fashion-MNIST CNN
# (conv 1->8, conv 8->16 stride 2, conv 16->16 stride 2, ReLUs, dense 784->10;
# tests/data/train/fashion_cnn_init.onnx) trained with a group lasso on its
# channels and pruned: one table row per lambda (0: no penalty).
#
#   tools/prune_fashion_cnn.sh TACIT DATA_DIR OUT_DIR [LAMBDA...]
#
# Recipe: SGD momentum 0.9, lr LR (default 0.05), batch 128, float32, EPOCHS epochs
# (default 5) with the penalty, tacit prune, then TUNE epochs (default 1) of
# the pruned network without it at lr TUNE_LR (default 0.01). Accuracies are
# on the 10,000 test images, from `tacit solve` outputs; the solve times are
# the best of REPEAT (default 5) solves of the whole test set, float32,
# THREADS threads (default 2). The pruned network's outputs are checked equal
# (as printed, every digit) to the trained network's.
set -euo pipefail
tacit=$1 data=$2 out=$3
shift 3
lambdas=("$@")
[ ${#lambdas[@]} -gt 0 ] || lambdas=(0 0.002 0.005)
here=$(cd "$(dirname "$0")" && pwd)
init="$here/../tests/data/train/fashion_cnn_init.onnx"
lr=${LR:-0.05} epochs=${EPOCHS:-5} tune=${TUNE:-1} tune_lr=${TUNE_LR:-0.01} threads=${THREADS:-2}
repeat=${REPEAT:-5}
mkdir -p "$out"
common=(--data "$data" --optimizer sgd --momentum 0.9 --batch-size 128
        --precision float32 --threads "$threads" --json)
# The test images as text (bytes / 255, as the IDX reader scales them).
if [ ! -f "$out/U.txt" ]; then
  /usr/bin/python3 - "$data" "$out" <<'EOF'
import gzip, os, sys
d, out = sys.argv[1], sys.argv[2]
def read(name):
    for n in (name, name + ".gz"):
        p = os.path.join(d, n)
        if os.path.exists(p):
            return (gzip.open if p.endswith(".gz") else open)(p, "rb").read()
    raise SystemExit("no " + name + " in " + d)
img, lab = read("t10k-images-idx3-ubyte"), read("t10k-labels-idx1-ubyte")
n = int.from_bytes(img[4:8], "big")
with open(os.path.join(out, "U.txt"), "w") as f:
    for k in range(n):
        px = img[16 + 784 * k:16 + 784 * (k + 1)]
        f.write(" ".join(repr(b / 255) for b in px) + "\n")
with open(os.path.join(out, "labels.txt"), "w") as f:
    f.write("\n".join(str(b) for b in lab[8:8 + n]) + "\n")
EOF
fi
accuracy() { /usr/bin/python3 - "$1" "$out/labels.txt" <<'EOF'
import sys
ys = [list(map(float, l.split())) for l in open(sys.argv[1]) if l.strip()]
ls = [int(l) for l in open(sys.argv[2]) if l.strip()]
print("%.2f" % (100 * sum(max(range(len(y)), key=y.__getitem__) == c for y, c in zip(ys, ls)) / len(ls)))
EOF
}
solve() { # MODEL Y -> best solve seconds
  "$tacit" solve "$1" -i "$out/U.txt" -o "$2" --precision float32 --threads "$threads" \
    --repeat "$repeat" --json | /usr/bin/python3 -c \
    'import json,sys; print("%.3f" % json.load(sys.stdin)["best_solve_seconds"])'
}
printf '| lambda | channels kept (of 8, 16, 16) | parameters | FLOPs per image | accuracy (trained = pruned) | solve of 10,000 images, trained -> pruned | after %s fine-tuning epoch(s) |\n|---|---|---|---|---|---|---|\n' "$tune"
for l in "${lambdas[@]}"; do
  pen=()
  [ "$l" = 0 ] || pen=(--group-lasso "$l" --groups channels)
  "$tacit" train "$init" --shuffle 1 "${common[@]}" --lr "$lr" --epochs "$epochs" "${pen[@]}" \
    -o "$out/prox_$l.tacit" > "$out/prox_$l.json"
  if ! "$tacit" prune "$out/prox_$l.tacit" --precision float32 --json \
    -o "$out/pruned_$l.tacit" > "$out/prune_$l.json" 2> "$out/prune_$l.err"; then
    printf '| %s | %s |\n' "$l" "$(tail -1 "$out/prune_$l.err")"
    continue
  fi
  t0=$(solve "$out/prox_$l.tacit" "$out/Y_prox_$l.txt")
  t1=$(solve "$out/pruned_$l.tacit" "$out/Y_pruned_$l.txt")
  cmp -s "$out/Y_prox_$l.txt" "$out/Y_pruned_$l.txt" || echo "lambda $l: the pruned outputs differ" >&2
  a0=$(accuracy "$out/Y_prox_$l.txt")
  tuned=-
  if [ "$tune" != 0 ]; then
    "$tacit" train "$out/pruned_$l.tacit" "${common[@]}" --lr "$tune_lr" --epochs "$tune" \
      -o "$out/tuned_$l.tacit" > "$out/tuned_$l.json"
    tuned=$(grep '"event":"done"' "$out/tuned_$l.json" | /usr/bin/python3 -c \
      'import json,sys; print("%.2f%%" % (100 * json.loads(sys.stdin.read())["validation_accuracy"]))')
  fi
  /usr/bin/python3 - "$out/prune_$l.json" "$l" "$a0" "$t0" "$t1" "$tuned" <<'EOF'
import json, sys
d = json.load(open(sys.argv[1]))
l, a0, t0, t1, tuned = sys.argv[2:]
ch = ", ".join(str(c["after"]) for c in d["channels"] if c["plane"] > 1)
b, a = d["before"], d["after"]
print("| %s | %s | %d -> %d (%.1f%%) | %d -> %d (%.1f%%) | %s%% | %s s -> %s s (%.2fx) | %s |" % (
    l, ch, b["parameters"], a["parameters"], 100 * a["parameters"] / b["parameters"],
    b["flops"], a["flops"], 100 * a["flops"] / b["flops"], a0, t0, t1,
    float(t0) / float(t1), tuned))
EOF
done
