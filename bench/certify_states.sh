#!/usr/bin/env bash
# Time per input of `tacit-mpi certify` by states on 1 and 2 ranks against
# `tacit certify` on the whole model, in the same run, on a generated cyclic
# CSR model (N states, 8 random columns per row of A with ||A||_inf 0.5,
# each state reading 8 of 784 inputs, 10 outputs each reading N/10 states,
# ReLU; 20 random inputs labelled by the model's own prediction); each
# configuration run 3 times, interleaved, the best of 3 per input reported.
# Usage: bench/certify_states.sh BUILD_DIR [N] [BOUND]   (default 100000, interval)
set -euo pipefail
build=$1 n=${2:-100000} bound=${3:-interval}
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
/usr/bin/python3 - "$dir" "$n" <<'PY'
import json, os, random, sys
d, n = sys.argv[1], int(sys.argv[2])
p, q = 784, 10
rng = random.Random(7)
os.makedirs(f"{d}/model")
def mtx(name, rows, cols, entries):
    with open(f"{d}/model/{name}", "w") as f:
        f.write("%%MatrixMarket matrix coordinate real general\n")
        f.write(f"{rows} {cols} {len(entries)}\n")
        f.writelines(f"{i + 1} {j + 1} {v!r}\n" for i, j, v in entries)
A = []
for i in range(n):
    cols = rng.sample(range(n), 8)
    vals = [rng.uniform(-1, 1) for _ in cols]
    s = sum(abs(v) for v in vals)
    A += [(i, j, 0.5 * v / s) for j, v in zip(cols, vals)]
mtx("A.mtx", n, n, A)
mtx("B.mtx", n, p, [(i, j, rng.uniform(-0.5, 0.5)) for i in range(n) for j in rng.sample(range(p), 8)])
mtx("C.mtx", q, n, [(k, i, rng.uniform(-1, 1)) for k in range(q) for i in range(k, n, q)])
with open(f"{d}/model/bx.txt", "w") as f:
    f.writelines(f"{rng.uniform(-0.1, 0.1)!r}\n" for _ in range(n))
with open(f"{d}/model/by.txt", "w") as f:
    f.writelines("0\n" for _ in range(q))
json.dump({"format": "tacit-model", "version": 1,
           "blocks": [{"name": "states", "size": n, "activation": "relu"}]},
          open(f"{d}/model/model.json", "w"))
with open(f"{d}/U.txt", "w") as f:
    for _ in range(20):
        f.write(" ".join(f"{rng.random():.6f}" for _ in range(p)) + "\n")
PY
"$build/tacit" convert "$dir/model" "$dir/model.tacit" -q
"$build/tacit" solve "$dir/model.tacit" -i "$dir/U.txt" -o "$dir/Y.txt" -q
/usr/bin/python3 - "$dir" <<'PY'
import sys
d = sys.argv[1]
rows = [[float(x) for x in l.split()] for l in open(f"{d}/Y.txt") if l.strip()]
open(f"{d}/L.txt", "w").writelines(f"{max(range(len(r)), key=lambda i: r[i])}\n" for r in rows)
PY
args=(-i "$dir/U.txt" --labels "$dir/L.txt" --eps 0.001,0.01 --bound "$bound" --json)
# Each configuration 3 times, interleaved (the host is shared): the best of 3.
for rep in 1 2 3; do
  "$build/tacit" certify "$dir/model.tacit" "${args[@]}" --threads 2 > "$dir/t2_$rep.json"
  "$build/tacit" certify "$dir/model.tacit" "${args[@]}" --threads 1 > "$dir/t1_$rep.json"
  for np in 1 2; do
    mpirun --oversubscribe -np "$np" "$build/tacit-mpi" certify "$dir/model.tacit" \
      "${args[@]}" --threads 1 > "$dir/m${np}_$rep.json"
  done
done
/usr/bin/python3 - "$dir" "$n" "$bound" <<'PY'
import json, sys
d, n, bound = sys.argv[1], sys.argv[2], sys.argv[3]
runs = {"tacit certify --threads 2": "t2", "tacit certify --threads 1": "t1",
        "tacit-mpi certify, 1 rank": "m1", "tacit-mpi certify, 2 ranks": "m2"}
docs = {k: min((json.load(open(f"{d}/{v}_{r}.json")) for r in (1, 2, 3)),
               key=lambda doc: doc["seconds_per_input"]) for k, v in runs.items()}
base = docs["tacit certify --threads 2"]
print(f"n = {n}, {bound} bound, {base['inputs']} inputs, certified "
      f"{[e['certified'] for e in base['certified']]}")
for k, doc in docs.items():
    assert doc["certified"] == base["certified"] and doc["correct"] == base["correct"], k
    t = doc["seconds_per_input"]
    print(f"{k:28s} {t * 1e3:9.1f} ms per input  {t / base['seconds_per_input']:5.2f}x")
PY
