#!/usr/bin/env bash
# Everything this project needs a GPU for, as ONE command for a lent GPU machine (no network
# there, minutes of machine time): install the carried wheels, make the dataset, run the tests
# that need a GPU, time every script's update (eager and CUDA graphs, fp32 and bf16, against the
# GPU's measured matmul peak), then the comparison of `bash benchmark.sh gpu` under a wall-clock
# cap, and pack what came out into at most 8 files in OUT.
#
#   bash tools/gpu_session.sh OUT                    # on the GPU machine (its python3 has torch)
#   REHEARSAL=1 bash tools/gpu_session.sh /tmp/out   # on a CPU: the same steps at toy budgets
#   PYTHON=/tmp/v312/bin/python REHEARSAL=1 bash tools/gpu_session.sh /tmp/out   # under the GPU
#                                       # machine's Python 3.12 and torch 2.11 (docs/speed.md says how)
#
# The wheels of what the machine lacks (gymnasium, mujoco, minari, tyro and their needs) travel in
# .whl/: `bash tools/gpu_wheels.sh` downloads them here. Budgets, from the environment:
#   CAP       seconds each comparison run may take (default 210; it stops and saves there)
#   BUDGET    seconds the whole session may take (default 570, under a device command's 600): when
#             the steps before the comparison ran long, CAP is lowered to what is left, less 40 s for
#             the runs' last evaluation and the packing, so the runs still come back
#   SEEDS     comparison seeds (default "1 2 3"); METHODS (default "calql_retention wsrl rlpd")
#   REPEATS   timed calls per update in the speed table (default 20)
# Back here: python tools/gpu_report.py OUT results/gpu-DATE makes the report from OUT/runs.tar.gz.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${1:?usage: bash tools/gpu_session.sh OUT}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
exec > >(tee "$OUT/session.log") 2>&1
T0=$(date +%s)
stage() { echo "== [$(( $(date +%s) - T0 )) s] $*"; }
PY=${PYTHON:-python3}
REHEARSAL=${REHEARSAL:-}
CAP=${CAP:-210}
BUDGET=${BUDGET:-570}
REPEATS=${REPEATS:-20}
WORK=${WORK:-/tmp/wsrl-gpu}
rm -rf "$WORK" && mkdir -p "$WORK"
export MINARI_DATASETS_PATH=$WORK/minari PYTHONUNBUFFERED=1 MUJOCO_GL=egl
# Each step compiles into its own Inductor cache: a compile cut by a step's time limit can leave a
# half-written file there that fails the next compile with "file too short" (pytorch#102539)
cache() { TORCHINDUCTOR_CACHE_DIR=$WORK/inductor-$1 TRITON_CACHE_DIR=$WORK/triton-$1 "${@:2}"; }
# benchmark.sh calls `python`: the one with torch (a wrapper, not a link: a venv's python finds its
# packages through the path it was started by)
mkdir -p "$WORK/bin" && printf '#!/bin/sh\nexec %s "$@"\n' "$(command -v "$PY")" > "$WORK/bin/python" && chmod +x "$WORK/bin/python"
export PATH=$WORK/bin:$PATH

stage "wheels"
if ls "${WHEELS:-.whl}"/*.whl > /dev/null 2>&1; then
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$WORK/site" \
    "${WHEELS:-.whl}"/*.whl || { echo "error: the carried wheels did not install"; exit 1; }
  export PYTHONPATH=$WORK/site${PYTHONPATH:+:$PYTHONPATH}
fi
$PY - <<'EOF' | tee "$OUT/summary.md" || exit 1
import platform, sys, torch, gymnasium, mujoco, minari, tyro, numpy
try:  # the environment itself, not only its package: gymnasium's MuJoCo envs import more (imageio)
    gymnasium.make("HalfCheetah-v5").close()
except Exception as e:
    sys.exit(f"error: HalfCheetah-v5 does not load here ({type(e).__name__}: {e}); carry what it lacks "
             "as a wheel (tools/gpu_wheels.sh's PACKAGES)")
gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
print(f"# GPU session\n\n- machine: {platform.node()}, {platform.processor() or platform.machine()}, GPU: {gpu}")
print(f"- python {platform.python_version()}, torch {torch.__version__} (CUDA {torch.version.cuda}), numpy "
      f"{numpy.__version__}, gymnasium {gymnasium.__version__}, mujoco {mujoco.__version__}, minari "
      f"{minari.__version__}, tyro {tyro.__version__}")
EOF
command -v nvidia-smi > /dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv \
  | tee -a "$OUT/summary.md"

stage "dataset (in the background)"
SIZE=100000
[ -z "$REHEARSAL" ] || SIZE=3000
$PY tools/make_datasets.py make --envs halfcheetah --levels medium --size "$SIZE" > "$WORK/dataset.log" 2>&1 &
DATASET_PID=$!

stage "tests that need a GPU"
if [ -n "$REHEARSAL" ]; then export WSRL_GPU_TESTS_ON_CPU=1; fi
# -v: each test's outcome is written as it ends, so a cut at the limit keeps the ones that ran
cache tests timeout 150 $PY -m pytest -v -p no:cacheprovider tests/test_gpu.py > "$OUT/tests.log" 2>&1
TESTS=$?
tail -3 "$OUT/tests.log"
echo "- tests/test_gpu.py: exit $TESTS ($(tail -1 "$OUT/tests.log" | sed 's/^=* *//; s/ *=*$//'))" >> "$OUT/summary.md"

