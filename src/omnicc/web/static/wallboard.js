// The supervisor's wallboard: per-queue tiles, the agents table and the live conversations,
// redrawn from the `wallboard` frame the supervisor socket sends every second. Rows are kept
// by id and updated in place, so a focused control (a status select, a button) survives the
// redraw; times tick on the client between frames. Only changes worth hearing (a queue's
// service level changing state, the connection) are announced to screen readers.

import { api, currentUser, liveSocket, toast } from "/static/session.js";
import {
  SL_TARGET, channelsInProgress, duration, percent, phaseLabel, presenceClass, presenceLabel,
  serviceLevelState, skillsText, testId,
} from "/static/wallboard-format.js";
import { ReassignDialog, SkillsDialog } from "/static/wallboard-dialogs.js";
import { WatchPanel } from "/static/wallboard-watch.js";
import { CallsBoard } from "/static/wallboard-calls.js";
import { mountSoftphone } from "/static/softphone.js";

const PRESENCE_ORDER = ["available", "busy", "wrap_up", "break", "no_answer"];

const tiles = document.getElementById("queue-tiles");
const agentsBody = document.getElementById("agents-body");
const conversationsBody = document.getElementById("conversations-body");
const announcer = document.getElementById("announcer");
const connection = document.getElementById("connection");

let board = { queues: [], agents: [], conversations: [], statuses: [] };
let receivedAt = performance.now();
const names = { queues: new Map(), agents: new Map() };
const slStates = new Map();
const queueTiles = new Map();
const agentRows = new Map();
const conversationRows = new Map();

function el(tag, { className, text, attrs } = {}) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  for (const [key, value] of Object.entries(attrs || {})) node.setAttribute(key, value);
  return node;
}

// Puts `nodes` in this order inside `container`, moving only those out of place: moving a
// node would take the keyboard focus away from a control inside it.
function placeInOrder(container, nodes) {
  let cursor = container.firstElementChild;
  for (const node of nodes) {
    if (node === cursor) cursor = cursor.nextElementSibling;
    else container.insertBefore(node, cursor);
  }
}

function announce(text) {
  announcer.textContent = text;
}

// Seconds since the frame arrived: the figures' clocks keep running between frames.
function elapsed() {
  return (performance.now() - receivedAt) / 1000;
}

// --- queue tiles ------------------------------------------------------------------------------

function figure(tile, key, label) {
  const box = el("div", { className: "wb-figure", attrs: { "data-testid": key } });
  const term = el("dt", { text: label });
  const value = el("dd");
  box.append(term, value);
  tile.figures.append(box);
  tile.values[key] = value;
  tile.labels[key] = term;
  tile.boxes[key] = box;
}

function makeTile(queue) {
  const article = el("article", { className: "wb-tile card",
    attrs: { "data-testid": `queue-${testId(queue.name)}`,
             "aria-labelledby": `queue-title-${queue.queue_id}` } });
  const head = el("header", { className: "wb-tile-head" });
  const title = el("h2", { text: queue.name, attrs: { id: `queue-title-${queue.queue_id}` } });
  const state = el("span", { className: "badge", attrs: { "data-testid": "sl-state" } });
  head.append(title, state);
  const tile = { article, title, state, figures: el("dl", { className: "wb-figures" }),
                 values: {}, labels: {}, boxes: {} };
  figure(tile, "waiting", "Waiting");
  figure(tile, "longest-wait", "Longest wait");
  figure(tile, "ewt", "EWT");
  figure(tile, "service-level", "Service level");
  figure(tile, "asa", "ASA");
  figure(tile, "offered", "Offered");
  figure(tile, "handled", "Handled");
  figure(tile, "abandoned", "Abandoned");
  tile.values["service-level"].classList.add("wb-big");
  tile.values.waiting.classList.add("wb-big");
  tile.agents = el("p", { className: "wb-agents", attrs: { "data-testid": "agents" } });
  article.append(head, tile.figures, tile.agents);
  return tile;
}

