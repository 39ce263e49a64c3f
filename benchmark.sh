#!/usr/bin/env bash
# Reproduce the paper's no-retention comparison (WSRL Fig. 7, with the analysis of Fig. 4 and 11)
# with this repository's own scripts, and regenerate the figures and tables of docs/results.md.
#
#   bash benchmark.sh cpu     # 2-core machine, no network: HalfCheetah medium from the shipped agents, 5 seeds (54 min)
#   bash benchmark.sh maze    # 2-core machine: the sparse-reward demo, PointMaze U-maze, success rates, 3 seeds
#   bash benchmark.sh td3c    # 2-core machine: the policy-collapse paper, TD3 vs TD3-C from one TD3+BC agent per seed
#   bash benchmark.sh full    # the paper's budgets (250k pre-training, 10 critics 2x256, UTD 4): a GPU job
#   bash benchmark.sh gpu     # one GPU, capped: WSRL, Cal-QL with its data and RLPD at UTD 4 over 50k steps (tools/gpu_session.sh)
#   bash benchmark.sh speed   # env-steps/s of each script's update at the paper's config, as a markdown table
#
# Every tier writes under results/<tier>/: runs/ (tensorboard logs and checkpoints), logs/ (the
# console of every run), curves.png, analysis.png, scores.md. Settings can be changed with
# environment variables, e.g. `SEEDS="1 2 3" JOBS=3 bash benchmark.sh cpu`:
#   SEEDS    seeds to run (cpu: "1 2 3 4 5"; full: "1 2 3")
#   JOBS     runs side by side (cpu: 2, one thread each; full: as many as SEEDS)
#   METHODS  a subset of the methods below, e.g. METHODS="wsrl wsrl_no_warmup" (default: all; maze: three)
#   PRECISION fp32 (default) or bf16: every run's --precision (bfloat16 matmuls in the updates)
#   COMPILE=1 every run with --compile (each update compiled whole; the first run of a script pays
#            the compile, tens of seconds, the others find it in torch's cache: docs/speed.md)
#   RESUME=1 finish an interrupted benchmark: finished runs are kept, unfinished ones continue from
#            their last resume point (or start again if they have none)
#   DRY_RUN=1 print every command with its budgets, run nothing
#   SLURM=1  submit the same runs to a Slurm cluster as job arrays instead (docs/running.md):
#            JOBS runs at a time, SBATCH_ARGS="--partition ... --time ..." added to every sbatch;
#            preempted runs are requeued and continue from their resume points (RESUME_INTERVAL)
#   RESUME_INTERVAL  every run's --resume-interval (env steps between resume points; td3c.py has none)
#   WALL_CAP seconds: each run is stopped there (as Ctrl-C: it saves what it has) and counts as finished
#   REPORT=0 make no report (the runs are reported elsewhere: tools/gpu_session.sh brings them back)
#
# What runs, for each seed (JOBS workers share one queue of all seeds' runs):
#   pretrain   calql_offline.py, offline only: the Cal-QL checkpoint every method below starts from
#              (full tier; the cpu tier starts every seed from the shipped CHECKPOINT instead)
#   then, online, without the offline data unless said:
#   wsrl                 wsrl_calql_sac.py from that checkpoint: warmup, then SAC
#   wsrl_no_warmup       the same with --warmup-steps 0
#   wsrl_iql             wsrl_iql_sac.py from IQL_CHECKPOINT, or its own IQL pre-training (same steps), then WSRL
#   wsrl_iql_no_warmup   wsrl_iql_sac.py from IQL_CHECKPOINT, SAC with --warmup-steps 0
#   iql_no_retention     wsrl_iql_sac.py from IQL_CHECKPOINT, IQL online, data discarded (--online-algo iql)
# the paper's Fig. 7 baselines as their papers ran them (2 Q-functions, no LayerNorm), each pre-trained
# in its own run for OFFLINE_STEPS, then fine-tuned without the data (run only when METHODS names them;
# the full tier runs them):
#   calql_2q / cql_2q    calql_offline.py --num-qs 2 --layer-norm False (cql_2q: --no-calql)
#   iql_2q               wsrl_iql_sac.py --online-algo iql --num-qs 2 --layer-norm False
#   (in the cpu tier OFFLINE_STEPS defaults to 2,500, a smoke budget: results/cpu-iql-2q used
#   OFFLINE_STEPS=100000, the shipped agents' pre-training)
#   calql_no_retention   calql_offline.py from the checkpoint, Cal-QL online, data discarded
#   calql_retention      the same with half of every batch from the offline data
#   jsrl                 jsrl.py from the checkpoint
#   so2                  wsrl_calql_sac.py from the checkpoint, no warmup, SAC with SO2's perturbed value updates
#   rlpd                 sac_fast.py from scratch with half of every batch offline
#   sac_fast             sac_fast.py from scratch, no data
# and the td3c tier (td3c.py; the second paper, "policy collapse"):
#   td3bc_pretrain       TD3+BC, offline only: the checkpoint td3, td3c and td3bc start from
#   td3 / td3c / td3bc   online fine-tuning with plain TD3, TD3-C, or TD3+BC continued (empty buffer)
set -euo pipefail
cd "$(dirname "$0")"
ROOT=$(pwd)
TIER=${1:-}
# the settings given in the environment, to print with the command in scores.md
OVERRIDES=""
for var in ENV_ID DATASET DATASET_STEPS DATASET_SIZE CHECKPOINT IQL_CHECKPOINT OFFLINE_STEPS ONLINE_STEPS WARMUP UTD NET \
    EVAL SEEDS JOBS THREADS METHODS PRECISION COMPILE OUT RESUME_INTERVAL SLURM WALL_CAP CALQL_UTD; do
  [ -n "${!var+set}" ] || continue
  case "${!var}" in
    *" "*) OVERRIDES+="$var=\"${!var}\" " ;;
    *) OVERRIDES+="$var=${!var} " ;;
  esac
