#!/bin/bash
# Certified robustness of ResNet20, built in (tacit export-resnet20) and
# imported from ONNX (tests/data/onnx/resnet20.onnx), in float64 and float32,
# with the interval and linear bounds: certified images at l_inf radii 1e-18,
# 1e-12, 1e-9 and 1e-6 around 4 images each (labels: the model's own
# predictions), the mean radius of the inputs' linear regions, the mean
# largest certified radius, and the time per image (with the radius search).
# Prints one Markdown table row per configuration.
#   bash tools/certify_resnet20.sh [build-dir] [work-dir]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$root/build}
work=${2:-$(mktemp -d)}
tacit=$build/tacit
threads=${THREADS:-2}
mkdir -p "$work"
"$tacit" export-resnet20 -o "$work/builtin.tacit" --inputs "$work/builtin_U.txt" --count 4 -q
"$tacit" import-onnx "$root/tests/data/onnx/resnet20.onnx" -o "$work/onnx.tacit" -q
cp "$root/tests/data/onnx/resnet20_input.txt" "$work/onnx_U.txt"
echo "| model | precision | bound | certified of 4 at eps 1e-18 / 1e-12 / 1e-9 / 1e-6 | linear region radius (mean) | certified radius (mean) | time per image |"
echo "|---|---|---|---|---|---|---|"
for m in builtin onnx; do
  "$tacit" solve "$work/$m.tacit" -i "$work/${m}_U.txt" -o "$work/${m}_Y.txt" -q
  awk '{k = 1; for (i = 2; i <= NF; i++) if ($i > $k) k = i; print k - 1}' \
    "$work/${m}_Y.txt" > "$work/${m}_L.txt"
  for p in float64 float32; do
    for b in interval linear; do
      json=$work/${m}_${p}_${b}.json
      radius=(--radius-output "$work/${m}_${p}_${b}_R.txt")
      "$tacit" certify "$work/$m.tacit" -i "$work/${m}_U.txt" --labels "$work/${m}_L.txt" \
        --precision "$p" --bound "$b" --eps 1e-18,1e-12,1e-9,1e-6 --threads "$threads" "${radius[@]}" \
        --json > "$json"
      /usr/bin/python3 - "$json" "$m" "$p" "$b" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
counts = " / ".join(str(c["certified"]) for c in d["certified"])
region = f"{d['region_mean_radius']:.2e}" if d.get("linear_regions") else "-"
radius = f"{d['mean_radius']:.2e}" if "mean_radius" in d else "-"
print(f"| {sys.argv[2]} | {sys.argv[3]} | {sys.argv[4]} | {counts} "
      f"(correct {d['correct']}) | {region} | {radius} | {d['seconds_per_input']:.2f} s |")
PY
    done
  done
done
