// sse-fcgi viewer. One EventSource per connection: what it shows is what any client sees.
// Row content is only ever set with textContent, never parsed as HTML.
"use strict";

// The reference's default set: the event_types rows with streamed_by_default = 1 in
// schema.sql. The server's table is the authority: with every box ticked the page sends no
// types= at all and the server applies its own default set.
const DEFAULT_TYPES = [
  "client_output_delta", "client_input_requested", "client_input_received",
  "llm_text_delta", "tool_call_started", "tool_call_completed", "execution_started",
  "execution_completed", "execution_failed", "execution_paused", "node_loop_started",
  "node_loop_iteration", "node_loop_completed", "llm_turn_complete", "node_action_plan",
  "goal_progress", "node_internal_output", "node_stalled", "node_retry",
  "node_tool_doom_loop", "context_compacted", "context_usage_updated",
  "worker_colony_loaded", "colony_created", "credentials_required", "subagent_report",
  "queen_phase_changed", "trigger_available", "trigger_activated", "trigger_deactivated",
  "trigger_fired", "trigger_removed", "trigger_updated",
];
const MAX_ROWS = 2000;              // the page's memory stays bounded on a busy session
const RECENT_KEY = "sse-fcgi-viewer.sessions";
const RECENT_MAX = 12;

const $ = (id) => document.getElementById(id);
const pageParams = new URLSearchParams(location.search);
// Relative by default, so the page works wherever it is mounted; ?api= points elsewhere
// (shared hosting: ?api=../cgi-bin/events.fcgi/api/).
const apiBase = new URL(pageParams.get("api") || "api/", location.href);

const view = {
  source: null,         // the EventSource, or null
  url: "",              // the URL it was opened with
  lastId: null,         // id of the last event received (what Last-Event-ID will say)
  count: 0,
  opens: 0,
  hasOpened: false,
};

function setState(state, detail) {
  const badge = $("state");
  badge.dataset.state = state;
  badge.textContent = state;
  $("state-detail").textContent = detail || "";
}

function splitList(text) {
  return text.split(",").map((s) => s.trim()).filter((s) => s.length > 0);
}

function checkedTypes() {
  return [...document.querySelectorAll("#type-boxes input:checked")].map((b) => b.value);
}

// The types= value for the controls, or null when every default box is ticked and no
// other name given (the server's default set).
function typesParam() {
  const ticked = checkedTypes();
  const extra = splitList($("extra-types").value);
  return ticked.length < DEFAULT_TYPES.length || extra.length > 0
    ? [...ticked, ...extra].join(",") : null;
}

function loadRecentSessions() {
  try {
    return JSON.parse(localStorage.getItem(RECENT_KEY) || "[]");
  } catch (e) {
    return [];  // storage disabled or a corrupt entry: the list is a convenience
  }
}

// The stream URL for the controls; lastId (or null) becomes last_event_id= (EventSource
// cannot be given a Last-Event-ID header; it sends one itself when it reconnects).
// A fresh connect replays only recent rows of the types marked replayed (SPEC §4.2);
// "whole history" resumes from 0 instead: every kept event of the chosen types.
function buildStreamUrl(lastId) {
  const session = $("session").value.trim();
  const url = new URL(`sessions/${encodeURIComponent(session)}/events`, apiBase);
  const types = typesParam();
  if (types !== null)
    url.searchParams.set("types", types);
  const watch = $("watch-all").checked
    ? ["*"]
    : splitList($("watch-ids").value).map((w) => (w === "worker" || w.startsWith("worker:")
                                                   ? w : `worker:${w}`));
  if (watch.length > 0)
    url.searchParams.set("watch", watch.join(","));
  if (pageParams.has("token"))
    url.searchParams.set("token", pageParams.get("token"));
  if (lastId !== null || $("from-start").checked)
    url.searchParams.set("last_event_id", lastId ?? 0);
  return url.toString();
}

function rememberSession(session) {
  const recent = [session, ...loadRecentSessions().filter((s) => s !== session)]
    .slice(0, RECENT_MAX);
  try {
    localStorage.setItem(RECENT_KEY, JSON.stringify(recent));
  } catch (e) { /* storage disabled: the list is a convenience */ }
  fillRecentSessions(recent);
}

