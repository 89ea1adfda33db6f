// The desk's messaging conversation (SMS, WhatsApp, Telegram, Messenger): the customer's
// address and channel, every message in and out with its delivery state (sending, sent,
// delivered, read, not delivered), media links, WhatsApp's 24-hour window with the template
// form once it closed, and the answer form. A customer's media show as the files OmniCC
// fetched, once it has them. Text is always set with textContent; a media
// reference is a link only when it is an http(s) URL.
import { attachmentLink } from "/static/attachments.js";
import { conversationPanel } from "/static/desk-conversation.js";
import { api, toast } from "/static/session.js";
import { el, humanize } from "/static/desk-view.js";

export const MESSAGING_CHANNELS = new Set(["sms", "whatsapp", "telegram", "messenger"]);

const when = (iso) => (iso ? new Date(iso).toLocaleString([], { dateStyle: "medium", timeStyle: "short" }) : "");
const STATES = { received: "Received", pending: "Sending…", sent: "Sent", delivered: "Delivered",
                 read: "Read", failed: "Not delivered" };

function mediaItem(url) {
  const isWeb = /^https?:\/\//i.test(url);
  return el("li", {}, isWeb
    ? el("a", { text: url.split("/").pop() || url, attrs: { href: url, target: "_blank", rel: "noopener noreferrer nofollow" } })
    : el("span", { className: "muted small", text: url, attrs: { title: "Kept by the provider" } }));
}

function messageItem(row) {
  const failed = row.status === "failed";
  const text = row.template ? `Template ${row.template}` : row.text;
  // The customer's media once fetched into OmniCC; until then (or if refused) the provider's links.
  const files = row.attachments || [];
  return el("li", { className: "im-item", attrs: { "data-direction": row.direction, "data-status": row.status, "data-testid": "im-message" } },
    el("article", { attrs: { "aria-label": `${row.direction === "inbound" ? "Customer" : "You"}, ${STATES[row.status] || row.status}, ${when(row.created_at)}` } },
      text ? el("p", { className: "im-text", text }) : null,
      files.length
        ? el("ul", { className: "im-media", attrs: { "aria-label": "Files" } }, ...files.map((file) => el("li", {}, attachmentLink(file))))
        : row.media_urls.length ? el("ul", { className: "im-media", attrs: { "aria-label": "Media" } }, ...row.media_urls.map(mediaItem)) : null,
      row.last_error && failed ? el("p", { className: "form-error", text: row.last_error, attrs: { role: "note" } }) : null,
      el("footer", { className: "im-meta" },
        el("time", { className: "muted small", text: when(row.created_at), attrs: { datetime: row.created_at } }),
        row.direction === "outbound"
          ? el("span", { className: `badge${failed ? " bad" : ""}`, text: STATES[row.status] || row.status, attrs: { "data-testid": "im-status" } })
          : null)));
}

