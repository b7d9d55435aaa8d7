// The live call board: the active calls from WatchCalls, grouped by call
// tree, with their details, a Hang up button, delivery delay and projection
// lag. Plain DOM, no framework: rows are kept by CallSid and updated in
// place, so focus and selection survive the stream's changes.
import * as api from "./api.js";

// How long a call that turned terminal stays on the board, greyed, before
// it leaves: long enough to see how it ended.
const lingerMs = 30000;
const statsEveryMs = 5000;
const delayWarnSeconds = 5;
const lagWarnSeconds = 5;
// At most this many call trees are drawn, newest first: more is no longer
// readable, and the filters narrow it down. The count covers every call.
const maxTrees = 300;

const statusNames = {
  CALL_STATUS_UNSPECIFIED: "unknown",
  CALL_STATUS_QUEUED: "queued",
  CALL_STATUS_INITIATED: "initiated",
  CALL_STATUS_RINGING: "ringing",
  CALL_STATUS_IN_PROGRESS: "in progress",
  CALL_STATUS_COMPLETED: "completed",
  CALL_STATUS_BUSY: "busy",
  CALL_STATUS_FAILED: "failed",
  CALL_STATUS_NO_ANSWER: "no answer",
  CALL_STATUS_CANCELED: "canceled",
};

const sourceNames = {
  SOURCE_UNSPECIFIED: "unknown source",
  SOURCE_STATUS_CALLBACK: "status callback",
  SOURCE_DIAL_ACTION: "<Dial> action",
  SOURCE_RECORDING_STATUS: "recording callback",
  SOURCE_EVENT_STREAMS: "Event Streams",
  SOURCE_HANGUP_REQUEST: "hang-up request",
  SOURCE_RECONCILIATION: "Twilio REST (reconciler)",
};

const state = {
  cfg: { noticeAfterMs: 7000, endCalls: false, skewMs: 0 },
  calls: new Map(), // CallSid → call, as the stream last reported it
  endedAt: new Map(), // CallSid → local time it was first seen terminal
  pending: new Map(), // CallSid → {position, request} of a hang-up this board made
  busy: new Set(), // CallSids with a hang-up request in flight
  rows: new Map(), // row key → <tr>
  notices: new Map(), // key → {text, bad}
  selected: "",
  tokenWaiters: [],
};

const $ = (id) => document.getElementById(id);

function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") e.className = v;
    else if (k === "text") e.textContent = v;
    else e.setAttribute(k, v);
  }
  for (const c of children) e.append(c);
  return e;
}

// Times: protojson writes RFC 3339 with up to nine fractional digits.
function ms(ts) {
  if (!ts) return 0;
  const t = Date.parse(ts.replace(/(\.\d{3})\d+/, "$1"));
  return Number.isNaN(t) ? 0 : t;
}

// seconds parses a protojson Duration ("1.5s").
function seconds(d) {
  if (!d) return 0;
  const n = parseFloat(d);
  return Number.isNaN(n) ? 0 : n;
}

function serverNow() {
  return Date.now() + state.cfg.skewMs;
}

