// What the desk's email and messaging panels share: which conversation is shown and the phase
// of its task, reading it from the server, the Done button and following the desk's selection.
// Each panel draws its own view of what was read.
import { api, toast } from "/static/session.js";

// url(id) is the conversation's resource (its /finish ends the agent's part); draw() shows
// state.view (null while loading), reset() clears the composer for another conversation and
// redraw() follows a phase change of the conversation already shown.
export function conversationPanel(panel, done, { url, onFinished, draw, reset, redraw }) {
  const state = { shown: null, view: null, phase: null };

  async function load(id) {
    try {
      const answer = await api(url(id));
      if (state.shown === id) {
        state.view = answer;
        draw();
      }
    } catch (error) {
      if (error.status !== 404) toast(error.message || String(error), "error");
    }
  }

  done.addEventListener("click", async () => {
    if (!state.shown) return;
    try {
      await api(`${url(state.shown)}/finish`, { method: "POST" });
      onFinished?.();
    } catch (error) {
      toast(error.message || String(error), "error");
    }
  });

  return {
    state,
    load,
    // The selected task, or null when it is not on this panel's channel.
    show(conversationId, task) {
      panel.hidden = !conversationId;
      state.phase = task?.phase || null;
      if (!conversationId) {
        state.shown = null;
        return;
      }
      if (conversationId !== state.shown) {
        state.shown = conversationId;
        state.view = null;
        reset();
        draw();
        load(conversationId);
      } else {
        redraw();
      }
    },
    // Something happened in a conversation (a message, a delivery state): read it again.
    refresh(conversationId) {
      if (conversationId && conversationId === state.shown) load(state.shown);
    },
  };
}
