// The admin page: lists and forms over /api/admin, plain ES module, no build step. The section
// is in the address (#queues), so a reload or a shared link opens the same one.
import { api, ApiError, currentUser, toast } from "/static/session.js";
import { showCrm } from "/static/admin-crm.js";

const DAYS = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];
const ranges = (text) => text.split(",").map((r) => r.trim()).filter(Boolean).map((r) => r.split("-").map((t) => t.trim()));
const showRanges = (list) => (list || []).map((r) => r.join("-")).join(", ");
const NULLABLE = ["business_hours_id", "queue_id", "user_id", "shortcut", "email", "timezone", "flow_id", "outbound_queue_id"];

// Each field: [key, label, kind, hint, options, default]. Kinds: text, textarea, number, bool, json, list,
// select, password, weekly, holidays. `columns`: [key, heading] shown in the list.
const SECTIONS = {
  queues: { title: "Queues", noun: "queue", path: "queues",
    columns: [["name", "Name"], ["expression", "Eligible agents"], ["strategy", "Strategy"], ["enabled", "Enabled"]], fields: [
    ["name", "Name", "text"], ["description", "Description", "text"], ["enabled", "Enabled", "bool"],
    ["expression", "Eligible agents (expression)", "text", "e.g. skills.finnish >= 3 and team == \"billing\"; empty: everyone"],
    ["strategy", "Strategy", "select", "", ["longest_idle", "least_occupied", "most_proficient", "round_robin", "fewest_contacts", "random", "ring_all", "sequential"]],
    ["priority", "Priority", "number", "", null, 0], ["offer_timeout_s", "Offer timeout (s)", "number", "", null, 20],
    ["wrap_up_s", "Wrap-up (s)", "number", "Empty: no wrap-up"], ["sl_threshold_s", "Service-level threshold (s)", "number", "", null, 20],
    ["business_hours_id", "Business hours id", "text", "Empty: always open"],
    ["reoffer_delay_s", "Re-offer delay (s)", "number", "Before offering again to an agent who let an offer pass", null, 10],
    ["short_abandon_s", "Short abandon (s)", "number", "Leaving sooner is not counted against the service level", null, 5],
    ["aging_per_s", "Aging per second", "number", "Priority a waiting task gains each second", null, 0],
    ["vip_score", "VIP score", "number", "", null, 100], ["expected_handle_s", "Expected handling time (s)", "number", "", null, 180],
    ["proficiency_skills", "Proficiency skills", "list", "Comma separated"], ["hunt_order", "Hunt order", "list", "Agent ids, comma separated"]] },
  skills: { title: "Skills", noun: "skill", path: "skills", columns: [["name", "Name"], ["description", "Description"]],
    fields: [["name", "Name", "text"], ["description", "Description", "text"]] },
  agents: { title: "Agents", noun: "agent", path: "agents", columns: [["name", "Name"], ["status", "Status"]], fields: [
    ["name", "Name", "text"], ["user_id", "User id (login)", "text"],
    ["skills", "Skills (JSON)", "json", "{\"finnish\": 4}"], ["capacity", "Capacity per channel (JSON)", "json", "{\"voice\": 1, \"chat\": 3}"],
    ["attributes", "Attributes (JSON)", "json", "{\"team\": \"billing\"}"]] },
  "routing-policies": { title: "Routing policies", noun: "routing policy", path: "routing-policies", columns: [["name", "Name"], ["final_action", "Final action"]], fields: [
    ["name", "Name", "text"], ["steps", "Steps (JSON)", "json", "[{\"queue\": \"<queue id>\", \"timeout_s\": 30}]"],
    ["final_action", "Final action", "select", "", ["close", "voicemail", "callback"]], ["final_reason", "Final reason", "text"]] },
  "business-hours": { title: "Business hours", noun: "business hours", path: "business-hours", columns: [["name", "Name"], ["timezone", "Time zone"]], fields: [
    ["name", "Name", "text"], ["timezone", "Time zone", "text", "e.g. Europe/Helsinki; empty: the tenant's"],
    ["weekly", "Weekly hours", "weekly"], ["holidays", "Holidays", "holidays", "One a line: 2026-12-24 Christmas Eve [09:00-12:00]"]] },
  "wrap-up-codes": { title: "Wrap-up codes", noun: "wrap-up code", path: "wrap-up-codes", columns: [["code", "Code"], ["label", "Label"], ["enabled", "Enabled"]], fields: [
    ["code", "Code", "text"], ["label", "Label", "text"], ["enabled", "Enabled", "bool"]] },
  "canned-responses": { title: "Canned responses", noun: "canned response", path: "canned-responses", columns: [["title", "Title"], ["shortcut", "Shortcut"]], fields: [
    ["title", "Title", "text"], ["shortcut", "Shortcut", "text"], ["text", "Text", "textarea"], ["queue_id", "Queue id", "text", "Empty: all queues"]] },
  users: { title: "Users", noun: "user", path: "users", columns: [["username", "Username"], ["display_name", "Name"], ["role", "Role"], ["disabled", "Disabled"]], fields: [
    ["username", "Username", "text"], ["display_name", "Display name", "text"], ["email", "Email", "text"],
    ["role", "Role", "select", "", ["agent", "supervisor", "admin"]], ["disabled", "Disabled", "bool", "", null, false],
    ["password", "New password", "password", "Empty: unchanged"]] },
  "api-tokens": { title: "API tokens", noun: "API token", path: "api-tokens", columns: [["name", "Name"], ["role", "Role"], ["revoked_at", "Revoked"]], readOnly: true, fields: [
    ["name", "Name", "text"], ["role", "Role", "select", "", ["supervisor", "admin"]]] },
  numbers: { title: "Phone numbers", noun: "phone number", path: "voice/numbers",
    columns: [["number", "Number"], ["name", "Name"], ["flow_id", "IVR flow"], ["enabled", "Enabled"]], fields: [
    ["number", "Number", "text", "E.164 (+4930...) or the user part of a SIP address (1000)"], ["name", "Name", "text"],
    ["flow_id", "IVR flow id", "text", "The flow callers hear; see IVR flows"],
    ["outbound_queue_id", "Caller ID of queue (id)", "text", "Outbound calls from this queue show this number"],
    ["is_default_outbound", "Default caller ID", "bool", "", null, false], ["enabled", "Enabled", "bool", "", null, true]] },
  "ivr-flows": { title: "IVR flows", noun: "IVR flow", path: "voice/ivr-flows",
    columns: [["name", "Name"], ["entry", "Entry node"], ["language", "Language"], ["numbers", "Numbers"]], fields: [
    ["name", "Name", "text"], ["entry", "Entry node", "text"], ["language", "Language", "text", "", null, "en"],
    ["nodes", "Nodes (JSON)", "json", "{\"welcome\": {\"kind\": \"play\", \"prompt\": {\"text\": \"Hello\"}, \"next\": \"support\"}, \"support\": {\"kind\": \"queue\", \"queue_id\": \"<queue id>\"}}"]] },
  "sip-accounts": { title: "SIP accounts", noun: "SIP account", path: "voice/sip-accounts",
    columns: [["username", "User name"], ["agent_id", "Agent id"], ["realm", "Realm"], ["enabled", "Enabled"]], fields: [
    ["agent_id", "Agent id", "text"], ["username", "User name", "text", "What the agent's phone registers with"],
    ["password", "Password", "password", "Empty: a strong one is generated and shown once"]],
    editFields: [["enabled", "Enabled", "bool", "", null, true]] },
  mailboxes: { title: "Mailboxes", noun: "mailbox", path: "email/mailboxes",
    columns: [["name", "Name"], ["address", "Address"], ["imap_host", "IMAP server"], ["is_enabled", "Enabled"]], fields: [
    ["name", "Name", "text"], ["address", "Address", "text", "The From address of replies and acknowledgements"],
    ["queue_id", "Queue id", "text", "Where its emails are routed"],
    ["imap_host", "IMAP server", "text"], ["imap_port", "IMAP port", "number", "", null, 993],
    ["imap_security", "IMAP security", "select", "", ["tls", "starttls", "plain"]],
    ["imap_username", "IMAP user name", "text"], ["imap_password", "IMAP password", "password", "Empty: unchanged"],
    ["imap_folder", "IMAP folder", "text", "", null, "INBOX"],
    ["smtp_host", "SMTP server", "text"], ["smtp_port", "SMTP port", "number", "", null, 465],
    ["smtp_security", "SMTP security", "select", "", ["tls", "starttls", "plain"]],
    ["smtp_username", "SMTP user name", "text"], ["smtp_password", "SMTP password", "password", "Empty: unchanged"],
    ["auto_acknowledge", "Acknowledge with a ticket reference", "bool", "", null, true],
    ["first_response_s", "First-response target (business seconds)", "number", "", null, 28800],
    ["poll_interval_s", "Poll interval (s)", "number", "Used when the server has no IDLE", null, 60],
    ["is_enabled", "Enabled", "bool", "", null, true]] },
  "messaging-accounts": { title: "Messaging accounts", noun: "messaging account", path: "messaging/accounts",
    columns: [["name", "Name"], ["provider", "Provider"], ["channel", "Channel"], ["webhook_path", "Webhook path"], ["is_enabled", "Enabled"]], fields: [
    ["name", "Name", "text"], ["provider", "Provider", "select", "", ["twilio", "whatsapp", "telegram", "messenger"]],
    ["channel", "Channel", "select", "Twilio carries SMS and WhatsApp; the others their own", ["sms", "whatsapp", "telegram", "messenger"]],
    ["queue_id", "Queue id", "text", "Where its messages are routed"],
    ["address", "Address", "text", "Twilio: our number (E.164); WhatsApp: the phone number id; Telegram: the bot's user name; Messenger: the page id"],
    ["account_sid", "Account SID (Twilio)", "text"],
    ["auth_token", "Auth or access token", "password", "Empty: unchanged"],
    ["app_secret", "App secret (Meta) or secret token (Telegram)", "password", "Empty: unchanged"],
    ["verify_token", "Verify token (Meta)", "password", "Empty: unchanged"],
    ["api_base_url", "API base URL", "text", "Empty: the provider's public API"],
    ["is_enabled", "Enabled", "bool", "", null, true]] },
  "client-contacts": { title: "Client contacts", noun: "client contact", path: "client-contacts",
    columns: [["queue_name", "Queue"], ["email", "Email"], ["batch_minutes", "Together every (min)"], ["is_enabled", "Enabled"]], fields: [
    ["queue_id", "Queue id", "text", "The client company is emailed about every contact this queue handled"], ["email", "Email", "text"],
    ["urgent_priority", "Urgent from priority", "number", "Empty: priority never makes a contact urgent"],
    ["urgent_codes", "Urgent wrap-up codes", "list", "Comma separated; urgent contacts are emailed at once"],
    ["batch_minutes", "Send the others together every (min)", "number", "0: one email per contact at once", null, 0],
    ["is_enabled", "Enabled", "bool", "", null, true]] },
  crm: { title: "CRM", custom: true },
  config: { title: "Export / import", custom: true },
};

