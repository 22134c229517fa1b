#!/usr/bin/env bash
# On the GPU machine: `hybridlab bench train` of this tree against an older one, alternating (old, new, old, new, ...)
# in one call, so that clock and thermal drift between calls (about 2% on the H200) and within one call fall on both
# sides alike. Results: $OUT/ab.jsonl (one row per run, with "tree": "base" or "head") and a summary line per side.
#
# Here, before the call: rm -rf ab_base && mkdir ab_base && git archive REV blocks sweeps analysis search_space | tar -x -C ab_base
# and carry [".whl", ".gpu-cache", "ab_base"]. On the device:
#   SPEC="samba-421m:8:compile" ROUNDS=2 STEPS=12 WARMUP=3 [BACKEND=kernel SEQ=4096] bash benchmarks/gpu_ab.sh
# To compare one tree with and without an environment setting instead: BASE_TREE=. HEAD_ENV="NAME=value ..." (the
# head runs get HEAD_ENV; no ab_base/ needed).
set -uo pipefail
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
BASE_TREE=${BASE_TREE:-ab_base}
[ -d "$BASE_TREE" ] || { echo "gpu_ab.sh: no $BASE_TREE/ here; see the header for how to make it"; exit 2; }
[ "${SKIP_INSTALL:-0}" = 1 ] || python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl || exit 1
mkdir -p .gpu-cache/triton .gpu-cache/inductor
export TRITON_CACHE_DIR=$PWD/.gpu-cache/triton TORCHINDUCTOR_CACHE_DIR=$PWD/.gpu-cache/inductor PYTHONUNBUFFERED=1
IFS=: read -r preset batch extra <<< "${SPEC:-samba-421m:8:compile}"
args=(bench train --preset "$preset" --seq-len "${SEQ:-4096}" --batch "$batch" --steps "${STEPS:-12}"
      --warmup "${WARMUP:-3}" --backend "${BACKEND:-kernel}" --no-contrast --json ${extra:+--$extra})
for round in $(seq "${ROUNDS:-2}"); do
  for tree in base head; do
    dir=$PWD; setting=(); [ "$tree" = base ] && dir=$(cd "$BASE_TREE" && pwd)
    [ "$tree" = head ] && read -ra setting <<< "${HEAD_ENV:-}"
    json=$(cd "$dir" && env "${setting[@]}" PYTHONPATH=/tmp/site:$dir timeout "${RUN_TIMEOUT:-150}" python3 -m sweeps.cli "${args[@]}" 2>> "$OUT/ab.err")
    if [ $? -ne 0 ]; then echo "$tree round $round: failed (see ab.err)"; continue; fi
    echo "$json" | python3 -c "import json, sys; [print(json.dumps({'tree': '$tree', 'round': $round, 'env': '${setting[*]}', **r})) for r in json.load(sys.stdin)]" \
      | tee -a "$OUT/ab.jsonl" | python3 -c "import json, sys; r = json.loads(sys.stdin.read()); print(f\"{r['tree']} round {r['round']}: {r['tokens_per_s']:,.0f} tokens/s, step {r['step_ms']:.1f} ms (+-{r['step_ms_std']:.1f}), loss {r.get('loss_first')} -> {r.get('loss_last')}\")"
  done
done
python3 - "$OUT/ab.jsonl" <<'EOF'
import json, statistics, sys
rows = [json.loads(line) for line in open(sys.argv[1])]
for tree in ("base", "head"):
    tps = [r["tokens_per_s"] for r in rows if r["tree"] == tree]
    if tps:
        print(f"{tree}: {len(tps)} runs, tokens/s {', '.join(f'{t:,.0f}' for t in tps)}; mean {statistics.mean(tps):,.0f}")
EOF
