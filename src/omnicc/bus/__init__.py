"""Event fan-out to the connected browsers and integrations (in-process; Redis when clustered)."""

from omnicc.bus.memory import Bus, Notice, Subscription

__all__ = ["Bus", "Notice", "Subscription"]