done

usage() {
  sed -n '2,28p' "$0" | sed 's/^# \{0,1\}//'
  exit 1
}

# ---- budgets per tier ---------------------------------------------------------------------------
case "$TIER" in
  cpu)
    # HalfCheetah-v5 medium, D4RL's grade (a SAC policy stopped at about a third of expert level,
    # normalised ~38), made here by tools/make_datasets.py from the shipped behaviour policy: no
    # network is needed. Every method that starts from a pre-trained agent starts from the SAME
    # shipped agents (pretrained/, each with its provenance), so no pre-training runs in this tier:
    # 100k Cal-QL steps take over an hour on 2 cores. Every budget can be overridden from the
    # environment (the test suite runs a tiny tier), e.g. CHECKPOINT= IQL_CHECKPOINT= (empty)
    # pre-trains every seed for OFFLINE_STEPS instead.
    ENV_ID=${ENV_ID:-HalfCheetah-v5}
    DATASET=${DATASET:-local/halfcheetah/medium-v0}
    DATASET_STEPS=${DATASET_STEPS:-0}       # >0: the dataset is instead the replay buffer of a SAC run this long
    DATASET_SIZE=${DATASET_SIZE:-100000}    # transitions of local/<env>/<level>-v0 (D4RL: 1M)
    CHECKPOINT=${CHECKPOINT-$ROOT/pretrained/halfcheetah-medium-calql.pt}  # empty: pre-train per seed
    IQL_CHECKPOINT=${IQL_CHECKPOINT-$ROOT/pretrained/halfcheetah-medium-iql.pt}
    OFFLINE_STEPS=${OFFLINE_STEPS:-2500}    # only without CHECKPOINT; paper: 250,000 (shipped: 100,000)
    ONLINE_STEPS=${ONLINE_STEPS:-5000}      # paper: 300,000 on locomotion (Fig. 7)
    WARMUP=${WARMUP:-1000}                  # paper: 5,000 (WSRL's --warmup-steps; SAC's and RLPD's --learning-starts)
    UTD=${UTD:-1}                           # paper: 4
    NET=${NET:-"--critic-hidden 128 --actor-hidden 128"}   # paper: 256; the shipped agents are 128 wide
    EVAL=${EVAL:-"--eval-interval 500 --eval-episodes 5"}  # paper: 20 episodes
    SEEDS=${SEEDS:-"1 2 3 4 5"}
    JOBS=${JOBS:-2}
    THREADS=${THREADS:-1}
    ;;
  maze)
    # The sparse-reward demo (PointMaze: the maze code and dict layout of AntMaze with a point
    # for a body): reward only at the goal, success rates. The data is D4RL's maze2d recipe with
    # a scripted body (tools/make_domain_datasets.py umaze: planner + PD controller + noise,
    # random goals); the evaluation task (one start, one goal) is never what it aims at. Every
    # seed starts from the shipped Cal-QL agent (pretrained/pointmaze-umaze-calql.pt). Methods:
    # WSRL, WSRL without warmup, and Cal-QL fine-tuned without its data (the paper's no-retention
    # baseline); add calql_retention, jsrl, rlpd with METHODS=... (sac_fast needs a dataset to
    # name the evaluation maze, so it is not offered here).
    ENV_ID=${ENV_ID:-PointMaze_UMaze-v3}
    DATASET=${DATASET:-local/pointmaze/umaze-v0}
    DATASET_STEPS=0
    DATASET_SIZE=0                          # 100,000 steps (tools/make_domain_datasets.py)
    CHECKPOINT=${CHECKPOINT-$ROOT/pretrained/pointmaze-umaze-calql.pt}
    IQL_CHECKPOINT=${IQL_CHECKPOINT-}
    OFFLINE_STEPS=${OFFLINE_STEPS:-20000}   # only without CHECKPOINT (the shipped agent: 20,000)
    ONLINE_STEPS=${ONLINE_STEPS:-5000}
    WARMUP=${WARMUP:-1000}
    UTD=${UTD:-1}
    NET=${NET:-"--critic-hidden 128 --critic-layers 2 --actor-hidden 128"}  # antmaze's preset: critics 4 x 256
    EVAL=${EVAL:-"--eval-interval 500 --eval-episodes 10"}
    SEEDS=${SEEDS:-"1 2 3"}
    JOBS=${JOBS:-2}
    THREADS=${THREADS:-1}
    METHODS=${METHODS:-"calql_no_retention wsrl wsrl_no_warmup"}
    ;;
  td3c)
    # The policy-collapse paper at CPU scale: per seed, TD3+BC pre-trained on the same HalfCheetah
    # medium data as the cpu tier (td3c.py, the paper's 2 x 256 networks), then fine-tuned without
    # the data by plain TD3 and by TD3-C from that one checkpoint (paper: 500k offline and 200k
    # online steps). The SAC settings below are unused here.
    ENV_ID=${ENV_ID:-HalfCheetah-v5}
    DATASET=${DATASET:-local/halfcheetah/medium-v0}
    DATASET_STEPS=0
    DATASET_SIZE=${DATASET_SIZE:-100000}
    CHECKPOINT=""
    IQL_CHECKPOINT=""
    OFFLINE_STEPS=${OFFLINE_STEPS:-20000}   # TD3+BC steps per seed (paper: 500,000)
    ONLINE_STEPS=${ONLINE_STEPS:-10000}     # paper: 200,000
    WARMUP=0
    UTD=1                                   # the paper: one gradient step per environment step
    NET=""
    EVAL=${EVAL:-"--eval-interval 500 --eval-episodes 5"}
    SEEDS=${SEEDS:-"1 2 3 4 5"}
    JOBS=${JOBS:-2}
    THREADS=${THREADS:-1}
    METHODS=${METHODS:-"td3bc_pretrain td3 td3c"}
    ;;
  full)
    ENV_ID=${ENV_ID:-Hopper-v5}
    DATASET=${DATASET:-mujoco/hopper/medium-v0}   # downloaded by Minari (needs a network)
    DATASET_STEPS=0
    DATASET_SIZE=0
    CHECKPOINT=""        # pre-trained per seed, at the paper's budget
    IQL_CHECKPOINT=""
    OFFLINE_STEPS=250000
    ONLINE_STEPS=${ONLINE_STEPS:-300000}
    WARMUP=5000
    UTD=4
    NET="--critic-hidden 256 --actor-hidden 256"
    EVAL="--eval-interval 10000 --eval-episodes 20"
    SEEDS=${SEEDS:-"1 2 3"}
    JOBS=${JOBS:-$(echo $SEEDS | wc -w)}
    THREADS=${THREADS:-4}
    # every method of the paper's Fig. 7, its IQL, CQL and Cal-QL baselines also as their papers ran them
    METHODS=${METHODS:-"pretrain calql_no_retention calql_retention wsrl wsrl_no_warmup jsrl so2 wsrl_iql rlpd sac_fast calql_2q cql_2q iql_2q"}
    ;;
  gpu)
    # The paper's claim over its first 50,000 steps (App. E, Fig. 20) on ONE lent GPU, with a
    # wall-clock cap so that a slow GPU still gives curves: from the shipped Cal-QL agent (10
    # critics, 128 wide), WSRL (warmup 5,000, UTD 4), Cal-QL with half of every batch from its data
    # at UTD 4 (the paper's Fig. 9 variant) and RLPD at UTD 4, 3 seeds each, all 9 runs side by
    # side. tools/gpu_session.sh runs it (REPORT=0; the report is made from the runs brought back).
    ENV_ID=${ENV_ID:-HalfCheetah-v5}
    DATASET=${DATASET:-local/halfcheetah/medium-v0}
    DATASET_STEPS=0
    DATASET_SIZE=${DATASET_SIZE:-100000}
    CHECKPOINT=${CHECKPOINT-$ROOT/pretrained/halfcheetah-medium-calql.pt}
    IQL_CHECKPOINT=""
    OFFLINE_STEPS=${OFFLINE_STEPS:-250000}  # only without CHECKPOINT
    ONLINE_STEPS=${ONLINE_STEPS:-50000}
    WARMUP=${WARMUP:-5000}
    UTD=${UTD:-4}
    CALQL_UTD=${CALQL_UTD:-4}
    NET=${NET:-"--critic-hidden 128 --actor-hidden 128"}   # the shipped agent's width (RLPD the same)
    EVAL=${EVAL:-"--eval-interval 2500 --eval-episodes 10"}
    SEEDS=${SEEDS:-"1 2 3"}
    JOBS=${JOBS:-9}
    THREADS=${THREADS:-1}
    METHODS=${METHODS:-"calql_retention wsrl rlpd"}
    ;;
  speed)
    mkdir -p results/speed
    python tools/speed.py --table | tee results/speed/speed.md
    exit 0
    ;;
  _job) ;;  # internal: one method for one seed (below)
  *) usage ;;
