#!/usr/bin/env bash
# Download, here, the wheels that a lent GPU machine lacks (it has torch, numpy, h5py, matplotlib,
# tensorboard, pytest, but no network and none of these), for its Python (3.12 by default), into
# .whl/ (kept out of git by .git/info/exclude). tools/gpu_session.sh installs them there.
#
#   bash tools/gpu_wheels.sh                 # .whl/ for the GPU machine's Python 3.12
#   PY_VERSION=3.11 WHEELS=/tmp/whl311 bash tools/gpu_wheels.sh   # for a rehearsal on this machine
set -euo pipefail
cd "$(dirname "$0")/.."
PY_VERSION=${PY_VERSION:-3.12}
WHEELS=${WHEELS:-.whl}
mkdir -p "$WHEELS"
grep -qx "/.whl/" .git/info/exclude 2> /dev/null || echo "/.whl/" >> .git/info/exclude
# the pins of requirements.txt, and what they need that the GPU machine's image does not hold
# (mujoco imports glfw; tyro needs docstring-parser and typeguard; gymnasium farama-notifications)
PACKAGES="gymnasium==1.4.0 mujoco==3.11.0 minari==0.5.4 tyro==1.0.17 farama-notifications==0.0.4
  docstring-parser==0.18.0 typeguard==4.6.1 glfw==2.11.0 pyopengl==3.1.10"
for p in $PACKAGES; do
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version "$PY_VERSION" --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d "$WHEELS" "$p" 2>&1 | grep -v "^WARNING: Location" || true
done
ls -la "$WHEELS"
du -sh "$WHEELS"
