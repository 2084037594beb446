#!/usr/bin/env bash
# Install fitlib's optional mmpose backend (fitlib.detect(..., backend="mmpose")) into the current
# Python, next to an installed torch, without replacing torch or adding a second OpenCV.
#
# Why a script and not only an extra: mmpose 1.3.2 and mmengine 0.10.7 declare opencv-python and
# torchvision (and mmpose chumpy); a resolver would install a second OpenCV beside fitlib's
# opencv-python-headless and a torchvision that replaces torch. So the OpenMMLab packages go in with
# --no-deps and their real run-time needs are listed here. fitlib imports mmpose with stand-ins for
# torchvision.transforms and pkg_resources when those are missing (fitlib/detection/mmpose_backend.py).
#
# The set (tested with Python 3.11, torch 2.13.0+cpu, numpy 2):
#   mmcv 2.1.0 (mmdet 3.3.0, which mmpose.apis imports, rejects mmcv >= 2.2; mmcv-lite lacks mmcv._ext)
#   mmengine 0.10.7, mmpose 1.3.2, mmdet 3.3.0
#   xtcocotools 1.14.3 built from source (its binary wheels break with numpy 2)
# mmcv has no wheels on PyPI. A prebuilt wheel is taken from $MMCV_WHEEL_DIR (default: the
# shared/wheels folder beside this repository) when it fits this Python and torch 2.13.0;
# otherwise mmcv is compiled from source into a wheel (about 40 minutes on 2 cores; MAX_JOBS=2 by
# default), the equivalent of, in an environment whose setuptools still has pkg_resources (< 81):
#   pip install "setuptools<81" wheel ninja
#   MAX_JOBS=2 pip install --no-build-isolation --no-deps mmcv==2.1.0
#
# Usage: bash scripts/install_mmpose.sh       (idempotent: a second run takes seconds)
set -euo pipefail

repo="$(cd "$(dirname "$0")/.." && pwd)"
wheel_dir="${MMCV_WHEEL_DIR:-$(dirname "$repo")/shared/wheels}"
py="${PYTHON:-python}"
pip=("$py" -m pip install --disable-pip-version-check)

torch_before="$("$py" -c 'import torch; print(torch.__version__)')"
pytag="$("$py" -c 'import sys; print(f"cp{sys.version_info[0]}{sys.version_info[1]}")')"
echo "install_mmpose: python $pytag, torch $torch_before"

# 1. what mmcv, mmengine, mmpose and mmdet import at run time (none of these pulls torch or OpenCV);
#    first, so that pip's resolver never sees the OpenMMLab packages' unmet declared dependencies
"${pip[@]}" addict yapf termcolor rich matplotlib json_tricks munkres pycocotools shapely terminaltables \
    six packaging pillow

# 2. mmcv 2.1.0 (compiled ops: mmcv._ext)
if "$py" -c 'import importlib.metadata as m, sys; sys.exit(m.version("mmcv") != "2.1.0")' 2>/dev/null \
        && "$py" -c 'import mmcv._ext' 2>/dev/null; then
    echo "install_mmpose: mmcv 2.1.0 already installed"
else
    wheel="$wheel_dir/mmcv-2.1.0-$pytag-$pytag-linux_$(uname -m).whl"
    if [[ -f "$wheel" && "${torch_before%%+*}" == "2.13.0" ]]; then
        echo "install_mmpose: mmcv from the prebuilt $wheel"
        "${pip[@]}" --no-deps "$wheel"
    else
        echo "install_mmpose: no prebuilt mmcv wheel for $pytag / torch $torch_before: compiling mmcv 2.1.0 (slow)"
        # mmcv's setup.py imports pkg_resources (gone from setuptools >= 81) and torch: build the
        # wheel in a throw-away venv that sees this Python's packages (torch) but has its own
        # setuptools < 81, so this environment's setuptools is left alone.
        build="$(mktemp -d)"
        "$py" -m venv --system-site-packages "$build/venv"
        "$build/venv/bin/python" -m pip install --disable-pip-version-check "setuptools<81" wheel ninja
        MAX_JOBS="${MAX_JOBS:-2}" "$build/venv/bin/python" -m pip wheel --disable-pip-version-check \
            --no-build-isolation --no-deps -w "$build/wheels" mmcv==2.1.0
        "${pip[@]}" --no-deps "$build"/wheels/mmcv-2.1.0-*.whl
        rm -rf "$build"
    fi
fi

# 3. OpenMMLab packages without their declared dependencies (see the header)
"${pip[@]}" --no-deps mmengine==0.10.7 mmpose==1.3.2 mmdet==3.3.0

# 4. xtcocotools from source, against the installed numpy (its setup.py imports numpy and Cython)
if "$py" -c 'import importlib.metadata as m, sys; sys.exit(m.version("xtcocotools") != "1.14.3")' 2>/dev/null \
        && "$py" -c 'import xtcocotools._mask' 2>/dev/null; then
    echo "install_mmpose: xtcocotools 1.14.3 already installed"
else
    "${pip[@]}" cython
    "${pip[@]}" --no-deps --no-build-isolation --no-binary xtcocotools xtcocotools==1.14.3
fi

# 5. checks: torch untouched, one OpenCV, mmpose imports through fitlib
torch_after="$("$py" -c 'import torch; print(torch.__version__)')"
if [[ "$torch_after" != "$torch_before" ]]; then
    echo "install_mmpose: ERROR: torch changed from $torch_before to $torch_after" >&2
    exit 1
fi
opencvs="$("$py" -m pip list --disable-pip-version-check 2>/dev/null | grep -ciE '^opencv-' || true)"
if [[ "$opencvs" != "1" ]]; then
    echo "install_mmpose: ERROR: expected one OpenCV distribution, found $opencvs:" >&2
    "$py" -m pip list 2>/dev/null | grep -iE '^opencv-' >&2 || true
    exit 1
fi
PYTHONPATH="$repo${PYTHONPATH:+:$PYTHONPATH}" "$py" - <<'EOF'
import importlib.metadata as m

from fitlib.detection.mmpose_backend import import_mmpose

import_mmpose()
print("install_mmpose: ok:", ", ".join(f"{p} {m.version(p)}" for p in
      ("mmcv", "mmengine", "mmpose", "mmdet", "xtcocotools", "torch", "numpy")))
EOF