const $ = (id) => document.getElementById(id);
let fieldCount = 0;
let view = 0;  // bumped by every list or form drawn, so a late answer never draws over a newer one

function el(tag, props = {}, ...children) {
  const { attrs, ...rest } = props;
  const node = Object.assign(document.createElement(tag), rest);
  for (const [name, value] of Object.entries(attrs || {})) if (value !== null && value !== undefined) node.setAttribute(name, value);
  node.append(...children.filter((c) => c !== null && c !== undefined));
  return node;
}

function say(text) {
  $("status").textContent = text;
}

function errorText(error) {
  if (!(error instanceof ApiError)) return error.message || String(error);
  const fields = (error.problem?.errors || []).map((e) => `${e.field.replace(/^body\./, "")}: ${e.message}`);
  return [error.message, ...fields].join(" · ");
}

function showError(box, error) {
  box.textContent = errorText(error);
  box.hidden = false;
}

function cell(value) {
  if (typeof value === "boolean") return el("span", { className: `badge ${value ? "ok" : ""}`, textContent: value ? "Yes" : "No" });
  if (value === null || value === undefined || value === "") return el("span", { className: "admin-none", textContent: "—" });
  return typeof value === "object" ? JSON.stringify(value) : String(value);
}

function input(field, value) {
  const [key, label, kind, hint, options, fallback] = field;
  const id = `field-${++fieldCount}`;
  const hintId = hint ? `${id}-hint` : null;
  const describe = { id, name: key, attrs: { "aria-describedby": hintId } };
  const hintNode = hint ? el("p", { className: "admin-hint", id: hintId, textContent: hint }) : null;
  if (kind === "bool") {
    const box = el("input", { ...describe, type: "checkbox", checked: value ?? fallback ?? true });
    return el("div", { className: "admin-field admin-check" }, el("label", {}, box, ` ${label}`), hintNode);
  }
  if (kind === "weekly") {
    return el("fieldset", { className: "admin-field admin-wide admin-weekly" },
      el("legend", { textContent: `${label} (e.g. 09:00-12:00, 13:00-17:00; empty: closed)` }),
      ...DAYS.map((day) => el("label", { textContent: day },
        el("input", { name: `weekly.${day}`, value: showRanges((value || {})[day]) }))));
  }
  let control;
  if (kind === "select") {
    control = el("select", describe, ...options.map((o) => el("option", { value: o, textContent: o, selected: o === value })));
  } else if (kind === "holidays") {
    control = el("textarea", { ...describe, rows: 4,
      value: (value || []).map((h) => [h.date, h.name, showRanges(h.hours)].filter(Boolean).join(" ")).join("\n") });
  } else if (kind === "textarea" || kind === "json") {
    control = el("textarea", { ...describe, rows: kind === "json" ? 4 : 5, className: kind === "json" ? "admin-code" : "",
      value: kind === "json" ? JSON.stringify(value ?? (key === "steps" ? [] : {}), null, 2) : value ?? "" });
  } else {
    control = el("input", { ...describe, type: kind === "number" ? "number" : kind === "password" ? "password" : "text",
      step: "any", autocomplete: kind === "password" ? "new-password" : "off",
      placeholder: kind === "number" && fallback !== undefined ? `Default: ${fallback}` : "",
      value: kind === "list" ? (value || []).join(", ") : kind === "password" ? "" : value ?? "" });
  }
  const wide = ["textarea", "json", "holidays"].includes(kind) || key === "expression";
  return el("div", { className: `admin-field${wide ? " admin-wide" : ""}` },
    el("label", { htmlFor: id, textContent: label }), control, hintNode);
}

