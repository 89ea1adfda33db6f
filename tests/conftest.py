"""Settings for the whole suite.

In CI (`CI` set) hypothesis runs derandomized: the same examples every run, so a property test
cannot pass on one clean clone and fail on the next. Local runs keep exploring new examples (and
replay the failures they found from `.hypothesis/`)."""

from __future__ import annotations

import os

from hypothesis import settings

settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")
