// The admin page: lists and forms over /api/admin, plain ES module, no build step.
const DAYS = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];
const ranges = (text) => text.split(",").map((r) => r.trim()).filter(Boolean).map((r) => r.split("-").map((t) => t.trim()));
const showRanges = (list) => (list || []).map((r) => r.join("-")).join(", ");

// Each field: [key, label, kind, hint]. Kinds: text, textarea, number, bool, json, list, role, weekly, holidays.
const SECTIONS = {
  queues: { title: "Queues", path: "queues", columns: ["name", "strategy", "enabled"], fields: [
    ["name", "Name", "text"], ["description", "Description", "text"], ["enabled", "Enabled", "bool"],
    ["expression", "Eligible agents (expression)", "text", "e.g. skills.finnish >= 3 and team == \"billing\""],
    ["strategy", "Strategy", "select", "", ["longest_idle", "least_occupied", "most_proficient", "round_robin", "fewest_contacts", "random", "ring_all", "sequential"]],
    ["priority", "Priority", "number"], ["offer_timeout_s", "Offer timeout (s)", "number"],
    ["wrap_up_s", "Wrap-up (s, empty: none)", "number"], ["sl_threshold_s", "Service-level threshold (s)", "number"],
    ["business_hours_id", "Business hours id (empty: always open)", "text"],
    ["proficiency_skills", "Proficiency skills (comma separated)", "list"], ["hunt_order", "Hunt order (agent ids, comma separated)", "list"]] },
  skills: { title: "Skills", path: "skills", columns: ["name", "description"], fields: [["name", "Name", "text"], ["description", "Description", "text"]] },
  agents: { title: "Agents", path: "agents", columns: ["name", "status"], fields: [
    ["name", "Name", "text"], ["user_id", "User id (login)", "text"],
    ["skills", "Skills (JSON)", "json", "{\"finnish\": 4}"], ["capacity", "Capacity per channel (JSON)", "json", "{\"voice\": 1, \"chat\": 3}"],
    ["attributes", "Attributes (JSON)", "json", "{\"team\": \"billing\"}"]] },
  "routing-policies": { title: "Routing policies", path: "routing-policies", columns: ["name", "final_action"], fields: [
    ["name", "Name", "text"], ["steps", "Steps (JSON)", "json", "[{\"queue\": \"<queue id>\", \"timeout_s\": 30}]"],
    ["final_action", "Final action", "select", "", ["close", "voicemail", "callback"]], ["final_reason", "Final reason", "text"]] },
  "business-hours": { title: "Business hours", path: "business-hours", columns: ["name", "timezone"], fields: [
    ["name", "Name", "text"], ["timezone", "Time zone (empty: the tenant's)", "text", "e.g. Europe/Helsinki"],
    ["weekly", "Weekly hours", "weekly"], ["holidays", "Holidays", "holidays", "One a line: 2026-12-24 Christmas Eve [09:00-12:00]"]] },
  "wrap-up-codes": { title: "Wrap-up codes", path: "wrap-up-codes", columns: ["code", "label", "enabled"], fields: [
    ["code", "Code", "text"], ["label", "Label", "text"], ["enabled", "Enabled", "bool"]] },
  "canned-responses": { title: "Canned responses", path: "canned-responses", columns: ["title", "shortcut"], fields: [
    ["title", "Title", "text"], ["shortcut", "Shortcut", "text"], ["text", "Text", "textarea"], ["queue_id", "Queue id (empty: all queues)", "text"]] },
  users: { title: "Users", path: "users", columns: ["username", "role", "disabled"], fields: [
    ["username", "Username", "text"], ["display_name", "Display name", "text"], ["email", "Email", "text"],
    ["role", "Role", "select", "", ["agent", "supervisor", "admin"]], ["disabled", "Disabled", "bool"],
    ["password", "New password (empty: unchanged)", "password"]] },
  "api-tokens": { title: "API tokens", path: "api-tokens", columns: ["name", "role", "revoked_at"], readOnly: true, fields: [
    ["name", "Name", "text"], ["role", "Role", "select", "", ["supervisor", "admin"]]] },
  config: { title: "Export / import", custom: true },
};

