#!/usr/bin/env bash
# examples/embed, built as a user builds it: against nanomlp installed in a temporary prefix,
# once with CMake (find_package) and once with pkg-config. Checks that
#  - neither program gets a compile option of nanomlp's (warnings, -march=native, sanitizers),
#  - classify (nanomlp::nanomlp) links none of the app's libraries: curl, OpenSSL, microhttpd,
#    cpp-httplib, protobuf or libonnx,
#  - classify_pixels (nanomlp::inference) links BLAS and nothing else of nanomlp's dependencies:
#    no zlib, libpng, libjpeg or stb either,
#  - both classify an image as `nanomlp predict` does.
# Usage: embed.sh SOURCE_DIR BUILD_DIR NANOMLP_BINARY WORK_DIR (data: $NANOMLP_DATA).
set -euo pipefail
src=$1 build=$2 bin=$3 work=$4
fail() { echo "FAIL: $*" >&2; exit 1; }

rm -rf "$work" && mkdir -p "$work"
cmake --install "$build" --prefix "$work/prefix" >"$work/install.log"
cmake -S "$src/examples/embed" -B "$work/build" -DCMAKE_PREFIX_PATH="$work/prefix" \
  -DCMAKE_EXPORT_COMPILE_COMMANDS=ON >"$work/configure.log"
cmake --build "$work/build" >"$work/build.log" || { cat "$work/build.log"; fail "embed build"; }

# Without a build type, a compile line holds only what nanomlp's targets give: its include
# folder and the C++20 they need (-std=gnu++20); none of its warnings, -march or sanitizers.
python3 - "$work/build/compile_commands.json" "$work/prefix/include" <<'PY' || fail "compile lines"
import json, shlex, sys
allowed = {"-isystem", sys.argv[2], "-std=gnu++20", "-o", "-c"}
for entry in json.load(open(sys.argv[1])):
    words = shlex.split(entry["command"])[1:]
    extra = [w for w in words if w not in allowed and not w.endswith((".o", ".cpp"))]
    if extra:
        sys.exit(f"{entry['file']} gets options from nanomlp: {' '.join(extra)}")
    print("compile line:", entry["command"])
PY
check_libs() {  # PROGRAM LIB...: PROGRAM neither links nor loads any of LIB
  local program=$1 link
  shift
  link=$(cat "$work/build/CMakeFiles/$program.dir/link.txt")
  for lib in "$@"; do
    if grep -qiE -- "lib$lib[.-]|-l$lib( |$)|$lib::" <<<"$link"; then fail "$program links $lib: $link"; fi
    if ldd "$work/build/$program" | grep -qi -- "lib$lib[.-]"; then fail "$program loads lib$lib"; fi
  done
}
app_libs=(curl ssl crypto microhttpd httplib protobuf onnx_proto)
check_libs classify "${app_libs[@]}"
check_libs classify_pixels "${app_libs[@]}" z png png16 jpeg stb
grep -q openblas "$work/build/CMakeFiles/classify_pixels.dir/link.txt" || fail "no BLAS linked"
echo "classify_pixels loads: $(ldd "$work/build/classify_pixels" | awk '{print $1}' | tr '\n' ' ')"

# The same two programs through pkg-config, as a Makefile would build them.
export PKG_CONFIG_PATH="$(dirname "$(find "$work/prefix" -name nanomlp.pc)")"
for program in classify:nanomlp classify_pixels:nanomlp-inference; do
  name=${program%%:*} package=${program#*:}
  # shellcheck disable=SC2046  # pkg-config prints words
  c++ -std=c++20 -O2 -o "$work/$name-pc" "$src/examples/embed/$name.cpp" \
    $(pkg-config --cflags --libs "$package") || fail "pkg-config build of $name ($package)"
done

"$bin" train --data "${NANOMLP_DATA:-data}" --epochs 1 --hidden 32 --threads 1 --quiet \
  --out "$work/model.safetensors" >/dev/null
# A hand-drawn 1, a vertical bar on black, as a PGM file and as the raw pixels.
python3 - "$work/one" <<'PY'
import sys
pixels = bytearray(28 * 28)
for r in range(5, 23):
    for c in range(13, 16):
        pixels[r * 28 + c] = 255
open(sys.argv[1] + ".pgm", "wb").write(b"P5\n28 28\n255\n" + bytes(pixels))
open(sys.argv[1] + ".raw", "wb").write(bytes(pixels))
PY
want=$("$bin" predict --model "$work/model.safetensors" --json "$work/one.pgm" | python3 -c '
import json, sys
r = json.load(sys.stdin)[0]
print("class %d p=%.4f" % (r["class"], r["top"][0]["probability"]))')
version=$("$bin" --version | awk '{print $NF}')
for classify in "$work/build/classify" "$work/classify-pc"; do
  got=$("$classify" "$work/model.safetensors" "$work/one.pgm")
  [ "$got" = "nanomlp $version: $work/one.pgm: $want" ] ||
    fail "$classify printed '$got', nanomlp predict '$want'"
done
for classify in "$work/build/classify_pixels" "$work/classify_pixels-pc"; do
  got=$("$classify" "$work/model.safetensors" 28 28 <"$work/one.raw")
  [ "$got" = "$want" ] || fail "$classify printed '$got', nanomlp predict '$want'"
done
echo "classify and classify_pixels (CMake and pkg-config builds): $want, as nanomlp predict"
