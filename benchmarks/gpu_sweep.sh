#!/usr/bin/env bash
# On the GPU machine (device tool): the packed GPU sweep of issue 6, after optional GPU tests and reference-path
# throughput runs (those two phases are benchmarks/gpu_run.sh's, run first through it).
# Results go to $OUT (at most 8 files come back from the device): device.txt, parity.jsonl, bench.jsonl,
# gpu_sweep.json, gpu_sweep.md and logs.tgz (pytest.log, bench.err, sweep-*.log, gpu_util.csv, phases.txt, mlflow.db).
#
# Stage first, here: bash benchmarks/gpu_stage_sweep.sh (fla, omegaconf and the sweep stack for Python 3.12 in
# .whl, 58 MB); carry [".whl", ".gpu-cache"] (.gpu-cache/triton: autotune results for the PARITY_TESTS phase).
# Usage:
#   PARITY_TESTS="tests/blocks/test_gla.py" PARITY_BUDGET=150 WORKERS=8 \
#   REF="samba-421m:4 mamba-432m:4" REF_STEPS=1 REF_WARMUP=1 PRE_DEADLINE=260 \
#   SWEEPS="pack_cold serial_warm pack_warm" SERIAL_SAMPLES=4 PACK_SAMPLES=12 SWEEP_ARGS="" DEADLINE=540 \
#   bash benchmarks/gpu_sweep.sh
# PRE_DEADLINE bounds the GPU-test and reference phases, DEADLINE the whole run (both in seconds from the start).
# pack_cold starts from an empty HYBRIDLAB_HOME (its kernel cache is cold: the sweep warms it before trials start);
# pack_warm is the same sweep on the now warm cache; serial_* runs one trial at a time (a whole GPU each). Only the
# first sweep of a call meets a cold cache, whatever its name (each device call starts on a fresh machine).
# SWEEP_ARGS are extra key=value overrides of sweeps/configs/gpu_pack.yaml for every sweep.
set -uo pipefail
T0=$SECONDS
DEADLINE=${DEADLINE:-540}
left() { echo $((DEADLINE - (SECONDS - T0))); }
FINAL=${OUT:-/tmp/out}; LOGS=$FINAL/logs; mkdir -p "$LOGS"

OUT=$LOGS PARITY=$([ -n "${PARITY_TESTS:-}" ] && echo 1 || echo 0) BENCH= PROFILE= CACHE_TGZ=0 \
  DEADLINE=${PRE_DEADLINE:-$(( DEADLINE / 2 ))} bash benchmarks/gpu_run.sh || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 FLA_CACHE_RESULTS=1
export HYBRIDLAB_HOME=${HYBRIDLAB_HOME:-/tmp/hybridlab-home}
rm -rf "$HYBRIDLAB_HOME"  # the sweeps keep their kernel caches under HYBRIDLAB_HOME/cache, empty at first

nvidia-smi --query-gpu=timestamp,utilization.gpu,memory.used --format=csv,noheader,nounits -lms 500 > "$LOGS/gpu_util.csv" &
SMI=$!
for name in ${SWEEPS:-pack_cold pack_warm serial_warm}; do
  if [ "$(left)" -lt 45 ]; then echo "sweep $name: skipped, deadline"; continue; fi
  extra=()
  case $name in
    serial*) extra=(sweep.gpus_per_trial=1 sweep.max_concurrent=1 "sweep.num_samples=${SERIAL_SAMPLES:-6}") ;;
    *) extra=("sweep.num_samples=${PACK_SAMPLES:-12}") ;;
  esac
  echo "== sweep $name ${extra[*]} (left $(left) s)"
  start=$(date +%s.%N)
  # shellcheck disable=SC2086
  timeout "$(( $(left) - 25 ))" python3 -m sweeps.cli sweep gpu_pack "sweep.name=$name" "${extra[@]}" ${SWEEP_ARGS:-} \
    > "$LOGS/sweep-$name.log" 2>&1
  echo "$name: exit $?"
  echo "$name $start $(date +%s.%N)" >> "$LOGS/phases.txt"
  grep -E "warming|kernel cache|kernels warm|^sweep .*trials" "$LOGS/sweep-$name.log" | cut -c1-200
done
kill $SMI 2>/dev/null
python3 benchmarks/gpu_sweep_summary.py ${SWEEPS:-pack_cold pack_warm serial_warm} --util "$LOGS/gpu_util.csv" \
  --phases "$LOGS/phases.txt" --json "$FINAL/gpu_sweep.json" | tee "$FINAL/gpu_sweep.md"
cp "$HYBRIDLAB_HOME/mlflow.db" "$LOGS/" 2>/dev/null  # to summarise again, or open in `hybridlab ui`, elsewhere
for f in device.txt parity.jsonl bench.jsonl; do [ -f "$LOGS/$f" ] && mv "$LOGS/$f" "$FINAL/"; done
tar czf "$FINAL/logs.tgz" -C "$LOGS" . && rm -rf "$LOGS"
echo "total $((SECONDS - T0)) s"
