"""Builds the compiled modules: every ``.pyx`` under ``src/multilayercache`` (the policy core
in ``_core/``, the in-memory layer, the manager's fast path). Each has a pure-Python twin that
the package uses when the module is not there (``_build.py``).

* Cython translates the modules on every core and the C compiler compiles them on every core
  (``build_ext -j``), one line per module on stderr (``pip install -v`` shows them).
* Each compiled module is kept in ``build/compiled/`` under the digest of the C it was compiled
  from (and of the flags), and reused by the next build from the same tree that generates the
  same C: the README's two commands, and any reinstall, compile once. (By content, not by
  time: pip's isolated build installs Cython anew, so its ``.pxd`` look newer every time and
  Cython rewrites every ``.c``, identically.)
* ``MULTILAYERCACHE_PURE=1`` builds no extension at all: a pure-Python install. Without it, a
  build whose C compiler is missing or fails falls back to the same, with a warning that says
  what it costs (an L1 hit is ~10x slower on the twins).
* ``MULTILAYERCACHE_CYTHON_DEBUG=1`` turns bounds and wrap-around checks back on, without
  optimisation, for debugging a crash in the core.

Compiler directives are set once, here. See docs/building.md.
"""

import hashlib
import os
import shutil
import sys
import time
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

PURE = os.environ.get("MULTILAYERCACHE_PURE", "") not in ("", "0")
DEBUG = os.environ.get("MULTILAYERCACHE_CYTHON_DEBUG") == "1"

DIRECTIVES = {
    "language_level": 3,
    "boundscheck": DEBUG,
    "wraparound": DEBUG,
    "initializedcheck": DEBUG,
    "cdivision": True,
    # Plain method descriptors instead of cyfunction objects: a method call costs ~10 ns less,
    # which is a third of our budget for a cache hit.
    "binding": False,
    "embedsignature": True,
    # signatures as __text_signature__, so that inspect.signature reads compiled methods too
    "embedsignature.format": "clinic",
}

SOURCE = Path("src")
# Compiled modules, reused by later builds in this tree (a module's file name carries its
# Python ABI and platform; the debug flags get a folder of their own).
COMPILED = Path("build") / ("compiled-debug" if DEBUG else "compiled")

# -g0: no debug information (a sixth of the compile's CPU time, and most of the binary's
# size). -O3 stays: the hit path was tuned with it (-O2 was not measured against it).
UNIX_FLAGS = ["-O0", "-g"] if DEBUG else ["-O3", "-g0"]
MSVC_FLAGS = ["/Od", "/Zi"] if DEBUG else ["/O2"]
# Strip the symbol table at link time (the 8.1 MB wheel was mostly symbols):
# GNU ld takes -s, Apple's ld -x (local symbols only: it has no -s any more).
STRIP = {"linux": ["-s"], "darwin": ["-Wl,-x"]}.get(sys.platform, [])


def say(message: str) -> None:
    print(f"multilayercache: {message}", file=sys.stderr, flush=True)


