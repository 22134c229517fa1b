#!/usr/bin/env bash
# On the GPU machine (device tool): the packed GPU sweep of issue 6, plus optional reference-path throughput runs.
# Results go to $OUT (at most 8 files come back from the device): device.txt, parity.jsonl, bench-ref.jsonl,
# gpu_sweep.json, gpu_sweep.md and logs.tgz (pytest.log, sweep-*.log, gpu_util.csv, phases.txt, bench.err).
#
# Stage first, here: bash benchmarks/gpu_stage_sweep.sh (fla, omegaconf and the sweep stack for Python 3.12 in
# .whl, 58 MB); carry [".whl", ".gpu-cache"] (.gpu-cache/triton: autotune results for the PARITY_TESTS phase).
# Usage (each phase bounded by DEADLINE seconds from the start):
#   PARITY_TESTS="tests/blocks/test_gla.py" PARITY_BUDGET=150 WORKERS=8 \
#   REF="samba-421m:4 mamba-432m:4" REF_STEPS=1 REF_WARMUP=1 REF_BUDGET=120 \
#   SWEEPS="pack_cold pack_warm serial_warm" SERIAL_SAMPLES=6 DEADLINE=540 bash benchmarks/gpu_sweep.sh
# pack_cold starts from an empty HYBRIDLAB_HOME (its kernel cache is cold: the sweep warms it before trials start);
# pack_warm is the same sweep on the now warm cache; serial_warm runs one trial at a time (a whole GPU each).
set -uo pipefail
T0=$SECONDS
DEADLINE=${DEADLINE:-540}
left() { echo $((DEADLINE - (SECONDS - T0))); }
FINAL=${OUT:-/tmp/out}; OUT=$FINAL/logs; mkdir -p "$OUT"
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 FLA_CACHE_RESULTS=1
export HYBRIDLAB_HOME=${HYBRIDLAB_HOME:-/tmp/hybridlab-home}
rm -rf "$HYBRIDLAB_HOME"
unset TRITON_CACHE_DIR TORCHINDUCTOR_CACHE_DIR  # the sweeps keep theirs under HYBRIDLAB_HOME/cache, empty at first
{
  date -u +%FT%TZ
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
  nproc
  python3 -c "import torch, triton, fla, ray, optuna, mlflow; print('torch', torch.__version__, 'triton', triton.__version__, 'fla', fla.__version__, 'ray', ray.__version__, 'optuna', optuna.__version__, 'mlflow', mlflow.__version__)"
} 2>&1 | tee "$OUT/device.txt"

if [ -n "${PARITY_TESTS:-}" ]; then  # GPU tests still to run, on the carried autotune cache (.gpu-cache/triton)
  PAR=(); python3 -c "import xdist" 2>/dev/null && PAR=(-n "${WORKERS:-8}" --dist worksteal)
  echo "== parity: pytest -m gpu $PARITY_TESTS ${PAR[*]} (budget ${PARITY_BUDGET:-150} s)"
  mkdir -p .gpu-cache/triton
  TRITON_CACHE_DIR=$PWD/.gpu-cache/triton HYBRIDLAB_PARITY_JSON=$OUT/parity.jsonl timeout "${PARITY_BUDGET:-150}" \
    python3 -m pytest -p no:cacheprovider -m gpu $PARITY_TESTS "${PAR[@]}" -v -rA --tb=long \
    2>&1 | tee "$OUT/pytest.log" | grep -E "PASSED|FAILED|ERROR|passed|failed" | cut -c1-200
fi
REF_END=$(( SECONDS + ${REF_BUDGET:-120} ))
if [ -n "${REF:-}" ]; then
  for spec in $REF; do
    IFS=: read -r preset batch extra <<< "$spec"
    if [ "$(left)" -lt 60 ] || [ $(( REF_END - SECONDS )) -lt 20 ]; then echo "$preset reference: skipped, deadline" | tee -a "$OUT/bench.err"; continue; fi
    t=$SECONDS
    json=$(timeout "$(( REF_END - SECONDS ))" python3 -m sweeps.cli bench train --preset "$preset" --seq-len "${SEQ:-4096}" \
      --batch "$batch" --steps "${REF_STEPS:-1}" --warmup "${REF_WARMUP:-1}" --backend reference --no-contrast --json \
      2>> "$OUT/bench.err") || { echo "$preset reference: failed or timed out after $((SECONDS - t)) s" | tee -a "$OUT/bench.err"; continue; }
    echo "$json" | python3 -c "import json, sys; [print(json.dumps({'preset': '$preset', 'requested': 'reference', 'wall_s': $((SECONDS - t)), **r})) for r in json.load(sys.stdin)]" \
      | tee -a "$OUT/bench-ref.jsonl" | cut -c1-300
  done
fi

nvidia-smi --query-gpu=timestamp,utilization.gpu,memory.used --format=csv,noheader,nounits -lms 500 > "$OUT/gpu_util.csv" &
SMI=$!
for name in ${SWEEPS:-pack_cold pack_warm serial_warm}; do
  if [ "$(left)" -lt 45 ]; then echo "sweep $name: skipped, deadline"; continue; fi
  extra=()
  case $name in serial*) extra=(sweep.gpus_per_trial=1 sweep.max_concurrent=1 "sweep.num_samples=${SERIAL_SAMPLES:-6}") ;; esac
  echo "== sweep $name ${extra[*]} (left $(left) s)"
  start=$(date +%s.%N)
  timeout "$(( $(left) - 25 ))" python3 -m sweeps.cli sweep gpu_pack "sweep.name=$name" "${extra[@]}" > "$OUT/sweep-$name.log" 2>&1
  echo "$name: exit $?"
  echo "$name $start $(date +%s.%N)" >> "$OUT/phases.txt"
  grep -E "warming|kernel cache|kernels warm|^sweep .*trials" "$OUT/sweep-$name.log" | cut -c1-200
done
kill $SMI 2>/dev/null
python3 benchmarks/gpu_sweep_summary.py ${SWEEPS:-pack_cold pack_warm serial_warm} --util "$OUT/gpu_util.csv" \
  --phases "$OUT/phases.txt" --json "$OUT/gpu_sweep.json" | tee "$OUT/gpu_sweep.md"
for f in device.txt parity.jsonl bench-ref.jsonl gpu_sweep.json gpu_sweep.md; do [ -f "$OUT/$f" ] && mv "$OUT/$f" "$FINAL/"; done
tar czf "$FINAL/logs.tgz" -C "$OUT" . && rm -rf "$OUT"
echo "total $((SECONDS - T0)) s"
