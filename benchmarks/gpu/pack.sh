#!/usr/bin/env bash
# Here, on the CPU machine, in the project's venv: gathers into .gpu/ (git-ignored) what a GPU machine lent by the
# device tool lacks for benchmarks/gpu/run.sh: wheels of the packages its image does not hold, the MiniLM copy
# (fp16 weights, so that it fits the 64 MiB transfer; see model_copy.py) and the SST-2 files. About a minute.
#
#   benchmarks/gpu/pack.sh [DATA_DIR]    # DATA_DIR: the shared data's sst2/ (default ../shared/data/sst2)
# then, with the device tool: run(command="bash benchmarks/gpu/run.sh", carry=[".gpu"], timeout_s=540)
set -euo pipefail
cd "$(dirname "$0")/../.."
data=${1:-../shared/data/sst2}
[ -f "$data/train.tsv" ] || { echo "pack.sh: no train.tsv in $data (pass the sst2 folder of the shared data)" >&2; exit 2; }
rm -rf .gpu && mkdir -p .gpu/wheels .gpu/sst2
# the GPU image (Python 3.12) has torch, transformers, accelerate, peft, pyarrow, xxhash, fsspec and the hub client;
# datasets and evaluate, and the two of their needs it lacks, travel at the versions this venv runs
versions=$(python -m pip list --format=freeze 2>/dev/null | grep -i -E '^(datasets|evaluate|dill|multiprocess)==')
# shellcheck disable=SC2086
python -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .gpu/wheels $versions
python benchmarks/gpu/model_copy.py pack .gpu/all-MiniLM-L6-v2
cp "$data/train.tsv" "$data/validation.tsv" .gpu/sst2/
du -sh .gpu && ls .gpu/wheels
