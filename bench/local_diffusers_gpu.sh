#!/usr/bin/env bash
# The local provider's tests on a GPU: the same tests as on the CPU
# (tests/steps/imaging/providers/test_local_diffusers.py, the tiny pipeline they build),
# with LOCAL_DIFFUSERS_TEST_DEVICE=cuda, in a venv with the default (CUDA) torch instead of
# the CPU build that .[test] pins. Prints pass/fail and the time of each test.
#   bench/local_diffusers_gpu.sh            (from the repository root, on a machine with CUDA)
set -euo pipefail
cd "$(dirname "$0")/.."
venv=${GPU_VENV:-/tmp/fetchflow-gpu-venv}
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/pip" install -q -e '.[local]' pytest hypothesis
"$venv/bin/python" -c 'import torch; assert torch.cuda.is_available(), "no CUDA device"; print("torch", torch.__version__, torch.cuda.get_device_name(0))'
LOCAL_DIFFUSERS_TEST_DEVICE=cuda "$venv/bin/python" -m pytest -q -p no:cacheprovider \
    --durations=0 -m 'not prefect' tests/steps/imaging/providers/test_local_diffusers.py
