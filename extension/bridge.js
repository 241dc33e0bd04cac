// Call Vitals bridge (ISOLATED world): takes the hook's private port, checks its messages and forwards them to sw.js (message types: shared/src/messages.rs).
(() => {
  const SOURCE = 'call-vitals-hook';
  const HANDSHAKE = 'call-vitals-port';
  const HELLO = 'call-vitals-hello';
  const MAX_REPORTS = 500; // per connection: shared/src/messages.rs MAX_REPORTS
  const MAX_ITEMS = 64; // connections per message (the hook polls at most 64 per document)
  const MAX_BATCH_REPORTS = 2000; // reports per message, all connections together
  const MAX_PC_ID = 64; // shared/src/messages.rs MAX_PC_ID_LEN
  const MAX_KEYS = 40;
  const MAX_STRING = 256;
  const MAX_PER_SECOND = 200; // messages forwarded per second per frame; the rest are dropped
  const PC_ID = /^[\x21-\x7e]+$/; // printable ASCII, as extension/src/convert.rs checks

  const validId = (pc) => typeof pc === 'string' && pc.length > 0 && pc.length <= MAX_PC_ID && PC_ID.test(pc);

  // A copy holding only short strings, finite numbers and booleans: nothing else is trusted.
  const clean = (r) => {
    if (!r || typeof r !== 'object' || Array.isArray(r) || typeof r.type !== 'string' || r.type.length > 32) return null;
    const keys = Object.keys(r);
    if (keys.length > MAX_KEYS) return null;
    const out = {};
    for (const k of keys) {
      const v = r[k];
      if (k.length > 64) continue;
      if ((typeof v === 'string' && v.length <= MAX_STRING) || typeof v === 'boolean'
        || (typeof v === 'number' && Number.isFinite(v))) out[k] = v;
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
      if (++inWindow > MAX_PER_SECOND) return;
      const d = event.data;
      if (!d || typeof d !== 'object') return;
      if (d.kind === 'stats') {
        // One poll of every connection of the frame: [{pc, reports}], checked item by item.
        if (!Array.isArray(d.items) || d.items.length > MAX_ITEMS) return;
        const items = [];
        let total = 0;
        for (const item of d.items) {
          if (!item || typeof item !== 'object' || !validId(item.pc) || !Array.isArray(item.reports)) continue;
          total += item.reports.length;
          if (item.reports.length > MAX_REPORTS || total > MAX_BATCH_REPORTS) return;
          if (!seen.has(item.pc) && seen.size >= 256) continue;
          const reports = [];
          for (const r of item.reports) {
            const c = clean(r);
            if (c) reports.push(c);
          }
          seen.add(item.pc);
          items.push({ pc: item.pc, reports });
        }
        if (items.length) send({ source: SOURCE, kind: 'stats', items });
      } else if (d.kind === 'closed' && validId(d.pc) && seen.has(d.pc)) {
        seen.delete(d.pc);
        send({ source: SOURCE, kind: 'closed', pc: d.pc });
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
    for (const pc of seen) send({ source: SOURCE, kind: 'closed', pc });
    seen.clear();
    if (window === window.top) send({ source: SOURCE, kind: 'page-gone' });
  }, true);
})();
