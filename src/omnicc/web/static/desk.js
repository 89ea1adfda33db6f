// The agent desktop: presence, offers, several chats at once, the conversation with its
// history, notes, canned responses, transfer and wrap-up. Everything goes through the public
// REST API; the desk WebSocket only tells us what changed, and after every (re)connection the
// page reloads /api/desk/state because notices sent while offline are not replayed.

import { api, currentUser, liveSocket, toast } from "/static/session.js";
import { RULES_PATH, uploadAttachment } from "/static/attachments.js";
import { askNotifications, chime, notificationsWanted, notify, unlockSound } from "/static/desk-alerts.js";
import { customerPanel, dividerItem, duration, el, humanize, messageItem } from "/static/desk-view.js";
import { mountSoftphone } from "/static/softphone.js";
import { mountDialer } from "/static/desk-dial.js";
import { showCallDetails } from "/static/desk-call-details.js";
import { mountEmail } from "/static/desk-email.js";
import { MESSAGING_CHANNELS, mountMessaging } from "/static/desk-messaging.js";
import { mountCustomerPanel } from "/static/desk-customer.js";

const $ = (id) => document.getElementById(id);
const MAIN_STATUSES = ["available", "break", "offline"];
const TYPING_IDLE_MS = 4000;
const TYPING_SHOWN_MS = 7000;

const desk = {
  me: null,
  state: null,
  skew: 0,                    // server clock minus ours, seconds
  queues: new Map(),          // id -> name
  agents: [],                 // colleagues for transfers
  agentNames: new Map(),
  codes: [],
  canned: [],
  uploadRules: null,          // size limit and accepted kinds of file
  chats: new Map(),           // conversation id -> {view, unread, typingUntil, history}
  selected: null,
  socket: null,
  typingSent: 0,
  typingTimer: null,
  phone: null,                // the browser softphone (softphone.js)
  dialer: null,               // click-to-call (desk-dial.js)
  email: null,                // the email conversation (desk-email.js)
};

const serverNow = () => Date.now() / 1000 + desk.skew;

function fail(error) {
  toast(error.message || String(error), "error");
}

async function run(action) {
  try {
    return await action();
  } catch (error) {
    fail(error);
    return null;
  }
}

// --- state ------------------------------------------------------------------------------------

function applyState(state) {
  // Answers can cross on the wire: never go back to an older picture.
  if (desk.state && state.now < desk.state.now) return;
  // Oldest chat first, so Alt+1..9 keep pointing at the same chats.
  state.tasks.sort((a, b) => (a.accepted_at ?? 0) - (b.accepted_at ?? 0));
  state.offers.sort((a, b) => a.expires_at - b.expires_at);
  desk.state = state;
  desk.skew = state.now - Date.now() / 1000;
  desk.phone?.onState(state);
  const mine = new Set(state.tasks.map((t) => t.conversation_id));
  for (const id of desk.chats.keys()) if (!mine.has(id)) desk.chats.delete(id);
  if (desk.selected && !mine.has(desk.selected)) desk.selected = null;
  if (!desk.selected && state.tasks.length) select(state.tasks[0].conversation_id);
  drawAll();
}

async function reloadState() {
  const state = await run(() => api("/api/desk/state"));
  if (state) applyState(state);
}

function taskOf(conversationId) {
  return desk.state?.tasks.find((t) => t.conversation_id === conversationId) || null;
}

function chatEntry(conversationId) {
  if (!desk.chats.has(conversationId)) {
    desk.chats.set(conversationId, { view: null, unread: 0, typingUntil: 0, history: null,
                                     loading: null, arrived: [] });
  }
  return desk.chats.get(conversationId);
}

async function loadConversation(conversationId) {
  const entry = chatEntry(conversationId);
  entry.loading = api(`/api/desk/conversations/${encodeURIComponent(conversationId)}`);
  entry.arrived = [];
  try {
    const view = await entry.loading;
    entry.contactId = view.chat?.contact_id || entry.contactId;
    // Messages pushed while the request was in flight may be missing from its answer.
    const known = new Set(view.messages.map((m) => m.id));
    view.messages.push(...entry.arrived.filter((m) => !known.has(m.id)));
    view.messages.sort((a, b) => a.created_at.localeCompare(b.created_at));
    entry.view = view;
  } catch (error) {
    if (error.status !== 404) fail(error);
  } finally {
    entry.loading = null;
  }
  if (desk.selected === conversationId) drawConversation();
  drawChats();
}

