// The phone on the wallboard: a "Calls" line on each queue tile (waiting, longest wait, in
// progress) and a table of the calls waiting, ringing or talking. Both appear once the board
// has seen a call, so a chat-only center's wallboard stays as it was. Text via textContent.
//
// A call being talked has Listen, Whisper and Barge buttons: the first one rings the
// supervisor's phone (POST /api/supervisor/calls/{task}/monitor answers 202; the browser
// softphone on this page, or their SIP phone), the others then switch the mode (200), and
// Leave hangs the supervisor's leg up (DELETE). Rows are kept by task and updated in place so
// the keyboard focus survives the redraw every second; refusals are shown and announced.

import { api } from "/static/session.js";
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

const MODES = [["listen", "Listen", "Listen to"], ["whisper", "Whisper", "Whisper in"],
               ["barge", "Barge", "Barge into"]];
const MODE_DONE = { listen: "listening to", whisper: "whispering in", barge: "barging into" };

export class CallsBoard {
  // `announce(text)` tells screen readers (refusals are an alert next to the table instead).
  constructor(container, { announce }) {
    this.announce = announce;
    this.active = false;
    this.calls = [];
    this.rows = new Map();       // task id -> { tr, cells…, key }
    this.mine = null;            // my supervision: { task_id, mode, state }
    this.busy = false;
    this.checking = false;
    this.section = el("section", { className: "card wb-section",
                                   attrs: { "aria-labelledby": "calls-title", "data-testid": "calls" } });
    this.section.hidden = true;
    const title = el("h2", { text: "Calls in progress ", attrs: { id: "calls-title" } });
    this.count = el("span", { className: "badge", text: "0" });
    title.append(this.count);
    this.error = el("p", { className: "form-error", attrs: { role: "alert", "data-testid": "calls-error" } });
    this.error.hidden = true;
    const scroll = el("div", { className: "wb-scroll" });
    const table = el("table", { className: "data wb-table" });
    const head = el("tr");
    for (const [label, number] of [["Caller", false], ["Queue", false], ["State", false],
                                   ["Time", true], ["Agent", false], ["Supervise", false]]) {
      head.append(el("th", { text: label, className: number ? "number" : undefined,
                             attrs: { scope: "col" } }));
    }
    table.append(el("thead"), (this.body = el("tbody")));
    table.tHead.append(head);
    scroll.append(table);
    this.empty = el("p", { className: "empty", text: "No calls right now." });
    this.section.append(title, this.error, scroll, this.empty);
    container.append(this.section);
    this.times = [];
  }

  // A new frame: `tileOf(queueId)` is the queue's tile element (for its "Calls" line).
  draw(frame, names, tileOf) {
    this.calls = frame.calls || [];
    this.names = names;
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
    const seen = new Set();
    const ordered = this.calls.map((call) => {
      seen.add(call.task_id);
      let row = this.rows.get(call.task_id);
      if (!row) {
        row = this.makeRow(call);
        this.rows.set(call.task_id, row);
      }
      this.drawRow(row, call);
      return row.tr;
    });
    for (const [taskId, row] of this.rows) {
      if (!seen.has(taskId)) { row.tr.remove(); this.rows.delete(taskId); }
    }
    let cursor = this.body.firstElementChild;  // move only rows out of place (focus survives)
    for (const tr of ordered) {
      if (tr === cursor) cursor = cursor.nextElementSibling;
      else this.body.insertBefore(tr, cursor);
    }
    this.count.textContent = String(this.calls.length);
    this.empty.hidden = this.calls.length > 0;
    this.followMine();
  }

  makeRow(call) {
    const tr = el("tr", { attrs: { "data-testid": "call", "data-task-id": call.task_id } });
    const row = { tr, caller: el("th", { attrs: { scope: "row" } }), queue: el("td"),
                  state: el("td"), time: el("td", { className: "number" }), agent: el("td"),
                  actions: el("td"), key: null };
    tr.append(row.caller, row.queue, row.state, row.time, row.agent, row.actions);
    return row;
  }

  drawRow(row, call) {
    row.caller.replaceChildren(callerOf(call), call.direction === "outbound"
      ? el("span", { className: "small muted", text: " · outbound" }) : "");
    row.queue.textContent = this.names.queues.get(call.queue_id) || "–";
    const badge = el("span", { className: `badge ${STATE_KIND[call.state] || ""}`,
                               text: STATES[call.state] || call.state });
    row.state.replaceChildren(badge);
    row.time.textContent = duration(call.since_s);
    this.times.push([row.time, call.since_s]);
    row.agent.textContent = this.agentOf(call) || "–";
    this.refreshActions(row, call);
  }

  // The buttons are redrawn only when what they show changed.
  refreshActions(row, call) {
    const mine = this.mine?.task_id === call.task_id ? this.mine : null;
    const key = JSON.stringify([call.state, this.agentOf(call), callerOf(call), mine,
                                Boolean(this.mine), this.busy]);
    if (key !== row.key) {
      row.key = key;
      this.drawActions(row, call, mine);
    }
  }

  agentOf(call) {
    return call.agent_id ? this.names.agents.get(call.agent_id) || "" : "";
  }

  // "Maija's call with Alice": the buttons' names say which call they act on.
  callName(call) {
    const agent = this.agentOf(call);
    const caller = call.caller || call.phone || "an unknown caller";
    return agent ? `${agent}'s call with ${caller}` : `the call with ${caller}`;
  }

