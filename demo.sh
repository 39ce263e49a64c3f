#!/usr/bin/env bash
# WSRL end to end on a fresh machine, with no network: about 12 minutes on 2 CPU cores.
#   1. makes a small Hopper-v5 dataset with this repository's own SAC (skipped when it exists):
#      the replay buffer of a 10k-step run, like D4RL's medium-replay;
#   2. runs WSRL on it: Cal-QL pre-training, the dataset discarded, 1,000 warmup steps of the
#      frozen pre-trained policy, then SAC fine-tuning; ends with a printed summary.
# Extra arguments go to wsrl_calql_sac.py, e.g. `bash demo.sh --warmup-steps 0` (no warmup).
set -euo pipefail
cd "$(dirname "$0")"
DATASET=local/hopper/demo-replay-v0
if python -c "import minari, sys; sys.exit(0 if '$DATASET' in minari.list_local_datasets() else 1)" 2>/dev/null; then
    echo "dataset $DATASET found: skipping step 1"
else
    echo "===== step 1: making the dataset $DATASET with sac_fast.py (~4 min) ====="
    python sac_fast.py --total-timesteps 10000 --eval-interval 5000 --exp-name demo_dataset --save-dataset-id "$DATASET"
fi
echo "===== step 2: WSRL (~8 min) ====="
python wsrl_calql_sac.py --dataset-id "$DATASET" --offline-steps 1500 --offline-eval-interval 500 \
    --online-steps 6000 --warmup-steps 1000 --eval-interval 1000 --exp-name wsrl_demo "$@"
