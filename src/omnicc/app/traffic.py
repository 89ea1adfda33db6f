"""Simulated customers (and, when asked, simulated agents) for the demo center, so that its
wallboard shows life even when nobody is logged in.

Everything goes through the public interfaces a browser uses: customers speak the widget's
WebSocket protocol (`/api/chat/ws`), bot agents log in over REST as their own users, go
available, take offers from `/api/desk/ws`, reply, end and wrap up. Customers arrive as a Poisson
process per queue, ask a real customer question, answer the agent now and then, sometimes give
up while waiting, and rate the chat.

The questions are a sample of Banking77 (Casanueva et al., "Efficient Intent Detection with Dual
Sentence Encoders", 2020; PolyAI-LDN/task-specific-datasets), licensed CC BY 4.0, shipped as
`demo_questions.csv` beside this module: up to 10 rows of each of 24 of its 77 intents that an
energy company's customers ask as well, leaving out rows with banking words (ATM, currency,
cards, transfers); the texts themselves are unchanged.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import io
import json
import logging
import random
from collections.abc import Awaitable
from dataclasses import dataclass
from importlib import resources
from typing import Any

import httpx
import websockets
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import WebSocketException

from omnicc.app.demo import Login

log = logging.getLogger("omnicc.app.traffic")

QUESTIONS_FILE = "demo_questions.csv"
LEAVE_TIMEOUT_S = 5.0

TOPIC_QUEUES = {
    "sales": ("age_limit", "country_support", "apple_pay_or_google_pay", "automatic_top_up",
              "top_up_limits", "why_verify_identity", "verify_my_identity",
              "topping_up_by_card"),
    "support": ("passcode_forgotten", "edit_personal_details", "unable_to_verify_identity",
                "terminate_account", "lost_or_stolen_phone", "top_up_failed", "pending_top_up",
                "top_up_reverted"),
    "billing": ("transaction_charged_twice", "request_refund", "Refund_not_showing_up",
                "direct_debit_payment_not_recognised", "extra_charge_on_statement",
                "balance_not_updated_after_bank_transfer", "card_payment_fee_charged",
                "top_up_by_card_charge"),
}
"""Banking77 intents a utility's customers ask too (accounts, prepay top-ups, payments), by the
demo queue that serves them."""

FIRST_NAMES = ("Anna", "Mikko", "Johanna", "Ville", "Emma", "Oskar", "Leena", "Juha", "Ida",
               "Niklas", "Sanna", "Tomas", "Helmi", "Elias", "Karin", "Pekka", "Laura", "Jonas")
LAST_NAMES = ("Mäkinen", "Nieminen", "Johansson", "Heikkinen", "Koskinen", "Berg", "Laine",
              "Salo", "Lindholm", "Järvinen", "Holm", "Rantanen", "Karlsson", "Aalto")
FOLLOW_UPS = ("Ok, thanks. How long will that take?", "I already tried that, it didn't help.",
              "Thanks! Can you check it on your side?", "Alright, and what do I do next?",
              "Is there a fee for that?", "Great, that makes sense.")
GOODBYES = ("Thanks, bye!", "Got it, thank you.", "Ok, I'll try that. Bye.")
SCORES = (1, 2, 3, 4, 5)
SCORE_WEIGHTS = (4, 5, 12, 34, 45)
COMMENTS = {1: "Took far too long.", 2: "Not very helpful.", 3: "", 4: "Quick answer, thanks.",
            5: "Very helpful, thank you!"}

BOT_REPLIES = {
    "sales": ("Welcome! You can join online in a few minutes; all you need is your address "
              "and a meter reading.", "Yes, you can top up in the app and switch on automatic "
                                      "top-ups there too."),
    "support": ("I'm sorry about the trouble. I've reset that on our side; please try the app "
                "again in a few minutes.", "I can see the request here; it is being processed "
                                           "and should be done today."),
    "billing": ("I've looked at your account: that charge was taken twice by mistake. I've "
                "refunded it.", "The refund is on its way and shows up within 3-5 business "
                                "days."),
}
BOT_GENERIC = ("One moment please, I'm looking into this for you.",
               "Thanks for the details, that helps.", "Let me double-check that for you.")
BOT_CLOSING = "Is there anything else I can help you with? Have a great day!"
WRAP_UP_WEIGHTS = {"solved": 70, "follow-up": 15, "escalated": 10, "spam": 5}


@dataclass(frozen=True)
class Question:
    text: str
    category: str

    @property
    def topic(self) -> str:
        return self.category.replace("_", " ").rstrip("?").capitalize()


def load_questions() -> dict[str, list[Question]]:
    """The sample questions by queue name (see the module docstring for the licence)."""
    text = resources.files("omnicc.app").joinpath(QUESTIONS_FILE).read_text(encoding="utf-8")
    queue_of = {category: queue for queue, categories in TOPIC_QUEUES.items()
                for category in categories}
    by_queue: dict[str, list[Question]] = {queue: [] for queue in TOPIC_QUEUES}
    for row in csv.DictReader(io.StringIO(text)):
        queue = queue_of.get(row["category"])
        if queue is not None:
            by_queue[queue].append(Question(row["text"], row["category"]))
    return by_queue


@dataclass(frozen=True)
class TrafficPlan:
    """How busy the demo is and how people behave; durations are means in seconds."""

    customers_per_hour: float = 30.0
    """Per queue: Poisson arrivals."""
    patience_s: float = 150.0
    """How long a customer waits for an agent before giving up (exponential)."""
    customer_think_s: float = 8.0
    """How long a customer takes to write a message (exponential)."""
    customer_silence_s: float = 120.0
    """A customer whose agent says nothing this long leaves."""
    reply_share: float = 0.6
    """The chance a customer answers an agent's message (at most three times)."""
    rating_share: float = 0.75
    """The chance a customer who was served rates the chat."""
    bot_think_s: float = 6.0
    """How long a bot agent takes to read an offer or write a reply (exponential)."""
    bot_idle_s: float = 30.0
    """A bot agent closes a chat whose customer has said nothing this long."""


