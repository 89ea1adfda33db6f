"""OmniCC's telephone exchange: one SIP stack and one media engine for every tenant.

`VoiceService` listens for SIP (UDP and TCP on one port), starts and watches its own rtpengine
(or places each call on the least busy healthy one of a pool of external engines), and sends
each request where it belongs:

- REGISTER from agents' phones to the registrar of the tenant (digest realm = tenant slug).
  The tenant is the one whose slug is the first label of the request's domain
  (`sip:alice@acme.example.com`), or the only tenant when there is just one.
- INVITE to a number: the number's tenant and IVR flow (`voice_numbers`); unknown numbers get
  404, numbers without a flow 480. Each call is an `InboundCall`.
- OPTIONS is answered by the stack; other out-of-dialog requests get the stack's defaults.

The registrars learn users' HA1s from `sip_accounts`; bindings live in memory (phones
re-register after a restart, as they do after any registrar restart).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from omnicc.channels.voice.calls import InboundCall
from omnicc.channels.voice.devices import BrowserPhones, Device, SipPhone
from omnicc.channels.voice.ivr.flow import Prompt
from omnicc.channels.voice.ivr.inbound import InboundRoute, inbound_route
from omnicc.channels.voice.live import LiveCall
from omnicc.channels.voice.lookups import Lookups
from omnicc.channels.voice.media.bridge import RecordingHandle
from omnicc.channels.voice.media.daemon import EngineEvent, RtpengineDaemon
from omnicc.channels.voice.media.dtmf import DtmfListener
from omnicc.channels.voice.media.ng import NgClient
from omnicc.channels.voice.media.pool import Engine, EnginePool, engine_addresses
from omnicc.channels.voice.media.prompts import TextToSpeech
from omnicc.channels.voice.media.recordings import (
    find_recording,
    recording_to_wav,
    remove_recording,
)
from omnicc.channels.voice.music import beep, music_on_hold
from omnicc.channels.voice.outbound import OutboundCalls
from omnicc.channels.voice.records import CallRecordWriter
from omnicc.channels.voice.recovery import end_lost_calls
from omnicc.channels.voice.sip.digest import Algorithm
from omnicc.channels.voice.sip.message import uri_user
from omnicc.channels.voice.sip.registrar import Binding, Registrar
from omnicc.channels.voice.sip.stack import IncomingRequest, SipStack
from omnicc.channels.voice.sip.transaction import Timers
from omnicc.channels.voice.trunk import Trunk, TrunkConfig, trunk_config
from omnicc.config import Settings
from omnicc.store.database import Database
from omnicc.store.repositories import (
    CallbackRequests,
    SipAccounts,
    Tenants,
    VoicePrompts,
    find_sip_account,
    sip_ha1,
)
from omnicc.store.tables import CallbackRequest, SipAccount

if TYPE_CHECKING:
    from omnicc.app.runtime import ContactCenter, TenantRuntime

log = logging.getLogger("omnicc.voice")


@dataclass(frozen=True, slots=True)
class VoiceSettings:
    host: str = "127.0.0.1"
    sip_port: int = 5060
    rtpengine: str = ""
    """host:port of an external rtpengine's ng control, or several comma-separated (a pool:
    each call goes to the healthy one with the fewest calls); empty: start our own."""
    media_ports: tuple[int, int] = (30000, 30999)
    timers: Timers | None = None
    trunk: TrunkConfig | None = None
    """The carrier for outbound calls and callbacks; None: no outbound calls."""
    announce_every_s: float = 30.0
    keepalive_s: float = 30.0
    """How often a connected agent's phone is probed (in-dialog OPTIONS)."""


def voice_settings(settings: Settings) -> VoiceSettings:
    """The voice part of the server's settings (`sip_port` set: voice is on)."""
    low, high = (int(part) for part in settings.media_ports.split("-"))
    return VoiceSettings(host=settings.sip_host, sip_port=settings.sip_port or 0,
                         rtpengine=settings.rtpengine, media_ports=(low, high),
                         trunk=trunk_config(settings))