function select(conversationId) {
  const reply = $("reply");
  if (desk.selected !== conversationId) {
    // Each chat keeps its own unsent draft.
    if (desk.selected && desk.chats.has(desk.selected)) {
      stopTyping();
      desk.chats.get(desk.selected).draft = reply.value;
    }
    reply.value = chatEntry(conversationId).draft || "";
    hideSuggestions();
  }
  desk.selected = conversationId;
  const entry = chatEntry(conversationId);
  entry.unread = 0;
  if (!entry.view && !entry.loading) loadConversation(conversationId);
  drawChats();
  drawConversation();
}

// --- drawing ----------------------------------------------------------------------------------

function drawAll() {
  drawPresence();
  drawOffers();
  drawChats();
  drawConversation();
}

// Redraw a list without losing the keyboard focus that was inside it.
function keepingFocus(container, attribute, draw) {
  const holder = container.contains(document.activeElement)
    ? document.activeElement.closest(`[${attribute}]`) : null;
  const value = holder?.getAttribute(attribute);
  draw();
  if (value === undefined || value === null) return;
  const again = container.querySelector(`[${attribute}="${CSS.escape(value)}"]`);
  (again?.matches("button, select") ? again : again?.querySelector("button"))?.focus();
}

function drawPresence() {
  const { agent, statuses } = desk.state;
  const box = $("presence-buttons");
  keepingFocus(box, "data-status", () => box.replaceChildren(...MAIN_STATUSES
    .filter((name) => statuses.some((s) => s.name === name))
    .map((name) => {
      const button = el("button", { className: `segment ${name}`, text: humanize(name), attrs: {
        type: "button", "aria-pressed": String(agent.status === name), "data-status": name } });
      button.addEventListener("click", () => setStatus(name));
      return button;
    })));
  const others = statuses.filter((s) => !MAIN_STATUSES.includes(s.name));
  const select = $("custom-status");
  $("custom-status-box").hidden = !others.length;
  select.replaceChildren(el("option", { text: "Choose…", attrs: { value: "" } }),
    ...others.map((s) => el("option", { text: humanize(s.name),
                                        attrs: { value: s.name, selected: agent.status === s.name } })));
  const badge = $("presence-badge");
  badge.className = `badge ${agent.presence}`;
  badge.textContent = humanize(agent.presence);
  drawTimers();
}

function drawOffers() {
  const list = $("offers");
  const offers = desk.state.offers;
  const shown = new Map([...list.children].map((li) => [li.dataset.offerId, li]));
  for (const [id, li] of shown) if (!offers.some((o) => o.offer_id === id)) li.remove();
  for (const offer of offers) {
    if (shown.has(offer.offer_id)) continue;
    const name = offer.customer_name || "Customer";
    const bar = el("div", { className: "countdown-bar" });
    const left = el("span", { className: "countdown-text" });
    const accept = el("button", { className: "button success", text: "Accept",
                                  attrs: { type: "button", "aria-keyshortcuts": "Alt+A",
                                           "aria-describedby": `offer-${offer.offer_id}` } });
    const reject = el("button", { className: "button", text: "Reject",
                                  attrs: { type: "button", "aria-keyshortcuts": "Alt+R",
                                           "aria-describedby": `offer-${offer.offer_id}` } });
    accept.addEventListener("click", () => acceptOffer(offer.offer_id));
    reject.addEventListener("click", () => rejectOffer(offer.offer_id));
    const onPhone = offer.channel === "voice";
    list.append(el("li", { className: "offer card", attrs: { "data-testid": "offer",
                                                            "data-offer-id": offer.offer_id } },
      el("div", { className: "offer-head" },
         el("span", { className: "badge", text: humanize(offer.channel) }),
         el("strong", { text: name, attrs: { id: `offer-${offer.offer_id}` } })),
      el("p", { className: "small", text: offer.topic || "No topic given" }),
      el("p", { className: "small muted", text: `Queue: ${desk.queues.get(offer.queue_id) || "—"}` }),
      el("div", { className: "countdown", attrs: { role: "timer", "aria-label": "Time left to answer" } },
         el("div", { className: "countdown-track" }, bar), left),
      onPhone ? el("p", { className: "small", text: "Answer it on your phone." })
              : el("div", { className: "offer-actions" }, accept, reject)));
  }
  $("offer-count").textContent = String(offers.length);
  $("offers-empty").hidden = offers.length > 0;
  drawTimers();
}

