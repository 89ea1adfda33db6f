// The workforce page: pick a schedule, see its requirement against coverage (plotly.js), the
// shifts per agent and day, adherence from the event log, a what-if day, and build a new
// schedule from a forecast file. Times are UTC. Text is always set with textContent.

import { api, currentUser, toast } from "/static/session.js";

const $ = (id) => document.getElementById(id);
const Plotly = window.Plotly;

let current = null;   // the schedule shown (GET /api/wfm/schedules/{id})

function el(tag, text, attributes = {}) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = text;
  for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, value);
  return node;
}

function message(text, columns) {
  const row = el("tr");
  row.append(el("td", text, { class: "empty", colspan: String(columns) }));
  return row;
}

const hhmm = (iso) => iso.slice(11, 16);
const percent = (value) => (value === null || value === undefined ? "–" : `${(value * 100).toFixed(1)} %`);
const hours = (seconds) => `${(seconds / 3600).toFixed(1)} h`;
const dayName = (iso) => new Date(`${iso}T00:00:00Z`).toLocaleDateString(undefined,
  { weekday: "short", day: "numeric", month: "short", timeZone: "UTC" });

function days(schedule) {
  const first = Date.parse(schedule.start);
  const count = Math.ceil(schedule.intervals * schedule.interval_s / 86400);
  return Array.from({ length: count }, (_, n) => new Date(first + n * 86400000).toISOString().slice(0, 10));
}

function fill(select, options, chosen) {
  select.replaceChildren(...options.map(([value, label]) => {
    const option = el("option", label, { value });
    if (value === chosen) option.selected = true;
    return option;
  }));
}

// --- loading ----------------------------------------------------------------------------

async function loadList(selectId) {
  const list = await api("/api/wfm/schedules");
  const select = $("schedule");
  if (!list.length) {
    fill(select, [["", "No schedule yet"]]);
    current = null;
    render();
    $("new-schedule").open = true;
    return;
  }
  fill(select, list.map((s) => [s.id, `${s.name} · from ${s.start.slice(0, 10)}`]), selectId || list[0].id);
  await show(select.value);
}

async function show(id) {
  current = id ? await api(`/api/wfm/schedules/${encodeURIComponent(id)}`) : null;
  if (current) {
    fill($("group"), current.groups.map((g) => [g.id, g.id]));
    fill($("day"), days(current).map((d) => [d, dayName(d)]), current.whatif?.day);
  }
  render();
  await loadAdherence();
}

// --- rendering ----------------------------------------------------------------------------

function tile(label, value, sub) {
  const card = el("div", null, { class: "card wf-tile" });
  card.append(el("span", label, { class: "wf-tile-label" }), el("span", value, { class: "wf-tile-value" }));
  if (sub) card.append(el("span", sub, { class: "wf-tile-sub" }));
  return card;
}

function render() {
  const has = Boolean(current);
  for (const id of ["simulate", "delete", "adherence-refresh"]) $(id).disabled = !has;
  if (!has) {
    $("tiles").replaceChildren();
    $("shift-head").replaceChildren();
    $("shift-rows").replaceChildren(message("No schedule yet.", 1));
    $("coverage-rows").replaceChildren();
    $("adherence-rows").replaceChildren();
    Plotly?.purge("chart");
    return;
  }
  const s = current.summary;
  const step = current.interval_s / 3600;
  $("tiles").replaceChildren(
    tile("Solver", s.status === "optimal" ? "Optimal" : "Time limit", `${s.wall_s} s · ${s.variables} variables`),
    tile("Shifts", String(s.shifts), `${current.agents.length} agents`),
    tile("Under-staffed", `${(s.under_staffed * step).toFixed(1)} h`, "agent-hours missing"),
    tile("Over-staffed", `${(s.over_staffed * step).toFixed(1)} h`, "agent-hours spare"),
    tile("What-if service level", percent(current.whatif?.service_level),
         current.whatif ? dayName(current.whatif.day) : "not simulated yet"),
  );
  renderChart();
  renderShifts();
}

function groupRows() {
  const group = $("group").value;
  return current.rows.filter((row) => row.group === group);
}

