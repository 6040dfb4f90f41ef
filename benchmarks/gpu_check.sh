#!/usr/bin/env bash
# One short GPU session: CUDA training (bf16 auto, fp16), eval/infer on CUDA, and the throughput
# benchmark with --device cuda. Writes logs under ${OUT:-/tmp/gpu_check}.
# Needs torch with CUDA plus dlcli's pure-Python dependencies on PYTHONPATH.
set -uo pipefail
out=${OUT:-/tmp/gpu_check}
mkdir -p "$out"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
py=${PYTHON:-python3}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$out/gpu.txt"
$py -c "import torch, torchvision; print('torch', torch.__version__, 'torchvision', torchvision.__version__)" | tee -a "$out/gpu.txt"
run() { echo "+ $*"; "$@"; echo "exit $?"; }
{
  run $py -m dlcli train configs/cnn_digits.yaml train.epochs=3 train.device=cuda --output-dir /tmp/gpu_runs --run-version bf16 -q
  run $py -m dlcli train configs/quickstart.yaml train.epochs=3 train.device=cuda train.precision=fp16 --output-dir /tmp/gpu_runs --run-version fp16 -q
  run $py -m dlcli eval /tmp/gpu_runs/cnn_digits/bf16 --device cuda --json
  run $py -m dlcli infer /tmp/gpu_runs/cnn_digits/bf16 examples/digits --device cuda
  run $py -m dlcli eval /tmp/gpu_runs/cnn_digits/bf16 --device cpu
} 2>&1 | tee "$out/cli.log"
$py benchmarks/throughput.py --device cuda --batch 1024 --samples 65536 --rounds 5 2>&1 | tee "$out/throughput_cuda.txt"