function clock(t) {
  if (!t) return "–";
  const d = new Date(t);
  const pad = (n, w = 2) => String(n).padStart(w, "0");
  return `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

function clockMs(t) {
  if (!t) return "–";
  return clock(t) + "." + String(new Date(t).getMilliseconds()).padStart(3, "0");
}

function span(secs) {
  if (secs < 0) secs = 0;
  secs = Math.floor(secs);
  const h = Math.floor(secs / 3600);
  const m = Math.floor((secs % 3600) / 60);
  const s = secs % 60;
  const mm = String(m).padStart(h ? 2 : 1, "0");
  return (h ? h + ":" : "") + mm + ":" + String(s).padStart(2, "0");
}

function delayText(secs) {
  if (secs < 10) return secs.toFixed(2) + " s";
  return secs.toFixed(1) + " s";
}

function shortSid(sid) {
  return sid && sid.length > 12 ? sid.slice(0, 2) + "…" + sid.slice(-6) : sid || "";
}

function pos(v) {
  try {
    return BigInt(v || 0);
  } catch {
    return 0n;
  }
}

// ---- notices ----

function notice(key, text, bad = false) {
  if (text) state.notices.set(key, { text, bad });
  else state.notices.delete(key);
  const box = $("notices");
  box.replaceChildren(...[...state.notices.values()].map((n) => el("p", { class: n.bad ? "notice bad" : "notice", text: n.text })));
}

function setConn(s, text) {
  const pill = $("conn");
  pill.dataset.state = s;
  pill.textContent = text;
}

// ---- token ----

function askToken(why) {
  const dialog = $("token-dialog");
  $("token-why").textContent = why;
  $("token-input").value = "";
  if (!dialog.open) dialog.showModal();
  $("token-input").focus();
}

function tokenChanged() {
  return new Promise((resolve) => state.tokenWaiters.push(resolve));
}

function useToken(value) {
  api.setToken(value);
  const waiters = state.tokenWaiters;
  state.tokenWaiters = [];
  for (const w of waiters) w();
  refreshStats();
}

function unauthenticated(e) {
  setConn("token", "token needed");
  askToken(
    api.token()
      ? "The server refused this token (" + e.message + "). Enter another one."
      : "This server asks for a token. It is kept in this tab only (session storage) and sent as a Bearer header.",
  );
}

// ---- the watch stream ----

function sleep(t) {
  return new Promise((r) => setTimeout(r, t));
}

async function watchLoop() {
  let backoff = 500;
  for (;;) {
    const ctrl = new AbortController();
    let fresh = null;
    try {
      await api.watch("/v1/calls:watch?filter.activeOnly=true", ctrl.signal, (m) => {
        if (m.snapshot && m.call) {
          (fresh ??= new Map()).set(m.call.callSid, m.call);
        } else if (m.caughtUp) {
          replaceAll(fresh ?? new Map());
          fresh = null;
          backoff = 500;
          setConn("live", "live");
          notice("watch", "");
        } else if (m.call) {
          applyChange(m.call);
        }
      });
      setConn("reconnecting", "reconnecting…");
    } catch (e) {
      if (e instanceof api.ApiError && e.unauthenticated) {
        unauthenticated(e);
        await tokenChanged();
        continue;
      }
      setConn("reconnecting", "reconnecting…");
      notice("watch", "Live updates interrupted: " + e.message + ". Reconnecting…", true);
    }
    await sleep(backoff);
    backoff = Math.min(backoff * 2, 10000);
  }
}

// replaceAll takes a snapshot: calls it does not hold ended or left while
// the board was not watching, unless they are already shown as ended.
function replaceAll(fresh) {
  for (const [sid, c] of state.calls) {
    if (!fresh.has(sid) && !c.terminal) {
      state.calls.delete(sid);
      state.pending.delete(sid);
    }
  }
  for (const c of fresh.values()) applyChange(c, false);
  render();
}

function applyChange(call, schedule = true) {
  const sid = call.callSid;
  const prev = state.calls.get(sid);
  if (prev && pos(prev.lastPosition) > pos(call.lastPosition)) return; // older than what is shown
  const p = state.pending.get(sid);
  if (p) {
    if (pos(call.lastPosition) >= p.position || call.terminal) state.pending.delete(sid);
    else call = { ...call, ending: true, hangupRequest: p.request };
  }
  state.calls.set(sid, call);
  if (call.terminal && !state.endedAt.has(sid)) state.endedAt.set(sid, Date.now());
  if (schedule) scheduleRender();
  if (state.selected && treeOf(call) === treeOf(state.calls.get(state.selected))) scheduleDetail();
}

// ---- filters and trees ----

function treeOf(c) {
  return c ? c.rootCallSid || c.callSid : "";
}

// rowState: a call the operator asked to end shows as ending from the
// click, not from the server's answer, which waits for Twilio's; a refused
// request puts it back.
function rowState(c) {
  if (c.terminal) return "terminal";
  if (c.ending || state.pending.has(c.callSid) || state.busy.has(c.callSid)) return "ending";
  return "active";
}

function digits(s) {
  return (s || "").replace(/[^0-9]/g, "");
}

function matches(c) {
  const st = $("f-status").value;
  const dir = $("f-direction").value;
  const num = $("f-number").value.trim();
  const rs = rowState(c);
  if (st === "ending" && rs !== "ending") return false;
  if (st === "ended" && rs !== "terminal") return false;
  if (st && st !== "ending" && st !== "ended" && (c.status !== st || c.terminal)) return false;
  if (dir && c.direction !== dir) return false;
  if (num) {
    const d = digits(num);
    const hit = d
      ? digits(c.from).includes(d) || digits(c.to).includes(d)
      : (c.from || "").toLowerCase().includes(num.toLowerCase()) || (c.to || "").toLowerCase().includes(num.toLowerCase());
    if (!hit) return false;
  }
  return true;
}

// trees groups the calls shown: a tree is shown when one of its legs
// matches the filters, with all its legs; newest first.
function trees() {
  const byRoot = new Map();
  for (const c of state.calls.values()) {
    const root = treeOf(c);
    if (!byRoot.has(root)) byRoot.set(root, []);
    byRoot.get(root).push(c);
  }
  const out = [];
  for (const [root, legs] of byRoot) {
    if (!legs.some(matches)) continue;
    legs.sort((a, b) => {
      if (a.callSid === root) return -1;
      if (b.callSid === root) return 1;
      return ms(a.startTime) - ms(b.startTime) || a.callSid.localeCompare(b.callSid);
    });
    const start = Math.min(...legs.map((c) => ms(c.startTime) || Infinity));
    out.push({ root, legs, start });
  }
  out.sort((a, b) => b.start - a.start || a.root.localeCompare(b.root));
  return out;
}

// ---- rendering ----

let renderQueued = false;
function scheduleRender() {
  if (renderQueued) return;
  renderQueued = true;
  setTimeout(() => {
    renderQueued = false;
    render();
  }, 16);
}

function render() {
  const body = $("call-rows");
  const wanted = [];
  let shown = 0;
  const all = trees();
  for (const t of all.slice(0, maxTrees)) {
    if (t.legs[0].callSid !== t.root) {
      wanted.push(treeHead(t.root));
    }
    for (const c of t.legs) {
      wanted.push(callRow(c, t.root));
      if (!c.terminal) shown++;
    }
  }
  // Place the rows in order, moving only those out of place.
  let prev = null;
  for (const tr of wanted) {
    const next = prev ? prev.nextSibling : body.firstChild;
    if (tr !== next) body.insertBefore(tr, next);
    prev = tr;
  }
  const keep = new Set(wanted);
  for (const [key, tr] of state.rows) {
    if (!keep.has(tr)) {
      tr.remove();
      state.rows.delete(key);
    }
  }
  let active = 0;
  for (const c of state.calls.values()) if (!c.terminal) active++;
  $("active-count").textContent = String(active);
  const cut = all.length > maxTrees ? ` (the newest ${maxTrees} of ${all.length} call trees: filter to see others)` : "";
  $("shown").textContent = filtering() || cut ? `${shown} of ${active} active shown${cut}` : "";
  $("empty").hidden = wanted.length > 0;
  $("empty").textContent = state.calls.size && filtering() ? "No call matches the filters." : "No active calls.";
  checkOverdue();
}

function filtering() {
  return $("f-status").value !== "" || $("f-direction").value !== "" || $("f-number").value.trim() !== "";
}

function treeHead(root) {
  const key = "tree:" + root;
  let tr = state.rows.get(key);
  if (!tr) {
    tr = el("tr", { class: "tree-head", "data-tree": root });
    tr.append(el("td", { colspan: "7", text: `Call tree ${root}: its parent leg is not active (ended, or not reported yet)` }));
    state.rows.set(key, tr);
  }
  return tr;
}

function callRow(c, root) {
  const sid = c.callSid;
  let tr = state.rows.get(sid);
  if (!tr) {
    tr = el("tr", { class: "call", tabindex: "0", "data-sid": sid, "aria-selected": "false" });
    for (let i = 0; i < 7; i++) tr.append(el("td"));
    const btn = el("button", { type: "button", class: "hangup", text: "Hang up", "aria-label": "Hang up " + sid });
    btn.addEventListener("click", (ev) => {
      ev.stopPropagation();
      hangUp(sid);
    });
    tr.cells[1].append(btn);
    tr.addEventListener("click", () => openDetail(sid));
    state.rows.set(sid, tr);
  }
  updateRow(tr, c, root);
  return tr;
}

function updateRow(tr, c, root) {
  const rs = rowState(c);
  tr.dataset.state = rs;
  tr.dataset.status = c.status;
  tr.classList.toggle("leg", c.callSid !== root);
  tr.classList.toggle("root", c.callSid === root);
  tr.setAttribute("aria-selected", String(state.selected === c.callSid));
  const [st, act, dir, from, to, dur, sid] = tr.cells;

  const badge = el("span", { class: "status" + (rs === "ending" ? " ending" : ""), "data-status": c.status });
  badge.textContent = rs === "ending" ? "ending" : statusNames[c.status] || c.status;
  const parts = [badge];
  if (overdue(c)) parts.push(el("span", { class: "overdue", text: "no end confirmed" }));
  st.replaceChildren(...parts);
  setText(dir, c.direction || "–");
  setText(from, c.from || "–");
  setText(to, c.to || "–");
  setText(dur, durationOf(c));
  dur.title = "started " + clock(ms(c.startTime));
  setText(sid, shortSid(c.callSid));
  sid.className = "sid";
  sid.title = c.callSid;
  const btn = act.firstChild;
  btn.hidden = c.terminal;
  btn.disabled = rs !== "active" || state.busy.has(c.callSid);
}

function setText(node, text) {
  if (node.textContent !== text) node.textContent = text;
}

function durationOf(c) {
  if (c.terminal) {
    return c.durationSeconds != null ? span(Number(c.durationSeconds)) : "–";
  }
  const from = ms(c.answeredAt) || ms(c.startTime);
  return from ? span((serverNow() - from) / 1000) : "–";
}

// ---- hang-up ----

function overdue(c) {
  if (c.terminal || rowState(c) !== "ending") return false;
  const at = ms(c.hangupRequest?.requestedAt);
  return at > 0 && serverNow() - at > state.cfg.noticeAfterMs;
}

function checkOverdue() {
  const late = [...state.calls.values()].filter(overdue);
  const secs = Math.round(state.cfg.noticeAfterMs / 1000);
  const why = state.cfg.endCalls
    ? "neither Twilio's status callback nor the reconciler has reported the end yet"
    : "Twilio's status callback has not arrived, and this server has no Twilio REST credentials, so it neither ended the call nor can ask Twilio about it";
  notice(
    "overdue",
    late.length ? `No terminal report ${secs} s after the hang-up of ${late.map((c) => c.callSid).join(", ")}: ${why}.` : "",
    true,
  );
}

async function hangUp(sid) {
  const call = state.calls.get(sid);
  if (!call || call.terminal || state.busy.has(sid)) return;
  state.busy.add(sid);
  render();
  try {
    // No requestedBy: the server records the principal of the token.
    const res = await api.post(`/v1/calls/${sid}:hangup`, {
      requestId: api.requestId(),
      endCall: state.cfg.endCalls,
    });
    const p = { position: pos(res.position), request: res.hangupRequest };
    const cur = state.calls.get(sid);
    if (cur && !cur.terminal && pos(cur.lastPosition) < p.position) {
      state.pending.set(sid, p);
      state.calls.set(sid, { ...cur, ending: true, hangupRequest: res.hangupRequest });
    }
    const req = res.hangupRequest || {};
    if (req.outcome === "HANGUP_OUTCOME_FAILED") {
      notice("hangup:" + sid, `Twilio did not end ${sid}: ${req.errorCode || ""} ${req.errorMessage || ""}`.trim(), true);
    } else if (!state.cfg.endCalls) {
      notice(
        "hangup:" + sid,
        `Hang-up of ${sid} recorded. This server has no Twilio REST credentials: end the call in your application; the board shows it ended when Twilio reports it.`,
      );
    } else {
      notice("hangup:" + sid, "");
    }
  } catch (e) {
    if (e instanceof api.ApiError && e.unauthenticated) unauthenticated(e);
    notice("hangup:" + sid, `Hang-up of ${sid} failed: ${e.message}`, true);
  } finally {
    state.busy.delete(sid);
    render();
    if (state.selected) scheduleDetail();
  }
}

// ---- details ----

let detailTimer = 0;
function scheduleDetail() {
  clearTimeout(detailTimer);
  detailTimer = setTimeout(loadDetail, 300);
}

function openDetail(sid) {
  state.selected = sid;
  $("detail").hidden = false;
  $("detail-title").textContent = "Call " + sid;
  for (const tr of document.querySelectorAll("tr.call")) tr.setAttribute("aria-selected", String(tr.dataset.sid === sid));
  loadDetail();
}

function closeDetail() {
  const sid = state.selected;
  state.selected = "";
  $("detail").hidden = true;
  for (const tr of document.querySelectorAll("tr.call")) tr.setAttribute("aria-selected", "false");
  state.rows.get(sid)?.focus();
}

let detailSeq = 0;
async function loadDetail() {
  const sid = state.selected;
  if (!sid) return;
  const seq = ++detailSeq;
  try {
    const tree = await api.get(`/v1/calls/${sid}`);
    const legs = tree.legs?.length ? tree.legs : [tree.call];
    const events = [];
    for (const leg of legs) {
      let token = "";
      for (let page = 0; page < 5; page++) {
        const q = new URLSearchParams({ pageSize: "1000" });
        if (token) q.set("pageToken", token);
        const r = await api.get(`/v1/calls/${leg.callSid}/events?${q}`);
        for (const e of r.events || []) events.push({ leg: leg.callSid, ...e });
        token = r.nextPageToken;
        if (!token) break;
      }
    }
    if (seq !== detailSeq || sid !== state.selected) return;
    events.sort((a, b) => (pos(a.position) < pos(b.position) ? -1 : pos(a.position) > pos(b.position) ? 1 : 0));
    renderDetail(tree.call, legs, events);
  } catch (e) {
    if (seq !== detailSeq) return;
    if (e instanceof api.ApiError && e.unauthenticated) unauthenticated(e);
    const n = $("detail-notice");
    n.hidden = false;
    n.className = "notice bad";
    n.textContent = e.code === 5 ? `No call ${sid} in the ledger.` : `Could not load the call: ${e.message}`;
  }
}

function renderDetail(call, legs, events) {
  const n = $("detail-notice");
  const live = state.calls.get(call.callSid);
  const shown = live && pos(live.lastPosition) >= pos(call.lastPosition) ? live : call;
  if (overdue(shown)) {
    n.hidden = false;
    n.className = "notice bad";
    n.textContent = $("notices").textContent;
  } else if (shown.hangupRequest?.outcome === "HANGUP_OUTCOME_FAILED") {
    n.hidden = false;
    n.className = "notice bad";
    n.textContent = `The hang-up failed at Twilio: ${shown.hangupRequest.errorCode} ${shown.hangupRequest.errorMessage}`;
  } else {
    n.hidden = true;
  }
  $("detail-legs").replaceChildren(
    ...legs.map((l) => {
      const rs = l.terminal ? "terminal" : l.ending ? "ending" : "active";
      const badge = el("span", { class: "status" + (rs === "ending" ? " ending" : ""), "data-status": l.status });
      badge.textContent = rs === "ending" ? "ending" : l.placeholder ? "not reported" : statusNames[l.status] || l.status;
      return el(
        "tr",
        { "data-sid": l.callSid },
        el("td", { class: "sid", text: shortSid(l.callSid), title: l.callSid }),
        el("td", {}, badge),
        el("td", { text: l.direction || "–" }),
        el("td", { text: `${l.from || "?"} → ${l.to || "?"}` }),
        el("td", { text: sourceNames[l.statusSource] || "–" }),
        el("td", { text: String(l.eventCount ?? 0) }),
      );
    }),
  );
  $("detail-timeline").replaceChildren(...events.map(timelineItem));
}

function summary(ev) {
  const e = ev.event || {};
  if (e.callStatusReported) {
    const s = e.callStatusReported;
    let t = s.statusRaw || statusNames[s.status];
    if (s.sequenceNumber != null) t += ` (#${s.sequenceNumber})`;
    if (s.callDurationSeconds != null) t += `, ${s.callDurationSeconds} s`;
    return t;
  }
  if (e.dialCompleted) {
    const d = e.dialCompleted;
    return `Dial ended: ${d.dialCallStatusRaw || "?"}${d.dialCallSid ? " (" + shortSid(d.dialCallSid) + ")" : ""}`;
  }
  if (e.recordingStatusReported) return `Recording ${e.recordingStatusReported.recordingStatus}`;
  if (e.hangupRequested) {
    const h = e.hangupRequested;
    return `Hang-up requested by ${h.requestedBy}${h.endCall ? ", ending the call through Twilio" : ", recorded only"}`;
  }
  if (e.hangupSent) return `Twilio accepted the hang-up (Status=${e.hangupSent.status})`;
  if (e.hangupFailed) return `Hang-up failed: ${e.hangupFailed.errorCode} ${e.hangupFailed.errorMessage}`;
  if (e.callReconciled) {
    const r = e.callReconciled;
    return r.notFound ? "Twilio has no such call" : `Twilio's REST API says ${r.statusRaw}`;
  }
  if (e.requestQuarantined) return `Quarantined: ${e.requestQuarantined.reason}`;
  return ev.type;
}

