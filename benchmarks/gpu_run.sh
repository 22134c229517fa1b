#!/usr/bin/env bash
# On the GPU machine (device tool): install the staged kernel wheels, run the GPU tests, the training-throughput
# table and a profile of one step. Results go to $OUT (device.txt, pytest.log, parity.jsonl, bench.jsonl, bench-warm.jsonl,
# bench.err, profile.txt, gpu-cache.tgz).
#
# Stage first, here: ../shared/gpu/stage.sh mamba_ssm fla omegaconf, then carry [".whl", ".gpu-cache"].
# Usage (every phase optional, run in this order, each bounded by DEADLINE seconds from the start; CACHE_TGZ=0
# leaves the cache tarball out; benchmarks/gpu_sweep.sh runs its parity and reference phases through this script):
#   PARITY=1 PARITY_TESTS="tests/blocks tests/analysis/test_bench.py" WORKERS=12 PARITY_BUDGET=300 \
#   BENCH="samba-421m:4 mamba-432m:4 samba-421m:4:compile" STEPS=8 WARMUP=3 BENCH_BG=0 \
#   REF="samba-421m:4" REF_STEPS=2 REF_WARMUP=1 \
#   PROFILE="samba-421m:4[:compile]" PROFILE_ARGS="--copies" DEADLINE=560 \
#   bash benchmarks/gpu_run.sh [extra pytest arguments, e.g. -k "G-d384 and bf16"]
# BENCH_BG=1 runs the BENCH kernel runs in the background while the tests run (to fill the autotune and
# compile caches; their timings go to bench-warm.jsonl and are not clean) and then again in the foreground.
# fla autotunes its Triton kernels for minutes per new shape and dtype, FlexAttention compiles per shape:
# both caches live in .gpu-cache/ (git-ignored), and the autotune results (*.autotune.json) plus the
# inductor cache come back in $OUT/gpu-cache.tgz; unpack that into .gpu-cache/ here and carry it next time.
set -uo pipefail
T0=$SECONDS
DEADLINE=${DEADLINE:-560}
left() { echo $((DEADLINE - (SECONDS - T0))); }
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
# SKIP_INSTALL=1: the wheels are already in /tmp/site (a second run of this script beside a first one)
[ "${SKIP_INSTALL:-0}" = 1 ] || python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
mkdir -p .gpu-cache/triton .gpu-cache/inductor
export TRITON_CACHE_DIR=$PWD/.gpu-cache/triton TORCHINDUCTOR_CACHE_DIR=$PWD/.gpu-cache/inductor FLA_CACHE_RESULTS=1
SEQ=${SEQ:-4096}
{
  date -u +%FT%TZ
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
  python3 -c "
import importlib
for name in ('torch', 'triton', 'fla', 'mamba_ssm', 'causal_conv1d', 'ray', 'optuna', 'mlflow'):
    try:
        print(name, importlib.import_module(name).__version__, end='  ')
    except ImportError:
        pass
print()"
  echo "cached autotune results at start: $(find .gpu-cache/triton -name '*.autotune.json' | wc -l)"
} 2>&1 | tee "$OUT/device.txt"

bench() {  # bench FILE BACKEND STEPS WARMUP SPEC...: one `hybridlab bench train --json` per preset:batch[:compile]
  local file=$1 backend=$2 steps=$3 warmup=$4; shift 4
  local spec preset batch t json extra
  for spec in "$@"; do
    IFS=: read -r preset batch extra <<< "$spec"
    extra=${extra:+--$extra}
    if [ "$(left)" -lt 30 ]; then echo "$preset $backend: skipped, deadline" | tee -a "$OUT/bench.err"; continue; fi
    t=$SECONDS
    json=$(timeout "$(left)" python3 -m sweeps.cli bench train --preset "$preset" --seq-len "$SEQ" --batch "$batch" \
      --steps "$steps" --warmup "$warmup" --backend "$backend" --no-contrast --json $extra 2>> "$OUT/bench.err")
    if [ $? -ne 0 ]; then echo "$preset $backend batch $batch: failed or timed out after $((SECONDS - t)) s" | tee -a "$OUT/bench.err"; continue; fi
    echo "$json" | python3 -c "import json, sys; [print(json.dumps({'preset': '$preset', 'requested': '$backend', 'steps': $steps, 'warmup': $warmup, 'wall_s': $((SECONDS - t)), **r})) for r in json.load(sys.stdin)]" \
      | tee -a "$file" | cut -c1-400 || echo "$json" >> "$OUT/bench.err"
  done
}

