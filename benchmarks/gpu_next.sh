#!/usr/bin/env bash
# The command a contributor runs on a GPU machine: install the package there, then run the first pending
# jobs of benchmarks/gpu_queue.json that fit in this call (benchmarks/gpu_queue.py run), each under its deadline.
#   device run:  command "bash benchmarks/gpu_next.sh", carry [".whl"], timeout_s 600
#                (.whl: the datasets wheels the device lacks; `bash benchmarks/gpu_wheels.sh` makes it)
#   here:        OUT=/tmp/smoke bash benchmarks/gpu_next.sh --smoke     # every job at toy size on the CPU
# Results come back under $OUT: repo/ in the repository's layout (copy it over the checkout after the check),
# extra/<job>/ for what the checks need, jobs/<job>.log, report.json. Other arguments go to gpu_queue.py run
# (--only JOB,JOB; --budget-s S). env: BUDGET_S (default 540 s for this whole script), PY, OUT.
set -u
START=$(date +%s)
OUT=${OUT:-gpu-out}
mkdir -p "$OUT"
if [[ " $* " == *" --smoke "* ]]; then
  PY=${PY:-python}
else
  PY=${PY:-python3}
  if ! $PY -c "import datasets" 2>/dev/null; then
    [ -d .whl ] || { echo "gpu_next: datasets is not installed here; carry .whl (bash benchmarks/gpu_wheels.sh)"; exit 2; }
    $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 2
    export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
  fi
  $PY -m pip install -q --no-deps --no-build-isolation -e . > "$OUT/install.log" 2>&1 || { cat "$OUT/install.log"; exit 2; }
  nvidia-smi > "$OUT/nvidia-smi.txt" 2>&1
  $PY -c "import torch, transformers, datasets; print('torch', torch.__version__, '| transformers', transformers.__version__, '| datasets', datasets.__version__)"
fi
budget=$(( ${BUDGET_S:-540} - $(date +%s) + START ))
$PY benchmarks/gpu_queue.py run --out "$OUT" --budget-s "$budget" --python "$PY" "$@"
