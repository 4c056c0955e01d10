#!/usr/bin/env bash
# There, on a GPU machine lent by the device tool, from the repository root with .gpu/ carried (pack.sh made it):
# CUDA tests (tests/test_gpu.py), then benchmarks/run.py in fp32, bf16 and fp16 (full, bf16, fp16, predict, vision
# cases, quick sizes). Everything lands in $OUT (the tool brings it back): nvidia-smi.txt, pytest.txt, bench.txt and
# the benchmark's <date>-<machine>.{md,json}. About 5 minutes on an H200, most of it process starts. Arguments go
# on to benchmarks/run.py (a later flag wins: `run.sh --train-size 200` for a short check of the plumbing).
set -uo pipefail
cd "$(dirname "$0")/../.."
out=${OUT:-/tmp/gpu-out}
mkdir -p "$out"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .gpu/wheels/*.whl || exit 1
export PYTHONPATH="/tmp/site:$PWD" PYTHONUNBUFFERED=1 HF_HOME=/tmp/hf NLP_TRANSFER_CACHE=/tmp/nlp-transfer-cache \
  HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
python3 benchmarks/gpu/model_copy.py unpack .gpu/all-MiniLM-L6-v2 || exit 1
nvidia-smi > "$out/nvidia-smi.txt" 2>&1
python3 -m pytest tests/test_gpu.py -q -p no:cacheprovider 2>&1 | tee "$out/pytest.txt"
gpu=$(python3 -c "import torch; print(torch.cuda.get_device_name().split()[-1].lower())" 2>/dev/null || echo gpu)
python3 benchmarks/run.py --quick --cases full,bf16,fp16,predict,vision --data-dir .gpu/sst2 --out-dir "$out" \
  --machine "$gpu" "$@" 2>&1 | tee "$out/bench.txt"
