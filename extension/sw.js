// Call Vitals service worker: parses and checks each poll's items and routes page messages to the offscreen document, keeps it alive and configured, sets the badge (FromPage and FromOffscreen in, ToOffscreen out: shared/src/messages.rs).
import { watchSites } from './sites.js';
import { adoptOpenTabs, coverageOf } from './adopt.js';

// chrome.storage holds the collector URL, key and install id: only this extension's own pages and
// worker may read or change it, never a content script (a page's isolated world, which a
// compromised renderer controls; bridge.js needs no storage). Session storage is trusted-only by
// default; local and sync are opened to content scripts unless restricted (Chromium 120+ accepts
// the call for them; an older one refuses it, which leaves its default).
for (const area of ['local', 'sync', 'session']) {
  Promise.resolve().then(() => chrome.storage[area].setAccessLevel({ accessLevel: 'TRUSTED_CONTEXTS' })).catch(() => {});
}
watchSites(); // hook.js and bridge.js run on the sites the options page allows
// Every start of this worker runs this; it does its work once per run of the extension
// (install, update, reload, re-enable, browser start), on the tabs already open.
adoptOpenTabs();
const OFFSCREEN_URL = 'offscreen.html';
const SOURCE = 'call-vitals-hook'; // PageSource
const MAX_BUFFERED_SNAPSHOTS = 1000; // shared/src/limits.rs
const SYNC_KEYS = ['collector_url', 'ingest_key', 'label', 'sending', 'meeting_id_salt'];

let ready = false; // the offscreen document said `offscreen-ready` (or already existed)
let creating = null;
let readying = null; // the config is on its way to a document that said `offscreen-ready`
let closing = null; // closeDocument in progress
let lastStatsAt = 0;
let buffered = []; // ToOffscreen messages waiting for the handshake
let bufferedSize = 0; // their snapshots: a poll counts one per connection, any other message one
const sizeOf = (message) => (message.type === 'stats' ? message.items.length : 1);

// Keeps a message for the document; `dropOldest` makes room by dropping the oldest, otherwise a
// full buffer refuses the message.
function buffer(message, dropOldest) {
  if (!dropOldest && bufferedSize + sizeOf(message) > MAX_BUFFERED_SNAPSHOTS) return;
  buffered.push(message);
  bufferedSize += sizeOf(message);
  while (bufferedSize > MAX_BUFFERED_SNAPSHOTS && buffered.length > 1) bufferedSize -= sizeOf(buffered.shift());
}

async function offscreenExists() {
  const contexts = await chrome.runtime.getContexts({ contextTypes: ['OFFSCREEN_DOCUMENT'] });
  return contexts.length > 0;
}

// The settings the offscreen driver uses: build defaults (defaults.json) overlaid by chrome.storage.sync.
async function settings() {
  let defaults = {};
  try { defaults = await (await fetch('defaults.json')).json(); } catch (_) { /* none built in */ }
  const stored = await chrome.storage.sync.get(SYNC_KEYS);
  let { install_id: installId } = await chrome.storage.local.get('install_id');
  if (!installId) {
    installId = crypto.randomUUID();
    await chrome.storage.local.set({ install_id: installId });
  }
  return { ...defaults, ...stored, install_id: installId };
}

const fromOffscreen = (sender) => sender.url === chrome.runtime.getURL(OFFSCREEN_URL);

// A document that went away without us (closed by Chrome or a test, crashed, reloading) has no
// listener: its snapshots wait, and the next one makes or finds the document again.
function deliver(message) {
  chrome.runtime.sendMessage({ ...message, target: 'offscreen' }).catch((e) => {
    if (!String(e && e.message).includes('Receiving end does not exist')) return;
    ready = false;
    if (message.type === 'stats') buffer(message, false);
  });
}

// The document listens: it gets its config first, then what waited (`ready` only once the
// config is sent, so that no snapshot overtakes it).
function onReady() {
  if (!readying) {
    readying = settings().then((s) => {
      deliver({ type: 'config', ...s });
      ready = true;
      const pending = buffered;
      buffered = [];
      bufferedSize = 0;
      pending.forEach(deliver);
    }).catch(() => {}).finally(() => { readying = null; });
  }
  return readying;
}

