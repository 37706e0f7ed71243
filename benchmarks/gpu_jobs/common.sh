# Sourced by every GPU job (see benchmarks/gpu_queue.py for the contract): where results go, and deadlines.
#   RESULTS  $OUT/repo/benchmarks/results, the repository's results folder as the device call returns it
#   EXTRA    $OUT/extra/$JOB, what the CPU check needs but the repository does not keep (weights, logs)
#   RUNS_ROOT  where run folders go: runs/ (ignored; kept on the device machine while it is warm, so a later
#            call on the same machine goes on from there), or $OUT/runs under --smoke
#   left S   seconds until DEADLINE less S seconds kept for packing (at least 5)
#   smoke    true under --smoke (toy size on the CPU)
set -u
RESULTS=$OUT/repo/benchmarks/results
EXTRA=$OUT/extra/$JOB
if [ "$SMOKE" = 1 ]; then RUNS_ROOT=$OUT/runs; else RUNS_ROOT=runs; fi
mkdir -p "$RESULTS" "$EXTRA" "$RUNS_ROOT"
left() { local s=$(( DEADLINE - $(date +%s) - ${1:-0} )); echo $(( s > 5 ? s : 5 )); }
smoke() { [ "$SMOKE" = 1 ]; }
log() { echo "[$(date -u +%H:%M:%S)] $*"; }