function renderChart() {
  const rows = groupRows();
  const whatif = new Map((current.whatif?.intervals || []).map((o) => [o.start, o.service_level]));
  const body = $("coverage-rows");
  body.replaceChildren(...rows.map((row) => {
    const tr = el("tr");
    const diff = row.difference;
    tr.append(el("th", `${row.start.slice(0, 10)} ${hhmm(row.start)}`, { scope: "row" }),
      el("td", String(row.required), { class: "number" }),
      el("td", row.covered.toFixed(1), { class: "number" }),
      el("td", `${diff > 0 ? "+" : ""}${diff.toFixed(1)}`, { class: `number ${diff < 0 ? "wf-short" : ""}` }),
      el("td", whatif.has(row.start) ? percent(whatif.get(row.start)) : "–", { class: "number" }));
    return tr;
  }));
  if (!Plotly) return;
  const x = rows.map((row) => row.start.replace("Z", ""));
  const traces = [
    { x, y: rows.map((row) => row.covered), type: "bar", name: "On duty",
      marker: { color: "#93c5fd" }, hovertemplate: "%{y:.1f} on duty<extra></extra>" },
    { x, y: rows.map((row) => row.required), type: "scatter", mode: "lines", line: { shape: "hv", color: "#b91c1c", width: 2 },
      name: "Needed", hovertemplate: "%{y} needed<extra></extra>" },
  ];
  if (whatif.size) {
    const points = rows.filter((row) => whatif.has(row.start) && whatif.get(row.start) !== null);
    traces.push({ x: points.map((row) => row.start.replace("Z", "")), y: points.map((row) => whatif.get(row.start)),
      type: "scatter", mode: "lines+markers", yaxis: "y2", name: "Service level (what-if)",
      line: { color: "#166534" }, hovertemplate: "%{y:.1%}<extra></extra>" });
  }
  Plotly.react("chart", traces, {
    margin: { t: 10, r: whatif.size ? 60 : 20, b: 40, l: 50 }, bargap: 0.05,
    legend: { orientation: "h", y: -0.18 },
    xaxis: { type: "date", title: { text: "UTC" } },
    yaxis: { title: { text: "Agents" }, rangemode: "tozero" },
    yaxis2: { overlaying: "y", side: "right", range: [0, 1.05], tickvals: [0, 0.2, 0.4, 0.6, 0.8, 1],
              tickformat: ".0%", showgrid: false, visible: whatif.size > 0, title: { text: "Service level" } },
  }, { displaylogo: false, responsive: true });
}

function renderShifts() {
  const dates = days(current);
  const head = el("tr");
  head.append(el("th", "Agent", { scope: "col" }), ...dates.map((d) => el("th", dayName(d), { scope: "col" })),
    el("th", "Paid", { scope: "col", class: "number" }));
  $("shift-head").replaceChildren(head);
  const byAgent = new Map(current.agents.map((a) => [a.id, new Map()]));
  const paid = new Map();
  for (const shift of current.shifts) {
    byAgent.get(shift.agent_id)?.set(shift.day, shift);
    paid.set(shift.agent_id, (paid.get(shift.agent_id) || 0) + shift.paid_minutes);
  }
  const rows = current.agents.map((agent) => {
    const tr = el("tr");
    tr.append(el("th", agent.name, { scope: "row" }));
    for (const d of dates) {
      const shift = byAgent.get(agent.id).get(d);
      if (!shift) { tr.append(el("td", "off", { class: "wf-off" })); continue; }
      const td = el("td", `${hhmm(shift.start)}–${hhmm(shift.end)}`);
      if (shift.breaks.length) td.append(el("span", ` (${shift.breaks.map((b) => hhmm(b[0])).join(", ")})`, { class: "wf-break" }));
      tr.append(td);
    }
    tr.append(el("td", `${((paid.get(agent.id) || 0) / 60).toFixed(1)} h`, { class: "number" }));
    return tr;
  });
  $("shift-rows").replaceChildren(...rows);
  if (!rows.length) $("shift-rows").append(message("No shifts.", dates.length + 2));
}

async function loadAdherence() {
  const body = $("adherence-rows");
  if (!current) { body.replaceChildren(); return; }
  if (Date.parse(current.start) > Date.now()) {
    body.replaceChildren(message("The schedule has not started yet.", 5));
    return;
  }
  const result = await api(`/api/wfm/schedules/${encodeURIComponent(current.id)}/adherence?grace_s=60`);
  body.replaceChildren(...result.agents.map((agent) => {
    const tr = el("tr");
    const periods = el("ul", null, { class: "wf-periods" });
    for (const o of agent.out_of_adherence.slice(0, 6)) {
      periods.append(el("li", `${o.start.slice(5, 10)} ${hhmm(o.start)}–${hhmm(o.end)}: ${o.actual} (planned ${o.planned})`));
    }
    if (agent.out_of_adherence.length > 6) periods.append(el("li", `and ${agent.out_of_adherence.length - 6} more`));
    const cell = el("td");
    cell.append(agent.out_of_adherence.length ? periods : el("span", "none", { class: "wf-off" }));
    tr.append(el("th", agent.name, { scope: "row" }), el("td", hours(agent.scheduled_s), { class: "number" }),
      el("td", percent(agent.adherence), { class: "number" }), el("td", percent(agent.conformance), { class: "number" }), cell);
    return tr;
  }));
  if (!result.agents.length) body.append(message("Nobody was scheduled up to now.", 5));
}

// --- actions ------------------------------------------------------------------------------

