// accord dashboard: the fleet table from GET /api/v1/status, kept live by the SSE stream.
// Data is rendered with textContent only (node labels and reasons come from the fleet).
"use strict";

const API = "/api/v1";
const KEEP_EVENTS = 50;
const REFRESH_MS = 10000; // Stale is computed from time: refresh even when nothing happens

function token() {
  const fragment = new URLSearchParams(location.hash.slice(1));
  if (fragment.get("token")) {
    sessionStorage.setItem("accord-token", fragment.get("token"));
    history.replaceState(null, "", location.pathname + location.search);
  }
  let found = sessionStorage.getItem("accord-token");
  if (!found) {
    found = window.prompt("accord API token") || "";
    if (found) sessionStorage.setItem("accord-token", found);
  }
  return found;
}

const TOKEN = token();
const headers = { Authorization: `Bearer ${TOKEN}` };

function el(tag, text, className) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  if (className) node.className = className;
  return node;
}

function showError(message) {
  const box = document.getElementById("error");
  box.textContent = message;
  box.hidden = !message;
}

async function api(path) {
  const response = await fetch(API + path, { headers });
  if (!response.ok) {
    const body = await response.json().catch(() => ({}));
    throw new Error(`${path}: ${response.status} ${body.detail || response.statusText}`);
  }
  return response.json();
}

function condition(view, type) {
  return (view.conditions || []).find((c) => c.type === type);
}

function pill(found) {
  if (!found) return el("span", "—", "pill unknown");
  const good = found.type === "Stale" ? found.status === "False" : found.status === "True";
  const cls = found.status === "Unknown" ? "unknown" : good ? "ok" : "bad";
  const cell = el("span", found.status, `pill ${cls}`);
  cell.title = [found.reason, found.message].filter(Boolean).join(": ");
  return cell;
}

// Resources that are not plainly done, and the facts their kinds report (a package's version,
// a unit's state): "nginx version=1.22.1 · web applying".
function resources(view) {
  const shown = ((view.status && view.status.resources) || []).map((r) => {
    const facts = Object.entries(r.details || {}).map(([k, v]) => `${k}=${v}`);
    return [r.id, r.phase === "applied" ? "" : r.phase, ...facts].filter(Boolean).join(" ");
  });
  const cell = el("td", shown.join(" · ") || "—", "resources");
  cell.title = ((view.status && view.status.resources) || [])
    .map((r) => `${r.id} (${r.kind}): ${r.phase}${r.reason ? ", " + r.reason : ""}`).join("\n");
  return cell;
}

function row(view) {
  const tr = el("tr");
  tr.dataset.node = view.node;
  const desired = view.desired ? view.desired.generation : null;
  const applied = view.status ? view.status.applied_generation : null;
  // A generation counts per manifest: after a reassignment, "big 7" is not "small 7".
  const appliedManifest = view.status ? view.status.applied_manifest : null;
  const otherManifest = view.desired && appliedManifest && appliedManifest !== view.desired.manifest;
  const appliedText = otherManifest ? `${appliedManifest} ${applied}` : applied;
  const behind = desired && (applied !== desired || otherManifest);
  const labels = Object.entries(view.labels).map(([k, v]) => `${k}=${v}`).join(", ");
  const cells = [
    el("td", view.node, "node"),
    el("td", view.state, "state"),
    el("td", labels),
    el("td", view.desired ? view.desired.manifest : "—"),
    el("td", desired ?? "—", "num desired"),
    el("td", appliedText ?? "—", "num applied" + (behind ? " behind" : "")),
  ];
  const ready = el("td");
  ready.append(pill(condition(view, "Ready")));
  const stale = el("td", null, "stale");
  stale.append(pill(condition(view, "Stale")));
  const beat = el("td", view.last_heartbeat ? new Date(view.last_heartbeat).toLocaleString() : "never");
  tr.append(...cells, ready, stale, resources(view), beat);
  return tr;
}

