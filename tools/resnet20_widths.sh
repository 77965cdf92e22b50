#!/bin/bash
# Where the bounds of ResNet20 lose their tightness: on the first of the
# images of tools/certify_resnet20.sh, per state block (the 19 ReLU layers),
# the mean pre-activation width of the interval bound on the point box
# (eps 0: the analysis' own rounding allowance alone) and at eps 1e-12, and
# the states whose interval contains 0 at eps 1e-12 with the interval and the
# linear bound (tacit certify --widths), float64, built in and imported from
# ONNX. Prints one Markdown table.
#   bash tools/resnet20_widths.sh [build-dir] [work-dir]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$root/build}
work=${2:-$(mktemp -d)}
tacit=$build/tacit
threads=${THREADS:-2}
mkdir -p "$work"
"$tacit" export-resnet20 -o "$work/builtin.tacit" --inputs "$work/builtin_U.txt" --count 1 -q
"$tacit" import-onnx "$root/tests/data/onnx/resnet20.onnx" -o "$work/onnx.tacit" -q
head -n 1 "$root/tests/data/onnx/resnet20_input.txt" > "$work/onnx_U.txt"
for m in builtin onnx; do
  "$tacit" solve "$work/$m.tacit" -i "$work/${m}_U.txt" -o "$work/${m}_Y.txt" -q
  awk '{k = 1; for (i = 2; i <= NF; i++) if ($i > $k) k = i; print k - 1}' \
    "$work/${m}_Y.txt" > "$work/${m}_L.txt"
  "$tacit" certify "$work/$m.tacit" -i "$work/${m}_U.txt" --labels "$work/${m}_L.txt" \
    --bound linear --eps 0,1e-12 --widths --threads "$threads" --json > "$work/${m}_widths.json"
done
/usr/bin/python3 - "$work/builtin_widths.json" "$work/onnx_widths.json" <<'PY'
import json, sys
docs = [json.load(open(f)) for f in sys.argv[1:]]
def table(d):
    return {(w["eps"], w["bound"]): w["blocks"] for w in d["widths"]}
t = [table(d) for d in docs]
print("| block | states | built in: interval width at eps 0 / 1e-12 | unstable at 1e-12: interval / linear "
      "| ONNX: interval width at eps 0 / 1e-12 | unstable at 1e-12: interval / linear |")
print("|---|---|---|---|---|---|")
for k, b in enumerate(t[0][(0.0, "interval")]):
    cells = [b["name"], f"{b['states']:,}"]
    for tt in t:
        i0, i1, l1 = tt[(0.0, "interval")][k], tt[(1e-12, "interval")][k], tt[(1e-12, "linear")][k]
        cells.append(f"{i0['mean_width']:.1e} / {i1['mean_width']:.1e}")
        cells.append(f"{i1['unstable']:,} / {l1['unstable']:,}")
    print("| " + " | ".join(cells) + " |")
print()
for name, d in zip(("built in", "ONNX"), docs):
    lin = [w for w in d["widths"] if w["bound"] == "linear"]
    print(f"{name}: certified at eps 0 / 1e-12 with the linear bound: "
          + " / ".join(str(c["certified"]) for c in d["certified"]) + " of 1; "
          + "pre-activation bounds refined at eps 0 / 1e-12: "
          + " / ".join(f"{w['refined']:,}" + (" (budget reached)" if w["truncated"] else "")
                       for w in lin))
PY
