// Call Vitals's bridge.js as of 7b5cc33, before hooks could hand over: what adopt.rs's update test starts from (a copy, never built into the extension).
// Call Vitals bridge (ISOLATED world): takes the hook's private port, checks its messages and forwards them to sw.js (HookMessage in, FromPage out: shared/src/messages.rs).
(() => {
  const SOURCE = 'call-vitals-hook';
  const HANDSHAKE = 'call-vitals-port';
  const HELLO = 'call-vitals-hello';
  // The limits, each explained in shared/src/limits.rs (extension/tests/js_limits.rs checks these
  // copies against it).
  const MAX_CONNECTIONS_PER_POLL = 64;
  const MAX_REPORTS_PER_CONNECTION = 500;
  const MAX_REPORTS_PER_POLL = 2000;
  const MAX_PC_ID_LEN = 64;
  const PC_ID = /^[\x21-\x7e]+$/; // PC_ID_BYTES
  const MAX_TYPE_LEN = 32;
  const MAX_REPORT_MEMBERS = 40;
  const MAX_MEMBER_NAME_LEN = 64;
  const MAX_NESTED_MEMBERS = 8;
  const MAX_STRING_LEN = 256;
  const MAX_MESSAGES_PER_SECOND = 200;
  const MAX_CONNECTIONS_PER_FRAME = 256;

  const validId = (pc) => typeof pc === 'string' && pc.length > 0 && pc.length <= MAX_PC_ID_LEN && PC_ID.test(pc);

  // A copy of a small object of finite numbers (qualityLimitationDurations), or undefined.
  const numbers = (v) => {
    if (Array.isArray(v)) return undefined;
    const keys = Object.keys(v);
    if (keys.length > MAX_NESTED_MEMBERS) return undefined;
    const out = {};
    for (const k of keys) {
      if (k.length > MAX_MEMBER_NAME_LEN || typeof v[k] !== 'number' || !Number.isFinite(v[k])) return undefined;
      out[k] = v[k];
    }
    return out;
  };

  // A copy holding only short strings, finite numbers, booleans and small objects of numbers:
  // nothing else is trusted.
  const clean = (r) => {
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
  };

  const send = (message) => {
    try {
      chrome.runtime.sendMessage(message).catch(() => {});
    } catch (_) { /* the extension was reloaded: this page's bridge is orphaned */ }
  };

  // Connections of this document that reached the service worker: closed when it goes away.
  const seen = new Set();
  let windowStart = 0;
  let inWindow = 0;

  const onMessage = (event) => {
    try {
      const now = Date.now();
      if (now - windowStart >= 1000) { windowStart = now; inWindow = 0; }
      if (++inWindow > MAX_MESSAGES_PER_SECOND) return;
      const d = event.data;
      if (!d || typeof d !== 'object') return;
      if (d.type === 'stats') {
        // One poll of every connection of the frame: [{pc, reports}], checked item by item.
        if (!Array.isArray(d.items) || d.items.length > MAX_CONNECTIONS_PER_POLL) return;
        const items = [];
        let total = 0;
        for (const item of d.items) {
          if (!item || typeof item !== 'object' || !validId(item.pc) || !Array.isArray(item.reports)) continue;
          total += item.reports.length;
          if (item.reports.length > MAX_REPORTS_PER_CONNECTION || total > MAX_REPORTS_PER_POLL) return;
          if (!seen.has(item.pc) && seen.size >= MAX_CONNECTIONS_PER_FRAME) continue;
          const reports = [];
          for (const r of item.reports) {
            const c = clean(r);
            if (c) reports.push(c);
          }
          seen.add(item.pc);
          items.push({ pc: item.pc, reports });
        }
        if (items.length) send({ source: SOURCE, type: 'stats', items });
      } else if (d.type === 'closed' && validId(d.pc) && seen.has(d.pc)) {
        seen.delete(d.pc);
        send({ source: SOURCE, type: 'closed', pc: d.pc });
      }
    } catch (_) { /* ignore malformed messages */ }
  };

  // The hook hands over one end of a MessageChannel in a synchronous DOM event at
  // document_start, before any page script runs; the first port is kept and no other is ever
  // taken, so the page can neither read nor forge what arrives here. (Nothing listens to
  // window messages: whatever a page posts there never reaches the extension.)
  let port = null;
  const onHandshake = (event) => {
    const offered = event.ports && event.ports[0];
    if (port || !offered) return;
    port = offered;
    document.removeEventListener(HANDSHAKE, onHandshake, true);
    port.onmessage = onMessage;
    document.dispatchEvent(new Event(`${HANDSHAKE}-taken`));
  };
  document.addEventListener(HANDSHAKE, onHandshake, true);
  document.dispatchEvent(new Event(HELLO));

  // Leaving the page ends its connections; leaving the top document ends the tab's call.
  window.addEventListener('pagehide', () => {
    for (const pc of seen) send({ source: SOURCE, type: 'closed', pc });
    seen.clear();
    if (window === window.top) send({ source: SOURCE, type: 'page-gone' });
  }, true);
})();
