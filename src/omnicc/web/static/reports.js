// The reports page: filters -> GET /api/reports, totals as tiles, a plotly.js chart, the
// figures table whose counts open the contacts behind them, the agents' status timeline for
// a day, exports, and scheduled report emails. Text is always set with textContent.

import { api, currentUser, toast } from "/static/session.js";

const $ = (id) => document.getElementById(id);
const form = $("filters");
const Plotly = window.Plotly;

const COLUMNS = [
  ["offered", "Offered", "count"], ["handled", "Handled", "count"],
  ["abandoned", "Abandoned", "count"], ["abandonment_rate", "Abandon %", "ratio"],
  ["avg_abandon_wait_s", "Wait before abandon", "seconds"],
  ["service_level_sl1", "SL1", "ratio"], ["service_level_sl2", "SL2", "ratio"],
  ["service_level_sl3", "SL3", "ratio"], ["asa_s", "ASA", "seconds"],
  ["aht_s", "AHT", "seconds"], ["avg_talk_s", "Talk", "seconds"],
  ["avg_hold_s", "Hold", "seconds"], ["avg_wrap_s", "Wrap-up", "seconds"],
  ["transfers", "Transfers", "count"], ["fcr_rate", "FCR", "ratio"],
  ["csat", "CSAT", "ratio"], ["csat_answers", "Surveys", "plain"],
  ["occupancy", "Occupancy", "ratio"], ["utilisation", "Utilisation", "ratio"],
];
const DRILLABLE = { offered: null, handled: "handled", abandoned: "abandoned" };
const TILES = [
  ["offered", "Offered"], ["handled", "Handled"], ["abandonment_rate", "Abandoned"],
  ["service_level_sl2", "Service level (SL2)"], ["asa_s", "ASA"], ["aht_s", "AHT"],
  ["fcr_rate", "First-contact resolution"], ["csat", "CSAT"], ["occupancy", "Occupancy"],
];
const PRESENCE_COLOURS = { available: "#16a34a", busy: "#1d4ed8", wrap_up: "#d97706" };
const DIMENSION_TITLES = { total: "All", queue: "Queue", channel: "Channel", agent: "Agent",
                           team: "Team", disposition: "Code", segment: "Segment" };

let current = null;   // the last report shown
let canMonitor = false;

function format(value, kind) {
  if (value === null || value === undefined) return "–";
  if (kind === "ratio") return `${(value * 100).toFixed(1)} %`;
  if (kind === "seconds") return value >= 3600 ? `${(value / 3600).toFixed(1)} h`
    : value >= 60 ? `${Math.floor(value / 60)} min ${Math.round(value % 60)} s` : `${Math.round(value)} s`;
  return Number.isInteger(value) ? value.toLocaleString() : value.toFixed(1);
}

function el(tag, text, attributes = {}) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = text;
  for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, value);
  return node;
}

function isoDay(date) {
  const pad = (n) => String(n).padStart(2, "0");
  return `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())}`;
}

function setRange(kind) {
  const today = new Date();
  let start = new Date(today), end = new Date(today);
  if (kind === "yesterday") { start.setDate(today.getDate() - 1); end = new Date(start); }
  if (kind === "week") start.setDate(today.getDate() - 6);
  if (kind === "month") start = new Date(today.getFullYear(), today.getMonth(), 1);
  if (kind === "last-month") {
    start = new Date(today.getFullYear(), today.getMonth() - 1, 1);
    end = new Date(today.getFullYear(), today.getMonth(), 0);
  }
  $("start").value = isoDay(start);
  $("end").value = isoDay(end);
}

function query() {
  const params = new URLSearchParams();
  for (const name of ["start", "end", "grain", "dimension"]) params.set(name, $(name).value);
  return params;
}

function label(row) {
  if (!row.period) return "Total";
  if (current.dimension === "total") return "";
  return row.name || (row.key ? row.key : "(none)");
}

async function run() {
  const params = query();
  $("export-csv").href = `/api/reports/export.csv?${params}`;
  $("export-xlsx").href = `/api/reports/export.xlsx?${params}`;
  history.replaceState(null, "", `?${params}`);
  try {
    current = await api(`/api/reports?${params}`);
  } catch (error) {
    toast(error.message, "error");
    return;
  }
  $("timezone").textContent = current.timezone;
  renderTiles();
  renderTable();
  renderChart();
  renderTimeline();
}

