#!/usr/bin/env bash
# One GPU window (issue 13), run from the repo root with OUT set. CIFAR-10 travels in three parts
# (shared/DESIGN.md): `part` stages carry one each into /tmp/cache; `main` joins them and runs, at once
# on the one GPU, in priority order:
#   1. the CIFAR-10 weights: googlenet_res5x5 in the paper's configuration (imagenet stem), fast recipe,
#      validation split, W epochs, then `zoo release` as googlenet_res5x5.cifar10_paper (fp16, no aux);
#   2. fig7 + aux with 3 seeds under the validation protocol, same configuration, E epochs, J processes;
#      if the weights run is still going 150 s before the deadline, the ablations are stopped for it;
#   3. with time left, ResNet18 (cifar stem, fast recipe, torch.compile) against the 94% / 25 s goal.
# `rest` is the next window's call (ran on the H100: `main`; left for lack of device time: these), in order:
#   3. ResNet18 (cifar stem, fast recipe, torch.compile, R18E epochs) against the 94% / 25 s goal;
#   4. the loader benchmark: zoo's pipeline against its model-bound ceiling and DataLoaders, paper augmentation;
#   5. fig. 6's convergence claims: the paper's recipes, their first RE=5 epochs exactly (no compression: a
#      compressed schedule's first epochs are not the paper's), 3 seeds, validation protocol, J processes
#      (`zoo reproduce fig6 --recipe paper --epochs 5 --seeds 3 --jobs 4 --plan`: about 1.3 GPU minutes).
#      Fig. 6's other claims and the VGG patience sweep are about the end of 100-160 epochs: `--plan` says they
#      cannot be tested shorter, and at full length (3 seeds, 4 at a time) they need about 31 GPU minutes and 30 GB.
# `early` is the next window's call: fig7-early's pre-registered design (zoo.paper.reproduce.FIG7_EARLY_DESIGN: the paper
#   recipe's first 5 epochs exactly, 5,000 validation images per seed) for all four fig. 7 variants and GoogLeNet
#   without aux heads (`zoo reproduce fig7 aux`), with the seeds the power plan gives for EFFECT (2.2 points: the H200
#   pilot, reports/cpu-fig7-early/README.md) at the pooled CIFAR-10 seed sd; `--plan` first, to say what it costs.
#   Runs go by seed; a report is written from what finished, and only the full design's verdicts are confirmatory.
# Every log is tee'd under $OUT; a stage killed at the deadline still returns what it wrote.
# CPU smoke tests (every stage on a real subset, --quick ablations, one epoch):
#   DATA=../shared/data SUBSET=512 W=1 E=1 J=2 R18=0 RX=--quick DEVICE=cpu WORK=/tmp/w OUT=/tmp/o bash benchmarks/gpu_session.sh main
#   DATA=../shared/data SUBSET=512 R18E=1 RE=1 J=2 RX=--quick STEPS=2 WARMUP=1 BS=16 DEVICE=cpu WORK=/tmp/w OUT=/tmp/o \
#     bash benchmarks/gpu_session.sh rest
#   DATA=../shared/data SEEDS=2 J=2 RX=--quick DEVICE=cpu WORK=/tmp/w OUT=/tmp/o bash benchmarks/gpu_session.sh early
set -uo pipefail
stage=$1
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
zoo() { python3 -m zoo.cli "$@"; }
W=${W:-50} E=${E:-10} J=${J:-4} BUDGET=${BUDGET:-480} DEVICE=${DEVICE:-cuda} SUBSET=${SUBSET:-0} R18=${R18:-1} RX=${RX:-}
R18E=${R18E:-30} RE=${RE:-5} STEPS=${STEPS:-100} WARMUP=${WARMUP:-20} BS=${BS:-256}
DATA=${DATA:-/tmp/cache} WORK=${WORK:-/tmp/work}
mkdir -p /tmp/cache "$WORK"
start=$(date +%s); deadline=$((start + BUDGET))
left() { echo $((deadline - $(date +%s))); }
join_data() {  # the parts carried by earlier `part` calls and this one, joined and checked
  if [ "$DATA" = /tmp/cache ]; then
    mv .devdata/*/* /tmp/cache/ 2>/dev/null
    cat /tmp/cache/cifar10.npz.part? > /tmp/cache/cifar10.npz
    echo "9cbba9f82a1ce648aed8e3c4fd3eedabc8fcef7e280187128f4e9bced13c69d1  /tmp/cache/cifar10.npz" | sha256sum -c || exit 1
  fi
}
sub=(); [ "$SUBSET" != 0 ] && sub=(--train-subset "$SUBSET" --test-subset "$SUBSET")
case $stage in
part)
  mv .devdata/*/* /tmp/cache/ && ls -l /tmp/cache
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
  python3 -c "import torch, timm, zoo; print('torch', torch.__version__, 'timm', timm.__version__, torch.cuda.get_device_name())" | tee -a "$OUT/gpu.txt"
  ;;
main)
  join_data
  zoo train googlenet_res5x5 --dataset cifar10 --recipe fast --model-arg stem=imagenet --epochs "$W" --val-split 5000 \
    --data-dir "$DATA" --device "$DEVICE" --out "$WORK/weights" "${sub[@]}" > "$OUT/weights.log" 2>&1 &
  wpid=$!
  setsid python3 -m zoo.cli reproduce fig7 aux --recipe fast --model-arg stem=imagenet --seeds 3 --val-split 5000 \
    --epochs "$E" --jobs "$J" --data-dir "$DATA" --device "$DEVICE" --out "$WORK/reproduce" $RX > "$OUT/reproduce.log" 2>&1 &
  rpid=$!
  while kill -0 $wpid 2>/dev/null || kill -0 $rpid 2>/dev/null; do
    sleep 2
    if kill -0 $wpid 2>/dev/null && kill -0 $rpid 2>/dev/null && [ "$(left)" -lt 150 ]; then
      echo "[gpu_session] $(left) s left: stopping the ablations for the weights run" | tee -a "$OUT/reproduce.log"
      kill -TERM -- -$rpid
    fi
    if [ "$(left)" -lt 25 ]; then
      echo "[gpu_session] deadline: stopping everything" | tee -a "$OUT/weights.log"
      kill -TERM $wpid 2>/dev/null; kill -TERM -- -$rpid 2>/dev/null; sleep 8; break
    fi
  done
  wait $wpid; echo "weights run exit $?" >> "$OUT/weights.log"
  cat "$WORK/weights/metrics.jsonl" >> "$OUT/weights.log" 2>/dev/null
  if [ -f "$WORK/weights/model/model.safetensors" ]; then
    zoo release "$WORK/weights" cifar10_paper --data-dir "$DATA" --device "$DEVICE" --out-root "$WORK/cards" \
      --tags-file "$WORK/cards/pretrained.json" 2>&1 | tee -a "$OUT/weights.log"
  fi
  tar czf "$OUT/weights.tgz" -C "$WORK" --exclude=state.safetensors --exclude='weights/model' weights cards 2>/dev/null
  tar czf "$OUT/reproduce.tgz" -C "$WORK" --exclude='*.safetensors' reproduce 2>/dev/null
  echo "[gpu_session] $(left) s left after stages 1-2" | tee -a "$OUT/weights.log"
  if [ "$R18" = 1 ] && [ "$(left)" -gt 100 ]; then
    timeout $(( $(left) - 10 )) python3 -m zoo.cli train resnet18 --dataset cifar10 --recipe fast --epochs 30 --compile \
      --data-dir "$DATA" --device "$DEVICE" --out "$WORK/resnet18" "${sub[@]}" > "$OUT/resnet18.log" 2>&1
    echo "exit $?" >> "$OUT/resnet18.log"; cat "$WORK/resnet18/metrics.jsonl" >> "$OUT/resnet18.log" 2>/dev/null
  fi
  ;;
