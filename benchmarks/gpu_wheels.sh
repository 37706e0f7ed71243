#!/usr/bin/env bash
# The wheels the device machine lacks (its python3 3.12 has torch, transformers, accelerate, huggingface_hub,
# pyarrow, pandas and xxhash, but not datasets), in .whl/ (ignored), at the versions installed here; and the
# emoji job's rendered data in .whl/emoji64/ (about 28 MB; the device lacks the emoji packages).
#   bash benchmarks/gpu_wheels.sh      # then: device run with carry [".whl"]
set -eu
cd "$(dirname "$0")/.."
versions=$(python -c "import datasets, dill, multiprocess; print(f'datasets=={datasets.__version__} dill=={dill.__version__} multiprocess=={multiprocess.__version__}')")
python -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .whl $versions
ls .whl
# The emoji job's data, rendered here where the emoji packages are (the device machine has none of them).
[ -f .whl/emoji64/test/dataset_info.json ] || python benchmarks/emoji_data.py .whl/emoji64
