// The desk's email conversation: the ticket (reference, customer, first-response deadline),
// every email in and out with its delivery state, and the reply form. Text is always set with
// textContent. An email's HTML (already sanitised by the server with nh3) is shown only on
// request, inside an iframe sandboxed without scripts and with a policy that loads nothing but
// the email's own inline pictures: a second wall if the sanitiser ever missed something.
import { conversationPanel } from "/static/desk-conversation.js";
import { api, toast } from "/static/session.js";
import { el } from "/static/desk-view.js";

const FRAME_POLICY = "default-src 'none'; img-src data:; style-src 'unsafe-inline'";
const FRAME_STYLE = "body{font:14px/1.5 system-ui,sans-serif;color:#1b1f24;margin:8px;overflow-wrap:anywhere}img{max-width:100%;height:auto}";

const when = (iso) => (iso ? new Date(iso).toLocaleString([], { dateStyle: "medium", timeStyle: "short" }) : "");

function stateLabel(email) {
  if (email.direction === "inbound") {
    return { bounce: "Delivery failure", auto_reply: "Automatic reply" }[email.kind] || "Received";
  }
  const kind = email.kind === "acknowledgement" ? "Acknowledgement" : "Reply";
  return { pending: `${kind} · sending…`, sent: `${kind} · sent`, failed: `${kind} · not delivered` }[email.status] || kind;
}

function frameFor(email) {
  const frame = el("iframe", { className: "email-frame", attrs: {
    title: `Formatted email: ${email.subject || "no subject"}`,
    sandbox: "allow-popups allow-popups-to-escape-sandbox", referrerpolicy: "no-referrer" } });
  // srcdoc is a property of the sandboxed frame, never markup of this page.
  frame.srcdoc = `<!doctype html><meta charset="utf-8"><meta http-equiv="Content-Security-Policy" content="${FRAME_POLICY}"><base target="_blank"><style>${FRAME_STYLE}</style>${email.safe_html}`;
  frame.addEventListener("load", () => {
    // Opaque origin: the height cannot be read, so a sensible fixed one and a resize handle.
    frame.style.height = "22rem";
  });
  return frame;
}

function emailItem(email) {
  const who = email.direction === "inbound"
    ? `${email.from_name ? `${email.from_name} <${email.from_address}>` : email.from_address}`
    : `To ${email.to.join(", ")}`;
  const body = el("div", { className: "email-body" },
                  el("pre", { className: "email-text", text: email.text || "(no text)" }));
  const tools = el("div", { className: "email-tools" });
  if (email.safe_html) {
    const toggle = el("button", { className: "button ghost small", text: "Show formatted",
                                  attrs: { type: "button", "aria-pressed": "false" } });
    toggle.addEventListener("click", () => {
      const formatted = toggle.getAttribute("aria-pressed") !== "true";
      toggle.setAttribute("aria-pressed", String(formatted));
      toggle.textContent = formatted ? "Show plain text" : "Show formatted";
      body.replaceChildren(formatted ? frameFor(email)
        : el("pre", { className: "email-text", text: email.text || "(no text)" }));
    });
    tools.append(toggle);
  }
  const files = email.attachments.length ? el("ul", { className: "email-files", attrs: { "aria-label": "Attachments" } },
    ...email.attachments.map((file) => el("li", {},
      el("a", { text: `${file.filename} (${Math.ceil(file.size_bytes / 1024)} KB)`,
                attrs: { href: file.url, download: file.filename, rel: "noopener" } })))) : null;
  const failed = email.status === "failed" || email.kind === "bounce";
  return el("li", { className: "email-item", attrs: { "data-direction": email.direction, "data-kind": email.kind, "data-testid": "email" } },
    el("article", { attrs: { "aria-label": `${stateLabel(email)}, ${when(email.created_at)}` } },
      el("header", { className: "email-head" },
        el("span", { className: "email-who", text: who }),
        el("span", { className: `badge${failed ? " bad" : ""}`, text: stateLabel(email) }),
        el("time", { className: "muted small", text: when(email.created_at), attrs: { datetime: email.created_at } })),
      el("h3", { className: "email-subject", text: email.subject || "(no subject)" }),
      email.last_error ? el("p", { className: "form-error", text: email.last_error, attrs: { role: "note" } }) : null,
      tools, body, files));
}