rest)
  join_data
  timeout $(( $(left) * 3 / 10 )) python3 -m zoo.cli train resnet18 --dataset cifar10 --recipe fast --epochs "$R18E" --compile \
    --data-dir "$DATA" --device "$DEVICE" --out "$WORK/resnet18" "${sub[@]}" > "$OUT/resnet18.log" 2>&1
  echo "exit $?" >> "$OUT/resnet18.log"; cat "$WORK/resnet18/metrics.jsonl" "$WORK/resnet18/run.json" >> "$OUT/resnet18.log" 2>/dev/null
  echo "[gpu_session] $(left) s left after ResNet18" | tee -a "$OUT/resnet18.log"
  timeout $(( $(left) / 4 )) python3 benchmarks/train_throughput.py --model resnet18 --model-arg stem=cifar --workers 2 8 \
    --batch-size "$BS" --steps "$STEPS" --warmup "$WARMUP" --data-dir "$DATA" --device "$DEVICE" --out "$OUT/throughput.json" \
    > "$OUT/throughput.log" 2>&1
  echo "exit $? ($(left) s left after the loader benchmark)" | tee -a "$OUT/throughput.log"
  timeout $(( $(left) - 20 )) setsid python3 -m zoo.cli reproduce fig6 --recipe paper --epochs "$RE" --seeds 3 --jobs "$J" \
    --val-split 5000 --data-dir "$DATA" --device "$DEVICE" --out "$WORK/reproduce-rest" $RX > "$OUT/reproduce-rest.log" 2>&1
  echo "exit $?" >> "$OUT/reproduce-rest.log"
  python3 -m zoo.cli reproduce fig6 --recipe paper --epochs "$RE" --seeds 3 --val-split 5000 --out "$WORK/reproduce-rest" \
    --report-only $RX >> "$OUT/reproduce-rest.log" 2>&1  # a report from what finished, if the deadline cut runs short
  tar czf "$OUT/reproduce-rest.tgz" -C "$WORK" --exclude='*.safetensors' reproduce-rest 2>/dev/null
  ;;
early)
  join_data
  read -r recipe EE VS < <(python3 -c "from zoo.paper.reproduce import FIG7_EARLY_DESIGN as d; print(d['recipe'], d['epochs'], d['val_split'])")
  SEEDS=${SEEDS:-$(python3 -c "import math; from zoo.paper.reproduce import POOLED_SD; from zoo.paper.verdicts import seeds_needed
print(seeds_needed(${EFFECT:-2.2}, POOLED_SD['cifar10', 'early'].sd * math.sqrt(2), 'better'))")}
  design=(fig7 aux --recipe "$recipe" --epochs "$EE" --val-split "$VS" --seeds "$SEEDS" --out "$WORK/early")
  echo "[gpu_session] ${design[*]}: $SEEDS seeds from the power plan (EFFECT=${EFFECT:-2.2})" | tee "$OUT/early.log"
  python3 -m zoo.cli reproduce "${design[@]}" --jobs "$J" --device "$DEVICE" --plan > "$OUT/early-plan.txt" 2>&1
  timeout $(( $(left) - 20 )) setsid python3 -m zoo.cli reproduce "${design[@]}" --jobs "$J" --data-dir "$DATA" \
    --device "$DEVICE" $RX >> "$OUT/early.log" 2>&1
  echo "exit $? ($(left) s left)" >> "$OUT/early.log"
  python3 -m zoo.cli reproduce "${design[@]}" --report-only $RX >> "$OUT/early.log" 2>&1
  tar czf "$OUT/early.tgz" -C "$WORK" --exclude='*.safetensors' early 2>/dev/null
  ;;
esac
