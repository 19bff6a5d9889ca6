#!/usr/bin/env bash
# Runs check_models.py with a Python that has PyTorch and NumPy: $PYTHON, else python3 on PATH,
# else /usr/bin/python3 (Debian's python3-torch is installed for the latter; a pyenv or venv
# python3 first on PATH may lack it). Skips (77) only without MNIST; without PyTorch it fails,
# since scripts/setup-deps.sh test installs it.
# Usage: run.sh SOURCE_DIR NANOMLP_BINARY WORK_DIR (data: $NANOMLP_DATA, else
# SOURCE_DIR/../shared/data, else SOURCE_DIR/data, as the C++ tests look for it).
set -euo pipefail
src=$1 bin=$2 work=$3
data=
for candidate in "${NANOMLP_DATA:-}" "$src/../shared/data" "$src/data"; do
  if [ -n "$candidate" ] && { [ -e "$candidate/mnist/t10k-images-idx3-ubyte.gz" ] ||
                              [ -e "$candidate/mnist/t10k-images-idx3-ubyte" ]; }; then
    data=$candidate
    break
  fi
done
if [ -z "$data" ]; then
  echo "skipped: no MNIST in \$NANOMLP_DATA (${NANOMLP_DATA:-unset}), $src/../shared/data or $src/data"
  exit 77
fi
for python in "${PYTHON:-}" python3 /usr/bin/python3; do
  [ -n "$python" ] || continue
  if command -v "$python" >/dev/null 2>&1 && "$python" -c 'import torch, numpy' 2>/dev/null; then
    rm -rf "$work" && mkdir -p "$work"
    exec "$python" "$src/tests/pytorch/check_models.py" "$bin" "$data" "$work" "$src/README.md"
  fi
done
echo "FAIL: no python3 that imports torch and numpy (tried \$PYTHON, python3, /usr/bin/python3);" \
  "scripts/setup-deps.sh test installs python3-torch and python3-numpy" >&2
exit 1
