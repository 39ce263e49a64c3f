#!/usr/bin/env bash
# The demo: a pre-trained agent fine-tuned online WITHOUT its offline data, three ways, in about
# 2 minutes on 2 CPU cores with no network. One figure and a caption at the end.
#
#   bash demo.sh                      # seed 1 (about 2 min on 2 cores)
#   SEEDS="1 2 3 4 5" bash demo.sh    # the same over 5 seeds (about 8.5 min in all): mean and spread
#   PRETRAIN=1 bash demo.sh           # pre-train the IQL agent here first (about half an hour)
#   bash demo.sh --help               # this text; runs nothing
#
# What it does:
#   1. makes local/halfcheetah/medium-v0 (100k transitions of the shipped medium behaviour policy,
#      like D4RL's halfcheetah-medium) unless it is already there;
#   2. takes the IQL agent pre-trained on exactly that dataset, shipped in pretrained/ (100k
#      gradient steps);
#   3. fine-tunes it online for ONLINE_STEPS steps, the data thrown away, three ways (benchmark.sh's
#      runs of the same names, two at a time, one thread each):
#        wsrl_iql            WSRL: WARMUP steps of the frozen pre-trained policy, then SAC
#        wsrl_iql_no_warmup  the same SAC with no warmup (the paper's Fig. 6 ablation)
#        iql_no_retention    IQL fine-tuned online without its data (the paper's IQL baseline)
#   4. draws runs/demo-<time>/demo.png (score, how far the policy moved, how the critic fits the
#      offline data) and prints its caption, with the numbers of these runs.
# Settings from the environment: SEEDS (default 1), ONLINE_STEPS (4000), WARMUP (1000), PRETRAINED
# (the agent), PRETRAIN=1.
set -euo pipefail
cd "$(dirname "$0")"
case "${1:-}" in
  -h|--help) sed -n '2,24p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
  "") ;;
  *) echo "error: demo.sh takes no argument but --help (got '$1'); settings come from the environment, e.g. SEEDS=\"1 2\" bash demo.sh" >&2
     exit 2 ;;
esac
ROOT=$(pwd)
DATASET=local/halfcheetah/medium-v0
PRETRAINED=${PRETRAINED:-$ROOT/pretrained/halfcheetah-medium-iql.pt}
ONLINE_STEPS=${ONLINE_STEPS:-4000}   # paper: 300,000 on locomotion
WARMUP=${WARMUP:-1000}               # paper: 5,000
SEEDS=${SEEDS:-1}
OUT=runs/demo-$(date +%Y%m%d-%H%M%S)
mkdir -p "$OUT"

echo "===== step 1: the dataset $DATASET ====="
python tools/make_datasets.py make --envs halfcheetah --levels medium   # kept when it exists

if [ -n "${PRETRAIN:-}" ]; then
  echo "===== step 2: IQL pre-training on $DATASET, 100,000 gradient steps (about half an hour) ====="
  (cd "$OUT" && python "$ROOT/wsrl_iql_sac.py" --dataset-id "$DATASET" --offline-steps 100000 --online-steps 0 \
      --offline-eval-interval 5000 --critic-hidden 128 --actor-hidden 128 --exp-name pretrain)
  PRETRAINED=$(ls -d "$ROOT/$OUT"/runs/*__pretrain__1__* | tail -1)/pretrain_pretrained.pt
else
  [ -f "$PRETRAINED" ] || { echo "error: no pre-trained agent $PRETRAINED; PRETRAIN=1 bash demo.sh makes one" >&2; exit 1; }
  echo "===== step 2: the pre-trained IQL agent $PRETRAINED ====="
fi

echo "===== step 3: online fine-tuning without the dataset, $ONLINE_STEPS steps, seeds $SEEDS ====="
echo "  each run's console: $OUT/bench/logs/ (a line here as each run starts; about 1 min per run and seed on 2 cores)"
set +e  # the queue's lines as they come; its whole output in benchmark.log
METHODS="wsrl_iql wsrl_iql_no_warmup iql_no_retention" IQL_CHECKPOINT="$PRETRAINED" ONLINE_STEPS="$ONLINE_STEPS" \
  WARMUP="$WARMUP" SEEDS="$SEEDS" OUT="$OUT/bench" bash benchmark.sh cpu 2>&1 | tee "$OUT/benchmark.log" \
  | grep --line-buffered -E "^\[|done in|FAILED"
status=${PIPESTATUS[0]}
set -e
[ "$status" -eq 0 ] || { echo "FAILED: the fine-tuning runs, see $OUT/benchmark.log"; tail -5 "$OUT/benchmark.log"; exit 1; }
echo "  the tables: $OUT/bench/scores.md"

echo "===== step 4: the figure ====="
python tools/benchmark_report.py --runs "$OUT/bench/runs" --out "$OUT" --warmup "$WARMUP" --demo \
  --title "Fine-tuning a pre-trained IQL agent online without its data: HalfCheetah-v5, $ONLINE_STEPS steps, seed$(
    [ "$(echo $SEEDS | wc -w)" -gt 1 ] && echo s) $SEEDS"
