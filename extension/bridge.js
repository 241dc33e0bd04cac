// Call Vitals bridge (ISOLATED world, document_start or injected by adopt.js): takes the hook's private port, checks its messages' shape and forwards them to sw.js (HookMessage in, FromPage out: shared/src/messages.rs).
// Its value (the script's last expression) tells adopt.js whether it started here ('started') or a
// live bridge of this run of the extension already was ('present').
(() => {
  const SOURCE = 'call-vitals-hook';
  const HANDSHAKE = 'call-vitals-port';
  const HELLO = 'call-vitals-hello';
  const LATE = 'call-vitals-late';
  // This world's own globals (the page never sees them): the bridge of this document, and the
  // mark adopt.js sets just before injecting into a page that is already running.
  const BRIDGE = Symbol.for('call-vitals.bridge');
  const LATE_MARK = Symbol.for('call-vitals.late');
  const late = globalThis[LATE_MARK] === true;
  delete globalThis[LATE_MARK];
  // A bridge of an earlier run of the extension is orphaned: its chrome.runtime has no id.
  const alive = () => { try { return typeof chrome.runtime.id === 'string'; } catch (_) { return false; } };
  try {
    const previous = globalThis[BRIDGE];
    if (previous && previous.alive()) return 'present';
  } catch (_) { /* an unreadable mark: start anyway */ }
  // adopt.js's probe (coverage) reads this: live, and whether it came at the page's start.
  globalThis[BRIDGE] = { alive, late };
  // The limits, each explained in shared/src/limits.rs (extension/tests/js_limits.rs checks these
  // copies against it).
  const MAX_CONNECTIONS_PER_POLL = 64;
  const MAX_PC_ID_LEN = 64;
  const PC_ID = /^[\x21-\x7e]+$/; // PC_ID_BYTES
  const MAX_MESSAGES_PER_SECOND = 200;
  const MAX_CONNECTIONS_PER_FRAME = 256;
  const MAX_POLL_JSON_LEN = 1_048_576;

  const validId = (pc) => typeof pc === 'string' && pc.length > 0 && pc.length <= MAX_PC_ID_LEN && PC_ID.test(pc);

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
        // One poll of every connection of the frame: their ids, and their items as one JSON
        // string, passed on unread (sw.js parses and checks it, out of the page's thread).
        if (!Array.isArray(d.pcs) || d.pcs.length === 0 || d.pcs.length > MAX_CONNECTIONS_PER_POLL) return;
        if (typeof d.json !== 'string' || d.json.length > MAX_POLL_JSON_LEN) return;
        // The connections whose items may pass: a frame's first MAX_CONNECTIONS_PER_FRAME.
        const pcs = [];
        for (const pc of d.pcs) {
          if (!validId(pc)) return;
          if (!seen.has(pc) && seen.size >= MAX_CONNECTIONS_PER_FRAME) continue;
          seen.add(pc);
          pcs.push(pc);
        }
        if (pcs.length) send({ source: SOURCE, type: 'stats', pcs, json: d.json });
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
    // A late bridge tells the hook (during its synchronous offer) to adopt what already runs.
    if (late) document.dispatchEvent(new Event(LATE));
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
  return 'started';
})();
