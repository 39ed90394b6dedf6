#!/usr/bin/env bash
# Re-train the pretrained zoo (the exact commands are also stored in each model card).
# Usage: scripts/train_zoo.sh [NAME ...]   (default: all nine). On a GPU drop --threads and raise the budgets.
set -euo pipefail
cd "$(dirname "$0")/.."
export OMP_WAIT_POLICY=PASSIVE
T=${THREADS:-1}
run() { local name=$1; shift; python -m sgconv_core.train "$@" --threads "$T" --quiet --out "pretrained/$name.safetensors"; }
declare -A Z=(
  [digits-sgconv]="--task digits --family sgconv --kernel-arg kernel_dim=32 --steps 800 --batch-size 32 --eval-every 50 --time-budget 360"
  [digits-s4d]="--task digits --family s4d --kernel-arg d_state=32 --kernel-arg init=lin --steps 600 --batch-size 32 --eval-every 50 --time-budget 330"
  [digits-s4]="--task digits --family s4 --kernel-arg d_state=32 --kernel-arg init=legs --steps 600 --batch-size 32 --eval-every 50 --time-budget 900"
  [delay-sgconv]="--task delay --family sgconv --d-model 32 --n-layers 1 --kernel-arg kernel_dim=64 --steps 1500 --batch-size 32 --eval-every 100 --time-budget 300"
  [delay-s4d]="--task delay --family s4d --d-model 32 --n-layers 1 --kernel-arg d_state=64 --kernel-arg init=lin --steps 1500 --batch-size 32 --eval-every 100 --time-budget 300"
  [delay-s4]="--task delay --family s4 --d-model 32 --n-layers 1 --kernel-arg d_state=64 --kernel-arg init=legs --steps 3000 --batch-size 32 --eval-every 100 --time-budget 900"
  [listops-sgconv]="--task listops --family sgconv --d-model 64 --n-layers 4 --bidirectional --kernel-arg kernel_dim=32 --steps 7000 --batch-size 32 --eval-every 250 --time-budget 720"
  [listops-s4d]="--task listops --family s4d --d-model 64 --n-layers 4 --bidirectional --kernel-arg d_state=32 --kernel-arg init=lin --steps 6000 --batch-size 32 --eval-every 250 --time-budget 720"
  [listops-s4]="--task listops --family s4 --d-model 64 --n-layers 4 --bidirectional --kernel-arg d_state=32 --kernel-arg init=legs --steps 5000 --batch-size 32 --eval-every 250 --time-budget 720"
)
names=("$@"); [ ${#names[@]} -gt 0 ] || names=(digits-sgconv digits-s4d digits-s4 delay-sgconv delay-s4d delay-s4 listops-sgconv listops-s4d listops-s4)
for n in "${names[@]}"; do echo "== $n"; run "$n" ${Z[$n]}; done
