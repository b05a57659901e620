#!/usr/bin/env bash
# Creates .venv (if missing) and installs interp-tests into it, editable, with its dev tools.
# torch is installed first and pinned (TORCH_SPEC, default the CPU build torch==2.13.0), so that pip never
# pulls a multi-GB CUDA build; on a GPU machine set TORCH_SPEC to the build you want (or "skip").
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
TORCH_SPEC=${TORCH_SPEC:-torch==2.13.0}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
[ "$TORCH_SPEC" = skip ] || .venv/bin/python -m pip install -q "$TORCH_SPEC"
.venv/bin/python -m pip install -q -c ci/constraints.txt -e ".[dev]"
# dictionary_learning's checkpoints are checked against the library itself; its own requirements (nnsight, wandb,
# umap, a torch of its choosing) are not needed to build its autoencoder classes, so it is installed alone.
.venv/bin/python -m pip install -q --no-deps dictionary-learning==0.1.0