function read(form, fields) {
  const body = {};
  for (const [key, label, kind] of fields) {
    if (kind === "weekly") {
      body.weekly = {};
      for (const day of DAYS) { const v = form.elements[`weekly.${day}`].value.trim(); if (v) body.weekly[day] = ranges(v); }
      continue;
    }
    const control = form.elements[key];
    if (kind === "bool") { body[key] = control.checked; continue; }
    const text = control.value.trim();
    if (kind === "json") {
      try { body[key] = text ? JSON.parse(text) : {}; } catch { throw new Error(`${label}: not valid JSON`); }
    } else if (kind === "list") body[key] = text ? text.split(",").map((s) => s.trim()).filter(Boolean) : [];
    else if (kind === "number") { if (text !== "") body[key] = Number(text); else if (key === "wrap_up_s") body[key] = null; }
    else if (kind === "holidays") body.holidays = text.split("\n").filter((l) => l.trim()).map((line) => {
      const [date, ...rest] = line.trim().split(/\s+/); const timed = rest.filter((w) => /^\d\d:\d\d-\d\d:\d\d,?$/.test(w));
      return { date, name: rest.filter((w) => !timed.includes(w)).join(" "), hours: ranges(timed.join(",")) }; });
    else if (text !== "") body[key] = text;
    else if (NULLABLE.includes(key)) body[key] = null;
  }
  return body;
}

