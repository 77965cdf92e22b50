#!/usr/bin/env bash
# tacit-mpi against tacit on the same model, with 1, 2 and 3 ranks: the
# states of `solve` bit for bit (as printed, plain Picard and Anderson), the
# outputs to 1e-13 relative, the rows of `sensitivity` to 1e-12 relative,
# the lambda_PF(|A|) intervals containing each other's... and bad input: an
# error from every rank and a non-zero exit, never a hang (timeout).
# certify by states: the counts, radii and fields of tacit certify (global and
# interval bounds), also under a memory budget one rank cannot meet.
# Structured models (and --by batch) are distributed by batch: the outputs,
# states, certificate counts and radii the same bits as tacit's.
# Usage: cli_test.sh MPIEXEC TACIT_MPI TACIT TACIT_MPI_TESTS [SOURCE_DIR]
set -euo pipefail
mpiexec=$1 mpi_cli=$2 cli=$3 tests=$4 source_dir=${5:-}
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
# 300 s per command: a hang still ends the run, and the sanitizer build on a slow
# 2-core host needs about 70 s for the certification by batch of the Fashion MLP.
run() { local np=$1; shift; timeout 300 "$mpiexec" --oversubscribe -np "$np" "$@"; }
fail() { echo "FAILED: $*" >&2; exit 1; }

run 1 "$tests" --make-fixture "$dir"
"$cli" solve "$dir/model.tacit" -i "$dir/U.txt" -o "$dir/Yref.txt" --states "$dir/Xref.txt" \
  --method picard -q
"$cli" wellposed "$dir/model.tacit" --json > "$dir/wp_ref.json"

for np in 1 2 3; do
  run "$np" "$mpi_cli" solve "$dir/model.tacit" -i "$dir/U.txt" -o "$dir/Y$np.txt" \
    --states "$dir/X$np.txt" --json > "$dir/solve$np.json"
  cmp "$dir/Xref.txt" "$dir/X$np.txt" || fail "states with $np ranks differ from tacit's"
  run "$np" "$mpi_cli" wellposed "$dir/model.tacit" --json --slepc > "$dir/wp$np.json"
  /usr/bin/python3 - "$dir" "$np" <<'PY'
import json, sys
d, np = sys.argv[1], int(sys.argv[2])
def rows(p):
    return [[float(x) for x in l.split()] for l in open(p) if l.strip()]
ref, got = rows(f"{d}/Yref.txt"), rows(f"{d}/Y{np}.txt")
assert len(ref) == len(got) == 40, (len(ref), len(got))
worst = max(abs(a - b) / max(1.0, abs(a)) for r, g in zip(ref, got) for a, b in zip(r, g))
assert worst <= 1e-13, f"outputs differ by {worst} relative"
s = json.load(open(f"{d}/solve{np}.json"))
assert s["ranks"] == np and s["status"] == "converged" and s["columns"] == 40, s
assert len(s["partition"]["ranks"]) == np and len(s["rank_seconds"]["solve"]) == np
assert sum(r["a_nnz"] for r in s["partition"]["ranks"]) == s["partition"]["a_nnz"]
w, wr = json.load(open(f"{d}/wp{np}.json")), json.load(open(f"{d}/wp_ref.json"))
lo, up = w["lambda_pf"]["lower"], w["lambda_pf"]["upper"]
rlo, rup = wr["lambda_pf"]["lower"], wr["lambda_pf"]["upper"]
assert lo <= up and max(lo, rlo) <= min(up, rup), (lo, up, rlo, rup)
assert w["certified"] == wr["certified"] and w["n"] == wr["n"] and w["nnz"] == wr["nnz"]
assert abs(w["norm_inf"] - wr["norm_inf"]) <= 1e-14 * wr["norm_inf"]
assert abs(w["norm_1"] - wr["norm_1"]) <= 1e-14 * wr["norm_1"]
e = w["slepc_estimate"]
assert e is not None and lo - 1e-8 <= e <= up + 1e-8, (e, lo, up)
print(f"{np} ranks: outputs within {worst:.1e}, lambda_PF in [{lo}, {up}]")
PY
done