function rawRequest(req) {
  const lines = [`${req.method} ${req.url}`];
  for (const h of req.headers || []) lines.push(`${h.name}: ${h.value}`);
  let body = "";
  try {
    body = new TextDecoder().decode(Uint8Array.from(atob(req.body || ""), (ch) => ch.charCodeAt(0)));
  } catch {
    body = "(body not readable)";
  }
  if ((req.contentType || "").startsWith("application/x-www-form-urlencoded")) {
    const params = [...new URLSearchParams(body)].map(([k, v]) => `${k}=${v}`);
    body = params.join("\n");
  }
  return lines.join("\n") + "\n\n" + body;
}

function timelineItem(ev) {
  const e = ev.event || {};
  const received = ms(e.receivedAt);
  const reported = ms(e.reportedAt);
  const meta = [sourceNames[e.source] || e.source, ev.type];
  const metaLine = el("div", { class: "meta" });
  metaLine.append(meta.join(" · "));
  if (received && reported) {
    const d = (received - reported) / 1000;
    metaLine.append(
      " · ",
      el("span", { class: "delay", "data-warn": String(d > delayWarnSeconds), text: `delivered ${delayText(d)} after Twilio's time` }),
    );
  }
  const li = el(
    "li",
    { "data-source": e.source || "", "data-type": ev.type },
    el("div", { class: "when", text: `${clockMs(received)} · ${shortSid(ev.leg)} · position ${ev.position}` }),
    el("div", { class: "what", text: summary(ev) }),
    metaLine,
  );
  if (e.request) {
    li.append(el("details", {}, el("summary", { text: "Raw request" }), el("pre", { text: rawRequest(e.request) })));
  }
  return li;
}

