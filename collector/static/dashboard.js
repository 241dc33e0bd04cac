// Call Vitals admin dashboard: its script (a file of its own, so the Content-Security-Policy allows only the collector's own scripts).
'use strict';
// Every value shown comes from participants or the API, so it is only ever set with
// textContent, setAttribute of numbers, or option.value; never as markup.
const TOKEN_KEY = 'callVitalsAdminToken';
const POLL_MS = 10000; // meetings and TURN cost: the source of truth for joins, leaves, expiry
const HOUR_MS = 3600000;
const ALERTS_SHOWN = 200;
const ALERT_PAGES_MAX = 100;
const HISTORY_PAGES_MAX = 50;
const MEETING_PAGES_MAX = 100;
const BACKOFF_MS = [1000, 2000, 4000, 8000, 15000, 30000];
// Rows asked per page (the API's defaults, the meetings' largest; tests lower them to see the
// cursors followed).
let alertPageLimit = 1000;
let historyPageLimit = 5000;
let meetingPageLimit = 1000;
const $ = (id) => document.getElementById(id);
const tokenInput = $('token');
const statusEl = $('status');
const liveEl = $('live');
tokenInput.value = localStorage.getItem(TOKEN_KEY) || '';

// Meeting id -> Map(participant id -> participant view as in /api/v1/meetings).
let meetings = new Map();
// Newest first, as shown (after the meeting filter).
let alerts = [];
// {meeting, participant|null} whose history is shown.
let selected = null;
let tokenRejected = false;

function token() {
  return localStorage.getItem(TOKEN_KEY) || '';
}

function el(tag, text, className) {
  const node = document.createElement(tag);
  if (text !== undefined) node.textContent = String(text);
  if (className) node.className = className;
  return node;
}

function fixed(value, places) {
  return typeof value === 'number' ? value.toFixed(places) : '–';
}

const QUALITY = /^(excellent|good|fair|poor)$/;
const SEVERITY = /^(info|warning|critical)$/;

function participantName(p) {
  return p.label ? `${p.label} (${p.participant_id})` : p.participant_id;
}

// The table's columns: the participant, then each field the declaration gives a column, in its
// order (numbers with their decimals, the class coloured, relay with its details), then last seen.
const FIELDS = JSON.parse($('fields').textContent);
const SHOW = {
  number: (f) => [(p) => fixed(p[f.name], f.decimals)],
  list: (f) => [(p) => p[f.name] == null ? '–' : (p[f.name].split(',').filter(Boolean).join(', ') || 'none'),
    (p) => p[f.name] ? 'findings' : ''],
  quality: (f) => [(p) => p[f.name] ?? '–', (p) => QUALITY.test(p[f.name]) ? p[f.name] : ''],
  relay: (f) => [
    (p) => p[f.name] == null ? '–'
      : p[f.name] ? ['yes', ...FIELDS.filter((d) => d.kind === 'detail').map((d) => p[d.name])].filter(Boolean).join(' ') : 'no',
    (p) => p[f.name] ? 'relay' : '',
  ],
};
const COLUMNS = [
  ['Participant', participantName, () => 'text'],
  ...FIELDS.filter((f) => f.column > 0).sort((a, b) => a.column - b.column).map((f) => [f.label, ...SHOW[f.kind](f)]),
  ['Last seen', (p) => `${Math.max(0, Math.round((Date.now() - p.last_seen) / 1000))} s ago`],
];

async function api(path) {
  const response = await fetch(path, { headers: { Authorization: `Bearer ${token()}` } });
  if (response.status === 401) {
    tokenRejected = true;
    throw new Error('wrong admin token');
  }
  let body;
  try {
    body = await response.json();
  } catch (_) {
    throw new Error(`${response.status} ${response.statusText}`);
  }
  if (!response.ok) throw new Error(body.error || response.statusText);
  return body;
}

// ---- Live meetings: kept in place (rows survive updates, so clicks and selection do too).
const sections = new Map(); // meeting id -> {section, title, table, rows: Map(participant id -> tr)}

function selectedIs(meeting, participant) {
  return selected !== null && selected.meeting === meeting && selected.participant === participant;
}

