#!/usr/bin/env bash
# One short GPU session: CUDA training (bf16 auto, fp16, deterministic; LSTM and GAN too), SIGTERM +
# resume on CUDA, eval/infer on CUDA and CPU, the CUDA-only tests (fused optimizers), and the
# throughput benchmark with --device cuda (eager, then --compile), and the image-folder benchmark (image cache).
# Needs torch with CUDA plus dlcli's pure-Python dependencies on PYTHONPATH. Logs go to ${OUT:-/tmp/gpu_check}.
set -uo pipefail
out=${OUT:-/tmp/gpu_check}
mkdir -p "$out"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
py=${PYTHON:-python3}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$out/gpu.txt"
$py -c "import torch, torchvision; print('torch', torch.__version__, 'torchvision', torchvision.__version__)" | tee -a "$out/gpu.txt"
run() { echo "+ $*"; "$@"; echo "exit $?"; }
R=/tmp/gpu_runs
{
  run $py -m dlcli train configs/cnn_digits.yaml train.epochs=3 train.device=cuda --output-dir $R --run-version bf16 -q
  run $py -m dlcli train configs/quickstart.yaml train.epochs=3 train.device=cuda train.precision=fp16 --output-dir $R --run-version fp16 -q
  run $py -m dlcli train configs/quickstart.yaml train.epochs=2 train.device=cuda train.deterministic=true --output-dir $R --run-version det -q
  # SIGTERM mid-run on CUDA, then resume to the end
  $py -m dlcli train configs/cnn_digits.yaml train.epochs=40 train.device=cuda train.log_interval=1 --output-dir $R --run-version sig -q &
  pid=$!; sleep 25; kill -TERM $pid; wait $pid; echo "sigterm exit $?"
  run $py -m dlcli train configs/cnn_digits.yaml train.epochs=40 train.device=cuda train.log_interval=1 --resume $R/cnn_digits/sig -q
  run $py -m dlcli eval $R/cnn_digits/bf16 --device cuda
  run $py -m dlcli infer $R/cnn_digits/bf16 examples/digits --device cuda --top-k 1
  run $py -m dlcli eval $R/cnn_digits/sig --device cpu
  run $py -m dlcli train configs/lstm_digits.yaml train.epochs=2 train.device=cuda --output-dir $R -q
  run $py -m dlcli train configs/gan_digits.yaml train.epochs=3 train.device=cuda --output-dir $R --run-version bf16 -q
  run $py -m dlcli train configs/gan_digits.yaml train.epochs=3 train.device=cuda train.precision=fp16 --output-dir $R --run-version fp16 -q
  run $py -m dlcli train configs/quickstart.yaml train.epochs=2 train.device=cuda train.compile=true --output-dir $R --run-version compiled -q
  run $py -m pytest -q -p no:cacheprovider tests/components/test_optim.py -k fused
} 2>&1 | grep -v "^epoch .*batch" | tee "$out/cli.log"
$py benchmarks/throughput.py --device cuda --batch 1024 --samples 65536 --rounds 5 2>&1 | tee "$out/throughput_cuda.txt"
$py benchmarks/throughput.py --device cuda --batch 1024 --samples 65536 --rounds 3 --models airbench,mlp --compile 2>&1 \
  | tee "$out/throughput_cuda_compile.txt"
# Image folders (issue 20): the image cache (on the device when it fits) against imagenet/main.py's loader
$py benchmarks/image_folder.py --device cuda --images 20000 --batch 256 --crop 176 --train-steps 20 2>&1 \
  | tee "$out/image_folder_cuda.txt"