// ---- stats ----

let statsBusy = false;
async function refreshStats() {
  if (statsBusy) return;
  statsBusy = true;
  try {
    // GetStats carries the projection's lag too: a token that may read
    // calls (calls:read) needs no admin scope for it.
    const stats = await api.get("/v1/stats?window=300s");
    const d = stats.deliveryDelay || {};
    const samples = Number(d.samples || 0);
    const p50 = seconds(d.p50);
    const p99 = seconds(d.p99);
    $("delay-p50").textContent = samples ? delayText(p50) : "–";
    $("delay-p99").textContent = samples ? delayText(p99) : "–";
    const warn = samples > 0 && p99 > delayWarnSeconds;
    $("delay").dataset.warn = String(warn);
    $("delay-warning").hidden = !warn;
    const lag = seconds(stats.lag);
    $("lag-value").textContent = `${stats.lagEvents ?? 0} events · ${delayText(lag)}`;
    $("lag").dataset.warn = String(lag > lagWarnSeconds);
    notice("stats", "");
  } catch (e) {
    if (e instanceof api.ApiError && e.unauthenticated) {
      unauthenticated(e);
    } else {
      notice("stats", "Statistics unavailable: " + e.message, true);
    }
  } finally {
    statsBusy = false;
  }
}

// ---- the clock ----