function drawTile(tile, queue) {
  const threshold = Math.round(queue.sl_threshold_s);
  tile.title.textContent = queue.name;
  tile.values.waiting.textContent = String(queue.waiting);
  const longest = queue.waiting ? queue.longest_wait_s + elapsed() : 0;
  tile.values["longest-wait"].textContent = duration(longest);
  tile.boxes["longest-wait"].dataset.level = !queue.waiting ? ""
    : longest > 2 * queue.sl_threshold_s ? "bad" : longest > queue.sl_threshold_s ? "warn" : "";
  tile.values.ewt.textContent = queue.ewt_s === null ? "–" : duration(queue.ewt_s);
  tile.labels["service-level"].textContent = `SL today (${threshold} s)`;
  tile.values["service-level"].textContent = percent(queue.service_level_2);
  const state = serviceLevelState(queue.service_level_2);
  tile.state.className = `badge ${state.kind}`;
  tile.state.textContent = state.text;
  tile.article.dataset.level = state.kind;
  tile.boxes["service-level"].title =
    `Handled within ${threshold} s ÷ (handled + abandoned after ${threshold} s); `
    + `target ${percent(SL_TARGET)}`;
  tile.values.asa.textContent = duration(queue.asa_s);
  tile.values.offered.textContent = String(queue.offered);
  tile.values.handled.textContent = String(queue.handled);
  const rate = queue.offered ? ` (${percent(queue.abandoned / queue.offered)})` : "";
  tile.values.abandoned.textContent = `${queue.abandoned}${rate}`;
  tile.boxes.abandoned.title = `${queue.short_abandoned} within the short-abandon grace time`;
  const counts = queue.agents_by_presence || {};
  const known = PRESENCE_ORDER.filter((name) => counts[name]);
  const custom = Object.keys(counts).filter((name) =>
    !PRESENCE_ORDER.includes(name) && name !== "offline" && counts[name]);
  const parts = [...known, ...custom].map((name) => `${presenceLabel(name)} ${counts[name]}`);
  tile.agents.textContent = parts.length ? `Agents: ${parts.join(" · ")}` : "No agents logged in";
  const previous = slStates.get(queue.queue_id);
  if (previous !== undefined && previous !== state.kind && state.kind !== "none") {
    announce(`${queue.name}: service level ${percent(queue.service_level_2)}, ${state.text.toLowerCase()}.`);
  }
  slStates.set(queue.queue_id, state.kind);
}

function drawQueues() {
  if (!board.queues.length) {
    tiles.replaceChildren(el("p", { className: "empty", text: "No queues configured." }));
    queueTiles.clear();
    return;
  }
  tiles.querySelector(".empty")?.remove();
  const live = new Set();
  for (const queue of board.queues) {
    live.add(queue.queue_id);
    let tile = queueTiles.get(queue.queue_id);
    if (!tile) {
      tile = makeTile(queue);
      queueTiles.set(queue.queue_id, tile);
    }
    drawTile(tile, queue);
  }
  for (const [id, tile] of queueTiles) {
    if (!live.has(id)) { tile.article.remove(); queueTiles.delete(id); }
  }
  placeInOrder(tiles, board.queues.map((queue) => queueTiles.get(queue.queue_id).article));
}

// --- agents -----------------------------------------------------------------------------------

async function changeStatus(agent, select) {
  const status = select.value;
  try {
    await api(`/api/supervisor/agents/${encodeURIComponent(agent.agent_id)}/status`,
              { method: "PUT", body: { status } });
    toast(`${agent.name} is now ${presenceLabel(status).toLowerCase()}.`);
  } catch (error) {
    toast(`Could not change ${agent.name}'s status: ${error.message}`, "error");
    select.value = agent.status;
  }
}

function makeAgentRow(agent) {
  const tr = el("tr", { attrs: { "data-testid": `agent-${testId(agent.name)}` } });
  const row = { tr, agent };
  row.name = el("th", { attrs: { scope: "row" } });
  row.badge = el("span", { attrs: { "data-testid": "status" } });
  const statusCell = el("td");
  statusCell.append(row.badge);
  row.time = el("td", { className: "number", attrs: { "data-testid": "time-in-status" } });
  row.progress = el("td", { attrs: { "data-testid": "in-progress" } });
  row.today = el("td", { className: "number", attrs: { "data-testid": "contacts-today" } });
  row.occupancy = el("td", { className: "number", attrs: { "data-testid": "occupancy" } });
  row.skills = el("td", { className: "wb-skills", attrs: { "data-testid": "skills" } });
  const actionsCell = el("td");
  const actions = el("div", { className: "wb-actions" });
  actionsCell.append(actions);
  row.select = el("select", { attrs: { "data-testid": "status-select" } });
  row.select.addEventListener("change", () => changeStatus(row.agent, row.select));
  row.skillsButton = el("button", { className: "button", text: "Edit skills",
                                    attrs: { type: "button" } });
  row.skillsButton.addEventListener("click", () => skillsDialog.open(row.agent, knownSkills()));
  actions.append(row.select, row.skillsButton);
  tr.append(row.name, statusCell, row.time, row.progress, row.today, row.occupancy, row.skills,
            actionsCell);
  return row;
}