function renderTiles() {
  const tiles = $("tiles");
  tiles.replaceChildren();
  const figures = current.overall.figures;
  for (const [name, title] of TILES) {
    const kind = COLUMNS.find((c) => c[0] === name)?.[2] || "count";
    const tile = el("div", null, { class: "rp-tile card" });
    tile.append(el("span", title, { class: "rp-tile-label" }),
                el("strong", format(figures[name], kind), { class: "rp-tile-value",
                                                             "data-figure": name }));
    if (name === "abandonment_rate") {
      tile.append(el("span", `${format(figures.abandoned, "count")} contacts`,
                     { class: "rp-tile-sub" }));
    }
    if (name === "csat") {
      tile.append(el("span", `${format(figures.csat_answers, "count")} answers`,
                     { class: "rp-tile-sub" }));
    }
    tiles.append(tile);
  }
}

function renderTable() {
  const head = el("tr");
  head.append(el("th", "Period", { scope: "col" }));
  if (current.dimension !== "total") {
    head.append(el("th", DIMENSION_TITLES[current.dimension], { scope: "col" }));
  }
  for (const [, title] of COLUMNS) {
    head.append(el("th", title, { scope: "col", class: "number" }));
  }
  $("table-head").replaceChildren(head);
  $("table-caption").textContent = `Figures per ${$("grain").selectedOptions[0].text.toLowerCase()}` +
    ` by ${$("dimension").selectedOptions[0].text.toLowerCase()}`;
  const body = $("table-body");
  body.replaceChildren();
  if (!current.rows.length) {
    const cell = el("td", "No contacts in this range.", { class: "empty",
                                                          colspan: String(COLUMNS.length + 2) });
    const line = el("tr");
    line.append(cell);
    body.append(line);
  }
  const rows = [...current.rows].sort((a, b) => a.period.localeCompare(b.period) ||
                                               label(a).localeCompare(label(b)));
  for (const row of rows) body.append(tableRow(row));
  $("table-foot").replaceChildren(tableRow(current.total));
}

function tableRow(row) {
  const line = el("tr");
  const first = el("th", row.period ? displayPeriod(row.period) : "Total", { scope: "row" });
  line.append(first);
  if (current.dimension !== "total") line.append(el("td", row.period ? label(row) : ""));
  for (const [name, , kind] of COLUMNS) {
    const cell = el("td", null, { class: "number" });
    const value = row.figures[name];
    if (name in DRILLABLE && value > 0) {
      const button = el("button", format(value, kind), {
        type: "button", class: "rp-drill",
        "aria-label": `Show the ${value} ${name} contacts` +
          (row.period ? ` of ${label(row) || "all"} ${displayPeriod(row.period)}` : " of the range"),
      });
      button.addEventListener("click", () => drill(row, DRILLABLE[name], name));
      cell.append(button);
    } else {
      cell.textContent = format(value, kind);
    }
    line.append(cell);
  }
  return line;
}

// Plotly draws dates as wall time: the tenant's, like the report's periods.
function wallTime(date, zone) {
  const parts = Object.fromEntries(new Intl.DateTimeFormat("en-GB", {
    timeZone: zone, year: "numeric", month: "2-digit", day: "2-digit", hour: "2-digit",
    minute: "2-digit", second: "2-digit", hourCycle: "h23",
  }).formatToParts(date).map((part) => [part.type, part.value]));
  return `${parts.year}-${parts.month}-${parts.day} ${parts.hour}:${parts.minute}:${parts.second}`;
}

function displayPeriod(period) {
  return period.length > 10 ? period.replace("T", " ").slice(0, 16) : period;
}

function renderChart() {
  if (!Plotly) return;
  const figure = $("chart-figure").value;
  const kind = COLUMNS.find((c) => c[0] === figure)?.[2] || "count";
  const title = $("chart-figure").selectedOptions[0].text;
  $("chart-title").textContent = title;
  const byKey = new Map();
  for (const row of current.rows) {
    const name = label(row) || "All contacts";
    if (!byKey.has(name)) byKey.set(name, { x: [], y: [], offered: 0 });
    const series = byKey.get(name);
    series.x.push(row.period.length > 10 ? row.period.slice(0, 16) : row.period);
    series.y.push(row.figures[figure] ?? null);
    series.offered += row.figures.offered;
  }
  const top = [...byKey.entries()].sort((a, b) => b[1].offered - a[1].offered).slice(0, 8);
  const whole = current.grain === "all";
  const traces = top.map(([name, series]) => whole
    ? { type: "bar", name, x: [name], y: series.y, hovertemplate: `%{y}<extra>${name}</extra>` }
    : { type: "scatter", mode: "lines+markers", name, x: series.x, y: series.y,
        connectgaps: false });
  const layout = {
    margin: { l: 60, r: 20, t: 10, b: 50 }, height: 320, showlegend: !whole,
    legend: { orientation: "h", y: -0.3 },
    xaxis: { type: ["day", "week", "month"].includes(current.grain) ? "category" : undefined },
    yaxis: { tickformat: kind === "ratio" ? ".0%" : undefined, rangemode: "tozero",
             title: { text: kind === "seconds" ? "seconds" : "" } },
    paper_bgcolor: "rgba(0,0,0,0)", plot_bgcolor: "rgba(0,0,0,0)",
    font: { family: "system-ui, sans-serif", size: 12, color: "#172033" },
  };
  $("chart").setAttribute("aria-label", `${title} per ${current.grain} by ${current.dimension}` +
    `: ${top.map(([name]) => name).join(", ") || "no data"}`);
  Plotly.react("chart", traces, layout, { displaylogo: false, responsive: true });
}

