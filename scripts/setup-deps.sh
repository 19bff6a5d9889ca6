#!/usr/bin/env bash
# Installs the Debian 12 packages nanomlp needs that are missing, and says which.
# Usage: scripts/setup-deps.sh [build|test|bench]   (each level includes the previous one)
set -euo pipefail

level="${1:-build}"
# build: the library, the CLI (libonnx/libprotobuf: `export --format onnx`), the tests and
# benchmarks' C++ libraries. test: what the tests run against (Chromium and Playwright's Node,
# clang for fuzz/, PyTorch, NumPy and onnx.checker as the real peers). bench: the same peers.
packages=(g++ make cmake pkg-config libopenblas-dev libcli11-dev nlohmann-json3-dev zlib1g-dev
          libstb-dev libpng-dev libjpeg62-turbo-dev libcurl4-openssl-dev libssl-dev libmicrohttpd-dev
          libcpp-httplib-dev libonnx-dev libprotobuf-dev libgtest-dev libgmock-dev libbenchmark-dev)
test_packages=(chromium nodejs npm clang libclang-rt-14-dev python3 python3-numpy python3-torch
               python3-onnx pybind11-dev python3-dev python3-pytest python3-sklearn
               python3-setuptools python3-pip)
case "$level" in
  build) ;;
  test | bench) packages+=("${test_packages[@]}") ;;
  *) echo "setup-deps.sh: unknown level '$level' (expected build, test or bench)" >&2; exit 2 ;;
esac

missing=()
for p in "${packages[@]}"; do
  # A package counts as present when dpkg has it installed, or (for node/npm, which may
  # come from elsewhere) when its command exists.
  if dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    continue
  fi
  case "$p" in
    nodejs) command -v node >/dev/null 2>&1 && continue ;;
    npm) command -v npm >/dev/null 2>&1 && continue ;;
  esac
  missing+=("$p")
done

if [ "${#missing[@]}" -eq 0 ]; then
  echo "setup-deps: all ${#packages[@]} required Debian packages are present"
  exit 0
fi

echo "setup-deps: installing missing Debian packages: ${missing[*]}"
sudo_cmd=()
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then
    sudo_cmd=(sudo)
  else
    echo "setup-deps: need root or sudo to install: ${missing[*]}" >&2
    exit 1
  fi
fi
export DEBIAN_FRONTEND=noninteractive
"${sudo_cmd[@]}" apt-get update -qq
"${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
echo "setup-deps: done"
