#!/usr/bin/env bash
# Channels, parameters, FLOPs, accuracy and solve time of a structured network
# trained on Fashion-MNIST with a group lasso on its channels and pruned: one
# table row per lambda (0: no penalty). By default the small CNN (conv 1->8,
# conv 8->16 stride 2, conv 16->16 stride 2, ReLUs, dense 784->10;
# tests/data/train/fashion_cnn_init.onnx); tools/prune_fashion_resnet.sh runs
# it on the small ResNet.
#
#   tools/prune_fashion_cnn.sh TACIT DATA_DIR OUT_DIR [LAMBDA...]
#
# Recipe: SGD momentum 0.9, lr LR (default 0.05), batch 128, float32, EPOCHS epochs
# (default 5) with the penalty, tacit prune, then TUNE epochs (default 1) of
# the pruned network without it at lr TUNE_LR (default 0.01). Accuracies are
# on the 10,000 test images, from `tacit solve` outputs; the solve times are
# the best of REPEAT (default 5) solves of the whole test set, float32,
# THREADS threads (default 2). The pruned network's outputs are checked equal
# (as printed, every digit) to the trained network's; a row where they differ
# says so.
#
# Environment:
#   MODEL    the initial network (default tests/data/train/fashion_cnn_init.onnx)
#   COLUMNS  how the channel column lists the feature-map blocks (those with
#            more than one state per channel, numbered from 0 in the model's
#            order): space-separated items, each one block index or several
#            joined by '/' (e.g. "2/1 4/3"); default every such block, in order
#   TITLE    the channel column's title before "(of ...)" (default "channels kept")
#   ONNX     1 (default): also export each pruned network (tacit export-onnx),
#            run it in PyTorch in float64 on the whole test set
#            (tools/onnx_torch.py compare against tacit solve --precision
#            float64: largest relative error, predicted classes that differ)
#            and re-import it (tacit import-onnx --keep-layers: float32 outputs compared with
#            the pruned network's, every digit); 0: skip
#   REUSE    1: keep the trained and fine-tuned networks already in OUT_DIR
#            (prox_LAMBDA.tacit, tuned_LAMBDA.tacit with their JSON reports)
#            and redo the rest (prune, solves, checks); default 0: train anew
#   LIMIT    train on the first LIMIT training images only (a quick check of
#            the script; default all 60,000)
#
# Parameters: "trainable" counts the network's weights and biases as training
# sees them (a convolution's bias is one value per channel; `tacit train
# --json`), "stored" is `tacit prune --json`'s count (A, B, C, D plus a bias
# per state and output; a classifier after a global pooling stored folded
# with it). FLOPs are `tacit prune --json`'s: two per stored multiply-add of
# one evaluation of A, B, C, D.
set -euo pipefail
tacit=$1 data=$2 out=$3
shift 3
lambdas=("$@")
[ ${#lambdas[@]} -gt 0 ] || lambdas=(0 0.002 0.005)
here=$(cd "$(dirname "$0")" && pwd)
init=${MODEL:-"$here/../tests/data/train/fashion_cnn_init.onnx"}
lr=${LR:-0.05} epochs=${EPOCHS:-5} tune=${TUNE:-1} tune_lr=${TUNE_LR:-0.01} threads=${THREADS:-2}
repeat=${REPEAT:-5} onnx=${ONNX:-1} columns=${COLUMNS:-} title=${TITLE:-channels kept}
mkdir -p "$out"
common=(--data "$data" --optimizer sgd --momentum 0.9 --batch-size 128
        --precision float32 --threads "$threads" --json)
[ -z "${LIMIT:-}" ] || common+=(--limit "$LIMIT")
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
# The channel column: prune JSON, field (before or after) -> "8, 16, 16" or "8/8, 16/16".
channels() { /usr/bin/python3 - "$1" "$2" "$columns" <<'EOF'
import json, sys
d, field, columns = json.load(open(sys.argv[1])), sys.argv[2], sys.argv[3]
maps = [c[field] for c in d["channels"] if c["plane"] > 1]
items = columns.split() if columns else [str(k) for k in range(len(maps))]
print(", ".join("/".join(str(maps[int(k)]) for k in item.split("/")) for item in items))
EOF
}
trainable() { grep '"event":"done"' "$1" | /usr/bin/python3 -c \
  'import json,sys; print(json.loads(sys.stdin.read())["parameters"])'; }
# The full network's channels, for the header (nothing is zero: nothing goes).
"$tacit" prune "$init" --precision float32 --json -o "$out/init.tacit" > "$out/prune_init.json"
ocol= osep=
if [ "$onnx" = 1 ]; then
  ocol=" ONNX export: PyTorch float64 on the test set (largest relative error, classes differing); re-imported (float32) |"
  osep="---|"
fi
printf '| lambda | %s (of %s) | parameters trainable; stored | FLOPs per image | accuracy (trained = pruned) | solve of 10,000 images, trained -> pruned | after %s fine-tuning epoch(s) |%s\n|---|---|---|---|---|---|---|%s\n' \
  "$title" "$(channels "$out/prune_init.json" before)" "$tune" "$ocol" "$osep"
for l in "${lambdas[@]}"; do
  pen=()
  [ "$l" = 0 ] || pen=(--group-lasso "$l" --groups channels)
  [ "${REUSE:-0}" = 1 ] && [ -f "$out/prox_$l.tacit" ] ||
    "$tacit" train "$init" --shuffle 1 "${common[@]}" --lr "$lr" --epochs "$epochs" "${pen[@]}" \
      -o "$out/prox_$l.tacit" > "$out/prox_$l.json"
  if ! "$tacit" prune "$out/prox_$l.tacit" --precision float32 --json \
    -o "$out/pruned_$l.tacit" > "$out/prune_$l.json" 2> "$out/prune_$l.err"; then
    printf '| %s | %s |\n' "$l" "$(tail -1 "$out/prune_$l.err")"
    continue
  fi
  t0=$(solve "$out/prox_$l.tacit" "$out/Y_prox_$l.txt")
  t1=$(solve "$out/pruned_$l.tacit" "$out/Y_pruned_$l.txt")
  a0=$(accuracy "$out/Y_prox_$l.txt")%
  if ! cmp -s "$out/Y_prox_$l.txt" "$out/Y_pruned_$l.txt"; then
    echo "lambda $l: the pruned outputs differ" >&2
    a0="$a0 trained, $(accuracy "$out/Y_pruned_$l.txt")% pruned (outputs differ)"
  fi
  tuned=- p1=-
  if [ "$tune" != 0 ]; then
    [ "${REUSE:-0}" = 1 ] && [ -f "$out/tuned_$l.tacit" ] ||
      "$tacit" train "$out/pruned_$l.tacit" "${common[@]}" --lr "$tune_lr" --epochs "$tune" \
        -o "$out/tuned_$l.tacit" > "$out/tuned_$l.json"
    tuned=$(grep '"event":"done"' "$out/tuned_$l.json" | /usr/bin/python3 -c \
      'import json,sys; print("%.2f%%" % (100 * json.loads(sys.stdin.read())["validation_accuracy"]))')
    p1=$(trainable "$out/tuned_$l.json")
  fi
  p0=$(trainable "$out/prox_$l.json")
  check=
  if [ "$onnx" = 1 ]; then
    "$tacit" export-onnx "$out/pruned_$l.tacit" -o "$out/pruned_$l.onnx" > /dev/null
    "$tacit" solve "$out/pruned_$l.tacit" -i "$out/U.txt" -o "$out/Y64_pruned_$l.txt" \
      --precision float64 --threads "$threads" > /dev/null
    torch=$(/usr/bin/python3 "$here/onnx_torch.py" compare "$out/pruned_$l.onnx" \
      -i "$out/U.txt" -y "$out/Y64_pruned_$l.txt" || true)
    torch=$(echo "$torch" | sed -n 's/^max relative error \([^ ]*\) over.*differs on \([0-9]*\)$/\1, \2 differing/p')
    "$tacit" import-onnx "$out/pruned_$l.onnx" -o "$out/back_$l.tacit" --keep-layers > /dev/null
    "$tacit" solve "$out/back_$l.tacit" -i "$out/U.txt" -o "$out/Y_back_$l.txt" \
      --precision float32 --threads "$threads" > /dev/null
    same="same outputs"
    cmp -s "$out/Y_back_$l.txt" "$out/Y_pruned_$l.txt" || same="OUTPUTS DIFFER"
    check=" ${torch:-PyTorch run failed}; $same |"
  fi
  /usr/bin/python3 - "$out/prune_$l.json" "$l" "$a0" "$t0" "$t1" "$tuned" "$p0" "$p1" \
    "$(channels "$out/prune_$l.json" after)" "$check" <<'EOF'
import json, sys
d = json.load(open(sys.argv[1]))
l, a0, t0, t1, tuned, p0, p1, ch, check = sys.argv[2:]
b, a = d["before"], d["after"]
def n(x):
    return "{:,}".format(int(x))
tp = n(p0) if p1 == "-" else "%s -> %s (%.1f%%)" % (n(p0), n(p1), 100 * int(p1) / int(p0))
print("| %s | %s | %s; %s -> %s | %s -> %s (%.1f%%) | %s | %s s -> %s s (%.2fx) | %s |%s" % (
    l, ch, tp, n(b["parameters"]), n(a["parameters"]), n(b["flops"]), n(a["flops"]),
    100 * a["flops"] / b["flops"], a0, t0, t1, float(t0) / float(t1), tuned, check))
EOF
done
