#!/usr/bin/env bash
# Creates .venv with the pinned stack, Horovod included, and installs modelzoo into it.
#
# Horovod 0.28.1 is built from its sdist because no wheel exists and the sdist does not compile
# against TensorFlow 2.21 as released: horovod/tensorflow/xla_mpi_ops.cc includes XLA headers that
# moved. Those XLA ops are GPU-only and opt-in, so we drop that one source from the CMake list.
# The built wheel is cached (MODELZOO_WHEEL_CACHE) so that a second install takes seconds.
#
# Environment:
#   PYTHON               interpreter to build the venv from (default python3.11, else python3)
#   VENV                 venv folder (default .venv)
#   MODELZOO_TF          tensorflow-cpu (default) or tensorflow (GPU nodes)
#   MODELZOO_WHEEL_CACHE where the Horovod wheel is kept (default ~/.cache/modelzoo/wheels)
#   HOROVOD_GPU_OPERATIONS=NCCL (with CUDA present) builds Horovod with NCCL for GPU nodes;
#   the default is a CPU build with Gloo, which is what the tests use.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-$(command -v python3.11 || command -v python3)}
VENV=${VENV:-.venv}
TF_DIST=${MODELZOO_TF:-tensorflow-cpu}
CACHE=${MODELZOO_WHEEL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/modelzoo/wheels}
HVD_VERSION=0.28.1

if [ ! -x "$VENV/bin/python" ]; then
  "$PYTHON" -m venv "$VENV"
fi
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check -q)
stamp="$VENV/.modelzoo-installed"
reqs=$(cat requirements/*.txt setup.py scripts/setup_env.sh | sha256sum | cut -c1-16)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$reqs-$TF_DIST" ]; then
  exit 0
fi

"${PIP[@]}" install --upgrade pip setuptools wheel
sed "s/^tensorflow-cpu==/$TF_DIST==/" requirements/base.txt > "$VENV/base-requirements.txt"
"${PIP[@]}" install -r "$VENV/base-requirements.txt" -r requirements/science.txt -r requirements/dev.txt

mkdir -p "$CACHE"
tf_version=$("$VENV/bin/python" -c "import tensorflow as tf; print(tf.__version__)" 2>/dev/null)
gpu_tag=${HOROVOD_GPU_OPERATIONS:+-$HOROVOD_GPU_OPERATIONS}
wheel_dir="$CACHE/horovod-$HVD_VERSION-tf$tf_version$gpu_tag"
if ! ls "$wheel_dir"/horovod-*.whl >/dev/null 2>&1; then
  echo "Building horovod $HVD_VERSION against tensorflow $tf_version (about 3 minutes, once)..."
  work=$(mktemp -d)
  "${PIP[@]}" download --no-deps --no-binary :all: -d "$work" "horovod==$HVD_VERSION"
  tar -xzf "$work/horovod-$HVD_VERSION.tar.gz" -C "$work"
  src="$work/horovod-$HVD_VERSION"
  sed -i '/xla_mpi_ops.cc/d' "$src/horovod/tensorflow/CMakeLists.txt"
  # CMake 4 refuses the bundled Gloo (cmake_minimum_required < 3.5).
  "${PIP[@]}" install "cmake>=3.18,<4"
  mkdir -p "$wheel_dir"
  HOROVOD_WITH_TENSORFLOW=1 HOROVOD_WITH_GLOO=1 HOROVOD_WITHOUT_MPI=1 \
    HOROVOD_WITHOUT_PYTORCH=1 HOROVOD_WITHOUT_MXNET=1 \
    CMAKE_POLICY_VERSION_MINIMUM=3.5 MAKEFLAGS="-j$(nproc)" PATH="$PWD/$VENV/bin:$PATH" \
    "${PIP[@]}" wheel --no-build-isolation --no-deps -w "$wheel_dir" "$src"
  rm -rf "$work"
fi
"${PIP[@]}" install --no-deps "$wheel_dir"/horovod-*.whl
# horovod's own runtime dependencies (its wheel was installed without resolving them).
"${PIP[@]}" install cloudpickle psutil packaging
# --no-deps: TensorFlow is already installed under the chosen distribution name.
"${PIP[@]}" install --no-deps -e .
echo "$reqs-$TF_DIST" > "$stamp"
