#!/usr/bin/env python3
"""Lists the functions of src/, apps/ and python/src/ longer than a limit (default 80 lines),
longest first.

A function is a definition that starts at column 0 and ends at the next line that is exactly
"}"; lambdas count toward the function that holds them. Member functions defined inside a class
body are not seen (a heuristic, not a C++ parser).
Usage: scripts/function_lengths.py [LIMIT] [--check]   (--check: exit 1 if any is over)
"""
import pathlib
import re
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
START = re.compile(r"^(?!namespace|struct|class|enum|union|template|#|//|using|extern|static_assert)"
                   r"[A-Za-z_].*\(")


def functions(path):
    lines = path.read_text().splitlines()
    i = 0
    while i < len(lines):
        if START.match(lines[i]) and not lines[i].rstrip().endswith(";"):
            j = i
            while j < len(lines) and "{" not in lines[j] and not lines[j].rstrip().endswith(";"):
                j += 1
            if j < len(lines) and "{" in lines[j]:
                k = j
                while k < len(lines) and lines[k] != "}" and not (k == j and lines[k].rstrip().endswith("}")):
                    k += 1
                name = re.sub(r"\s+", " ", lines[i].split("(")[0]).split(" ")[-1]
                yield name, i + 1, k - i + 1
                i = k
        i += 1


def main():
    args = [a for a in sys.argv[1:] if a != "--check"]
    limit = int(args[0]) if args else 80
    found = []
    for d in ("src", "apps", "python/src"):
        for path in sorted((ROOT / d).rglob("*.cpp")):
            for name, line, length in functions(path):
                if length > limit:
                    found.append((length, f"{path.relative_to(ROOT)}:{line}", name))
    for length, where, name in sorted(found, reverse=True):
        print(f"{length:5d}  {where}  {name}")
    print(f"{len(found)} functions over {limit} lines")
    return 1 if found and "--check" in sys.argv else 0


if __name__ == "__main__":
    sys.exit(main())