function renderMeetings() {
  const container = $('meetings');
  const ids = [...meetings.keys()].sort();
  for (const [id, s] of sections) {
    if (!meetings.has(id)) {
      s.section.remove();
      sections.delete(id);
    }
  }
  if (ids.length === 0) {
    if (!container.querySelector('p.empty')) container.replaceChildren(el('p', 'No live meetings.', 'empty'));
    return;
  }
  container.querySelector('p.empty')?.remove();
  for (const id of ids) {
    let s = sections.get(id);
    if (!s) {
      const section = el('section');
      const title = el('h3', id, 'meeting-title');
      title.title = 'Show the history of every participant of this meeting';
      title.addEventListener('click', () => select(id, null));
      const table = el('table');
      const head = el('tr');
      for (const [name] of COLUMNS) head.append(el('th', name));
      table.append(head);
      section.append(title, table);
      s = { section, title, table, rows: new Map() };
      sections.set(id, s);
    }
    container.append(s.section); // keeps the sorted order
    s.title.classList.toggle('selected', selectedIs(id, null));
    const participants = meetings.get(id);
    for (const [pid, row] of s.rows) {
      if (!participants.has(pid)) {
        row.remove();
        s.rows.delete(pid);
      }
    }
    for (const pid of [...participants.keys()].sort()) {
      const p = participants.get(pid);
      let row = s.rows.get(pid);
      if (!row) {
        row = el('tr', undefined, 'participant');
        for (let i = 0; i < COLUMNS.length; i++) row.append(el('td'));
        row.addEventListener('click', () => select(id, pid));
        s.rows.set(pid, row);
      }
      COLUMNS.forEach(([, text, className], i) => {
        const cell = row.cells[i];
        const value = String(text(p));
        if (cell.textContent !== value) cell.textContent = value;
        cell.className = className ? className(p) : '';
      });
      row.classList.toggle('selected', selectedIs(id, pid));
      s.table.append(row);
    }
  }
  renderMeetingFilter();
}

function applyMeetings(list) {
  const next = new Map();
  for (const meeting of list) {
    const participants = new Map();
    for (const p of meeting.participants) participants.set(p.participant_id, p);
    next.set(meeting.meeting_id, participants);
  }
  meetings = next;
  renderMeetings();
}

// A pushed metrics message: the participant's whole merged state.
function applyMetrics(message) {
  if (typeof message.meeting_id !== 'string' || typeof message.participant_id !== 'string') return;
  const { type: _type, meeting_id: meeting, ...participant } = message;
  if (!meetings.has(meeting)) meetings.set(meeting, new Map());
  meetings.get(meeting).set(participant.participant_id, participant);
  renderMeetings();
}

// ---- Alerts: the newest of the last 24 hours (following every page), plus those pushed.
const filterEl = $('alert-meeting');

function renderMeetingFilter() {
  const known = new Set([...meetings.keys(), ...alerts.map((a) => a.meeting_id)]);
  const have = new Set([...filterEl.options].map((o) => o.value));
  for (const id of [...known].sort()) {
    if (have.has(id)) continue;
    const option = el('option', id);
    option.value = id;
    filterEl.append(option);
  }
}

function alertKey(a) {
  return JSON.stringify([a.meeting_id, a.participant_id, a.type]);
}

function renderAlerts() {
  const container = $('alerts');
  // An alert is active when its latest record (alerts are newest first) is a raise.
  const latest = new Map();
  for (const a of alerts) if (!latest.has(alertKey(a))) latest.set(alertKey(a), a);
  const active = [...latest.values()].filter((a) => a.state === 'raised').length;
  $('alert-count').textContent = `${active} active, ${alerts.length} shown`;
  if (alerts.length === 0) {
    container.replaceChildren(el('p', 'No alerts.'));
    return;
  }
  const table = el('table');
  table.id = 'alerts-table';
  const head = el('tr');
  for (const title of ['Time', 'Type', 'Severity', 'State', 'Meeting', 'Participant', 'Message']) head.append(el('th', title));
  table.append(head);
  for (const a of alerts) {
    const severity = SEVERITY.test(a.severity) ? a.severity : '';
    const resolved = a.state === 'resolved';
    const stillActive = !resolved && latest.get(alertKey(a)) === a;
    const stateText = resolved ? 'resolved' : stillActive ? 'raised (active)' : 'raised';
    const row = el('tr', undefined, 'alert');
    row.dataset.state = resolved ? 'resolved' : 'raised';
    const cells = [
      [new Date(a.at).toLocaleString()],
      [a.type, resolved ? 'resolved' : severity],
      [a.severity, severity],
      [stateText, resolved ? 'resolved' : severity],
      [a.meeting_id, 'text'],
      [a.participant_id, 'text'],
      [a.message, 'text'],
    ];
    for (const [text, className] of cells) row.append(el('td', text ?? '–', className));
    table.append(row);
  }
  container.replaceChildren(table);
}