export function mountMessaging(panel, { onFinished }) {
  const head = el("p", { className: "im-head" });
  const list = el("ol", { className: "im-list", attrs: { "aria-label": "Messages", "aria-live": "polite", "data-testid": "im-list" } });
  const windowNote = el("p", { className: "im-window", attrs: { role: "status", "data-testid": "im-window" } });

  const text = el("textarea", { attrs: { id: "im-answer", rows: "3", placeholder: "Write your answer." } });
  const label = el("label", { text: "Your answer", attrs: { for: "im-answer" } });
  const media = el("input", { attrs: { id: "im-media", type: "url", placeholder: "https://…", inputmode: "url" } });
  const mediaLabel = el("label", { className: "small", text: "Media link (optional)", attrs: { for: "im-media" } });
  const send = el("button", { className: "button primary", text: "Send", attrs: { type: "submit" } });
  const done = el("button", { className: "button", text: "Done", attrs: { type: "button",
    title: "Finish for now; the customer's next message comes back as a new task" } });
  const form = el("form", { className: "im-compose", attrs: { "data-testid": "im-compose", autocomplete: "off" } },
                  label, text, mediaLabel, media, el("div", { className: "composer-bar" }, done, send));

  const templateName = el("input", { attrs: { id: "im-template", required: "", placeholder: "order_update" } });
  const templateLanguage = el("input", { attrs: { id: "im-template-language", value: "en", required: "", size: "6" } });
  const templateParameters = el("input", { attrs: { id: "im-template-parameters", placeholder: "A-1001, Friday" } });
  const templateForm = el("form", { className: "im-template-form", attrs: { "data-testid": "im-template-form", autocomplete: "off" } },
    el("label", { text: "Approved template", attrs: { for: "im-template" } }), templateName,
    el("label", { className: "small", text: "Language", attrs: { for: "im-template-language" } }), templateLanguage,
    el("label", { className: "small", text: "Parameters, comma-separated", attrs: { for: "im-template-parameters" } }), templateParameters,
    el("div", { className: "composer-bar" }, el("button", { className: "button primary", text: "Send template", attrs: { type: "submit" } })));
  // Collapsed while free answers are possible, open once only a template may go.
  const templates = el("details", { className: "im-templates" },
                       el("summary", { text: "Send an approved template" }), templateForm);
  panel.append(head, list, windowNote, form, templates);

  const conversation = conversationPanel(panel, done, {
    url: (id) => `/api/messaging/conversations/${encodeURIComponent(id)}`, onFinished, draw,
    reset: () => { text.value = ""; }, redraw: () => { if (state.view) draw(); } });
  const { state, load } = conversation;

  function draw() {
    if (!state.view) {
      head.replaceChildren(el("span", { className: "muted small", text: "Loading the messages…" }));
      list.replaceChildren();
      windowNote.hidden = true;
      return;
    }
    const thread = state.view.thread;
    head.replaceChildren(el("span", { className: "badge", text: humanize(thread.channel) }),
                         el("span", { text: thread.peer }),
                         el("span", { className: "muted small", text: thread.account_name }));
    const grew = state.view.messages.length > list.children.length;
    list.replaceChildren(...state.view.messages.map(messageItem));
    if (grew) list.scrollTop = list.scrollHeight;
    const wrapping = state.phase === "wrapping";
    windowNote.hidden = thread.channel !== "whatsapp";
    windowNote.className = `im-window${thread.needs_template ? " closed" : ""}`;
    windowNote.textContent = thread.needs_template
      ? "The customer last wrote more than 24 hours ago: WhatsApp accepts only an approved template now."
      : thread.window_closes_at ? `Free answers possible until ${when(thread.window_closes_at)}.` : "";
    form.hidden = wrapping || thread.needs_template;
    templates.hidden = wrapping || thread.channel !== "whatsapp";
    if (thread.needs_template) templates.open = true;
    label.textContent = `Your answer to ${thread.peer}`;
  }

  async function post(path, body, message) {
    await api(`/api/messaging/conversations/${encodeURIComponent(state.shown)}/${path}`,
              { method: "POST", body: { ...body, id: crypto.randomUUID() } });
    toast(message);
    await load(state.shown);
  }

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const body = text.value.trim();
    const link = media.value.trim();
    if (!state.shown || (!body && !link)) return;
    send.disabled = true;
    try {
      await post("messages", { text: body, media_urls: link ? [link] : [] }, "Message queued for sending.");
      text.value = "";
      media.value = "";
    } catch (error) {
      toast(error.message || String(error), "error");
    } finally {
      send.disabled = false;
    }
  });

  templateForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    if (!state.shown) return;
    const parameters = templateParameters.value.split(",").map((p) => p.trim()).filter(Boolean);
    try {
      await post("templates", { name: templateName.value.trim(), language: templateLanguage.value.trim(), parameters },
                 "Template queued for sending.");
      templateParameters.value = "";
    } catch (error) {
      toast(error.message || String(error), "error");
    }
  });

  return { show: conversation.show, refresh: conversation.refresh };
}
