// The wallboard's two dialogs: an agent's skills (skill/level rows) and reassigning a chat to
// a queue or an agent. Both are native <dialog>s: modal, Escape closes, focus returns.

import { api, toast } from "/static/session.js";
import { presenceLabel } from "/static/wallboard-format.js";

function showError(box, message) {
  box.textContent = message;
  box.hidden = !message;
}

function wireClose(dialog) {
  dialog.querySelectorAll("[data-close]").forEach((button) =>
    button.addEventListener("click", () => dialog.close()));
}

export class SkillsDialog {
  constructor() {
    this.dialog = document.getElementById("skills-dialog");
    this.rows = document.getElementById("skills-rows");
    this.error = document.getElementById("skills-error");
    this.names = document.getElementById("skill-names");
    this.title = document.getElementById("skills-title");
    this.agent = null;
    wireClose(this.dialog);
    document.getElementById("skills-add").addEventListener("click", () => {
      this.addRow("", 1).querySelector("input").focus();
    });
    document.getElementById("skills-form").addEventListener("submit", (event) => {
      event.preventDefault();
      this.save();
    });
  }

  open(agent, knownSkills) {
    this.agent = agent;
    this.title.textContent = `Skills of ${agent.name}`;
    showError(this.error, "");
    this.names.replaceChildren(...[...knownSkills].sort().map((name) => {
      const option = document.createElement("option");
      option.value = name;
      return option;
    }));
    this.rows.replaceChildren();
    const skills = Object.entries(agent.skills || {}).sort(([a], [b]) => a.localeCompare(b));
    for (const [name, level] of skills) this.addRow(name, level);
    if (!skills.length) this.addRow("", 1);
    this.dialog.showModal();
  }

  addRow(name, level) {
    const index = this.rows.children.length + 1;
    const row = document.createElement("tr");
    const nameCell = document.createElement("td");
    const nameInput = document.createElement("input");
    nameInput.value = name;
    nameInput.setAttribute("list", "skill-names");
    nameInput.setAttribute("aria-label", `Skill ${index}`);
    nameInput.autocomplete = "off";
    nameInput.dataset.testid = "skill-name";
    nameCell.append(nameInput);
    const levelCell = document.createElement("td");
    levelCell.className = "number";
    const levelInput = document.createElement("input");
    levelInput.type = "number";
    levelInput.min = "0";
    levelInput.max = "10";
    levelInput.step = "1";
    levelInput.value = String(level);
    levelInput.setAttribute("aria-label", `Level of skill ${index}`);
    levelInput.dataset.testid = "skill-level";
    levelInput.className = "wb-level";
    levelCell.append(levelInput);
    const removeCell = document.createElement("td");
    const remove = document.createElement("button");
    remove.type = "button";
    remove.className = "button ghost";
    remove.textContent = "Remove";
    remove.setAttribute("aria-label", `Remove skill ${index}`);
    remove.addEventListener("click", () => {
      row.remove();
      document.getElementById("skills-add").focus();
    });
    removeCell.append(remove);
    row.append(nameCell, levelCell, removeCell);
    this.rows.append(row);
    return row;
  }

  collect() {
    const skills = {};
    for (const row of this.rows.children) {
      const [name, level] = row.querySelectorAll("input");
      const skill = name.value.trim();
      if (!skill) continue;
      const value = Number(level.value);
      if (!Number.isInteger(value) || value < 0 || value > 10) {
        throw new Error(`The level of ${skill} must be a whole number from 0 to 10.`);
      }
      if (skill in skills) throw new Error(`${skill} is listed twice.`);
      skills[skill] = value;
    }
    return skills;
  }

  async save() {
    let skills;
    try {
      skills = this.collect();
    } catch (error) {
      showError(this.error, error.message);
      return;
    }
    try {
      await api(`/api/supervisor/agents/${encodeURIComponent(this.agent.agent_id)}/skills`,
                { method: "PUT", body: { skills } });
      this.dialog.close();
      toast(`Skills of ${this.agent.name} saved.`);
    } catch (error) {
      showError(this.error, error.message);
    }
  }
}

export class ReassignDialog {
  constructor() {
    this.dialog = document.getElementById("reassign-dialog");
    this.form = document.getElementById("reassign-form");
    this.queue = document.getElementById("reassign-queue");
    this.agent = document.getElementById("reassign-agent");
    this.error = document.getElementById("reassign-error");
    this.meta = document.getElementById("reassign-meta");
    this.row = null;
    wireClose(this.dialog);
    this.form.addEventListener("change", () => this.syncTarget());
    this.form.addEventListener("submit", (event) => {
      event.preventDefault();
      this.save();
    });
  }

  target() {
    return this.form.querySelector("input[name=target]:checked").value;
  }

  syncTarget() {
    const toQueue = this.target() === "queue";
    this.queue.disabled = !toQueue;
    this.agent.disabled = toQueue;
  }

  open(row, board, names) {
    this.row = row;
    showError(this.error, "");
    const customer = row.customer_name || "Web visitor";
    this.meta.textContent = `${customer} · now in ${names.queues.get(row.queue_id) || "–"}`;
    this.queue.replaceChildren(...board.queues.map((queue) =>
      new Option(`${queue.name} (${queue.waiting} waiting)`, queue.queue_id)));
    const other = board.queues.find((queue) => queue.queue_id !== row.queue_id);
    if (other) this.queue.value = other.queue_id;
    const agents = [...board.agents].sort((a, b) => a.name.localeCompare(b.name));
    this.agent.replaceChildren(...agents.filter((a) => a.agent_id !== row.agent_id)
      .map((agent) => new Option(`${agent.name} (${presenceLabel(agent.presence)})`,
                                 agent.agent_id)));
    this.form.querySelector("input[value=queue]").checked = true;
    this.syncTarget();
    this.dialog.showModal();
  }

  async save() {
    const body = this.target() === "queue" ? { queue_id: this.queue.value }
      : { agent_id: this.agent.value };
    if (!Object.values(body)[0]) {
      showError(this.error, "Choose where to move the chat.");
      return;
    }
    try {
      await api(`/api/supervisor/conversations/${encodeURIComponent(this.row.conversation_id)}`
                + "/reassign", { method: "POST", body });
      this.dialog.close();
      toast("The chat was reassigned.");
    } catch (error) {
      showError(this.error, error.message);
    }
  }
}