# A model directory (Matrix Market), each rank reading its share of the files.
"$cli" convert "$dir/model.tacit" "$dir/modeldir" -q
for np in 2 3; do
  run "$np" "$mpi_cli" solve "$dir/modeldir" -i "$dir/U.txt" -o "$dir/Ydir$np.txt" \
    --states "$dir/Xdir$np.txt" -q
  cmp "$dir/Xref.txt" "$dir/Xdir$np.txt" || fail "states from the directory with $np ranks"
  cmp "$dir/Y$np.txt" "$dir/Ydir$np.txt" || fail "outputs from the directory with $np ranks"
done

# Anderson acceleration: the states bit for bit with tacit's at the same depth.
"$cli" solve "$dir/model.tacit" -i "$dir/U.txt" -o "$dir/YAref.txt" --states "$dir/XAref.txt" \
  --method picard --anderson 4 --json > "$dir/solveA_ref.json"
for np in 1 2 3; do
  run "$np" "$mpi_cli" solve "$dir/model.tacit" -i "$dir/U.txt" -o "$dir/YA$np.txt" \
    --states "$dir/XA$np.txt" --method anderson --anderson 4 --json > "$dir/solveA$np.json"
  cmp "$dir/XAref.txt" "$dir/XA$np.txt" || fail "Anderson states with $np ranks differ"
  /usr/bin/python3 - "$dir" "$np" <<'PY'
import json, sys
d, np = sys.argv[1], int(sys.argv[2])
s, r = json.load(open(f"{d}/solveA{np}.json")), json.load(open(f"{d}/solveA_ref.json"))
for k in ("status", "iterations", "residual", "columns"):
    assert s[k] == r[k], (k, s[k], r[k])
assert s["anderson_depth"] == 4 and "Anderson" in s["method_reason"], s
print(f"{np} ranks: Anderson depth 4, {s['iterations']} iterations as tacit's")
PY
done

# Sensitivity rows: the same rows as tacit's to 1e-12 relative, the same fields.
"$cli" sensitivity "$dir/model.tacit" -o "$dir/Sref.txt" --top 3 --json > "$dir/sens_ref.json"
for np in 1 2 3; do
  for method in gmres richardson; do
    run "$np" "$mpi_cli" sensitivity "$dir/model.tacit" -o "$dir/S$np$method.txt" --top 3 \
      --method "$method" --json > "$dir/sens$np$method.json"
  done
  run "$np" "$mpi_cli" sensitivity "$dir/model.tacit" --rows 3,1 -o "$dir/Srows$np.txt" -q
  /usr/bin/python3 - "$dir" "$np" <<'PY'
import json, sys
d, np = sys.argv[1], int(sys.argv[2])
def rows(p):
    return [[float(x) for x in l.split()] for l in open(p) if l.strip()]
ref = rows(f"{d}/Sref.txt")
r = json.load(open(f"{d}/sens_ref.json"))
for method in ("gmres", "richardson"):
    got = rows(f"{d}/S{np}{method}.txt")
    assert len(got) == len(ref) == r["q"], (len(got), len(ref))
    scale = max(abs(x) for row in ref for x in row)
    worst = max(abs(a - b) / scale for g, f in zip(got, ref) for a, b in zip(g, f))
    assert worst <= 1e-12, f"{method}: rows differ by {worst} relative"
    s = json.load(open(f"{d}/sens{np}{method}.json"))
    for k in ("n", "p", "q", "rows"):
        assert s[k] == r[k], (k, s[k], r[k])
    assert s["method"] == method and s["converged"] and s["ranks"] == np, s
    assert s["error_bound"] <= 1e-12 and 0 < s["theta"] < 1, s
    assert s["lambda_pf"]["upper"] < 1, s
    assert [t["indices"] for t in s["top"]] == [t["indices"] for t in r["top"]], s["top"]
    for a, b in zip(s["row_sums"], r["row_sums"]):
        assert abs(a - b) <= 1e-12 * abs(b), (a, b)
    print(f"{np} ranks, {method}: rows within {worst:.1e}, {s['iterations']} iterations")
