#!/usr/bin/env bash
# On the GPU machine (device tool): install the staged kernel wheels, run the GPU parity tests and the
# training-throughput table. Results go to $OUT (parity.json, pytest.log, bench.jsonl).
# Stage first, here: ../shared/gpu/stage.sh mamba_ssm fla omegaconf   (then carry .whl)
set -uo pipefail
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
export TRITON_CACHE_DIR=/tmp/triton-cache FLA_CACHE_RESULTS=1
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | tee "$OUT/device.txt"
python3 -c "import torch, triton, fla, mamba_ssm; print('torch', torch.__version__, 'triton', triton.__version__, 'fla', fla.__version__, 'mamba_ssm', mamba_ssm.__version__)" | tee -a "$OUT/device.txt"
if [ "${PARITY:-1}" = 1 ]; then
  HYBRIDLAB_PARITY_JSON=$OUT/parity.jsonl timeout ${PARITY_TIMEOUT:-300} python3 -m pytest -q -p no:cacheprovider \
    tests/blocks/test_kernel_parity.py -rA -m gpu ${PYTEST_ARGS:-} 2>&1 | tee "$OUT/pytest.log" | tail -25
fi
for spec in ${BENCH:-}; do   # e.g. BENCH="samba-421m:4 mamba-432m:4"
  preset=${spec%%:*}; batch=${spec##*:}
  timeout ${BENCH_TIMEOUT:-240} python3 -m sweeps.cli bench train --preset "$preset" --seq-len ${SEQ:-4096} \
    --batch "$batch" --steps ${STEPS:-8} --warmup ${WARMUP:-3} --json ${BENCH_FLAGS:-} >> "$OUT/bench.jsonl" 2>> "$OUT/bench.err" \
    || echo "bench $preset failed or timed out" | tee -a "$OUT/bench.err"
  tail -c 600 "$OUT/bench.jsonl"
done
