"""Builds the compiled modules: every ``.pyx`` under ``src/multilayercache`` (the policy core
in ``_core/``, the in-memory layer, the manager's fast path).

Compiler directives are set once, here. ``MULTILAYERCACHE_CYTHON_DEBUG=1`` turns bounds and
wrap-around checks back on for debugging a crash in the core.
"""

import os
from pathlib import Path

import numpy
from Cython.Build import cythonize
from setuptools import Extension, setup

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

extensions = [
    Extension(
        ".".join(pyx.relative_to(SOURCE).with_suffix("").parts),
        [str(pyx)],
        include_dirs=[numpy.get_include()],
        define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
        extra_compile_args=["-O3"] if not DEBUG else ["-O0", "-g"],
    )
    for pyx in sorted((SOURCE / "multilayercache").rglob("*.pyx"))
]

setup(ext_modules=cythonize(extensions, compiler_directives=DIRECTIVES))