async function ensureOffscreen() {
  if (ready || creating || readying) return creating || readying;
  creating = (async () => {
    if (closing) await closing;
    if (await offscreenExists()) {
      // The worker restarted while the document lived on: it is listening already.
      await onReady();
      return;
    }
    await chrome.offscreen.createDocument({
      url: OFFSCREEN_URL,
      reasons: ['WORKERS'],
      justification: 'Runs the Call Vitals WebAssembly processor for WebRTC statistics.',
    });
    // `ready` is set when the document's `offscreen-ready` arrives.
  })().catch(() => {}).finally(() => { creating = null; });
  return creating;
}

// Sends a ToOffscreen message, creating the document on demand (`create`) or only if it exists.
async function send(message, create = true) {
  if (ready) return deliver(message);
  if (!create && (closing || (!creating && !(await offscreenExists())))) return undefined;
  buffer(message, true);
  return ensureOffscreen();
}

// Toolbar badge: the call quality of each tab with a call, nothing otherwise. The offscreen
// document answers `get-badge` with the text and colour (Badge), asked at most every
// BADGE_EVERY_MS per tab.
const BADGE_EVERY_MS = 2000;
const badgeAsked = new Map(); // tab id -> time of the last get-badge

function setBadge(tabId, text, color) {
  chrome.action.setBadgeText({ tabId, text }).catch(() => {});
  if (color) chrome.action.setBadgeBackgroundColor({ tabId, color }).catch(() => {});
}

async function refreshBadge(tabId, force = false) {
  const now = Date.now();
  if (!ready || (!force && now - (badgeAsked.get(tabId) || 0) < BADGE_EVERY_MS)) return;
  badgeAsked.set(tabId, now);
  let badge;
  try {
    badge = await chrome.runtime.sendMessage({ type: 'get-badge', tab: tabId, target: 'offscreen' });
  } catch (_) { return; }
  if (badge) setBadge(tabId, badge.text, badge.color);
  else setBadge(tabId, '');
}

function clearBadge(tabId) {
  badgeAsked.delete(tabId);
  setBadge(tabId, '');
}

// The document says it is idle (no call for a minute, nothing left to upload): close it, unless
// a snapshot came meanwhile (it is busy again and says so later). The next call makes it again;
// its upload queue waits in its storage.
const IDLE_MARGIN_MS = 2000;

function closeIdle() {
  if (closing || creating || readying || Date.now() - lastStatsAt < IDLE_MARGIN_MS) return;
  ready = false;
  closing = chrome.offscreen.closeDocument().catch(() => {}).finally(() => { closing = null; });
  [...badgeAsked.keys()].forEach(clearBadge);
}

// The limits on a poll's items, each explained in shared/src/limits.rs (extension/tests/js_limits.rs
// checks these copies against it).
const MAX_CONNECTIONS_PER_POLL = 64;
const MAX_REPORTS_PER_CONNECTION = 500;
const MAX_REPORTS_PER_POLL = 2000;
const MAX_POLL_JSON_LEN = 1_048_576;
const MAX_TYPE_LEN = 32;
const MAX_REPORT_MEMBERS = 40;
const MAX_MEMBER_NAME_LEN = 64;
const MAX_NESTED_MEMBERS = 8;
const MAX_STRING_LEN = 256;

// A copy of a small object of finite numbers (qualityLimitationDurations), or undefined.
function numbers(v) {
  if (Array.isArray(v)) return undefined;
  const keys = Object.keys(v);
  if (keys.length > MAX_NESTED_MEMBERS) return undefined;
  const out = {};
  for (const k of keys) {
    if (k.length > MAX_MEMBER_NAME_LEN || typeof v[k] !== 'number' || !Number.isFinite(v[k])) return undefined;
    out[k] = v[k];
  }
  return out;
}