function currentSection() {
  const name = location.hash.slice(1);
  return name in SECTIONS ? name : "queues";
}

function drawTabs(name) {
  for (const link of $("tabs").querySelectorAll("a")) {
    if (link.dataset.section === name) link.setAttribute("aria-current", "page"); else link.removeAttribute("aria-current");
  }
}

async function showSection(name, message = "") {
  const section = SECTIONS[name];
  const drawing = ++view;
  drawTabs(name);
  document.title = `${section.title} · Administration · OmniCC`;
  $("section-title").textContent = section.title;
  $("status").textContent = message;
  const area = $("section");
  const actions = $("section-actions");
  actions.replaceChildren();
  area.replaceChildren();
  if (section.custom) return name === "crm" ? showCrm(area, { el, input, read, say, showError }) : showConfig(area);
  const error = el("p", { className: "form-error", attrs: { role: "alert" }, hidden: true });
  let rows;
  try { rows = await api(`/api/admin/${section.path}`); } catch (problem) {
    if (drawing === view) { showError(error, problem); area.append(error); }
    return;
  }
  if (drawing !== view) return;
  actions.append(el("button", { type: "button", className: "button primary", textContent: `New ${section.noun}`,
                                onclick: () => edit(name, null) }));
  const label = (row) => row[section.columns[0][0]];
  const body = el("tbody", {}, ...rows.map((row) => {
    const buttons = el("td", { className: "admin-row-actions" });
    if (!section.readOnly) {
      buttons.append(el("button", { type: "button", className: "button small", textContent: "Edit",
                                    attrs: { "aria-label": `Edit ${label(row)}` }, onclick: () => edit(name, row) }));
    }
    const verb = section.readOnly ? "Revoke" : "Delete";
    if (!(section.readOnly && row.revoked_at)) {
      buttons.append(el("button", { type: "button", className: "button small ghost danger-text", textContent: verb,
        attrs: { "aria-label": `${verb} ${label(row)}` }, onclick: async () => {
          if (!confirm(`${verb} ${label(row)}?`)) return;
          try { await api(`/api/admin/${section.path}/${row.id}`, { method: "DELETE" }); await showSection(name, `${verb}d ${label(row)}.`); }
          catch (problem) { showError(error, problem); }
        } }));
    }
    return el("tr", { attrs: { "data-testid": "row" } },
      ...section.columns.map(([key], index) => index === 0 ? el("th", { scope: "row" }, cell(row[key])) : el("td", {}, cell(row[key]))),
      buttons);
  }));
  const table = el("table", { className: "data admin-table" },
    el("caption", { className: "visually-hidden", textContent: section.title }),
    el("thead", {}, el("tr", {}, ...section.columns.map(([, heading]) => el("th", { scope: "col", textContent: heading })),
                       el("th", { scope: "col", className: "admin-row-actions" }, el("span", { className: "visually-hidden", textContent: "Actions" })))),
    body);
  area.append(error, rows.length ? el("div", { className: "admin-scroll" }, table)
                                 : el("p", { className: "empty", textContent: `No ${section.title.toLowerCase()} yet.` }));
}

