#!/usr/bin/env python3
"""Checks that nanomlp's modules depend one way only.

The modules, from the bottom: core, nn, optim, train, fast, io, app, and the CLI (apps/). A file
of a module may include the headers of its own module and of the modules below it, never of one
above; the same holds for the DEPENDS of each nanomlp_module() in src/CMakeLists.txt. The files
of a module are include/nanomlp/<module>/ and src/<module>/; apps/ is the CLI.

Usage: scripts/check_dependencies.py [REPO_ROOT | --self-test]. Prints every violation with its
file and line and exits 1 if there is one, or if an entry of ALLOWED below no longer happens (a
stale entry would hide the next real violation). Exits 0 and prints a summary otherwise.
--self-test runs the check on a small made-up tree with one upward include and one upward
DEPENDS, and exits 0 only if it finds exactly those.
"""
import contextlib
import io
import pathlib
import re
import sys
import tempfile

MODULES = ["core", "nn", "optim", "train", "fast", "io", "app", "cli"]
RANK = {name: i for i, name in enumerate(MODULES)}

# Known violations, each with the reason it is still there. Empty when the redesign is done.
ALLOWED = {}

# Libraries of src/CMakeLists.txt that are part of a module rather than a module of their own.
LIBRARY_MODULE = {"inference": "io"}

INCLUDE = re.compile(r'^\s*#\s*include\s+"nanomlp/([a-z_]+)/')
MODULE_CALL = re.compile(r"nanomlp_module\((\w+)(.*?)\)", re.S)


def module_of(path, root):
    rel = path.relative_to(root).parts
    if rel[0] == "apps":
        return "cli"
    if rel[0] == "include" and len(rel) > 2:
        return rel[2]
    if rel[0] == "src" and len(rel) > 2:
        return rel[1]
    return None


def include_edges(root):
    """Yields (file:line, from module, to module) for every include of a nanomlp header."""
    files = [p for d in ("include", "src", "apps") for p in sorted((root / d).rglob("*"))
             if p.suffix in (".hpp", ".cpp", ".in") and p.is_file()]
    for path in files:
        source = module_of(path, root)
        if source is None:
            continue
        for number, line in enumerate(path.read_text().splitlines(), 1):
            match = INCLUDE.match(line)
            if match:
                where = f"{path.relative_to(root)}:{number}"
                yield where, source, match.group(1)


def cmake_edges(root):
    """Yields (where, from module, to module) for every nanomlp:: module a module DEPENDS on."""
    path = root / "src" / "CMakeLists.txt"
    text = path.read_text()
    for match in MODULE_CALL.finditer(text):
        number = text.count("\n", 0, match.start()) + 1
        depends = match.group(2).split("DEPENDS", 1)
        for target in re.findall(r"nanomlp::(\w+)", depends[1] if len(depends) > 1 else ""):
            yield (f"src/CMakeLists.txt:{number}", LIBRARY_MODULE.get(match.group(1), match.group(1)),
                   LIBRARY_MODULE.get(target, target))


def check(root, allowed):
    problems, seen, edges = [], set(), 0
    for where, source, target in [*include_edges(root), *cmake_edges(root)]:
        edges += 1
        for name in (source, target):
            if name not in RANK:
                problems.append(f"{where}: unknown module '{name}' (known: {', '.join(MODULES)})")
        if source not in RANK or target not in RANK or RANK[target] <= RANK[source]:
            continue
        key = (where.split(":")[0], target)
        if key in allowed:
            seen.add(key)
            continue
        problems.append(f"{where}: module {source} depends on {target}, which is above it "
                        f"(order: {' < '.join(MODULES)})")
    for key in sorted(set(allowed) - seen):
        problems.append(f"{key[0]}: allowed dependency on {key[1]} no longer happens; "
                        "remove it from ALLOWED in scripts/check_dependencies.py")
    for problem in problems:
        print(problem)
    if problems:
        return 1
    print(f"{edges} module dependencies checked, all downward "
          f"({len(allowed)} known exceptions): {' < '.join(MODULES)}")
    return 0


def self_test():
    with tempfile.TemporaryDirectory() as tmp:
        root = pathlib.Path(tmp)
        files = {
            "include/nanomlp/nn/layers.hpp": '#include "nanomlp/core/tensor.hpp"\n',
            "src/nn/dense.cpp": '#include "nanomlp/nn/layers.hpp"\n#include "nanomlp/app/x.hpp"\n',
            "apps/nanomlp/main.cpp": '#include "nanomlp/app/x.hpp"\n',
            "src/CMakeLists.txt": "nanomlp_module(core SOURCES a.cpp)\n"
                                  "nanomlp_module(nn SOURCES b.cpp DEPENDS nanomlp::core nanomlp::io)\n",
        }
        for name, text in files.items():
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            (root / name).write_text(text)
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            code = check(root, {})
        lines = out.getvalue().splitlines()
        expected = ["src/nn/dense.cpp:2: module nn depends on app",
                    "src/CMakeLists.txt:2: module nn depends on io"]
        found = [e for e in expected if any(line.startswith(e) for line in lines)]
        ok = code == 1 and found == expected and len(lines) == 2
        print("\n".join(lines))
        print("self-test " + ("passed" if ok else "FAILED: expected exactly " + str(expected)))
        return 0 if ok else 1


if __name__ == "__main__":
    if sys.argv[1:] == ["--self-test"]:
        sys.exit(self_test())
    sys.exit(check(pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else ".").resolve(), ALLOWED))
