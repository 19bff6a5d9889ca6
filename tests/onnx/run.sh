#!/usr/bin/env bash
# `nanomlp export --format onnx` against `nanomlp eval`, in the real ONNX Runtime: trains one
# small model per kind of layer and setting (each activation, batch norm, dropout, several hidden
# layers, no input normalisation, the best preset) for one epoch on MNIST, exports each, checks each graph with
# onnx.checker (python3-onnx), and runs compare.mjs (onnxruntime-node), which wants the same
# class as nanomlp for all 10,000 test images and probabilities within 1e-5.
#
# Usage: tests/onnx/run.sh NANOMLP_BINARY WORK_DIR. Exits 77 (skipped) when $NANOMLP_DATA holds
# no MNIST, 1 on any failure. onnxruntime-node is installed into tests/onnx/node_modules with
# `npm ci --ignore-scripts` (package-lock.json) on the first run: its install script would
# download GPU binaries, and the CPU runtime ships in the package.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
nanomlp=$1
work=$2
data=${NANOMLP_DATA:-}

has_mnist() {
  local name
  for name in train-images-idx3-ubyte train-labels-idx1-ubyte t10k-images-idx3-ubyte \
    t10k-labels-idx1-ubyte; do
    [[ -f $data/mnist/$name.gz || -f $data/mnist/$name ]] || return 1
  done
}
if [[ -z $data ]] || ! has_mnist; then
  echo "skipped: NANOMLP_DATA ('$data') holds no MNIST (mnist/t10k-images-idx3-ubyte.gz ...)"
  exit 77
fi

# python3-onnx is Debian's: the first python3 on PATH may be another (pyenv) without it.
python=
for candidate in python3 /usr/bin/python3; do
  if "$candidate" -c 'import onnx' 2> /dev/null; then
    python=$candidate
    break
  fi
done
if [[ -z $python ]]; then
  echo "error: no python3 with the onnx module (Debian: apt-get install python3-onnx)" >&2
  exit 1
fi

if [[ ! -d $here/node_modules/onnxruntime-node ]]; then
  echo "installing onnxruntime-node with npm ci --ignore-scripts (tests/onnx/package-lock.json)"
  npm ci --ignore-scripts --no-audit --no-fund --prefix "$here"
fi

rm -rf "$work"
mkdir -p "$work"

# KIND and its training flags: one model per layer kind or setting the exporter maps.
kinds=(relu leaky_relu tanh gelu batch_norm dropout deep no_normalize best)
declare -A flags=(
  [relu]="--hidden 64 --activation relu"
  [leaky_relu]="--hidden 64 --activation leaky_relu"
  [tanh]="--hidden 64 --activation tanh"
  [gelu]="--hidden 64 --activation gelu"
  [batch_norm]="--hidden 64 --batch-norm"
  [dropout]="--hidden 64 --dropout 0.2"
  [deep]="--hidden 64,32,16 --activation gelu --batch-norm --dropout 0.2"
  [no_normalize]="--hidden 64 --no-normalize"
  [best]="--preset best"
)

for kind in "${kinds[@]}"; do
  model=$work/$kind.safetensors
  # shellcheck disable=SC2086 # the flags are words
  "$nanomlp" train --data "$data" --epochs 1 --threads 2 --quiet --out "$model" ${flags[$kind]}
  "$nanomlp" export --model "$model" --format onnx --out "$work/$kind.onnx"
  "$python" "$here/check_model.py" "$work/$kind.onnx"
  "$nanomlp" eval --model "$model" --data "$data" --threads 2 --json \
    --probabilities "$work/$kind.npy" > "$work/$kind.eval.json"
done

node "$here/compare.mjs" --data "$data" --dir "$work" "${kinds[@]}"
