// Call details in the agent desktop: the call detail records of a voice conversation (a compact
// block under the conversation's header) and a one-line summary of each past call in the
// customer's contacts. Text only ever through textContent (el), like the rest of the desk.

import { dateTime, duration, el, humanize } from "/static/desk-view.js";

const SLOT_ID = "call-details";

const OUTCOMES = { answered: "Answered", abandoned: "Abandoned", callback: "Callback requested",
                   voicemail: "Voicemail", voicemail_unavailable: "No voicemail",
                   hangup: "Ended in the IVR", in_progress: "In progress", failed: "Failed",
                   media_lost: "Media lost" };
const SIDES = { caller: "Caller", agent: "Agent", system: "OmniCC" };

export function outcomeText(call) {
  return OUTCOMES[call.outcome] || humanize(call.outcome);
}

// "menu 1 → support": the nodes the caller went through and the keys they pressed.
export function ivrPathText(path) {
  // A queue step's input is the queue's id: the Queue row names it already.
  const steps = (path || []).map((step) =>
    step.input && step.kind !== "queue" ? `${step.node} (${step.input})` : step.node);
  return steps.length ? steps.join(" → ") : "";
}

function seconds(value) {
  return value === null || value === undefined ? "" : duration(value);
}

function facts(call) {
  const list = el("dl", { className: "facts" });
  const rows = [
    ["Direction", `${humanize(call.direction)} · ${call.from || "unknown"} → ${call.to || "unknown"}`],
    ["Outcome", outcomeText(call)],
    ["Hung up by", SIDES[call.hangup_side] || (call.hangup_side ? humanize(call.hangup_side) : "")],
    ["IVR", ivrPathText(call.ivr_path)],
    ["Queue", call.queue],
    ["Agent", call.agent || (call.agent_id ? "Another agent" : "")],
    ["Queue time", seconds(call.queue_s)],
    ["Talk time", call.answered_at && call.ended_at ? seconds(call.talk_s) : ""],
    ["Hold time", call.hold_s ? seconds(call.hold_s) : ""],
    ["Transfers", call.transfers ? String(call.transfers) : ""],
    ["Started", dateTime(call.started_at)],
  ];
  for (const [term, value] of rows) {
    if (value) list.append(el("dt", { text: term }), el("dd", { text: value }));
  }
  return list;
}

function recordingPlayer(call) {
  if (!call.recording_url) return null;
  return el("audio", { attrs: { controls: "", preload: "none", src: call.recording_url,
                                "aria-label": `Recording of the call of ${dateTime(call.started_at)}`,
                                "data-testid": "call-recording" } });
}

// The block for the conversation's calls; null when it has none.
export function callDetails(calls) {
  if (!calls?.length) return null;
  const last = calls[calls.length - 1];
  const summary = !last.ended_at ? "In progress"
    : [outcomeText(last), last.answered_at ? `talk ${duration(last.talk_s)}` : null]
      .filter(Boolean).join(" · ");
  const block = el("details", { className: "call-details", attrs: { open: "", id: SLOT_ID,
                                                                    "data-testid": "call-details" } },
    el("summary", { text: `Call details · ${summary}` }));
  for (const call of calls) {
    block.append(el("div", { attrs: { "data-call-id": call.id } }, facts(call), recordingPlayer(call)));
  }
  Object.assign(block.style, { padding: ".5rem 1rem", borderBottom: "1px solid var(--border)",
                               fontSize: ".9rem" });
  return block;
}

// Keep the conversation panel's call block in step with `view`; it is rebuilt only when the
// calls change, so a recording being played is not interrupted by the desk's redraws.
export function showCallDetails(conversation, view) {
  const calls = view?.calls || [];
  const key = JSON.stringify(calls.map((c) => [c.id, c.outcome, c.ended_at, c.recording_url]));
  const current = conversation.querySelector(`#${SLOT_ID}`);
  if (current && current.dataset.key === key) return;
  const block = callDetails(calls);
  if (block) block.dataset.key = key;
  if (current) current.remove();
  if (block) conversation.querySelector(".conversation-head").after(block);
}

// One line under a past contact: how the call went, with a link to its recording.
export function callSummary(call) {
  const parts = [call.ended_at ? outcomeText(call) : "In progress"];
  if (call.queue_s) parts.push(`waited ${duration(call.queue_s)}`);
  if (call.answered_at && call.ended_at) parts.push(`talked ${duration(call.talk_s)}`);
  if (call.hold_s) parts.push(`held ${duration(call.hold_s)}`);
  if (call.transfers) parts.push(`${call.transfers} transfer${call.transfers > 1 ? "s" : ""}`);
  const line = el("p", { className: "small muted", text: parts.join(" · "),
                         attrs: { "data-testid": "past-call" } });
  if (call.recording_url) {
    line.append(" · ", el("a", { text: "Recording", attrs: { href: call.recording_url,
                                                            target: "_blank", rel: "noopener" } }));
  }
  return line;
}