function drawChats() {
  if (!desk.state) return;
  const list = $("chats");
  const tasks = desk.state.tasks;
  keepingFocus(list, "data-conversation-id", () => list.replaceChildren(...tasks.map((task, index) => {
    const entry = chatEntry(task.conversation_id);
    const wrapping = task.phase === "wrapping";
    const messages = entry.view?.messages || [];
    const last = [...messages].reverse().find((m) => m.visibility === "public" && m.author_kind !== "system");
    const button = el("button", { className: "chat-button", attrs: {
      type: "button", "aria-current": desk.selected === task.conversation_id ? "true" : null,
      "aria-keyshortcuts": index < 9 ? `Alt+${index + 1}` : null } },
      el("span", { className: "chat-line" },
         el("strong", { className: "chat-name", text: task.customer_name || "Customer" }),
         el("span", { className: `badge ${wrapping ? "wrap_up" : "available"}`,
                      text: wrapping ? "Wrap-up" : "Active", attrs: { "data-testid": "chat-phase" } })),
      el("span", { className: "chat-line" },
         el("span", { className: "chat-preview small muted",
                      text: entry.typingUntil > Date.now() && !wrapping ? "typing…"
                                                              : last?.text || humanize(task.channel) }),
         entry.unread ? el("span", { className: "unread", text: String(entry.unread),
                                     attrs: { "aria-label": `${entry.unread} unread`,
                                              "data-testid": "unread" } }) : null),
      index < 9 ? el("kbd", { className: "chat-key", text: `Alt+${index + 1}`, attrs: { "aria-hidden": "true" } }) : null);
    button.addEventListener("click", () => {
      select(task.conversation_id);
      if (window.matchMedia("(max-width: 760px)").matches) $("conversation").scrollIntoView();
    });
    return el("li", { className: "chat-item", attrs: { "data-testid": "chat-item",
                                                      "data-conversation-id": task.conversation_id } }, button);
  })));
  $("chats-empty").hidden = tasks.length > 0;
  const chatCapacity = desk.state.agent.capacity.chat ?? 0;
  const used = tasks.filter((t) => t.channel === "chat").length;
  $("capacity").textContent = `${used}/${chatCapacity}`;
  document.title = `${unreadTotal() ? `(${unreadTotal()}) ` : ""}Agent desktop · OmniCC`;
}

function unreadTotal() {
  let total = desk.state?.offers.length || 0;
  for (const entry of desk.chats.values()) total += entry.unread;
  return total;
}

function drawConversation() {
  const id = desk.selected;
  const task = id ? taskOf(id) : null;
  $("no-conversation").hidden = Boolean(task);
  $("conversation").hidden = !task;
  if (!task) {
    $("customer").replaceChildren(el("p", { className: "empty small",
      text: "The customer of the selected chat is shown here." }));
    desk.customer?.show(null, null, null);
    return;
  }
  const entry = chatEntry(id);
  const view = entry.view;
  const wrapping = task.phase === "wrapping";
  $("conversation-title").textContent = view?.customer?.name || task.customer_name || "Customer";
  const meta = [humanize(task.channel), desk.queues.get(task.queue_id), view?.conversation.subject]
    .filter(Boolean).join(" · ");
  $("conversation-meta").textContent = meta;
  // A call is controlled on the phone card, not with the chat's composer and buttons.
  const call = task.channel === "voice";
  const email = task.channel === "email";  // answered in the email panel, by email
  const messaging = MESSAGING_CHANNELS.has(task.channel);  // in the messaging panel
  $("composer").hidden = wrapping || call || email || messaging;
  $("end-button").hidden = wrapping || call || email || messaging;
  $("transfer-button").hidden = wrapping || call;
  document.querySelector(".log-wrap").hidden = email || messaging;
  desk.email?.show(email ? id : null, task);
  desk.messaging?.show(messaging ? id : null, task);
  $("wrap-up-note").textContent = `The ${call ? "call" : "chat"} has ended. Choose how it went, then finish to take new work.`;
  $("wrap-up").hidden = !wrapping;
  $("history-button").hidden = !view?.customer || entry.history !== null;
  drawMessages(entry);
  showCallDetails($("conversation"), view);
  drawTyping();
  if (wrapping) drawDisposition(task);
  $("customer").replaceChildren(view ? customerPanel(view, {
    agentNames: desk.agentNames, currentContactId: entry.contactId,
    onCall: desk.dialer && ((number) => desk.dialer.callNumber(number, task.queue_id)),
    codeLabels: new Map(desk.codes.map((c) => [c.code, c.label])) })
    : el("p", { className: "empty small", text: "Loading…" }));
  desk.customer?.show(view?.customer?.id, id, task);
  drawTimers();
}

