// The desk's browser softphone: the agent answers calls here and controls them.
//
// Signalling rides on the desk's WebSocket (see omnicc.channels.voice.devices): the desk says
// `phone.online` when the Phone switch is on and the microphone is ours; OmniCC rings with
// `call.ringing` {ring_id, sdp, caller, caller_name, task_id, outbound} carrying rtpengine's
// WebRTC offer (`outbound`: an agent-first call, answering dials the customer); answering
// sets that offer, adds the microphone, waits for ICE gathering to finish (no trickle) and
// sends `call.answer` {ring_id, sdp}. `call.cancelled` / `call.ended` close the card.
// Hold, resume, transfer and consult go through the REST API (/api/desk/calls/{task}/...;
// a consult's progress arrives as `call.consult` frames);
// hanging up is `call.hangup`. No STUN or TURN: the media engine is on the agent's network.
// A call the agent answered on their SIP desk phone gets the same card (without Mute and
// Keypad, whose audio is on that phone), found with GET /api/desk/calls when the desk's state
// shows a voice task, and controlled (hang-up too) through the REST API.

import { api, toast } from "/static/session.js";
import { duration, el } from "/static/desk-view.js";

const STORAGE_KEY = "omnicc.phone";
const ICE_GATHERING_MAX_MS = 5000;

