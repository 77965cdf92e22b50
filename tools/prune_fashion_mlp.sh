#!/usr/bin/env bash
# Accuracy against hidden states for the Fashion-MNIST MLP 784-64-32-16-10:
# proximal SGD with a group lasso on the hidden states (rows of (A, B) with
# their biases), tacit prune, then fine-tuning of the smaller model; one
# table row per lambda.
#
#   tools/prune_fashion_mlp.sh TACIT DATA_DIR OUT_DIR [LAMBDA...]
#
# Recipe: SGD momentum 0.9, lr 0.05, batch 128, float32, 10 epochs with the
# penalty (reweighted every E epochs when REWEIGHT=E is set), then 2 epochs
# without it on the pruned model at lr TUNE_LR (default 0.05). Accuracies are
# on the 10,000 test images.
set -euo pipefail
tacit=$1 data=$2 out=$3
shift 3
lambdas=("$@")
[ ${#lambdas[@]} -gt 0 ] || lambdas=(0.0005 0.001 0.002 0.004)
epochs=${EPOCHS:-10} tune=${TUNE:-2} seed=${SEED:-1} threads=${THREADS:-2}
reweight=${REWEIGHT:-0} tune_lr=${TUNE_LR:-0.05}
mkdir -p "$out"
common=(--data "$data" --optimizer sgd --momentum 0.9 --batch-size 128
        --precision float32 --threads "$threads" --json)
last() { grep '"event":"done"' "$1" | /usr/bin/python3 -c \
  'import json,sys; print(json.loads(sys.stdin.read())["validation_accuracy"])'; }
printf '| lambda | states | parameters | accuracy after prox-SGD (= pruned) | after %s fine-tuning epochs |\n|---|---|---|---|---|\n' "$tune"
for l in "${lambdas[@]}"; do
  pen=()
  if [ "$l" != 0 ]; then
    pen=(--group-lasso "$l" --groups states)
    [ "$reweight" = 0 ] || pen+=(--reweight "$reweight")
  fi
  "$tacit" train --init mlp:784,64,32,16,10 --seed "$seed" --shuffle "$seed" "${common[@]}" \
    --lr 0.05 --epochs "$epochs" "${pen[@]}" -o "$out/prox_$l.tacit" > "$out/prox_$l.json"
  "$tacit" prune "$out/prox_$l.tacit" --keep-inputs --precision float32 --json \
    -o "$out/pruned_$l.tacit" > "$out/prune_$l.json"
  "$tacit" train "$out/pruned_$l.tacit" "${common[@]}" --lr "$tune_lr" --epochs "$tune" \
    -o "$out/tuned_$l.tacit" > "$out/tuned_$l.json"
  read -r states params full <<< "$(/usr/bin/python3 -c '
import json,sys; d=json.load(open(sys.argv[1]))
print(d["after"]["states"], d["after"]["parameters"], d["before"]["parameters"])' "$out/prune_$l.json")"
  printf '| %s | %s | %s (%.1f%%) | %.2f%% | %.2f%% |\n' "$l" "$states" "$params" \
    "$(/usr/bin/python3 -c "print(100*$params/$full)")" \
    "$(/usr/bin/python3 -c "print(100*$(last "$out/prox_$l.json"))")" \
    "$(/usr/bin/python3 -c "print(100*$(last "$out/tuned_$l.json"))")"
done