function tick() {
  const now = Date.now();
  let changed = false;
  for (const [sid, at] of state.endedAt) {
    if (now - at > lingerMs) {
      state.endedAt.delete(sid);
      if (state.calls.get(sid)?.terminal) {
        state.calls.delete(sid);
        changed = true;
      }
    }
  }
  if (changed) render();
  else {
    for (const [key, tr] of state.rows) {
      const c = state.calls.get(key);
      if (c) updateRow(tr, c, treeOf(c));
    }
    checkOverdue();
  }
}

// ---- keyboard ----

function onKey(ev) {
  const t = ev.target;
  const typing = t instanceof HTMLInputElement || t instanceof HTMLSelectElement || t instanceof HTMLTextAreaElement;
  if (ev.key === "/" && !typing) {
    ev.preventDefault();
    $("f-number").focus();
    return;
  }
  if (ev.key === "Escape" && state.selected && !$("token-dialog").open) {
    closeDetail();
    return;
  }
  if (!(t instanceof HTMLTableRowElement) || !t.classList.contains("call")) return;
  if (ev.key === "Enter" || ev.key === " ") {
    ev.preventDefault();
    openDetail(t.dataset.sid);
  } else if (ev.key === "ArrowDown" || ev.key === "ArrowUp") {
    ev.preventDefault();
    const rows = [...document.querySelectorAll("#call-rows tr.call")];
    const i = rows.indexOf(t) + (ev.key === "ArrowDown" ? 1 : -1);
    rows[Math.max(0, Math.min(rows.length - 1, i))]?.focus();
  }
}