part = rows(f"{d}/Srows{np}.txt")
assert part == [rows(f"{d}/S{np}gmres.txt")[3], rows(f"{d}/S{np}gmres.txt")[1]], "--rows 3,1"
PY
done

# Certification by states: the counts, radii and report fields of tacit certify
# with the global and interval bounds (the nominal states are Picard's on both
# sides: the margins are the same bits).
/usr/bin/python3 - "$dir" <<'PY'
import sys
d = sys.argv[1]
rows = [[float(x) for x in l.split()] for l in open(f"{d}/Yref.txt") if l.strip()]
with open(f"{d}/L.txt", "w") as f, open(f"{d}/Lbad.txt", "w") as g:
    for j, r in enumerate(rows):
        best = max(range(len(r)), key=lambda i: r[i])
        f.write(f"{(best + 1) % len(r) if j % 5 == 4 else best}\n")
        g.write(f"{len(r) if j == 3 else best}\n")
PY
cert_args=(-i "$dir/U.txt" --labels "$dir/L.txt" --eps 0.0001,0.001,0.01,0.1)
for bound in global interval; do
  "$cli" certify "$dir/model.tacit" "${cert_args[@]}" --bound "$bound" \
    --radius-output "$dir/CR_$bound.txt" --json > "$dir/cs_ref_$bound.json"
  for np in 1 2 3; do
    run "$np" "$mpi_cli" certify "$dir/model.tacit" "${cert_args[@]}" --bound "$bound" \
      --radius-output "$dir/CR_$bound$np.txt" --json > "$dir/cs_$bound$np.json"
    cmp "$dir/CR_$bound.txt" "$dir/CR_$bound$np.txt" || fail "$bound radii by states, $np ranks"
    /usr/bin/python3 - "$dir" "$bound" "$np" <<'PY'
import json, sys
d, bound, np = sys.argv[1], sys.argv[2], int(sys.argv[3])
r = json.load(open(f"{d}/cs_ref_{bound}.json"))
c = json.load(open(f"{d}/cs_{bound}{np}.json"))
for k in ("inputs", "correct", "accuracy", "certified", "bound", "precision", "feed_forward",
          "well_posed_certified", "mean_radius", "median_radius", "linear_regions"):
    assert r[k] == c[k], (k, r[k], c[k])
for k in ("load_seconds", "setup_seconds", "certify_seconds", "seconds_per_input"):
    assert k in c, k
counts = [e["certified"] for e in c["certified"]]
assert counts[0] > 0 and counts[-1] < c["correct"], counts  # not vacuous
assert c["ranks"] == np and c["distribution"] == "states", c
assert len(c["partition"]["ranks"]) == np and len(c["rank_seconds"]["certify"]) == np
print(f"{np} ranks by states, {bound} bound: {c['correct']} correct, certified {counts}, "
      f"the same radii as tacit's")
PY
  done
done
# best (global, then interval) certifies as the interval bound.
run 2 "$mpi_cli" certify "$dir/model.tacit" "${cert_args[@]}" --json > "$dir/cs_best.json"
/usr/bin/python3 - "$dir" <<'PY'
import json, sys
d = sys.argv[1]
r, c = json.load(open(f"{d}/cs_ref_interval.json")), json.load(open(f"{d}/cs_best.json"))
assert c["bound"] == "best" and c["certified"] == r["certified"], (c["certified"], r["certified"])
PY