let alertsLoad = 0;
let pushCount = 0; // alerts pushed so far; each pushed alert keeps its number
async function loadAlerts() {
  const load = ++alertsLoad;
  const pushedBefore = pushCount;
  const meeting = filterEl.value;
  const base = new URLSearchParams({ since: String(Date.now() - 24 * HOUR_MS), limit: String(alertPageLimit) });
  if (meeting) base.set('meeting', meeting);
  // Pages come oldest first: follow every cursor, keeping only the newest ALERTS_SHOWN.
  let kept = [];
  let cursor = null;
  let pages = 0;
  try {
    do {
      const params = new URLSearchParams(base);
      if (cursor !== null) params.set('cursor', cursor);
      const body = await api(`/api/v1/alerts?${params}`);
      if (load !== alertsLoad) return; // a newer load (filter change, reconnect) took over
      kept = kept.concat(body.alerts).slice(-ALERTS_SHOWN);
      cursor = body.next_cursor;
      pages += 1;
    } while (cursor !== null && cursor !== undefined && pages < ALERT_PAGES_MAX);
  } catch (error) {
    if (load === alertsLoad) $('alerts').replaceChildren(el('p', `Cannot load alerts: ${error.message}`));
    return;
  }
  // Alerts pushed while the pages were read are merged in (each record once).
  const seen = new Set(kept.map((a) => JSON.stringify(a)));
  const pushedMeanwhile = alerts.filter((a) => a.pushed > pushedBefore && (!meeting || a.meeting_id === meeting)
    && !seen.has(JSON.stringify({ ...a, pushed: undefined })));
  alerts = kept.reverse().concat(pushedMeanwhile).sort((x, y) => y.at - x.at).slice(0, ALERTS_SHOWN);
  renderMeetingFilter();
  renderAlerts();
}

function applyAlert(alert) {
  if (!alert || typeof alert.meeting_id !== 'string') return;
  if (filterEl.value && filterEl.value !== alert.meeting_id) {
    renderMeetingFilter();
    return;
  }
  alerts.unshift(alert);
  alerts.sort((x, y) => y.at - x.at);
  alerts.length = Math.min(alerts.length, ALERTS_SHOWN);
  renderMeetingFilter();
  renderAlerts();
}

filterEl.addEventListener('change', loadAlerts);

// ---- The live stream, reconnected with backoff.
let socket = null;
let attempt = 0;
let reconnectTimer;
// Counts connection attempts, so that a ticket fetched for an attempt given up is not used.
let opened = 0;

function setLive(state, text) {
  liveEl.dataset.state = state;
  liveEl.textContent = `Live updates: ${text}`;
}

function connect() {
  clearTimeout(reconnectTimer);
  if (socket) {
    socket.onclose = null;
    socket.close();
    socket = null;
  }
  if (!token() || tokenRejected) {
    setLive('closed', 'off');
    return;
  }
  setLive('connecting', 'connecting…');
  const opening = ++opened;
  // A WebSocket cannot carry an Authorization header, and a URL is logged by proxies: the
  // socket opens with a single-use ticket valid for 30 s, fetched with the token as a header.
  fetch('/api/v1/stream-ticket', { method: 'POST', headers: { Authorization: `Bearer ${token()}` } })
    .then((response) => {
      if (response.status === 401) {
        tokenRejected = true;
        throw new Error('wrong admin token');
      }
      if (!response.ok) throw new Error(`${response.status} ${response.statusText}`);
      return response.json();
    })
    .then(({ ticket }) => {
      if (opening === opened) openStream(ticket);
    })
    .catch(() => {
      if (opening !== opened) return;
      if (tokenRejected) setLive('closed', 'off');
      else retryLater();
    });
}