BG=
if [ -n "${BENCH:-}" ] && [ "${BENCH_BG:-0}" = 1 ]; then
  bench "$OUT/bench-warm.jsonl" kernel 2 1 $BENCH > /tmp/bench-warm.log 2>&1 &
  BG=$!
fi
if [ "${PARITY:-1}" = 1 ]; then
  # pytest-xdist and pytest-timeout may be missing on the device machine: use them only when they import
  PAR=(); python3 -c "import xdist" 2>/dev/null && PAR=(-n "${WORKERS:-12}" --dist worksteal)
  python3 -c "import pytest_timeout" 2>/dev/null && PAR+=(--timeout="${TEST_TIMEOUT:-420}")
  echo "== parity: pytest -m gpu ${PARITY_TESTS:-tests/blocks tests/analysis/test_bench.py} ${PAR[*]} $* (left $(left) s)"
  rm -f "$OUT/parity.jsonl"
  budget=$(( $(left) - 20 )); [ -n "${PARITY_BUDGET:-}" ] && [ "$PARITY_BUDGET" -lt "$budget" ] && budget=$PARITY_BUDGET
  HYBRIDLAB_PARITY_JSON=$OUT/parity.jsonl timeout "$budget" python3 -m pytest -p no:cacheprovider \
    -m gpu ${PARITY_TESTS:-tests/blocks tests/analysis/test_bench.py} "${PAR[@]}" -v -rA --tb=long "$@" \
    2>&1 | tee "$OUT/pytest.log" | grep -E "^\[gw|FAILED|ERROR|passed|failed|Timeout" | cut -c1-250
fi
[ -n "$BG" ] && { echo "== waiting for the background warm-up runs (left $(left) s)"; wait "$BG"; cat /tmp/bench-warm.log; }
if [ -n "${BENCH:-}" ]; then echo "== bench kernel (left $(left) s)"; bench "$OUT/bench.jsonl" kernel "${STEPS:-8}" "${WARMUP:-3}" $BENCH; fi
if [ -n "${REF:-}" ]; then echo "== bench reference (left $(left) s)"; bench "$OUT/bench.jsonl" reference "${REF_STEPS:-2}" "${REF_WARMUP:-1}" $REF; fi
if [ -n "${PROFILE:-}" ] && [ "$(left)" -gt 60 ]; then
  echo "== profile ${PROFILE} (left $(left) s)"
  IFS=: read -r preset batch extra <<< "$PROFILE"
  timeout "$(( $(left) - 15 ))" python3 benchmarks/profile_step.py --preset "$preset" --batch "$batch" \
    --seq-len "$SEQ" ${extra:+--$extra} ${PROFILE_ARGS:-} > "$OUT/profile.txt" 2>> "$OUT/bench.err"; head -40 "$OUT/profile.txt"
fi
tail -c 3000 "$OUT/bench.err" 2>/dev/null
[ "${CACHE_TGZ:-1}" = 1 ] || { echo "total $((SECONDS - T0)) s"; exit 0; }
(cd .gpu-cache && find triton -name '*.autotune.json' > /tmp/keep.txt && tar czf "$OUT/gpu-cache.tgz" -T /tmp/keep.txt inductor 2>/dev/null
 if [ "$(stat -c %s "$OUT/gpu-cache.tgz")" -gt 15000000 ]; then tar czf "$OUT/gpu-cache.tgz" -T /tmp/keep.txt; fi)
echo "autotune results: $(wc -l < /tmp/keep.txt); cache tarball $(du -h "$OUT/gpu-cache.tgz" | cut -f1); total $((SECONDS - T0)) s"
