#!/usr/bin/env bash
# A program outside nanomlp links only nanomlp::io, from an installed nanomlp, and
#  - builds without curl, OpenSSL, microhttpd or cpp-httplib on its link line or in its binary,
#  - gets none of nanomlp's compile options (warnings, -march=native, sanitizers),
#  - classifies an image as `nanomlp predict` does.
# Usage: run.sh SOURCE_DIR BUILD_DIR NANOMLP_BINARY WORK_DIR (data: $NANOMLP_DATA).
set -euo pipefail
src=$1 build=$2 bin=$3 work=$4
fail() { echo "FAIL: $*" >&2; exit 1; }

rm -rf "$work" && mkdir -p "$work"
cmake --install "$build" --prefix "$work/prefix" >"$work/install.log"
cmake -S "$src/tests/consumer" -B "$work/build" -DCMAKE_PREFIX_PATH="$work/prefix" \
  -DCMAKE_EXPORT_COMPILE_COMMANDS=ON >"$work/configure.log"
cmake --build "$work/build" >"$work/build.log" || { cat "$work/build.log"; fail "consumer build"; }

# Without a build type, the compile line holds only what nanomlp's targets give: its include
# folder and the C++20 they need (-std=gnu++20); none of its warnings, -march or sanitizers.
compile=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))[0]["command"])' \
  "$work/build/compile_commands.json")
extra=$(python3 - "$compile" "$work/prefix/include" <<'PY'
import shlex, sys
words = shlex.split(sys.argv[1])[1:]
allowed = {"-isystem", sys.argv[2], "-std=gnu++20", "-o", "-c"}
print(" ".join(w for w in words if w not in allowed and not w.endswith((".o", ".cpp"))))
PY
)
[ -z "$extra" ] || fail "the consumer's compile line has options from nanomlp: $extra ($compile)"
link=$(cat "$work/build/CMakeFiles/classify.dir/link.txt")
for lib in curl ssl crypto microhttpd httplib; do
  if grep -qi -- "$lib" <<<"$link"; then fail "the consumer links $lib: $link"; fi
  if ldd "$work/build/classify" | grep -qi -- "lib$lib"; then fail "the consumer loads lib$lib"; fi
done
echo "consumer built; compile line: $compile"

"$bin" train --data "${NANOMLP_DATA:-data}" --epochs 1 --hidden 32 --threads 1 --quiet \
  --out "$work/model.safetensors" >/dev/null
# A hand-drawn 1: a vertical bar on black.
python3 - "$work/one.pgm" <<'PY'
import sys
pixels = bytearray(28 * 28)
for r in range(5, 23):
    for c in range(13, 16):
        pixels[r * 28 + c] = 255
open(sys.argv[1], "wb").write(b"P5\n28 28\n255\n" + bytes(pixels))
PY
got=$("$work/build/classify" "$work/model.safetensors" "$work/one.pgm")
want=$("$bin" predict --model "$work/model.safetensors" --json "$work/one.pgm" | python3 -c '
import json, sys
r = json.load(sys.stdin)[0]
print("class %d p=%.4f" % (r["class"], r["top"][0]["probability"]))')
version=$("$bin" --version | awk '{print $NF}')
[ "$got" = "nanomlp $version: $want" ] || fail "classify printed '$got', nanomlp predict '$want'"
echo "classify: $got (nanomlp predict: $want)"