# A memory budget one rank cannot meet: refused on 1 rank, met by each of 3.
budget=$(( $(stat -c %s "$dir/model.tacit") * 6 / 10 ))
run 3 "$mpi_cli" solve "$dir/model.tacit" -i "$dir/U.txt" -o "$dir/Ymem.txt" \
  --memory-budget "$budget" --json > "$dir/mem.json"
cmp "$dir/Y3.txt" "$dir/Ymem.txt" || fail "outputs under a memory budget differ"
/usr/bin/python3 - "$dir/mem.json" "$budget" <<'PY'
import json, sys
s, budget = json.load(open(sys.argv[1])), int(sys.argv[2])
held = [r["bytes"] for r in s["partition"]["ranks"]]
assert max(held) <= budget < sum(held), (held, budget)
print(f"memory budget {budget} bytes: ranks hold {held}")
PY

# Certification by states of a model too large for one rank's budget: 2 ranks,
# each holding its share, the counts and radii of the run without a budget.
run 2 "$mpi_cli" certify "$dir/model.tacit" "${cert_args[@]}" --bound interval \
  --memory-budget "$budget" --radius-output "$dir/CRmem.txt" --json > "$dir/csmem.json"
cmp "$dir/CR_interval.txt" "$dir/CRmem.txt" || fail "radii under a memory budget differ"
/usr/bin/python3 - "$dir" "$budget" <<'PY'
import json, sys
d, budget = sys.argv[1], int(sys.argv[2])
c, r = json.load(open(f"{d}/csmem.json")), json.load(open(f"{d}/cs_ref_interval.json"))
held = [x["bytes"] for x in c["partition"]["ranks"]]
assert max(held) <= budget < sum(held), (held, budget)
assert c["certified"] == r["certified"] and c["correct"] == r["correct"]
print(f"certify by states under a budget of {budget} bytes: ranks hold {held}")
PY

# The lambda_PF certificate and the solve of a model too large for one
# rank's budget, each of 3 ranks holding its share.
run 3 "$mpi_cli" wellposed "$dir/model.tacit" --memory-budget "$budget" --json \
  > "$dir/wpmem.json"
cmp <(/usr/bin/python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["lambda_pf"])' \
      "$dir/wpmem.json") \
    <(/usr/bin/python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["lambda_pf"])' \
      "$dir/wp3.json") || fail "lambda_PF under a memory budget differs"

# By batch: a structured network (tacit export-resnet20's ResNet20, float32
# and float64) and a CSR model with --by batch, against tacit solve, bit for bit.
"$cli" export-resnet20 -o "$dir/r20.tacit" --precision float32 --inputs "$dir/R.txt" \
  --count 40 -q
"$cli" solve "$dir/r20.tacit" -i "$dir/R.txt" -o "$dir/RY32.txt" --precision float32 -q
"$cli" solve "$dir/r20.tacit" -i "$dir/R.txt" -o "$dir/RY64.txt" --states "$dir/RX64.txt" -q
"$cli" solve "$dir/model.tacit" -i "$dir/U.txt" -o "$dir/Yauto.txt" -q
for np in 1 2 3; do
  run "$np" "$mpi_cli" solve "$dir/r20.tacit" -i "$dir/R.txt" -o "$dir/RY32_$np.txt" \
    --precision float32 --threads 1 --json > "$dir/rsolve$np.json"
  cmp "$dir/RY32.txt" "$dir/RY32_$np.txt" || fail "ResNet20 float32 outputs with $np ranks"
  run "$np" "$mpi_cli" solve "$dir/r20.tacit" -i "$dir/R.txt" -o "$dir/RY64_$np.txt" \
    --states "$dir/RX64_$np.txt" --threads 1 -q
  cmp "$dir/RY64.txt" "$dir/RY64_$np.txt" || fail "ResNet20 float64 outputs with $np ranks"
  cmp "$dir/RX64.txt" "$dir/RX64_$np.txt" || fail "ResNet20 states with $np ranks"
  run "$np" "$mpi_cli" solve "$dir/model.tacit" -i "$dir/U.txt" -o "$dir/Yb$np.txt" \
    --by batch --threads 1 -q
  cmp "$dir/Yauto.txt" "$dir/Yb$np.txt" || fail "--by batch outputs with $np ranks"
  /usr/bin/python3 - "$dir/rsolve$np.json" "$np" <<'PY'