class BuildExt(build_ext):
    """``build_ext`` on every core, with a line per module, and the pure-Python fallback."""

    def finalize_options(self) -> None:
        super().finalize_options()
        if self.parallel is None:  # setuptools compiles one module at a time by default
            self.parallel = os.cpu_count() or 1

    def run(self) -> None:
        self.started = time.monotonic()
        self.finished = 0
        try:
            super().run()
        except Exception as error:  # no compiler, or one that fails: distutils raises many kinds
            if DEBUG or os.environ.get("MULTILAYERCACHE_REQUIRE_EXTENSIONS") == "1":
                raise
            self.fall_back(error)

    def build_extensions(self) -> None:
        msvc = self.compiler.compiler_type == "msvc"
        for extension in self.extensions:
            extension.extra_compile_args = MSVC_FLAGS if msvc else UNIX_FLAGS
            extension.extra_link_args = [] if msvc or DEBUG else STRIP
        say(f"compiling {len(self.extensions)} modules on {self.parallel} cores")
        super().build_extensions()
        say(f"built in {time.monotonic() - self.started:.0f} s")

    def build_extension(self, extension: Extension) -> None:
        built = Path(self.get_ext_fullpath(extension.name))
        name = self.get_ext_filename(extension.name)
        kept = COMPILED / f"{name}.{digest(extension, self.compiler.compiler_type)}"
        if self.force or not kept.exists():
            super().build_extension(extension)
            kept.parent.mkdir(parents=True, exist_ok=True)
            for old in kept.parent.glob(f"{Path(name).name}.*"):  # other versions of the C
                old.unlink(missing_ok=True)
            shutil.copy2(built, kept)
            done = "built"
        else:
            built.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(kept, built)
            done = f"reused (from {COMPILED})"
        self.finished += 1  # under the GIL: the worker threads only wait for the compiler
        say(f"[{self.finished}/{len(self.extensions)}] {extension.name}: {done}")

    def fall_back(self, error: Exception) -> None:
        """Leave out every compiled module (a half-built set would mix twins): the package
        then imports the pure-Python twins."""
        for extension in self.extensions:
            Path(self.get_ext_fullpath(extension.name)).unlink(missing_ok=True)
            # and what an earlier editable install left beside the sources
            (SOURCE / self.get_ext_filename(extension.name)).unlink(missing_ok=True)
        self.extensions = []
        self.distribution.ext_modules = []
        say(
            "WARNING: could not compile the extension modules "
            f"({type(error).__name__}: {error}).\n"
            "Installing the pure-Python version: it works the same but its cache hits are "
            "about ten times slower. Install a C compiler (or use a wheel) and reinstall for "
            "the compiled one; MULTILAYERCACHE_REQUIRE_EXTENSIONS=1 makes this an error."
        )


def digest(extension: Extension, compiler: str) -> str:
    """What a compiled module is made of: its C sources, the flags, the compiler's kind."""
    made_of = hashlib.sha256(repr((UNIX_FLAGS, MSVC_FLAGS, STRIP, compiler)).encode())
    for source in extension.sources + extension.depends:
        made_of.update(Path(source).read_bytes())
    return made_of.hexdigest()[:16]


def extensions() -> list[Extension]:
    if PURE:
        say("MULTILAYERCACHE_PURE is set: building no extension (pure-Python install)")
        return []
    import Cython
    from Cython.Build import cythonize

    pyx_files = sorted((SOURCE / "multilayercache").rglob("*.pyx"))
    modules = [
        Extension(".".join(pyx.relative_to(SOURCE).with_suffix("").parts), [str(pyx)])
        for pyx in pyx_files
    ]
    # Cython decides by time whether a .c is out of date, and pip's isolated build installs
    # Cython anew each time (its own .pxd look newer): decide by content instead. Same
    # Cython, same directives, same .pyx/.pxd: the .c it wrote last time are still right.
    made_of = hashlib.sha256(repr((Cython.__version__, DIRECTIVES)).encode())
    for source in sorted((SOURCE / "multilayercache").rglob("*.p[yx][xd]")):
        made_of.update(str(source).encode() + source.read_bytes())
    stamp = COMPILED / "cythonized"
    c_files = [pyx.with_suffix(".c") for pyx in pyx_files]
    if stamp.exists() and stamp.read_text() == made_of.hexdigest():
        if all(c.exists() for c in c_files):
            say("the Cython sources are unchanged: reusing their C")
            for module, c in zip(modules, c_files, strict=True):
                module.sources = [str(c)]
            return modules
    # (one process at a time on Windows: its worker processes would re-run this file)
    threads = 0 if sys.platform == "win32" else os.cpu_count() or 1
    modules = cythonize(modules, compiler_directives=DIRECTIVES, nthreads=threads, quiet=True)
    stamp.parent.mkdir(parents=True, exist_ok=True)
    stamp.write_text(made_of.hexdigest())
    return modules


setup(ext_modules=extensions(), cmdclass={"build_ext": BuildExt})
