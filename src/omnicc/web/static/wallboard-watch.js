// The watch panel: one conversation's messages live (internal notes and whispers included),
// a whisper box, barge-in and, once barged in, a box to write to the customer. Monitoring is
// silent; the socket follows the conversation with a `watch` frame, sent again after a
// reconnection, and the history is fetched again then since missed notices are not replayed.

import { api, toast } from "/static/session.js";

// An idempotency key; crypto.randomUUID exists only in secure contexts (a TV on plain http).
function messageKey() {
  if (globalThis.crypto?.randomUUID) return crypto.randomUUID();
  return `${Date.now().toString(36)}-${Math.random().toString(36).slice(2)}`;
}

const KIND_LABEL = { customer: "Customer", agent: "Agent", supervisor: "Supervisor",
                     system: "System" };

export class WatchPanel {
  constructor(socket, { onClose } = {}) {
    this.socket = socket;
    this.onClose = onClose;
    this.conversationId = null;
    this.opener = null;
    this.seen = new Set();
    this.barged = new Set();
    this.typingTimer = null;
    this.panel = document.getElementById("watch-panel");
    this.log = document.getElementById("watch-log");
    this.meta = document.getElementById("watch-meta");
    this.title = document.getElementById("watch-title");
    this.typing = document.getElementById("watch-typing");
    this.ended = document.getElementById("watch-ended");
    this.whisperForm = document.getElementById("whisper-form");
    this.whisperText = document.getElementById("whisper-text");
    this.sayForm = document.getElementById("say-form");
    this.sayText = document.getElementById("say-text");
    this.bargeButton = document.getElementById("barge");
    document.getElementById("watch-close").addEventListener("click", () => this.close());
    this.panel.addEventListener("keydown", (event) => {
      if (event.key === "Escape") this.close();
    });
    this.whisperForm.addEventListener("submit", (event) => {
      event.preventDefault();
      this.send("whisper", this.whisperText);
    });
    this.sayForm.addEventListener("submit", (event) => {
      event.preventDefault();
      this.send("messages", this.sayText);
    });
    this.bargeButton.addEventListener("click", () => this.barge());
    for (const box of [this.whisperText, this.sayText]) {
      box.addEventListener("keydown", (event) => {
        if (event.key === "Enter" && !event.shiftKey) {
          event.preventDefault();
          box.form.requestSubmit();
        }
      });
    }
  }

  get isOpen() { return this.conversationId !== null; }

  async open(row, names, opener) {
    if (this.conversationId && this.conversationId !== row.conversation_id) {
      this.socket.send({ type: "unwatch", conversation_id: this.conversationId });
    }
    this.conversationId = row.conversation_id;
    this.opener = opener;
    this.describe(row, names);
    this.ended.hidden = true;
    this.setEnabled(true);
    this.showBarged(this.barged.has(row.conversation_id));
    this.panel.hidden = false;
    document.body.classList.add("wb-watching");
    this.socket.send({ type: "watch", conversation_id: row.conversation_id });
    await this.reload();
    this.whisperText.focus();
  }

  describe(row, names) {
    const customer = row.customer_name || "Web visitor";
    this.title.textContent = `Watching ${customer}`;
    const agent = row.agent_id ? names.agents.get(row.agent_id) || "an agent" : "no agent yet";
    this.meta.textContent = `${names.queues.get(row.queue_id) || "–"} · ${agent}`;
  }

  // After every (re)connection: follow the conversation again and catch up.
  resume() {
    if (!this.conversationId) return;
    this.socket.send({ type: "watch", conversation_id: this.conversationId });
    this.reload();
  }

  async reload() {
    const id = this.conversationId;
    try {
      const view = await api(`/api/supervisor/conversations/${encodeURIComponent(id)}`);
      if (id !== this.conversationId) return;
      this.log.replaceChildren();
      this.seen.clear();
      for (const message of view.messages) this.append(message, { scroll: false });
      this.log.scrollTop = this.log.scrollHeight;
    } catch (error) {
      toast(`Could not load the chat: ${error.message}`, "error");
    }
  }