function fillRecentSessions(recent) {
  const list = $("recent-sessions");
  list.replaceChildren(...recent.map((s) => Object.assign(document.createElement("option"),
                                                         {value: s})));
}

// Keeps the page URL in step with the controls, so a reload or a shared link shows the same.
function saveControlsInUrl() {
  const p = new URLSearchParams(pageParams);
  p.set("session", $("session").value.trim());
  const types = typesParam();
  if (types !== null)
    p.set("types", types);
  else
    p.delete("types");
  const watch = $("watch-all").checked ? "*" : $("watch-ids").value.trim();
  if (watch)
    p.set("watch", watch);
  else
    p.delete("watch");
  if ($("from-start").checked)
    p.set("history", "all");
  else
    p.delete("history");
  history.replaceState(null, "", `${location.pathname}?${p}`);
}

function updateStatus() {
  $("last-id").textContent = view.lastId === null ? "-" : view.lastId;
  $("event-count").textContent = view.count;
  $("event-word").textContent = view.count === 1 ? "event" : "events";
  $("open-count").textContent = view.opens;
  $("open-word").textContent = view.opens === 1 ? "connection" : "connections";
  $("empty").hidden = view.count > 0;
  const types = typesParam();
  $("type-summary").textContent = types === null
    ? "default set" : `${types === "" ? 0 : types.split(",").length} chosen`;
}

function formatTime(timestamp) {
  const t = typeof timestamp === "string" ? new Date(timestamp) : null;
  if (!t || Number.isNaN(t.getTime()))
    return timestamp === null || timestamp === undefined ? "" : String(timestamp);
  return t.toLocaleTimeString([], {hour12: false}) + "." +
         String(t.getMilliseconds()).padStart(3, "0");
}

function cell(text, className) {
  const td = document.createElement("td");
  td.textContent = text;
  if (className)
    td.className = className;
  return td;
}

// Newest first: a live event shows at the top without scrolling.
function prependRow(row) {
  const body = $("events").tBodies[0];
  body.prepend(row);
  while (body.rows.length > MAX_ROWS)
    body.deleteRow(-1);
}

function showEvent(message) {
  let frame;
  try {
    frame = JSON.parse(message.data);
  } catch (e) {
    frame = {type: "(not JSON)", data: message.data};
  }
  const row = document.createElement("tr");
  row.dataset.id = message.lastEventId;
  row.title = "click for the JSON";
  const preview = JSON.stringify(frame.data);
  row.append(cell(message.lastEventId, "id"), cell(formatTime(frame.timestamp), "time"),
             cell(frame.type ?? "", "type"), cell(frame.stream_id ?? "", "stream"),
             cell(preview && preview.length > 160 ? preview.slice(0, 160) + "…" : preview,
                  "data"));
  row.addEventListener("click", () => toggleJson(row, frame));
  prependRow(row);
  view.lastId = message.lastEventId;
  view.count += 1;
  updateStatus();
}

function toggleJson(row, frame) {
  const next = row.nextElementSibling;
  if (next && next.classList.contains("json")) {
    next.remove();
    row.classList.remove("open");
    return;
  }
  const detail = document.createElement("tr");
  detail.className = "json";
  const td = document.createElement("td");
  td.colSpan = 5;
  const pre = document.createElement("pre");
  pre.textContent = JSON.stringify(frame, null, 2);
  td.append(pre);
  detail.append(td);
  row.after(detail);
  row.classList.add("open");
}

// SPEC §4.3: the resume point is older than what retention kept.
function showGap(message) {
  let gap = {};
  try {
    gap = JSON.parse(message.data);
  } catch (e) { /* shown as is below */ }
  const row = document.createElement("tr");
  row.className = "gap";
  const td = cell(`gap: events after ${gap.requested} were pruned; resumed from ` +
                  `${gap.resumed_from}`);
  td.colSpan = 5;
  row.append(td);
  prependRow(row);
}

function stopSource() {
  if (view.source)
    view.source.close();
  view.source = null;
}