esac

PRECISION=${PRECISION:-fp32}
COMPILE=${COMPILE:-0}
RESUME_INTERVAL=${RESUME_INTERVAL:-}
WALL_CAP=${WALL_CAP:-}
CALQL_UTD=${CALQL_UTD:-1}  # Cal-QL fine-tunes at UTD 1, as Cal-QL does (gpu tier: 4, the paper's Fig. 9 variant)
export ENV_ID DATASET DATASET_STEPS DATASET_SIZE CHECKPOINT IQL_CHECKPOINT OFFLINE_STEPS ONLINE_STEPS WARMUP UTD NET EVAL THREADS ROOT \
  PRECISION COMPILE RESUME_INTERVAL WALL_CAP CALQL_UTD
export OUT=${OUT:-results/$TIER}

# ---- one job: one method for one seed ----------------------------------------------------------
# The jobs of every seed go through ONE queue that $JOBS workers share (`xargs -P` below), so a
# core never idles while another seed still has work. A method that starts from the seed's
# checkpoint waits for that seed's `pretrain` job to finish.
if [ "$TIER" = "_job" ]; then
  METHOD=$2 SEED=$3
  [ -n "${DRY_RUN:-}" ] || cd "$OUT"  # every script writes its runs/ here
  # Ctrl-C reaches the script too, which saves what it has and exits normally: this worker must
  # then stop WITHOUT marking the run finished (bash runs the trap once the script has exited)
  trap 'echo "[$(date +%H:%M:%S)] seed $SEED: $METHOD interrupted"; exit 130' INT
  # SIGTERM (a cluster's preemption): the script saves what it has too; the job is then requeued
  trap 'echo "[$(date +%H:%M:%S)] seed $SEED: $METHOD stopped by SIGTERM"; exit 143' TERM
  run() {  # run SCRIPT ARGS...: its console goes to logs/METHOD_SEED.log; .done marks it finished
    local script=$1 log="logs/${METHOD}_$SEED.log" previous
    shift
    [ -z "$RESUME_INTERVAL" ] || [ "$script" = td3c.py ] || set -- "$@" --resume-interval "$RESUME_INTERVAL"
    [ "$COMPILE" != 1 ] || set -- "$@" --compile
    if [ -n "${DRY_RUN:-}" ]; then
      echo "  (in $OUT) OMP_NUM_THREADS=$THREADS python $script --exp-name $METHOD --seed $SEED --precision $PRECISION $*"
      return
    fi
    if [ -f "$log.done" ]; then  # RESUME: finished in an earlier, interrupted benchmark
      echo "[$(date +%H:%M:%S)] seed $SEED: $METHOD already finished, kept"
      return
    fi
    rm -f "$log.failed"
    previous=$(ls -d runs/*__"$METHOD"__"$SEED"__* 2> /dev/null | tail -1 || true)
    if [ -n "$previous" ] && [ -f "$previous/resume.pt" ]; then  # an interrupted try (never a finished run)
      # continues from its last resume point, with the settings it began with; its earlier console is kept
      echo "[$(date +%H:%M:%S)] seed $SEED: $METHOD continues from its resume point in $previous"
      [ ! -f "$log" ] || mv "$log" "$log.$(date +%s)"
      set -- --resume "$previous"
    else  # nothing to continue from: what the try left goes, the run starts again
      rm -rf runs/*__"$METHOD"__"$SEED"__*
      echo "[$(date +%H:%M:%S)] seed $SEED: $METHOD"
      set -- --exp-name "$METHOD" --seed "$SEED" --precision "$PRECISION" "$@"
    fi
    local cap=()
    [ -z "$WALL_CAP" ] || cap=(timeout --preserve-status --signal=INT --kill-after=120 "$WALL_CAP")  # SIGINT: the script saves and ends
    if ! OMP_NUM_THREADS=$THREADS "${cap[@]}" python "$ROOT/$script" "$@" > "$log" 2>&1; then
      touch "$log.failed"
      echo "FAILED: $METHOD, seed $SEED; the end of $OUT/$log:"
      tail -5 "$log"
      exit 255  # tells xargs to start no further job (the ones running finish first)
    fi
    if [ -n "$WALL_CAP" ] && grep -q "^interrupted at" "$log"; then  # stopped at the cap: what it reached is its result
      echo "[$(date +%H:%M:%S)] seed $SEED: $METHOD stopped at the ${WALL_CAP}s cap ($(grep -o '^interrupted at [a-z ]*step [0-9,]*' "$log"))"
    elif grep -q "^interrupted at" "$log"; then  # stopped early (e.g. a signal to this one run)
      touch "$log.failed"  # a job waiting for this seed's checkpoint must stop, not wait forever
      echo "[$(date +%H:%M:%S)] seed $SEED: $METHOD was interrupted; RESUME=1 runs it again"
      exit 255
    fi
    touch "$log.done"
  }
  checkpoint() {  # the shipped Cal-QL checkpoint, or the seed's once its pre-training has finished
    if [ -n "$CHECKPOINT" ]; then
      echo "$CHECKPOINT"
      return
    fi
    wait_for pretrain
  }
  wait_for() {  # the seed's checkpoint of pre-training job $1, once that job has finished
    if [ -n "${DRY_RUN:-}" ]; then
      echo "runs/${ENV_ID}__$1__${SEED}__TIME/$1_pretrained.pt"
      return
    fi
    while [ ! -f "logs/$1_$SEED.log.done" ]; do
      if [ -f "logs/$1_$SEED.log.failed" ]; then
        echo "FAILED: $METHOD, seed $SEED: the pre-training of seed $SEED failed ($1)" >&2
        exit 255
      fi
      sleep 5
    done
    echo "$(ls -d runs/*__"$1"__"$SEED"__* | tail -1)/$1_pretrained.pt"
  }
  case $METHOD in
    pretrain)  # Cal-QL, offline only: the checkpoint the next five methods start from
      run calql_offline.py --dataset-id "$DATASET" --offline-steps "$OFFLINE_STEPS" --online-steps 0 $NET \
        --offline-eval-interval "$OFFLINE_STEPS" ;;
    # Cal-QL runs at UTD 1, as Cal-QL does; the SAC learners below run at $UTD
    calql_no_retention)
      CKPT=$(checkpoint)
      run calql_offline.py --pretrained-checkpoint "$CKPT" --online-steps "$ONLINE_STEPS" --offline-ratio 0 \
        --utd "$CALQL_UTD" $EVAL ;;
    calql_retention)  # the paper's share of offline data in every batch: 50%, 25% on kitchen (its App. I,
      # after Cal-QL; the official code leaves it to the command line)
      CKPT=$(checkpoint)
      case "$DATASET" in *kitchen*) RETAIN=0.25 ;; *) RETAIN=0.5 ;; esac
      run calql_offline.py --pretrained-checkpoint "$CKPT" --online-steps "$ONLINE_STEPS" --offline-ratio "$RETAIN" \
        --utd "$CALQL_UTD" $EVAL ;;
    wsrl)
      CKPT=$(checkpoint)
      run wsrl_calql_sac.py --pretrained-checkpoint "$CKPT" --online-steps "$ONLINE_STEPS" --warmup-steps "$WARMUP" \
        --utd "$UTD" $EVAL ;;
    wsrl_no_warmup)
      CKPT=$(checkpoint)
      run wsrl_calql_sac.py --pretrained-checkpoint "$CKPT" --online-steps "$ONLINE_STEPS" --warmup-steps 0 \
        --utd "$UTD" $EVAL ;;
    jsrl)
      CKPT=$(checkpoint)
      run jsrl.py --pretrained-checkpoint "$CKPT" --online-steps "$ONLINE_STEPS" --utd "$UTD" $EVAL ;;
    so2)  # the paper's SO2 baseline without the data: the same start, no warmup, noisy next actions in the target
      CKPT=$(checkpoint)
      run wsrl_calql_sac.py --pretrained-checkpoint "$CKPT" --online-steps "$ONLINE_STEPS" --warmup-steps 0 \
        --online-algo so2 --utd "$UTD" $EVAL ;;
    wsrl_iql)  # from the shipped IQL checkpoint, or its own IQL pre-training on the same data and steps
      if [ -n "$IQL_CHECKPOINT" ]; then
        run wsrl_iql_sac.py --pretrained-checkpoint "$IQL_CHECKPOINT" --online-steps "$ONLINE_STEPS" \
          --warmup-steps "$WARMUP" --utd "$UTD" $EVAL
      else
        run wsrl_iql_sac.py --dataset-id "$DATASET" --offline-steps "$OFFLINE_STEPS" --online-steps "$ONLINE_STEPS" \
          --warmup-steps "$WARMUP" --offline-eval-interval "$OFFLINE_STEPS" --utd "$UTD" $NET $EVAL
      fi ;;
    wsrl_iql_no_warmup|iql_no_retention)  # from the shipped IQL checkpoint: SAC with no warmup, or IQL online
      [ -n "$IQL_CHECKPOINT" ] || { echo "$METHOD needs IQL_CHECKPOINT (a pre-trained IQL agent)" >&2; exit 1; }
      case $METHOD in wsrl_iql_no_warmup) ALGO=sac ;; *) ALGO=iql ;; esac
      run wsrl_iql_sac.py --pretrained-checkpoint "$IQL_CHECKPOINT" --online-steps "$ONLINE_STEPS" --warmup-steps 0 \
        --online-algo "$ALGO" --utd "$UTD" $EVAL ;;
    calql_2q|cql_2q)  # Fig. 7: Cal-QL / CQL as in their papers, pre-trained here, fine-tuned without the data
      [ "$METHOD" = cql_2q ] && KIND=--no-calql || KIND=--calql
      run calql_offline.py --dataset-id "$DATASET" --offline-steps "$OFFLINE_STEPS" --online-steps "$ONLINE_STEPS" \
        --offline-ratio 0 "$KIND" --offline-eval-interval "$OFFLINE_STEPS" $NET --num-qs 2 --layer-norm False $EVAL ;;
    iql_2q)  # Fig. 7: IQL as in its paper, pre-trained here, fine-tuned without the data
      run wsrl_iql_sac.py --dataset-id "$DATASET" --offline-steps "$OFFLINE_STEPS" --online-steps "$ONLINE_STEPS" \
        --warmup-steps 0 --online-algo iql --offline-eval-interval "$OFFLINE_STEPS" $NET --num-qs 2 --layer-norm False \
        $EVAL ;;
    rlpd)
      run sac_fast.py --dataset-id "$DATASET" --offline-ratio 0.5 --online-steps "$ONLINE_STEPS" \
        --learning-starts "$WARMUP" --utd "$UTD" $NET $EVAL ;;
    sac_fast)
      run sac_fast.py --env-id "$ENV_ID" --online-steps "$ONLINE_STEPS" --learning-starts "$WARMUP" --utd "$UTD" \
        $NET $EVAL ;;
    td3bc_pretrain)  # TD3+BC, offline only (td3c.py's phase 1)
      run td3c.py --dataset-id "$DATASET" --offline-steps "$OFFLINE_STEPS" --online-steps 0 \
        --offline-eval-interval "$OFFLINE_STEPS" $EVAL ;;
    td3|td3c|td3bc)  # the same TD3+BC agent, fine-tuned without the offline data (an empty buffer)
      CKPT=$(wait_for td3bc_pretrain)
      run td3c.py --pretrained-checkpoint "$CKPT" --online-algo "$METHOD" --online-steps "$ONLINE_STEPS" $EVAL ;;
    *) echo "unknown method $METHOD" >&2; exit 1 ;;
  esac
  exit 0
fi

# The queue, longest jobs first so that the short ones fill the gaps at the end: the
# pre-trainings, the Cal-QL runs (a step with the CQL term costs several SAC steps), the methods
# that start from the checkpoint, then those that need none.
METHOD_ORDER="pretrain calql_no_retention calql_retention wsrl wsrl_no_warmup jsrl so2 wsrl_iql rlpd sac_fast"
OPTIONAL="wsrl_iql_no_warmup iql_no_retention calql_2q cql_2q iql_2q"  # run only when METHODS names them
[ -z "$CHECKPOINT" ] || METHOD_ORDER=${METHOD_ORDER#pretrain }  # shipped: nothing to pre-train
KNOWN="$METHOD_ORDER $OPTIONAL td3bc_pretrain td3 td3c td3bc"
if [ -n "${METHODS:-}" ]; then  # a subset, e.g. METHODS="wsrl wsrl_no_warmup" UTD=4 for the warmup ablation
  for m in $METHODS; do
    [[ " $KNOWN " == *" $m "* ]] || { echo "error: METHODS: unknown method $m (known: $KNOWN)" >&2; exit 1; }
  done
  METHOD_ORDER=$METHODS
  # without a shipped checkpoint the methods that start from one wait for their seed's pre-training
  if [ -z "$CHECKPOINT" ] && [[ " $METHOD_ORDER " != *" pretrain "* ]]; then
    for m in calql_no_retention calql_retention wsrl wsrl_no_warmup jsrl so2; do
      [[ " $METHOD_ORDER " == *" $m "* ]] && { METHOD_ORDER="pretrain $METHOD_ORDER"; break; }
    done
  fi
  if [[ " $METHOD_ORDER " != *" td3bc_pretrain "* ]]; then
    for m in td3 td3c td3bc; do
      [[ " $METHOD_ORDER " == *" $m "* ]] && { METHOD_ORDER="td3bc_pretrain $METHOD_ORDER"; break; }
    done
  fi
fi
queue() {
  for method in $METHOD_ORDER; do
    for seed in $SEEDS; do echo "$method $seed"; done
  done
}

# ---- the tier: dataset, the queue of runs, the report -------------------------------------------
START=$(date +%s)
echo "benchmark $TIER: $ENV_ID, dataset $DATASET, seeds $SEEDS ($JOBS at a time), results in $OUT/"
echo "  pre-trained: ${CHECKPOINT:-per seed, $OFFLINE_STEPS steps}${IQL_CHECKPOINT:+ (IQL: $IQL_CHECKPOINT)}; online $ONLINE_STEPS steps, warmup $WARMUP, UTD $UTD; $NET; $EVAL"
for ck in $CHECKPOINT $IQL_CHECKPOINT; do
  [ -f "$ck" ] || { echo "error: no pre-trained checkpoint $ck. Set CHECKPOINT= IQL_CHECKPOINT= (empty) to pre-train every seed here instead." >&2; exit 1; }
done
if [ -n "${DRY_RUN:-}" ]; then  # the commands, in the queue's order
  echo "DRY_RUN: nothing is run. Unless $DATASET is on this machine, it is made (cpu) or downloaded (full) first."
  queue | while read -r method seed; do bash "$ROOT/benchmark.sh" _job "$method" "$seed"; done
  exit 0
fi
if [ -z "${RESUME:-}${SLURM_PHASE:-}" ] && [ -d "$OUT/runs" ] && [ -n "$(ls -A "$OUT/runs")" ]; then
  echo "error: $OUT/runs already holds runs. To finish an interrupted benchmark (finished runs kept):" >&2
  echo "  RESUME=1 bash benchmark.sh $TIER" >&2
  echo "To start afresh, move $OUT away (or set OUT=another/folder): the figures must show one benchmark's runs." >&2
  exit 1
fi
mkdir -p "$OUT/runs" "$OUT/logs"
trap 'echo "benchmark $TIER interrupted; finish it with: RESUME=1 bash benchmark.sh $TIER" >&2; exit 130' INT

make_dataset() {  # the tier's dataset, unless it is on this machine already
  have_dataset() { python -c "import minari, sys; sys.exit(0 if '$DATASET' in minari.list_local_datasets() else 1)" 2>/dev/null; }
  if have_dataset && [ -f "$OUT/logs/dataset.log" ] && [ ! -f "$OUT/logs/dataset.log.done" ]; then
    # this benchmark began making it and was interrupted: tools/export_dataset.py saves a dataset on Ctrl-C,
    # so what is there is a shorter run's buffer. Make it again rather than pre-train on that.
    echo "dataset $DATASET: left unfinished by an interrupted benchmark; deleted, made again"
    python -c "import minari; minari.delete_dataset('$DATASET')"
  fi
  if have_dataset; then
    echo "dataset $DATASET: already on this machine, reused"
  elif [ "$DATASET_STEPS" -gt 0 ]; then
    echo "[$(date +%H:%M:%S)] dataset $DATASET: the replay buffer of a $DATASET_STEPS-step SAC run"
    (cd "$OUT" && python "$ROOT/tools/export_dataset.py" --exp-name dataset --env-id "$ENV_ID" --online-steps "$DATASET_STEPS" \
      $NET --eval-interval "$DATASET_STEPS" --save-dataset-id "$DATASET" > logs/dataset.log 2>&1) \
      || { echo "FAILED: making the dataset, see $OUT/logs/dataset.log"; tail -5 "$OUT/logs/dataset.log"; exit 1; }
    touch "$OUT/logs/dataset.log.done"  # (an interruption has already left through the trap above)
  elif [[ "$DATASET" =~ ^local/(hopper|halfcheetah|walker2d)/(medium|expert|medium-expert)-v0$ ]]; then
    echo "[$(date +%H:%M:%S)] dataset $DATASET: $DATASET_SIZE transitions of the shipped behaviour policy"
    python tools/make_datasets.py make --envs "${BASH_REMATCH[1]}" --levels "${BASH_REMATCH[2]}" --size "$DATASET_SIZE" \
      > "$OUT/logs/dataset.log" 2>&1 \
      || { echo "FAILED: making the dataset, see $OUT/logs/dataset.log"; tail -5 "$OUT/logs/dataset.log"; exit 1; }
    touch "$OUT/logs/dataset.log.done"
  elif [ "$DATASET" = local/pointmaze/umaze-v0 ]; then
    echo "[$(date +%H:%M:%S)] dataset $DATASET: planner + PD controller + noise in the U-maze"
    python tools/make_domain_datasets.py umaze > "$OUT/logs/dataset.log" 2>&1 \
      || { echo "FAILED: making the dataset, see $OUT/logs/dataset.log"; tail -5 "$OUT/logs/dataset.log"; exit 1; }
    touch "$OUT/logs/dataset.log.done"
  fi  # otherwise the scripts download it (full tier) or say how to make it
}

report() {  # scores.md, curves.png, analysis.png from every run under $OUT/runs
  MINUTES=$(( ($(date +%s) - START) / 60 ))
  WALL="Wall time: $MINUTES min"
  [ -z "${SLURM:-}" ] || WALL="$WALL from submission to report on Slurm (queueing included)"
  [ -z "${RESUME:-}" ] || WALL="$WALL (RESUME=1: the resumed part only)"
  PRE="$OFFLINE_STEPS pre-training steps per seed"
  [ -z "$CHECKPOINT" ] || PRE="pre-trained agents $(basename "$CHECKPOINT")${IQL_CHECKPOINT:+ and $(basename "$IQL_CHECKPOINT")} (all seeds)"
  MACHINE="$(nproc) cores, $(lscpu 2>/dev/null | sed -n 's/^Model name: *//p' | head -1)"
  python tools/benchmark_report.py --runs "$OUT/runs" --out "$OUT" --warmup "$WARMUP" \
    --title "$ENV_ID, $DATASET: $PRE, $ONLINE_STEPS online steps, UTD $UTD, seeds $SEEDS" \
    --command "${OVERRIDES}bash benchmark.sh $TIER" \
    --note "Machine: $MACHINE. Date: $(date +%F). $WALL. Budgets: $PRE, $ONLINE_STEPS online steps (warmup $WARMUP), UTD $UTD for the SAC learners (Cal-QL: 1), $NET, $EVAL, seeds $SEEDS."
  echo "benchmark $TIER done in $MINUTES min: $OUT/curves.png, $OUT/analysis.png, $OUT/scores.md"
}

slurm_submit() {  # SLURM=1: the same queue as job arrays; the jobs run this file's _job, like xargs does here
  command -v sbatch > /dev/null || { echo "error: SLURM=1 needs Slurm's sbatch, which is not on this machine" >&2; exit 1; }
  mkdir -p "$OUT/slurm"
  OUT=$(cd "$OUT" && pwd)  # the jobs may start elsewhere
  export OUT SWEEP_START=${SWEEP_START:-$START}
  # what is left to do (RESUME=1: not the finished runs), the pre-trainings apart: the rest starts from them
  queue | while read -r m s; do [ -f "$OUT/logs/${m}_$s.log.done" ] || echo "$m $s"; done > "$OUT/slurm/todo.txt"
  grep -E '^(pretrain|td3bc_pretrain) ' "$OUT/slurm/todo.txt" > "$OUT/slurm/pretrain.txt" || true
  grep -vE '^(pretrain|td3bc_pretrain) ' "$OUT/slurm/todo.txt" > "$OUT/slurm/runs.txt" || true
  # every job: requeued when preempted (its run continues from its resume point), log appended to
  sb() { sbatch --parsable --requeue --open-mode=append --cpus-per-task="$THREADS" --job-name "wsrl-$TIER" ${SBATCH_ARGS:-} "$@"; }
  array() {  # array LIST AFTER: one task per line of LIST ("method seed"), JOBS at a time, once AFTER succeeded
    sb --dependency="afterok:$2" --array="1-$(wc -l < "$1")%$JOBS" -o "$OUT/logs/slurm_%A_%a.out" \
      --wrap "bash '$ROOT/benchmark.sh' _job \$(sed -n \${SLURM_ARRAY_TASK_ID}p '$1')"
  }
  local last ids
  last=$(sb -o "$OUT/logs/slurm_dataset.out" --wrap "SLURM_PHASE=dataset bash '$ROOT/benchmark.sh' $TIER")
  ids="dataset $last"
  if [ -s "$OUT/slurm/pretrain.txt" ]; then last=$(array "$OUT/slurm/pretrain.txt" "$last"); ids+=", pre-training $last"; fi
  if [ -s "$OUT/slurm/runs.txt" ]; then last=$(array "$OUT/slurm/runs.txt" "$last"); ids+=", runs $last"; fi
  last=$(sb --dependency="afterok:$last" -o "$OUT/logs/slurm_report.out" --wrap "SLURM_PHASE=report bash '$ROOT/benchmark.sh' $TIER")
  echo "submitted to Slurm: $(wc -l < "$OUT/slurm/todo.txt") runs; jobs: $ids, report $last"
  echo "  watch: squeue -u $(id -un); each run's console: $OUT/logs/<method>_<seed>.log, Slurm's: $OUT/logs/slurm_*.out"
  echo "  the report ($OUT/scores.md) is made when every run has finished. If a run fails, the report never"
  echo "  starts: fix it, scancel $last, then resubmit what is left: SLURM=1 RESUME=1 bash benchmark.sh $TIER"
}

# ---- what runs, here or on Slurm ------------------------------------------------------------------
case "${SLURM_PHASE:-}" in  # (inside the Slurm jobs that slurm_submit makes)
  dataset) make_dataset; exit 0 ;;
  report) START=${SWEEP_START:-$START}; report; exit 0 ;;
esac
if [ -n "${SLURM:-}" ]; then
  slurm_submit
  exit 0
fi
make_dataset
# $JOBS workers take the jobs from the queue in order; a failed job stops the benchmark (after
# the jobs already running) before the report
if ! queue | xargs -P "$JOBS" -L 1 bash "$ROOT/benchmark.sh" _job; then
  echo "benchmark $TIER: a run failed (above). Fix it, then finish with: RESUME=1 bash benchmark.sh $TIER" >&2
  exit 1
fi
[ "${REPORT:-1}" = 0 ] || report