// A copy of a report holding only short strings, finite numbers, booleans and small objects of
// numbers, or null: nothing else is trusted.
function clean(r) {
  if (!r || typeof r !== 'object' || Array.isArray(r) || typeof r.type !== 'string' || r.type.length > MAX_TYPE_LEN) return null;
  const keys = Object.keys(r);
  if (keys.length > MAX_REPORT_MEMBERS) return null;
  const out = {};
  for (const k of keys) {
    const v = r[k];
    if (k.length > MAX_MEMBER_NAME_LEN) continue;
    if ((typeof v === 'string' && v.length <= MAX_STRING_LEN) || typeof v === 'boolean'
      || (typeof v === 'number' && Number.isFinite(v))) out[k] = v;
    else if (v && typeof v === 'object') {
      const n = numbers(v);
      if (n) out[k] = n;
    }
  }
  return out;
}

// A `stats` message's items (PageMessage::Stats: the connection ids the bridge let pass and the
// hook's JSON string, which the bridge did not read), parsed and checked here, out of the page's
// thread: the items of those connections, each report cleaned; null when the poll breaks a limit.
function pollItems(msg) {
  if (!Array.isArray(msg.pcs) || typeof msg.json !== 'string' || msg.json.length > MAX_POLL_JSON_LEN) return null;
  let parsed;
  try { parsed = JSON.parse(msg.json); } catch (_) { return null; }
  if (!Array.isArray(parsed) || parsed.length > MAX_CONNECTIONS_PER_POLL) return null;
  const allowed = new Set(msg.pcs.filter((pc) => typeof pc === 'string'));
  const items = [];
  let total = 0;
  for (const item of parsed) {
    if (!item || typeof item !== 'object' || !allowed.has(item.pc) || !Array.isArray(item.reports)) continue;
    total += item.reports.length;
    if (item.reports.length > MAX_REPORTS_PER_CONNECTION || total > MAX_REPORTS_PER_POLL) return null;
    const reports = [];
    for (const r of item.reports) {
      const c = clean(r);
      if (c) reports.push(c);
    }
    items.push({ pc: item.pc, reports });
  }
  return items;
}

// Page messages come from bridge.js, which checked their shape; the poll's items are checked
// above, and the offscreen document's wasm checks what it converts again (it trusts no content
// script).
chrome.runtime.onMessage.addListener((msg, sender, sendResponse) => {
  if (!msg || typeof msg !== 'object') return;
  if (msg.type === 'offscreen-ready' && fromOffscreen(sender)) {
    onReady();
    return;
  }
  if (msg.type === 'offscreen-idle' && fromOffscreen(sender)) {
    closeIdle();
    return;
  }
  if (msg.type === 'get-coverage' && String(sender.url).startsWith(chrome.runtime.getURL(''))) {
    // ToWorker::GetCoverage from the popup (an extension page); the answer is a Coverage.
    coverageOf(msg.tab).then(sendResponse);
    return true;
  }
  if (msg.source !== SOURCE || !sender.tab || typeof sender.tab.id !== 'number') return;
  const tab = sender.tab.id;
  if (msg.type === 'stats') {
    const items = pollItems(msg);
    if (!items || !items.length) return;
    // One poll of a frame's connections goes on as one message, stamped with the tab, its URL and
    // the time (an array of items, as the buffer counts them).
    const now = Date.now();
    send({ type: 'stats', tab, url: sender.tab.url || sender.url || '', now_ms: now, items });
    lastStatsAt = now;
    refreshBadge(tab);
  } else if (msg.type === 'closed') {
    send({ type: 'pc-closed', tab, pc: msg.pc }, false);
    refreshBadge(tab, true);
  } else if (msg.type === 'page-gone' && sender.frameId === 0) {
    // The tab's top document went away (navigation or reload): its call session ends.
    send({ type: 'tab-gone', tab }, false);
    clearBadge(tab);
  }
});

chrome.storage.onChanged.addListener((_changes, area) => {
  if (area === 'sync' && ready) settings().then((s) => deliver({ type: 'config', ...s }));
});

chrome.tabs.onRemoved.addListener((tab) => {
  send({ type: 'tab-gone', tab }, false);
  badgeAsked.delete(tab);
});

// Navigation is reported by the leaving document's bridge (`page-gone`, `closed`), not by
// tabs.onUpdated, which also fires for same-document (history.pushState) navigations that do
// not end a call.
