/* OmniCC contact form: one script tag, drawn where the tag is, no build step.

     <script src="https://host/static/contact-form.js" data-tenant="acme"
             data-queue="QUEUE_ID" data-title="Contact us" defer></script>

   Without data-queue the visitor picks a topic (the tenant's queues). Each request is stored
   and routed to an agent, who answers by email (POST /api/forms/contact, docs/customers.md).
   The form lives in a Shadow DOM so the host page's CSS cannot break it; text is always set
   with textContent. The "website" field is a honeypot: hidden from people, filled by bots. */
(() => {
  "use strict";

  const script = document.currentScript
    || document.querySelector("script[src*='contact-form.js'][data-tenant]");
  if (!script) return;
  const tenant = (script.dataset.tenant || "").trim();
  if (!tenant) {
    console.error("OmniCC contact form: the script tag needs data-tenant");
    return;
  }
  const server = new URL(script.dataset.server || script.src, location.href).origin;
  const fixedQueue = (script.dataset.queue || "").trim();
  const title = (script.dataset.title || "Contact us").slice(0, 80);
  let serial = 0;

  function h(tag, attributes = {}, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attributes)) {
      if (value === false || value === null || value === undefined) continue;
      if (key === "text") node.textContent = value;
      else if (key === "class") node.className = value;
      else node.setAttribute(key, value === true ? "" : String(value));
    }
    node.append(...children.filter(Boolean));
    return node;
  }

  function field(label, control, hint) {
    const id = `ocf-${++serial}`;
    control.id = id;
    const error = h("p", { class: "error", id: `${id}-error`, "aria-live": "polite" });
    control.setAttribute("aria-describedby", `${id}-error`);
    return { row: h("div", { class: "row" }, h("label", { for: id, text: label }),
                    hint ? h("p", { class: "hint", text: hint }) : null, control, error),
             control, error };
  }

  const host = h("div", { class: "omnicc-contact-form" });
  script.after(host);
  const root = host.attachShadow({ mode: "open" });
  root.append(h("style", { text: `
    :host { all: initial; display: block; font: 15px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: #172033; }
    form { display: grid; gap: .2rem; max-width: 34rem; background: #fff; border: 1px solid #d5dbe5; border-radius: 10px; padding: 1rem 1.2rem; }
    h2 { font-size: 1.2rem; margin: 0 0 .4rem; }
    label { display: block; font-weight: 600; font-size: .88rem; margin: .5rem 0 .2rem; }
    input, select, textarea { font: inherit; width: 100%; box-sizing: border-box; border: 1px solid #8a94a6; border-radius: 8px; padding: .45rem .6rem; color: inherit; background: #fff; }
    textarea { min-height: 7rem; resize: vertical; }
    input:focus-visible, select:focus-visible, textarea:focus-visible, button:focus-visible { outline: 2px solid #1d4ed8; outline-offset: 2px; }
    [aria-invalid="true"] { border-color: #b91c1c; }
    .hint { margin: 0 0 .2rem; font-size: .82rem; color: #4a5568; }
    .error { margin: .15rem 0 0; font-size: .84rem; color: #b91c1c; min-height: 0; }
    .trap { position: absolute; left: -10000px; width: 1px; height: 1px; overflow: hidden; }
    button { margin-top: .8rem; font: inherit; font-weight: 600; border: 0; border-radius: 8px; padding: .6rem 1rem; background: #1d4ed8; color: #fff; cursor: pointer; min-height: 40px; }
    button[disabled] { opacity: .6; cursor: progress; }
    .status { margin: .6rem 0 0; }
    .done { background: #dcfce7; color: #166534; border-radius: 8px; padding: .8rem 1rem; }
  ` }));

  const name = field("Your name", h("input", { autocomplete: "name", maxlength: "200" }));
  const email = field("Email", h("input", { type: "email", autocomplete: "email", required: true, maxlength: "320" }),
                      "We answer to this address.");
  const phone = field("Phone (optional)", h("input", { type: "tel", autocomplete: "tel", maxlength: "40" }));
  const topic = field("Topic", h("select", { required: true }));
  const subject = field("Subject", h("input", { maxlength: "200" }));
  const message = field("Message", h("textarea", { required: true, maxlength: "10000" }));
  const trap = h("input", { name: "website", tabindex: "-1", autocomplete: "off" });
  const status = h("p", { class: "status", role: "status", "aria-live": "polite" });
  const send = h("button", { type: "submit", text: "Send" });
  const fields = { name, email, phone, subject, message, queue_id: topic };
  const form = h("form", { novalidate: true, "aria-label": title }, h("h2", { text: title }),
    name.row, email.row, phone.row, fixedQueue ? null : topic.row, subject.row, message.row,
    h("div", { class: "trap", "aria-hidden": "true" }, h("label", { text: "Website" }), trap),
    send, status);
  root.append(form);

  if (!fixedQueue) {
    fetch(`${server}/api/chat/config?tenant=${encodeURIComponent(tenant)}`)
      .then((response) => (response.ok ? response.json() : Promise.reject(new Error(response.statusText))))
      .then((config) => {
        for (const queue of config.queues) {
          topic.control.append(h("option", { value: queue.id, text: queue.description || queue.name }));
        }
      })
      .catch(() => { status.textContent = "The form cannot be used right now. Please try again later."; });
  }

  function clearErrors() {
    for (const entry of Object.values(fields)) {
      entry.error.textContent = "";
      entry.control.removeAttribute("aria-invalid");
    }
  }

  function showError(fieldName, text) {
    const entry = fields[fieldName];
    if (!entry) {
      status.textContent = text;
      return;
    }
    entry.error.textContent = text;
    entry.control.setAttribute("aria-invalid", "true");
    entry.control.focus();
  }

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    clearErrors();
    status.textContent = "";
    if (!email.control.value.trim()) return showError("email", "Please give your email address.");
    if (!message.control.value.trim()) return showError("message", "Please write your message.");
    send.disabled = true;
    status.textContent = "Sending…";
    try {
      const response = await fetch(`${server}/api/forms/contact?tenant=${encodeURIComponent(tenant)}`, {
        method: "POST", headers: { "Content-Type": "application/json" },
        body: JSON.stringify({
          queue_id: fixedQueue || topic.control.value, name: name.control.value.trim(),
          email: email.control.value.trim(), phone: phone.control.value.trim(),
          subject: subject.control.value.trim(), message: message.control.value,
          page: location.href.slice(0, 500), website: trap.value }),
      });
      const body = await response.json().catch(() => ({}));
      if (!response.ok) {
        status.textContent = "";
        if (response.status === 429) {
          status.textContent = "Too many messages were sent from here. Please try again later.";
        } else if (response.status === 422 && Array.isArray(body.errors) && body.errors.length) {
          for (const error of body.errors) showError(String(error.field || "").split(".").at(-1), error.message || "Please check this field.");
        } else {
          showError(body.field || "", body.detail || "The message could not be sent.");
        }
        return;
      }
      const by = new Date(body.respond_by).toLocaleString([], { dateStyle: "medium", timeStyle: "short" });
      form.replaceChildren(h("h2", { text: title }),
        h("div", { class: "done", role: "status" },
          h("p", { text: `Thank you — we received your message (reference ${body.reference}).` }),
          h("p", { text: `We will answer by email by ${by}.` })));
    } catch {
      status.textContent = "The message could not be sent. Please check your connection and try again.";
    } finally {
      send.disabled = false;
    }
  });
})();