async function renderTimeline() {
  const card = $("timeline-card");
  const oneDay = current.start === current.end;
  $("timeline-hint").textContent = oneDay ? "Status and presence of each agent during the day."
    : "Choose a one-day range to see each agent's statuses.";
  if (!oneDay || !Plotly) { Plotly?.purge("timeline"); return; }
  const [start, end] = current.window;
  let data;
  try {
    data = await api(`/api/reports/agent-statuses?start=${encodeURIComponent(start)}` +
                     `&end=${encodeURIComponent(end)}`);
  } catch (error) { toast(error.message, "error"); return; }
  const byPresence = new Map();
  for (const interval of data.intervals) {
    if (interval.presence === "offline") continue;  // no bar: logged out
    const presence = interval.presence in PRESENCE_COLOURS ? interval.presence : "break";
    if (!byPresence.has(presence)) byPresence.set(presence, { x: [], base: [], y: [], text: [] });
    const series = byPresence.get(presence);
    const from = new Date(interval.start), to = new Date(interval.end);
    series.base.push(wallTime(from, current.timezone));
    series.x.push(to - from);
    series.y.push(interval.agent);
    series.text.push(interval.status + (interval.reason ? ` (${interval.reason})` : ""));
  }
  const traces = [...byPresence.entries()].map(([presence, series]) => ({
    type: "bar", orientation: "h", name: presence.replace("_", "-"), x: series.x,
    base: series.base, y: series.y, text: series.text, textposition: "none",
    marker: { color: PRESENCE_COLOURS[presence] || "#7c3aed" },
    hovertemplate: "%{y}: %{text}<br>%{base|%H:%M} – %{x}<extra></extra>",
  }));
  const agents = new Set(data.intervals.filter((i) => i.presence !== "offline").map((i) => i.agent));
  card.hidden = false;
  $("timeline").setAttribute("aria-label", `Statuses of ${agents.size} agents on ${current.start}`);
  Plotly.react("timeline", traces, {
    barmode: "overlay", height: Math.max(160, 40 + agents.size * 28),
    margin: { l: 110, r: 20, t: 10, b: 40 }, xaxis: { type: "date" },
    legend: { orientation: "h", y: -0.25 }, paper_bgcolor: "rgba(0,0,0,0)",
    plot_bgcolor: "rgba(0,0,0,0)", font: { family: "system-ui, sans-serif", size: 12 },
  }, { displaylogo: false, responsive: true });
}

async function drill(row, outcome, name) {
  const params = query();
  if (row.period) params.set("period", row.period);
  if (row.period && current.dimension !== "total") params.set("row_key", row.key);
  if (outcome) params.set("outcome", outcome);
  const dialog = $("drill");
  $("drill-title").textContent = `${name[0].toUpperCase()}${name.slice(1)} contacts` +
    (row.period ? ` – ${label(row) || "all"}, ${displayPeriod(row.period)}` : " – whole range");
  $("drill-rows").replaceChildren();
  $("conversation").hidden = true;
  $("drill-note").textContent = "Loading…";
  if (!dialog.open) dialog.showModal();
  let data;
  try { data = await api(`/api/reports/contacts?${params}`); }
  catch (error) { $("drill-note").textContent = error.message; return; }
  $("drill-note").textContent = `${data.contacts.length} contacts` +
    (data.truncated ? " (the first 1000)" : "");
  for (const contact of data.contacts) {
    const line = el("tr");
    line.append(
      el("td", new Date(contact.entered_at).toLocaleString(undefined, { timeZone: current.timezone })),
      el("td", contact.queue),
      el("td", contact.channel), el("td", contact.agent || "–"),
      el("td", (contact.outcome || "") + (contact.transferred ? " (transferred)" : "")),
      el("td", format(contact.wait_s, "seconds"), { class: "number" }),
      el("td", contact.outcome === "handled" ? format(contact.talk_s, "seconds") : "–", { class: "number" }),
      el("td", contact.outcome === "handled" ? format(contact.wrap_s, "seconds") : "–", { class: "number" }),
      el("td", contact.disposition || "–"),
      el("td", contact.csat_score ?? "–", { class: "number" }));
    const link = el("td");
    if (contact.conversation_id && canMonitor) {
      const open = el("button", "Open", { type: "button", class: "button ghost",
                                          "aria-label": `Open the conversation of task ${contact.task_id}` });
      open.addEventListener("click", () => showConversation(contact.conversation_id));
      link.append(open);
    } else {
      link.append(el("code", contact.task_id.slice(0, 8), { title: `Task ${contact.task_id}` }));
    }
    line.append(link);
    $("drill-rows").append(line);
  }
}