function retryLater() {
  const delay = BACKOFF_MS[Math.min(attempt, BACKOFF_MS.length - 1)];
  attempt += 1;
  const wait = Math.round(delay * (0.8 + 0.4 * Math.random()));
  setLive('closed', `disconnected, retrying in ${Math.round(wait / 1000)} s`);
  reconnectTimer = setTimeout(connect, wait);
}

function openStream(ticket) {
  const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
  const ws = new WebSocket(`${scheme}//${location.host}/api/v1/stream?ticket=${encodeURIComponent(ticket)}`);
  socket = ws;
  ws.onopen = () => {
    attempt = 0;
    liveEl.dataset.opens = String(Number(liveEl.dataset.opens || 0) + 1);
    setLive('open', 'connected');
    // Whatever happened while the socket was down comes from the API once.
    loadAlerts();
    pollMeetings();
  };
  ws.onmessage = (event) => {
    let message;
    try {
      message = JSON.parse(event.data);
    } catch (_) {
      return;
    }
    if (message.type === 'alert') applyAlert({ ...message.alert, pushed: ++pushCount });
    else if (message.type === 'metrics') applyMetrics(message);
  };
  ws.onclose = () => {
    if (socket !== ws) return;
    socket = null;
    retryLater();
  };
}

// ---- Slow poll: meetings (joins, leaves, expiry) and TURN cost.
function renderTurn(body) {
  const fragment = document.createDocumentFragment();
  fragment.append(el('p', `Total ${(body.total_bytes / 1e6).toFixed(1)} MB relayed, $${body.total_cost.toFixed(2)} at $${body.price_per_gb.toFixed(2)} per GB`));
  if (body.usage.length > 0) {
    const table = el('table');
    const head = el('tr');
    for (const title of ['Meeting', 'Participant', 'TURN server', 'MB', 'Cost']) head.append(el('th', title));
    table.append(head);
    for (const u of body.usage) {
      const row = el('tr');
      row.append(el('td', u.meeting_id, 'text'), el('td', u.participant_id, 'text'), el('td', u.relay_server ?? '–', 'text'),
        el('td', (u.relayed_bytes / 1e6).toFixed(2)), el('td', `$${u.cost.toFixed(4)}`));
      table.append(row);
    }
    fragment.append(table);
  }
  $('turn').replaceChildren(fragment);
}

// Every page of live meetings (up to MEETING_PAGES_MAX of them), following the cursors.
async function loadMeetings() {
  let list = [];
  let cursor = null;
  let pages = 0;
  do {
    const params = new URLSearchParams({ limit: String(meetingPageLimit) });
    if (cursor !== null) params.set('cursor', cursor);
    const body = await api(`/api/v1/meetings?${params}`);
    list = list.concat(body.meetings);
    cursor = body.next_cursor;
    pages += 1;
  } while (cursor !== null && cursor !== undefined && pages < MEETING_PAGES_MAX);
  return list;
}

let pollTimer;
async function pollMeetings() {
  clearTimeout(pollTimer);
  if (!token()) {
    statusEl.textContent = 'Enter the admin token (scripts/run prints it).';
    return;
  }
  try {
    applyMeetings(await loadMeetings());
    const now = Date.now();
    renderTurn(await api(`/api/v1/turn-usage?from=${now - 24 * HOUR_MS}&to=${now}`));
    statusEl.textContent = `Updated ${new Date().toLocaleTimeString()}`;
  } catch (error) {
    statusEl.textContent = tokenRejected ? 'Wrong admin token.' : `Cannot load meetings: ${error.message}`;
    if (tokenRejected) {
      connect(); // stops the stream
      return;
    }
  }
  if (selected) loadHistory();
  pollTimer = setTimeout(pollMeetings, POLL_MS);
}

// "Last seen" ages between updates.
setInterval(() => { if (meetings.size > 0) renderMeetings(); }, 2000);

