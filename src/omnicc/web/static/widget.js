/* OmniCC web chat widget: one script tag, no build step, no dependencies.

     <script src="https://host/static/widget.js" data-tenant="acme" data-title="Chat with us"
             data-color="#1d4ed8" data-prechat="true" defer></script>

   The server is the origin of this script's own src. Everything the widget draws lives in a
   Shadow DOM, so the host page's CSS cannot break it and it cannot break the host page. The
   protocol (hello/welcome, start, message, typing, leave, rate) is in docs/widget.md. Text
   from anyone is always set with textContent. */
(() => {
  "use strict";

  const script = document.currentScript
    || document.querySelector("script[src*='widget.js'][data-tenant]");
  if (!script || window.__omniccWidget) return;
  window.__omniccWidget = true;

  const tenant = (script.dataset.tenant || "").trim();
  if (!tenant) {
    console.error("OmniCC widget: the script tag needs data-tenant");
    return;
  }
  const server = new URL(script.dataset.server || script.src, location.href).origin;
  const wsServer = server.replace(/^http/, "ws");
  const title = (script.dataset.title || "Chat with us").slice(0, 80);
  const color = /^#[0-9a-f]{3}([0-9a-f]{3})?$/i.test(script.dataset.color || "")
    ? script.dataset.color : "#1d4ed8";
  const usePrechat = (script.dataset.prechat || "true").toLowerCase() !== "false";
  const fixedQueue = (script.dataset.queue || "").trim();
  const offerCallback = (script.dataset.callback || "true").toLowerCase() !== "false";

  const TOKEN_KEY = `omnicc:${tenant}:visitor`;
  const OPEN_KEY = `omnicc:${tenant}:open`;
  const TYPING_REFRESH_MS = 3000;
  const TYPING_IDLE_MS = 4000;
  const TYPING_SHOWN_MS = 8000;
  const BACKOFF_MAX_MS = 30000;
  const OFFLINE_TEXT = "We're away right now — leave a message and we'll answer here and by email";

  // --- small helpers ----------------------------------------------------------------------------

  const storage = {
    get(store, key) { try { return store.getItem(key); } catch { return null; } },
    set(store, key, value) { try { store.setItem(key, value); } catch { /* private mode */ } },
  };

  function newId() {
    if (window.crypto && crypto.randomUUID) return crypto.randomUUID();
    const bytes = new Uint8Array(16);
    crypto.getRandomValues(bytes);
    return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
  }

  /** An element with attributes and children; strings become text nodes, never HTML. */
  function h(tag, attributes = {}, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attributes)) {
      if (value === false || value === null || value === undefined) continue;
      if (key === "text") node.textContent = value;
      else if (key === "class") node.className = value;
      else node.setAttribute(key, value === true ? "" : String(value));
    }
    for (const child of children) {
      if (child !== null && child !== undefined) {
        node.append(typeof child === "string" ? document.createTextNode(child) : child);
      }
    }
    return node;
  }

  function icon(path) {
    const ns = "http://www.w3.org/2000/svg";
    const svg = document.createElementNS(ns, "svg");
    svg.setAttribute("viewBox", "0 0 24 24");
    svg.setAttribute("aria-hidden", "true");
    svg.setAttribute("focusable", "false");
    const shape = document.createElementNS(ns, "path");
    shape.setAttribute("d", path);
    svg.append(shape);
    return svg;
  }

  /** White or near-black text, whichever reads better on the brand colour. */
  function textOn(hex) {
    let value = hex.slice(1);
    if (value.length === 3) value = [...value].map((c) => c + c).join("");
    const channel = (i) => {
      const c = parseInt(value.slice(i, i + 2), 16) / 255;
      return c <= 0.03928 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4;
    };
    const luminance = 0.2126 * channel(0) + 0.7152 * channel(2) + 0.0722 * channel(4);
    return (1.05 / (luminance + 0.05)) >= ((luminance + 0.05) / 0.05) ? "#ffffff" : "#111827";
  }

  function positionText(position, ewtS) {
    const place = `You are number ${position} in line`;
    if (ewtS === null || ewtS === undefined) return place;
    return `${place}, about ${Math.max(1, Math.round(ewtS / 60))} min`;
  }

  function clock(iso) {
    const at = new Date(iso);
    return Number.isNaN(at.getTime()) ? ""
      : at.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  }

  // --- the DOM, inside a shadow root --------------------------------------------------------------

  const CHAT_ICON = "M4 4h16a2 2 0 0 1 2 2v10a2 2 0 0 1-2 2H8l-4 4V6a2 2 0 0 1 2-2z";
  const CLOSE_ICON = "M6.4 5 12 10.6 17.6 5 19 6.4 13.4 12 19 17.6 17.6 19 12 13.4 6.4 19 5 17.6 10.6 12 5 6.4z";
  const MINIMISE_ICON = "M5 11h14v2H5z";
  const SEND_ICON = "M3 20.5 21 12 3 3.5v6.6l12 1.9-12 1.9z";
  const CLIP_ICON = "M16.5 6v11.5a4 4 0 0 1-8 0V5a2.5 2.5 0 0 1 5 0v10.5a1 1 0 0 1-2 0V6H10v9.5a2.5 2.5 0 0 0 5 0V5a4 4 0 0 0-8 0v12.5a5.5 5.5 0 0 0 11 0V6z";
  const PHONE_ICON = "M6.6 10.8a15.1 15.1 0 0 0 6.6 6.6l2.2-2.2a1 1 0 0 1 1-.25 11.4 11.4 0 0 0 3.6.57 1 1 0 0 1 1 1V20a1 1 0 0 1-1 1A17 17 0 0 1 3 4a1 1 0 0 1 1-1h3.5a1 1 0 0 1 1 1c0 1.25.2 2.45.57 3.57a1 1 0 0 1-.25 1z";
  const FILE_ICON = "M6 2h8l6 6v12a2 2 0 0 1-2 2H6a2 2 0 0 1-2-2V4a2 2 0 0 1 2-2zm7 1.5V9h5.5zM8 13v2h8v-2zm0 4v2h5v-2z";

  const host = h("div", { id: "omnicc-chat-widget", "data-omnicc": "widget" });
  const root = host.attachShadow({ mode: "open" });
  const style = document.createElement("style");
  style.textContent = `
:host { all: initial; }
* { box-sizing: border-box; }
[hidden] { display: none !important; }
.frame { --brand: ${color}; --on-brand: ${textOn(color)}; --text: #172033; --muted: #4a5568;
  --border: #d5dbe5; --soft: #eef1f6; --danger: #b91c1c;
  font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "Noto Sans", sans-serif;
  color: var(--text); }
button, input, select, textarea { font: inherit; color: inherit; }
:focus-visible { outline: 3px solid #f59e0b; outline-offset: 2px; }
.sr { position: absolute; width: 1px; height: 1px; overflow: hidden; clip: rect(0 0 0 0);
  white-space: nowrap; }
.launcher { position: fixed; right: 20px; bottom: 20px; z-index: 2147483000; width: 60px;
  height: 60px; border-radius: 50%; border: 0; background: var(--brand); color: var(--on-brand);
  box-shadow: 0 6px 20px rgb(16 24 40 / 28%); cursor: pointer; display: grid; place-items: center; }
.launcher svg { width: 28px; height: 28px; fill: currentColor; }
.launcher .unread { position: absolute; top: -2px; right: -2px; min-width: 22px; height: 22px;
  padding: 0 6px; border-radius: 11px; background: var(--danger); color: #fff; font-size: 12px;
  font-weight: 700; line-height: 22px; text-align: center; }
.panel { position: fixed; right: 20px; bottom: 92px; z-index: 2147483000; width: 380px;
  height: min(620px, calc(100vh - 120px)); display: flex; flex-direction: column;
  background: #fff; border: 1px solid var(--border); border-radius: 14px; overflow: hidden;
  box-shadow: 0 16px 48px rgb(16 24 40 / 26%); }
.head { background: var(--brand); color: var(--on-brand); padding: 12px 10px 12px 16px;
  display: flex; align-items: center; gap: 8px; }
.head-text { flex: 1; min-width: 0; }
.head h2 { margin: 0; font-size: 16px; font-weight: 650; line-height: 1.25; }
.head p { margin: 2px 0 0; font-size: 13px; opacity: .92; }
.icon-button { background: transparent; border: 0; color: inherit; width: 36px; height: 36px;
  border-radius: 8px; cursor: pointer; display: grid; place-items: center; }
.icon-button:hover { background: rgb(255 255 255 / 16%); }
.icon-button svg { width: 20px; height: 20px; fill: currentColor; }
.end { background: rgb(255 255 255 / 14%); border: 1px solid currentColor; color: inherit;
  border-radius: 8px; padding: 4px 10px; font-size: 13px; cursor: pointer; }
.banner { margin: 0; padding: 6px 14px; font-size: 13px; background: #fef3c7; color: #92400e; }
.body { flex: 1; min-height: 0; display: flex; flex-direction: column; }
.scroll { flex: 1; min-height: 0; overflow-y: auto; padding: 14px; }
form.prechat { padding: 16px; overflow-y: auto; }
label { display: block; font-weight: 600; font-size: 13px; margin: 10px 0 4px; }
input, select, textarea { width: 100%; border: 1px solid var(--border); border-radius: 8px;
  padding: 8px 10px; background: #fff; }
.conversation .topic-field { padding: 0 14px 8px; }
.hint { font-size: 13px; color: var(--muted); margin: 0 0 6px; }
.notice { margin: 10px 0 0; padding: 10px 12px; border-radius: 10px; background: #fef3c7;
  color: #78350f; font-size: 14px; }
.error { margin: 8px 0 0; color: var(--danger); font-size: 13px; }
.primary { margin-top: 14px; width: 100%; border: 0; border-radius: 8px; padding: 10px 14px;
  background: var(--brand); color: var(--on-brand); font-weight: 650; cursor: pointer; }
.secondary { margin-top: 8px; width: 100%; border: 1px solid var(--border); border-radius: 8px;
  padding: 9px 14px; background: #fff; cursor: pointer; }
ol.log { list-style: none; margin: 0; padding: 0; display: flex; flex-direction: column; gap: 8px; }
.msg { max-width: 82%; display: flex; flex-direction: column; }
.msg .who { font-size: 12px; color: var(--muted); margin: 0 0 2px 4px; }
.msg .bubble { padding: 8px 12px; border-radius: 14px; background: var(--soft);
  white-space: pre-wrap; overflow-wrap: anywhere; }
.msg .meta { font-size: 11px; color: var(--muted); margin: 2px 6px 0; }
.msg.mine { align-self: flex-end; align-items: flex-end; }
.msg.mine .bubble { background: var(--brand); color: var(--on-brand); border-bottom-right-radius: 4px; }
.msg.agent .bubble { border-bottom-left-radius: 4px; }
.msg.failed .bubble { background: #fee2e2; color: var(--danger); }
.msg.system { align-self: center; max-width: 100%; font-size: 12px; color: var(--muted);
  text-align: center; }
.divider { align-self: stretch; text-align: center; font-size: 12px; color: var(--muted);
  border-top: 1px solid var(--border); margin-top: 6px; padding-top: 4px; }
.status { margin: 0; padding: 8px 14px; font-size: 13px; color: var(--muted);
  border-top: 1px solid var(--soft); }
.status:empty { display: none; }
.typing { margin: 0; padding: 0 14px 6px; font-size: 13px; color: var(--muted); font-style: italic; }
form.composer { display: flex; gap: 8px; padding: 10px; border-top: 1px solid var(--border);
  align-items: flex-end; }
form.composer textarea { resize: none; min-height: 42px; max-height: 140px; }
form.composer button { border: 0; border-radius: 8px; width: 44px; height: 42px; flex: none;
  background: var(--brand); color: var(--on-brand); cursor: pointer; display: grid; place-items: center; }
form.composer button svg { width: 20px; height: 20px; fill: currentColor; }
form.composer button:disabled { opacity: .5; cursor: not-allowed; }
form.composer button.attach { background: transparent; color: var(--muted); width: 36px;
  border: 1px solid var(--border); }
form.composer button.attach:hover { background: var(--soft); color: var(--text); }
form.composer button.attach[aria-disabled="true"] { opacity: .55; }
.conversation { position: relative; }
.drop { position: absolute; inset: 8px; z-index: 1; display: grid; place-items: center;
  border: 2px dashed var(--brand); border-radius: 12px; background: rgb(255 255 255 / 94%);
  font-weight: 650; color: var(--text); pointer-events: none; }
.msg .bubble.files { display: flex; flex-direction: column; gap: 6px; padding: 6px; }
.msg .bubble.files > span { padding: 2px 6px; }
.file { display: flex; align-items: center; gap: 8px; width: 100%; min-width: 0; text-align: left;
  border: 1px solid var(--border); border-radius: 10px; padding: 8px 10px; background: #fff;
  color: var(--text); cursor: pointer; }
.file:hover { border-color: var(--brand); }
.file svg { width: 22px; height: 22px; flex: none; fill: var(--muted); }
.file .name { flex: 1; min-width: 0; overflow: hidden; text-overflow: ellipsis; white-space: nowrap;
  font-weight: 600; text-decoration: underline; }
.file .size { flex: none; font-size: 12px; color: var(--muted); }
.file[aria-busy="true"] { cursor: progress; opacity: .7; }
figure.picture { margin: 0; display: flex; flex-direction: column; gap: 4px; }
figure.picture a { display: block; border-radius: 10px; overflow: hidden; background: #fff;
  min-width: 64px; min-height: 48px; }
figure.picture img { display: block; max-width: 220px; max-height: 200px; width: auto;
  height: auto; }
figure.picture figcaption { font-size: 12px; padding: 0 4px; overflow-wrap: anywhere; }
.msg.mine .file, .msg.mine figure.picture a { border-color: rgb(255 255 255 / 40%); }
.upload { display: flex; flex-direction: column; gap: 6px; min-width: 180px; }
.upload-name { display: flex; align-items: center; gap: 6px; overflow-wrap: anywhere; }
.upload-name svg { width: 18px; height: 18px; flex: none; fill: currentColor; }
.upload progress { width: 100%; height: 6px; accent-color: currentColor; }
form.csat { padding: 16px; overflow-y: auto; }
fieldset { border: 0; margin: 0; padding: 0; }
legend { font-weight: 650; font-size: 16px; margin-bottom: 8px; }
.stars { display: flex; gap: 4px; }
.stars label { margin: 0; cursor: pointer; font-size: 32px; line-height: 1; color: #cbd5e1;
  padding: 2px; border-radius: 6px; }
.stars label.on { color: #f59e0b; }
.stars input { position: absolute; opacity: 0; width: 1px; height: 1px; }
.stars input:focus-visible + span { outline: 3px solid #f59e0b; outline-offset: 2px; border-radius: 4px; }
.thanks { padding: 24px 16px; text-align: center; }
.callback-offer { display: flex; align-items: center; justify-content: center; gap: 8px;
  flex-wrap: wrap; margin: 12px 0 0; font-size: 14px; color: var(--muted); }
.conversation .callback-offer { margin: 0; padding: 0 14px 8px; }
.link { border: 0; background: none; padding: 2px 4px; color: var(--brand); font-weight: 650;
  text-decoration: underline; cursor: pointer; border-radius: 4px; }
.link svg { width: 16px; height: 16px; fill: currentColor; vertical-align: -3px; margin-right: 4px; }
form.callback { padding: 16px; overflow-y: auto; }
form.callback .field-hint { font-size: 12px; color: var(--muted); margin: 4px 0 0; }
form.callback .field-error { margin: 4px 0 0; color: var(--danger); font-size: 13px; }
form.callback [aria-invalid="true"] { border-color: var(--danger); box-shadow: 0 0 0 1px var(--danger); }
form.callback fieldset { margin-top: 12px; }
form.callback legend { font-size: 13px; font-weight: 600; margin: 0 0 4px; }
.choice { display: flex; align-items: center; gap: 8px; font-weight: 400; font-size: 14px;
  margin: 6px 0; cursor: pointer; }
.choice input { width: 18px; height: 18px; margin: 0; accent-color: var(--brand); flex: none; }
.slot-pickers { display: grid; grid-template-columns: 1fr 1fr; gap: 8px; margin: 4px 0 0 26px; }
.slot-pickers label { margin: 0 0 4px; }
.trap { position: absolute; left: -10000px; width: 1px; height: 1px; overflow: hidden; }
.called { padding: 24px 16px; text-align: center; }
.called .big { font-size: 17px; font-weight: 650; margin: 0 0 6px; }
@media (max-width: 480px) {
  .panel { inset: 0; width: 100%; height: 100%; border-radius: 0; border: 0; }
  .frame.open .launcher { display: none; }
}
@media (prefers-reduced-motion: no-preference) {
  .panel { animation: rise .16s ease-out; }
  @keyframes rise { from { transform: translateY(12px); opacity: 0; } }
}`;

  const unread = h("span", { class: "unread", "aria-hidden": "true", hidden: true });
  const launcher = h("button", {
    type: "button", class: "launcher", "aria-label": "Open chat", "aria-expanded": "false",
    "aria-controls": "omnicc-panel", "data-testid": "launcher",
  }, icon(CHAT_ICON), unread);

  const headTitle = h("h2", { id: "omnicc-title", text: title });
  const headStatus = h("p", { id: "omnicc-subtitle", "data-testid": "status", text: "" });
  const endButton = h("button", { type: "button", class: "end", "data-testid": "end-chat",
    text: "End chat", hidden: true });
  const minimise = h("button", { type: "button", class: "icon-button", "aria-label": "Minimise chat",
    "data-testid": "minimise" }, icon(MINIMISE_ICON));
  const banner = h("p", { class: "banner", role: "status", "data-testid": "connection", hidden: true });

  // Pre-chat form.
  const nameInput = h("input", { id: "omnicc-name", name: "name", autocomplete: "name",
    maxlength: 200, required: true });
  const emailInput = h("input", { id: "omnicc-email", name: "email", type: "email",
    autocomplete: "email", maxlength: 320 });
  const topicSelect = h("select", { id: "omnicc-topic", name: "topic", required: true });
  const prechatNotice = h("p", { class: "notice", "data-testid": "offline-notice",
    text: OFFLINE_TEXT, hidden: true });
  const prechatError = h("p", { class: "error", role: "alert", hidden: true });
  const emailLabel = h("label", { for: "omnicc-email", text: "Email" });
  // One topic field: in the form, or above the composer for a visitor we already know.
  const topicField = h("div", { class: "topic-field" },
    h("label", { for: "omnicc-topic", text: "Topic" }), topicSelect);
  const prechat = h("form", { class: "prechat", "data-testid": "prechat", novalidate: true,
    "aria-label": "Before we start" },
    h("p", { class: "hint", text: "Tell us a little about you and we'll connect you with the right team." }),
    h("label", { for: "omnicc-name", text: "Name" }), nameInput,
    emailLabel, emailInput,
    topicField, prechatNotice, prechatError,
    h("button", { type: "submit", class: "primary", text: "Start chat" }));

  // Conversation.
  const log = h("ol", { class: "log", role: "log", "aria-live": "polite",
    "aria-label": "Conversation", "data-testid": "messages" });
  const scroll = h("div", { class: "scroll" }, log);
  const chatNotice = h("p", { class: "notice", "data-testid": "chat-offline-notice",
    text: OFFLINE_TEXT, hidden: true });
  scroll.append(chatNotice);
  const typingLine = h("p", { class: "typing", "aria-live": "polite", "data-testid": "typing" });
  const positionLine = h("p", { class: "status", role: "status", "data-testid": "position" });
  const chatError = h("p", { class: "error", role: "alert", hidden: true,
    style: "margin: 0; padding: 4px 14px" });
  const messageInput = h("textarea", { id: "omnicc-message", name: "message", rows: 1,
    placeholder: "Type your message…", maxlength: 16384 });
  const sendButton = h("button", { type: "submit", "aria-label": "Send", "data-testid": "send" },
    icon(SEND_ICON));
  // The file input stays hidden: the paperclip opens it, so it needs no label of its own.
  const fileInput = h("input", { type: "file", multiple: true, hidden: true, tabindex: -1,
    "data-testid": "file-input" });
  const attachButton = h("button", { type: "button", class: "attach", "aria-label": "Attach a file",
    title: "Attach a file", "aria-disabled": "true", "data-testid": "attach" }, icon(CLIP_ICON));
  const composer = h("form", { class: "composer", "data-testid": "composer" },
    attachButton, fileInput,
    h("label", { for: "omnicc-message", class: "sr", text: "Message" }), messageInput, sendButton);
  const dropZone = h("div", { class: "drop", "data-testid": "drop-zone", hidden: true,
    text: "Drop files here to send them" });
  const conversation = h("div", { class: "body conversation", "data-testid": "conversation", hidden: true },
    scroll, typingLine, positionLine, chatError, composer, dropZone);

  // Satisfaction survey.
  const starLabels = [];
  const stars = h("div", { class: "stars" });
  for (let score = 1; score <= 5; score += 1) {
    const label = h("label", {},
      h("input", { type: "radio", name: "score", value: score,
        "aria-label": `${score} star${score === 1 ? "" : "s"}` }),
      h("span", { "aria-hidden": "true", text: "★" }));
    starLabels.push(label);
    stars.append(label);
  }
  const commentInput = h("textarea", { id: "omnicc-comment", name: "comment", rows: 3,
    maxlength: 2000 });
  const csatError = h("p", { class: "error", role: "alert", hidden: true });
  const skipButton = h("button", { type: "button", class: "secondary", text: "No thanks" });
  const csat = h("form", { class: "csat", "data-testid": "csat", novalidate: true, hidden: true },
    h("p", { class: "hint", text: "The chat has ended." }),
    h("fieldset", {}, h("legend", { text: "How did we do?" }), stars),
    h("label", { for: "omnicc-comment", text: "Comment" }), commentInput, csatError,
    h("button", { type: "submit", class: "primary", text: "Send rating" }), skipButton);

  const thanksText = h("p", { text: "" });
  const againButton = h("button", { type: "button", class: "primary", text: "Start a new chat" });
  const thanks = h("div", { class: "thanks", "data-testid": "thanks", role: "status", hidden: true },
    thanksText, againButton);

  // "Call me back": the offer next to starting a chat, its form, and its confirmation.
  const callbackButton = h("button", { type: "button", class: "link", "data-testid": "callback" },
    icon(PHONE_ICON), "Call me back");
  const callbackOffer = h("p", { class: "callback-offer", hidden: true },
    h("span", { text: "Prefer a phone call?" }), callbackButton);
  const cbTopic = h("select", { id: "omnicc-cb-topic", name: "queue" });
  const cbTopicField = h("div", {}, h("label", { for: "omnicc-cb-topic", text: "What should we call about?" }), cbTopic);
  const cbNumber = h("input", { id: "omnicc-cb-number", name: "number", type: "tel",
    autocomplete: "tel", inputmode: "tel", maxlength: 40, required: true,
    "aria-describedby": "omnicc-cb-number-hint omnicc-cb-number-error" });
  const cbNumberError = h("p", { id: "omnicc-cb-number-error", class: "field-error",
    "aria-live": "polite" });
  const cbName = h("input", { id: "omnicc-cb-name", name: "name", autocomplete: "name",
    maxlength: 200 });
  const cbAsap = h("input", { type: "radio", name: "when", value: "asap", checked: true,
    "aria-describedby": "omnicc-cb-asap-hint" });
  const cbLater = h("input", { type: "radio", name: "when", value: "later" });
  const cbAsapHint = h("span", { id: "omnicc-cb-asap-hint", class: "sr", text: "" });
  const cbDay = h("select", { id: "omnicc-cb-day", name: "day" });
  const cbTime = h("select", { id: "omnicc-cb-time", name: "time",
    "aria-describedby": "omnicc-cb-zone omnicc-cb-when-error" });
  const cbZone = h("p", { id: "omnicc-cb-zone", class: "field-hint", text: "" });
  const cbWhenError = h("p", { id: "omnicc-cb-when-error", class: "field-error",
    "aria-live": "polite" });
  const cbPickers = h("div", { class: "slot-pickers", hidden: true },
    h("div", {}, h("label", { for: "omnicc-cb-day", text: "Day" }), cbDay),
    h("div", {}, h("label", { for: "omnicc-cb-time", text: "Time" }), cbTime));
  // A field people never see or reach; bots fill in every field they find.
  const cbTrap = h("input", { id: "omnicc-cb-website", name: "website", tabindex: -1,
    autocomplete: "off" });
  const cbError = h("p", { class: "error", role: "alert", hidden: true });
  const cbSubmit = h("button", { type: "submit", class: "primary", text: "Request a call" });
  const cbBack = h("button", { type: "button", class: "secondary", text: "Back to chat" });
  const callbackForm = h("form", { class: "callback", "data-testid": "callback-form",
    novalidate: true, "aria-label": "Call me back", hidden: true },
    h("p", { class: "hint", text: "Leave your number and one of our team will call you." }),
    cbTopicField,
    h("label", { for: "omnicc-cb-number", text: "Phone number" }), cbNumber,
    h("p", { id: "omnicc-cb-number-hint", class: "field-hint",
      text: "With the country code, e.g. +44 20 7946 0958" }), cbNumberError,
    h("label", { for: "omnicc-cb-name", text: "Who should we ask for? (optional)" }), cbName,
    h("fieldset", {}, h("legend", { text: "When should we call?" }),
      h("label", { class: "choice" }, cbAsap, h("span", { class: "asap-text", text: "As soon as possible" }),
        cbAsapHint),
      h("label", { class: "choice" }, cbLater, h("span", { text: "At a time I choose" })),
      cbPickers, cbZone, cbWhenError),
    h("div", { class: "trap", "aria-hidden": "true" },
      h("label", { for: "omnicc-cb-website", text: "Leave this field empty" }), cbTrap),
    cbError, cbSubmit, cbBack);
  const calledText = h("p", { class: "big", text: "" });
  const calledNumber = h("p", { class: "hint", text: "" });
  const calledBack = h("button", { type: "button", class: "secondary", text: "Back to chat" });
  const called = h("div", { class: "called", "data-testid": "callback-confirmation",
    role: "status", hidden: true }, calledText, calledNumber, calledBack);

  const panel = h("div", { id: "omnicc-panel", class: "panel", role: "dialog",
    "aria-labelledby": "omnicc-title", "aria-describedby": "omnicc-subtitle",
    "data-testid": "panel", hidden: true },
    h("div", { class: "head" }, h("div", { class: "head-text" }, headTitle, headStatus),
      endButton, minimise),
    banner,
    h("div", { class: "body" }, prechat, conversation, csat, thanks, callbackForm, called));

  const frame = h("div", { class: "frame" }, panel, launcher);
  root.append(style, frame);

  // --- state ------------------------------------------------------------------------------------

  const state = {
    socket: null,
    connected: false,
    attempts: 0,
    reconnectTimer: null,
    stopped: false,
    config: null,
    view: "prechat",        // prechat | chat | csat | thanks | callback | called
    callbackFrom: "prechat",  // the view the callback form goes back to
    slots: null,            // {queue_id, is_open, next_open, slots} of the callback form's queue
    chat: null,             // {conversation_id, contact_id, is_offline}
    lastContactId: null,    // the chat to rate
    queueId: fixedQueue || null,
    profile: { name: "", email: "", topic: "" },
    started: false,         // a `start` frame has been sent for the current chat
    pending: new Map(),     // frame id -> {frame, element}; resent after a reconnect
    rendered: new Map(),    // message id -> element
    lastConversation: null,
    visitor: null,          // the token of `welcome`, also when localStorage is unavailable
    rules: null,            // {max_bytes, content_types, accept} of the chat's files
    atBottom: true,         // the log was scrolled to the end: keep it there as pictures load
    dragDepth: 0,
    unread: 0,
    typingSentAt: 0,
    typingIdle: null,
    typingShown: null,
  };

  // --- connection ---------------------------------------------------------------------------------

  function connect() {
    if (state.socket || state.stopped) return;
    const socket = new WebSocket(`${wsServer}/api/chat/ws?tenant=${encodeURIComponent(tenant)}`);
    state.socket = socket;
    socket.addEventListener("open", () => {
      socket.send(JSON.stringify({ type: "hello", visitor: storage.get(localStorage, TOKEN_KEY) }));
    });
    socket.addEventListener("message", (event) => {
      let data;
      try { data = JSON.parse(event.data); } catch { return; }
      receive(data);
    });
    socket.addEventListener("close", (event) => {
      if (state.socket !== socket) return;
      state.socket = null;
      state.connected = false;
      if (event.code === 1008) {
        state.stopped = true;
        showBanner("Chat is not available on this page.");
        return;
      }
      scheduleReconnect();
    });
  }

  function scheduleReconnect() {
    if (state.reconnectTimer || state.stopped) return;
    const base = Math.min(BACKOFF_MAX_MS, 1000 * 2 ** state.attempts);
    const delay = base / 2 + Math.random() * base / 2;
    state.attempts += 1;
    showBanner("Connection lost. Reconnecting…");
    state.reconnectTimer = setTimeout(() => {
      state.reconnectTimer = null;
      connect();
    }, delay);
  }

  function reconnectNow() {
    if (state.socket || state.stopped) return;
    clearTimeout(state.reconnectTimer);
    state.reconnectTimer = null;
    connect();
  }

  function showBanner(text) {
    banner.textContent = text;
    banner.hidden = !text;
  }

  function sendRaw(data) {
    if (state.connected && state.socket && state.socket.readyState === WebSocket.OPEN) {
      state.socket.send(JSON.stringify(data));
      return true;
    }
    return false;
  }

  /** A frame that must arrive: kept until acknowledged, resent with the same id. */
  function sendReliably(data, element) {
    state.pending.set(data.id, { frame: data, element });
    if (!sendRaw(data)) connect();
  }

  // --- frames from the server -------------------------------------------------------------------

  function receive(data) {
    switch (data.type) {
      case "welcome": return onWelcome(data);
      case "chat": return onChat(data);
      case "ack": return onAck(data);
      case "message": return onMessage(data.message);
      case "position": return onPosition(data);
      case "typing": return onTyping(data);
      case "agent_joined":
        positionLine.textContent = "";
        headStatus.textContent = "You're chatting with our team";
        return undefined;
      case "chat_ended": return onEnded(data.contact_id);
      case "rated": return showThanks("Thank you for your feedback!");
      case "error": return onError(data);
      default: return undefined;
    }
  }

  function onWelcome(data) {
    state.connected = true;
    state.attempts = 0;
    showBanner("");
    if (data.visitor) {
      state.visitor = data.visitor;
      storage.set(localStorage, TOKEN_KEY, data.visitor);
    }
    const customer = data.customer || {};
    if (customer.name && !nameInput.value) nameInput.value = customer.name;
    if (customer.email && !emailInput.value) emailInput.value = customer.email;
    state.profile.name = state.profile.name || customer.name || "";
    state.profile.email = state.profile.email || customer.email || "";
    for (const message of data.history || []) onMessage(message, { quiet: true });
    if (data.chat) {
      const wasStarted = state.started;
      adoptChat(data.chat);
      state.started = true;
      if (!wasStarted) showView("chat");
    } else if (state.chat && state.view === "chat") {
      onEnded(state.chat.contact_id);  // it ended while we were away
    } else if (state.view === "prechat" && (state.profile.name || !usePrechat)) {
      newChat();
    }
    for (const { frame: pending } of state.pending.values()) sendRaw(pending);
  }

  function adoptChat(chat) {
    state.chat = { conversation_id: chat.conversation_id, contact_id: chat.contact_id,
      is_offline: Boolean(chat.is_offline) };
    state.lastContactId = chat.contact_id;
    setOffline(state.chat.is_offline);
    endButton.hidden = state.chat.is_offline;
    if (topicField.parentNode === conversation) topicField.hidden = true;
    callbackOffer.hidden = true;
    updateAttach();
  }

  function onChat(data) {
    adoptChat(data);
    state.started = true;
    if (data.is_offline) {
      const email = state.profile.email;
      addSystem(email
        ? `Thanks! Your message is with our team. We'll answer here and by email to ${email}.`
        : "Thanks! Your message is with our team. We'll answer here when you come back.");
    }
  }

  function onAck(data) {
    const entry = state.pending.get(data.id);
    state.pending.delete(data.id);
    if (!entry || !data.message) return;
    const existing = state.rendered.get(data.message.id);
    if (existing && existing !== entry.element) {
      entry.element.remove();
      return;
    }
    markSent(entry.element, data.message);
  }

  function onMessage(message, { quiet = false } = {}) {
    if (!message || state.rendered.has(message.id)) return;
    if (message.author_kind === "customer") {
      for (const entry of state.pending.values()) {
        const text = entry.frame.text;
        if (entry.element && !entry.element.dataset.id && text === message.text) {
          markSent(entry.element, message);
          return;
        }
      }
    }
    if (message.author_kind !== "customer" && message.author_kind !== "system") {
      clearTyping();
    }
    log.append(renderMessage(message));
    scrollDown();
    if (!quiet && message.author_kind !== "customer" && panel.hidden) {
      state.unread += 1;
      unread.textContent = String(state.unread);
      unread.hidden = false;
    }
  }

  function onPosition(data) {
    if (data.is_offline) {
      setOffline(true);
      positionLine.textContent = "";
      return;
    }
    positionLine.textContent = positionText(data.position, data.ewt_s);
  }

  function onTyping(data) {
    clearTimeout(state.typingShown);
    if (data.is_typing) {
      typingLine.textContent = `${data.author_name || "Agent"} is typing…`;
      state.typingShown = setTimeout(clearTyping, TYPING_SHOWN_MS);
    } else {
      clearTyping();
    }
  }

  function clearTyping() {
    clearTimeout(state.typingShown);
    typingLine.textContent = "";
  }

  function onEnded(contactId) {
    state.lastContactId = contactId || state.lastContactId;
    state.chat = null;
    state.started = false;
    state.queueId = fixedQueue || null;
    positionLine.textContent = "";
    clearTyping();
    endButton.hidden = true;
    setOffline(false);
    headStatus.textContent = "";
    updateAttach();
    showView("csat");
  }

  function onError(data) {
    const entry = data.id ? state.pending.get(data.id) : null;
    if (entry) {
      state.pending.delete(data.id);
      if (entry.element) {
        entry.element.classList.add("failed");
        entry.element.querySelector(".meta").textContent = "Not sent";
      }
    }
    const where = state.view === "csat" ? csatError : chatError;
    where.textContent = data.detail || "Something went wrong.";
    where.hidden = false;
  }

  // --- rendering --------------------------------------------------------------------------------

  function renderMessage(message) {
    const kind = message.author_kind;
    if (state.lastConversation && message.conversation_id
        && message.conversation_id !== state.lastConversation) {
      log.append(h("li", { class: "divider", text: "New conversation" }));
    }
    if (message.conversation_id) state.lastConversation = message.conversation_id;
    let item;
    if (kind === "system") {
      item = h("li", { class: "msg system" }, h("span", { text: message.text }));
    } else {
      const mine = kind === "customer";
      const files = Array.isArray(message.attachments) ? message.attachments : [];
      const bubble = files.length
        ? h("span", { class: "bubble files" }, ...files.map(renderAttachment))
        : h("span", { class: "bubble", text: message.text });
      item = h("li", { class: `msg ${mine ? "mine" : "agent"}` },
        h("span", { class: "who", text: mine ? "You" : (message.author_name || "Agent") }),
        bubble,
        h("span", { class: "meta", text: clock(message.created_at) }));
    }
    item.dataset.id = message.id;
    state.rendered.set(message.id, item);
    return item;
  }

  function renderPending(text) {
    const item = h("li", { class: "msg mine" },
      h("span", { class: "who", text: "You" }),
      h("span", { class: "bubble", text }),
      h("span", { class: "meta", text: "Sending…" }));
    log.append(item);
    scrollDown();
    return item;
  }

  function markSent(element, message) {
    if (!element) return;
    element.dataset.id = message.id;
    element.classList.remove("failed");
    element.querySelector(".meta").textContent = clock(message.created_at);
    state.rendered.set(message.id, element);
  }

  function addSystem(text) {
    log.append(h("li", { class: "msg system" }, h("span", { text })));
    scrollDown();
  }

  function scrollDown() {
    scroll.scrollTop = scroll.scrollHeight;
    state.atBottom = true;
  }

  scroll.addEventListener("scroll", () => {
    state.atBottom = scroll.scrollHeight - scroll.scrollTop - scroll.clientHeight < 40;
  });

  function setOffline(isOffline) {
    chatNotice.hidden = !isOffline;
    if (isOffline) headStatus.textContent = "We're away right now";
  }

  function showView(view) {
    state.view = view;
    prechat.hidden = view !== "prechat";
    conversation.hidden = view !== "chat";
    csat.hidden = view !== "csat";
    thanks.hidden = view !== "thanks";
    callbackForm.hidden = view !== "callback";
    called.hidden = view !== "called";
    endButton.hidden = view !== "chat" || !state.chat || state.chat.is_offline;
    if (view === "prechat") loadConfig();
    updateCallbackOffer();
    if (view === "csat") {
      csat.reset();
      paintStars(0);
      csatError.hidden = true;
    }
    if (!panel.hidden && root.activeElement) focusView();
  }

  function focusView() {
    if (state.view === "prechat") (nameInput.value ? topicSelect : nameInput).focus();
    else if (state.view === "chat") messageInput.focus();
    else if (state.view === "csat") stars.querySelector("input").focus();
    else if (state.view === "callback") (cbTopicField.hidden ? cbNumber : cbTopic).focus();
    else if (state.view === "called") calledBack.focus();
    else againButton.focus();
  }

  function showThanks(text) {
    thanksText.textContent = text;
    showView("thanks");
  }

  // --- the pre-chat form and the queues ---------------------------------------------------------

  async function loadConfig() {
    try {
      const response = await fetch(`${server}/api/chat/config?tenant=${encodeURIComponent(tenant)}`,
        { credentials: "omit" });
      if (!response.ok) throw new Error(`HTTP ${response.status}`);
      state.config = await response.json();
    } catch {
      if (!state.config) showBanner("Chat is not available right now.");
      return;
    }
    if (title === "Chat with us" && state.config.tenant_name) {
      headTitle.textContent = `Chat with ${state.config.tenant_name}`;
    }
    messageInput.maxLength = state.config.max_message_chars || 16384;
    const chosen = topicSelect.value;
    topicSelect.replaceChildren(h("option", { value: "", text: "Choose a topic" }));
    for (const queue of state.config.queues) {
      topicSelect.append(h("option", { value: queue.id, text: queue.description || queue.name }));
    }
    if (chosen) topicSelect.value = chosen;
    const fixed = fixedQueue ? queueById(fixedQueue) : null;
    if (fixed) {
      topicSelect.value = fixed.id;
      topicField.hidden = true;
    }
    if (!state.queueId) state.queueId = pickQueue();
    updateOfflineHint();
  }

  function queueById(id) {
    const queues = state.config ? state.config.queues : [];
    return queues.find((q) => q.id === id || q.name === id) || null;
  }

  /** Without the form: the data-queue one, else an open one, else the first. */
  function pickQueue() {
    const queues = state.config ? state.config.queues : [];
    const fixed = fixedQueue ? queueById(fixedQueue) : null;
    if (fixed) return fixed.id;
    const open = queues.find((q) => q.is_open);
    return (open || queues[0] || { id: null }).id;
  }

  function updateOfflineHint() {
    const queue = queueById(topicSelect.value);
    const away = Boolean(queue && !queue.is_open);
    prechatNotice.hidden = !away;
    if (!state.started && state.view === "chat") setOffline(away);
    emailLabel.textContent = away ? "Email (so we can answer you)" : "Email";
    emailInput.required = away;
    updateCallbackOffer();
  }

  topicSelect.addEventListener("change", () => {
    if (topicSelect.value) state.queueId = topicSelect.value;
    updateOfflineHint();
  });

  /** A new chat: the form for a stranger, straight to the composer for a known visitor. */
  function newChat() {
    state.queueId = fixedQueue ? null : state.queueId;
    if (usePrechat && !state.profile.name) {
      prechat.insertBefore(topicField, prechatNotice);
      showView("prechat");
      return;
    }
    if (usePrechat && !fixedQueue) {
      conversation.insertBefore(topicField, composer);
      topicField.hidden = false;
      if (state.profile.name) headStatus.textContent = `Welcome back, ${state.profile.name}`;
    }
    showView("chat");
    loadConfig();
  }

  prechat.addEventListener("submit", (event) => {
    event.preventDefault();
    const name = nameInput.value.trim();
    const email = emailInput.value.trim();
    const problems = [];
    if (!name) problems.push("Please tell us your name.");
    if (emailInput.required && !email) problems.push("Please give an email so we can answer you.");
    if (email && !emailInput.checkValidity()) problems.push("That email address does not look right.");
    if (!topicSelect.value) problems.push("Please choose a topic.");
    nameInput.setAttribute("aria-invalid", String(!name));
    topicSelect.setAttribute("aria-invalid", String(!topicSelect.value));
    if (problems.length) {
      prechatError.textContent = problems.join(" ");
      prechatError.hidden = false;
      return;
    }
    prechatError.hidden = true;
    const queue = queueById(topicSelect.value);
    state.queueId = queue.id;
    state.profile = { name, email, topic: queue.name };
    setOffline(!queue.is_open);
    headStatus.textContent = queue.is_open ? "Write your message below" : "We're away right now";
    showView("chat");
  });

  // --- sending ------------------------------------------------------------------------------------

  composer.addEventListener("submit", (event) => {
    event.preventDefault();
    const text = messageInput.value.trim();
    if (!text) return;
    chatError.hidden = true;
    const id = newId();
    const element = renderPending(text);
    if (state.started) {
      sendReliably({ type: "message", id, text }, element);
    } else {
      const queueId = topicField.parentNode === conversation ? topicSelect.value
        : state.queueId || pickQueue();
      if (!queueId) {
        element.classList.add("failed");
        element.querySelector(".meta").textContent = "Not sent";
        element.remove();
        chatError.textContent = topicField.parentNode === conversation
          ? "Please choose a topic." : "Chat is not available right now.";
        chatError.hidden = false;
        return;
      }
      state.started = true;
      topicField.hidden = topicField.parentNode === conversation;
      callbackOffer.hidden = true;
      const queue = queueById(queueId);
      sendReliably({ type: "start", id, text, queue_id: queueId, name: state.profile.name,
        email: state.profile.email, topic: queue ? queue.name : state.profile.topic }, element);
    }
    messageInput.value = "";
    autoGrow();
    stopTyping();
  });

  messageInput.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      composer.requestSubmit();
    }
  });

  messageInput.addEventListener("input", () => {
    autoGrow();
    if (!state.chat) return;
    const now = Date.now();
    if (now - state.typingSentAt > TYPING_REFRESH_MS) {
      state.typingSentAt = now;
      sendRaw({ type: "typing", is_typing: true });
    }
    clearTimeout(state.typingIdle);
    state.typingIdle = setTimeout(stopTyping, TYPING_IDLE_MS);
  });

  function stopTyping() {
    clearTimeout(state.typingIdle);
    if (state.typingSentAt && state.chat) sendRaw({ type: "typing", is_typing: false });
    state.typingSentAt = 0;
  }

  function autoGrow() {
    messageInput.style.height = "auto";
    messageInput.style.height = `${Math.min(messageInput.scrollHeight, 140)}px`;
  }

  endButton.addEventListener("click", () => {
    if (state.chat) sendRaw({ type: "leave" });
  });

  // --- files ----------------------------------------------------------------------------------------
  // The helpers of /static/attachments.js, inlined: that ES module cannot be imported from the
  // customer's site (module scripts load with CORS, /static sends none), and the widget is one
  // classic script. The visitor token goes in a header, never in a URL, so files are fetched
  // with it and shown through blob URLs: an <img> or a link cannot send a header.

  const VISITOR_HEADER = "X-Visitor-Token";

  function visitorToken() {
    return state.visitor || storage.get(localStorage, TOKEN_KEY);
  }

  function formatBytes(size) {
    if (size < 1024) return `${size} B`;
    if (size < 1048576) return `${(size / 1024).toFixed(size < 10240 ? 1 : 0)} KB`;
    return `${(size / 1048576).toFixed(1)} MB`;
  }

  async function loadRules() {
    if (state.rules) return;
    try {
      const response = await fetch(`${server}/api/chat/attachments/rules`, { credentials: "omit" });
      if (!response.ok) return;
      state.rules = await response.json();
      fileInput.accept = state.rules.accept || "";
    } catch {
      // Without the rules the server still checks every file; the next open tries again.
    }
  }

  function acceptedExtensions() {
    const accept = state.rules && state.rules.accept ? state.rules.accept : "";
    return accept.split(",").map((e) => e.trim().toLowerCase()).filter(Boolean);
  }

  /** Why the server would refuse this file, said before sending it; null when it may go. */
  function fileProblem(file) {
    if (file.size === 0) return `"${file.name}" is empty.`;
    if (!state.rules) return null;
    if (file.size > state.rules.max_bytes) {
      return `"${file.name}" is ${formatBytes(file.size)}; files can be at most `
        + `${formatBytes(state.rules.max_bytes)}.`;
    }
    const dot = file.name.lastIndexOf(".");
    const extension = dot > 0 ? file.name.slice(dot).toLowerCase() : "";
    const extensions = acceptedExtensions();
    const known = extension ? extensions.includes(extension)
      : (state.rules.content_types || []).includes(file.type);
    if (!known) {
      return `"${file.name}" cannot be sent: this kind of file is not accepted. `
        + `You can send ${extensions.join(" ")} files.`;
    }
    return null;
  }

  /** The server's refusal in words, from its status and problem document. */
  function refusal(file, status, problem) {
    const detail = problem && typeof problem.detail === "string" ? problem.detail : "";
    switch (status) {
      case 0: return `"${file.name}" could not be sent: the connection failed. Please try again.`;
      case 401: return "This chat session is no longer valid. Reload the page to start again.";
      case 409: return "The chat is closed. Start a new chat to send files.";
      case 413: {
        const limit = (problem && problem.limit_bytes) || (state.rules && state.rules.max_bytes);
        return limit ? `"${file.name}" is too large to send; files can be at most ${formatBytes(limit)}.`
          : `"${file.name}" is too large to send.`;
      }
      case 415: return `"${file.name}" was not sent. ${detail || "This kind of file cannot be sent."}`;
      case 422: return `"${file.name}" was not sent. ${detail || "The file is empty."}`;
      default:
        return `"${file.name}" could not be sent${detail ? `: ${detail}` : ` (error ${status}).`}`;
    }
  }

  function showChatError(text) {
    chatError.textContent = text;
    chatError.hidden = false;
  }

  function updateAttach() {
    const ready = Boolean(state.chat);
    attachButton.setAttribute("aria-disabled", String(!ready));
    attachButton.title = ready ? "Attach a file" : "Send a message first, then you can attach files";
  }

  /** POSTs one file; resolves to {status, body} (status 0 when the connection failed). XHR,
   *  not fetch, because only XHR reports upload progress. */
  function postFile(file, onProgress) {
    return new Promise((resolve) => {
      const request = new XMLHttpRequest();
      request.open("POST", `${server}/api/chat/attachments?tenant=${encodeURIComponent(tenant)}`);
      request.setRequestHeader(VISITOR_HEADER, visitorToken() || "");
      request.setRequestHeader("Accept", "application/json");
      request.upload.addEventListener("progress", (event) => {
        if (event.lengthComputable) onProgress(event.loaded / event.total);
      });
      request.addEventListener("load", () => {
        let body = null;
        try { body = JSON.parse(request.responseText); } catch { body = null; }
        resolve({ status: request.status, body });
      });
      for (const failure of ["error", "abort", "timeout"]) {
        request.addEventListener(failure, () => resolve({ status: 0, body: null }));
      }
      const form = new FormData();
      form.append("file", file, file.name);
      request.send(form);
    });
  }

  function renderUpload(file) {
    const progress = h("progress", { max: 100, value: 0, "aria-label": `Sending ${file.name}` });
    const item = h("li", { class: "msg mine", "data-testid": "upload" },
      h("span", { class: "who", text: "You" }),
      h("span", { class: "bubble upload" },
        h("span", { class: "upload-name" }, icon(FILE_ICON),
          h("span", { text: `${file.name} (${formatBytes(file.size)})` })), progress),
      h("span", { class: "meta", text: "Sending file…" }));
    log.append(item);
    scrollDown();
    return { item, progress };
  }

  async function sendFile(file) {
    const problem = fileProblem(file);
    if (problem) {
      showChatError(problem);
      return;
    }
    const { item, progress } = renderUpload(file);
    const { status, body } = await postFile(file, (fraction) => {
      progress.value = Math.round(fraction * 100);
      item.querySelector(".meta").textContent = fraction < 1
        ? `Sending file… ${Math.round(fraction * 100)}%` : "Sending file…";
    });
    if (status === 201 && body && body.id) {
      // The same message may already have come over the socket: show it once.
      if (state.rendered.has(body.id)) item.remove();
      else item.replaceWith(renderMessage(body));
      return;
    }
    item.classList.add("failed");
    progress.remove();
    item.querySelector(".meta").textContent = "Not sent";
    showChatError(refusal(file, status, body));
  }

  async function sendFiles(files) {
    const list = Array.from(files || []);
    if (!list.length) return;
    chatError.hidden = true;
    if (!state.chat) {
      showChatError("Send a message first to start the chat, then attach your file.");
      return;
    }
    await loadRules();
    for (const file of list) await sendFile(file);  // one at a time, in the order chosen
  }

  /** The file's bytes, fetched with the visitor token, as a blob URL of this page. */
  async function fileUrl(attachment) {
    const url = new URL(attachment.url, server);
    if (url.origin !== server) throw new Error("a file is only ever fetched from the server");
    const response = await fetch(url, { credentials: "omit",
      headers: { [VISITOR_HEADER]: visitorToken() || "" } });
    if (!response.ok) throw new Error(`HTTP ${response.status}`);
    return URL.createObjectURL(await response.blob());
  }

  function saveAs(href, filename) {
    const link = h("a", { href, download: filename, hidden: true });
    root.append(link);
    link.click();
    link.remove();
  }

  /** A picture as a small preview (a link that saves it), any other file as a download button. */
  function renderAttachment(attachment) {
    const size = formatBytes(attachment.size_bytes);
    const label = `Download ${attachment.filename}, ${size}`;
    if (String(attachment.content_type).startsWith("image/")) {
      const image = h("img", { alt: attachment.filename, decoding: "async" });
      const link = h("a", { download: attachment.filename, "aria-label": label, title: label },
        image);
      const figure = h("figure", { class: "picture", "data-testid": "attachment" }, link,
        h("figcaption", { text: `${attachment.filename} · ${size}` }));
      image.addEventListener("load", () => { if (state.atBottom) scrollDown(); });
      fileUrl(attachment).then((href) => {
        image.src = href;
        link.href = href;
      }).catch(() => {
        link.replaceWith(h("span", { class: "hint", text: "The preview is not available." }));
      });
      return figure;
    }
    const button = h("button", { type: "button", class: "file", "aria-label": label,
      "data-testid": "attachment" }, icon(FILE_ICON),
      h("span", { class: "name", text: attachment.filename }),
      h("span", { class: "size", text: size }));
    let saved = null;
    button.addEventListener("click", async () => {
      if (button.getAttribute("aria-busy") === "true") return;
      button.setAttribute("aria-busy", "true");
      try {
        saved = saved || await fileUrl(attachment);
        saveAs(saved, attachment.filename);
      } catch {
        showChatError(`"${attachment.filename}" could not be downloaded. Please try again.`);
      } finally {
        button.removeAttribute("aria-busy");
      }
    });
    return button;
  }

  updateAttach();

  // aria-disabled, not disabled: the button stays focusable and says why it cannot be used yet.
  attachButton.addEventListener("click", () => {
    chatError.hidden = true;
    if (!state.chat) {
      showChatError("Send a message first to start the chat, then attach your file.");
      return;
    }
    loadRules();
    fileInput.click();
  });

  fileInput.addEventListener("change", () => {
    const files = Array.from(fileInput.files || []);
    fileInput.value = "";
    sendFiles(files);
  });

  messageInput.addEventListener("paste", (event) => {
    const files = event.clipboardData ? Array.from(event.clipboardData.files) : [];
    if (!files.length) return;
    event.preventDefault();
    sendFiles(files);
  });

  function draggingFiles(event) {
    return Boolean(event.dataTransfer) && Array.from(event.dataTransfer.types).includes("Files");
  }

  // A file dropped anywhere on the panel is kept from replacing the customer's page, and sent
  // when the conversation is showing.
  panel.addEventListener("dragenter", (event) => {
    if (!draggingFiles(event)) return;
    event.preventDefault();
    state.dragDepth += 1;
    dropZone.hidden = state.view !== "chat";
  });
  panel.addEventListener("dragover", (event) => {
    if (!draggingFiles(event)) return;
    event.preventDefault();
    event.dataTransfer.dropEffect = state.view === "chat" ? "copy" : "none";
  });
  panel.addEventListener("dragleave", (event) => {
    if (!draggingFiles(event)) return;
    state.dragDepth = Math.max(0, state.dragDepth - 1);
    if (!state.dragDepth) dropZone.hidden = true;
  });
  panel.addEventListener("drop", (event) => {
    if (!draggingFiles(event)) return;
    event.preventDefault();
    state.dragDepth = 0;
    dropZone.hidden = true;
    if (state.view === "chat") sendFiles(event.dataTransfer.files);
  });

  // --- the survey ---------------------------------------------------------------------------------

  function paintStars(score) {
    starLabels.forEach((label, index) => label.classList.toggle("on", index < score));
  }

  stars.addEventListener("change", () => {
    const checked = stars.querySelector("input:checked");
    paintStars(checked ? Number(checked.value) : 0);
  });
  starLabels.forEach((label, index) => {
    label.addEventListener("mouseenter", () => paintStars(index + 1));
  });
  stars.addEventListener("mouseleave", () => {
    const checked = stars.querySelector("input:checked");
    paintStars(checked ? Number(checked.value) : 0);
  });

  csat.addEventListener("submit", (event) => {
    event.preventDefault();
    const checked = stars.querySelector("input:checked");
    if (!checked) {
      csatError.textContent = "Please choose 1 to 5 stars.";
      csatError.hidden = false;
      return;
    }
    if (!state.lastContactId || !sendRaw({ type: "rate", contact_id: state.lastContactId,
      score: Number(checked.value), comment: commentInput.value.trim() })) {
      csatError.textContent = "Not connected. Please try again in a moment.";
      csatError.hidden = false;
    }
  });

  skipButton.addEventListener("click", () => showThanks("Thanks for chatting with us."));
  againButton.addEventListener("click", () => {
    clearTyping();
    chatError.hidden = true;
    newChat();
  });

  // --- "Call me back" -----------------------------------------------------------------------------
  // Offered next to starting a chat for queues whose agents take calls (`takes_callbacks` in the
  // configuration; `data-callback="false"` never offers it). The form posts to
  // /api/chat/callback; the server checks the number, the time and its limits again.

  function callbackQueues() {
    const queues = state.config ? state.config.queues : [];
    return queues.filter((q) => q.takes_callbacks);
  }

  /** The queue the visitor is about to chat with, if one is chosen or fixed. */
  function chosenQueue() {
    if (fixedQueue) return queueById(fixedQueue);
    if (topicSelect.value) return queueById(topicSelect.value);
    return null;
  }

  function updateCallbackOffer() {
    const chosen = chosenQueue();
    const where = state.view === "prechat" ? prechat : state.view === "chat" ? conversation : null;
    const show = offerCallback && Boolean(where) && !state.started && !state.chat
      && (chosen ? Boolean(chosen.takes_callbacks) : callbackQueues().length > 0);
    if (where === prechat && callbackOffer.parentNode !== prechat) prechat.append(callbackOffer);
    if (where === conversation && callbackOffer.parentNode !== conversation) {
      conversation.insertBefore(callbackOffer, composer);
    }
    callbackOffer.hidden = !show;
  }

  function when(iso, withDay = true) {
    const at = new Date(iso);
    const options = { hour: "2-digit", minute: "2-digit" };
    if (!withDay) return at.toLocaleTimeString([], options);
    return at.toLocaleString([], { weekday: "long", day: "numeric", month: "long", ...options });
  }

  function dayKey(iso) {
    const at = new Date(iso);
    return `${at.getFullYear()}-${at.getMonth() + 1}-${at.getDate()}`;
  }

  function dayName(iso) {
    const today = new Date();
    const tomorrow = new Date(today.getFullYear(), today.getMonth(), today.getDate() + 1);
    const at = new Date(iso);
    const label = at.toLocaleDateString([], { weekday: "short", day: "numeric", month: "short" });
    if (dayKey(iso) === dayKey(today.toISOString())) return `Today, ${label}`;
    if (dayKey(iso) === dayKey(tomorrow.toISOString())) return `Tomorrow, ${label}`;
    return label;
  }

  function setFieldError(input, line, text) {
    line.textContent = text || "";
    input.setAttribute("aria-invalid", String(Boolean(text)));
  }

  function clearCallbackErrors() {
    setFieldError(cbNumber, cbNumberError, "");
    setFieldError(cbTime, cbWhenError, "");
    cbError.hidden = true;
  }

  function openCallback() {
    const queues = callbackQueues();
    if (!queues.length) return;
    state.callbackFrom = state.view;
    const chosen = chosenQueue();
    cbTopic.replaceChildren(...queues.map((q) => h("option", { value: q.id,
      text: q.description || q.name })));
    cbTopic.value = chosen && chosen.takes_callbacks ? chosen.id : queues[0].id;
    cbTopicField.hidden = Boolean(fixedQueue) || queues.length === 1;
    if (!cbName.value) cbName.value = nameInput.value.trim() || state.profile.name || "";
    clearCallbackErrors();
    showView("callback");
    loadSlots();
  }

  /** The slots of the form's queue: the Day and Time pickers, and what "as soon as possible"
   *  means now (at once, or when the queue opens). */
  async function loadSlots() {
    const queueId = cbTopic.value;
    state.slots = null;
    cbDay.replaceChildren();
    cbTime.replaceChildren();
    let slots;
    try {
      const response = await fetch(`${server}/api/chat/callback/slots?tenant=${encodeURIComponent(tenant)}`
        + `&queue_id=${encodeURIComponent(queueId)}`, { credentials: "omit" });
      if (!response.ok) throw new Error(`HTTP ${response.status}`);
      slots = await response.json();
    } catch {
      cbError.textContent = "We cannot book calls right now. Please try again in a moment.";
      cbError.hidden = false;
      return;
    }
    if (cbTopic.value !== queueId) return;  // another topic was chosen meanwhile
    state.slots = slots;
    const asapText = callbackForm.querySelector(".asap-text");
    if (slots.is_open) {
      asapText.textContent = "As soon as possible";
      cbAsapHint.textContent = "";
    } else if (slots.next_open) {
      asapText.textContent = `As soon as we open (${when(slots.next_open)})`;
      cbAsapHint.textContent = "We are closed right now.";
    } else {
      asapText.textContent = "As soon as possible";
    }
    const days = new Map();
    for (const slot of slots.slots) {
      const key = dayKey(slot);
      if (!days.has(key)) days.set(key, []);
      days.get(key).push(slot);
    }
    for (const [key, list] of days) {
      cbDay.append(h("option", { value: key, text: dayName(list[0]) }));
    }
    cbLater.disabled = days.size === 0;
    fillTimes();
    const zone = Intl.DateTimeFormat().resolvedOptions().timeZone;
    cbZone.textContent = zone ? `Times are in your time zone (${zone}).` : "";
  }

  function fillTimes() {
    const slots = state.slots ? state.slots.slots : [];
    const chosen = cbTime.value;
    cbTime.replaceChildren(...slots.filter((slot) => dayKey(slot) === cbDay.value)
      .map((slot) => h("option", { value: slot, text: when(slot, false) })));
    if (chosen) cbTime.value = chosen;
  }

  function updateWhen() {
    cbPickers.hidden = !cbLater.checked;
    setFieldError(cbTime, cbWhenError, "");
  }

  /** Checked before sending: something that can be a phone number (the server decides). */
  function numberProblem(text) {
    if (!text) return "Please enter your phone number.";
    if (/[^\d\s()+\-./]/.test(text)) return "A phone number has only digits, spaces and + ( ) - .";
    const digits = text.replace(/\D/g, "").length;
    if (digits < 6 || digits > 15) return "That number does not look complete. Please include the country code, e.g. +44 20 7946 0958.";
    return "";
  }

  function refuseCallback(status, problem) {
    const detail = problem && typeof problem.detail === "string" ? problem.detail : "";
    const kind = problem && typeof problem.type === "string" ? problem.type : "";
    if (status === 422 && kind.endsWith(":invalid-phone-number")) {
      setFieldError(cbNumber, cbNumberError,
        "We cannot call that number. Please check it and include the country code, e.g. +44 20 7946 0958.");
      cbNumber.focus();
      return;
    }
    if (status === 422 && kind.endsWith(":outside-business-hours")) {
      const next = problem.next_slot;
      setFieldError(cbTime, cbWhenError, next
        ? `We take no calls then. The next free time is ${when(next)}.`
        : "We take no calls then. Please choose another time.");
      loadSlots();
      cbLater.focus();
      return;
    }
    let text;
    if (status === 429) {
      const minutes = Math.max(1, Math.ceil(((problem && problem.retry_after_s) || 60) / 60));
      text = `You have asked for several calls already. Please try again in ${minutes} min.`;
    } else if (status === 404 || status === 409) {
      text = "This topic takes no calls right now. Please choose another topic, or chat with us.";
    } else if (status === 0) {
      text = "The request could not be sent: the connection failed. Please try again.";
    } else {
      text = detail || `Something went wrong (error ${status}). Please try again.`;
    }
    cbError.textContent = text;
    cbError.hidden = false;
  }

  function showCalled(receipt) {
    calledText.textContent = receipt.as_soon_as_possible
      ? "We will call you as soon as one of our team is free."
      : `We will call you at ${when(receipt.expected_at)}.`;
    calledNumber.textContent = `We will call ${receipt.number}.`;
    showView("called");
  }

  callbackForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    clearCallbackErrors();
    const number = cbNumber.value.trim();
    const problem = numberProblem(number);
    setFieldError(cbNumber, cbNumberError, problem);
    const slot = cbLater.checked ? cbTime.value : "";
    if (cbLater.checked && !slot) setFieldError(cbTime, cbWhenError, "Please choose a time.");
    if (problem) {
      cbNumber.focus();
      return;
    }
    if (cbLater.checked && !slot) {
      cbTime.focus();
      return;
    }
    cbSubmit.disabled = true;
    cbSubmit.textContent = "Sending…";
    const body = { queue_id: cbTopic.value, number, name: cbName.value.trim(),
      visitor: visitorToken() || null, website: cbTrap.value };
    if (slot) body.when = slot;
    let status = 0;
    let answer = null;
    try {
      const response = await fetch(`${server}/api/chat/callback?tenant=${encodeURIComponent(tenant)}`, {
        method: "POST", credentials: "omit", headers: { "Content-Type": "application/json" },
        body: JSON.stringify(body) });
      status = response.status;
      try { answer = await response.json(); } catch { answer = null; }
    } catch {
      status = 0;
    } finally {
      cbSubmit.disabled = false;
      cbSubmit.textContent = "Request a call";
    }
    if (status === 202 && answer) showCalled(answer);
    else refuseCallback(status, answer);
  });

  callbackButton.addEventListener("click", openCallback);
  cbTopic.addEventListener("change", () => { clearCallbackErrors(); loadSlots(); });
  cbDay.addEventListener("change", fillTimes);
  cbAsap.addEventListener("change", updateWhen);
  cbLater.addEventListener("change", updateWhen);
  cbNumber.addEventListener("input", () => {
    if (cbNumber.getAttribute("aria-invalid") === "true") setFieldError(cbNumber, cbNumberError, "");
  });
  for (const back of [cbBack, calledBack]) {
    back.addEventListener("click", () => showView(state.callbackFrom === "chat" ? "chat" : "prechat"));
  }

  // --- opening and closing ------------------------------------------------------------------------

  function open({ focus = true } = {}) {
    panel.hidden = false;
    frame.classList.add("open");
    launcher.setAttribute("aria-expanded", "true");
    launcher.setAttribute("aria-label", "Close chat");
    launcher.replaceChildren(icon(CLOSE_ICON), unread);
    state.unread = 0;
    unread.hidden = true;
    storage.set(sessionStorage, OPEN_KEY, "1");
    connect();
    if (!state.config) loadConfig();
    loadRules();
    if (state.view === "prechat" && !usePrechat) newChat();
    if (focus) focusView();
    scrollDown();
  }

  function close() {
    panel.hidden = true;
    frame.classList.remove("open");
    launcher.setAttribute("aria-expanded", "false");
    launcher.setAttribute("aria-label", "Open chat");
    launcher.replaceChildren(icon(CHAT_ICON), unread);
    storage.set(sessionStorage, OPEN_KEY, "0");
    stopTyping();
    launcher.focus();
  }

  launcher.addEventListener("click", () => (panel.hidden ? open() : close()));
  minimise.addEventListener("click", close);
  panel.addEventListener("keydown", (event) => {
    if (event.key === "Escape") {
      event.stopPropagation();
      close();
    }
  });

  window.addEventListener("online", reconnectNow);
  document.addEventListener("visibilitychange", () => {
    if (document.visibilityState === "visible") reconnectNow();
  });

  function mount() {
    document.body.append(host);
    // A returning visitor may have a chat going: connect now so its messages count as unread.
    if (storage.get(localStorage, TOKEN_KEY)) connect();
    if (storage.get(sessionStorage, OPEN_KEY) === "1") open({ focus: false });
  }

  if (document.body) mount();
  else document.addEventListener("DOMContentLoaded", mount, { once: true });
})();