  close() {
    if (!this.conversationId) return;
    this.socket.send({ type: "unwatch", conversation_id: this.conversationId });
    this.conversationId = null;
    this.panel.hidden = true;
    document.body.classList.remove("wb-watching");
    this.log.replaceChildren();
    this.seen.clear();
    this.onClose?.();
    if (this.opener?.isConnected) this.opener.focus();
    this.opener = null;
  }

  // Frames of the supervisor socket that concern the watched conversation.
  handle(frame) {
    if (!this.conversationId || frame.conversation_id !== this.conversationId) return;
    if (frame.type === "message.created") {
      this.append(frame, { scroll: true });
      this.showTyping(null);
    } else if (frame.type === "typing") {
      this.showTyping(frame.is_typing ? frame.author_name || KIND_LABEL[frame.author_kind] : null);
    }
  }

  // The conversation's row in the latest wallboard frame; null when the chat is over.
  update(row, names) {
    if (!this.conversationId) return;
    if (row) {
      this.describe(row, names);
      return;
    }
    if (this.ended.hidden) {
      this.ended.hidden = false;
      this.setEnabled(false);
    }
  }

  append(message, { scroll }) {
    if (this.seen.has(message.id)) return;
    this.seen.add(message.id);
    const item = document.createElement("article");
    item.className = `wb-message ${message.author_kind} ${message.visibility}`;
    const head = document.createElement("header");
    const who = document.createElement("strong");
    who.textContent = message.author_name || KIND_LABEL[message.author_kind] || "";
    head.append(who);
    if (message.visibility !== "public") {
      const tag = document.createElement("span");
      tag.className = `badge ${message.visibility}`;
      tag.textContent = message.visibility === "whisper" ? "Whisper" : "Internal note";
      head.append(tag);
    }
    const time = document.createElement("time");
    time.dateTime = message.created_at;
    time.textContent = new Date(message.created_at).toLocaleTimeString([], {
      hour: "2-digit", minute: "2-digit" });
    head.append(time);
    const text = document.createElement("p");
    text.textContent = message.text;
    item.append(head, text);
    const nearBottom = this.log.scrollHeight - this.log.scrollTop - this.log.clientHeight < 80;
    this.log.append(item);
    if (scroll && nearBottom) this.log.scrollTop = this.log.scrollHeight;
  }

  showTyping(name) {
    clearTimeout(this.typingTimer);
    this.typing.textContent = name ? `${name} is typing…` : "";
    if (name) this.typingTimer = setTimeout(() => { this.typing.textContent = ""; }, 8000);
  }

  showBarged(barged) {
    this.bargeButton.hidden = barged;
    document.getElementById("barge-hint").hidden = barged;
    this.sayForm.hidden = !barged;
    document.getElementById("watch-mode").textContent = barged
      ? "You have joined this chat: the customer sees what you send below."
      : "Silent: nobody in the chat sees that you are watching.";
  }

  setEnabled(enabled) {
    for (const control of [this.whisperText, this.sayText, this.bargeButton,
      ...this.panel.querySelectorAll("form button")]) control.disabled = !enabled;
  }

  async barge() {
    const id = this.conversationId;
    this.bargeButton.disabled = true;
    try {
      await api(`/api/supervisor/conversations/${encodeURIComponent(id)}/barge`,
                { method: "POST" });
      this.barged.add(id);
      if (id === this.conversationId) {
        this.showBarged(true);
        this.sayText.focus();
      }
    } catch (error) {
      toast(`Could not barge in: ${error.message}`, "error");
    } finally {
      this.bargeButton.disabled = false;
    }
  }

  async send(path, box) {
    const text = box.value.trim();
    if (!text || !this.conversationId) return;
    const button = box.form.querySelector("button[type=submit]");
    button.disabled = true;
    try {
      const message = await api(
        `/api/supervisor/conversations/${encodeURIComponent(this.conversationId)}/${path}`,
        { method: "POST", body: { text, id: messageKey() } });
      box.value = "";
      this.append(message, { scroll: true });
      this.log.scrollTop = this.log.scrollHeight;
    } catch (error) {
      toast(`Not sent: ${error.message}`, "error");
    } finally {
      button.disabled = false;
      box.focus();
    }
  }
}
