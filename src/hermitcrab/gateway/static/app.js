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
function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  Object.assign(node, props);
  node.append(...children);
  return node;
}
function folded(kind, summary, whole) {
  const details = el("details", { className: `msg ${kind}` }, el("summary", {}, summary), el("pre", {}, whole.slice(0, 4000)));
  $("log").append(details);
  return details;
}
function show(event) {
  if (event.kind === "message") { bubble("user", event.data.text); live = null; }
  else if (event.kind === "token") { live = live || bubble("reply", ""); live.textContent += event.data.text; }
  else if (event.kind === "reply") { (live || bubble("reply", "")).textContent = event.data.text; live = null; }
  else if (event.kind === "turn.failed") { (live || bubble("failed", "")).textContent = "error: " + event.data.error; live = null; }
  // The steps of a turn that acts: what it called, what came back, what waits for a person.
  else if (event.kind === "model.response" && event.data.parts.some((p) => p.kind === "tool_call")) { live = null; }
  // Tool calls and results are folded: one line each, the whole of it a click away.
  else if (event.kind === "tool.call") { folded("tool", `→ ${event.data.name} ${event.data.arguments.slice(0, 120)}`, event.data.arguments); }
  else if (event.kind === "tool.result") {
    const first = event.data.content.split("\n")[0];
    folded(event.data.error ? "tool error" : "tool", `${event.data.error ? "✗" : "✓"} ${first.slice(0, 160)}`, event.data.content);
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
  view("chat");
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
    text.textContent = (a.kind === "tool"
      ? `Agent ${a.agent} wants to run ${a.summary}. Held because ${a.why}.${a.details ? "\n" + a.details : ""}`
      : `Sandbox ${a.sandbox} asks to reach ${a.host}:${a.port} (rule ${a.rule}).`)
      + (a.always_adds ? `\n"Always allow" adds to the policy: ${a.always_adds}` : "");
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
// The other pages: each a read of the API, drawn as a table.
function table(columns, rows) {
  const head = el("tr", {}, ...columns.map(([label]) => el("th", { scope: "col" }, label)));
  const body = rows.map((row) => el("tr", {}, ...columns.map(([, cell]) => el("td", {}, String(cell(row) ?? "")))));
  return el("table", {}, el("thead", {}, head), el("tbody", {}, ...body));
}
const when = (seconds) => (seconds ? new Date(seconds * 1000).toLocaleString() : "");
function page(title, ...children) { $("view").replaceChildren(el("h1", {}, title), ...children); }

async function showAudit() {
  const { entries } = await api("/api/audit?limit=500");
  const actions = [...new Set(entries.map((e) => e.action))].sort();
  const kind = el("select", { id: "audit-action" }, el("option", { value: "" }, "every action"),
    ...actions.map((a) => el("option", { value: a }, a)));
  const words = el("input", { id: "audit-text", type: "search", placeholder: "sandbox, rule, detail…" });
  const holder = el("div");
  const draw = () => {
    const text = words.value.toLowerCase();
    const shown = entries.filter((e) => (!kind.value || e.action === kind.value)
      && (!text || JSON.stringify(e).toLowerCase().includes(text)));
    holder.replaceChildren(table([["When", (e) => when(e.ts)], ["Action", (e) => e.action], ["Outcome", (e) => e.outcome],
      ["Sandbox", (e) => e.sandbox], ["Who", (e) => e.actor], ["Rule", (e) => e.rule],
      ["What", (e) => (e.argv ? e.argv.join(" ") : "") + (e.detail ? ` ${e.detail}` : "")]], shown));
  };
  kind.onchange = draw; words.oninput = draw;
  page("Audit log", el("div", { className: "filters" }, el("label", { htmlFor: "audit-action" }, "Action"), kind,
    el("label", { htmlFor: "audit-text" }, "Containing"), words), holder);
  draw();
}
async function showPolicy() {
  const policy = await api("/api/policy");
  const text = el("textarea", { id: "policy-text", spellcheck: false, value: policy.text });
  const outcome = el("p", { id: "policy-outcome", role: "alert", className: "alert", hidden: true });
  const apply = el("button", { type: "submit" }, "Check and apply");
  const form = el("form", { className: "policy" }, el("label", { htmlFor: "policy-text" }, `Policy file (${policy.path})`), text, apply);
  form.onsubmit = async (e) => {
    e.preventDefault();
    try {
      const done = await api("/api/policy", { method: "PUT", body: JSON.stringify({ text: text.value, actor: "dashboard" }) });
      outcome.className = "alert ok";
      outcome.textContent = `Applied (version ${done.version}) to ${done.sandboxes.join(", ") || "no running sandbox"}.`;
    } catch (err) {
      outcome.className = "alert failed";
      outcome.textContent = err.message;
    }
    outcome.hidden = false;
  };
  page("Policy", outcome, form);
}
async function showJobs() {
  const [{ jobs }, { runs }] = await Promise.all([api("/api/jobs"), api("/api/jobs/history?limit=50")]);
  const schedule = (j) => (j.cron ? `cron ${j.cron}${j.tz ? ` (${j.tz})` : ""}` : j.every_s ? `every ${j.every_s} s` : `at ${when(j.run_at)}`);
  page("Scheduled jobs",
    jobs.length ? table([["Job", (j) => j.id], ["Agent", (j) => j.agent], ["What", (j) => j.name || j.text], ["When", schedule],
      ["Next", (j) => when(j.next_due)], ["Runs", (j) => j.runs], ["Catch-up", (j) => j.catch_up]], jobs) : el("p", {}, "No scheduled jobs."),
    el("h2", {}, "Recent runs"),
    runs.length ? table([["Job", (r) => r.job_id], ["Due", (r) => when(r.due_at)], ["Ran", (r) => when(r.ran_at)],
      ["Outcome", (r) => r.outcome], ["Missed", (r) => r.missed], ["Detail", (r) => r.detail]], runs) : el("p", {}, "No runs yet."));
}
function barChart(rows, value, label) {
  const ns = "http://www.w3.org/2000/svg", width = 600, height = 160, most = Math.max(...rows.map(value), 1e-9);
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("viewBox", `0 0 ${width} ${height + 20}`);
  svg.setAttribute("class", "chart");
  svg.setAttribute("role", "img");
  svg.setAttribute("aria-label", label);
  const step = width / Math.max(rows.length, 1);
  rows.forEach((row, i) => {
    const bar = document.createElementNS(ns, "rect"), h = (value(row) / most) * height;
    bar.setAttribute("x", i * step + 2); bar.setAttribute("y", height - h);
    bar.setAttribute("width", Math.max(step - 4, 1)); bar.setAttribute("height", h);
    const tip = document.createElementNS(ns, "title");
    tip.textContent = `${row.key}: ${value(row)}`;
    bar.append(tip);
    const name = document.createElementNS(ns, "text");
    name.setAttribute("x", i * step + 2); name.setAttribute("y", height + 14);
    name.textContent = String(row.key).slice(5);
    svg.append(bar, name);
  });
  return svg;
}
async function showUsage() {
  const [days, agents] = await Promise.all([api("/api/usage?by=day"), api("/api/usage?by=agent")]);
  const tokens = (r) => (r.prompt_tokens || 0) + (r.completion_tokens || 0);
  const columns = [["", (r) => r.key], ["Calls", (r) => r.calls], ["Tokens in", (r) => r.prompt_tokens],
    ["Tokens out", (r) => r.completion_tokens], ["Spend (USD)", (r) => (r.cost_usd || 0).toFixed(4)]];
  const rows = [...days.rows].reverse().slice(-30);
  page("Usage", el("p", {}, `Spent today: $${days.today.total_usd.toFixed(4)}` + (days.today.total_cap_usd ? ` of $${days.today.total_cap_usd}` : "")),
    barChart(rows, tokens, "Tokens a day, the last 30 days"),
    el("h2", {}, "By day"), table(columns, days.rows), el("h2", {}, "By agent"), table(columns, agents.rows));
}
async function showSandboxes() {
  const { sandboxes } = await api("/api/sandboxes");
  page("Sandboxes", sandboxes.length ? table([["Name", (b) => b.name], ["State", (b) => (b.running ? "running" : "stopped")],
    ["Agent", (b) => b.agent], ["Processes", (b) => b.processes], ["Network", (b) => b.network],
    ["Policy", (b) => b.policy_version], ["Created", (b) => when(b.created_at)]], sandboxes) : el("p", {}, "No sandboxes."));
}
// Each channel's state, and pairing: a stranger's code approved (as the owner or a guest)
// here as with `hermitcrab pairing approve`, or someone paired revoked.
async function showChannels() {
  const [{ channels }, { senders }] = await Promise.all([api("/api/channels"), api("/api/pairing")]);
  const act = (label, path, body) => {
    const b = el("button", { type: "button" }, label);
    b.onclick = () => api(path, { method: "POST", body: JSON.stringify({ ...body, actor: "dashboard" }) })
      .then(showChannels).catch((err) => { b.replaceWith(el("span", { className: "msg failed", role: "alert" }, err.message)); });
    return b;
  };
  const now = Date.now() / 1000;
  const waiting = senders.filter((s) => s.state === "pending" && s.expires_at > now);
  const paired = senders.filter((s) => s.state === "approved");
  const who = (s) => `${s.sender}${s.name ? ` (${s.name})` : ""}`;
  const actions = (columns, rows, buttons) => {
    const drawn = table(columns, rows);
    drawn.querySelectorAll("tbody tr").forEach((tr, i) => tr.append(el("td", {}, ...buttons(rows[i]))));
    drawn.querySelector("thead tr").append(el("th", { scope: "col" }, "Decide"));
    return drawn;
  };
  page("Channels and pairing",
    channels.length ? table([["Channel", (c) => c.name], ["Type", (c) => c.type], ["State", (c) => c.state],
      ["Bot", (c) => c.bot], ["Last error", (c) => c.error]], channels) : el("p", {}, "No channels configured."),
    el("h2", {}, "Waiting for a pairing code's approval"),
    waiting.length ? actions([["Code", (s) => s.code], ["Channel", (s) => s.channel], ["Who", who],
      ["Asked", (s) => when(s.asked_at)]], waiting, (s) => [
      act(`Approve ${s.code} as owner`, "/api/pairing/approve", { code: s.code, role: "owner" }),
      act(`Approve ${s.code} as guest`, "/api/pairing/approve", { code: s.code, role: "guest" })])
      : el("p", {}, "Nobody is waiting."),
    el("h2", {}, "Paired"),
    paired.length ? actions([["Channel", (s) => s.channel], ["Who", who], ["Role", (s) => s.role],
      ["Since", (s) => when(s.decided_at)], ["By", (s) => s.decided_by]], paired, (s) => [
      act(`Revoke ${s.sender}`, "/api/pairing/revoke", { channel: s.channel, sender: s.sender })])
      : el("p", {}, "Nobody is paired."));
}
const VIEWS = { audit: showAudit, policy: showPolicy, jobs: showJobs, usage: showUsage, sandboxes: showSandboxes,
  channels: showChannels };
function view(name) {
  $("chat").hidden = name !== "chat";
  $("view").hidden = name === "chat";
  for (const b of document.querySelectorAll("#views button")) {
    if (b.dataset.view === name) b.setAttribute("aria-current", "page"); else b.removeAttribute("aria-current");
  }
  fold(false);
  if (name !== "chat") VIEWS[name]().catch((err) => page("Could not load this page", el("p", { className: "msg failed" }, err.message)));
}
for (const b of document.querySelectorAll("#views button")) b.onclick = () => view(b.dataset.view);

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