// The log only grows while the same conversation is shown, so screen readers announce new
// messages rather than the whole conversation again; anything else redraws it.
function drawMessages(entry) {
  const log = $("messages");
  const myAgent = desk.state.agent.id;
  const messages = entry.view?.messages || [];
  const key = `${desk.selected}|${entry.history ? entry.history.length : "none"}`;
  const shown = log.dataset.key === key ? (log.shownIds || []) : null;
  const nearBottom = log.scrollHeight - log.scrollTop - log.clientHeight < 80;
  if (shown && shown.every((id, index) => messages[index]?.id === id)) {
    log.append(...messages.slice(shown.length).map((m) => messageItem(m, myAgent)));
  } else {
    const items = [];
    if (entry.history?.length) {
      let conversation = null;
      for (const message of entry.history) {
        if (message.conversation_id !== conversation) {
          conversation = message.conversation_id;
          items.push(dividerItem(`Earlier conversation · ${new Date(message.created_at).toLocaleDateString()}`));
        }
        items.push(messageItem(message, myAgent));
      }
      items.push(dividerItem("This conversation"));
    } else if (entry.history) {
      items.push(dividerItem("No earlier conversations"));
    }
    items.push(...messages.map((m) => messageItem(m, myAgent)));
    log.replaceChildren(...items);
  }
  const switched = !log.dataset.key?.startsWith(`${desk.selected}|`);
  log.dataset.key = key;
  log.shownIds = messages.map((m) => m.id);
  if (switched || nearBottom) log.scrollTop = log.scrollHeight;
}

function drawTyping() {
  const entry = desk.selected ? desk.chats.get(desk.selected) : null;
  const typing = entry && entry.typingUntil > Date.now() &&
    taskOf(desk.selected)?.phase !== "wrapping";
  $("typing").textContent = typing ? `${entry.typingName || "The customer"} is typing…` : "";
}

function drawDisposition(task) {
  const select = $("disposition");
  if (select.dataset.task === task.task_id) return;
  select.dataset.task = task.task_id;
  select.replaceChildren(el("option", { text: "No disposition", attrs: { value: "" } }),
    ...desk.codes.map((c) => el("option", { text: c.label || c.code, attrs: { value: c.code } })));
}

function drawTimers() {
  if (!desk.state) return;
  const now = serverNow();
  $("presence-timer").textContent = duration(now - desk.state.agent.presence_since);
  for (const li of $("offers").children) {
    const offer = desk.state.offers.find((o) => o.offer_id === li.dataset.offerId);
    if (!offer) continue;
    const total = Math.max(1, offer.offer_timeout_s);
    const left = Math.max(0, offer.expires_at - now);
    const bar = li.querySelector(".countdown-bar");
    bar.style.width = `${Math.min(100, (left / total) * 100)}%`;
    bar.classList.toggle("urgent", left < 10);
    li.querySelector(".countdown-text").textContent = `${Math.ceil(left)} s`;
  }
  const task = desk.selected ? taskOf(desk.selected) : null;
  if (task?.phase === "wrapping" && task.completed_at) {
    // A queue with a wrap-up limit frees the agent when it runs out: count down to it.
    const limited = task.wrap_up_s !== null && task.wrap_up_s !== undefined;
    const timer = $("wrap-up-timer");
    const left = task.completed_at + (task.wrap_up_s ?? 0) - now;
    timer.textContent = limited ? `${duration(Math.ceil(left))} left` : duration(now - task.completed_at);
    timer.setAttribute("aria-label", limited ? "Time left in wrap-up" : "Time in wrap-up");
  }
}

// --- actions ----------------------------------------------------------------------------------

async function setStatus(name) {
  askForAlerts();
  const state = await run(() => api("/api/desk/status", { method: "PUT", body: { status: name } }));
  if (state) applyState(state);
}

async function acceptOffer(offerId) {
  const before = new Set(desk.state.tasks.map((t) => t.conversation_id));
  const state = await run(() => api(`/api/desk/offers/${offerId}/accept`, { method: "POST" }));
  if (!state) return reloadState();
  applyState(state);
  const fresh = state.tasks.find((t) => !before.has(t.conversation_id));
  if (fresh) {
    select(fresh.conversation_id);
    $("reply").focus();
  }
}

async function rejectOffer(offerId) {
  const state = await run(() => api(`/api/desk/offers/${offerId}/reject`,
                                    { method: "POST", body: {} }));
  state ? applyState(state) : reloadState();
}

