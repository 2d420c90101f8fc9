#!/usr/bin/env bash
# Regenerates the project's measured leaderboard in reports/leaderboards/: every registered aligner on
# safety, truthfulqa and utility at the demo preset with the embedded base model (plus one-iteration runs
# of the iterative aligners on safety, for the per-iteration curves), then the report and the pinned
# baselines that `harness compare` regression-tests against.
#
#   reports/leaderboards/regenerate.sh
#
# Settings (environment): MODEL (gemma-3-270m), PRESET (demo), SEED (0), RUNS (runs/leaderboard),
# BENCHMARKS ("safety truthfulqa utility"), ALIGNERS (every registered one), ITERATIVE ("isara spin"), OUT
# (reports/leaderboards). Finished runs are reused: rerunning after an interruption resumes, and a complete
# rerun only rebuilds the report.
set -euo pipefail
cd "$(dirname "$0")/../.."
HARNESS=${HARNESS:-.venv/bin/harness}
MODEL=${MODEL:-gemma-3-270m}
PRESET=${PRESET:-demo}
SEED=${SEED:-0}
RUNS=${RUNS:-runs/leaderboard}
BENCHMARKS=${BENCHMARKS:-safety truthfulqa utility}
ALIGNERS=${ALIGNERS:-$($HARNESS list aligners | awk '{print $1}')}
ITERATIVE=${ITERATIVE:-isara spin}
OUT=${OUT:-reports/leaderboards}
export HARNESS_DATA_DIR=${HARNESS_DATA_DIR:-$(cd .. && pwd)/shared/data}

registered_benchmarks=$($HARNESS list benchmarks | awk '{print $1}')
registered_aligners=$(echo "$ALIGNERS" | tr ' ' '\n')
run() {  # benchmark aligner out-name [extra harness run arguments]
  local benchmark=$1 aligner=$2 name=$3
  shift 3
  echo "== $benchmark / $name"
  $HARNESS run --aligner "$aligner" --benchmark "$benchmark" --model "$MODEL" --preset "$PRESET" --seed "$SEED" \
    --out "$RUNS/$PRESET-seed$SEED/$benchmark/$name" --quiet "$@"
}

for benchmark in $BENCHMARKS; do
  if ! grep -qx "$benchmark" <<<"$registered_benchmarks"; then
    echo "== skipping $benchmark: not a registered benchmark"
    continue
  fi
  for aligner in $ALIGNERS; do
    run "$benchmark" "$aligner" "$aligner"
  done
done
for aligner in $ITERATIVE; do
  if grep -qx "$aligner" <<<"$registered_aligners" && grep -qx safety <<<"$registered_benchmarks"; then
    run safety "$aligner" "$aligner-iterations1" --option iterations=1
  fi
done

$HARNESS report "$RUNS/$PRESET-seed$SEED" --out "$OUT" --pin-baselines \
  --title "Measured leaderboard: $MODEL, preset $PRESET, seed $SEED"