// ---- History charts.
const SVG = 'http://www.w3.org/2000/svg';
const COLORS = ['#2b5fb3', '#b3261e', '#137a2a', '#b36b00', '#7a3bb3', '#00838f', '#5d4037', '#c2185b'];
const QUALITY_LEVEL = { poor: 1, fair: 2, good: 3, excellent: 4 };
// One history chart per field the declaration gives a chart, in its order.
const CHARTS = FIELDS.filter((f) => f.chart).map((f) => f.kind === 'quality'
  ? [f.chart, `${f.label} (1 poor … 4 excellent)`, (p) => QUALITY_LEVEL[p[f.name]]]
  : [f.chart, f.label, (p) => p[f.name]]);
const W = 340, H = 150, PAD_L = 42, PAD_R = 8, PAD_T = 8, PAD_B = 20;

function svg(tag, attrs) {
  const node = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attrs)) node.setAttribute(name, String(value));
  return node;
}

function shortNumber(v) {
  return Math.abs(v) >= 1000 ? `${(v / 1000).toFixed(1)}k` : String(Math.round(v * 10) / 10);
}

// One line chart: one series per participant, broken where a value is missing.
function chart(id, title, value, series, from, to) {
  const figure = el('figure');
  figure.dataset.chart = id;
  figure.append(el('figcaption', title));
  const node = svg('svg', { class: 'chart', width: W, height: H, viewBox: `0 0 ${W} ${H}`, role: 'img' });
  let max = 0;
  for (const points of series.values()) {
    for (const p of points) {
      const v = value(p);
      if (typeof v === 'number' && Number.isFinite(v)) max = Math.max(max, v);
    }
  }
  if (id === 'quality') max = 4;
  if (max === 0) max = 1;
  const x = (t) => PAD_L + ((t - from) / Math.max(1, to - from)) * (W - PAD_L - PAD_R);
  const y = (v) => H - PAD_B - (v / max) * (H - PAD_T - PAD_B);
  node.append(svg('line', { x1: PAD_L, y1: H - PAD_B, x2: W - PAD_R, y2: H - PAD_B, stroke: '#999' }));
  node.append(svg('line', { x1: PAD_L, y1: PAD_T, x2: PAD_L, y2: H - PAD_B, stroke: '#999' }));
  for (const [v, label] of [[0, '0'], [max, shortNumber(max)]]) {
    const text = svg('text', { x: PAD_L - 4, y: y(v) + 3, 'text-anchor': 'end' });
    text.textContent = label;
    node.append(text);
  }
  for (const [t, anchor] of [[from, 'start'], [to, 'end']]) {
    const text = svg('text', { x: x(t), y: H - 5, 'text-anchor': anchor });
    text.textContent = new Date(t).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
    node.append(text);
  }
  let i = 0;
  for (const points of series.values()) {
    const color = COLORS[i++ % COLORS.length];
    let d = '';
    let pen = false;
    const dots = [];
    for (const p of points) {
      const v = value(p);
      if (typeof v !== 'number' || !Number.isFinite(v)) {
        pen = false;
        continue;
      }
      const px = x(p.t).toFixed(1), py = y(v).toFixed(1);
      d += `${pen ? 'L' : 'M'}${px},${py} `;
      pen = true;
      dots.push([px, py, `${new Date(p.t).toLocaleTimeString()}: ${shortNumber(v)}`]);
    }
    if (d) node.append(svg('path', { d: d.trim(), fill: 'none', stroke: color, 'stroke-width': 1.5, class: 'series' }));
    if (dots.length <= 120) {
      for (const [cx, cy, label] of dots) {
        const dot = svg('circle', { cx, cy, r: 2.5, fill: color, class: 'point' });
        const tip = svg('title', {});
        tip.textContent = label;
        dot.append(tip);
        node.append(dot);
      }
    }
  }
  figure.append(node);
  return figure;
}

function select(meeting, participant) {
  selected = { meeting, participant };
  $('history').hidden = false;
  $('history-title').textContent = participant === null
    ? `History of meeting ${meeting}`
    : `History of ${participantName(meetings.get(meeting)?.get(participant) ?? { participant_id: participant })} in ${meeting}`;
  renderMeetings();
  loadHistory();
}

$('history-close').addEventListener('click', () => {
  selected = null;
  $('history').hidden = true;
  renderMeetings();
});

