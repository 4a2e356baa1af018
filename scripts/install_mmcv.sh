#!/usr/bin/env bash
# Install mmcv 2.1.0 with its compiled ops (mmdet imports mmcv.ops; mmcv-lite does not work).
#
# PyPI has no mmcv 2.1.0 wheel for torch 2.14, so either take the prebuilt wheel from
# SHARED_WHEELS (same recipe as below, built once) or build it from PyPI's source package:
#   - setuptools<81: its setup.py imports pkg_resources;
#   - --no-build-isolation: setup.py imports the installed torch;
#   - torch 2.14's headers need C++20 while mmcv 2.1.0's setup.py forces -std=c++17.
# Building takes about 30-40 minutes on 2 cores.
set -euo pipefail
PIP=${1:?usage: install_mmcv.sh PIP [WHEEL_DIR]}
WHEEL_DIR=${2:-}
# Absolute: the source build below runs pip from inside the unpacked source tree.
PIP="$(cd "$(dirname "$PIP")" && pwd)/$(basename "$PIP")"
PY=$(dirname "$PIP")/python

if "$PY" -c "import mmcv, mmcv.ops; assert mmcv.__version__ == '2.1.0'" 2>/dev/null; then
    echo "mmcv 2.1.0 with ops already installed"
    exit 0
fi

tag=$("$PY" -c "import sys; print(f'cp{sys.version_info.major}{sys.version_info.minor}')")
wheel=""
if [ -n "$WHEEL_DIR" ] && [ -d "$WHEEL_DIR" ]; then
    wheel=$(ls "$WHEEL_DIR"/mmcv-2.1.0-"$tag"-*.whl 2>/dev/null | head -n 1 || true)
fi

if [ -n "$wheel" ]; then
    echo "installing prebuilt $wheel"
    "$PIP" install --no-deps "$wheel"
else
    echo "no prebuilt mmcv wheel for $tag in '${WHEEL_DIR}'; building from source (30-40 min)"
    work=$(mktemp -d)
    trap 'rm -rf "$work"' EXIT
    "$PIP" install "setuptools<81" wheel ninja
    # its metadata step imports torch too, hence --no-build-isolation here as well
    "$PIP" download --no-deps --no-binary :all: --no-build-isolation -d "$work" mmcv==2.1.0
    tar -xzf "$work"/mmcv-2.1.0.tar.gz -C "$work"
    sed -i 's/-std=c++17/-std=c++20/g' "$work"/mmcv-2.1.0/setup.py
    (cd "$work"/mmcv-2.1.0 && MMCV_WITH_OPS=1 MAX_JOBS=2 "$PIP" wheel --no-build-isolation --no-deps --no-cache-dir . -w "$work"/dist)
    "$PIP" install --no-deps "$work"/dist/mmcv-2.1.0-*.whl
fi
# mmcv's own runtime dependencies (installed --no-deps above so pip never tries to build it).
"$PIP" install addict packaging Pillow pyyaml yapf "opencv-python>=3" numpy "mmengine==0.10.7"
"$PY" -c "import mmcv.ops; print('mmcv', mmcv.__version__, 'with ops: ok')"
