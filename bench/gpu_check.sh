#!/usr/bin/env bash
# The GPU path (issue 22), in under 10 minutes on a machine with CUDA GPUs:
#   1. the CUDA tests of tests/ (those marked "needs CUDA": test_cli, test_inference, test_training);
#   2. `fastfound fit --device cuda` with the default recipe, timed, and its test accuracy checked against 93%;
#   3. DDP, then FSDP2 (--shard, with its checkpoints through torch.distributed.checkpoint: --max-restarts 1), with
#      NCCL, one process per GPU (needs 2 GPUs or more), 2 epochs each, timed.
# Each step has its own time limit. Without a CUDA GPU it stops at once with exit status 2 and says so.
#
#     bench/gpu_check.sh            # PY=path/to/python to use another interpreter than .venv/bin/python
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
[ -x "$PY" ] || PY=python3
t_all=$(date +%s)

if ! "$PY" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)'; then
  echo "gpu_check: no CUDA GPU here (torch.cuda.is_available() is False, torch $("$PY" -c 'import torch; print(torch.__version__)')): nothing run" >&2
  exit 2
fi
NGPU=$("$PY" -c 'import torch; print(torch.cuda.device_count())')
echo "== $NGPU GPU(s): $("$PY" -c 'import torch; print(", ".join(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())))')"
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT

step() { echo; echo "== $1"; }
timed() {  # timed LIMIT_S LOG command...: run with a time limit, keep the output, print the seconds
  local limit=$1 log=$2; shift 2
  local t0; t0=$(date +%s.%N)
  if ! timeout "$limit" "$@" > "$log" 2>&1; then
    tail -30 "$log"; echo "gpu_check: FAILED ($*)" >&2; exit 1
  fi
  echo "took $(echo "$(date +%s.%N) - $t0" | bc) s"
}

step "1. the CUDA tests"
timed 240 "$OUT/tests.log" "$PY" -m pytest -q -rs tests/test_cli.py tests/test_inference.py tests/test_training.py -k "cuda or model_device"
tail -3 "$OUT/tests.log"
if grep -qE "SKIPPED.*needs" "$OUT/tests.log"; then
  echo "gpu_check: a CUDA test was skipped on a machine with CUDA" >&2; exit 1
fi

step "2. fastfound fit --device cuda, to 93% test accuracy"
timed 300 "$OUT/fit.log" "$PY" -m fastfound fit --device cuda --out "$OUT/fit"
grep -E "^(data|test accuracy|training)" "$OUT/fit.log"
"$PY" - "$OUT/fit.log" <<'PYEOF'
import re, sys
acc = float(re.search(r'test accuracy: ([0-9.]+)', open(sys.argv[1]).read()).group(1))
print(f'test accuracy {acc:.4f}: ' + ('reached 93%' if acc >= 0.93 else 'BELOW 93%'))
sys.exit(0 if acc >= 0.93 else 1)
PYEOF

if [ "$NGPU" -ge 2 ]; then
  step "3a. DDP with NCCL on $NGPU GPUs"
  timed 150 "$OUT/ddp.log" "$PY" -m fastfound fit --device cuda --nproc "$NGPU" --epochs 2 --out "$OUT/ddp"
  grep -E "^(test accuracy|training)" "$OUT/ddp.log"
  step "3b. FSDP2 (--shard) with NCCL on $NGPU GPUs"
  timed 150 "$OUT/fsdp.log" "$PY" -m fastfound fit --device cuda --nproc "$NGPU" --epochs 2 --shard \
    --max-restarts 1 --out "$OUT/fsdp"
  grep -E "^(test accuracy|training)" "$OUT/fsdp.log"
  ls "$OUT/fsdp/ck"  # last.pt and the folder of shards it names
else
  step "3. DDP and FSDP2 with NCCL: skipped, they need 2 GPUs or more (found $NGPU)"
fi
echo; echo "gpu_check: done in $(( $(date +%s) - t_all )) s"