async function send(event) {
  event?.preventDefault();
  const id = desk.selected;
  const reply = $("reply");
  const text = reply.value.trim();
  if (!id || !text) return;
  const internal = $("internal").checked;
  reply.value = "";
  hideSuggestions();
  stopTyping();
  const message = await run(() => api(`/api/desk/conversations/${encodeURIComponent(id)}/messages`, {
    method: "POST", body: { text, internal, id: crypto.randomUUID() } }));
  if (message) {
    addMessage(message);
  } else {
    reply.value = text;
  }
}

async function sendFiles(files) {
  const id = desk.selected;
  const task = id && taskOf(id);
  if (!task || task.phase === "wrapping") return;
  for (const file of files) {
    try {
      addMessage(await uploadAttachment(`/api/desk/conversations/${encodeURIComponent(id)}/attachments`,
                                        file, { "X-CSRF-Token": desk.me.csrf_token }, desk.uploadRules));
    } catch (error) {
      fail(error);
    }
  }
}

async function endChat() {
  const id = desk.selected;
  const task = id && taskOf(id);
  if (!task || task.phase === "wrapping") return;
  const state = await run(() => api(`/api/desk/conversations/${encodeURIComponent(id)}/end`,
                                    { method: "POST" }));
  if (state) applyState(state);
}

async function finishWrapUp() {
  const task = desk.selected && taskOf(desk.selected);
  if (!task || task.phase !== "wrapping") return;
  const code = $("disposition").value || null;
  const state = await run(() => api(`/api/desk/tasks/${task.task_id}/wrap-up`,
                                    { method: "POST", body: { code } }));
  if (state) {
    toast("Wrap-up finished.");
    applyState(state);
  }
}

function toggleAvailable() {
  const status = desk.state?.agent.status;
  setStatus(status === "available" ? "break" : "available");
}

// --- transfer ---------------------------------------------------------------------------------

async function openTransfer() {
  const task = desk.selected && taskOf(desk.selected);
  if (!task || task.phase === "wrapping") return;
  await loadAgents();
  const queueSelect = $("transfer-queue");
  queueSelect.replaceChildren(...[...desk.queues].map(([id, name]) =>
    el("option", { text: name, attrs: { value: id } })));
  const colleagues = desk.agents.filter((a) => a.id !== desk.state.agent.id);
  $("transfer-agent").replaceChildren(...colleagues.map((a) =>
    el("option", { text: `${a.name} — ${humanize(a.status)}`, attrs: { value: a.id } })));
  $("transfer-form").querySelector('input[value="agent"]').disabled = !colleagues.length;
  $("transfer-dialog").showModal();
}

function transferTarget() {
  return $("transfer-form").querySelector('input[name="target"]:checked').value;
}

async function confirmTransfer(event) {
  event.preventDefault();
  const id = desk.selected;
  const body = transferTarget() === "queue" ? { queue_id: $("transfer-queue").value }
                                            : { agent_id: $("transfer-agent").value };
  if (!Object.values(body)[0]) return;
  const email = taskOf(id)?.channel === "email";  // an email is moved by the email API
  const messaging = MESSAGING_CHANNELS.has(taskOf(id)?.channel);  // a message by messaging's
  const base = email ? "emails" : messaging ? "messaging" : "desk";
  const state = await run(() => api(`/api/${base}/conversations/${encodeURIComponent(id)}/transfer`,
                                    { method: "POST", body }));
  if (state) {
    $("transfer-dialog").close();
    toast(email ? "Email transferred." : messaging ? "Conversation transferred." : "Chat transferred.");
    applyState(state);
  }
}

// --- reference data ---------------------------------------------------------------------------

async function loadQueues() {
  try {
    const queues = await api("/api/directory/queues");
    desk.queues = new Map(queues.map((q) => [q.id, q.name]));
  } catch {
    const config = await run(() => api(`/api/chat/config?tenant=${encodeURIComponent(desk.me.tenant_slug)}`));
    desk.queues = new Map((config?.queues || []).map((q) => [q.id, q.name]));
  }
}

async function loadAgents() {
  try {
    desk.agents = await api("/api/directory/agents");
    desk.agentNames = new Map(desk.agents.map((a) => [a.id, a.name]));
  } catch {
    desk.agents = [];
  }
}

async function loadCodes() {
  desk.codes = (await run(() => api("/api/desk/wrap-up-codes"))) || [];
}

