// The token is exchanged, once, for an HttpOnly session cookie: no script here ever holds
// it again, and it never travels in a URL. It comes in the address's fragment (which the
// browser never sends), or is typed into the sign-in form.
const headers = { "Content-Type": "application/json" };
let current = "web", socket = null, live = null;
const $ = (id) => document.getElementById(id);

async function api(path, options = {}) {
  const response = await fetch(path, { headers, credentials: "same-origin", ...options });
  if (response.status === 401) { signIn(); throw new Error("signed out"); }
  if (!response.ok) throw new Error((await response.json()).error.message);
  return response.status === 204 ? null : response.json();
}
async function login(token) {
  const response = await fetch("/api/login", { method: "POST", headers, body: JSON.stringify({ token }) });
  return response.ok;
}
function signIn(message) {
  $("login").hidden = false;
  $("login-error").hidden = !message;
  $("login-error").textContent = message || "";
  $("login-token").focus();
}
$("login").onsubmit = async (e) => {
  e.preventDefault();
  const typed = $("login-token").value.trim();
  $("login-token").value = "";
  if (await login(typed)) { $("login").hidden = true; start(); } else signIn("That is not the gateway's token.");
};
function bubble(kind, text) {
  const div = document.createElement("div");
  div.className = `msg ${kind}`;
  div.textContent = text;
  $("log").append(div);
  $("log").scrollTop = $("log").scrollHeight;
  return div;
}
function show(event) {
  if (event.kind === "message") { bubble("user", event.data.text); live = null; }
  else if (event.kind === "token") { live = live || bubble("reply", ""); live.textContent += event.data.text; }
  else if (event.kind === "reply") { (live || bubble("reply", "")).textContent = event.data.text; live = null; }
  else if (event.kind === "turn.failed") { (live || bubble("failed", "")).textContent = "error: " + event.data.error; live = null; }
  // The steps of a turn that acts: what it called, what came back, what waits for a person.
  else if (event.kind === "model.response" && event.data.parts.some((p) => p.kind === "tool_call")) { live = null; }
  else if (event.kind === "tool.call") { bubble("tool", `→ ${event.data.name} ${event.data.arguments}`); }
  else if (event.kind === "tool.result") {
    const first = event.data.content.split("\n").slice(0, 3).join("\n");
    bubble(event.data.error ? "tool error" : "tool", `${event.data.error ? "✗" : "✓"} ${first.slice(0, 300)}`);
  }
  else if (event.kind === "approval.asked") { bubble("tool", `held for your approval: ${event.data.summary} (${event.data.why})`); }
  else if (event.kind === "agent.message") { bubble("reply", event.data.text); }
  $("log").scrollTop = $("log").scrollHeight;
}
async function loadSessions() {
  const { sessions } = await api("/api/sessions");
  $("sessions").replaceChildren(...sessions.map((s) => {
    const b = document.createElement("button");
    b.textContent = s.id; b.className = s.id === current ? "active" : "";
    b.onclick = () => open(s.id);
    return b;
  }));
}
function fold(open) {
  $("side").classList.toggle("open", open);
  $("menu").setAttribute("aria-expanded", String(open));
}
$("menu").onclick = () => fold(!$("side").classList.contains("open"));
function open(id) {
  current = id; live = null;
  fold(false);
  $("log").replaceChildren();
  if (socket) socket.close();
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  socket = new WebSocket(`${scheme}://${location.host}/api/sessions/${id}/ws?after=0`);
  socket.onmessage = (m) => show(JSON.parse(m.data));
  socket.onclose = (e) => { if (e.code === 4401 || e.code === 1006) $("status").textContent = "disconnected"; };
  loadSessions();
}
$("send").onsubmit = async (e) => {
  e.preventDefault();
  const text = $("text").value.trim();
  if (!text) return;
  $("text").value = "";
  try { await api(`/api/sessions/${current}/messages`, { method: "POST", body: JSON.stringify({ text }) }); loadSessions(); }
  catch (err) { bubble("failed", err.message); }
};
$("new").onclick = () => open("web-" + Date.now().toString(36));
// A broken policy file (the last good one stays in force) is shown until it is fixed.
async function refreshStatus() {
  try {
    const s = await api("/api/status");
    $("status").textContent = `${s.model} · pid ${s.pid}`;
    $("policy-error").hidden = !s.policy_error;
    $("policy-error").textContent = s.policy_error
      ? `The policy file is broken; the last good policy stays in force.\n${s.policy_error}` : "";
  } catch (err) { $("status").textContent = err.message; }
}
// Requests held for a person: allow once, always (a rule in the policy file), or deny.
const pending = new Map();
function renderApprovals() {
  $("approvals").replaceChildren(...[...pending.values()].map((a) => {
    const div = document.createElement("div");
    div.className = "alert approval";
    div.dataset.id = a.id;
    const text = document.createElement("span");
    text.textContent = a.kind === "tool"
      ? `Agent ${a.agent} wants to run ${a.summary}. Held because ${a.why}.${a.details ? "\n" + a.details : ""}`
      : `Sandbox ${a.sandbox} asks to reach ${a.host}:${a.port} (rule ${a.rule}).`;
    const buttons = [["Allow once", "approve", false], ["Always allow", "approve", true], ["Deny", "deny", false]]
      .map(([label, decision, always]) => {
        const b = document.createElement("button");
        b.textContent = label;
        b.onclick = () => api(`/api/approvals/${a.id}`, { method: "POST", body: JSON.stringify({ decision, always, actor: "dashboard" }) })
          .catch((err) => { text.textContent = err.message; });
        return b;
      });
    div.append(text, ...buttons);
    return div;
  }));
}
function watchApprovals() {
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  const ws = new WebSocket(`${scheme}://${location.host}/api/approvals/ws`);
  ws.onmessage = (m) => {
    const { kind, data } = JSON.parse(m.data);
    if (kind === "approval.pending") pending.set(data.id, data); else pending.delete(data.id);
    renderApprovals();
  };
  ws.onclose = () => { pending.clear(); renderApprovals(); setTimeout(watchApprovals, 2000); };
}
let started = false;
function start() {
  if (started) return;
  started = true;
  refreshStatus();
  setInterval(refreshStatus, 3000);
  watchApprovals();
  open(current);
}
(async () => {
  const fromHash = new URLSearchParams(location.hash.slice(1)).get("token");
  if (fromHash) {
    history.replaceState(null, "", location.pathname);  // out of the address bar and history first
    if (!(await login(fromHash))) { signIn("The address's token is not this gateway's."); return; }
  }
  const probe = await fetch("/api/status", { credentials: "same-origin" });
  if (probe.ok) start(); else signIn();
})();
