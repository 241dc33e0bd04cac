// Call Vitals bridge (ISOLATED world): checks the hook's window messages and forwards them to sw.js (message types: shared/src/messages.rs).
(() => {
  const SOURCE = 'call-vitals-hook';
  const MAX_REPORTS = 500; // shared/src/messages.rs MAX_REPORTS
  const MAX_PC_ID = 64; // shared/src/messages.rs MAX_PC_ID_LEN
  const MAX_KEYS = 80;
  const MAX_STRING = 512;

  const validId = (pc) => typeof pc === 'string' && pc.length > 0 && pc.length <= MAX_PC_ID;

  // A copy holding only short strings, finite numbers and booleans: the page is untrusted.
  const clean = (r) => {
    if (!r || typeof r !== 'object' || Array.isArray(r) || typeof r.type !== 'string') return null;
    const keys = Object.keys(r);
    if (keys.length > MAX_KEYS) return null;
    const out = {};
    for (const k of keys) {
      const v = r[k];
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

  window.addEventListener('message', (event) => {
    try {
      if (event.source !== window) return;
      const d = event.data;
      if (!d || typeof d !== 'object' || d.source !== SOURCE || !validId(d.pc)) return;
      if (d.kind === 'stats') {
        if (!Array.isArray(d.reports) || d.reports.length > MAX_REPORTS) return;
        const reports = [];
        for (const r of d.reports) {
          const c = clean(r);
          if (c) reports.push(c);
        }
        send({ source: SOURCE, kind: 'stats', pc: d.pc, reports });
      } else if (d.kind === 'closed') {
        send({ source: SOURCE, kind: 'closed', pc: d.pc });
      }
    } catch (_) { /* ignore malformed messages */ }
  });
})();