async function refresh() {
  try {
    const fleet = await api("/status");
    const body = document.querySelector("#nodes tbody");
    body.replaceChildren(...fleet.map(row));
    const stale = fleet.filter((v) => v.stale).length;
    document.getElementById("summary").textContent =
      `${fleet.length} node${fleet.length === 1 ? "" : "s"}, ${stale} stale`;
    showError("");
  } catch (error) {
    showError(String(error.message || error));
  }
}

let pending = null;
function refreshSoon() {
  if (pending === null) pending = setTimeout(() => { pending = null; refresh(); }, 200);
}

function addEvent(id, type, data) {
  const list = document.getElementById("events");
  const who = data.data && data.data.initiator ? ` by ${data.data.initiator}` : "";
  const item = el("li", `#${id} ${data.at} ${type}${data.node ? " " + data.node : ""}${who}`);
  list.prepend(item);
  while (list.children.length > KEEP_EVENTS) list.lastChild.remove();
}

function setLive(on) {
  const live = document.getElementById("live");
  live.textContent = on ? "live" : "offline";
  live.className = `pill ${on ? "ok" : "unknown"}`;
}

// One SSE message ("id: …\nevent: …\ndata: …") → {id, event, data}; comments are skipped.
function parseMessage(message) {
  const fields = { data: [] };
  for (const line of message.split("\n")) {
    if (!line || line.startsWith(":")) continue;
    const at = line.indexOf(":");
    const name = at < 0 ? line : line.slice(0, at);
    const text = at < 0 ? "" : line.slice(at + 1).replace(/^ /, "");
    if (name === "data") fields.data.push(text);
    else fields[name] = text;
  }
  return fields.data.length ? { ...fields, data: JSON.parse(fields.data.join("\n")) } : null;
}

// Split complete messages off the front of a buffer; returns [messages, rest].
function takeMessages(buffer) {
  const parts = buffer.split("\n\n");
  const rest = parts.pop();
  return [parts.map(parseMessage).filter(Boolean), rest];
}

let lastEventId = "0";

function show(messages) {
  for (const message of messages) {
    lastEventId = message.id ?? lastEventId;
    addEvent(message.id, message.event, message.data);
  }
  if (messages.length) refreshSoon();
}

// The history so far, in one response (follow=false ends it after the replay).
async function replay() {
  const response = await fetch(`${API}/events?follow=false&after=${lastEventId}`, { headers });
  if (!response.ok) throw new Error(`events: ${response.status}`);
  show(takeMessages(await response.text() + "\n\n")[0]);
}

// Then the live stream. EventSource cannot send an Authorization header, so it is read with
// fetch, resuming after the last event seen (Last-Event-ID) whenever it reconnects.
async function follow() {
  for (;;) {
    try {
      const response = await fetch(`${API}/events`, {
        headers: { ...headers, "Last-Event-ID": lastEventId },
      });
      if (!response.ok) throw new Error(`events: ${response.status}`);
      setLive(true);
      const reader = response.body.getReader();
      const decoder = new TextDecoder();
      let buffer = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        let messages;
        [messages, buffer] = takeMessages(buffer + decoder.decode(value, { stream: true }));
        show(messages);
      }
    } catch (error) {
      showError(String(error.message || error));
    }
    setLive(false);
    await new Promise((resolve) => setTimeout(resolve, 2000));
  }
}

async function main() {
  if (!TOKEN) {
    showError("no token: open this page as /#token=YOUR_TOKEN");
    return;
  }
  try {
    const me = await api("/whoami");
    document.getElementById("who").textContent = `${me.name} (${me.role})`;
  } catch (error) {
    showError(String(error.message || error));
    return;
  }
  await refresh();
  setInterval(refresh, REFRESH_MS);
  try {
    await replay();
  } catch (error) {
    showError(String(error.message || error));
  }
  follow();
}

main();