async function showConversation(conversationId) {
  const panel = $("conversation");
  panel.hidden = false;
  panel.replaceChildren(el("p", "Loading the conversation…", { class: "rp-hint" }));
  let view;
  try { view = await api(`/api/supervisor/conversations/${encodeURIComponent(conversationId)}`); }
  catch (error) { panel.replaceChildren(el("p", error.message, { class: "form-error" })); return; }
  const heading = el("h3", view.conversation.subject || `Conversation ${conversationId.slice(0, 8)}`);
  const list = el("ol", null, { class: "rp-messages" });
  for (const message of view.messages || []) {
    const item = el("li", null, { class: `rp-message ${message.visibility || ""}` });
    item.append(el("span", `${message.author_name || message.author_kind} · ` +
                           new Date(message.created_at).toLocaleTimeString(undefined, { timeZone: current.timezone }),
                           { class: "rp-hint" }),
                el("p", message.text));
    list.append(item);
  }
  if (!list.children.length) list.append(el("li", "No messages (a call, or nothing written).",
                                               { class: "rp-hint" }));
  panel.replaceChildren(heading, list);
  heading.setAttribute("tabindex", "-1");
  heading.focus();
}

// --- scheduled reports -----------------------------------------------------------------------

async function loadSchedules() {
  let schedules;
  try { schedules = await api("/api/reports/schedules"); }
  catch (error) { toast(error.message, "error"); return; }
  const rows = $("schedule-rows");
  rows.replaceChildren();
  if (!schedules.length) {
    const line = el("tr");
    line.append(el("td", "No scheduled reports yet.", { colspan: "6", class: "empty" }));
    rows.append(line);
  }
  for (const schedule of schedules) {
    const last = schedule.sends?.[0];
    const line = el("tr");
    line.append(el("td", schedule.name), el("td", schedule.recipients.join(", ")),
                el("td", schedule.frequency === "weekly" ? "Week" : "Day"),
                el("td", DIMENSION_TITLES[schedule.dimension]),
                el("td", last ? `${last.period_start}: ${last.state}` +
                               (last.last_error ? ` (${last.last_error})` : "") : "Not yet"));
    const remove = el("button", "Delete", { type: "button", class: "button danger",
                                            "aria-label": `Delete the scheduled report ${schedule.name}` });
    remove.addEventListener("click", async () => {
      try {
        await api(`/api/reports/schedules/${schedule.id}`, { method: "DELETE" });
        toast(`Deleted ${schedule.name}`);
        loadSchedules();
      } catch (error) { toast(error.message, "error"); }
    });
    const actions = el("td");
    actions.append(remove);
    line.append(actions);
    rows.append(line);
  }
}

$("schedule-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const data = new FormData(event.target);
  const body = {
    name: data.get("name"), frequency: data.get("frequency"), dimension: data.get("dimension"),
    recipients: String(data.get("recipients")).split(",").map((s) => s.trim()).filter(Boolean),
  };
  try {
    await api("/api/reports/schedules", { method: "POST", body });
    event.target.reset();
    toast(`Scheduled ${body.name}`);
    loadSchedules();
  } catch (error) { toast(error.message, "error"); }
});

// --- start -----------------------------------------------------------------------------------

form.addEventListener("submit", (event) => { event.preventDefault(); run(); });
$("chart-figure").addEventListener("change", () => current && renderChart());
for (const button of document.querySelectorAll("[data-range]")) {
  button.addEventListener("click", () => { setRange(button.dataset.range); run(); });
}
$("drill-close").addEventListener("click", () => $("drill").close());

const initial = new URLSearchParams(location.search);
for (const name of ["start", "end", "grain", "dimension"]) {
  if (initial.get(name)) $(name).value = initial.get(name);
}
if (!$("start").value || !$("end").value) setRange("today");
currentUser().then((user) => {
  canMonitor = ["supervisor", "admin"].includes(user.role);
}).catch(() => {});
run();
loadSchedules();