function openStream(url) {
  stopSource();
  view.url = url;
  const link = $("stream-url");
  link.href = url;
  link.textContent = new URL(url).pathname + new URL(url).search;
  setState(view.hasOpened ? "reconnecting" : "connecting");
  const source = new EventSource(url);
  view.source = source;
  source.onopen = () => {
    view.opens += 1;
    view.hasOpened = true;
    setState("live");
    updateStatus();
  };
  source.onmessage = showEvent;
  source.addEventListener("gap", showGap);
  source.onerror = () => {
    if (source !== view.source)
      return;
    if (source.readyState === EventSource.CONNECTING)
      setState("reconnecting", "the browser retries by itself, with Last-Event-ID");
    else
      explainClose();
  };
}

// EventSource gave up for good: the server answered something other than a 200 stream.
// It does not say what, so ask the same question with HEAD (same route, same resume
// point). A busy server or a missing database is not among the answers: the responder
// refuses an EventSource softly (a 200 stream with retry:, SPEC §4.12), and the browser
// comes back by itself while the page says "reconnecting".
async function explainClose() {
  stopSource();
  let status = 0;
  try {
    status = (await fetch(buildStreamUrl(view.lastId), {method: "HEAD", cache: "no-store"}))
      .status;
  } catch (e) { /* status 0: not reachable */ }
  if (status === 204)
    setState("ended", "the session is closed and every event was received");
  else if (status === 404)
    setState("error", "no such session (404)");
  else if (status === 401 || status === 403)
    setState("error", `access denied (${status}); add ?token=… to the page URL`);
  else
    setState("error", (status === 0 ? "the server cannot be reached"
                                    : `the stream was refused (HTTP ${status})`) +
                      "; Connect starts again");
}

function connect() {
  const session = $("session").value.trim();
  if (!$("session").checkValidity()) {
    setState("error", "a session id is 1-128 bytes of A-Z a-z 0-9 . _ : -");
    return;
  }
  $("events").tBodies[0].replaceChildren();
  Object.assign(view, {lastId: null, count: 0, opens: 0, hasOpened: false});
  rememberSession(session);
  saveControlsInUrl();
  updateStatus();
  openStream(buildStreamUrl(null));
}

function disconnect() {
  stopSource();
  setState("idle", "disconnected");
}

function buildTypeBoxes(wanted) {
  const boxes = $("type-boxes");
  for (const name of DEFAULT_TYPES) {
    const box = Object.assign(document.createElement("input"),
                              {type: "checkbox", value: name,
                               checked: wanted === null || wanted.includes(name)});
    const label = document.createElement("label");
    label.append(box, " " + name);
    boxes.append(label);
  }
  if (wanted !== null)
    $("extra-types").value = wanted.filter((t) => !DEFAULT_TYPES.includes(t)).join(", ");
}

function setAllTypes(checked) {
  for (const box of document.querySelectorAll("#type-boxes input"))
    box.checked = checked;
  updateStatus();
}

function init() {
  const recent = loadRecentSessions();
  fillRecentSessions(recent);
  $("session").value = pageParams.get("session") || recent[0] || "demo";
  buildTypeBoxes(pageParams.has("types") ? splitList(pageParams.get("types")) : null);
  const watch = pageParams.get("watch") || "";
  $("watch-all").checked = watch === "*";
  $("watch-ids").value = watch === "*" ? "" : watch;
  $("from-start").checked = pageParams.get("history") === "all";
  $("controls").addEventListener("submit", (e) => {
    e.preventDefault();
    connect();
  });
  $("controls").addEventListener("change", updateStatus);
  $("disconnect").addEventListener("click", disconnect);
  $("clear").addEventListener("click", () => {
    $("events").tBodies[0].replaceChildren();
    view.count = 0;
    updateStatus();
  });
  $("types-all").addEventListener("click", () => setAllTypes(true));
  $("types-none").addEventListener("click", () => setAllTypes(false));
  // After the load event: a stream opened before it keeps the page "loading" for good.
  if (document.readyState === "complete")
    connect();
  else
    window.addEventListener("load", connect, {once: true});
}

init();