async function loadUploadRules() {
  try {
    desk.uploadRules = await api(RULES_PATH);
    $("attach").accept = desk.uploadRules.accept;
  } catch {
    desk.uploadRules = null;
  }
}

async function loadCanned() {
  try {
    desk.canned = (await api("/api/directory/canned-responses")).map((c) => ({
      ...c, shortcut: (c.shortcut || "").replace(/^\//, "") }));
  } catch {
    desk.canned = [];
  }
  drawCanned();
}

function cannedForChat() {
  const task = desk.selected && taskOf(desk.selected);
  return desk.canned.filter((c) => !c.queue_id || c.queue_id === task?.queue_id);
}

function drawCanned() {
  $("canned-box").hidden = !desk.canned.length;
  $("canned").replaceChildren(el("option", { text: "Canned response…", attrs: { value: "" } }),
    ...desk.canned.map((c) => el("option", {
      text: c.shortcut ? `${c.title} (/${c.shortcut})` : c.title, attrs: { value: c.id } })));
}

function insertText(text, { replaceAll = false } = {}) {
  const reply = $("reply");
  if (replaceAll) {
    reply.value = text;
  } else {
    const { selectionStart: start, selectionEnd: end, value } = reply;
    reply.value = value.slice(0, start) + text + value.slice(end);
    reply.selectionStart = reply.selectionEnd = start + text.length;
  }
  reply.focus();
}

// Typing "/ship" offers the canned responses whose shortcut starts with "ship".
function suggest() {
  const match = /^\/(\S*)$/.exec($("reply").value);
  const found = match ? cannedForChat().filter((c) => c.shortcut &&
    c.shortcut.toLowerCase().startsWith(match[1].toLowerCase())) : [];
  const list = $("suggestion-list");
  list.replaceChildren(...found.slice(0, 6).map((c, index) => {
    const item = el("li", { attrs: { role: "option", "aria-selected": String(index === 0),
                                     "data-id": c.id } },
      el("strong", { text: `/${c.shortcut}` }), el("span", { className: "small muted", text: c.title }));
    item.addEventListener("mousedown", (event) => { event.preventDefault(); pick(c); });
    return item;
  }));
  $("suggestions").hidden = !found.length;
}

function pick(canned) {
  insertText(canned.text, { replaceAll: true });
  hideSuggestions();
}

function hideSuggestions() {
  $("suggestions").hidden = true;
}

// --- typing -----------------------------------------------------------------------------------

function typing() {
  const id = desk.selected;
  if (!id || $("internal").checked) return;
  if (Date.now() - desk.typingSent > TYPING_IDLE_MS - 1000) {
    desk.socket?.send({ type: "typing", conversation_id: id, is_typing: true });
    desk.typingSent = Date.now();
  }
  clearTimeout(desk.typingTimer);
  desk.typingTimer = setTimeout(stopTyping, TYPING_IDLE_MS);
}

function stopTyping() {
  clearTimeout(desk.typingTimer);
  if (desk.typingSent && desk.selected) {
    desk.socket?.send({ type: "typing", conversation_id: desk.selected, is_typing: false });
  }
  desk.typingSent = 0;
}

// --- live notices -----------------------------------------------------------------------------

function addMessage(message) {
  const entry = chatEntry(message.conversation_id);
  if (entry.loading) entry.arrived.push(message);
  if (entry.view && !entry.view.messages.some((m) => m.id === message.id)) {
    entry.view.messages.push(message);
  }
  const fromOthers = !(message.author_kind === "agent" && message.author_id === desk.state?.agent.id);
  if (message.author_kind === "customer") entry.typingUntil = 0;
  if (fromOthers && message.author_kind !== "system" &&
      (desk.selected !== message.conversation_id || document.hidden)) {
    entry.unread += desk.selected === message.conversation_id ? 0 : 1;
    if (document.hidden) notify(`New message from ${message.author_name || "customer"}`, message.text,
                                message.conversation_id);
  }
  if (desk.selected === message.conversation_id) drawConversation();
  drawChats();
}

function onNotice(frame) {
  if (desk.phone?.onFrame(frame) || desk.dialer?.onFrame(frame)) return;
  switch (frame.type) {
    case "state": {
      const { type, ...state } = frame;
      applyState(state);
      break;
    }
    case "offer.created":
      chime();
      reloadState().then(() => {
        const offer = desk.state?.offers.find((o) => o.offer_id === frame.offer_id);
        notify("New chat offer", offer ? `${offer.customer_name || "A customer"} — ${offer.topic || "no topic"}`
                                       : "A customer is waiting", frame.offer_id);
      });
      break;
    case "message.created":
      addMessage(frame);
      desk.email?.refresh(frame.conversation_id);
      desk.messaging?.refresh(frame.conversation_id);
      break;
    case "email.status":
      desk.email?.refresh(frame.conversation_id);
      break;
    case "messaging.status":
      desk.messaging?.refresh(frame.conversation_id);
      break;
    case "typing":
      if (frame.author_kind === "customer") {
        const entry = chatEntry(frame.conversation_id);
        entry.typingUntil = frame.is_typing ? Date.now() + TYPING_SHOWN_MS : 0;
        entry.typingName = frame.author_name;
        drawTyping();
        drawChats();
      }
      break;
    case "chat.ended":
      chatEntry(frame.conversation_id).typingUntil = 0;
      if (desk.chats.get(frame.conversation_id)?.view) loadConversation(frame.conversation_id);
      reloadState();
      break;
    case "offer.timed_out":
      toast("An offer ran out before you answered it.", "error");
      reloadState();
      break;
    case "offer.rescinded":
      toast("An offer was withdrawn (the customer left or it went elsewhere).");
      reloadState();
      break;
    default:
      if (/^(offer|task|agent)\./.test(frame.type)) reloadState();
  }
}

function onSocketStatus(status) {
  const box = $("connection");
  box.dataset.state = status;
  box.textContent = status === "online" ? "Connected" : "Reconnecting…";
  // An expired session also closes the socket: the API call sends us to the login page.
  if (status === "offline" && desk.state) api("/api/desk/state").catch(() => {});
}

function onSocketOpen() {
  desk.phone?.onOpen();
  // Notices sent while we were away are lost: read the state and open conversations again.
  reloadState();
  for (const [id, entry] of desk.chats) if (entry.view) loadConversation(id);
}

// --- keyboard, alerts -------------------------------------------------------------------------

function inField(target) {
  return target instanceof HTMLElement && (target.isContentEditable ||
    ["INPUT", "TEXTAREA", "SELECT"].includes(target.tagName));
}

function onKey(event) {
  unlockSound();
  if (event.altKey && !event.ctrlKey && !event.metaKey) {
    const digit = /^Digit([1-9])$/.exec(event.code);
    const offer = desk.state?.offers.find((o) => o.channel !== "voice");
    const actions = {
      KeyA: () => offer && acceptOffer(offer.offer_id),
      KeyR: () => offer && rejectOffer(offer.offer_id),
      KeyE: endChat,
      KeyT: openTransfer,
      KeyS: toggleAvailable,
      KeyW: finishWrapUp,
      KeyN: () => { const box = $("internal"); box.checked = !box.checked; box.dispatchEvent(new Event("change")); },
    };
    if (digit) {
      const task = desk.state?.tasks[Number(digit[1]) - 1];
      if (task) select(task.conversation_id);
      event.preventDefault();
    } else if (actions[event.code]) {
      actions[event.code]();
      event.preventDefault();
    }
    return;
  }
  if (event.key === "?" && !inField(event.target) && !document.querySelector("dialog[open]")) {
    $("help-dialog").showModal();
    event.preventDefault();
  }
}

function onReplyKey(event) {
  const open = !$("suggestions").hidden;
  if (event.key === "Escape" && open) {
    hideSuggestions();
    event.preventDefault();
  } else if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
    event.preventDefault();
    const first = open && $("suggestion-list").firstElementChild;
    if (first) pick(desk.canned.find((c) => c.id === first.dataset.id));
    else send();
  }
}

function askForAlerts() {
  unlockSound();
  if (notificationsWanted()) {
    askNotifications().then(() => { $("alerts-button").hidden = !notificationsWanted(); });
  }
}

// --- start ------------------------------------------------------------------------------------

function wire() {
  $("composer").addEventListener("submit", send);
  const reply = $("reply");
  reply.addEventListener("keydown", onReplyKey);
  reply.addEventListener("input", () => { suggest(); typing(); });
  reply.addEventListener("blur", () => setTimeout(hideSuggestions, 100));
  $("internal").addEventListener("change", () => {
    const note = $("internal").checked;
    $("composer").classList.toggle("note", note);
    reply.placeholder = note ? "Internal note — only agents and supervisors see it"
                             : "Write a reply — Enter sends, Shift+Enter adds a line";
    if (note) stopTyping();
  });
  $("canned").addEventListener("change", (event) => {
    const canned = desk.canned.find((c) => c.id === event.target.value);
    if (canned) insertText(canned.text);
    event.target.value = "";
  });
  $("attach").addEventListener("change", (event) => {
    sendFiles([...event.target.files]);
    event.target.value = "";
  });
  // Pictures load after they are drawn: keep the log at the bottom unless the agent scrolled up.
  const log = $("messages");
  log.addEventListener("scroll", () => {
    log.dataset.stick = String(log.scrollHeight - log.scrollTop - log.clientHeight < 80);
  });
  log.addEventListener("load", () => {
    if (log.dataset.stick !== "false") log.scrollTop = log.scrollHeight;
  }, true);
  const composer = $("composer");
  composer.addEventListener("dragover", (event) => {
    if (event.dataTransfer?.types.includes("Files")) {
      event.preventDefault();
      composer.classList.add("dropping");
    }
  });
  composer.addEventListener("dragleave", () => composer.classList.remove("dropping"));
  composer.addEventListener("drop", (event) => {
    composer.classList.remove("dropping");
    if (!event.dataTransfer?.files.length) return;
    event.preventDefault();
    sendFiles([...event.dataTransfer.files]);
  });
  $("end-button").addEventListener("click", endChat);
  $("transfer-button").addEventListener("click", openTransfer);
  $("transfer-form").addEventListener("submit", confirmTransfer);
  $("transfer-cancel").addEventListener("click", () => $("transfer-dialog").close());
  $("transfer-form").addEventListener("change", () => {
    const queue = transferTarget() === "queue";
    $("transfer-queue-box").hidden = !queue;
    $("transfer-agent-box").hidden = queue;
  });
  $("custom-status").addEventListener("change", (event) => {
    if (event.target.value) setStatus(event.target.value);
  });
  $("wrap-up-done").addEventListener("click", finishWrapUp);
  $("history-button").addEventListener("click", loadHistory);
  $("help-button").addEventListener("click", () => $("help-dialog").showModal());
  const alerts = $("alerts-button");
  alerts.hidden = !notificationsWanted();
  alerts.addEventListener("click", askForAlerts);
  document.addEventListener("keydown", onKey);
  document.addEventListener("pointerdown", unlockSound);
  document.addEventListener("visibilitychange", () => {
    if (!document.hidden && desk.selected) {
      chatEntry(desk.selected).unread = 0;
      drawChats();
    }
  });
  setInterval(() => { drawTimers(); drawTyping(); }, 1000);
}

async function loadHistory() {
  const entry = desk.selected && desk.chats.get(desk.selected);
  const customer = entry?.view?.customer;
  if (!customer) return;
  const messages = await run(() => api(`/api/desk/customers/${encodeURIComponent(customer.id)}/messages`));
  if (!messages) return;
  entry.history = messages.filter((m) => m.conversation_id !== desk.selected);
  drawConversation();
}

async function start() {
  wire();
  desk.me = await currentUser();
  try {
    await api("/api/desk/state");
  } catch (error) {
    // A supervisor or admin without an agent profile: say so instead of retrying forever.
    $("conversation-placeholder-title").textContent = "You are not set up as an agent";
    $("no-conversation").querySelector("p").textContent = error.message;
    onSocketStatus("offline");
    $("connection").textContent = "Not connected";
    return;
  }
  await Promise.all([loadQueues(), loadAgents(), loadCodes(), loadCanned(), loadUploadRules()]);
  desk.phone = mountSoftphone({
    send: (frame) => desk.socket?.send(frame),
    queueName: (taskId) => {
      const work = desk.state?.offers.find((o) => o.task_id === taskId) ||
                   desk.state?.tasks.find((t) => t.task_id === taskId);
      return desk.queues.get(work?.queue_id) || "";
    },
    targets: () => {
      loadAgents();
      return { queues: [...desk.queues],
               agents: desk.agents.filter((a) => a.id !== desk.state?.agent.id)
                 .map((a) => ({ id: a.id, label: `${a.name} — ${humanize(a.status)}` })) };
    },
  });
  desk.dialer = mountDialer({ queues: () => desk.queues });
  desk.email = mountEmail($("email-panel"), { onFinished: reloadState });
  desk.messaging = mountMessaging($("messaging-panel"), { onFinished: reloadState });
  desk.customer = mountCustomerPanel($("customer-profile"), {
    agentNames: () => desk.agentNames, onChanged: (id) => loadConversation(id) });
  desk.socket = liveSocket("/api/desk/ws", { onMessage: onNotice, onOpen: onSocketOpen,
                                             onStatus: onSocketStatus });
}

start().catch(fail);
