"""The ceiling of the chat load benchmark: a bare WebSocket relay on OmniCC's server stack.

    python bench/chat_relay.py [--port N]

The same uvicorn configuration as `omnicc serve` (uvloop, httptools, the `websockets`
protocol, permessage-deflate, no access log), the same endpoints and frames the load generator
uses in its measured phase, and nothing else: no storage, no routing, no authentication. A
customer's `message` frame is acknowledged and handed to the paired agent's socket as
`message.created`; an agent's `POST /api/desk/conversations/{id}/messages` reaches the
customer as `message`. Each socket has an outbound queue and a sender task, as OmniCC's bus
subscriptions do, so the comparison is of the work between the frames, not of the plumbing.
Prints `relay serving on <url>` once it accepts connections.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import socket
import sys
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect


@dataclass
class Peer:
    """One open socket and its outbound queue (what a bus subscription is in OmniCC)."""

    websocket: WebSocket
    outbox: asyncio.Queue[dict[str, Any]] = field(default_factory=asyncio.Queue)

    async def pump(self) -> None:
        while True:
            await self.websocket.send_text(json.dumps(await self.outbox.get()))


@dataclass
class Relay:
    agents: dict[str, Peer] = field(default_factory=dict)
    customers: dict[str, Peer] = field(default_factory=dict)
    pairs: dict[str, str] = field(default_factory=dict)
    """Conversation id -> agent index."""
    next_id: int = 0


relay = Relay()


async def serve_peer(peer: Peer, handle: Any) -> None:
    pumping = asyncio.create_task(peer.pump())
    try:
        while True:
            await handle(json.loads(await peer.websocket.receive_text()))
    except WebSocketDisconnect:
        pass
    finally:
        pumping.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await pumping


async def desk_socket(websocket: WebSocket) -> None:
    agent = websocket.query_params.get("agent", "")
    await websocket.accept()
    peer = Peer(websocket)
    relay.agents[agent] = peer
    await websocket.send_text(json.dumps({"type": "state"}))

    async def handle(frame: dict[str, Any]) -> None:
        """An agent's reply: acknowledged, and passed to the customer of the conversation."""
        if frame.get("type") != "message":
            return
        conversation_id = str(frame.get("conversation_id", ""))
        customer = relay.customers.get(conversation_id)
        message = {"id": frame.get("id"), "conversation_id": conversation_id,
                   "author_kind": "agent", "text": frame.get("text")}
        if customer is not None:
            customer.outbox.put_nowait({"type": "message", "message": message})
        peer.outbox.put_nowait({"type": "ack", "id": frame.get("id"), "message": message})

    try:
        await serve_peer(peer, handle)
    finally:
        relay.agents.pop(agent, None)


async def chat_socket(websocket: WebSocket) -> None:
    agent = websocket.query_params.get("pair", "")
    await websocket.accept()
    peer = Peer(websocket)
    relay.next_id += 1
    conversation_id = f"c{relay.next_id}"
    relay.customers[conversation_id] = peer
    relay.pairs[conversation_id] = agent

    async def handle(frame: dict[str, Any]) -> None:
        kind = frame.get("type")
        if kind == "hello":
            peer.outbox.put_nowait({"type": "welcome", "visitor": conversation_id,
                                    "history": [], "chat": None})
        elif kind == "start":
            peer.outbox.put_nowait({"type": "chat", "conversation_id": conversation_id})
            peer.outbox.put_nowait({"type": "ack", "id": frame.get("id")})
            peer.outbox.put_nowait({"type": "agent_joined"})
        elif kind == "message":
            peer.outbox.put_nowait({"type": "ack", "id": frame.get("id")})
            target = relay.agents.get(agent)
            if target is not None:
                target.outbox.put_nowait({
                    "type": "message.created", "conversation_id": conversation_id,
                    "author_kind": "customer", "text": frame.get("text"),
                    "id": frame.get("id")})

    try:
        await serve_peer(peer, handle)
    finally:
        relay.customers.pop(conversation_id, None)
        relay.pairs.pop(conversation_id, None)


app = Starlette(routes=[
    WebSocketRoute("/api/desk/ws", desk_socket),
    WebSocketRoute("/api/chat/ws", chat_socket),
])


class _Server(uvicorn.Server):
    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started and sockets:
            host, port = sockets[0].getsockname()[:2]
            print(f"relay serving on http://{host}:{port}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", args.port))
    # As omnicc.api.server.serve configures it.
    config = uvicorn.Config(app, log_config=None, access_log=False, lifespan="on",
                            server_header=False, ws_max_size=1_048_576)
    _Server(config).run(sockets=[sock])
    sys.exit(0)


if __name__ == "__main__":
    main()
