#!/usr/bin/env bash
# Reproduce the paper's no-retention comparison (WSRL Fig. 7, with the analysis of Fig. 4 and 11)
# with this repository's own scripts, and regenerate the figures and table of the README.
#
#   bash benchmark.sh cpu     # ~50 min on a 2-core machine with no network: Hopper, small budgets, 2 seeds
#   bash benchmark.sh full    # the paper's budgets (250k pre-training, 10 critics 2x256, UTD 4): a GPU job
#   bash benchmark.sh speed   # env-steps/s of each script's update at the paper's config, as a markdown table
#
# Every tier writes under results/<tier>/: runs/ (tensorboard logs and checkpoints), logs/ (the
# console of every run), curves.png, analysis.png, scores.md. Settings can be changed with
# environment variables, e.g. `SEEDS="1 2 3" JOBS=3 bash benchmark.sh cpu`:
#   SEEDS  seeds to run (cpu: "1 2"; full: "1 2 3")
#   JOBS   seeds run side by side (cpu: 2, one thread each; full: as many as SEEDS)
#
# What runs, for each seed (the seeds run side by side, each seed's runs one after the other):
#   pretrain   calql_offline.py, offline only: the Cal-QL checkpoint every method below starts from
#   then, online, without the offline data unless said:
#   wsrl                 wsrl_calql_sac.py from that checkpoint: warmup, then SAC
#   wsrl_no_warmup       the same with --warmup-steps 0
#   wsrl_iql             wsrl_iql_sac.py: its own IQL pre-training (same steps), then WSRL
#   calql_no_retention   calql_offline.py from the checkpoint, Cal-QL online, data discarded
#   calql_retention      the same with half of every batch from the offline data
#   jsrl                 jsrl.py from the checkpoint
#   rlpd                 sac_fast.py from scratch with half of every batch offline
#   sac_fast             sac_fast.py from scratch, no data
set -euo pipefail
cd "$(dirname "$0")"
ROOT=$(pwd)
TIER=${1:-}

usage() {
  sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'
  exit 1
}

# ---- budgets per tier ---------------------------------------------------------------------------
case "$TIER" in
  cpu)
    # Hopper-v5: the cheapest locomotion task to simulate, and one whose no-retention dip the
    # paper shows. The dataset is the replay buffer of a short SAC run (like D4RL's
    # medium-replay), made here with the project's own code: no network is needed. Every
    # budget can be overridden from the environment (the test suite runs a tiny one).
    ENV_ID=${ENV_ID:-Hopper-v5}
    DATASET=${DATASET:-local/hopper/bench-replay-v0}
    DATASET_STEPS=${DATASET_STEPS:-10000}   # SAC steps that make the dataset (the first 5,000 random)
    OFFLINE_STEPS=${OFFLINE_STEPS:-3000}    # paper: 250,000
    ONLINE_STEPS=${ONLINE_STEPS:-5000}      # paper: hundreds of thousands
    WARMUP=${WARMUP:-1000}                  # paper: 5,000 (WSRL's warmup; SAC's and RLPD's random warmup)
    UTD=${UTD:-1}                           # paper: 4
    NET=${NET:-"--critic-hidden 128 --actor-hidden 128"}   # paper: 256; see the README (Cal-QL online is slow)
    EVAL=${EVAL:-"--eval-interval 500 --eval-episodes 5"}  # paper: 20 episodes
    SEEDS=${SEEDS:-"1 2"}
    JOBS=${JOBS:-2}
    THREADS=${THREADS:-1}
    ;;
  full)
    ENV_ID=${ENV_ID:-Hopper-v5}
    DATASET=${DATASET:-mujoco/hopper/medium-v0}   # downloaded by Minari (needs a network)
    DATASET_STEPS=0
    OFFLINE_STEPS=250000
    ONLINE_STEPS=${ONLINE_STEPS:-300000}
    WARMUP=5000
    UTD=4
    NET="--critic-hidden 256 --actor-hidden 256"
    EVAL="--eval-interval 10000 --eval-episodes 20"
    SEEDS=${SEEDS:-"1 2 3"}
    JOBS=${JOBS:-$(echo $SEEDS | wc -w)}
    THREADS=${THREADS:-4}
    ;;
  speed)
    mkdir -p results/speed
    python tools/speed.py --table | tee results/speed/speed.md
    exit 0
    ;;
  _seed) ;;  # internal: one seed's runs (below)
  *) usage ;;
esac

export ENV_ID DATASET DATASET_STEPS OFFLINE_STEPS ONLINE_STEPS WARMUP UTD NET EVAL THREADS ROOT
export OUT=${OUT:-results/$TIER}

