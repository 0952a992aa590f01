// Airlock console. Everything shown comes from tool calls an agent made, so it is untrusted:
// it is only ever set as text (textContent), never parsed as HTML.
"use strict";

const csrf = document.querySelector('meta[name="airlock-csrf"]').content;

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") e.className = v; else if (k.startsWith("on")) e.addEventListener(k.slice(2), v); else e.setAttribute(k, v);
  }
  for (const c of children) e.append(c instanceof Node ? c : document.createTextNode(String(c ?? "")));
  return e;
}

function showError(msg) { document.getElementById("error").textContent = msg || ""; }

async function api(method, path, body) {
  const opts = { method, headers: { "X-Airlock-CSRF": csrf }, credentials: "same-origin" };
  if (body !== undefined) { opts.headers["Content-Type"] = "application/json"; opts.body = JSON.stringify(body); }
  const res = await fetch("/console/api" + path, opts);
  if (res.status === 401) { location.href = "/console/login"; throw new Error("logged out"); }
  const text = await res.text();
  const data = text ? JSON.parse(text) : null;
  if (!res.ok) throw new Error((data && data.error) || res.statusText);
  return data;
}

// Pending approvals: every argument in full, as the elicitation prompt would show it.
function renderPending(list) {
  const box = document.getElementById("pending");
  document.getElementById("pending-count").textContent = list.length;
  box.replaceChildren(...list.map((p) => {
    const args = Object.keys(p.args || {}).sort().map((k) => {
      const v = p.args[k];
      return el("div", { class: "arg" }, el("b", {}, k), el("pre", { "data-arg": k }, typeof v === "string" ? v : JSON.stringify(v, null, 2)));
    });
    const answer = (what) => async () => {
      try { await api("POST", "/pending/" + encodeURIComponent(p.id) + "/" + what); showError(""); } catch (e) { showError(e.message); }
    };
    return el("div", { class: "card pending", "data-id": p.id, "data-tool": p.tool },
      el("h3", {}, p.tool),
      el("div", { class: "meta" }, "grant ", p.grant, " · session ", p.session, " · rule ", p.rule, " · waiting since ", new Date(p.since).toLocaleTimeString()),
      el("p", {}, p.message),
      ...args,
      el("button", { class: "approve", type: "button", onclick: answer("approve") }, "Approve"), " ",
      el("button", { class: "deny", type: "button", onclick: answer("deny") }, "Deny"));
  }));
}

function watchPending() {
  const es = new EventSource("/console/api/pending/stream");
  es.addEventListener("pending", (ev) => renderPending(JSON.parse(ev.data)));
  es.onerror = () => { es.close(); setTimeout(watchPending, 2000); };
}

// Audit trail.
let auditStream = null;
function filterQuery() {
  const q = new URLSearchParams();
  for (const [id, key] of [["f-tool", "tool"], ["f-grant", "grant"], ["f-decision", "decision"]]) {
    const v = document.getElementById(id).value.trim();
    if (v) q.set(key, v);
  }
  return q.toString();
}

function auditRow(r) {
  return el("tr", { "data-audit-id": r.audit_id || "" },
    el("td", {}, (r.time || "").replace("T", " ").replace(/\..*/, "")),
    el("td", {}, r.tool || ""), el("td", {}, r.grant || ""),
    el("td", { class: r.decision || "" }, r.decision || ""), el("td", {}, r.rule || ""),
    el("td", {}, r.exit_code ?? ""), el("td", {}, r.message || ""));
}

async function loadAudit() {
  const q = filterQuery();
  const rows = document.getElementById("audit-rows");
  rows.replaceChildren(...(await api("GET", "/audit?n=200&" + q)).reverse().map(auditRow));
  if (auditStream) auditStream.close();
  auditStream = new EventSource("/console/api/audit/stream?" + q);
  auditStream.addEventListener("record", (ev) => {
    rows.prepend(auditRow(JSON.parse(ev.data)));
    while (rows.children.length > 500) rows.lastChild.remove();
    checkChain();
  });
}

