"""Builds nanomlp._nanomlp with CMake (python/CMakeLists.txt) for `pip install .`: the library
targets and the module in a build folder of its own, then the module copied where setuptools
packs the extension."""
import os
import pathlib
import shutil
import subprocess
import sys

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

ROOT = pathlib.Path(__file__).resolve().parent


class CMakeExtension(Extension):
    def __init__(self, name):
        super().__init__(name, sources=[])


class CMakeBuild(build_ext):
    def build_extension(self, ext):
        build = pathlib.Path(self.build_temp).resolve() / "cmake"
        jobs = os.environ.get("CMAKE_BUILD_PARALLEL_LEVEL", str(os.cpu_count() or 1))
        subprocess.run(["cmake", "-S", str(ROOT), "-B", str(build), "-DCMAKE_BUILD_TYPE=Release",
                        "-DNANOMLP_BUILD_PYTHON=ON", "-DNANOMLP_BUILD_TESTS=OFF",
                        "-DNANOMLP_BUILD_BENCH=OFF", "-DNANOMLP_BUILD_EXAMPLES=OFF",
                        f"-DPython3_EXECUTABLE={sys.executable}"], check=True)
        subprocess.run(["cmake", "--build", str(build), "--target", "_nanomlp", "-j", jobs],
                       check=True)
        built = next((build / "python" / "nanomlp").glob("_nanomlp*.so"))
        target = pathlib.Path(self.get_ext_fullpath(ext.name))
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(built, target)


# build-python/: setuptools' own folders stay out of build/, the Makefile's CMake build.
setup(ext_modules=[CMakeExtension("nanomlp._nanomlp")], cmdclass={"build_ext": CMakeBuild},
      options={"build": {"build_base": "build-python"}})
