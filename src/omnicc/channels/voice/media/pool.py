"""Several rtpengines: where each new call's media goes, and which engines are healthy.

A call's media lives in one rtpengine for the call's whole life (rtpengine keeps no state
another engine could take over without Redis), so placement happens once, when the call
starts: :meth:`EnginePool.pick` returns the healthy engine with the fewest calls.  "Calls"
is what the engine itself reported at its last health check (``statistics``:
``sessionstotal``, so calls placed by another OmniCC count too) plus the calls placed on it
since, so a burst between two checks is spread as well; ties go round the pool.

Each engine is watched by a :class:`RtpengineMonitor` (the embedded daemon by its own, which
also sees its process exit).  A lost engine takes no new calls and is reported (``lost``)
so the calls on it can be ended; an engine that answers again (or whose uptime went back:
it restarted and forgot its calls) is reported ``restarted`` and takes calls again.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from omnicc.channels.voice.media.daemon import (
    EngineEvent,
    EngineEventKind,
    RtpengineDaemon,
    RtpengineError,
    RtpengineMonitor,
)
from omnicc.channels.voice.media.ng import NgClient

__all__ = ["Engine", "EnginePool", "PoolCallback", "engine_addresses"]


def engine_addresses(setting: str) -> list[tuple[str, int]]:
    """``"host:port,host:port"`` (IPv6 hosts in brackets) as ng addresses, in order."""
    addresses: list[tuple[str, int]] = []
    for item in (part.strip() for part in setting.split(",")):
        if not item:
            continue
        host, colon, port = item.rpartition(":")
        host = host.strip("[]")
        if not colon or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"rtpengine address {item!r} is not host:port")
        if (host, int(port)) in addresses:
            raise ValueError(f"rtpengine address {item!r} is listed twice")
        addresses.append((host, int(port)))
    return addresses


@dataclass(eq=False)
class Engine:
    """One rtpengine of the pool."""

    client: NgClient
    monitor: RtpengineMonitor | None = None
    """Its health check; None for the embedded daemon, whose own monitor is used."""
    daemon: RtpengineDaemon | None = None
    up: bool = True
    detail: str = ""
    """Why it is down (or what happened last)."""
    changed_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    placed: int = 0
    """Calls placed on it since this OmniCC started."""
    _placed_since_check: int = 0
    _checks_seen: int = 0

    @property
    def name(self) -> str:
        host, port = self.client.address
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"

    @property
    def _watch(self) -> RtpengineMonitor | None:
        return self.daemon.monitor if self.daemon is not None else self.monitor

    @property
    def load(self) -> int:
        """Calls it reported at its last health check, plus those placed on it since."""
        self._forget_counted()
        watch = self._watch
        return (watch.sessions if watch is not None else 0) + self._placed_since_check

    def placed_one(self) -> None:
        self._forget_counted()
        self._placed_since_check += 1
        self.placed += 1

    def _forget_counted(self) -> None:
        """A health check since the last placement counted those calls already."""
        watch = self._watch
        if watch is not None and watch.checks != self._checks_seen:
            self._checks_seen = watch.checks
            self._placed_since_check = 0

    def status(self) -> dict[str, Any]:
        """For /readyz; a lost engine's calls are gone, so it has none."""
        return {"address": self.name, "up": self.up, "calls": self.load if self.up else 0,
                "placed": self.placed, "detail": self.detail,
                "since": self.changed_at.isoformat()}


PoolCallback = Callable[[Engine, EngineEvent], None]


class EnginePool:
    """The rtpengines of this OmniCC; ``on_event(engine, event)`` hears each loss and return."""

    def __init__(self, on_event: PoolCallback, *, health_interval: float = 1.0) -> None:
        self.on_event = on_event
        self.health_interval = health_interval
        self.engines: list[Engine] = []
        self._turn = itertools.count()

    def add_external(self, address: tuple[str, int], *, timeout: float = 1.0,
                     retries: int = 2) -> Engine:
        """An rtpengine run by someone else, watched over ng by a monitor of ours."""
        engine = Engine(NgClient(address, timeout=timeout, retries=retries))
        engine.monitor = RtpengineMonitor(engine.client, lambda event: self.report(engine, event),
                                          interval=self.health_interval)
        self.engines.append(engine)
        return engine

    def add_daemon(self, daemon: RtpengineDaemon) -> Engine:
        """OmniCC's own rtpengine; its events come through :meth:`report`, which this wires."""
        engine = Engine(daemon.client, daemon=daemon)
        daemon.on_event = lambda event: self.report(engine, event)
        self.engines.append(engine)
        return engine

    @property
    def healthy(self) -> list[Engine]:
        return [engine for engine in self.engines if engine.up]

    def pick(self) -> Engine | None:
        """The healthy engine for a new call (fewest calls, then round the pool), counted as
        placed; None when no engine is healthy."""
        healthy = self.healthy
        if not healthy:
            return None
        turn = next(self._turn)
        size = len(self.engines)
        chosen = min(healthy, key=lambda engine: (
            engine.load, (self.engines.index(engine) - turn) % size))
        chosen.placed_one()
        return chosen

    def engine_of(self, client: NgClient) -> Engine | None:
        return next((engine for engine in self.engines if engine.client is client), None)

    def report(self, engine: Engine, event: EngineEvent) -> None:
        """An engine's monitor (or daemon) saw it go or come back."""
        if event.kind is EngineEventKind.LOST and not engine.up:
            return
        engine.up = event.kind is EngineEventKind.RESTARTED
        engine.detail = event.detail
        engine.changed_at = datetime.now(UTC)
        self.on_event(engine, event)

    async def start(self) -> None:
        """Start the daemons, check every external engine once and start watching them.

        An engine that does not answer is reported lost (and rejoins when it answers); only
        a pool where none answers fails to start."""
        for engine in self.engines:
            if engine.daemon is not None:
                await engine.daemon.start()
        external = [engine for engine in self.engines if engine.monitor is not None]
        await asyncio.gather(*(engine.client.open() for engine in external))
        await asyncio.gather(*(engine.monitor.check() for engine in external
                               if engine.monitor is not None))
        if not self.healthy:
            raise RtpengineError("no rtpengine answers: " + "; ".join(
                f"{engine.name}: {engine.detail}" for engine in self.engines))
        for engine in external:
            assert engine.monitor is not None
            engine.monitor.start()

    async def stop(self) -> None:
        for engine in self.engines:
            if engine.monitor is not None:
                await engine.monitor.stop()
                await engine.client.close()
            if engine.daemon is not None:
                await engine.daemon.stop()

    def status(self) -> list[dict[str, Any]]:
        """Each engine: address, up, calls, placed, detail, since (for /readyz)."""
        return [engine.status() for engine in self.engines]

