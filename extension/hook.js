// Call Vitals hook (MAIN world, document_start): wraps RTCPeerConnection invisibly and posts getStats() snapshots to bridge.js.
(() => {
  try {
    const Native = window.RTCPeerConnection;
    if (typeof Native !== 'function' || Native.__callVitals) return;
    // Saved now, before the page can replace them.
    const getStats = Native.prototype.getStats;
    const post = window.postMessage.bind(window);
    const SOURCE = 'call-vitals-hook';
    const POLL_MS = 1000;
    // Only these report types are read by the processor (shared/src/stats.rs); nothing else is posted.
    const TYPES = new Set(['inbound-rtp', 'outbound-rtp', 'remote-inbound-rtp', 'candidate-pair',
      'local-candidate', 'remote-candidate', 'transport']);
    // Network identifiers never leave the page.
    const DROP = ['address', 'ip', 'port', 'relatedAddress', 'relatedPort', 'usernameFragment'];
    const prefix = Math.random().toString(36).slice(2, 10);
    const pcs = new Map(); // id -> {pc, busy}
    let counter = 0;
    let timer = 0;

    const isClosed = (pc) => pc.signalingState === 'closed' || pc.connectionState === 'closed';

    const forget = (id) => {
      pcs.delete(id);
      try { post({ source: SOURCE, kind: 'closed', pc: id }, '*'); } catch (_) { /* never reaches the page */ }
      if (!pcs.size) { clearInterval(timer); timer = 0; }
    };

    const trim = (report) => {
      const reports = [];
      report.forEach((r) => {
        if (!TYPES.has(r.type)) return;
        const copy = Object.assign({}, r);
        for (const k of DROP) delete copy[k];
        reports.push(copy);
      });
      return reports;
    };

    const poll = () => {
      for (const [id, entry] of pcs) {
        try {
          if (isClosed(entry.pc)) { forget(id); continue; }
          if (entry.busy) continue; // polls of one connection never overlap
          entry.busy = true;
          getStats.call(entry.pc)
            .then((report) => post({ source: SOURCE, kind: 'stats', pc: id, reports: trim(report) }, '*'))
            .catch(() => {})
            .finally(() => { entry.busy = false; });
        } catch (_) { entry.busy = false; }
      }
    };

    const track = (pc) => {
      const id = `${prefix}-${++counter}`;
      pcs.set(id, { pc, busy: false });
      if (!timer) timer = setInterval(poll, POLL_MS);
    };

    // A Proxy keeps the native prototype, name, length and statics; only construction is observed.
    const Wrapped = new Proxy(Native, {
      construct(target, args, newTarget) {
        const pc = Reflect.construct(target, args, newTarget);
        try { track(pc); } catch (_) { /* never reaches the page */ }
        return pc;
      },
      get(target, key, receiver) {
        if (key === '__callVitals') return true;
        return Reflect.get(target, key, receiver);
      },
    });
    const ctorDesc = Object.getOwnPropertyDescriptor(Native.prototype, 'constructor');
    if (ctorDesc) Object.defineProperty(Native.prototype, 'constructor', { ...ctorDesc, value: Wrapped });
    const desc = Object.getOwnPropertyDescriptor(window, 'RTCPeerConnection');
    Object.defineProperty(window, 'RTCPeerConnection', { ...desc, value: Wrapped });
    if (window.webkitRTCPeerConnection === Native) {
      const wdesc = Object.getOwnPropertyDescriptor(window, 'webkitRTCPeerConnection');
      Object.defineProperty(window, 'webkitRTCPeerConnection', { ...wdesc, value: Wrapped });
    }
  } catch (_) { /* the hook must never break the page */ }
})();
