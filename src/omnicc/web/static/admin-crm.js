// The admin page's CRM section: the connector (lookup and push) as one form, a trial lookup,
// and what could not be delivered (pushes to the CRM, emails to client contacts) with Retry.
// The page's own helpers (el, input, read, say, showError) are handed in. Text is always set
// with textContent.
import { api } from "/static/session.js";

const FIELDS = [
  ["lookup_enabled", "Look customers up in the CRM", "bool", "", null, false],
  ["lookup_url", "Lookup URL", "text", "{phone} (E.164) and {email} are filled in, e.g. https://crm.example/api/contacts?phone={phone}"],
  ["lookup_method", "Method", "select", "", ["GET", "POST"]],
  ["auth_header", "Auth header", "text", "", null, "Authorization"],
  ["auth_value", "Auth value", "password", "e.g. Bearer <token>; empty: unchanged"],
  ["timeout_s", "Timeout (s)", "number", "After this the panel says the CRM did not answer", null, 3],
  ["cache_ttl_s", "Cache answers for (s)", "number", "", null, 300],
  ["lookup_body", "POST body (JSON template)", "textarea", "POST only: {phone} and {email} are filled in"],
  ["mapping", "Field mapping (JSON)", "json", "{\"record\": \"results[0]\", \"fields\": [{\"label\": \"Company\", \"path\": \"properties.company\"}], \"attributes\": {\"segment\": \"properties.tier\", \"vip\": \"properties.vip\"}, \"link\": \"properties.url\"}"],
  ["push_enabled", "Push every finished contact", "bool", "", null, false],
  ["push_url", "Push URL", "text", "Receives contact.finished, signed like webhooks"],
  ["push_secret", "Push signing secret", "password", "Empty: unchanged (made when the push is first enabled)"],
];

const when = (iso) => (iso ? new Date(iso).toLocaleString([], { dateStyle: "medium", timeStyle: "short" }) : "—");

export async function showCrm(area, { el, input, read, say, showError }) {
  const error = el("p", { className: "form-error", attrs: { role: "alert" }, hidden: true });
  let connector;
  try { connector = await api("/api/admin/crm"); } catch (problem) { showError(error, problem); area.append(error); return; }
  const hints = el("p", { className: "admin-hint" });
  const describe = (c) => { hints.textContent = `Auth value ${c.has_auth_value ? "is set" : "is not set"} · push secret ${c.has_push_secret ? "is set" : "is not set"}. Each queue's client contact is under Client contacts.`; };
  describe(connector);
  const form = el("form", { className: "admin-form", noValidate: true, attrs: { "aria-labelledby": "crm-form-title" } },
    el("h3", { id: "crm-form-title", textContent: "Connector" }), hints,
    el("div", { className: "admin-grid" }, ...FIELDS.map((f) => input(f, connector[f[0]]))),
    error,
    el("div", { className: "admin-form-buttons" }, el("button", { type: "submit", className: "button primary", textContent: "Save connector" })));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    error.hidden = true;
    try {
      const saved = await api("/api/admin/crm", { method: "PUT", body: read(form, FIELDS) });
      describe(saved);
      say(saved.push_secret ? `Saved. The push signing secret, shown only now: ${saved.push_secret}` : "Saved.");
    } catch (problem) { showError(error, problem); }
  });
  area.append(form, trial(el, showError), await undelivered(el, say, showError));
}

function trial(el, showError) {
  const error = el("p", { className: "form-error", attrs: { role: "alert" }, hidden: true });
  const result = el("div", { attrs: { "aria-live": "polite", "data-testid": "crm-trial" } });
  const phone = el("input", { id: "crm-trial-phone", autocomplete: "off" });
  const email = el("input", { id: "crm-trial-email", autocomplete: "off" });
  const form = el("form", { className: "admin-form", attrs: { "aria-labelledby": "crm-trial-title" } },
    el("h3", { id: "crm-trial-title", textContent: "Try a lookup (saved connector)" }),
    el("div", { className: "admin-grid" },
      el("div", { className: "admin-field" }, el("label", { htmlFor: phone.id, textContent: "Phone" }), phone),
      el("div", { className: "admin-field" }, el("label", { htmlFor: email.id, textContent: "Email" }), email)),
    error, el("div", { className: "admin-form-buttons" }, el("button", { type: "submit", className: "button", textContent: "Look up" })), result);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    error.hidden = true;
    result.replaceChildren();
    try {
      const found = await api("/api/admin/crm/test-lookup", { method: "POST", body: { phone: phone.value, email: email.value } });
      const lines = found.fields.map((f) => el("li", { textContent: `${f.label}: ${f.value}` }));
      const attributes = Object.entries(found.attributes).map(([k, v]) => el("li", { textContent: `${k} → ${v}` }));
      result.append(el("p", { textContent: `State: ${found.state}${found.error ? ` (${found.error})` : ""}` }),
                    el("ul", {}, ...lines, ...attributes), found.link ? el("p", { textContent: `Link: ${found.link}` }) : "");
    } catch (problem) { showError(error, problem); }
  });
  return form;
}

async function undelivered(el, say, showError) {
  const box = el("div", { className: "admin-form" }, el("h3", { textContent: "Not delivered" }));
  const error = el("p", { className: "form-error", attrs: { role: "alert" }, hidden: true });
  box.append(error);
  let pushes = [];
  let notifications = [];
  try {
    [pushes, notifications] = await Promise.all([api("/api/admin/crm/pushes?state=failed"),
                                                 api("/api/admin/client-notifications?state=failed")]);
  } catch (problem) { showError(error, problem); return box; }
  const rows = [
    ...pushes.map((p) => ({ what: "CRM push", about: p.payload?.customer?.name || p.task_id, at: p.created_at,
                            why: p.last_error, path: `/api/admin/crm/pushes/${p.id}/retry` })),
    ...notifications.map((n) => ({ what: `Email to ${n.recipient}`, about: n.task_id, at: n.created_at,
                                   why: n.last_error, path: `/api/admin/client-notifications/${n.id}/retry` })),
  ];
  if (!rows.length) { box.append(el("p", { className: "empty", textContent: "Everything was delivered." })); return box; }
  const body = el("tbody", {}, ...rows.map((row) => {
    const retry = el("button", { type: "button", className: "button small", textContent: "Retry",
      attrs: { "aria-label": `Retry ${row.what} about ${row.about}` }, onclick: async () => {
        try { await api(row.path, { method: "POST" }); retry.disabled = true; say(`${row.what} will be sent again.`); }
        catch (problem) { showError(error, problem); }
      } });
    return el("tr", { attrs: { "data-testid": "undelivered" } }, el("th", { scope: "row", textContent: row.what }),
      el("td", { textContent: row.about }), el("td", { textContent: when(row.at) }), el("td", { textContent: row.why || "" }),
      el("td", { className: "admin-row-actions" }, retry));
  }));
  box.append(el("div", { className: "admin-scroll" }, el("table", { className: "data admin-table" },
    el("caption", { className: "visually-hidden", textContent: "Not delivered" }),
    el("thead", {}, el("tr", {}, ...["What", "About", "When", "Last error"].map((h) => el("th", { scope: "col", textContent: h })),
                       el("th", { scope: "col", className: "admin-row-actions" }, el("span", { className: "visually-hidden", textContent: "Actions" })))),
    body)));
  return box;
}
