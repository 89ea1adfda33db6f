// Click-to-call: the desk's Dial form, the Call buttons next to a customer's numbers, and the
// card of the outbound call while it runs.
//
// A call is agent-first (omnicc.channels.voice.outbound): POST /api/desk/calls/outbound
// {number, queue_id} answers 202 at once, the agent's registered SIP phone rings, and once it
// is answered the customer is dialled through the carrier trunk with the queue's caller ID.
// The progress comes on the desk socket as `call.outbound` notices {record_id, state, number,
// outcome, sip_status, reason}; state is dialling (the customer's phone rings), early_media,
// answered, failed (busy, no answer, …) or ended. Hang up is POST .../outbound/hangup.
// The desk's browser softphone cannot take an agent-first call, so the agent answers on their
// SIP phone: the card says so while it rings.

import { api } from "/static/session.js";
import { duration, el } from "/static/desk-view.js";

const PATH = "/api/desk/calls/outbound";

// What the card says once the customer could not be reached (the call's outcome).
const OUTCOMES = {
  busy: "Busy",
  no_answer: "No answer",
  agent_unavailable: "Your phone did not answer",
  cancelled: "Call cancelled",
  invalid_number: "Not a number that can be dialled",
};

export function mountDialer({ queues }) {
  const form = document.getElementById("dial-form");
  const number = document.getElementById("dial-number");
  const queue = document.getElementById("dial-queue");
  const error = document.getElementById("dial-error");
  const submit = form.querySelector('button[type="submit"]');
  const box = document.getElementById("outbound-call");
  const status = el("p", { className: "visually-hidden", attrs: { role: "status", "aria-live": "polite" } });
  box.after(status);

  // The outbound call shown on the card: {record_id, number, state, since, outcome, reason, done}.
  let call = null;
  let busy = false;
  // `ended` notices of calls without a card: the end of a call can come before its 202.
  const endedEarly = new Map();

  function drawQueues() {
    const chosen = queue.value;
    queue.replaceChildren(el("option", { text: "Default caller ID", attrs: { value: "" } }),
      ...[...queues()].map(([id, name]) => el("option", { text: name, attrs: { value: id } })));
    if ([...queue.options].some((option) => option.value === chosen)) queue.value = chosen;
  }

  function showError(text) {
    error.textContent = text;
    error.hidden = !text;
    number.setAttribute("aria-invalid", String(Boolean(text)));
  }

  function say(text) {
    status.textContent = text;
  }

  // --- dialling --------------------------------------------------------------------------------

  async function dial(wanted, queueId) {
    const digits = String(wanted || "").trim();
    if (busy) return;
    if (!digits) {
      showError("Enter a phone number to call.");
      number.focus();
      return;
    }
    if (call && !call.done) {
      showError("You are already on a call: hang up first.");
      return;
    }
    busy = true;
    submit.disabled = true;
    form.setAttribute("aria-busy", "true");
    showError("");
    try {
      const body = queueId ? { number: digits, queue_id: queueId } : { number: digits };
      const started = await api(PATH, { method: "POST", body });
      // A fast notice may have drawn the card already.
      if (call?.record_id !== started.record_id) {
        call = { record_id: started.record_id, number: started.number, state: "agent",
                 since: null, outcome: "", reason: "", done: false };
      }
      const ended = endedEarly.get(started.record_id);
      endedEarly.clear();
      if (ended) onNotice(ended);
      draw();
      // Unless the desk's softphone took the focus meanwhile: it rings with Answer focused.
      const active = document.activeElement;
      if (!active || active === document.body || form.contains(active)) {
        box.querySelector("[data-action]")?.focus();
      }
      if (!call.done && call.state === "agent") say(`Calling your phone for ${started.number}. Answer on your phone.`);
    } catch (failure) {
      showError(failureText(failure));
      number.focus();
    } finally {
      busy = false;
      submit.disabled = false;
      form.removeAttribute("aria-busy");
    }
  }

  function failureText(failure) {
    const detail = failure.message || String(failure);
    if (failure.status === 422) return humanReason(detail);
    if (failure.status === 409) return "You are already on an outbound call.";
    if (failure.status === 503) return `Calls out are not available: ${detail}`;
    return detail;
  }

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    dial(number.value, queue.value);
  });
  number.addEventListener("input", () => { if (!error.hidden) showError(""); });

  // The customer panel's Call buttons: the number goes into the form (where errors show).
  function callNumber(wanted, queueId) {
    number.value = wanted;
    if (queueId && [...queue.options].some((option) => option.value === queueId)) queue.value = queueId;
    dial(wanted, queue.value);
  }

  // The `ended` notice that follows says how the call went; a call the server no longer
  // has (404) ends here.
  async function hangUp() {
    const ending = call;
    if (!ending || ending.done) return;
    try {
      await api(`${PATH}/hangup`, { method: "POST" });
    } catch (failure) {
      if (failure.status !== 404) {
        say(failure.message || String(failure));
        return;
      }
      if (call === ending && !ending.done) {
        finish(ending.state === "answered" ? "answered" : "cancelled", "");
      }
    }
  }

  // --- the card --------------------------------------------------------------------------------

  function stateText() {
    if (call.done) {
      if (call.outcome === "answered") return "Call ended";
      if (call.outcome === "failed" || !OUTCOMES[call.outcome]) {
        return call.reason ? `Failed: ${call.reason}` : "Failed";
      }
      return OUTCOMES[call.outcome];
    }
    if (call.state === "agent") return "Calling your phone…";
    if (call.state === "answered") return "Connected";
    return `Ringing ${call.number}…`;
  }

  function humanReason(reason) {
    return reason.charAt(0).toUpperCase() + reason.slice(1);
  }

  function button(action, text, className, onClick) {
    const node = el("button", { className: `button ${className}`, text,
                                attrs: { type: "button", "data-action": action,
                                         "aria-describedby": "outbound-number" } });
    node.addEventListener("click", onClick);
    return node;
  }

  // Redraws keep the keyboard focus in the card when it was there.
  function draw() {
    const focused = box.contains(document.activeElement);
    box.hidden = !call;
    if (!call) {
      box.replaceChildren();
      return;
    }
    const tone = call.done ? (call.outcome === "answered" ? "" : "offline")
      : call.state === "answered" ? "available" : "ringing";
    const head = el("div", { className: "softphone-head" },
      el("span", { className: `badge ${tone}`, text: stateText(),
                   attrs: { "data-testid": "outbound-state" } }),
      el("span", { className: "timer softphone-timer", attrs: { role: "timer", "aria-label": "Call time" } }));
    const who = el("div", { className: "softphone-caller" },
      el("span", { className: "small muted", text: "Outbound call" }),
      el("strong", { className: "softphone-name", text: call.number, attrs: { id: "outbound-number" } }),
      !call.done && call.state === "agent"
        ? el("span", { className: "outbound-hint", text: "Answer on your phone" }) : null,
      call.done && call.reason && !stateText().includes(call.reason)
        ? el("span", { className: "small muted", text: humanReason(call.reason) }) : null);
    const actions = el("div", { className: "softphone-actions" },
      call.done ? button("close", "Close", "", close) : button("hang-up", "Hang up", "danger", hangUp));
    box.dataset.state = call.done ? (call.outcome === "answered" ? "ended" : "failed") : call.state;
    box.replaceChildren(head, who, actions);
    if (focused) box.querySelector("[data-action]")?.focus();
    tick();
  }

  function tick() {
    const timer = box.querySelector(".softphone-timer");
    if (timer) timer.textContent = call?.since && !call.done ? duration((Date.now() - call.since) / 1000) : "";
  }
  setInterval(tick, 1000);

  function finish(outcome, reason) {
    call.done = true;
    call.outcome = outcome;
    call.reason = reason || "";
    draw();
    say(stateText());
  }

  function close() {
    call = null;
    draw();
    number.focus();
  }

  // --- the socket ------------------------------------------------------------------------------

  function onNotice(frame) {
    if (!call || call.record_id !== frame.record_id) {
      if (frame.state === "ended") {
        if (endedEarly.size > 20) endedEarly.clear();
        endedEarly.set(frame.record_id, frame);
        return;
      }
      call = { record_id: frame.record_id, number: frame.number, state: "agent", since: null,
               outcome: "", reason: "", done: false };
    }
    call.number = frame.number || call.number;
    if (call.done) return;
    switch (frame.state) {
      case "dialling":
      case "early_media":
        if (call.state !== frame.state) say(`Your phone answered. Ringing ${call.number}.`);
        call.state = frame.state;
        draw();
        return;
      case "answered":
        call.state = "answered";
        call.since = Date.now();
        draw();
        say(`Connected to ${call.number}.`);
        return;
      case "failed":
      case "ended":
        finish(frame.outcome, frame.reason);
        return;
      default:
    }
  }

  function onFrame(frame) {
    if (frame.type !== "call.outbound") return false;
    onNotice(frame);
    return true;
  }

  drawQueues();
  document.getElementById("dial-panel").hidden = false;
  return { onFrame, callNumber };
}
