// Drawing helpers for the agent desktop: small DOM builders that only ever set text through
// textContent, so nothing a customer types can become markup.

import { attachmentLink } from "/static/attachments.js";
import { callSummary } from "/static/desk-call-details.js";

export function el(tag, { className, text, attrs } = {}, ...children) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined && text !== null) node.textContent = String(text);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value !== undefined && value !== null && value !== false) node.setAttribute(name, value);
  }
  node.append(...children.filter(Boolean));
  return node;
}

export function humanize(name) {
  const words = String(name || "").replaceAll("_", " ");
  return words.charAt(0).toUpperCase() + words.slice(1);
}

export function duration(seconds) {
  const total = Math.max(0, Math.floor(seconds));
  const h = Math.floor(total / 3600);
  const m = Math.floor((total % 3600) / 60);
  const s = String(total % 60).padStart(2, "0");
  return h ? `${h}:${String(m).padStart(2, "0")}:${s}` : `${m}:${s}`;
}

export function clockTime(iso) {
  const date = new Date(iso);
  return Number.isNaN(date.getTime()) ? "" :
    date.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
}

export function dateTime(iso) {
  const date = new Date(iso);
  return Number.isNaN(date.getTime()) ? "" :
    date.toLocaleString([], { dateStyle: "medium", timeStyle: "short" });
}

// One message of the log: the customer's on the left, ours on the right, system lines in the
// middle; internal notes and supervisor whispers are marked so they are never mistaken for
// what the customer sees.
export function messageItem(message, myAgentId) {
  const kind = message.author_kind;
  const visibility = message.visibility;
  let role = kind === "customer" ? "customer" : kind === "system" ? "system" : "agent";
  if (visibility === "internal") role = "note";
  if (visibility === "whisper") role = "whisper";
  const mine = kind === "agent" && message.author_id === myAgentId;
  const item = el("li", { className: `message ${role}${mine ? " mine" : ""}`,
                          attrs: { "data-id": message.id, "data-kind": role } });
  if (role === "system") {
    item.append(el("span", { text: message.text }),
                el("time", { text: clockTime(message.created_at),
                             attrs: { datetime: message.created_at } }));
    return item;
  }
  let who = message.author_name || humanize(kind);
  if (role === "whisper") who = `Whisper from ${message.author_name || "a supervisor"}`;
  else if (role === "note") who = `Internal note · ${who}`;
  else if (kind === "supervisor") who = `${who} (supervisor)`;
  const head = el("div", { className: "message-head" },
                  el("span", { className: "author", text: who }),
                  el("time", { text: clockTime(message.created_at),
                               attrs: { datetime: message.created_at } }));
  if (role === "whisper" || role === "note") {
    head.append(el("span", { className: "private",
                             text: role === "whisper" ? "only you see this" : "agents only" }));
  }
  const files = message.attachments || [];
  // A file's message text is only "📎 <name>": the link says it better.
  if (!files.length) item.append(head, el("p", { className: "message-text", text: message.text }));
  else item.append(head, el("div", { className: "message-files" }, ...files.map((f) => attachmentLink(f))));
  return item;
}

export function dividerItem(text) {
  return el("li", { className: "message divider", attrs: { "data-kind": "divider" } },
            el("span", { text }));
}

function fact(term, value) {
  return [el("dt", { text: term }), el("dd", { text: value || "—" })];
}

// A phone number with its Call button (click-to-call, desk-dial.js).
function phoneFact(term, number, onCall) {
  const call = el("button", { className: "button small call-number", text: "Call",
                              attrs: { type: "button", "aria-label": `Call ${number}` } });
  call.addEventListener("click", () => onCall(number));
  return [el("dt", { text: term }),
          el("dd", { className: "phone-fact" }, el("span", { text: number }), call)];
}

// The right column: who the customer is and how earlier contacts went.
export function customerPanel(view, { agentNames, codeLabels, currentContactId, onCall }) {
  const box = document.createDocumentFragment();
  const customer = view.customer;
  if (!customer) {
    box.append(el("p", { className: "empty small", text: "No customer on this conversation." }));
    return box;
  }
  const attributes = customer.attributes || {};
  const name = customer.name || "Unnamed customer";
  box.append(el("div", { className: "customer-card" },
    el("span", { className: "avatar", text: initials(name), attrs: { "aria-hidden": "true" } }),
    el("div", {},
       el("p", { className: "customer-name", text: name, attrs: { "data-testid": "customer-name" } }),
       el("p", { className: "small muted", text: attributes.email || "No email given" }))));
  const facts = el("dl", { className: "facts" });
  for (const identity of customer.identities || []) {
    facts.append(...(identity.kind === "phone" && onCall
      ? phoneFact(humanize(identity.kind), identity.value, onCall)
      : fact(humanize(identity.kind), identity.value)));
  }
  for (const [key, value] of Object.entries(attributes)) {
    const shown = (customer.identities || []).some((i) => i.kind === key && i.value === String(value));
    if (key !== "email" && !shown && (typeof value === "string" || typeof value === "number")) {
      facts.append(...fact(humanize(key), String(value)));
    }
  }
  box.append(facts);
  const contacts = view.contacts || [];
  box.append(el("h3", { text: `Contacts (${contacts.length})` }));
  if (!contacts.length) {
    box.append(el("p", { className: "empty small", text: "No contacts yet." }));
    return box;
  }
  const list = el("ol", { className: "contacts", attrs: { "data-testid": "past-contacts" } });
  for (const contact of contacts) {
    const current = contact.contact_id === currentContactId;
    const badges = el("div", { className: "contact-badges" },
      el("span", { className: "badge", text: humanize(contact.channel) }));
    if (current) badges.append(el("span", { className: "badge available", text: contact.channel === "voice" ? "This call" : "This chat" }));
    if (contact.disposition) {
      badges.append(el("span", { className: "badge",
                                 text: codeLabels.get(contact.disposition) || contact.disposition,
                                 attrs: { title: "Disposition" } }));
    }
    if (contact.csat_score) {
      badges.append(el("span", { className: `badge ${contact.csat_score >= 4 ? "ok" :
                                   contact.csat_score <= 2 ? "bad" : "warn"}`,
                                 text: `CSAT ${contact.csat_score}/5`,
                                 attrs: { "aria-label": `Satisfaction ${contact.csat_score} of 5` } }));
    }
    const who = agentNames.get(contact.agent_id) || (contact.agent_id ? "Another agent" : "Not answered");
    list.append(el("li", { className: `contact${current ? " current" : ""}` },
      el("p", { className: "contact-when", text: dateTime(contact.started_at) }),
      el("p", { className: "small", text: [contact.queue, contact.topic].filter(Boolean).join(" · ") || "No topic" }),
      el("p", { className: "small muted", text: who }),
      contact.call ? callSummary(contact.call) : null,
      badges));
  }
  box.append(list);
  return box;
}

function initials(name) {
  return name.split(/\s+/).filter(Boolean).slice(0, 2).map((w) => w[0].toUpperCase()).join("") || "?";
}