  drawActions(row, call, mine) {
    const focused = row.actions.contains(document.activeElement)
      ? document.activeElement.dataset.action : null;
    const box = el("div", { className: "wb-call-actions", attrs: { role: "group",
                                                                    "aria-label": `Supervise ${this.callName(call)}` } });
    if (call.state === "assigned") {
      for (const [mode, label, verb] of MODES) {
        const pressed = mine?.mode === mode;
        const button = el("button", { className: "button", text: label, attrs: {
          type: "button", "data-action": mode, "aria-label": `${verb} ${this.callName(call)}`,
          "aria-pressed": String(pressed) } });
        // One supervision at a time: the phone holds one call. (While a request is out the
        // buttons stay enabled, so the keyboard focus stays; their handlers wait.)
        if (this.mine && !mine) button.disabled = true;
        button.addEventListener("click", () => {
          if (this.mine?.task_id !== call.task_id || this.mine.mode !== mode) this.supervise(call, mode);
        });
        box.append(button);
      }
      if (mine) {
        const leave = el("button", { className: "button danger", text: "Leave", attrs: {
          type: "button", "data-action": "leave", "aria-label": `Leave ${this.callName(call)}` } });
        leave.addEventListener("click", () => this.leave(call));
        box.append(leave, el("span", { className: "wb-supervising", attrs: { "data-testid": "supervising" },
          text: mine.state === "ringing" ? "Your phone is ringing: answer it." : `You are ${MODE_DONE[mine.mode]} this call.` }));
      }
    }
    if (this.busy) box.setAttribute("aria-busy", "true");
    row.actions.replaceChildren(box);
    if (focused) {
      const again = box.querySelector(`[data-action="${focused}"]:not(:disabled)`) ||
                    box.querySelector("button:not(:disabled)");
      again?.focus();
    }
  }

  showError(text) {
    this.error.textContent = text;
    this.error.hidden = !text;
  }

  async supervise(call, mode) {
    if (this.busy) return;
    this.busy = true;
    this.showError("");
    this.redraw();
    const name = this.callName(call);
    const verb = MODES.find(([value]) => value === mode)[2].toLowerCase();
    try {
      const view = await api(`/api/supervisor/calls/${encodeURIComponent(call.task_id)}/monitor`,
                             { method: "POST", body: { mode } });
      this.mine = { task_id: call.task_id, mode: view.mode, state: view.state };
      this.announce(view.state === "ringing"
        ? `Your phone is ringing: answer it to start ${MODE_DONE[mode]} ${name}.`
        : `You are now ${MODE_DONE[view.mode]} ${name}.`);
    } catch (error) {
      this.showError(`Could not ${verb} ${name}: ${reason(error)}`);
    } finally {
      this.busy = false;
      this.redraw();
    }
  }

  async leave(call) {
    if (this.busy) return;
    this.busy = true;
    this.redraw();
    try {
      await api(`/api/supervisor/calls/${encodeURIComponent(call.task_id)}/monitor`, { method: "DELETE" });
      this.announce(`You left ${this.callName(call)}.`);
    } catch (error) {
      if (error.status !== 404) this.showError(`Could not leave ${this.callName(call)}: ${reason(error)}`);
    } finally {
      this.mine = null;
      this.busy = false;
      this.redraw();
    }
  }

  // My supervision's state (ringing -> active -> ended) follows the server's.
  async followMine() {
    const mine = this.mine;
    if (!mine || this.busy || this.checking) return;
    this.checking = true;
    try {
      const view = await api(`/api/supervisor/calls/${encodeURIComponent(mine.task_id)}/monitor`);
      if (this.mine !== mine) return;
      if (view.state === "ended") {
        this.mine = null;
        const why = view.end_reason && view.end_reason !== "left" ? ` (${view.end_reason.replaceAll("_", " ")})` : "";
        this.announce(`Your supervision of the call ended${why}.`);
      } else if (view.state !== mine.state || view.mode !== mine.mode) {
        this.mine = { ...mine, state: view.state, mode: view.mode };
        if (view.state === "active") this.announce(`You are ${MODE_DONE[view.mode]} the call.`);
      }
    } catch (error) {
      if (error.status === 404 && this.mine === mine) this.mine = null;
    } finally {
      this.checking = false;
      this.redraw();
    }
  }

  redraw() {
    for (const call of this.calls) {
      const row = this.rows.get(call.task_id);
      if (row) this.refreshActions(row, call);
    }
  }

  // The calls' queue names, for the softphone's card.
  queueName(taskId) {
    const call = this.calls.find((c) => c.task_id === taskId);
    return call ? this.names?.queues.get(call.queue_id) || "" : "";
  }

  // Between frames the clocks keep moving.
  tick(elapsed) {
    for (const [cell, since] of this.times) cell.textContent = duration(since + elapsed);
  }
}

function callerOf(call) {
  return call.caller ? `${call.caller} (${call.phone})` : call.phone || "Unknown caller";
}

// The server's reason, in words a supervisor acts on.
function reason(error) {
  const detail = error.message || String(error);
  if (error.status === 409 && /no phone/.test(detail)) return "switch your Phone on (top right) first.";
  if (error.status === 403) return "your role may not do this.";
  if (error.status === 503) return "this server runs without voice.";
  return detail;
}