async function simulate() {
  const button = $("simulate");
  button.disabled = true;
  button.textContent = "Simulating…";
  try {
    current.whatif = await api(`/api/wfm/schedules/${encodeURIComponent(current.id)}/whatif`,
      { method: "POST", body: { day: $("day").value } });
    render();
    toast(`Simulated ${dayName(current.whatif.day)}: service level ${percent(current.whatif.service_level)}`);
  } catch (error) {
    toast(error.message, "error");
  } finally {
    button.textContent = "Simulate day";
    button.disabled = !current;
  }
}

async function remove() {
  if (!current || !window.confirm(`Delete the schedule “${current.name}”?`)) return;
  await api(`/api/wfm/schedules/${encodeURIComponent(current.id)}`, { method: "DELETE" });
  toast("Schedule deleted");
  await loadList();
}

function parseForecast(text, name) {
  if (name.toLowerCase().endsWith(".json")) {
    const data = JSON.parse(text);
    return { start: data.start, interval_s: data.interval_s, volume: data.volume,
             aht_s: data.aht_s || data.volume.map(() => 180) };
  }
  const lines = text.trim().split(/\r?\n/);
  const header = lines.shift().split(",").map((h) => h.trim());
  const [at, vol, aht] = ["start", "volume", "aht_s"].map((h) => header.indexOf(h));
  if (at < 0 || vol < 0) throw new Error("the CSV needs start and volume columns");
  const rows = lines.map((line) => line.split(","));
  const starts = rows.map((r) => Date.parse(r[at]));
  return { start: new Date(starts[0]).toISOString(), interval_s: (starts[1] - starts[0]) / 1000,
           volume: rows.map((r) => Number(r[vol])), aht_s: rows.map((r) => (aht >= 0 ? Number(r[aht]) : 180)) };
}

function resample(series, intervalS) {
  // Finer forecast intervals add up: volumes summed, AHT weighted by volume.
  const factor = intervalS / series.interval_s;
  if (factor === 1) return series;
  if (!Number.isInteger(factor) || factor < 1) throw new Error(`the forecast's ${series.interval_s / 60}-minute intervals do not add up to the chosen interval`);
  const volume = [], aht = [];
  for (let i = 0; i + factor <= series.volume.length; i += factor) {
    let v = 0, work = 0;
    for (let j = i; j < i + factor; j += 1) { v += series.volume[j]; work += series.volume[j] * series.aht_s[j]; }
    volume.push(v); aht.push(v ? work / v : series.aht_s[i]);
  }
  return { ...series, interval_s: intervalS, volume, aht_s: aht };
}

const minutes = (time) => { const [h, m] = time.split(":").map(Number); return h * 60 + m; };

async function create(event) {
  event.preventDefault();
  const form = event.target;
  const error = $("form-error");
  error.hidden = true;
  const data = new FormData(form);
  const submit = form.querySelector("button[type=submit]");
  try {
    const file = data.get("file");
    const intervalS = Number(data.get("interval"));
    const series = resample(parseForecast(await file.text(), file.name), intervalS);
    const breakMinutes = Number(data.get("break"));
    const body = {
      name: data.get("name"), start: series.start, interval_s: intervalS,
      queues: [{ queue_id: data.get("queue"), skill: data.get("skill") || null,
                 volume: series.volume, aht_s: series.aht_s }],
      target: { service_level: Number(data.get("sl")) / 100, threshold_s: Number(data.get("threshold")) },
      rules: {
        shifts: [{ minutes: Math.round(Number(data.get("shift")) * 60),
                   breaks: breakMinutes ? [{ minutes: breakMinutes, earliest_min: Math.round(Number(data.get("breakFrom")) * 60),
                                             latest_min: Math.round(Number(data.get("breakTo")) * 60) }] : [] }],
        earliest_start_min: minutes(data.get("earliest")), latest_start_min: minutes(data.get("latest")),
        start_step_min: Math.max(30, intervalS / 60),
        max_days: Number(data.get("days")),
      },
      max_minutes: Math.round(Number(data.get("hours")) * 60),
    };
    submit.disabled = true;
    submit.textContent = "Solving…";
    const made = await api("/api/wfm/schedules", { method: "POST", body });
    toast(`Schedule “${made.name}” built: ${made.summary.shifts} shifts`);
    $("new-schedule").open = false;
    await loadList(made.id);
  } catch (problem) {
    error.textContent = problem.message;
    error.hidden = false;
  } finally {
    submit.disabled = false;
    submit.textContent = "Build schedule";
  }
}

async function start() {
  await currentUser();
  const options = await api("/api/wfm/options");
  fill($("f-queue"), options.queues.map((q) => [q.id, q.name]));
  $("skills").replaceChildren(...options.skills.map((name) => el("option", null, { value: name })));
  $("schedule").addEventListener("change", (event) => show(event.target.value));
  $("group").addEventListener("change", renderChart);
  $("simulate").addEventListener("click", simulate);
  $("delete").addEventListener("click", remove);
  $("adherence-refresh").addEventListener("click", loadAdherence);
  $("schedule-form").addEventListener("submit", create);
  await loadList();
}

start().catch((error) => toast(error.message, "error"));