stage "speed table"
if [ -n "$REHEARSAL" ]; then
  SPEED=(--num-qs 2 --hidden 32 --batch-size 16 --repeats 2 --peak-seconds 0.2)
else
  SPEED=(--repeats "$REPEATS" --peak-seconds 0.75)  # (the peak is measured twice, before and after the rows)
fi
cache speed timeout 100 $PY tools/speed.py --table --graphs "${SPEED[@]}" > "$OUT/speed.md" 2>&1 \
  || echo "- tools/speed.py --table --graphs: failed or cut at 100 s (see speed.md)" >> "$OUT/summary.md"
tail -n +1 "$OUT/speed.md" | head -40
stage "speed of --compile (sac_fast.py's update, fp32 and bf16)"
{ echo; cache compile timeout 90 $PY tools/speed.py --table --compile --scripts sac_fast "${SPEED[@]}"; } >> "$OUT/speed.md" 2>&1 \
  || echo "- tools/speed.py --table --compile: failed or cut at 90 s (see speed.md)" >> "$OUT/summary.md"
grep "compiled" "$OUT/speed.md"

stage "dataset"
wait "$DATASET_PID" || { tail -5 "$WORK/dataset.log"; echo "error: the dataset was not made"; exit 1; }

LEFT=$(( BUDGET - ($(date +%s) - T0) - 40 ))
if [ "$LEFT" -lt "$CAP" ]; then  # (never below 30 s: a run needs its start-up)
  FLOOR=$(( CAP < 30 ? CAP : 30 ))
  echo "- the steps before the comparison left $LEFT s of BUDGET=$BUDGET s: CAP lowered from $CAP s to" \
    "$(( LEFT > FLOOR ? LEFT : FLOOR )) s" >> "$OUT/summary.md"
  CAP=$(( LEFT > FLOOR ? LEFT : FLOOR ))
fi
stage "comparison: bash benchmark.sh gpu, each run capped at $CAP s"
if [ -n "$REHEARSAL" ]; then
  export ONLINE_STEPS=${ONLINE_STEPS:-1200} WARMUP=${WARMUP:-100} EVAL=${EVAL:-"--eval-interval 400 --eval-episodes 1"} \
    NET=${NET:-"--critic-hidden 32 --actor-hidden 32 --num-qs 3"} SEEDS=${SEEDS:-"1 2"} JOBS=${JOBS:-2}
fi
cache bench env REPORT=0 WALL_CAP=$CAP OUT=$WORK/bench bash benchmark.sh gpu
BENCH=$?
echo "- bash benchmark.sh gpu (WALL_CAP=$CAP): exit $BENCH" >> "$OUT/summary.md"
grep -h "cap\|FAILED" "$WORK/bench/logs"/*.log 2> /dev/null | head -20

stage "packing"
# every run's tensorboard logs, console and curve, without checkpoints (tools/gpu_report.py reports them here)
(cd "$WORK/bench" && tar czf "$OUT/runs.tar.gz" --exclude='*.pt' runs logs)
cp "$WORK/dataset.log" "$OUT/dataset.log"
echo "- wall time of the session: $(( $(date +%s) - T0 )) s" >> "$OUT/summary.md"
stage "done: $(ls "$OUT" | tr '\n' ' ')"
