#!/usr/bin/env bash
# WSRL on a competent pre-trained agent, end to end with no network: about 10 minutes on 2 CPU cores.
#   1. makes local/halfcheetah/medium-v0 (100k transitions of the shipped medium behaviour policy,
#      like D4RL's halfcheetah-medium) unless it is already there;
#   2. takes the Cal-QL agent pre-trained on exactly that dataset, shipped in pretrained/ (30k
#      gradient steps, an hour of CPU; `PRETRAIN=1 bash demo.sh` pre-trains it here instead);
#   3. fine-tunes it online WITHOUT the dataset, three ways, two at a time (one thread each):
#        wsrl                WSRL: warmup steps of the frozen pre-trained policy, then SAC
#        wsrl_no_warmup      the same SAC with no warmup (the paper's Fig. 6 ablation)
#        calql_no_retention  Cal-QL fine-tuned without its data (the baseline that forgets)
#   4. prints the pre-trained start, the lowest evaluation after the switch (the dip) and the
#      end of each, and draws them: runs/demo-<time>/curves.png and analysis.png.
# Budgets can be changed from the environment, e.g. `ONLINE_STEPS=8000 bash demo.sh`.
set -euo pipefail
cd "$(dirname "$0")"
ROOT=$(pwd)
DATASET=local/halfcheetah/medium-v0
PRETRAINED=${PRETRAINED:-$ROOT/pretrained/halfcheetah-medium-calql.pt}
ONLINE_STEPS=${ONLINE_STEPS:-4000}   # paper: 300,000 on locomotion
WARMUP=${WARMUP:-1000}               # paper: 5,000
EVAL=${EVAL:-"--eval-interval 500 --eval-episodes 5"}
OUT=runs/demo-$(date +%Y%m%d-%H%M%S)
mkdir -p "$OUT"

echo "===== step 1: the dataset $DATASET ====="
python tools/make_datasets.py make --envs halfcheetah --levels medium   # skipped when it exists

if [ -n "${PRETRAIN:-}" ]; then
  echo "===== step 2: Cal-QL pre-training on $DATASET, 30,000 gradient steps (about an hour) ====="
  (cd "$OUT" && OMP_NUM_THREADS=2 python "$ROOT/calql_offline.py" --dataset-id "$DATASET" --offline-steps 30000 \
      --online-steps 0 --offline-eval-interval 2500 --critic-hidden 128 --actor-hidden 128 --exp-name pretrain)
  PRETRAINED=$(ls -d "$OUT"/runs/*__pretrain__1__* | tail -1)/pretrain_pretrained.pt
else
  echo "===== step 2: the pre-trained Cal-QL agent $PRETRAINED ====="
fi

echo "===== step 3: online fine-tuning without the dataset, $ONLINE_STEPS steps ====="
online() {  # METHOD SCRIPT ARGS...: one run, one thread, its console in $OUT/METHOD.log
  local method=$1 script=$2
  shift 2
  (cd "$OUT" && OMP_NUM_THREADS=1 python "$ROOT/$script" --pretrained-checkpoint "$PRETRAINED" \
      --exp-name "$method" $EVAL "$@" > "$method.log" 2>&1) || { echo "FAILED: $method, see $OUT/$method.log"; tail -5 "$OUT/$method.log"; exit 1; }
  echo "  $method done: $(grep -m1 'SUMMARY' "$OUT/$method.log")"
}
online calql_no_retention calql_offline.py --online-steps "$ONLINE_STEPS" --offline-ratio 0 &
CALQL=$!
online wsrl wsrl_calql_sac.py --online-steps "$ONLINE_STEPS" --warmup-steps "$WARMUP"
online wsrl_no_warmup wsrl_calql_sac.py --online-steps "$ONLINE_STEPS" --warmup-steps 0
wait $CALQL

echo "===== step 4: what happened at the switch ====="
python tools/benchmark_report.py --runs "$OUT/runs" --out "$OUT" --warmup "$WARMUP" \
  --title "demo: HalfCheetah-v5, $DATASET, from $(basename "$PRETRAINED"); $ONLINE_STEPS online steps, warmup $WARMUP, seed 1" \
  --command "bash demo.sh" --note "$(nproc) cores, $(date +%F)."
echo "Read the table: 'start' is the pre-trained agent, 'lowest after start' the dip after the switch, 'final' the end."
