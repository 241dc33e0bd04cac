// Call Vitals hook (MAIN world, document_start): wraps RTCPeerConnection invisibly and hands trimmed getStats() snapshots to bridge.js.
(() => {
  'use strict';
  // Everything the hook uses is saved now, before any page script can replace it.
  const { apply, construct, get: reflectGet, defineProperty, getOwnPropertyDescriptor } = Reflect;
  const ProxyCtor = Proxy;
  const WeakRefCtor = typeof WeakRef === 'function' ? WeakRef : null;
  const weakRefDeref = WeakRefCtor && WeakRefCtor.prototype.deref;
  const WeakMapCtor = WeakMap;
  const { get: weakMapGet, set: weakMapSet } = WeakMap.prototype;
  const objectCreate = Object.create;
  const hasOwn = Object.prototype.hasOwnProperty;
  const createNull = () => objectCreate(null);
  const setIntervalSaved = setInterval;
  const clearIntervalSaved = clearInterval;
  const random = Math.random;
  // Every wrapper's `get` trap answers this key with its native (it is never an own property).
  // Another realm's copy of this script (a same-origin frame) uses it to show that realm's
  // wrappers as native too, and install() to not wrap a constructor twice.
  const NATIVE = Symbol.for('call-vitals.native');
  const POLL_MS = 1000;
  const MAX_TRACKED = 64; // connections polled per document; a page making more is not a call
  // Per report type, the members the processor reads (shared/src/stats.rs); nothing else is
  // copied, so no address, port or other network identifier ever leaves the page.
  const FIELDS = createNull();
  const RTP = ['id', 'timestamp', 'ssrc', 'kind', 'mediaType'];
  FIELDS['inbound-rtp'] = [...RTP, 'bytesReceived', 'packetsReceived', 'packetsLost', 'jitter',
    'framesPerSecond', 'frameWidth', 'frameHeight', 'freezeCount'];
  FIELDS['outbound-rtp'] = [...RTP, 'bytesSent', 'packetsSent', 'framesPerSecond', 'frameWidth',
    'frameHeight', 'qualityLimitationReason'];
  FIELDS['remote-inbound-rtp'] = ['id', 'kind', 'roundTripTime', 'fractionLost'];
  FIELDS['candidate-pair'] = ['id', 'transportId', 'localCandidateId', 'remoteCandidateId', 'state',
    'nominated', 'selected', 'currentRoundTripTime', 'totalRoundTripTime', 'responsesReceived'];
  FIELDS['local-candidate'] = ['id', 'candidateType', 'relayProtocol', 'url'];
  FIELDS['remote-candidate'] = ['id', 'candidateType'];
  FIELDS.transport = ['id', 'selectedCandidatePairId'];

  // wrapper -> native, for the patched Function.prototype.toString of every realm.
  const natives = new WeakMapCtor();
  const prefix = apply(Number.prototype.toString, Math.floor(random() * 2 ** 48), [36]);
  let counter = 0;
  let timer = 0;
  // Tracked connections: {id, ref (WeakRef), kit (the realm's saved natives), busy}. An array
  // walked by index, so page changes to Map or Array methods cannot see or break it.
  let tracked = [];

  // The bridge's port, handed over by a synchronous DOM event at document_start (before any
  // page script exists), so the page never sees these messages and cannot post into them.
  let port = null;
  let portPost = null;
  const HANDSHAKE = 'call-vitals-port';
  const HELLO = 'call-vitals-hello';

  const send = (message) => {
    if (port) {
      try { apply(portPost, port, [message]); } catch (_) { /* the bridge went away */ }
    }
  };

  const deref = (entry) => (WeakRefCtor ? apply(weakRefDeref, entry.ref, []) : entry.ref);

  const forget = (i) => {
    const entry = tracked[i];
    const rest = [];
    for (let j = 0; j < tracked.length; j++) if (j !== i) rest[rest.length] = tracked[j];
    tracked = rest;
    send({ kind: 'closed', pc: entry.id });
    if (!tracked.length && timer) { clearIntervalSaved(timer); timer = 0; }
  };

  const trim = (kit, report) => {
    const out = [];
    apply(kit.forEach, report, [(r) => {
      // Own members only: a page's getters on Object.prototype never run here.
      const fields = r && apply(hasOwn, r, ['type']) && FIELDS[r.type];
      if (!fields) return;
      const copy = createNull(); // no prototype: a page's setters on Object.prototype never run
      copy.type = r.type;
      for (let i = 0; i < fields.length; i++) {
        if (apply(hasOwn, r, [fields[i]])) copy[fields[i]] = r[fields[i]];
      }
      out[out.length] = copy;
    }]);
    return out;
  };

  const poll = () => {
    for (let i = tracked.length - 1; i >= 0; i--) {
      const entry = tracked[i];
      try {
        const pc = deref(entry);
        // Dropped by the page (collected) or closed: stop polling and forget it.
        if (!pc || apply(entry.kit.signalingState, pc, []) === 'closed') { forget(i); continue; }
        if (entry.busy) continue; // polls of one connection never overlap
        entry.busy = true;
        const done = () => { entry.busy = false; };
        const promise = apply(entry.kit.getStats, pc, []);
        apply(entry.kit.then, promise, [(report) => {
          done();
          try {
            send({ kind: 'stats', pc: entry.id, reports: trim(entry.kit, report) });
          } catch (_) { /* never an unhandled rejection the page could see */ }
        }, done]);
      } catch (_) { entry.busy = false; }
    }
  };

  const track = (pc, kit) => {
    if (tracked.length >= MAX_TRACKED) return;
    counter += 1;
    tracked[tracked.length] = {
      id: `${prefix}-${counter}`,
      ref: WeakRefCtor ? new WeakRefCtor(pc) : pc,
      kit,
      busy: false,
    };
    if (!timer) timer = setIntervalSaved(poll, POLL_MS);
  };

  // Replaces `obj[key]` with a Proxy of it that keeps its descriptor and maps back to it in
  // Function.prototype.toString.
  const replace = (obj, key, handler, accessor) => {
    const desc = getOwnPropertyDescriptor(obj, key);
    const original = desc && (accessor ? desc.get : desc.value);
    if (typeof original !== 'function') return null;
    if (!handler.get) handler.get = (target, k, receiver) => (k === NATIVE ? original : reflectGet(target, k, receiver));
    const wrapper = new ProxyCtor(original, handler);
    apply(weakMapSet, natives, [wrapper, original]);
    const next = createNull();
    next.configurable = desc.configurable;
    next.enumerable = desc.enumerable;
    if (accessor) { next.get = wrapper; next.set = desc.set; } else { next.value = wrapper; next.writable = desc.writable; }
    defineProperty(obj, key, next);
    return wrapper;
  };

  // Patches one window (this one or a same-origin child) in its own realm.
  const install = (win) => {
    const Native = win.RTCPeerConnection;
    if (typeof Native !== 'function' || reflectGet(Native, NATIVE) !== undefined) return false;
    const kit = {
      getStats: Native.prototype.getStats,
      signalingState: getOwnPropertyDescriptor(Native.prototype, 'signalingState').get,
      forEach: win.RTCStatsReport.prototype.forEach,
      then: win.Promise.prototype.then,
    };
    const Wrapped = replace(win, 'RTCPeerConnection', {
      // `new RTCPeerConnection()` and `class X extends RTCPeerConnection` (newTarget is X) both
      // come here; the instance is the native one, with the page's newTarget's prototype.
      construct(target, args, newTarget) {
        const pc = construct(target, args, newTarget === Wrapped ? target : newTarget);
        try { track(pc, kit); } catch (_) { /* never reaches the page */ }
        return pc;
      },
      get(target, key, receiver) {
        if (key === NATIVE) return Native;
        return reflectGet(target, key, receiver === Wrapped ? target : receiver);
      },
    }, false);
    if (!Wrapped) return false;
    // The prototype stays the native one; only its `constructor` points at the wrapper, as the
    // global does.
    const ctor = getOwnPropertyDescriptor(Native.prototype, 'constructor');
    if (ctor && ctor.value === Native) {
      defineProperty(Native.prototype, 'constructor', { value: Wrapped, writable: ctor.writable,
        enumerable: ctor.enumerable, configurable: ctor.configurable, __proto__: null });
    }
    const legacy = getOwnPropertyDescriptor(win, 'webkitRTCPeerConnection');
    if (legacy && legacy.value === Native) {
      defineProperty(win, 'webkitRTCPeerConnection', { value: Wrapped, writable: legacy.writable,
        enumerable: legacy.enumerable, configurable: legacy.configurable, __proto__: null });
    }
    // Function.prototype.toString shows a wrapper as its native (and itself as native).
    const fp = win.Function.prototype;
    replace(fp, 'toString', {
      apply(target, self, args) {
        let native = apply(weakMapGet, natives, [self]);
        if (native === undefined && typeof self === 'function') {
          try {
            const other = reflectGet(self, NATIVE); // a wrapper of another realm's hook
            if (typeof other === 'function') native = other;
          } catch (_) { /* not one of ours */ }
        }
        return apply(target, native === undefined ? self : native, args);
      },
    }, false);
    // A same-origin child frame (about:blank made by script) can hand its window to the page
    // before that frame's own content scripts have run: patch it from here the moment the page
    // reaches it (install() does nothing if the frame's own hook came first).
    const frameGetter = (toWindow) => ({
      apply(target, self, args) {
        const result = apply(target, self, args);
        if (result) adopt(result, toWindow);
        return result;
      },
    });
    for (const name of ['HTMLIFrameElement', 'HTMLFrameElement']) {
      const C = win[name];
      if (typeof C !== 'function') continue;
      replace(C.prototype, 'contentWindow', frameGetter((w) => w), true);
      replace(C.prototype, 'contentDocument', frameGetter((d) => d.defaultView), true);
    }
    return true;
  };

  // A child window the page reached: patched unless it already is (install() checks NATIVE).
  const adopt = (value, toWindow) => {
    try {
      const win = toWindow(value);
      if (win && win !== window) install(win); // throws (caught) for a cross-origin window
    } catch (_) { /* not ours to patch */ }
  };

  try {
    if (!install(window)) return; // no WebRTC here, or this frame was already patched by its parent
    const { port1, port2 } = new MessageChannel();
    port = port1;
    portPost = MessagePort.prototype.postMessage;
    // Offer the port now (the bridge may already listen), and again when the bridge says hello.
    const offer = () => document.dispatchEvent(new MessageEvent(HANDSHAKE, { ports: [port2] }));
    const onHello = () => {
      document.removeEventListener(HELLO, onHello, true);
      offer();
    };
    document.addEventListener(HELLO, onHello, true);
    document.addEventListener(HANDSHAKE + '-taken', () => document.removeEventListener(HELLO, onHello, true), { capture: true, once: true });
    offer();
  } catch (_) { /* the hook must never break the page */ }
})();
