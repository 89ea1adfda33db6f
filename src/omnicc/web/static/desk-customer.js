// The desk's customer profile, under the customer card: routing attributes (VIP, segment,
// account manager, language, preferred channel), consent per channel, one timeline of every
// contact on every channel, what the tenant's CRM says about them, merging another customer record into this one or splitting an
// identity off (audited), and answering the conversation on another channel the customer has.
// Text is always set with textContent.
import { api, toast } from "/static/session.js";
import { el, humanize } from "/static/desk-view.js";

const CHANNELS = ["email", "sms", "whatsapp", "voice", "chat", "telegram", "messenger"];
const FINDABLE = ["email", "phone", "whatsapp", "telegram", "messenger"];
const when = (iso) => (iso ? new Date(iso).toLocaleString([], { dateStyle: "medium", timeStyle: "short" }) : "");
let serial = 0;

function field(labelText, control) {
  const id = control.id || `cust-${++serial}`;
  control.id = id;
  return el("div", { className: "cust-field" }, el("label", { text: labelText, attrs: { for: id } }), control);
}

function select(options, value) {
  const node = el("select");
  for (const [optionValue, text] of options) {
    const option = el("option", { text, attrs: { value: optionValue } });
    option.selected = optionValue === (value ?? "");
    node.append(option);
  }
  return node;
}

function section(title, ...children) {
  return el("section", { className: "cust-section" }, el("h3", { text: title }), ...children);
}