# ---- one seed: pre-train once, then every method from that checkpoint -------------------------
if [ "$TIER" = "_seed" ]; then
  SEED=$2
  cd "$OUT"  # every script writes its runs/ here
  run() {  # run NAME SCRIPT ARGS...: one method; its console goes to logs/NAME_SEED.log
    local name=$1 script=$2
    shift 2
    echo "[$(date +%H:%M:%S)] seed $SEED: $name"
    if ! OMP_NUM_THREADS=$THREADS python "$ROOT/$script" --exp-name "$name" --seed "$SEED" "$@" \
        > "logs/${name}_${SEED}.log" 2>&1; then
      echo "FAILED: $name, seed $SEED; the end of $OUT/logs/${name}_${SEED}.log:"
      tail -5 "logs/${name}_${SEED}.log"
      exit 1
    fi
  }
  run pretrain calql_offline.py --dataset-id "$DATASET" --offline-steps "$OFFLINE_STEPS" --online-steps 0 $NET \
    --offline-eval-interval "$OFFLINE_STEPS"
  CKPT=$(ls -d runs/*__pretrain__"$SEED"__* | tail -1)/pretrain_pretrained.pt
  # the Cal-QL runs first: they are the slowest (a step with the CQL term costs five SAC steps).
  # They run at UTD 1, as Cal-QL does; the SAC learners below run at $UTD.
  run calql_no_retention calql_offline.py --pretrained-checkpoint "$CKPT" --online-steps "$ONLINE_STEPS" --offline-ratio 0 $EVAL
  run calql_retention calql_offline.py --pretrained-checkpoint "$CKPT" --online-steps "$ONLINE_STEPS" --offline-ratio 0.5 $EVAL
  run wsrl wsrl_calql_sac.py --pretrained-checkpoint "$CKPT" --online-steps "$ONLINE_STEPS" --warmup-steps "$WARMUP" \
    --utd "$UTD" $EVAL
  run wsrl_no_warmup wsrl_calql_sac.py --pretrained-checkpoint "$CKPT" --online-steps "$ONLINE_STEPS" --warmup-steps 0 \
    --utd "$UTD" $EVAL
  run jsrl jsrl.py --pretrained-checkpoint "$CKPT" --total-timesteps "$ONLINE_STEPS" --utd "$UTD" $EVAL
  run wsrl_iql wsrl_iql_sac.py --dataset-id "$DATASET" --offline-steps "$OFFLINE_STEPS" --online-steps "$ONLINE_STEPS" \
    --warmup-steps "$WARMUP" --offline-eval-interval "$OFFLINE_STEPS" --utd "$UTD" $NET $EVAL
  run rlpd sac_fast.py --dataset-id "$DATASET" --offline-ratio 0.5 --total-timesteps "$ONLINE_STEPS" \
    --warmup-steps "$WARMUP" --utd "$UTD" $NET $EVAL
  run sac_fast sac_fast.py --env-id "$ENV_ID" --total-timesteps "$ONLINE_STEPS" --warmup-steps "$WARMUP" \
    --utd "$UTD" $NET $EVAL
  echo "[$(date +%H:%M:%S)] seed $SEED: done"
  exit 0
fi

# ---- the tier: dataset, the seeds side by side, the report ------------------------------------
START=$(date +%s)
if [ -d "$OUT/runs" ] && [ -n "$(ls -A "$OUT/runs")" ]; then
  echo "error: $OUT/runs already holds runs; move it away (or set OUT=another/folder) so that the" >&2
  echo "figures show this benchmark's runs only." >&2
  exit 1
fi
mkdir -p "$OUT/runs" "$OUT/logs"
echo "benchmark $TIER: $ENV_ID, dataset $DATASET, seeds $SEEDS ($JOBS at a time), results in $OUT/"
echo "  pre-training $OFFLINE_STEPS steps; online $ONLINE_STEPS steps, warmup $WARMUP, UTD $UTD; $NET; $EVAL"

if python -c "import minari, sys; sys.exit(0 if '$DATASET' in minari.list_local_datasets() else 1)" 2>/dev/null; then
  echo "dataset $DATASET: already on this machine, reused"
elif [ "$DATASET_STEPS" -gt 0 ]; then
  echo "[$(date +%H:%M:%S)] dataset $DATASET: the replay buffer of a $DATASET_STEPS-step SAC run"
  (cd "$OUT" && python "$ROOT/sac_fast.py" --exp-name dataset --env-id "$ENV_ID" --total-timesteps "$DATASET_STEPS" \
    $NET --eval-interval "$DATASET_STEPS" --save-dataset-id "$DATASET" > logs/dataset.log 2>&1) \
    || { echo "FAILED: making the dataset, see $OUT/logs/dataset.log"; tail -5 "$OUT/logs/dataset.log"; exit 1; }
fi  # otherwise the scripts download it (full tier) or say how to make it

# one worker per seed; `xargs -P` runs $JOBS of them side by side
echo $SEEDS | tr ' ' '\n' | xargs -P "$JOBS" -I{} bash "$ROOT/benchmark.sh" _seed {}

MINUTES=$(( ($(date +%s) - START) / 60 ))
MACHINE="$(nproc) cores, $(lscpu 2>/dev/null | sed -n 's/^Model name: *//p' | head -1)"
python tools/benchmark_report.py --runs "$OUT/runs" --out "$OUT" --warmup "$WARMUP" \
  --title "$ENV_ID, $DATASET: $OFFLINE_STEPS offline steps, $ONLINE_STEPS online, UTD $UTD, seeds $SEEDS" \
  --command "bash benchmark.sh $TIER" \
  --note "Machine: $MACHINE. Date: $(date +%F). Wall time: $MINUTES min. Budgets: $OFFLINE_STEPS pre-training steps, $ONLINE_STEPS online steps (warmup $WARMUP), UTD $UTD for the SAC learners (Cal-QL: 1), $NET, $EVAL, seeds $SEEDS."
echo "benchmark $TIER done in $MINUTES min: $OUT/curves.png, $OUT/analysis.png, $OUT/scores.md"
