#!/usr/bin/env bash
# The GPU runs behind the figures in the closing notes, reports/ and model_cards/: one stage per
# device call (CIFAR-10 travels in three parts, see shared/DESIGN.md). Run from the repo root with
# OUT set; the parts are carried in .devdata/cN and collected in /tmp/cache between calls.
#   probe: part 0 of cifar10.npz; training-throughput benchmarks (zoo vs DataLoader vs ceiling)
#   mnist: part 1 and mnist.npz; the paper's figure 5 (MNIST) with both recipes
#   cifar: part 2; join and check; ResNet18 fast recipe; figure 7 and the aux experiment
set -euo pipefail
stage=$1
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
zoo() { python3 -m zoo.cli "$@"; }
mkdir -p /tmp/cache
mv .devdata/*/* /tmp/cache/
case $stage in
probe)
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
  python3 -c "import torch, timm; print('torch', torch.__version__, 'timm', timm.__version__)" | tee -a "$OUT/gpu.txt"
  python3 benchmarks/train_throughput.py --model resnet18 --model-arg stem=cifar --workers 2 8 --out "$OUT/throughput_resnet18_cifar.json"
  python3 benchmarks/train_throughput.py --model resnet18 --model-arg stem=cifar --batch-size 512 --workers --out "$OUT/throughput_resnet18_cifar_b512.json"
  python3 benchmarks/train_throughput.py --model googlenet --workers --out "$OUT/throughput_googlenet.json"
  python3 benchmarks/train_throughput.py --model googlenet --model-arg stem=cifar --batch-size 512 --augment crop_flip --workers --out "$OUT/throughput_googlenet_cifar_b512.json"
  ;;
mnist)
  zoo reproduce fig5 --data-dir /tmp/cache --epochs "${EPOCHS:-8}" --jobs 6 --out /tmp/reproduce 2>&1 | tail -40
  tar czf "$OUT/reproduce_mnist.tgz" --exclude='*.safetensors' -C /tmp reproduce
  ;;
cifar)
  cat /tmp/cache/cifar10.npz.part0 /tmp/cache/cifar10.npz.part1 /tmp/cache/cifar10.npz.part2 > /tmp/cache/cifar10.npz
  echo "9cbba9f82a1ce648aed8e3c4fd3eedabc8fcef7e280187128f4e9bced13c69d1  /tmp/cache/cifar10.npz" | sha256sum -c
  zoo train resnet18 --dataset cifar10 --recipe fast --data-dir /tmp/cache --out /tmp/runs/resnet18-cifar10-fast 2>&1 | grep -v '^epoch.*img/s\]' | tail -40
  zoo reproduce fig7 aux --data-dir /tmp/cache --epochs "${GN_EPOCHS:-30}" --recipe paper --jobs 5 --out /tmp/reproduce 2>&1 | tail -12
  tar czf "$OUT/cifar.tgz" --exclude='*.safetensors' -C /tmp reproduce runs
  ;;
esac
