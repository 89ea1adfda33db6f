// The phone on the wallboard: a "Calls" line on each queue tile (waiting, longest wait, in
// progress) and a table of the calls waiting, ringing or talking. Both appear once the board
// has seen a call, so a chat-only center's wallboard stays as it was. Text via textContent.

import { duration } from "/static/wallboard-format.js";

const STATES = { waiting: "Waiting", offered: "Ringing", assigned: "Talking" };
const STATE_KIND = { waiting: "warn", offered: "", assigned: "ok" };

function el(tag, { className, text, attrs } = {}) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  for (const [key, value] of Object.entries(attrs || {})) node.setAttribute(key, value);
  return node;
}

export function voiceLine(voice) {
  if (!voice) return "";
  const parts = [`${voice.waiting} waiting`];
  if (voice.waiting) parts.push(`longest ${duration(voice.longest_wait_s)}`);
  parts.push(`${voice.in_progress} in progress`);
  return `Calls: ${parts.join(" · ")}`;
}

export class CallsBoard {
  constructor(container) {
    this.active = false;
    this.calls = [];
    this.section = el("section", { className: "card wb-section",
                                   attrs: { "aria-labelledby": "calls-title", "data-testid": "calls" } });
    this.section.hidden = true;
    const title = el("h2", { text: "Calls in progress ", attrs: { id: "calls-title" } });
    this.count = el("span", { className: "badge", text: "0" });
    title.append(this.count);
    const scroll = el("div", { className: "wb-scroll" });
    const table = el("table", { className: "data wb-table" });
    const head = el("tr");
    for (const [label, number] of [["Caller", false], ["Queue", false], ["State", false],
                                   ["Time", true], ["Agent", false]]) {
      head.append(el("th", { text: label, className: number ? "number" : undefined,
                             attrs: { scope: "col" } }));
    }
    table.append(el("thead"), (this.body = el("tbody")));
    table.tHead.append(head);
    scroll.append(table);
    this.empty = el("p", { className: "empty", text: "No calls right now." });
    this.section.append(title, scroll, this.empty);
    container.append(this.section);
    this.times = [];
  }

  // A new frame: `tileOf(queueId)` is the queue's tile element (for its "Calls" line).
  draw(frame, names, tileOf) {
    this.calls = frame.calls || [];
    if (this.calls.length) this.active = true;
    this.section.hidden = !this.active;
    for (const queue of frame.queues || []) {
      const tile = tileOf(queue.queue_id);
      if (!tile) continue;
      let line = tile.querySelector("[data-testid=voice]");
      if (!this.active || !queue.voice) { line?.remove(); continue; }
      if (!line) {
        line = el("p", { className: "wb-agents", attrs: { "data-testid": "voice" } });
        tile.append(line);
      }
      line.textContent = voiceLine(queue.voice);
    }
    this.times = [];
    const rows = this.calls.map((call) => {
      const tr = el("tr", { attrs: { "data-testid": "call", "data-task-id": call.task_id } });
      tr.append(el("th", { text: call.caller ? `${call.caller} (${call.phone})` : call.phone || "Unknown caller",
                           attrs: { scope: "row" } }));
      tr.append(el("td", { text: names.queues.get(call.queue_id) || "–" }));
      const state = el("td");
      state.append(el("span", { className: `badge ${STATE_KIND[call.state] || ""}`,
                                text: STATES[call.state] || call.state }));
      tr.append(state);
      const time = el("td", { className: "number", text: duration(call.since_s) });
      this.times.push([time, call.since_s]);
      tr.append(time);
      tr.append(el("td", { text: call.agent_id ? names.agents.get(call.agent_id) || "–" : "–" }));
      return tr;
    });
    this.body.replaceChildren(...rows);
    this.count.textContent = String(this.calls.length);
    this.empty.hidden = this.calls.length > 0;
  }

  // Between frames the clocks keep moving.
  tick(elapsed) {
    for (const [cell, since] of this.times) cell.textContent = duration(since + elapsed);
  }
}
