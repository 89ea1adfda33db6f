"""`omnicc wfm ...`: the workforce-management commands, one module per group of commands.

Each module registers its commands on `wfm_app` when it is imported below.
"""

from __future__ import annotations

import typer

wfm_app = typer.Typer(help="Workforce management: queueing figures, staffing, forecasts, "
                           "schedules and what-if simulations.", no_args_is_help=True)

from omnicc.wfm.commands import forecasting as forecasting  # noqa: E402
from omnicc.wfm.commands import planning as planning  # noqa: E402
from omnicc.wfm.commands import queueing as queueing  # noqa: E402