// ---- start ----

async function loadConfig() {
  for (;;) {
    try {
      const t0 = Date.now();
      const resp = await fetch("config.json", { cache: "no-store" });
      const cfg = await resp.json();
      const t1 = Date.now();
      state.cfg = { noticeAfterMs: cfg.noticeAfterMs, endCalls: cfg.endCalls, skewMs: cfg.serverTimeMs - (t0 + t1) / 2 };
      return;
    } catch (e) {
      setConn("reconnecting", "server unreachable");
      await sleep(2000);
    }
  }
}

function start() {
  $("filters").addEventListener("submit", (e) => e.preventDefault());
  for (const id of ["f-status", "f-direction", "f-number"]) $(id).addEventListener("input", render);
  $("detail-close").addEventListener("click", closeDetail);
  document.addEventListener("keydown", onKey);
  $("token-button").addEventListener("click", () =>
    askToken("Enter the API token. It is kept in this tab only (session storage) and sent as a Bearer header."),
  );
  $("token-form").addEventListener("submit", () => {
    useToken($("token-input").value.trim());
    setConn("reconnecting", "connecting…");
  });
  $("token-cancel").addEventListener("click", () => $("token-dialog").close());
  $("token-forget").addEventListener("click", () => {
    api.setToken("");
    $("token-dialog").close();
  });
  loadConfig().then(() => {
    watchLoop();
    refreshStats();
    setInterval(refreshStats, statsEveryMs);
    setInterval(tick, 1000);
  });
}

start();
