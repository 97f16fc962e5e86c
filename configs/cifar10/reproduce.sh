#!/usr/bin/env bash
# Reproduces the shipped CIFAR-10 models from scratch, every stage from the committed configs.
#   bash configs/cifar10/reproduce.sh [encoder|prior|sampler|judges|fc6|sanity|all]   (default: all)
#   bash configs/cifar10/reproduce.sh fc6-continue   (the fc6 generator's training, resumed from its handoff file)
# Run from the repository root after `pip install -e '.[train]'`. Each stage writes its model where
# the next one reads it; checkpoints/cifar10/ receives the shipped files. Wall times on 2 CPU cores
# are in checkpoints/cifar10/README.md; a GPU is picked up automatically (trainer.accelerator auto).
set -euo pipefail
cd "$(dirname "$0")/../.."
stage=${1:-all}
C=configs/cifar10
run() { echo "+ $*" >&2; "$@"; }

encoder() {  # the shipped encoder: VGG trunk, global-pool head
  run python -m train.classifier fit --config $C/encoder.yaml
}

prior() {  # the shipped prior (features.relu4_2): DeePSiM in chunks, each resumed with other loss weights
  local G=(python -m train.generator fit --config $C/generator.yaml)
  local R=("${G[@]}" --ckpt_path runs/generator/ckpt/last.ckpt)
  local late=(--model.lambda_spectrum 2.0 --model.lambda_code 0.5 --model.lr_g 2e-4 --model.bound_k 1.0)
  run "${G[@]}" --trainer.max_steps 4550
  run "${R[@]}" --trainer.max_steps 5500
  run "${R[@]}" --trainer.max_steps 7000 --model.lambda_code 0.5
  run "${R[@]}" --trainer.max_steps 8000 --model.lambda_code 0.5
  for steps in 8500 10000 11500 13000; do
    run "${R[@]}" --trainer.max_steps $steps --model.lambda_code 0.5 --model.lambda_class 1.0 --model.lr_g 2e-4 --model.bound_k 1.0
  done
  run "${R[@]}" --trainer.max_steps 20000 "${late[@]}" --model.lambda_class 1.0
  run "${R[@]}" --trainer.max_steps 20500 "${late[@]}" --model.lambda_class 0.0
  run python -m dgnam stats --generator checkpoints/cifar10/generator.pt --k 0.5 --code-prior 0.1 --out runs/cifar10/g.pt
  mv runs/cifar10/g.pt checkpoints/cifar10/generator.pt
}

sampler() {  # class-conditional code sampler of the shipped prior: code critic, then an image critic too
  run python -m train.code_sampler fit --config $C/code_sampler.yaml --model.export_path runs/cifar10/ccs10000.pt
  run python -m train.code_sampler fit --config $C/code_sampler.yaml --model.init_sampler runs/cifar10/ccs10000.pt \
      --model.lambda_image 0.2 --trainer.max_steps 1000
}

judges() {  # independent judges and the second target (never used to train a prior)
  for config in judge_resnet judge_robust target_resnet; do
    run python -m train.classifier fit --config $C/$config.yaml
  done
}

fc6() {  # the fc6 pair: CaffeNet's head on the frozen trunk; FC layers regressed onto the prior's input; DeePSiM
  # in the resumable chunks of generator_fc6_chunks.yaml (rerun to continue; FC6_UNTIL=N stops at N iterations)
  [ -f runs/generator_fc6/ckpt/last.ckpt ] || {
    run python -m train.classifier fit --config $C/encoder_fc6.yaml
    run python -m train.generator_head fit --config $C/generator_fc6_head.yaml
  }
  run python -m train.chunks $C/generator_fc6_chunks.yaml ${FC6_UNTIL:+--until $FC6_UNTIL}
}

fc6_continue() {  # continue the shipped fc6 generator's DeePSiM run on a fresh machine from its handoff file
  local CK=checkpoints/cifar10
  [ -f runs/generator_fc6/ckpt/last.ckpt ] ||
    run python -m train.handoff unpack $CK/generator_fc6_training.pt $CK/generator_fc6.pt runs/generator_fc6/ckpt/last.ckpt
  run python -m train.chunks $C/generator_fc6_chunks.yaml ${FC6_UNTIL:+--until $FC6_UNTIL}
}

sanity() {  # the unnatural-classes test (docs/sanity.md): 20-class classifier (after judges) and swap detector
  run python -m train.classifier fit --config $C/sanity_bgr20.yaml
  run python -m train.classifier fit --config $C/sanity_swap_detector.yaml
}

mkdir -p runs/cifar10
case $stage in
  encoder|prior|sampler|judges|fc6|sanity) $stage ;;
  fc6-continue) fc6_continue ;;
  all) encoder; prior; sampler; judges; fc6; sanity ;;
  *) echo "unknown stage '$stage'; use encoder, prior, sampler, judges, fc6, fc6-continue, sanity or all" >&2; exit 2 ;;
esac