// agentNames: () => Map of agent id -> name; onChanged(conversationId): the record changed
// (merged, split, edited), so the desk reloads the conversation's own view.
export function mountCustomerPanel(box, { agentNames, onChanged }) {
  const state = { customerId: null, conversationId: null, channel: null, assigned: false, busy: false };

  async function run(action, done) {
    if (state.busy) return;
    state.busy = true;
    try {
      const result = await action();
      await load();  // redrawn before it is announced: nothing typed after the toast is lost
      if (done) toast(done, "success");
      if (state.conversationId) onChanged?.(state.conversationId);
      return result;
    } catch (error) {
      toast(error.message || "That did not work.", "error");
    } finally {
      state.busy = false;
    }
  }

  function profile(customer) {
    const vip = el("input", { attrs: { type: "checkbox" } });
    vip.checked = customer.vip;
    const segment = el("input", { attrs: { maxlength: "64", autocomplete: "off" } });
    segment.value = customer.segment || "";
    const language = el("input", { attrs: { maxlength: "16", autocomplete: "off", placeholder: "e.g. fi" } });
    language.value = customer.language || "";
    const managers = [["", "None"], ...[...agentNames()].map(([id, name]) => [id, name])];
    const manager = select(managers, customer.account_manager);
    const preferred = select([["", "No preference"], ...CHANNELS.map((c) => [c, humanize(c)])],
                             customer.preferred_channel);
    const form = el("form", { className: "cust-form", attrs: { "aria-label": "Customer profile" } },
      el("div", { className: "cust-check" }, vip, el("label", { text: "VIP", attrs: { for: (vip.id = `cust-${++serial}`) } })),
      field("Segment", segment), field("Account manager", manager), field("Language", language),
      field("Preferred channel", preferred),
      el("button", { className: "button primary", text: "Save profile", attrs: { type: "submit" } }));
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      run(() => api(`/api/customers/${encodeURIComponent(customer.id)}`, { method: "PATCH", body: {
        vip: vip.checked, segment: segment.value, account_manager: manager.value,
        language: language.value, preferred_channel: preferred.value } }), "Profile saved.");
    });
    return section("Profile", form);
  }

  function consent(customer) {
    const list = el("ul", { className: "cust-consent" });
    for (const channel of ["email", "sms", "whatsapp", "voice"]) {
      const given = customer.consent[channel];
      const choice = select([["", "Not asked"], ["opt_in", "Opted in"], ["opt_out", "Opted out"]],
                            given?.state);
      choice.setAttribute("aria-label", `Consent for ${humanize(channel)}`);
      choice.addEventListener("change", () => {
        if (!choice.value) return;
        run(() => api(`/api/customers/${encodeURIComponent(customer.id)}/consent/${channel}`, {
          method: "PUT", body: { opted_in: choice.value === "opt_in", source: "agent" } }),
            `${humanize(channel)} consent recorded.`);
      });
      list.append(el("li", {}, el("span", { text: humanize(channel) }), choice,
        given ? el("span", { className: "small muted", text: `${when(given.at)} · ${given.source}` }) : null));
    }
    return section("Consent", list);
  }

  function identities(customer) {
    const list = el("ul", { className: "cust-identities", attrs: { "data-testid": "customer-identities" } });
    for (const identity of customer.identities) {
      const item = el("li", {}, el("span", { className: "badge", text: humanize(identity.kind) }),
                      el("span", { className: "cust-value", text: identity.value }));
      if (customer.identities.length > 1) {
        const split = el("button", { className: "button ghost", text: "Split off",
          attrs: { type: "button", "aria-label": `Split ${identity.value} off to its own customer` } });
        split.addEventListener("click", () => {
          if (!window.confirm(`Move ${identity.value} and the conversations that came with it to a customer of their own?`)) return;
          run(() => api(`/api/customers/${encodeURIComponent(customer.id)}/split`, {
            method: "POST", body: { identity_ids: [identity.id] } }), "Split off.");
        });
        item.append(split);
      }
      list.append(item);
    }
    return section("Identities", list, merger(customer));
  }

  function merger(customer) {
    const kind = select(FINDABLE.map((k) => [k, humanize(k)]), "email");
    const value = el("input", { attrs: { autocomplete: "off", maxlength: "320", required: "" } });
    const found = el("div", { attrs: { "aria-live": "polite" } });
    const form = el("form", { className: "cust-merge", attrs: { "aria-label": "Merge another customer" } },
      field("Find by", kind), field("Value", value),
      el("button", { className: "button", text: "Find customer", attrs: { type: "submit" } }), found);
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      found.replaceChildren();
      let other;
      try {
        other = await api(`/api/customers?kind=${encodeURIComponent(kind.value)}&value=${encodeURIComponent(value.value)}`);
      } catch (error) {
        found.append(el("p", { className: "small muted", text: error.message || "No customer found." }));
        return;
      }
      if (other.id === customer.id) {
        found.append(el("p", { className: "small muted", text: "That is this customer already." }));
        return;
      }
      const merge = el("button", { className: "button danger", text: `Merge ${other.name || "that customer"} into this one`,
                                   attrs: { type: "button" } });
      merge.addEventListener("click", () => run(() => api(
        `/api/customers/${encodeURIComponent(customer.id)}/merge`,
        { method: "POST", body: { other_id: other.id, reason: "merged from the desk" } }), "Customers merged."));
      found.append(el("p", { className: "small", text: `${other.name || "Unnamed"} · ${other.email || other.phone || ""}` }), merge);
    });
    return el("details", { className: "cust-merge-box" }, el("summary", { text: "Merge another customer into this one" }), form);
  }

  function timeline(entries) {
    const list = el("ol", { className: "cust-timeline", attrs: { "data-testid": "customer-timeline" } });
    for (const entry of entries) {
      const item = el("li", { className: entry.conversation_id === state.conversationId ? "current" : "" },
        el("div", { className: "cust-line" }, el("span", { className: "badge", text: humanize(entry.channel) }),
           el("span", { className: "small muted", text: when(entry.started_at) })),
        entry.subject ? el("p", { className: "cust-subject", text: entry.subject }) : null);
      if (entry.call) {
        const call = entry.call;
        item.append(el("p", { className: "small", text: `${humanize(call.outcome)} · talk ${Math.round(call.talk_s)} s · waited ${Math.round(call.queue_s)} s` }));
        if (call.recording_url) item.append(el("a", { text: "Recording", attrs: { href: call.recording_url, target: "_blank", rel: "noopener" } }));
      }
      if (entry.last_message) {
        item.append(el("p", { className: "small muted cust-last", text: `${humanize(entry.last_message.author_kind)}: ${entry.last_message.text}` }));
      }
      list.append(item);
    }
    if (!entries.length) list.append(el("li", { className: "empty small", text: "No contacts yet." }));
    return section(`Timeline (${entries.length})`, list);
  }

  function changes(customer) {
    if (!customer.changes.length) return null;
    const list = el("ul", { className: "cust-changes" });
    for (const change of customer.changes) {
      const moved = Object.entries(change.moved).filter(([, ids]) => ids.length)
        .map(([what, ids]) => `${ids.length} ${what.replaceAll("_", " ")}`).join(", ");
      list.append(el("li", { className: "small", text: `${humanize(change.kind)} ${when(change.at)} by ${change.actor}${moved ? ` — ${moved}` : ""}${change.reverted_by ? " (undone)" : ""}` }));
    }
    return section("History of this record", list);
  }

  async function replyBox() {
    if (!state.assigned || !state.conversationId) return null;
    let choices = [];
    try {
      choices = await api(`/api/customers/conversations/${encodeURIComponent(state.conversationId)}/channels`);
    } catch {
      return null;
    }
    // The conversation's own channel is answered in its own panel.
    const usable = choices.filter((c) => c.can_send && c.channel !== state.channel);
    if (!usable.length) return null;
    const channel = select(usable.map((c, i) => [String(i), `${humanize(c.channel)} · ${c.address}${c.preferred ? " (preferred)" : ""}`]), "0");
    const text = el("textarea", { attrs: { rows: "3", required: "", maxlength: "100000" } });
    const form = el("form", { className: "cust-form", attrs: { "aria-label": "Continue on another channel" } },
      field("Send by", channel), field("Text to send", text),
      el("button", { className: "button primary", text: "Send on this channel", attrs: { type: "submit" } }));
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      const chosen = usable[Number(channel.value)];
      run(() => api(`/api/customers/conversations/${encodeURIComponent(state.conversationId)}/replies`, {
        method: "POST", body: { channel: chosen.channel, address: chosen.address, text: text.value,
                                id: `x-${Date.now()}-${Math.random().toString(36).slice(2)}` } }),
          `Sent by ${humanize(chosen.channel)}. Their answer will come back here.`);
    });
    return section("Continue on another channel", form);
  }

  // The other-channel answer depends on the task's phase: it is redrawn on its own, so a
  // phase change never throws away what the agent is typing in the rest of the panel.
  const replySlot = el("div");

  async function drawReply() {
    const conversationId = state.conversationId;
    const reply = await replyBox();
    if (state.conversationId === conversationId) replySlot.replaceChildren(...[reply].filter(Boolean));
  }

  // What the tenant's CRM says is asked on its own: a slow CRM never holds up the panel, and
  // it says "did not answer" after the connector's timeout.
  const crmSlot = el("div", { attrs: { "data-testid": "customer-crm", "aria-live": "polite" } });

  function crmSection(found, customerId) {
    const again = el("button", { className: "button ghost", text: "Ask again", attrs: { type: "button" } });
    again.addEventListener("click", () => drawCrm(customerId, true));
    if (found.state === "timeout") return section("CRM", el("p", { className: "small", text: "CRM did not answer." }), again);
    if (found.state === "error") return section("CRM", el("p", { className: "small", text: `CRM lookup failed: ${found.error}` }), again);
    if (found.state === "not_found") return section("CRM", el("p", { className: "small muted", text: "Not found in the CRM." }));
    const list = el("dl", { className: "cust-crm" });
    for (const item of found.fields) list.append(el("dt", { text: item.label }), el("dd", { text: item.value }));
    const link = found.link ? el("a", { text: "Open in the CRM", attrs: { href: found.link, target: "_blank", rel: "noopener noreferrer" } }) : null;
    return section("CRM", list, link);
  }

  async function drawCrm(customerId, fresh = false) {
    crmSlot.replaceChildren(el("p", { className: "small muted", text: "Looking up in the CRM…" }));
    let found;
    try {
      found = await api(`/api/customers/${encodeURIComponent(customerId)}/crm${fresh ? "?fresh=true" : ""}`);
    } catch (error) {
      found = { state: "error", error: error.message || "no answer" };
    }
    if (state.customerId !== customerId) return;
    crmSlot.replaceChildren(...(found.state === "off" ? [] : [crmSection(found, customerId)]));
    if (!found.applied) return;
    // The CRM changed the customer's segment, VIP or account manager: show the new profile,
    // unless the agent is typing in the panel (a redraw would lose it).
    if (box.querySelector("form:focus-within")) {
      crmSlot.append(el("p", { className: "small muted", text: "The CRM updated this customer's profile; it shows on the next opening." }));
    } else {
      load();
    }
  }

  async function load() {
    const id = state.customerId;
    if (!id) {
      box.replaceChildren();
      return;
    }
    try {
      drawCrm(id);
      const [customer, entries] = await Promise.all([
        api(`/api/customers/${encodeURIComponent(id)}`),
        api(`/api/customers/${encodeURIComponent(id)}/timeline`), drawReply()]);
      if (state.customerId !== id) return;
      box.replaceChildren(crmSlot, profile(customer), consent(customer), identities(customer), replySlot,
                          ...[timeline(entries), changes(customer)].filter(Boolean));
    } catch (error) {
      box.replaceChildren(el("p", { className: "empty small", text: error.message || "The customer could not be loaded." }));
    }
  }

  return {
    // Called on every redraw of the conversation: loads only when something it shows changed.
    show(customerId, conversationId, task) {
      const assigned = task?.phase === "assigned";
      const same = customerId === state.customerId && conversationId === state.conversationId;
      if (same && assigned === state.assigned) return;
      Object.assign(state, { customerId: customerId || null, conversationId: conversationId || null,
                             channel: task?.channel || null, assigned });
      if (same) drawReply();
      else load();
    },
  };
}