function edit(name, row) {
  const section = SECTIONS[name];
  const title = row ? `Edit ${section.noun} ${row[section.columns[0][0]]}` : `New ${section.noun}`;
  const fields = (row && section.editFields) || section.fields;  // some things change less once made
  const drawing = ++view;
  say("");
  const error = el("p", { className: "form-error", attrs: { role: "alert" }, hidden: true });
  const form = el("form", { className: "admin-form", noValidate: true, attrs: { "aria-labelledby": "form-title" } },
    el("h3", { id: "form-title", textContent: title }),
    el("div", { className: "admin-grid" }, ...fields.map((f) => input(f, row ? row[f[0]] : undefined))),
    error,
    el("div", { className: "admin-form-buttons" },
      el("button", { type: "button", className: "button", textContent: "Cancel", onclick: () => showSection(name) }),
      el("button", { type: "submit", className: "button primary", textContent: row ? "Save" : "Create" })));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    error.hidden = true;
    for (const control of form.querySelectorAll("[aria-invalid]")) control.removeAttribute("aria-invalid");
    try {
      const saved = await api(`/api/admin/${section.path}${row ? `/${row.id}` : ""}`,
                              { method: row ? "PUT" : "POST", body: read(form, fields) });
      if (drawing !== view) return;
      const secret = saved?.token ? ["Token", saved.token] : saved?.password ? ["Password", saved.password] : null;
      await showSection(name, secret ? `${secret[0]} set. Copy it now, it is shown only once: ${secret[1]}` : "Saved.");
    } catch (problem) {
      if (drawing !== view) return;
      showError(error, problem);
      const wrong = problem.problem?.expression !== undefined ? ["expression"]
        : (problem.problem?.errors || []).map((e) => e.field.replace(/^body\./, "").split(".")[0]);
      for (const key of wrong) form.elements[key]?.setAttribute?.("aria-invalid", "true");
      (form.querySelector("[aria-invalid]") || error).focus?.();
    }
  });
  $("section-actions").replaceChildren();
  $("section").replaceChildren(form);
  form.querySelector("input, textarea, select").focus();
}