class _Ended:
    """The customer left or the chat ended: a bot's conversation stops."""


ENDED = _Ended()


def websocket_url(base_url: str) -> str:
    return "ws" + base_url.removeprefix("http")


class Traffic:
    """Runs until cancelled: arrivals on every queue, plus the bot agents."""

    def __init__(self, base_url: str, slug: str, plan: TrafficPlan, *,
                 bots: list[Login] | None = None, origin: str | None = None,
                 rng: random.Random | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.slug = slug
        self.plan = plan
        self.bots = bots or []
        self.origin = origin or self.base_url
        self.rng = rng or random.Random()
        self.questions = load_questions()
        self._customers: set[asyncio.Task[None]] = set()

    async def run(self) -> None:
        queues = await self._queues()
        try:
            async with asyncio.TaskGroup() as group:
                for login in self.bots:
                    group.create_task(BotAgent(self, login).run())
                for name, queue_id in queues.items():
                    group.create_task(self._arrivals(name, queue_id))
        finally:
            customers = list(self._customers)
            for task in customers:
                task.cancel()
            await asyncio.gather(*customers, return_exceptions=True)

    async def _queues(self) -> dict[str, str]:
        """The widget's own view of the queues (those with questions for their topics)."""
        async with httpx.AsyncClient(base_url=self.base_url, timeout=10) as http:
            response = await http.get("/api/chat/config", params={"tenant": self.slug})
            response.raise_for_status()
        return {q["name"]: q["id"] for q in response.json()["queues"]
                if self.questions.get(q["name"])}

    async def _arrivals(self, queue_name: str, queue_id: str) -> None:
        rate_per_s = self.plan.customers_per_hour / 3600.0
        if rate_per_s <= 0:
            return
        while True:
            await asyncio.sleep(self.rng.expovariate(rate_per_s))
            task = asyncio.create_task(self._customer(queue_name, queue_id))
            self._customers.add(task)
            task.add_done_callback(self._customers.discard)

    async def _customer(self, queue_name: str, queue_id: str) -> None:
        try:
            await Customer(self, queue_name, queue_id).visit()
        except (OSError, WebSocketException, TimeoutError) as error:
            log.warning("a simulated customer gave up on the server: %s", error)

    def delay(self, mean_s: float) -> Awaitable[None]:
        return asyncio.sleep(self.rng.expovariate(1.0 / mean_s) if mean_s > 0 else 0)


async def next_frame(ws: ClientConnection, timeout_s: float) -> dict[str, Any] | None:
    """The next frame, or None when none came within `timeout_s`."""
    try:
        async with asyncio.timeout(timeout_s):
            raw = await ws.recv()
    except TimeoutError:
        return None
    frame = json.loads(raw)
    if not isinstance(frame, dict):
        return {}
    if frame.get("type") == "error" and frame.get("status") != 409:
        # 409: the chat ended while the customer typed, a race real customers run into too.
        log.warning("the server refused a simulated customer's frame: %s", frame.get("detail"))
    return frame


class Customer:
    """One visitor of the demo page: asks, waits, chats, leaves, rates."""

    def __init__(self, traffic: Traffic, queue_name: str, queue_id: str) -> None:
        self.traffic = traffic
        self.plan = traffic.plan
        self.rng = traffic.rng
        self.queue_id = queue_id
        self.queue_name = queue_name
        self.question = self.rng.choice(traffic.questions[queue_name])
        self.name = f"{self.rng.choice(FIRST_NAMES)} {self.rng.choice(LAST_NAMES)}"
        self._sent = 0

    async def visit(self) -> None:
        url = (f"{websocket_url(self.traffic.base_url)}/api/chat/ws?tenant="
               f"{self.traffic.slug}")
        async with websockets.connect(url) as ws:
            email = self.name.lower().replace(" ", ".").translate(
                str.maketrans("äöå", "aoa")) + "@example.com"
            await ws.send(json.dumps({"type": "hello", "visitor": None, "name": self.name,
                                      "email": email}))
            await self._expect(ws, "welcome")
            await ws.send(json.dumps({
                "type": "start", "queue_id": self.queue_id, "text": self.question.text,
                "id": self._next_id(), "topic": self.question.topic}))
            chat = await self._expect(ws, "chat")
            try:
                served = await self._wait_for_agent(ws) and await self._converse(ws)
            except asyncio.CancelledError:
                # The demo stops: leave like a closed browser tab would not, so that the next
                # run finds no customers waiting who are not there.
                with contextlib.suppress(OSError, WebSocketException, TimeoutError):
                    async with asyncio.timeout(LEAVE_TIMEOUT_S):
                        await self._leave(ws)
                raise
            if served and self.rng.random() < self.plan.rating_share:
                score = self.rng.choices(SCORES, SCORE_WEIGHTS)[0]
                await ws.send(json.dumps({"type": "rate", "contact_id": chat["contact_id"],
                                          "score": score, "comment": COMMENTS[score]}))
                await self._expect(ws, "rated")

    async def _expect(self, ws: ClientConnection, wanted: str) -> dict[str, Any]:
        while True:
            frame = await next_frame(ws, 30.0)
            if frame is None:
                raise TimeoutError(f"no {wanted} frame from the server")
            if frame.get("type") == wanted:
                return frame

    async def _leave(self, ws: ClientConnection) -> None:
        """Leave the chat and see it end, so the leave is stored before the socket closes."""
        await ws.send(json.dumps({"type": "leave"}))
        await self._expect(ws, "chat_ended")

    async def _wait_for_agent(self, ws: ClientConnection) -> bool:
        """True once an agent joined; False when the customer gave up or the chat ended."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.rng.expovariate(1.0 / self.plan.patience_s)
        while True:
            frame = await next_frame(ws, max(0.0, deadline - loop.time()))
            if frame is None:
                await self._leave(ws)
                return False
            if frame.get("type") == "agent_joined":
                return True
            if frame.get("type") == "chat_ended":
                return False

    async def _converse(self, ws: ClientConnection) -> bool:
        """Chat until it ends; True when the customer saw the agent through to the end."""
        replies_left = self.rng.randint(1, 3)
        while True:
            frame = await next_frame(ws, self.plan.customer_silence_s)
            if frame is None:
                await self._leave(ws)
                return True
            kind = frame.get("type")
            if kind == "chat_ended":
                return True
            if kind != "message" or frame["message"].get("author_kind") != "agent":
                continue
            if replies_left and self.rng.random() < self.plan.reply_share:
                replies_left -= 1
                await self._say(ws, self._follow_up())
            elif not replies_left and self.rng.random() < 0.2:
                await self._say(ws, self.rng.choice(GOODBYES))
                await self._leave(ws)
                return True

    def _follow_up(self) -> str:
        if self.rng.random() < 0.4:
            same_topic = [q for q in self.traffic.questions[self.queue_name]
                          if q.category == self.question.category and q != self.question]
            if same_topic:
                return self.rng.choice(same_topic).text
        return self.rng.choice(FOLLOW_UPS)

    async def _say(self, ws: ClientConnection, text: str) -> None:
        await ws.send(json.dumps({"type": "typing", "is_typing": True}))
        await self.traffic.delay(self.plan.customer_think_s)
        await ws.send(json.dumps({"type": "message", "text": text, "id": self._next_id()}))

    def _next_id(self) -> str:
        self._sent += 1
        return f"sim-{id(self):x}-{self._sent}"


class BotAgent:
    """A simulated agent: logs in as its own demo user and handles chats like a person would,
    through the same REST calls and desk WebSocket as the agent desktop."""

    RETRY_S = 3.0

    def __init__(self, traffic: Traffic, login: Login) -> None:
        self.traffic = traffic
        self.login = login
        self.plan = traffic.plan
        self.rng = traffic.rng
        self.http = httpx.AsyncClient(base_url=traffic.base_url, timeout=15)
        self.codes: list[str] = []
        self.queue_names: dict[str, str] = {}
        self._inboxes: dict[str, asyncio.Queue[str | _Ended]] = {}
        self._work: set[asyncio.Task[None]] = set()

    async def run(self) -> None:
        try:
            while True:
                try:
                    await self._shift()
                except (OSError, WebSocketException, httpx.HTTPError) as error:
                    log.warning("bot agent %s lost the server (%s); retrying",
                                self.login.username, error)
                await asyncio.sleep(self.RETRY_S)
        finally:
            work = list(self._work)
            for task in work:
                task.cancel()
            await asyncio.gather(*work, return_exceptions=True)
            await self._log_out()

    async def _log_out(self) -> None:
        """Go offline, so a run without bots does not offer chats to agents nobody plays."""
        if "X-CSRF-Token" in self.http.headers:
            with contextlib.suppress(httpx.HTTPError):
                await self.http.put("/api/desk/status", json={"status": "offline"},
                                    timeout=LEAVE_TIMEOUT_S)
        await self.http.aclose()

    async def _shift(self) -> None:
        response = await self.http.post("/api/auth/login", json={
            "username": self.login.username, "password": self.login.password,
            "tenant": self.traffic.slug})
        response.raise_for_status()
        self.http.headers["X-CSRF-Token"] = response.json()["csrf_token"]
        codes = (await self.http.get("/api/desk/wrap-up-codes")).json()
        self.codes = [c["code"] for c in codes]
        config = (await self.http.get("/api/chat/config",
                                      params={"tenant": self.traffic.slug})).json()
        self.queue_names = {q["id"]: q["name"] for q in config["queues"]}
        cookie = "; ".join(f"{k}={v}" for k, v in self.http.cookies.items())
        url = websocket_url(self.traffic.base_url) + "/api/desk/ws"
        async with websockets.connect(url, additional_headers={
                "Cookie": cookie, "Origin": self.traffic.origin}) as ws:
            (await self.http.put("/api/desk/status",
                                 json={"status": "available"})).raise_for_status()
            async for raw in ws:
                frame = json.loads(raw)
                if isinstance(frame, dict):
                    self._on_frame(frame)

    def _on_frame(self, frame: dict[str, Any]) -> None:
        kind = frame.get("type")
        if kind == "state":
            for offer in frame["offers"]:
                self._spawn(self._accept(offer["offer_id"], offer["conversation_id"]))
            for task in frame["tasks"]:  # left over from before a restart or reconnect
                if task["phase"] == "wrapping":
                    self._spawn(self._wrap_up(task["task_id"]))
                elif task["conversation_id"] not in self._inboxes:
                    self._spawn(self._handle(task["conversation_id"], task["task_id"],
                                             task["queue_id"], greet=False))
        elif kind == "offer.created":  # this socket hears only this agent's offers
            self._spawn(self._accept(frame["offer_id"], frame.get("conversation_id")))
        elif kind == "message.created" and frame.get("author_kind") == "customer":
            inbox = self._inboxes.get(frame.get("conversation_id", ""))
            if inbox is not None:
                inbox.put_nowait(str(frame.get("text", "")))
        elif kind == "chat.ended":
            inbox = self._inboxes.get(frame.get("conversation_id", ""))
            if inbox is not None:
                inbox.put_nowait(ENDED)

    def _spawn(self, work: Awaitable[None]) -> None:
        async def guarded() -> None:
            try:
                await work
            except (OSError, WebSocketException, httpx.HTTPError) as error:
                log.warning("bot agent %s: %s", self.login.username, error)

        task = asyncio.create_task(guarded())
        self._work.add(task)
        task.add_done_callback(self._work.discard)

    async def _accept(self, offer_id: str, conversation_id: str | None) -> None:
        await self.traffic.delay(min(self.plan.bot_think_s, 5.0))
        response = await self.http.post(f"/api/desk/offers/{offer_id}/accept")
        if response.status_code != 200:
            return  # the offer expired, was rescinded or the customer left meanwhile
        for task in response.json()["tasks"]:
            if task["conversation_id"] == conversation_id and task["phase"] == "assigned" \
                    and conversation_id not in self._inboxes:
                await self._handle(task["conversation_id"], task["task_id"],
                                   task["queue_id"], greet=True)

    async def _handle(self, conversation_id: str, task_id: str, queue_id: str, *,
                      greet: bool) -> None:
        inbox: asyncio.Queue[str | _Ended] = asyncio.Queue()
        self._inboxes[conversation_id] = inbox
        try:
            ended = await self._chat(conversation_id, queue_id, inbox, greet=greet)
            if not ended:
                await self._post(conversation_id, BOT_CLOSING)
                await self.traffic.delay(self.plan.bot_think_s / 2)
                await self.http.post(f"/api/desk/conversations/{conversation_id}/end")
            await self._wrap_up(task_id)
        finally:
            self._inboxes.pop(conversation_id, None)

    async def _wrap_up(self, task_id: str) -> None:
        await self.traffic.delay(self.plan.bot_think_s / 2)
        await self.http.post(f"/api/desk/tasks/{task_id}/wrap-up",
                             json={"code": self._wrap_up_code()})

    async def _chat(self, conversation_id: str, queue_id: str,
                    inbox: asyncio.Queue[str | _Ended], *, greet: bool) -> bool:
        """Greets and answers; True when the customer ended the chat first."""
        replies = list(BOT_REPLIES.get(self.queue_names.get(queue_id, ""), BOT_GENERIC))
        if greet:
            await self.traffic.delay(self.plan.bot_think_s)
            if not await self._post(conversation_id, self._greeting()):
                return True
            await self.traffic.delay(self.plan.bot_think_s)
            if not await self._post(conversation_id, replies[0]):
                return True
        for _ in range(self.rng.randint(1, 3)):
            try:
                async with asyncio.timeout(self.plan.bot_idle_s):
                    said = await inbox.get()
            except TimeoutError:
                return False
            if isinstance(said, _Ended):
                return True
            await self.traffic.delay(self.plan.bot_think_s)
            if not await self._post(conversation_id, self.rng.choice(
                    (*replies[1:], *BOT_GENERIC))):
                return True
        return False

    def _greeting(self) -> str:
        return (f"Hi, I'm {self.login.display_name} from Acme Energy, a simulated agent of the "
                "demo. Thanks for waiting!")

    async def _post(self, conversation_id: str, text: str) -> bool:
        """Reply to the customer; False when the chat is no longer this agent's."""
        response = await self.http.post(f"/api/desk/conversations/{conversation_id}/messages",
                                        json={"text": text})
        return response.status_code == 201

    def _wrap_up_code(self) -> str | None:
        weighted = [(code, weight) for code, weight in WRAP_UP_WEIGHTS.items()
                    if code in self.codes]
        if not weighted:
            return self.codes[0] if self.codes else None
        codes, weights = zip(*weighted, strict=True)
        chosen: str = self.rng.choices(codes, weights)[0]
        return chosen


def start_in_background(traffic: Traffic) -> asyncio.Task[None]:
    """Run the traffic beside a server in its event loop; it ends with that loop."""
    task = asyncio.get_running_loop().create_task(traffic.run(), name="demo traffic")
    task.add_done_callback(_report_end)
    return task


def _report_end(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("the demo traffic stopped", exc_info=task.exception())