function drawAgentRow(row, agent) {
  row.agent = agent;
  row.name.textContent = agent.name;
  row.badge.className = `badge ${presenceClass(agent.presence)}`;
  row.badge.textContent = presenceLabel(agent.presence);
  row.time.textContent = duration(agent.time_in_presence_s + elapsed());
  row.progress.textContent = channelsInProgress(agent.in_progress);
  row.today.textContent = String(agent.contacts_today);
  row.occupancy.textContent = percent(agent.occupancy);
  row.skills.textContent = skillsText(agent.skills);
  row.select.setAttribute("aria-label", `Status of ${agent.name}`);
  row.skillsButton.setAttribute("aria-label", `Edit skills of ${agent.name}`);
  const statuses = board.statuses.includes(agent.status) ? board.statuses
    : [...board.statuses, agent.status];
  const current = [...row.select.options].map((option) => option.value);
  if (current.join() !== statuses.join()) {
    row.select.replaceChildren(...statuses.map((name) => new Option(presenceLabel(name), name)));
  }
  if (document.activeElement !== row.select) row.select.value = agent.status;
}

function drawAgents() {
  const live = new Set();
  const agents = [...board.agents].sort((a, b) => a.name.localeCompare(b.name));
  for (const agent of agents) {
    live.add(agent.agent_id);
    let row = agentRows.get(agent.agent_id);
    if (!row) {
      row = makeAgentRow(agent);
      agentRows.set(agent.agent_id, row);
    }
    drawAgentRow(row, agent);
  }
  for (const [id, row] of agentRows) {
    if (!live.has(id)) { row.tr.remove(); agentRows.delete(id); }
  }
  placeInOrder(agentsBody, agents.map((agent) => agentRows.get(agent.agent_id).tr));
  document.getElementById("agents-empty").hidden = agents.length > 0;
}

function knownSkills() {
  const skills = new Set();
  for (const agent of board.agents) Object.keys(agent.skills || {}).forEach((s) => skills.add(s));
  return skills;
}

// --- live conversations -----------------------------------------------------------------------

function conversationTime(conversation) {
  const base = conversation.handling_s ?? conversation.since_s;
  return duration(base + elapsed());
}

function makeConversationRow(conversation) {
  const tr = el("tr", { attrs: { "data-testid": "conversation",
                                 "data-conversation-id": conversation.conversation_id } });
  const row = { tr, conversation };
  const customerId = `conversation-${conversation.conversation_id}`;
  row.customer = el("th", { attrs: { scope: "row", id: customerId } });
  row.queue = el("td", { attrs: { "data-testid": "queue" } });
  row.phase = el("span", { attrs: { "data-testid": "phase" } });
  const phaseCell = el("td");
  phaseCell.append(row.phase);
  row.time = el("td", { className: "number", attrs: { "data-testid": "time" } });
  row.agent = el("td", { attrs: { "data-testid": "agent" } });
  const actionsCell = el("td");
  const actions = el("div", { className: "wb-actions" });
  actionsCell.append(actions);
  row.watch = el("button", { className: "button", text: "Watch",
                             attrs: { type: "button", "aria-describedby": customerId } });
  row.watch.addEventListener("click", () => {
    watch.open(row.conversation, names, row.watch);
    drawConversations();
  });
  row.reassign = el("button", { className: "button", text: "Reassign",
                                attrs: { type: "button", "aria-describedby": customerId } });
  row.reassign.addEventListener("click", () =>
    reassignDialog.open(row.conversation, board, names));
  actions.append(row.watch, row.reassign);
  tr.append(row.customer, row.queue, phaseCell, row.time, row.agent, actionsCell);
  return row;
}

