#!/usr/bin/env bash
# The wheels the device machine lacks (its python3 3.12 has torch, transformers, accelerate, huggingface_hub,
# pyarrow, pandas and xxhash, but not datasets), in .whl/ (ignored), at the versions installed here.
#   bash benchmarks/gpu_wheels.sh      # then: device run with carry [".whl"]
set -eu
cd "$(dirname "$0")/.."
versions=$(python -c "import datasets, dill, multiprocess; print(f'datasets=={datasets.__version__} dill=={dill.__version__} multiprocess=={multiprocess.__version__}')")
python -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .whl $versions
ls .whl