function ticketLine(ticket) {
  const parts = [el("span", { className: "badge", text: `#${ticket.reference}` }),
                 el("span", { text: ticket.customer_address })];
  if (ticket.first_responded_at) {
    parts.push(el("span", { className: "muted small", text: `First answer ${when(ticket.first_responded_at)}` }));
  } else if (ticket.first_response_due_at) {
    const overdue = new Date(ticket.first_response_due_at) < new Date();
    parts.push(el("span", { className: `badge${overdue ? " bad" : " warn"}`,
                            text: `${overdue ? "Overdue since" : "Answer by"} ${when(ticket.first_response_due_at)}`,
                            attrs: { "data-testid": "email-due" } }));
  }
  return el("p", { className: "email-ticket" }, ...parts);
}

export function mountEmail(panel, { onFinished }) {
  const list = el("ol", { className: "email-list", attrs: { "aria-label": "Emails", "data-testid": "email-list" } });
  const ticket = el("div", { className: "email-ticket-box" });
  const text = el("textarea", { attrs: { id: "email-reply", rows: "4", required: "",
                                         placeholder: "Write your answer. It is sent by email in this thread." } });
  // Not "Reply": that names the chat's composer, which shares the page.
  const label = el("label", { text: "Your answer", attrs: { for: "email-reply" } });
  const send = el("button", { className: "button primary", text: "Send email", attrs: { type: "submit" } });
  const done = el("button", { className: "button", text: "Done", attrs: { type: "button",
    title: "Finish this email for now; the customer's next email comes back as a new task" } });
  const form = el("form", { className: "email-compose", attrs: { "data-testid": "email-compose", autocomplete: "off" } },
                  label, text, el("div", { className: "composer-bar" }, done, send));
  panel.append(ticket, list, form);

  const conversation = conversationPanel(panel, done, {
    url: (id) => `/api/emails/conversations/${encodeURIComponent(id)}`, onFinished, draw,
    reset: () => { text.value = ""; }, redraw: () => { form.hidden = state.phase === "wrapping"; } });
  const { state, load } = conversation;

  function draw() {
    if (!state.view) {
      ticket.replaceChildren(el("p", { className: "muted small", text: "Loading the emails…" }));
      list.replaceChildren();
      return;
    }
    ticket.replaceChildren(ticketLine(state.view.ticket));
    const grew = state.view.emails.length > list.children.length;
    const open = new Set([...list.querySelectorAll("[aria-pressed='true']")].map((b) => b.closest("[data-id]")?.dataset.id));
    list.replaceChildren(...state.view.emails.map((email) => {
      const item = emailItem(email);
      item.dataset.id = email.id;
      if (open.has(email.id)) item.querySelector("[aria-pressed]")?.click();
      return item;
    }));
    if (grew) list.scrollTop = list.scrollHeight;  // the newest email in sight
    form.hidden = state.phase === "wrapping";
    label.textContent = `Your answer to ${state.view.ticket.customer_address}`;
  }

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const body = text.value.trim();
    if (!state.shown || !body) return;
    send.disabled = true;
    try {
      await api(`/api/emails/conversations/${encodeURIComponent(state.shown)}/replies`,
                { method: "POST", body: { text: body, id: crypto.randomUUID() } });
      text.value = "";
      toast("Email queued for sending.");
      await load(state.shown);
    } catch (error) {
      toast(error.message || String(error), "error");
    } finally {
      send.disabled = false;
    }
  });

  return { show: conversation.show, refresh: conversation.refresh };
}
