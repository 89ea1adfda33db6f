"""Build hook: compile the routing engine's hot modules with mypyc.

The modules stay plain, typed Python; mypyc turns them into C extensions for speed (see
docs/benchmarks.md). Set OMNICC_PURE_PYTHON=1 to install without compiling.
"""

import os

from setuptools import setup

HOT_MODULES = [
    "src/omnicc/core/engine.py",
    "src/omnicc/core/pool.py",
    "src/omnicc/core/model.py",
]

ext_modules = []
if os.environ.get("OMNICC_PURE_PYTHON") != "1":
    from mypyc.build import mypycify

    ext_modules = mypycify(HOT_MODULES, opt_level="3")

setup(ext_modules=ext_modules)