let chainTimer = null;
function checkChain() {
  clearTimeout(chainTimer);
  chainTimer = setTimeout(async () => {
    const badge = document.getElementById("chain");
    try {
      const v = await api("GET", "/audit/verify");
      badge.textContent = v.intact ? "chain intact · " + v.records + " records" + (v.files > 1 ? " in " + v.files + " files" : "") : "chain BROKEN at " + (v.broken_file ? v.broken_file + " " : "") + "line " + v.broken_line + ": " + v.reason;
      badge.className = "badge " + (v.intact ? "ok" : "bad");
    } catch (e) { badge.textContent = "chain: " + e.message; badge.className = "badge bad"; }
  }, 300);
}

// Kill switches.
async function loadKills() {
  const kills = await api("GET", "/kills");
  document.getElementById("kills").replaceChildren(...(kills || []).map((k) =>
    el("li", { "data-rule": "/kill/" + k.scope + (k.name ? "/" + k.name : "") },
      el("b", {}, k.scope + (k.name ? " " + k.name : "")), " since ", new Date(k.time).toLocaleString(), " — ", k.reason || "", " ",
      el("button", { type: "button", onclick: async () => {
        try { await api("POST", "/kills/clear", { scope: k.scope, name: k.name || "" }); loadKills(); } catch (e) { showError(e.message); }
      } }, "Resume"))));
}

// Pins.
async function loadPins() {
  const pins = await api("GET", "/pins");
  document.getElementById("pin-rows").replaceChildren(...(pins || []).map((p) => {
    const actions = [];
    if (p.state !== "pinned") {
      actions.push(el("button", { type: "button", onclick: async () => {
        try {
          const d = await api("GET", "/pins/diff?upstream=" + encodeURIComponent(p.upstream) + "&tool=" + encodeURIComponent(p.tool));
          const pre = document.getElementById("pin-diff"); pre.textContent = d.diff; pre.hidden = false;
        } catch (e) { showError(e.message); }
      } }, "Diff"), " ", el("button", { type: "button", class: "approve", onclick: async () => {
        try { await api("POST", "/pins/approve", { upstream: p.upstream, tool: p.tool, hash: p.seen_hash || "" }); loadPins(); } catch (e) { showError(e.message); }
      } }, "Approve"));
    }
    return el("tr", {}, el("td", {}, p.upstream), el("td", {}, p.tool), el("td", {}, p.state), el("td", {}, ...actions));
  }));
}

async function loadSummary() {
  const s = await api("GET", "/summary");
  const items = [["in flight", s.in_flight], ["waiting for approval", s.pending], ["policy", (s.policy_sha256 || "").slice(0, 12)], ["state store", s.store]];
  for (const [d, n] of Object.entries(s.calls || {}).sort()) items.push(["calls " + d, n]);
  document.getElementById("summary").replaceChildren(...items.flatMap(([k, v]) => [el("dt", {}, k), el("dd", { "data-key": k }, v)]));
}

document.addEventListener("DOMContentLoaded", () => {
  document.getElementById("audit-filter").addEventListener("submit", (e) => { e.preventDefault(); loadAudit().catch((x) => showError(x.message)); });
  document.getElementById("kill-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    try {
      await api("POST", "/kills", { scope: document.getElementById("k-scope").value, name: document.getElementById("k-name").value.trim(), reason: document.getElementById("k-reason").value.trim() });
      showError(""); loadKills();
    } catch (x) { showError(x.message); }
  });
  document.getElementById("logout").addEventListener("click", async () => { await fetch("/console/logout", { method: "POST", headers: { "X-Airlock-CSRF": csrf } }); location.href = "/console/login"; });
  watchPending();
  loadAudit().catch((x) => showError(x.message));
  checkChain();
  loadKills().catch((x) => showError(x.message));
  loadPins().catch((x) => showError(x.message));
  loadSummary().catch((x) => showError(x.message));
  setInterval(() => { loadSummary().catch(() => {}); loadKills().catch(() => {}); }, 3000);
});
