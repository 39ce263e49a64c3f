#!/usr/bin/env bash
# WSRL from a competent pre-trained agent, end to end with no network, in minutes on 2 CPU cores.
#   1. makes local/halfcheetah/medium-v0 (100k transitions of the shipped medium behaviour policy,
#      like D4RL's halfcheetah-medium) unless it is already there;
#   2. takes the IQL agent pre-trained on exactly that dataset, shipped in pretrained/ (100k
#      gradient steps, half an hour on one core; `PRETRAIN=1 bash demo.sh` pre-trains it here);
#   3. fine-tunes it online WITHOUT the dataset, three ways, two at a time (one thread each):
#        wsrl_iql            WSRL: warmup steps of the frozen pre-trained policy, then SAC
#        wsrl_iql_no_warmup  the same SAC with no warmup (the paper's Fig. 6 ablation)
#        iql_no_retention    IQL fine-tuned online without its data (the paper's IQL baseline)
#   4. prints the pre-trained start, the lowest evaluation after the switch (the dip) and the
#      end of each, and draws them: runs/demo-<time>/curves.png and analysis.png.
# Budgets can be changed from the environment, e.g. `ONLINE_STEPS=8000 bash demo.sh`.
set -euo pipefail
cd "$(dirname "$0")"
ROOT=$(pwd)
DATASET=local/halfcheetah/medium-v0
PRETRAINED=${PRETRAINED:-$ROOT/pretrained/halfcheetah-medium-iql.pt}
ONLINE_STEPS=${ONLINE_STEPS:-4000}   # paper: 300,000 on locomotion
WARMUP=${WARMUP:-1000}               # paper: 5,000
EVAL=${EVAL:-"--eval-interval 500 --eval-episodes 5"}
OUT=runs/demo-$(date +%Y%m%d-%H%M%S)
mkdir -p "$OUT"

echo "===== step 1: the dataset $DATASET ====="
python tools/make_datasets.py make --envs halfcheetah --levels medium   # kept when it exists

if [ -n "${PRETRAIN:-}" ]; then
  echo "===== step 2: IQL pre-training on $DATASET, 100,000 gradient steps (about half an hour) ====="
  (cd "$OUT" && python "$ROOT/wsrl_iql_sac.py" --dataset-id "$DATASET" --offline-steps 100000 --online-steps 0 \
      --offline-eval-interval 5000 --critic-hidden 128 --actor-hidden 128 --exp-name pretrain)
  PRETRAINED=$(ls -d "$OUT"/runs/*__pretrain__1__* | tail -1)/pretrain_pretrained.pt
else
  [ -f "$PRETRAINED" ] || { echo "error: no pre-trained agent $PRETRAINED; PRETRAIN=1 bash demo.sh makes one"; exit 1; }
  echo "===== step 2: the pre-trained IQL agent $PRETRAINED ====="
fi

echo "===== step 3: online fine-tuning without the dataset, $ONLINE_STEPS steps ====="
online() {  # METHOD ARGS...: one run of wsrl_iql_sac.py, one thread, its console in $OUT/METHOD.log
  local method=$1
  shift
  (cd "$OUT" && OMP_NUM_THREADS=1 python "$ROOT/wsrl_iql_sac.py" --pretrained-checkpoint "$PRETRAINED" \
      --exp-name "$method" --online-steps "$ONLINE_STEPS" $EVAL "$@" > "$method.log" 2>&1) \
    || { echo "FAILED: $method, see $OUT/$method.log"; tail -5 "$OUT/$method.log"; exit 1; }
  echo "  $method: done ($OUT/$method.log)"
}
online wsrl_iql --warmup-steps "$WARMUP" &
FIRST=$!
online iql_no_retention --online-algo iql --warmup-steps 0
online wsrl_iql_no_warmup --warmup-steps 0
wait $FIRST

echo "===== step 4: what happened at the switch ====="
python tools/benchmark_report.py --runs "$OUT/runs" --out "$OUT" --warmup "$WARMUP" \
  --title "demo: HalfCheetah-v5, $DATASET, from $(basename "$PRETRAINED"); $ONLINE_STEPS online steps, warmup $WARMUP, seed 1" \
  --command "bash demo.sh" --note "$(nproc) cores, $(date +%F)."
echo "Read the table: 'start' is the pre-trained agent, 'lowest after start' the dip after the switch, 'final' the end."