class VoiceService:
    """SIP + media for the whole server; calls belong to tenants' runtimes."""

    def __init__(self, database: Database, center: ContactCenter, data_dir: Path,
                 settings: VoiceSettings) -> None:
        self.database = database
        self.center = center
        self.settings = settings
        self.host = settings.host
        self.announce_every_s = settings.announce_every_s
        self.keepalive_s = settings.keepalive_s
        self.data_dir = data_dir
        self.recording_dir = data_dir / "recordings"
        self.prompt_dir = data_dir / "prompts"
        self.stack = SipStack(settings.host, udp_port=settings.sip_port,
                              tcp_port=settings.sip_port, timers=settings.timers)
        self.dtmf = DtmfListener(settings.host)
        self.daemon: RtpengineDaemon | None = None
        self.engines = EnginePool(self._media_event)
        self.tts = TextToSpeech(self.prompt_dir / "speech")
        self.music = music_on_hold(self.prompt_dir)
        self.beep = beep(self.prompt_dir)
        self._registrars: dict[str, Registrar] = {}
        self.routes: Lookups[InboundRoute | None] = Lookups()
        """Dialled number -> its route (`lookups.py`: kept for a moment; never None)."""
        self.sip_accounts: Lookups[dict[str, SipAccount]] = Lookups(max_age_s=10.0)
        """Tenant -> its agents' SIP accounts by agent id."""
        self.browser_phones = BrowserPhones(center.bus)
        self.outbound = (OutboundCalls(self, Trunk(self.stack, settings.trunk))
                         if settings.trunk is not None else None)
        self._calls: dict[str, InboundCall] = {}
        self.records = CallRecordWriter(database)
        self._tasks: set[asyncio.Task[Any]] = set()
        self._since = time.time()

    @property
    def media_client(self) -> NgClient:
        """The rtpengine for a new call's media, which the call keeps for its whole life: the
        healthy engine with the fewest calls.  With none healthy, the first engine (its
        requests fail; INVITEs are refused before that, see `media_lost`)."""
        engine = self.engines.pick()
        return (engine or self.engines.engines[0]).client

    @property
    def media_lost(self) -> str | None:
        """Why no rtpengine can take a call; None while one is healthy."""
        if self.engines.healthy:
            return None
        return "; ".join(f"{engine.name}: {engine.detail}" for engine in self.engines.engines)

    @property
    def calls(self) -> Mapping[str, InboundCall]:
        return self._calls

    async def start(self) -> None:
        await self.dtmf.open()
        if self.settings.rtpengine:
            for address in engine_addresses(self.settings.rtpengine):
                self.engines.add_external(address)
        else:
            # Its working directory is where a core dump of it would land.
            self.daemon = RtpengineDaemon(
                interface=self.host, port_range=self.settings.media_ports,
                recording_dir=self.recording_dir / "raw", dtmf_log_dest=self.dtmf.address,
                work_dir=self.data_dir / "rtpengine")
            self.engines.add_daemon(self.daemon)
        await self.engines.start()
        await self._end_lost_calls()
        self.stack.set_handler(self._on_request)
        await self.stack.start()
        if self.outbound is not None:
            self.outbound.start()
        log.info("voice: SIP on %s and %s, media by %s", self.stack.udp, self.stack.tcp,
                 self.settings.rtpengine or "an embedded rtpengine")

    async def _end_lost_calls(self) -> None:
        """The calls of the previous process died with it (`recovery`): end their tasks and
        records before this one answers any."""
        try:
            lost = await end_lost_calls(self.database, self.center, self._since)
        except Exception:
            log.exception("voice: ending the calls lost in a restart failed")
            return
        if lost.cancelled or lost.completed or lost.records:
            log.info("voice: calls lost in a restart: %d in line cancelled, %d talking "
                     "completed, %d call records closed", lost.cancelled, lost.completed,
                     lost.records)

    async def stop(self) -> None:
        for call in list(self._calls.values()):
            call.ended.set()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        # A call cancelled before its teardown deleted its media is still listed: delete it,
        # or an rtpengine call left recording never completes its pcap (and rtpengine 10.5.3
        # crashes when it is stopped with one, see media/daemon.py).
        await asyncio.gather(*(call.media.delete() for call in self._calls.values()),
                             return_exceptions=True)
        for registrar in self._registrars.values():
            registrar.close()
        if self.outbound is not None:
            await self.outbound.stop()
        await self.stack.stop()
        await self.engines.stop()
        await self.dtmf.close()

    def _media_event(self, engine: Engine, event: EngineEvent) -> None:
        """An rtpengine went away or came back: the media of its calls is gone, so end them;
        new calls go to the other engines meanwhile (503 when there is none)."""
        log.error("voice: media engine %s %s: %s (%d of %d engines healthy)", engine.name,
                  event.kind, event.detail, len(self.engines.healthy),
                  len(self.engines.engines))
        for call in list(self._calls.values()):
            if call.media.client is engine.client:
                call.figures.outcome = "media_lost"
                call.ended.set()
        for outbound in self.outbound.calls if self.outbound is not None else []:
            if outbound.media.client is engine.client:
                outbound.media_lost(event.detail)

    # --- requests -----------------------------------------------------------------------------

    async def _on_request(self, incoming: IncomingRequest) -> None:
        method = incoming.method
        if method == "REGISTER":
            registrar = await self._registrar_for(incoming)
            if registrar is None:
                await incoming.respond(404, "Domain Not Served")
                return
            await registrar.handle(incoming)
        elif method == "INVITE":
            await self._invite(incoming)

    async def _invite(self, incoming: IncomingRequest) -> None:
        call_id = incoming.message.call_id
        if call_id in self._calls:
            await incoming.respond(482, "Loop Detected")
            return
        dialled = uri_user(incoming.message.uri) or ""
        if self.outbound is not None and dialled == self.outbound.trunk.config.username:
            # A carrier we register to sends calls to our Contact (its account's user): the
            # number the customer dialled is in To.
            dialled = uri_user(incoming.message.to.uri) or ""
        route = await self._route(dialled)
        if route is None:
            await incoming.respond(404, "Not Found")
            return
        if route.flow is None:
            await incoming.respond(480, "Temporarily Unavailable")
            return
        if self.media_lost is not None:
            await incoming.respond(503, "Media Unavailable", headers={"Retry-After": "30"})
            return
        runtime = await self.center.tenant(route.tenant_id)
        if self.routes.get(dialled) is None:
            self.routes.put(dialled, route, runtime.routing.engine)
        call = InboundCall(self, runtime, incoming, route)
        self._calls[call_id] = call
        task = asyncio.create_task(call.run(), name=f"call-{call_id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _route(self, dialled: str) -> InboundRoute | None:
        """The number's route: kept from an earlier call while its tenant's routing engine
        is the same one (a routing change reloads it) and no admin change was made."""
        kept = self.routes.get(dialled)
        route = kept[0] if kept is not None else None
        if kept is not None and route is not None:
            engine = kept[1]
            runtime = await self.center.tenant(route.tenant_id)
            if runtime.routing.engine is engine:
                return route
            self.routes.discard(dialled)

        async def read() -> InboundRoute | None:
            async with self.database.session() as session:
                return await inbound_route(session, dialled)

        return await self.routes.read_once(dialled, read)

    def forget_configuration(self) -> None:
        """An administrative change was committed: numbers, flows, business hours and SIP
        accounts are read again."""
        self.routes.forget()
        self.sip_accounts.forget()

    def forget(self, call: InboundCall) -> None:
        if self._calls.get(call.call_id) is call:
            del self._calls[call.call_id]

    # --- registrars and phones ------------------------------------------------------------------

    async def _registrar_for(self, incoming: IncomingRequest) -> Registrar | None:
        domain = _host_part(incoming.message.to.uri)
        async with self.database.session() as session:
            tenants = await Tenants(session).list_all()
        label = domain.split(".", 1)[0].lower()
        chosen = next((t for t in tenants if t.slug == label), None)
        if chosen is None and len(tenants) == 1:
            chosen = tenants[0]
        if chosen is None:
            return None
        return self.registrar(chosen.slug)

    def registrar(self, realm: str) -> Registrar:
        """The tenant's registrar (realm = tenant slug), made on first use."""
        registrar = self._registrars.get(realm)
        if registrar is None:
            async def credentials(username: str) -> Mapping[Algorithm, str] | None:
                async with self.database.session() as session:
                    account = await find_sip_account(session, realm, username)
                if account is None:
                    return None
                return {algorithm: sip_ha1(account, algorithm)
                        for algorithm in (Algorithm.MD5, Algorithm.SHA256)}

            # MD5 alone: phones built on libre (baresip) fail when a SHA-256 challenge is
            # offered beside it, and every desk phone speaks MD5.
            registrar = Registrar(realm, credentials, algorithms=(Algorithm.MD5,))
            self._registrars[realm] = registrar
        return registrar

    async def agent_device(self, runtime: TenantRuntime, agent_id: str) -> Device | None:
        """Where the agent answers: the desk's softphone when it is on, else their registered
        SIP phone (its latest binding); None when the agent has neither."""
        browser = self.browser_phones.phone(runtime.tenant_id, agent_id)
        if browser is not None:
            return browser
        account = await self._sip_account(runtime, agent_id)
        if account is None or not account.is_enabled:
            return None
        bindings: list[Binding] = self.registrar(account.realm).bindings(account.username)
        if not bindings:
            return None
        latest = bindings[-1]
        return SipPhone(self.stack, latest.contact, latest.peer,
                        f"sip:{account.username}@{account.realm}")

    async def _sip_account(self, runtime: TenantRuntime, agent_id: str) -> SipAccount | None:
        tenant_id = runtime.tenant_id
        engine = runtime.routing.engine
        kept = self.sip_accounts.get(tenant_id)
        if kept is not None and kept[1] is engine:
            return kept[0].get(agent_id)

        async def read() -> dict[str, SipAccount]:
            async with self.database.session() as session:
                accounts = await SipAccounts(session, tenant_id).list_all()
            return {account.agent_id: account for account in accounts}

        accounts = await self.sip_accounts.read_once(tenant_id, read)
        self.sip_accounts.put(tenant_id, accounts, engine)
        return accounts.get(agent_id)

    def live_calls(self, tenant_id: str) -> list[LiveCall[Any]]:
        """The tenant's calls in progress, inbound and outbound (agents' and callbacks')."""
        calls: list[LiveCall[Any]] = [*self._calls.values()]
        if self.outbound is not None:
            calls += self.outbound.calls
        return [call for call in calls if call.runtime.tenant_id == tenant_id]

    def call_of_task(self, tenant_id: str, task_id: str) -> LiveCall[Any] | None:
        """The live call behind a routing task (the desk's in-call controls and supervision
        use it), inbound or outbound."""
        for call in self.live_calls(tenant_id):
            if call.contact is not None and call.contact.task_id == task_id:
                return call
        return None

    # --- prompts and callbacks ------------------------------------------------------------------

    async def prompt_file(self, runtime: TenantRuntime, prompt: Prompt, language: str) -> Path:
        """The WAV to play for a prompt: spoken text (cached), or an uploaded prompt."""
        if prompt.file_id is not None:
            async with self.database.session() as session:
                row, audio = await VoicePrompts(session, runtime.tenant_id).audio(prompt.file_id)
            target = self.prompt_dir / "uploaded" / f"{row.sha256}.wav"
            if not target.exists():
                target.parent.mkdir(parents=True, exist_ok=True)
                partial = target.with_suffix(".partial")
                partial.write_bytes(audio)
                partial.replace(target)
            return target
        assert prompt.text is not None
        return await self.tts.speak(prompt.text, voice=prompt.voice or prompt.language or language)

    async def keep_recording(self, tenant_id: str, record_id: str,
                             recording: RecordingHandle) -> str | None:
        """Turn rtpengine's capture of a finished call into its WAV (left: the caller, right:
        the other side); returns its path under the recordings directory, None if empty."""
        pcaps = find_recording(self.recording_dir / "raw", recording.call_id)
        if not pcaps:
            return None
        month = recording.started_at.strftime("%Y-%m")
        relative = Path(tenant_id) / month / f"{record_id}.wav"
        # The ports facing the mixer (a supervised stretch) would add the mix a second time.
        await asyncio.to_thread(partial(recording_to_wav, ignore_ports=recording.mixer_ports),
                                pcaps, recording.caller_port, self.recording_dir / relative)
        remove_recording(self.recording_dir / "raw", recording.call_id)
        return relative.as_posix()

    async def request_callback(self, runtime: TenantRuntime, *, number: str, queue_id: str,
                               due_at: datetime | None, record_id: str, source: str,
                               attributes: dict[str, Any]) -> CallbackRequest:
        """Keep a caller's callback request (the IVR's `callback` node, a voicemail)."""
        customer = await runtime.voice.identify_caller(number)
        async with self.database.session() as session:
            request = await CallbackRequests(session, runtime.tenant_id).add(CallbackRequest(
                number=number, queue_id=queue_id, customer_id=customer.id,
                call_record_id=record_id, source=source, due_at=due_at,
                attributes=attributes))
        if self.outbound is not None:
            # Due now: in line at once (a caller leaving the queue keeps their place).
            await self.outbound.callbacks.submit(runtime, request)
        return request




def _host_part(uri: str) -> str:
    rest = uri.split(":", 1)[1] if ":" in uri else uri
    host = rest.split("@", 1)[1] if "@" in rest else rest
    return host.split(";", 1)[0].split(":", 1)[0].strip("[]")