let csrf = null;
const $ = (id) => document.getElementById(id);
const el = (tag, props = {}, ...children) => { const e = Object.assign(document.createElement(tag), props); e.append(...children); return e; };
const say = (text, isError = false) => { $("status").textContent = text; $("status").className = isError ? "error" : ""; };

async function api(method, path, body, raw = false) {
  const headers = {};
  if (csrf && method !== "GET") headers["X-CSRF-Token"] = csrf;
  if (body !== undefined && !raw) headers["Content-Type"] = "application/json";
  if (raw) headers["Content-Type"] = "application/yaml";
  const response = await fetch(path, { method, headers, body: body === undefined ? undefined : raw ? body : JSON.stringify(body), credentials: "same-origin" });
  if (!response.ok) {
    const problem = await response.json().catch(() => ({ detail: response.statusText }));
    const fields = (problem.errors || []).map((e) => `${e.field}: ${e.message}`).join("; ");
    throw new Error(`${problem.title || response.status}: ${problem.detail || ""} ${fields}`);
  }
  if (response.status === 204) return null;
  return (response.headers.get("content-type") || "").includes("json") ? response.json() : response.text();
}

function input(field, value) {
  const [key, label, kind, hint, options] = field;
  let control;
  if (kind === "select") {
    control = el("select", { name: key }, ...options.map((o) => el("option", { value: o, textContent: o, selected: o === value })));
  } else if (kind === "bool") {
    control = el("input", { name: key, type: "checkbox", checked: value !== false });
    return el("label", {}, control, " ", label);
  } else if (kind === "weekly") {
    const box = el("fieldset", {}, el("legend", { textContent: `${label} (e.g. 09:00-12:00, 13:00-17:00; empty: closed)` }));
    for (const day of DAYS) box.append(el("label", { textContent: day }, el("input", { name: `weekly.${day}`, value: showRanges((value || {})[day]) })));
    return box;
  } else if (kind === "holidays") {
    control = el("textarea", { name: key, value: (value || []).map((h) => [h.date, h.name, showRanges(h.hours)].filter(Boolean).join(" ")).join("\n") });
  } else if (kind === "textarea" || kind === "json") {
    control = el("textarea", { name: key, value: kind === "json" ? JSON.stringify(value ?? (key === "steps" ? [] : {}), null, 2) : value ?? "" });
  } else {
    control = el("input", { name: key, type: kind === "number" ? "number" : kind === "password" ? "password" : "text", step: "any",
      value: kind === "list" ? (value || []).join(", ") : kind === "password" ? "" : value ?? "" });
  }
  const labelled = el("label", { textContent: label }, control);
  if (hint) labelled.append(el("span", { className: "hint", textContent: hint }));
  return labelled;
}

function read(form, fields) {
  const body = {};
  for (const [key, , kind] of fields) {
    if (kind === "weekly") {
      body.weekly = {};
      for (const day of DAYS) { const v = form.elements[`weekly.${day}`].value.trim(); if (v) body.weekly[day] = ranges(v); }
      continue;
    }
    const control = form.elements[key];
    const text = kind === "bool" ? null : control.value.trim();
    if (kind === "bool") body[key] = control.checked;
    else if (kind === "json") body[key] = text ? JSON.parse(text) : {};
    else if (kind === "list") body[key] = text ? text.split(",").map((s) => s.trim()) : [];
    else if (kind === "number") { if (text !== "") body[key] = Number(text); else if (key === "wrap_up_s") body[key] = null; }
    else if (kind === "holidays") body.holidays = text.split("\n").filter((l) => l.trim()).map((line) => {
      const [date, ...rest] = line.trim().split(/\s+/); const timed = rest.filter((w) => /^\d\d:\d\d-\d\d:\d\d,?$/.test(w));
      return { date, name: rest.filter((w) => !timed.includes(w)).join(" "), hours: ranges(timed.join(",")) }; });
    else if (text !== "") body[key] = text;
    else if (["business_hours_id", "queue_id", "user_id", "shortcut", "email", "timezone"].includes(key)) body[key] = null;
  }
  return body;
}

