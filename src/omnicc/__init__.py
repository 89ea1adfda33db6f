"""OmniCC: an open-source omnichannel contact center."""

from pathlib import Path

__version__ = "0.1.0"

COMPILED_MODULES = ("core/engine", "core/pool", "core/model")
"""Modules that setup.py compiles with mypyc; the compiled file wins over the source on import."""


def _refuse_stale_compiled_modules() -> None:
    """A compiled module older than its source would silently run old code: stop instead."""
    package = Path(__file__).parent
    for module in COMPILED_MODULES:
        source = package / f"{module}.py"
        for compiled in package.glob(f"{module}.*.so"):
            if compiled.stat().st_mtime < source.stat().st_mtime:
                raise ImportError(
                    f"{compiled.name} is older than {source.name}: rebuild with `make build` "
                    "(or reinstall with OMNICC_PURE_PYTHON=1 to run the source)"
                )


_refuse_stale_compiled_modules()
