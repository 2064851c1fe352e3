"""Build shim: runs CMake for the native module ntengine._C (all build logic is in
CMakeLists.txt; package metadata is in pyproject.toml).

Follows pybind11's cmake_example. Useful environment variables:
  CMAKE_ARGS                  extra arguments for the configure step
  CMAKE_BUILD_PARALLEL_LEVEL  build jobs (cmake reads it itself)
  CMAKE_GENERATOR             e.g. Ninja (used by default when the ninja package is installed)
  NTENGINE_NATIVE=0           portable binary without -march=native
  DEBUG=1                     Debug build
"""

import os
import subprocess
import sys
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext


class CMakeExtension(Extension):
    """An extension built by CMake from the project root (no sources for setuptools)."""

    def __init__(self, name: str, sourcedir: str = "") -> None:
        super().__init__(name, sources=[])
        self.sourcedir = os.fspath(Path(sourcedir).resolve())


class CMakeBuild(build_ext):
    """Configure and build with CMake, putting the module where setuptools wants it."""

    def build_extension(self, ext: CMakeExtension) -> None:
        import pybind11  # a build requirement; imported here so `setup.py --help` works

        extdir = Path(self.get_ext_fullpath(ext.name)).parent.resolve()
        cfg = "Debug" if int(os.environ.get("DEBUG", 0)) or self.debug else "Release"
        cmake_args = [
            f"-DCMAKE_LIBRARY_OUTPUT_DIRECTORY={extdir}{os.sep}",
            f"-DCMAKE_LIBRARY_OUTPUT_DIRECTORY_{cfg.upper()}={extdir}{os.sep}",
            f"-DPython_EXECUTABLE={sys.executable}",
            f"-Dpybind11_DIR={pybind11.get_cmake_dir()}",
            f"-DCMAKE_BUILD_TYPE={cfg}",
        ]
        cmake_args += [a for a in os.environ.get("CMAKE_ARGS", "").split(" ") if a]
        if "CMAKE_GENERATOR" not in os.environ:
            try:
                import ninja

                cmake_args += ["-GNinja", f"-DCMAKE_MAKE_PROGRAM={Path(ninja.BIN_DIR) / 'ninja'}"]
            except ImportError:
                pass
        build_args = ["--config", cfg]
        # cmake honours CMAKE_BUILD_PARALLEL_LEVEL itself; otherwise use `-j` if given.
        if "CMAKE_BUILD_PARALLEL_LEVEL" not in os.environ and getattr(self, "parallel", None):
            build_args += [f"-j{self.parallel}"]

        build_temp = Path(self.build_temp) / ext.name
        build_temp.mkdir(parents=True, exist_ok=True)
        subprocess.run(["cmake", ext.sourcedir, *cmake_args], cwd=build_temp, check=True)
        subprocess.run(["cmake", "--build", ".", *build_args], cwd=build_temp, check=True)


setup(ext_modules=[CMakeExtension("ntengine._C")], cmdclass={"build_ext": CMakeBuild})