export function mountSoftphone({ send, queueName, targets }) {
  const toggle = document.getElementById("phone-switch");
  const box = document.getElementById("softphone");
  toggle.hidden = false;
  const remote = el("audio", { attrs: { autoplay: "", "data-testid": "remote-audio" } });
  const status = el("p", { className: "visually-hidden", attrs: { role: "status", "aria-live": "polite" } });
  box.after(remote, status);

  const phone = {
    wanted: localStorage.getItem(STORAGE_KEY) === "on",
    online: false,
    mic: null,
    call: null,        // the ring's frame + state (ringing/connecting/talking), pc, held, muted…
    ringer: null,
    audio: null,
    skew: 0,           // server clock minus ours, seconds
    fetching: false,
  };

  // --- the switch ------------------------------------------------------------------------------

  function drawSwitch() {
    toggle.setAttribute("aria-checked", String(phone.online));
    toggle.dataset.state = phone.online ? "on" : phone.wanted ? "starting" : "off";
    toggle.querySelector(".phone-switch-state").textContent = phone.online ? "On" : "Off";
  }

  async function switchOn({ byUser }) {
    phone.wanted = true;
    localStorage.setItem(STORAGE_KEY, "on");
    unlockAudio();
    if (!navigator.mediaDevices) {
      // Browsers give the microphone to secure pages only (https, or localhost).
      phone.wanted = false;
      drawSwitch();
      if (byUser) toast("The phone needs this page over https to use the microphone.", "error");
      return;
    }
    if (!phone.mic) {
      try {
        phone.mic = await navigator.mediaDevices.getUserMedia({ audio: true, video: false });
      } catch (error) {
        phone.wanted = false;
        localStorage.setItem(STORAGE_KEY, "off");
        drawSwitch();
        if (byUser) toast(`The phone needs your microphone: ${error.message || error.name}`, "error");
        return;
      }
    }
    drawSwitch();
    send({ type: "phone.online" });
  }

  function switchOff() {
    phone.wanted = false;
    localStorage.setItem(STORAGE_KEY, "off");
    if (phone.call && !phone.call.onDevice) hangUp();
    send({ type: "phone.offline" });
    phone.mic?.getTracks().forEach((track) => track.stop());
    phone.mic = null;
    phone.online = false;
    drawSwitch();
    say("Phone off.");
  }

  toggle.addEventListener("click", () => {
    if (phone.wanted || phone.online) switchOff();
    else switchOn({ byUser: true });
  });

  // --- sound -----------------------------------------------------------------------------------

  // Browsers allow sound after a user gesture: the switch's click, or any click or key later.
  function unlockAudio() {
    const Context = window.AudioContext || window.webkitAudioContext;
    if (!Context) return;
    if (!phone.audio) phone.audio = new Context();
    if (phone.audio.state === "suspended") phone.audio.resume();
  }
  document.addEventListener("pointerdown", () => phone.audio && unlockAudio());
  document.addEventListener("keydown", () => phone.audio && unlockAudio());

  // A two-tone ring (two short bursts, then a pause), made with WebAudio: no file to fetch.
  function startRinging() {
    stopRinging();
    const ring = () => {
      const audio = phone.audio;
      if (!audio || audio.state !== "running") return;
      const start = audio.currentTime;
      for (const offset of [0, 0.5]) {
        const gain = audio.createGain();
        gain.gain.setValueAtTime(0.0001, start + offset);
        gain.gain.exponentialRampToValueAtTime(0.18, start + offset + 0.03);
        gain.gain.setValueAtTime(0.18, start + offset + 0.35);
        gain.gain.exponentialRampToValueAtTime(0.0001, start + offset + 0.4);
        gain.connect(audio.destination);
        for (const frequency of [440, 480]) {
          const tone = audio.createOscillator();
          tone.frequency.value = frequency;
          tone.connect(gain);
          tone.start(start + offset);
          tone.stop(start + offset + 0.42);
        }
      }
    };
    ring();
    phone.ringer = setInterval(ring, 3000);
  }

  function stopRinging() {
    clearInterval(phone.ringer);
    phone.ringer = null;
  }

  function say(text) {
    status.textContent = text;
  }

  // --- the call card ---------------------------------------------------------------------------

  function who(call) {
    return call.caller_name || call.caller || "Unknown caller";
  }

  function button(action, text, className, onClick, attrs = {}) {
    const node = el("button", { className: `button ${className}`, text,
                                attrs: { type: "button", "data-action": action, ...attrs } });
    node.addEventListener("click", onClick);
    return node;
  }

  // Redraws keep the keyboard focus on the same control.
  function draw() {
    const focused = box.contains(document.activeElement) ? document.activeElement.dataset.action : null;
    const call = phone.call;
    box.hidden = !call;
    if (!call) {
      box.replaceChildren();
      return;
    }
    const ringing = call.state === "ringing";
    const consultLabels = { ringing: "Consulting", consulting: "Consulting", conference: "Conference" };
    const labels = { ringing: call.outbound ? "Your call" : "Incoming call", connecting: "Connecting…",
                     talking: call.consult ? consultLabels[call.consult.state]
                       : call.held ? "On hold" : "On call" };
    const head = el("div", { className: "softphone-head" },
      el("span", { className: `badge ${call.held ? "wrap_up" : ringing ? "ringing" : "available"}`,
                   text: labels[call.state], attrs: { "data-testid": "call-state" } }),
      el("span", { className: "timer softphone-timer", attrs: { role: "timer", "aria-label": "Call time" } }));
    const caller = el("div", { className: "softphone-caller" },
      el("strong", { className: "softphone-name", text: who(call), attrs: { id: "softphone-caller" } }),
      call.caller_name && call.caller ? el("span", { className: "small muted", text: call.caller }) : null,
      el("span", { className: "small muted softphone-queue", text: "" }),
      call.onDevice ? el("span", { className: "small muted", text: "On your desk phone" }) : null);
    let actions;
    if (ringing) {
      actions = el("div", { className: "softphone-actions" },
        button("answer", "Answer", "success", answer, { "aria-describedby": "softphone-caller" }),
        button("decline", "Decline", "", decline, { "aria-describedby": "softphone-caller" }));
    } else {
      const talking = call.state === "talking";
      // Hold and transfers wait while consulting (inbound and outbound calls alike).
      const holdable = talking && !call.consult;
      const here = !call.onDevice;  // mute and keys need the call's audio in this browser
      actions = el("div", { className: "softphone-actions" },
        here ? button("mute", call.muted ? "Unmute" : "Mute", "", toggleMute,
                      { "aria-pressed": String(call.muted), disabled: !talking || null }) : null,
        button("hold", call.held ? "Resume" : "Hold", "", toggleHold,
               { "aria-pressed": String(call.held), disabled: !holdable || null }),
        here ? button("keypad", "Keypad", "", toggleKeypad,
                      { "aria-expanded": String(call.keypad), "aria-controls": "softphone-keypad",
                        disabled: !talking || null }) : null,
        button("transfer", "Transfer", "", openTransfer,
               { "aria-expanded": String(call.transferring), "aria-controls": "softphone-transfer",
                 disabled: !holdable || null }),
        button("consult", "Consult", "", openConsult,
               { "aria-expanded": String(Boolean(call.consultOpen)), "aria-controls": "softphone-consult",
                 disabled: !holdable || null }),
        button("hang-up", "Hang up", "danger", hangUp, {}));
    }
    const parts = [head, caller];
    if (call.consult) parts.push(consultPanel());
    parts.push(actions);
    if (call.keypad) parts.push(keypad());
    if (call.transferring) parts.push(transferForm());
    if (call.consultOpen) parts.push(consultForm());
    box.replaceChildren(...parts);
    if (focused) focusIn(`[data-action="${focused}"]`);
    tick();
  }

  function transferForm() {
    const { queues, agents } = targets();
    const select = el("select", { attrs: { id: "softphone-transfer-target" } },
      el("optgroup", { attrs: { label: "Queues" } },
         ...queues.map(([id, name]) => el("option", { text: name, attrs: { value: `queue:${id}` } }))),
      agents.length ? el("optgroup", { attrs: { label: "Agents" } },
         ...agents.map((a) => el("option", { text: a.label, attrs: { value: `agent:${a.id}` } }))) : null);
    const form = el("form", { className: "softphone-transfer", attrs: { id: "softphone-transfer" } },
      el("label", { text: "Transfer to", attrs: { for: "softphone-transfer-target" } }),
      select,
      el("div", { className: "softphone-actions" },
         el("button", { className: "button primary", text: "Transfer call", attrs: { type: "submit" } }),
         button("cancel-transfer", "Cancel", "", closeTransfer)));
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      transfer(select.value);
    });
    form.addEventListener("keydown", (event) => {
      if (event.key === "Escape") closeTransfer();
    });
    return form;
  }

  // --- consult (attended transfer): the form, then the live consult's controls ----------------

  function consultForm() {
    const call = phone.call;
    const { agents, queues } = targets();
    const kind = call.consultKind;
    const choice = (value, text) => {
      const input = el("input", { attrs: { type: "radio", name: "softphone-consult-kind", value,
                                           id: `softphone-consult-${value}-kind`,
                                           "data-action": `consult-kind-${value}` } });
      input.checked = kind === value;
      input.addEventListener("change", () => {
        call.consultKind = value;
        draw();
        focusIn(`#softphone-consult-${value}-kind`);
      });
      return el("label", { className: "softphone-choice", attrs: { for: input.id } }, input, text);
    };
    const field = kind === "agent"
      ? el("select", { attrs: { id: "softphone-consult-target", required: "" } },
          ...agents.map((a) => el("option", { text: a.label, attrs: { value: a.id } })))
      : kind === "queue"
      ? el("select", { attrs: { id: "softphone-consult-target", required: "",
                                "aria-describedby": "softphone-consult-hint" } },
          ...queues.map(([id, name]) => el("option", { text: name, attrs: { value: id } })))
      : el("input", { attrs: { id: "softphone-consult-target", type: "tel", required: "",
                               autocomplete: "off", inputmode: "tel", placeholder: "+358 40 123 4567",
                               "aria-describedby": "softphone-consult-hint" } });
    const form = el("form", { className: "softphone-transfer softphone-consult",
                              attrs: { id: "softphone-consult", "aria-label": "Consult" } },
      el("fieldset", { className: "softphone-kinds" },
         el("legend", { text: "Consult" }),
         choice("agent", "An agent"),
         choice("queue", "A queue"),
         choice("number", "A number")),
      el("label", { text: { agent: "Agent", queue: "Queue", number: "Number" }[kind],
                    attrs: { for: "softphone-consult-target" } }),
      field,
      el("p", { className: "small muted", attrs: { id: "softphone-consult-hint" },
                text: kind === "queue" ? "Rings the queue's agent who is free now and idle longest."
                  : "The caller hears music while you talk." }),
      el("div", { className: "softphone-actions" },
         el("button", { className: "button primary", text: "Call", attrs: { type: "submit" } }),
         button("cancel-consult-form", "Cancel", "", closeConsult)));
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      const value = field.value.trim();
      if (value) startConsult({ [{ agent: "agent_id", queue: "queue_id", number: "number" }[kind]]: value });
    });
    form.addEventListener("keydown", (event) => {
      if (event.key === "Escape") closeConsult();
    });
    return form;
  }

  function openConsult() {
    const call = phone.call;
    if (!call || call.consult) return;
    call.transferring = false;
    call.consultOpen = true;
    call.consultKind ||= targets().agents.length ? "agent" : "number";
    draw();
    focusIn("#softphone-consult-target");
  }

  function closeConsult() {
    phone.call.consultOpen = false;
    draw();
    focusIn('[data-action="consult"]');
  }

  const CONSULT_LINES = {
    ringing: (name) => `Calling ${name}…`,
    consulting: (name) => `Talking with ${name}. The caller is on hold.`,
    conference: (name) => `Conference: you, ${name} and the caller.`,
  };

  function consultPanel() {
    const consult = phone.call.consult;
    const name = consult.target.name;
    const answered = consult.state !== "ringing";
    return el("div", { className: "softphone-consult-live",
                       attrs: { role: "group", "aria-label": "Consult", "data-testid": "consult" } },
      el("p", { className: "softphone-consult-line", text: CONSULT_LINES[consult.state](name),
                attrs: { "data-testid": "consult-status" } }),
      el("div", { className: "softphone-actions" },
         button("consult-complete", "Complete transfer", "primary", completeConsult,
                { disabled: !answered || null }),
         consult.state === "conference" ? null
           : button("consult-conference", "Conference", "", conferenceConsult,
                    { disabled: !answered || null }),
         button("consult-cancel", consult.state === "conference" ? `Drop ${name}` : "Cancel consult",
                "", cancelConsult)));
  }

  async function startConsult(target) {
    const call = phone.call;
    call.consultFrame = null;
    const view = await control("consult", target);
    if (view && phone.call === call) {
      call.consultOpen = false;
      // The socket's frames may be ahead of this answer (the target answered at once).
      if (call.consultFrame) showConsult(call.consult, call.consultFrame.on_hold);
      else showConsult(view.consult, view.on_hold);
      focusIn('[data-action="consult-cancel"]');
    }
  }

  async function completeConsult() {
    const call = phone.call;
    const done = await control("consult/complete", {});
    if (done !== undefined && phone.call === call) finishTransferred(call);
  }

  async function conferenceConsult() {
    const call = phone.call;
    const view = await control("consult/conference", {});
    if (view && phone.call === call) {
      showConsult(view.consult, view.on_hold);
      focusIn('[data-action="consult-complete"]');
    }
  }

  async function cancelConsult() {
    const call = phone.call;
    const view = await control("consult", undefined, "DELETE");
    if (view && phone.call === call) {
      showConsult(null, view.on_hold);
      focusIn('[data-action="consult"]');
      say(`Back with ${who(call)}.`);
    }
  }

  function showConsult(consult, onHold) {
    const call = phone.call;
    const before = call.consult;
    call.consult = consult;
    if (onHold !== undefined) call.held = onHold;
    draw();
    if (consult && consult.state !== before?.state) say(CONSULT_LINES[consult.state](consult.target.name));
  }

  // Whether the call's consulted party is on the line (or has just taken the call).
  function handingOver(call) {
    return ["consulting", "conference", "completed"].includes(call.consultFrame?.state);
  }

  function finishTransferred(call) {
    if (phone.call !== call) return;
    const name = call.consult?.target.name || "";
    toast(name ? `Call transferred to ${name}.` : "Call transferred.");
    finish("Call transferred.");
  }

  // `call.consult` frames: the consult's progress, also what the agent did not do (no answer,
  // the consulted party hung up): the agent is back with the caller and told why.
  function onConsult(frame) {
    const call = phone.call;
    if (!call || call.task_id !== frame.task_id) return;
    call.consultFrame = frame;
    if (frame.state === "completed") {
      finishTransferred(call);
    } else if (frame.state === "ended") {
      const reason = frame.reason && frame.reason !== "cancelled" ? frame.reason : "";
      showConsult(null, frame.on_hold);
      if (reason) toast(`Consult ended: ${reason}. You are back with the caller.`);
      say(reason ? `Consult ended: ${reason}.` : `Back with ${who(call)}.`);
    } else {
      showConsult(frame, frame.on_hold);
    }
  }

  function closeTransfer() {
    phone.call.transferring = false;
    draw();
    focusIn('[data-action="transfer"]');
  }

  // --- the keypad: DTMF as RFC 4733 events on the call's audio ---------------------------------

  const KEYS = [["1", "1"], ["2", "2"], ["3", "3"], ["4", "4"], ["5", "5"], ["6", "6"],
                ["7", "7"], ["8", "8"], ["9", "9"], ["*", "Star"], ["0", "0"], ["#", "Pound"]];

  function keypad() {
    const sent = el("output", { className: "softphone-digits", text: phone.call.digits,
                                attrs: { "aria-live": "polite", "aria-label": "Keys sent" } });
    const grid = el("div", { className: "softphone-keys", attrs: { role: "group", "aria-label": "Keypad",
                                                                  id: "softphone-keypad" } },
      ...KEYS.map(([key, name]) => button(`key-${key}`, key, "key", () => sendKey(key),
                                          { "aria-label": name })));
    grid.addEventListener("keydown", (event) => {
      if (/^[0-9*#]$/.test(event.key)) {
        sendKey(event.key);
        event.preventDefault();
      } else if (event.key === "Escape") {
        toggleKeypad();
      }
    });
    return el("div", { className: "softphone-keypad" }, sent, grid);
  }

  function toggleKeypad() {
    const call = phone.call;
    if (!call || call.state !== "talking") return;
    call.keypad = !call.keypad;
    draw();
    focusIn(call.keypad ? '[data-action="key-1"]' : '[data-action="keypad"]');
  }

  function sendKey(key) {
    const call = phone.call;
    const sender = call?.pc?.getSenders().find((s) => s.track?.kind === "audio");
    if (!sender?.dtmf?.canInsertDTMF) {
      toast("This call cannot send keys.", "error");
      return;
    }
    // Appended to the keys still queued: insertDTMF replaces the buffer, so quick typing
    // would otherwise lose every key but the last.
    sender.dtmf.insertDTMF(sender.dtmf.toneBuffer + key, 120, 70);
    call.digits += key;
    box.querySelector(".softphone-digits").textContent = call.digits;
  }

  function tick() {
    const call = phone.call;
    if (!call) return;
    const timer = box.querySelector(".softphone-timer");
    if (timer) timer.textContent = call.since ? duration((Date.now() - call.since) / 1000) : "";
    const queue = box.querySelector(".softphone-queue");
    const name = queueName(call.task_id);
    if (queue && name) queue.textContent = `Queue: ${name}`;
  }
  setInterval(tick, 1000);

  function focusIn(selector) {
    box.querySelector(selector)?.focus();
  }

  // --- ringing and answering -------------------------------------------------------------------

  function onRinging(frame) {
    if (phone.call || !phone.online) {
      send({ type: "call.decline", ring_id: frame.ring_id });
      return;
    }
    phone.call = { ...frame, state: "ringing", since: null, held: false, muted: false, pc: null,
                   busy: false, transferring: false, keypad: false, digits: "" };
    draw();
    startRinging();
    focusIn('[data-action="answer"]');
    // An agent-first call (click-to-call, callback): answering dials the customer.
    say(frame.outbound ? `${who(phone.call)}: answer to dial.` : `Incoming call from ${who(phone.call)}.`);
  }

  async function answer() {
    const call = phone.call;
    if (!call || call.state !== "ringing") return;
    stopRinging();
    unlockAudio();
    call.state = "connecting";
    draw();
    say("Connecting…");
    try {
      const pc = new RTCPeerConnection({ iceServers: [], rtcpMuxPolicy: "require" });
      call.pc = pc;
      pc.addEventListener("track", (event) => {
        remote.srcObject = event.streams[0] || new MediaStream([event.track]);
        remote.play().catch(() => {});
      });
      pc.addEventListener("connectionstatechange", () => {
        if (pc.connectionState === "failed" && phone.call?.pc === pc) {
          toast("The call's audio could not connect.", "error");
          hangUp();
        }
      });
      await pc.setRemoteDescription({ type: "offer", sdp: call.sdp });
      for (const track of phone.mic.getAudioTracks()) pc.addTrack(track, phone.mic);
      await pc.setLocalDescription(await pc.createAnswer());
      await gathered(pc);
      if (phone.call !== call) return;  // cancelled meanwhile
      send({ type: "call.answer", ring_id: call.ring_id, sdp: pc.localDescription.sdp });
      call.state = "talking";
      call.since = Date.now();
      draw();
      focusIn('[data-action="hang-up"]');
      say(call.outbound ? `Dialling ${call.caller}…` : `On call with ${who(call)}.`);
    } catch (error) {
      toast(`The call could not be answered: ${error.message || error}`, "error");
      send({ type: "call.decline", ring_id: call.ring_id });
      finish("");
    }
  }

  // Non-trickle: the answer goes out with every candidate in it.
  function gathered(pc) {
    if (pc.iceGatheringState === "complete") return Promise.resolve();
    return new Promise((resolve) => {
      const done = () => {
        if (pc.iceGatheringState !== "complete") return;
        pc.removeEventListener("icegatheringstatechange", done);
        resolve();
      };
      pc.addEventListener("icegatheringstatechange", done);
      setTimeout(resolve, ICE_GATHERING_MAX_MS);
    });
  }

  function decline() {
    const call = phone.call;
    if (!call) return;
    send({ type: "call.decline", ring_id: call.ring_id });
    finish("Call declined.");
  }

  async function hangUp() {
    const call = phone.call;
    if (!call) return;
    // With the consulted party on the line, hanging up hands them the caller (as on a PBX).
    const handsOver = handingOver(call);
    if (call.onDevice) {
      if (await control("hangup", undefined) === undefined) return;
    } else {
      send({ type: "call.hangup", ring_id: call.ring_id });
    }
    if (handsOver) finishTransferred(call);
    else finish("Call ended.");
  }

  // --- calls on the agent's SIP phone: the same card, controlled through the REST API -----------

  // Each new desk state: a call answered on another device shows here; one that ended goes.
  async function onState(state) {
    phone.skew = state.now - Date.now() / 1000;
    const talking = state.tasks.some((t) => t.channel === "voice" && t.phase === "assigned");
    if (phone.call?.onDevice && !state.tasks.some((t) => t.task_id === phone.call.task_id &&
                                                        t.phase === "assigned")) {
      // The task leaves an agent whose consulted party is on the line by the hand-over.
      if (handingOver(phone.call)) finishTransferred(phone.call);
      else finish("Call ended.");
    }
    if (phone.call || !talking || phone.fetching) return;
    phone.fetching = true;
    let calls = [];
    try {
      calls = await api("/api/desk/calls");
    } catch {
      calls = [];  // no voice on this server
    } finally {
      phone.fetching = false;
    }
    const [call] = calls;
    if (!call || phone.call) return;
    phone.call = { ring_id: null, task_id: call.task_id, caller: call.caller,
                   caller_name: call.caller_name, state: "talking", onDevice: true,
                   since: call.since ? (call.since - phone.skew) * 1000 : Date.now(),
                   held: call.on_hold, muted: false, pc: null, busy: false,
                   transferring: false, keypad: false, digits: "" };
    draw();
    say(`On call with ${who(phone.call)} on your desk phone.`);
  }

  // The call is over (either side): release the media and close the card.
  function finish(message) {
    const call = phone.call;
    stopRinging();
    if (!call) return;
    call.pc?.close();
    remote.srcObject = null;
    phone.mic?.getAudioTracks().forEach((track) => { track.enabled = true; });
    phone.call = null;
    draw();
    if (message) say(message);
  }

  // --- in-call controls ------------------------------------------------------------------------

  function toggleMute() {
    const call = phone.call;
    if (!call || call.state !== "talking") return;
    call.muted = !call.muted;
    phone.mic?.getAudioTracks().forEach((track) => { track.enabled = !call.muted; });
    draw();
    say(call.muted ? "Microphone muted." : "Microphone on.");
  }

  async function control(action, body, method = "POST") {
    const call = phone.call;
    if (call.busy) return undefined;
    call.busy = true;
    box.setAttribute("aria-busy", "true");
    try {
      return await api(`/api/desk/calls/${encodeURIComponent(call.task_id)}/${action}`,
                       { method, body });
    } catch (error) {
      toast(error.message || String(error), "error");
      return undefined;
    } finally {
      call.busy = false;
      box.removeAttribute("aria-busy");
    }
  }

  async function toggleHold() {
    const call = phone.call;
    if (!call || call.state !== "talking") return;
    const view = await control(call.held ? "resume" : "hold", {});
    if (view && phone.call === call) {
      call.held = view.on_hold;
      draw();
      say(call.held ? "The caller is on hold." : "The caller is back.");
    }
  }

  function openTransfer() {
    if (!phone.call) return;
    phone.call.consultOpen = false;
    phone.call.transferring = true;
    draw();
    focusIn("#softphone-transfer-target");
  }

  async function transfer(target) {
    const [kind, id] = target.split(/:(.*)/s);
    if (!id) return;
    const done = await control("transfer", kind === "queue" ? { queue_id: id } : { agent_id: id });
    if (done !== undefined && phone.call) {
      toast("Call transferred.");
      finish("Call transferred.");
    }
  }

  // --- the socket ------------------------------------------------------------------------------

  function onFrame(frame) {
    switch (frame.type) {
      case "phone.status":
        phone.online = frame.online;
        if (!frame.online && phone.wanted && frame.detail) {
          phone.wanted = false;
          toggle.disabled = true;
          toggle.title = frame.detail;
          phone.mic?.getTracks().forEach((track) => track.stop());
          phone.mic = null;
        }
        drawSwitch();
        if (frame.online) say("Phone on: calls ring here.");
        return true;
      case "call.ringing":
        onRinging(frame);
        return true;
      case "call.cancelled":
        if (phone.call?.ring_id === frame.ring_id) {
          // The caller left, or the offer ran out.
          if (phone.call.state === "ringing") toast(`Missed call from ${who(phone.call)}.`);
          finish("The call stopped ringing.");
        }
        return true;
      case "call.answered":
        // Another desk of this agent answered it.
        if (phone.call?.ring_id === frame.ring_id && phone.call.state === "ringing") {
          finish("Answered on another desk.");
        }
        return true;
      case "call.consult":
        onConsult(frame);
        return true;
      case "call.ended":
        if (phone.call?.ring_id === frame.ring_id) {
          if (handingOver(phone.call)) {
            finishTransferred(phone.call);
          } else {
            toast("The call has ended.");
            finish("Call ended.");
          }
        }
        return true;
      default:
        return false;
    }
  }

  // After every (re)connection: a closed socket switched the phone off on the server (and
  // ended its calls), so say online again.
  function onOpen() {
    if (phone.call && !phone.call.onDevice) finish("The call ended: the connection dropped.");
    phone.online = false;
    if (phone.wanted) switchOn({ byUser: false });
    drawSwitch();
  }

  drawSwitch();
  return { onFrame, onOpen, onState };
}
