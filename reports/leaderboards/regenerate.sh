#!/usr/bin/env bash
# Regenerates the project's measured leaderboard in reports/leaderboards/ from the `leaderboard` plan
# (harness/plans/leaderboard.yaml): every built-in aligner on safety, truthfulqa and utility at the demo preset
# with the embedded base model, 3 training seeds per cell, each alignment made once and evaluated on every
# benchmark that uses its seeds (`harness sweep`), then the report (cells over seeds) and the pinned baselines
# (one per run) that `harness compare` regression-tests against.
#
#   reports/leaderboards/regenerate.sh
#
# Settings (environment): PLAN (leaderboard: a built-in plan's name or a YAML file), STUDY
# (runs/leaderboard-study: the sweep's directory), OUT (reports/leaderboards), LAUNCHER (local, or ray), ADDRESS
# (a Ray cluster, with LAUNCHER=ray). The sweep skips what is finished and resumes what was interrupted, so
# rerunning after an interruption continues; a job that still fails stops the script before the report.
set -euo pipefail
cd "$(dirname "$0")/../.."
HARNESS=${HARNESS:-.venv/bin/harness}
PLAN=${PLAN:-leaderboard}
STUDY=${STUDY:-runs/leaderboard-study}
OUT=${OUT:-reports/leaderboards}
LAUNCHER=${LAUNCHER:-local}
export HARNESS_DATA_DIR=${HARNESS_DATA_DIR:-$(cd .. && pwd)/shared/data}

sweep=(sweep "$PLAN" --out "$STUDY" --launcher "$LAUNCHER" --quiet)
if [ -n "${ADDRESS:-}" ]; then
  sweep+=(--address "$ADDRESS")
fi
$HARNESS "${sweep[@]}"
title=$($HARNESS list plans | awk -v plan="$PLAN" '$1 == plan {sub(/^[^ ]+ +/, ""); print}')
$HARNESS report "$STUDY/runs" --out "$OUT" --pin-baselines --title "${title:-Study: $PLAN}"