async function showSection(name) {
  const section = SECTIONS[name];
  for (const b of document.querySelectorAll("nav button")) {
    if (b.dataset.section === name) b.setAttribute("aria-current", "page"); else b.removeAttribute("aria-current");
  }
  $("section-title").textContent = section.title;
  const area = $("section"); area.replaceChildren(); say("");
  if (section.custom) return showConfig(area);
  let rows;
  try { rows = await api("GET", `/api/admin/${section.path}`); } catch (error) { return say(error.message, true); }
  const table = el("table", {}, el("caption", { className: "hint", textContent: `${rows.length} ${section.title.toLowerCase()}` }),
    el("thead", {}, el("tr", {}, ...section.columns.map((c) => el("th", { scope: "col", textContent: c })), el("th", { scope: "col", textContent: "actions" }))));
  const body = el("tbody");
  for (const row of rows) {
    const actions = el("td");
    if (!section.readOnly) actions.append(el("button", { className: "secondary", textContent: "Edit", onclick: () => edit(name, row), ariaLabel: `Edit ${row[section.columns[0]]}` }), " ");
    actions.append(el("button", { className: "secondary", textContent: section.readOnly ? "Revoke" : "Delete", ariaLabel: `Delete ${row[section.columns[0]]}`, onclick: async () => {
      if (!confirm(`Delete ${row[section.columns[0]]}?`)) return;
      try { await api("DELETE", `/api/admin/${section.path}/${row.id}`); await showSection(name); say("Deleted."); } catch (error) { say(error.message, true); } } }));
    body.append(el("tr", {}, ...section.columns.map((c) => el("td", { textContent: String(row[c] ?? "") })), actions));
  }
  table.append(body);
  area.append(table, el("button", { textContent: `New`, onclick: () => edit(name, null) }));
}

function edit(name, row) {
  const section = SECTIONS[name];
  const form = el("form", { ariaLabel: row ? "Edit" : "Create" }, ...section.fields.map((f) => input(f, row ? row[f[0]] : undefined)),
    el("button", { textContent: row ? "Save" : "Create" }), " ", el("button", { type: "button", className: "secondary", textContent: "Cancel", onclick: () => showSection(name) }));
  form.onsubmit = async (event) => {
    event.preventDefault();
    try {
      const saved = await api(row ? "PUT" : "POST", `/api/admin/${section.path}${row ? `/${row.id}` : ""}`, read(form, section.fields));
      await showSection(name);
      say(saved && saved.token ? `Token created. Copy it now, it is shown only once: ${saved.token}` : "Saved.");
    } catch (error) { say(error.message, true); }
  };
  $("section").replaceChildren(form);
  form.querySelector("input, textarea, select").focus();
}

function showConfig(area) {
  const text = el("textarea", { id: "yaml", rows: 20 });
  const replace = el("input", { type: "checkbox", id: "replace" });
  area.append(
    el("button", { textContent: "Load current configuration", onclick: async () => { try { text.value = await api("GET", "/api/admin/config"); say("Loaded."); } catch (e) { say(e.message, true); } } }),
    " ", el("a", { href: "/api/admin/config", download: "omnicc-configuration.yaml", textContent: "Download YAML" }),
    el("label", { textContent: "Configuration (YAML)" }, text),
    el("label", {}, replace, " Replace: delete what the file does not name"),
    el("button", { textContent: "Import", onclick: async () => {
      try { const r = await api("PUT", `/api/admin/config?replace=${replace.checked}`, text.value, true); say(`Imported: ${JSON.stringify(r.imported)}`); } catch (e) { say(e.message, true); } } }));
}

async function start(me) {
  csrf = me.csrf_token;
  $("who").textContent = `${me.display_name} (${me.role}) - ${me.tenant_name}`;
  $("login").hidden = true; $("app").hidden = false;
  $("tabs").replaceChildren(...Object.entries(SECTIONS).map(([key, s]) => {
    const button = el("button", { textContent: s.title, onclick: () => showSection(key) });
    button.dataset.section = key;
    return el("li", {}, button);
  }));
  await showSection("queues");
}

$("login").onsubmit = async (event) => {
  event.preventDefault();
  const data = Object.fromEntries(new FormData(event.target));
  if (!data.tenant) delete data.tenant;
  try { await start(await api("POST", "/api/auth/login", data)); } catch (error) { alert(error.message); }
};

api("GET", "/api/auth/me").then(start, () => { $("login").hidden = false; $("login").querySelector("input").focus(); });