let historyLoad = 0;
async function loadHistory() {
  if (!selected) return;
  const load = ++historyLoad;
  const { meeting, participant } = selected;
  const to = Date.now();
  const from = to - Number($('range').value);
  const base = new URLSearchParams({ from: String(from), to: String(to), limit: String(historyPageLimit) });
  if (participant !== null) base.set('participant', participant);
  const points = [];
  let cursor = null;
  let pages = 0;
  $('chart-status').textContent = 'Loading…';
  try {
    do {
      const params = new URLSearchParams(base);
      if (cursor !== null) params.set('cursor', cursor);
      const body = await api(`/api/v1/meetings/${encodeURIComponent(meeting)}/history?${params}`);
      if (load !== historyLoad) return;
      points.push(...body.points);
      cursor = body.next_cursor;
      pages += 1;
    } while (cursor !== null && cursor !== undefined && pages < HISTORY_PAGES_MAX);
  } catch (error) {
    if (load === historyLoad) $('chart-status').textContent = `Cannot load history: ${error.message}`;
    return;
  }
  const series = new Map();
  for (const p of points) {
    if (!series.has(p.participant_id)) series.set(p.participant_id, []);
    series.get(p.participant_id).push(p);
  }
  for (const list of series.values()) list.sort((a, b) => a.t - b.t);
  const legend = $('legend');
  legend.replaceChildren();
  let i = 0;
  for (const pid of series.keys()) {
    const item = el('span', `— ${pid}`);
    item.style.color = COLORS[i++ % COLORS.length];
    legend.append(item);
  }
  $('charts').replaceChildren(...CHARTS.map(([id, title, value]) => chart(id, title, value, series, from, to)));
  const more = cursor !== null && cursor !== undefined ? ' (more than shown: narrow the range)' : '';
  $('chart-status').textContent = `${points.length} points, ${new Date(from).toLocaleString()} to ${new Date(to).toLocaleTimeString()}${more}`;
}

$('range').addEventListener('change', loadHistory);

// ---- Export: fetched with the token as a header, then saved as a file (no token in a URL).
async function exportRange(format) {
  const out = $('export-status');
  const to = Date.now();
  const from = to - Number($('range').value);
  out.textContent = `Exporting ${format.toUpperCase()}…`;
  out.removeAttribute('data-rows');
  try {
    const response = await fetch(`/api/v1/export?format=${format}&from=${from}&to=${to}`,
      { headers: { Authorization: `Bearer ${token()}` } });
    if (!response.ok) {
      let message = `${response.status} ${response.statusText}`;
      try { message = (await response.json()).error || message; } catch (_) { /* not JSON */ }
      throw new Error(message);
    }
    // A body cut off by a store failure rejects here, so no partial file is saved.
    const blob = await response.blob();
    let rows;
    if (format === 'csv') {
      rows = (await blob.text()).split('\r\n').filter((line) => line !== '').length - 1;
    } else {
      const body = JSON.parse(await blob.text());
      rows = body.history.length + body.alerts.length;
    }
    const link = document.createElement('a');
    link.href = URL.createObjectURL(blob);
    link.download = `call-vitals-${from}-${to}.${format}`;
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(link.href), 60000);
    out.dataset.rows = String(rows);
    out.textContent = `Saved ${link.download}: ${rows} rows, ${(blob.size / 1024).toFixed(1)} kB`;
  } catch (error) {
    out.textContent = `Export failed: ${error.message}`;
  }
}

$('export-csv').addEventListener('click', () => exportRange('csv'));
$('export-json').addEventListener('click', () => exportRange('json'));

// ---- Token.
$('token-form').addEventListener('submit', (event) => {
  event.preventDefault();
  localStorage.setItem(TOKEN_KEY, tokenInput.value.trim());
  tokenRejected = false;
  attempt = 0;
  pollMeetings();
  loadAlerts();
  connect();
});

// Sign out: the token leaves this browser's storage and the live stream closes.
$('sign-out').addEventListener('click', () => {
  localStorage.removeItem(TOKEN_KEY);
  tokenInput.value = '';
  tokenRejected = false;
  opened += 1;
  connect();
  location.reload();
});

pollMeetings();
if (token()) loadAlerts();
connect();
