"""Build shim: runs CMake for the native modules ntengine._C and, when CUDA is enabled,
ntengine._C_cuda (one CMake run builds both; all build logic is in
CMakeLists.txt; package metadata is in pyproject.toml).

Follows pybind11's cmake_example. Useful environment variables:
  CMAKE_ARGS                  extra arguments for the configure step
  CMAKE_BUILD_PARALLEL_LEVEL  build jobs (cmake reads it itself)
  CMAKE_GENERATOR             e.g. Ninja (used by default when the ninja package is installed)
  NTENGINE_NATIVE=1           tune all code for this machine (-march=native; runs only on CPUs like it).
                              Default: portable, CPU kernels built per ISA level and chosen at run time
  NTENGINE_CUDA=auto|1|0      build ntengine._C_cuda where nvcc and an NVIDIA GPU are found (default) |
                              whenever nvcc is found (CI, GPU images built on GPU-less machines) | never
  NTENGINE_BUILD_DIR          CMake's build folder (default build/cmake-<python>-<config> in the source
                              tree: kept between installs, so a reinstall recompiles only what changed)
  NTENGINE_CUDA_ARCHS         CUDA architectures, e.g. "90" or "80;90" (default in CMakeLists.txt)
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


class BuiltAlongside(Extension):
    """A module that ntengine._C's CMake run also builds when it can (ntengine._C_cuda).

    Optional: setuptools then copies it (editable installs, --inplace) where it was built
    and skips it where it was not (NTENGINE_CUDA=0, no nvcc).
    """

    def __init__(self, name: str) -> None:
        super().__init__(name, sources=[], optional=True)


class CMakeBuild(build_ext):
    """Configure and build with CMake, putting the module where setuptools wants it."""

    def run(self) -> None:
        # setuptools clears `inplace` while building and copies the modules into the source
        # tree afterwards (editable installs, --inplace): remember which case this is.
        self._to_source = self.inplace
        super().run()

    def build_extension(self, ext: Extension) -> None:
        if isinstance(ext, BuiltAlongside):
            return  # CMake writes it (or not) while building ntengine._C
        self._build_cmake(ext)
        for other in self.extensions:
            if isinstance(other, BuiltAlongside):
                self._drop_stale_copy(other)

    def _drop_stale_copy(self, ext: BuiltAlongside) -> None:
        """When this build did not produce `ext` but will copy modules into the source tree,
        remove the copy an earlier build left there: importing it would load stale code."""
        if not getattr(self, "_to_source", False) or Path(self.get_ext_fullpath(ext.name)).exists():
            return
        pkg, _, _ = ext.name.rpartition(".")
        pkg_dir = Path(self.get_finalized_command("build_py").get_package_dir(pkg))
        stale = pkg_dir / Path(self.get_ext_filename(ext.name)).name
        if stale.exists():
            print(f"removing stale {stale}: this build did not produce {ext.name}")
            stale.unlink()

    def _build_cmake(self, ext: CMakeExtension) -> None:
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
        generator = os.environ.get("CMAKE_GENERATOR", "default")
        if "CMAKE_GENERATOR" not in os.environ:
            try:
                import ninja

                cmake_args += ["-GNinja", f"-DCMAKE_MAKE_PROGRAM={Path(ninja.BIN_DIR) / 'ninja'}"]
                generator = "ninja"
            except ImportError:
                pass
        build_args = ["--config", cfg]
        # cmake honours CMAKE_BUILD_PARALLEL_LEVEL itself; otherwise use `-j` if given.
        if "CMAKE_BUILD_PARALLEL_LEVEL" not in os.environ and getattr(self, "parallel", None):
            build_args += [f"-j{self.parallel}"]

        build_temp = self._persistent_build_dir(ext, cfg, generator)
        build_temp.mkdir(parents=True, exist_ok=True)
        subprocess.run(["cmake", ext.sourcedir, *cmake_args], cwd=build_temp, check=True)
        subprocess.run(["cmake", "--build", ".", *build_args], cwd=build_temp, check=True)

    @staticmethod
    def _persistent_build_dir(ext: CMakeExtension, cfg: str, generator: str) -> Path:
        """Where CMake builds: outside pip's throw-away temporary folders, so that the README's
        second `pip install` reuses the first one's objects (CMake then rebuilds only what
        changed, and the bindings, whose pybind11 headers come from pip's fresh build
        environment). One folder per generator: CMake refuses to switch one in place."""
        if os.environ.get("NTENGINE_BUILD_DIR"):
            return Path(os.environ["NTENGINE_BUILD_DIR"]).resolve()
        slug = "".join(c for c in generator.lower() if c.isalnum())
        return Path(ext.sourcedir) / "build" / f"cmake-{sys.implementation.cache_tag}-{cfg.lower()}-{slug}"

setup(
    ext_modules=[CMakeExtension("ntengine._C"), BuiltAlongside("ntengine._C_cuda")],
    cmdclass={"build_ext": CMakeBuild},
)
