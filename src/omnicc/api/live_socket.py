"""The loop every staff WebSocket runs: the bus's notices out, the client's frames in.

Notices go out as frames (a `translate` function may reshape or drop them); the client's JSON
objects go to `on_frame`; anything else it sends is ignored. A client too slow to read is closed
with 1013 so that it reconnects and reloads its state; the subscription ends with the socket.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import WebSocket, WebSocketDisconnect

from omnicc.bus import Notice, Subscription

CLOSE_POLICY = 1008
CLOSE_OVERLOAD = 1013

Translate = Callable[[Notice], dict[str, Any] | None]
FrameHandler = Callable[[dict[str, Any]], Awaitable[None]]


async def forward_notices(websocket: WebSocket, subscription: Subscription,
                          translate: Translate) -> None:
    """Until the subscription ends: send each notice as `translate` makes it (None: skip)."""
    while True:
        notice = await subscription.get()
        if notice is None:
            if subscription.overflowed:
                await websocket.close(CLOSE_OVERLOAD, "too slow; reconnect")
            return
        frame = translate(notice)
        if frame is not None:
            await websocket.send_json(frame)


async def serve_live_socket(websocket: WebSocket, subscription: Subscription,
                            on_frame: FrameHandler,
                            translate: Translate = Notice.wire) -> None:
    """Run both directions until the client goes; then end the subscription."""
    forwarding = asyncio.create_task(forward_notices(websocket, subscription, translate))
    try:
        while True:
            try:
                frame = json.loads(await websocket.receive_text())
            except json.JSONDecodeError:
                continue
            if isinstance(frame, dict):
                await on_frame(frame)
    except WebSocketDisconnect:
        pass
    finally:
        subscription.close()
        forwarding.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await forwarding