async function putYaml(text, replace) {
  // The file goes as YAML, not JSON: `api` always sends JSON, so this one request is by hand.
  const me = await currentUser();
  const response = await fetch(`/api/admin/config?replace=${replace}`, {
    method: "PUT", credentials: "same-origin", body: text,
    headers: { "Content-Type": "application/yaml", Accept: "application/json", "X-CSRF-Token": me.csrf_token } });
  const data = await response.json().catch(() => ({ detail: response.statusText }));
  if (!response.ok) throw new ApiError(response.status, data);
  return data;
}

function showConfig(area) {
  const error = el("p", { className: "form-error", attrs: { role: "alert" }, hidden: true });
  const text = el("textarea", { id: "yaml", rows: 18, className: "admin-code", spellcheck: false });
  const replace = el("input", { type: "checkbox", id: "replace" });
  const load = el("button", { type: "button", className: "button", textContent: "Load current configuration", onclick: async () => {
    error.hidden = true;
    try { text.value = await api("/api/admin/config", { headers: { Accept: "application/yaml" } }); say("Loaded the current configuration."); }
    catch (problem) { showError(error, problem); }
  } });
  const download = el("a", { className: "button", href: "/api/admin/config", download: "omnicc-configuration.yaml", textContent: "Download YAML" });
  const upload = el("button", { type: "button", className: "button primary", textContent: "Import", onclick: async () => {
    error.hidden = true;
    try { const result = await putYaml(text.value, replace.checked); say(`Imported: ${JSON.stringify(result.imported)}`); }
    catch (problem) { showError(error, problem); }
  } });
  $("section-actions").append(load, download);
  area.append(
    el("p", { className: "admin-hint", textContent: "The configuration as one YAML file: things are named, not numbered, so the file moves between installations." }),
    el("div", { className: "admin-field admin-wide" }, el("label", { htmlFor: "yaml", textContent: "Configuration (YAML)" }), text),
    el("div", { className: "admin-field admin-check" }, el("label", {}, replace, " Replace: delete what the file does not name")),
    error,
    el("div", { className: "admin-form-buttons" }, upload));
}

async function start() {
  const me = await currentUser();
  $("who").textContent = `${me.display_name} · ${me.tenant_name}`;
  $("tabs").replaceChildren(...Object.entries(SECTIONS).map(([key, s]) =>
    el("li", {}, el("a", { href: `#${key}`, textContent: s.title, attrs: { "data-section": key } }))));
  window.addEventListener("hashchange", () => showSection(currentSection()));
  await showSection(currentSection());
}

start().catch((error) => toast(errorText(error), "error"));