import json, sys
s, np = json.load(open(sys.argv[1])), int(sys.argv[2])
assert s["ranks"] == np and s["distribution"] == "batch" and s["columns"] == 40, s
parts = s["partition"]["ranks"]
assert len(parts) == np and parts[0]["inputs"][0] == 0 and parts[-1]["inputs"][1] == 40
assert all(a["inputs"][1] == b["inputs"][0] for a, b in zip(parts, parts[1:]))
assert all(p["bytes"] > 0 for p in parts) and len(s["rank_seconds"]["solve"]) == np
print(f"{np} ranks by batch: ResNet20 outputs and states the same bits as tacit's")
PY
done

# Certification by batch of a structured MLP (imported from ONNX): the same
# counts and radii as tacit certify.
if [ -n "$source_dir" ] && "$cli" import-onnx "$source_dir/tests/data/fashion/fashion_mlp.onnx" \
     -o "$dir/mlp.tacit" -q 2>/dev/null; then
  /usr/bin/python3 - "$dir" <<'PY'
import random, sys
d = sys.argv[1]
rng = random.Random(5)
with open(f"{d}/M.txt", "w") as f:
    for _ in range(40):
        f.write(" ".join(f"{rng.random():.6f}" for _ in range(784)) + "\n")
PY
  "$cli" solve "$dir/mlp.tacit" -i "$dir/M.txt" -o "$dir/MY.txt" -q
  /usr/bin/python3 - "$dir" <<'PY'
import sys
d = sys.argv[1]
rows = [[float(x) for x in l.split()] for l in open(f"{d}/MY.txt") if l.strip()]
with open(f"{d}/ML.txt", "w") as f:
    for j, r in enumerate(rows):
        best = max(range(len(r)), key=lambda i: r[i])
        f.write(f"{(best + 1) % len(r) if j % 5 == 4 else best}\n")
PY
  certify_args=(-i "$dir/M.txt" --labels "$dir/ML.txt" --eps 0.01,0.05,0.2 --domain 0,1)
  "$cli" certify "$dir/mlp.tacit" "${certify_args[@]}" --radius-output "$dir/MR.txt" \
    --json > "$dir/cref.json"
  for np in 1 2 3; do
    run "$np" "$mpi_cli" certify "$dir/mlp.tacit" "${certify_args[@]}" \
      --radius-output "$dir/MR$np.txt" --threads 1 --json > "$dir/c$np.json"
    cmp "$dir/MR.txt" "$dir/MR$np.txt" || fail "radii with $np ranks differ from tacit's"
    /usr/bin/python3 - "$dir" "$np" <<'PY'
import json, sys
d, np = sys.argv[1], int(sys.argv[2])
r, c = json.load(open(f"{d}/cref.json")), json.load(open(f"{d}/c{np}.json"))
for k in ("inputs", "correct", "certified", "linear_regions", "mean_radius",
          "median_radius", "feed_forward", "well_posed_certified", "bound", "domain"):
    assert r[k] == c[k], (k, r[k], c[k])
assert c["ranks"] == np and len(c["rank_seconds"]["certify"]) == np
print(f"{np} ranks by batch: {c['correct']} correct, certified "
      f"{[e['certified'] for e in c['certified']]}, the same radii as tacit's")
PY
  done
else
  echo "no ONNX import in this build: certification by batch not checked"
fi

