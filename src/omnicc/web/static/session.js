// The logged-in user and the API: every page's requests go through `api`, which sends the
// CSRF token on unsafe methods and turns RFC 9457 problems into Errors with their detail.

let csrfToken = null;
let me = null;

export class ApiError extends Error {
  constructor(status, problem) {
    super(problem?.detail || problem?.title || `HTTP ${status}`);
    this.status = status;
    this.problem = problem;
  }
}

export async function api(path, { method = "GET", body, headers = {} } = {}) {
  const init = { method, headers: { Accept: "application/json", ...headers },
                 credentials: "same-origin" };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  if (method !== "GET" && csrfToken) init.headers["X-CSRF-Token"] = csrfToken;
  const response = await fetch(path, init);
  if (response.status === 204) return null;
  const type = response.headers.get("content-type") || "";
  const data = type.includes("json") ? await response.json() : await response.text();
  if (!response.ok) {
    if (response.status === 401 && !path.startsWith("/api/auth/")) {
      location.assign(`/login?next=${encodeURIComponent(location.pathname)}`);
    }
    throw new ApiError(response.status, typeof data === "object" ? data : { detail: data });
  }
  return data;
}

export async function login(username, password, tenant) {
  me = await api("/api/auth/login", { method: "POST", body: { username, password, tenant } });
  csrfToken = me.csrf_token;
  return me;
}

export async function currentUser() {
  if (!me) {
    me = await api("/api/auth/me");
    csrfToken = me.csrf_token;
  }
  return me;
}

export async function logout() {
  try { await api("/api/auth/logout", { method: "POST" }); } finally { location.assign("/login"); }
}

export function socketUrl(path) {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  return `${scheme}//${location.host}${path}`;
}

// A WebSocket that reconnects with backoff; `onOpen` runs after every (re)connection so the
// page reloads its state, since notices sent while disconnected are not replayed.
export function liveSocket(path, { onMessage, onOpen, onStatus }) {
  let socket = null;
  let delay = 500;
  let closed = false;
  const connect = () => {
    socket = new WebSocket(socketUrl(path));
    socket.addEventListener("open", () => { delay = 500; onStatus?.("online"); onOpen?.(socket); });
    socket.addEventListener("message", (event) => onMessage(JSON.parse(event.data)));
    socket.addEventListener("close", () => {
      if (closed) return;
      onStatus?.("offline");
      setTimeout(connect, delay);
      delay = Math.min(delay * 2, 10000);
    });
  };
  connect();
  return {
    send: (frame) => socket?.readyState === WebSocket.OPEN && socket.send(JSON.stringify(frame)),
    close: () => { closed = true; socket?.close(); },
  };
}

export function toast(text, kind = "info") {
  const box = document.getElementById("toasts");
  if (!box) return;
  const item = document.createElement("div");
  item.className = `toast ${kind}`;
  item.textContent = text;
  box.append(item);
  setTimeout(() => item.remove(), 5000);
}

document.querySelectorAll("[data-logout]").forEach((button) =>
  button.addEventListener("click", logout));