function drawConversationRow(row, conversation) {
  row.conversation = conversation;
  row.customer.textContent = conversation.customer_name || "Web visitor";
  row.queue.textContent = names.queues.get(conversation.queue_id) || "–";
  const phase = conversation.is_offline && conversation.phase === "waiting"
    ? "Offline message" : phaseLabel(conversation.phase);
  const kind = conversation.phase === "waiting" ? "warn"
    : conversation.phase === "assigned" ? "ok" : "";
  row.phase.className = `badge ${kind}`;
  row.phase.textContent = phase;
  row.time.textContent = conversationTime(conversation);
  row.agent.textContent = conversation.agent_id
    ? names.agents.get(conversation.agent_id) || "–" : "–";
  const watching = watch.conversationId === conversation.conversation_id;
  row.tr.classList.toggle("wb-watched", watching);
  if (watching) row.watch.setAttribute("aria-pressed", "true");
  else row.watch.removeAttribute("aria-pressed");
  row.reassign.disabled = !["waiting", "offered", "assigned"].includes(conversation.phase);
}

function drawConversations() {
  const live = new Set();
  // Longest waiting first: the chats a supervisor may need to move.
  const rows = [...board.conversations].sort((a, b) =>
    (a.phase === "waiting" ? 0 : 1) - (b.phase === "waiting" ? 0 : 1) || b.since_s - a.since_s);
  for (const conversation of rows) {
    live.add(conversation.conversation_id);
    let row = conversationRows.get(conversation.conversation_id);
    if (!row) {
      row = makeConversationRow(conversation);
      conversationRows.set(conversation.conversation_id, row);
    }
    drawConversationRow(row, conversation);
  }
  for (const [id, row] of conversationRows) {
    if (!live.has(id)) { row.tr.remove(); conversationRows.delete(id); }
  }
  placeInOrder(conversationsBody,
               rows.map((c) => conversationRows.get(c.conversation_id).tr));
  document.getElementById("conversations-empty").hidden = rows.length > 0;
  document.getElementById("conversations-count").textContent = String(rows.length);
  if (watch.isOpen) {
    watch.update(board.conversations.find((c) => c.conversation_id === watch.conversationId),
                 names);
  }
}

// --- frames and ticking -----------------------------------------------------------------------

function takeBoard(frame) {
  board = { queues: frame.queues || [], agents: frame.agents || [],
            conversations: frame.conversations || [], statuses: frame.statuses || [] };
  receivedAt = performance.now();
  names.queues = new Map(board.queues.map((q) => [q.queue_id, q.name]));
  names.agents = new Map(board.agents.map((a) => [a.agent_id, a.name]));
  drawQueues();
  drawAgents();
  drawConversations();
  calls.draw(frame, names, (queueId) => queueTiles.get(queueId)?.article);
}

// Between frames (or while reconnecting) the clocks keep moving.
function tick() {
  for (const queue of board.queues) {
    const tile = queueTiles.get(queue.queue_id);
    if (tile && queue.waiting) {
      tile.values["longest-wait"].textContent = duration(queue.longest_wait_s + elapsed());
    }
  }
  for (const agent of board.agents) {
    const row = agentRows.get(agent.agent_id);
    if (row) row.time.textContent = duration(agent.time_in_presence_s + elapsed());
  }
  for (const conversation of board.conversations) {
    const row = conversationRows.get(conversation.conversation_id);
    if (row) row.time.textContent = conversationTime(conversation);
  }
  calls.tick(elapsed());
}

function showConnection(state) {
  const online = state === "online";
  connection.className = `badge ${online ? "ok" : "bad"}`;
  connection.textContent = online ? "Live" : "Reconnecting…";
  if (!online) announce("Connection lost; reconnecting.");
  else if (announcer.textContent.startsWith("Connection lost")) announce("Connection restored.");
}

const socket = liveSocket("/api/supervisor/ws", {
  onOpen: () => { watch.resume(); phone.onOpen(); },
  onStatus: showConnection,
  onMessage: (frame) => {
    if (frame.type === "wallboard") takeBoard(frame);
    else if (phone.onFrame(frame)) calls.followMine();
    else watch.handle(frame);
  },
});
const watch = new WatchPanel(socket, { onClose: () => drawConversations() });
const skillsDialog = new SkillsDialog();
const reassignDialog = new ReassignDialog();
const calls = new CallsBoard(document.querySelector(".wb-tables"), { announce });
// The supervisor's browser softphone rings when they listen to, whisper in or barge into a call.
const phone = mountSoftphone({
  send: (frame) => socket.send(frame),
  queueName: (taskId) => calls.queueName(taskId),
  targets: () => ({ queues: [], agents: [] }),
});

setInterval(tick, 1000);
currentUser().catch((error) => toast(error.message, "error"));