# Bad input: every rank reports, the exit code is the command's, no hang.
expect_error() { # CODE TEXT NP ARGS...
  local code=$1 text=$2 np=$3; shift 3
  set +e
  run "$np" "$mpi_cli" "$@" > "$dir/out.txt" 2> "$dir/err.txt"
  local rc=$?
  set -e
  [ "$rc" -ne 124 ] || fail "timed out: $*"
  [ "$rc" -eq "$code" ] || { cat "$dir/err.txt" >&2; fail "exit $rc, expected $code: $*"; }
  # Each rank's report (counted as occurrences: mpirun may join the ranks' lines).
  local r reports
  for ((r = 0; r < np; r++)); do
    reports=$(grep -o "(rank $r of $np): error: " "$dir/err.txt" | wc -l)
    [ "$reports" -eq 1 ] || { cat "$dir/err.txt" >&2; fail "rank $r reported $reports errors: $*"; }
  done
  reports=$(grep -o "$text" "$dir/err.txt" | wc -l)
  [ "$reports" -ge "$np" ] || { cat "$dir/err.txt" >&2; fail "$reports of $np ranks report '$text': $*"; }
}
head -c -100 "$dir/model.tacit" > "$dir/cut.tacit"
expect_error 2 "truncated" 3 solve "$dir/cut.tacit" -i "$dir/U.txt" -o "$dir/Y.txt"
expect_error 2 "cannot open" 2 wellposed "$dir/absent.tacit"
expect_error 1 "without states" 3 wellposed "$dir/tiny.tacit"
expect_error 2 "U7.txt:1" 2 solve "$dir/model.tacit" -i "$dir/U7.txt" -o "$dir/Y.txt"
expect_error 1 "usage error" 2 solve "$dir/model.tacit" -i "$dir/U.txt" -o "$dir/Y.txt" \
  --method anderson --anderson 0
expect_error 1 "more than the memory budget" 1 solve "$dir/model.tacit" -i "$dir/U.txt" \
  -o "$dir/Y.txt" --memory-budget "$budget"
expect_error 2 "U7.txt:1" 3 solve "$dir/r20.tacit" -i "$dir/U7.txt" -o "$dir/Y.txt"
expect_error 1 "usage error" 2 solve "$dir/r20.tacit" -i "$dir/R.txt" -o "$dir/Y.txt" \
  --no-such-option
expect_error 1 "only 'batch'" 2 solve "$dir/model.tacit" -i "$dir/U.txt" -o "$dir/Y.txt" \
  --by states
expect_error 2 "cannot open" 2 certify "$dir/r20.tacit" -i "$dir/absent.txt" \
  --labels "$dir/absent.txt"
expect_error 2 "is not below q = 4" 3 certify "$dir/model.tacit" -i "$dir/U.txt" \
  --labels "$dir/Lbad.txt"
expect_error 2 "U7.txt:1" 2 certify "$dir/model.tacit" -i "$dir/U7.txt" --labels "$dir/L.txt"
expect_error 1 "linear bound is not available" 2 certify "$dir/model.tacit" \
  "${cert_args[@]}" --bound linear
expect_error 1 "more than the memory budget" 1 certify "$dir/model.tacit" "${cert_args[@]}" \
  --memory-budget "$budget"
# A budget each rank's share of the model meets but not with the bounds' copy
# of C's entries in the columns of its states: refused before the copy.
share=$(/usr/bin/python3 -c 'import json, sys
print(max(r["bytes"] for r in json.load(open(sys.argv[1]))["partition"]["ranks"]))' \
  "$dir/csmem.json")
expect_error 1 "of C's columns of its states" 2 certify "$dir/model.tacit" \
  "${cert_args[@]}" --memory-budget "$share"
expect_error 1 "usage error" 2 sensitivity "$dir/model.tacit" --rows 9
expect_error 3 "not certified" 2 sensitivity "$dir/wild.tacit" -o "$dir/Y.txt"
[ ! -e "$dir/Y.txt" ] || fail "an output was written by a failed run"
echo "tacit-mpi: all command checks passed"
