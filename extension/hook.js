// Call Vitals hook (MAIN world, document_start, or injected into an open page by adopt.js): wraps RTCPeerConnection invisibly and hands trimmed getStats() snapshots to bridge.js as one JSON string per poll (messages: HookMessage in shared/src/messages.rs).
(() => {
  'use strict';
  // Everything the hook uses is saved now, before any page script can replace it.
  const { apply, construct, get: reflectGet, defineProperty, getOwnPropertyDescriptor, setPrototypeOf } = Reflect;
  const ProxyCtor = Proxy;
  const WeakRefCtor = typeof WeakRef === 'function' ? WeakRef : null;
  const weakRefDeref = WeakRefCtor && WeakRefCtor.prototype.deref;
  const WeakMapCtor = WeakMap;
  const { get: weakMapGet, set: weakMapSet } = WeakMap.prototype;
  const objectCreate = Object.create;
  const hasOwn = Object.prototype.hasOwnProperty;
  const createNull = () => objectCreate(null);
  // An array with no prototype: `a[a.length] = x` then always makes an own element, even when
  // the page put an index setter on Array.prototype (which would otherwise receive x).
  const list = () => {
    const a = [];
    setPrototypeOf(a, null);
    return a;
  };
  const setIntervalSaved = setInterval;
  const clearIntervalSaved = clearInterval;
  const random = Math.random;
  const stringify = JSON.stringify;
  // Every wrapper's `get` trap answers this key with its native (it is never an own property).
  // Another realm's copy of this script (a same-origin frame) uses it to show that realm's
  // wrappers as native too, and install() to not wrap a constructor twice.
  const NATIVE = Symbol.for('call-vitals.native');
  // The constructor wrapper's `get` trap also answers this key, with the hook's handover: a
  // hook injected later (the extension was updated, reloaded or re-enabled while the page ran)
  // takes over this one's connections through it, and this one stops polling for good.
  const HANDOVER = Symbol.for('call-vitals.handover');
  const POLL_MS = 1000;
  const MAX_CONNECTIONS_PER_POLL = 64; // polled per document (shared/src/limits.rs); a page making more is not a call
  // Per report type, the members the processor reads (shared/src/stats.rs); nothing else is
  // copied, so no address, port or other network identifier ever leaves the page.
  const FIELDS = createNull();
  const RTP = ['id', 'timestamp', 'ssrc', 'kind', 'mediaType'];
  FIELDS['inbound-rtp'] = [...RTP, 'bytesReceived', 'packetsReceived', 'packetsLost', 'jitter',
    'framesPerSecond', 'frameWidth', 'frameHeight', 'freezeCount', 'totalFreezesDuration',
    'framesReceived', 'framesDecoded', 'framesDropped', 'totalDecodeTime', 'jitterBufferDelay',
    'jitterBufferEmittedCount', 'nackCount', 'pliCount', 'firCount', 'totalSamplesReceived',
    'concealedSamples', 'silentConcealedSamples', 'insertedSamplesForDeceleration',
    'removedSamplesForAcceleration'];
  FIELDS['outbound-rtp'] = [...RTP, 'bytesSent', 'packetsSent', 'framesPerSecond', 'frameWidth',
    'frameHeight', 'qualityLimitationReason', 'qualityLimitationDurations', 'rid', 'active',
    'targetBitrate', 'retransmittedBytesSent', 'framesEncoded', 'totalEncodeTime', 'nackCount',
    'pliCount', 'firCount', 'mediaSourceId'];
  FIELDS['remote-inbound-rtp'] = ['id', 'kind', 'roundTripTime', 'fractionLost'];
  FIELDS['media-source'] = ['id', 'kind', 'width', 'height', 'framesPerSecond', 'audioLevel',
    'totalAudioEnergy', 'totalSamplesDuration'];
  FIELDS['candidate-pair'] = ['id', 'transportId', 'localCandidateId', 'remoteCandidateId', 'state',
    'nominated', 'selected', 'currentRoundTripTime', 'totalRoundTripTime', 'responsesReceived',
    'availableOutgoingBitrate', 'availableIncomingBitrate'];
  FIELDS['local-candidate'] = ['id', 'candidateType', 'relayProtocol', 'url'];
  FIELDS['remote-candidate'] = ['id', 'candidateType'];
  FIELDS.transport = ['id', 'selectedCandidatePairId', 'selectedCandidatePairChanges',
    'iceLocalUsernameFragment', 'iceState'];
  // Not a getStats report: the connection's own state at poll time, read by the hook and sent
  // as one more report (shared/src/stats.rs PeerConnection).
  const PEER_CONNECTION = 'peer-connection';

  // wrapper -> native, for the patched Function.prototype.toString of every realm.
  const natives = new WeakMapCtor();
  const prefix = apply(Number.prototype.toString, Math.floor(random() * 2 ** 48), [36]);
  let counter = 0;
  let timer = 0;
  // Tracked connections: {id, ref (WeakRef), kit (the realm's saved natives), busy}. An array
  // walked by index, so page changes to Map or Array methods cannot see or break it.
  let tracked = list();
  // Every connection this hook has tracked or handed on (so that one is never tracked twice).
  const known = new WeakMapCtor();
  // The newer hook this one handed its connections to: {track, handover}, or null.
  let successor = null;

  // The bridge's port, handed over by a synchronous DOM event at document_start (before any
  // page script exists), so the page never sees these messages and cannot post into them.
  let port = null;
  let portPost = null;
  const HANDSHAKE = 'call-vitals-port';
  const HELLO = 'call-vitals-hello';
  const LATE = 'call-vitals-late';

  const send = (message) => {
    if (port) {
      try { apply(portPost, port, [message]); } catch (_) { /* the bridge went away */ }
    }
  };

  const deref = (entry) => (WeakRefCtor ? apply(weakRefDeref, entry.ref, []) : entry.ref);

  const forget = (i) => {
    const entry = tracked[i];
    const rest = list();
    for (let j = 0; j < tracked.length; j++) if (j !== i) rest[rest.length] = tracked[j];
    tracked = rest;
    send({ type: 'closed', pc: entry.id });
    if (!tracked.length && timer) { clearIntervalSaved(timer); timer = 0; }
  };

  // One stats object -> a prototype-less copy of the members the processor reads, or null.
  const copyOf = (r) => {
    // Own members only: a page's getters on Object.prototype never run here.
    const fields = r && apply(hasOwn, r, ['type']) && FIELDS[r.type];
    if (!fields) return null;
    const copy = createNull(); // no prototype: a page's setters on Object.prototype never run
    copy.type = r.type;
    for (let i = 0; i < fields.length; i++) {
      if (!apply(hasOwn, r, [fields[i]])) continue;
      const v = r[fields[i]];
      if (v !== null && typeof v === 'object') {
        // qualityLimitationDurations: a record of numbers, copied without its prototype (whose
        // toJSON a page could set) for JSON.stringify below.
        const inner = createNull();
        for (const k in v) if (apply(hasOwn, v, [k])) inner[k] = v[k];
        copy[fields[i]] = inner;
      } else copy[fields[i]] = v;
    }
    return copy;
  };

  // Chromium builds a JavaScript object for every stats object a script reaches (about 20 per
  // connection, most of them codecs, certificates and other types the processor never reads), and
  // that is most of what the hook costs the page. So only some polls walk the whole report (a
  // full scan); the others fetch by id just what the processor reads: the streams and transports
  // the last full scan found, each transport's selected candidate pair, and that pair's two
  // candidates (whose members never change, so they are kept from the scan that met them).
  const FULL_SCAN_EVERY = 10; // polls; also whenever the report's size changes or an id is gone
  const TARGETED = createNull();
  TARGETED['inbound-rtp'] = true;
  TARGETED['outbound-rtp'] = true;
  TARGETED['remote-inbound-rtp'] = true;
  TARGETED['media-source'] = true;
  TARGETED.transport = true;

  const fullScan = (entry, report, size) => {
    const out = list();
    const ids = list();
    const candidates = createNull();
    let targetable = true;
    apply(entry.kit.forEach, report, [(r) => {
      const copy = copyOf(r);
      if (!copy) return;
      out[out.length] = copy;
      if (TARGETED[copy.type] === true) ids[ids.length] = copy.id;
      if (copy.type === 'local-candidate' || copy.type === 'remote-candidate') candidates[copy.id] = copy;
      // A transport without a selected pair (none yet, or a browser that does not say) leaves
      // the choice of pair to the processor, which then needs every pair: full scans only.
      if (copy.type === 'transport' && typeof copy.selectedCandidatePairId !== 'string') targetable = false;
    }]);
    entry.plan = targetable ? { size, ids, candidates, age: 0 } : null;
    return out;
  };

  // The targeted fetch, or null when the report no longer matches the plan (then: a full scan).
  const targeted = (entry, report) => {
    const { kit, plan } = entry;
    const out = list();
    for (let i = 0; i < plan.ids.length; i++) {
      const copy = copyOf(apply(kit.get, report, [plan.ids[i]]));
      if (!copy) return null;
      out[out.length] = copy;
      if (copy.type !== 'transport') continue;
      const pair = copyOf(apply(kit.get, report, [copy.selectedCandidatePairId]));
      if (!pair || pair.type !== 'candidate-pair') return null;
      out[out.length] = pair;
      for (let end = 0; end < 2; end++) {
        const id = end === 0 ? pair.localCandidateId : pair.remoteCandidateId;
        let candidate = typeof id === 'string' ? plan.candidates[id] : undefined;
        if (candidate === undefined) {
          candidate = copyOf(apply(kit.get, report, [id]));
          if (!candidate) return null;
          plan.candidates[id] = candidate;
        }
        out[out.length] = candidate;
      }
    }
    return out;
  };

  const trim = (entry, report) => {
    const size = apply(entry.kit.size, report, []);
    const plan = entry.plan;
    if (plan && plan.size === size && (plan.age += 1) < FULL_SCAN_EVERY) {
      const out = targeted(entry, report);
      if (out) return out;
    }
    return fullScan(entry, report, size);
  };

  // One message per poll for all connections (the bridge's runtime message is a large part of
  // the cost): a round is sent when its last getStats() settles, or at the next poll if one is
  // still pending (a late report then goes on its own).
  let round = null;
  // The items go as one JSON string: a string crosses to the bridge and on to the extension
  // with one copy, where a structured clone and the bridge's checks walked every member.
  const sendItems = (items) => {
    const pcs = list();
    for (let i = 0; i < items.length; i++) pcs[pcs.length] = items[i].pc;
    let json;
    try { json = stringify(items); } catch (_) { return; } // never an error the page could see
    send({ type: 'stats', pcs, json });
  };
  const flush = (r) => {
    if (!r.sent && r.items.length) sendItems(r.items);
    r.sent = true;
  };
  const settle = (r, item) => {
    if (item) {
      if (r.sent) { const one = list(); one[0] = item; sendItems(one); }
      else r.items[r.items.length] = item;
    }
    if ((r.waiting -= 1) === 0) flush(r);
  };

  // The connection's states when the poll starts, as a report of type PEER_CONNECTION.
  const stateOf = (kit, pc) => {
    const state = createNull();
    state.type = PEER_CONNECTION;
    if (kit.connectionState) state.connectionState = apply(kit.connectionState, pc, []);
    if (kit.iceConnectionState) state.iceConnectionState = apply(kit.iceConnectionState, pc, []);
    return state;
  };

  const poll = () => {
    if (round) flush(round);
    const r = { items: list(), waiting: 1, sent: false };
    round = r;
    for (let i = tracked.length - 1; i >= 0; i--) {
      const entry = tracked[i];
      try {
        const pc = deref(entry);
        // Dropped by the page (collected) or closed: stop polling and forget it.
        if (!pc || apply(entry.kit.signalingState, pc, []) === 'closed') { forget(i); continue; }
        if (entry.busy) continue; // polls of one connection never overlap
        entry.busy = true;
        r.waiting += 1;
        const done = (item) => {
          entry.busy = false;
          settle(r, item);
        };
        const state = stateOf(entry.kit, pc);
        const promise = apply(entry.kit.getStats, pc, []);
        apply(entry.kit.then, promise, [(report) => {
          let item = null;
          try {
            const reports = trim(entry, report);
            reports[reports.length] = state;
            item = createNull();
            item.pc = entry.id;
            item.reports = reports;
          } catch (_) { /* never an unhandled rejection the page could see */ }
          try { done(item); } catch (_) { /* the same */ }
        }, () => { try { done(null); } catch (_) { /* the same */ } }]);
      } catch (_) {
        if (entry.busy) { entry.busy = false; r.waiting -= 1; }
      }
    }
    settle(r, null); // the round's own count: sent now if nothing is pending
  };

  // Whether a tracked connection never got going (collected, closed, or never given a remote
  // description): a page cannot fill the slots with dummy connections and leave none for its
  // call. Runs only when the slots are full and a connection is made, never per poll.
  const idle = (entry) => {
    const pc = deref(entry);
    if (!pc || apply(entry.kit.signalingState, pc, []) === 'closed') return true;
    return entry.kit.remoteDescription !== null && apply(entry.kit.remoteDescription, pc, []) === null;
  };
  // Forgets the oldest idle tracked connection; false when every one is in use.
  const evictIdle = () => {
    for (let i = 0; i < tracked.length; i++) {
      let gone = false;
      try { gone = idle(tracked[i]); } catch (_) { gone = true; }
      if (gone) { forget(i); return true; }
    }
    return false;
  };

  const track = (pc, kit) => {
    if (successor) { apply(successor.track, undefined, [pc]); return; }
    if (apply(weakMapGet, known, [pc]) !== undefined) return;
    apply(weakMapSet, known, [pc, true]);
    if (tracked.length >= MAX_CONNECTIONS_PER_POLL && !evictIdle()) return;
    counter += 1;
    tracked[tracked.length] = {
      id: `${prefix}-${counter}`,
      ref: WeakRefCtor ? new WeakRefCtor(pc) : pc,
      kit,
      busy: false,
      plan: null, // what a targeted fetch reads (set by each full scan)
    };
    if (!timer) timer = setIntervalSaved(poll, POLL_MS);
  };

  // A connection the page touched, or an older hook handed over: tracked if it is a live
  // RTCPeerConnection (the native getter throws for anything else) not known yet.
  const adoptOne = (pc, kit) => {
    if (apply(weakMapGet, known, [pc]) !== undefined) return;
    if (apply(kit.signalingState, pc, []) === 'closed') return;
    track(pc, kit);
  };

  // Gives this hook's connections to a newer hook (`nextTrack` then tracks what this hook's
  // constructor wrapper still makes) and stops polling; a hook that already handed over passes
  // the request on to its successor. Returns the live connections, or null.
  const handover = (nextTrack, nextHandover) => {
    if (typeof nextTrack !== 'function' || typeof nextHandover !== 'function') return null;
    if (successor) return apply(successor.handover, undefined, [nextTrack, nextHandover]);
    successor = { track: nextTrack, handover: nextHandover };
    if (timer) { clearIntervalSaved(timer); timer = 0; }
    const pcs = list();
    for (let i = 0; i < tracked.length; i++) {
      const pc = deref(tracked[i]);
      if (pc) pcs[pcs.length] = pc;
    }
    tracked = list();
    round = null;
    port = null; // a poll still in flight sends nothing
    return pcs;
  };

  // The function under one of the hook's wrappers (this run's or an older one's), else `f`.
  const nativeOf = (f) => {
    if (typeof f !== 'function') return f;
    const native = reflectGet(f, NATIVE);
    return typeof native === 'function' ? native : f;
  };

  // Replaces `obj[key]` with a Proxy of it that keeps its descriptor and maps back to it in
  // Function.prototype.toString.
  const replace = (obj, key, handler, accessor) => {
    const desc = getOwnPropertyDescriptor(obj, key);
    // An older run's wrapper is replaced by one of its native, not stacked on it.
    const original = desc && nativeOf(accessor ? desc.get : desc.value);
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

  // The native getter of `obj[key]`, or null where the browser has none.
  const getter = (obj, key) => {
    const desc = getOwnPropertyDescriptor(obj, key);
    return desc && typeof desc.get === 'function' ? nativeOf(desc.get) : null;
  };

  // Connections made before the hook existed (it came into an open page) are unknown to it:
  // the first call the page makes on one of them, through any of these, tracks it. Only the
  // page's calls pass here; polls use the saved natives, so this adds nothing per poll.
  const TOUCHING_METHODS = ['getStats', 'createOffer', 'createAnswer', 'setLocalDescription',
    'setRemoteDescription', 'addIceCandidate', 'addTrack', 'removeTrack', 'addTransceiver',
    'getSenders', 'getReceivers', 'getTransceivers', 'restartIce', 'getConfiguration',
    'setConfiguration', 'createDataChannel'];
  const TOUCHING_GETTERS = ['connectionState', 'iceConnectionState', 'iceGatheringState',
    'signalingState', 'localDescription', 'remoteDescription'];
  const patchPrototype = (proto, kit) => {
    const touching = {
      apply(target, self, args) {
        try { adoptOne(self, kit); } catch (_) { /* not a connection: the native throws below */ }
        return apply(target, self, args);
      },
    };
    for (let i = 0; i < TOUCHING_METHODS.length; i++) replace(proto, TOUCHING_METHODS[i], { apply: touching.apply }, false);
    for (let i = 0; i < TOUCHING_GETTERS.length; i++) replace(proto, TOUCHING_GETTERS[i], { apply: touching.apply }, true);
  };

  // Patches one window (this one or a same-origin child) in its own realm. `late`: the hook
  // came into a page that was already running (adopt.js injected it), so connections may
  // exist already, and an older run's hook may be there.
  const install = (win, late) => {
    const Current = win.RTCPeerConnection;
    if (typeof Current !== 'function') return false;
    const older = reflectGet(Current, NATIVE);
    if (older !== undefined && !late) return false; // already patched (by a parent frame's hook)
    const Native = older !== undefined ? older : Current;
    if (typeof Native !== 'function') return false;
    const kit = {
      getStats: nativeOf(Native.prototype.getStats),
      signalingState: getter(Native.prototype, 'signalingState'),
      connectionState: getter(Native.prototype, 'connectionState'),
      iceConnectionState: getter(Native.prototype, 'iceConnectionState'),
      remoteDescription: getter(Native.prototype, 'remoteDescription'),
      forEach: win.RTCStatsReport.prototype.forEach,
      get: win.RTCStatsReport.prototype.get,
      size: getOwnPropertyDescriptor(win.RTCStatsReport.prototype, 'size').get,
      then: win.Promise.prototype.then,
    };
    if (typeof kit.getStats !== 'function' || !kit.signalingState) return false;
    if (older !== undefined) {
      // An older run's hook: its constructor wrapper stays (the page may hold it), and its
      // connections and whatever it makes from now on are tracked here. A hook too old to hand
      // over keeps polling into its orphaned bridge, where nothing is forwarded; its
      // connections are tracked here once the page touches them.
      const takeOver = reflectGet(Current, HANDOVER);
      if (typeof takeOver === 'function') {
        const pcs = apply(takeOver, undefined, [(pc) => { try { adoptOne(pc, kit); } catch (_) { /* not a connection */ } }, handover]);
        if (pcs) for (let i = 0; i < pcs.length; i++) { try { adoptOne(pcs[i], kit); } catch (_) { /* the same */ } }
      }
      patchPrototype(Native.prototype, kit);
      return true;
    }
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
        if (key === HANDOVER) return handover;
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
    if (late) patchPrototype(Native.prototype, kit);
    return true;
  };

  // A child window the page reached: patched unless it already is (install() checks NATIVE).
  const adopt = (value, toWindow) => {
    try {
      const win = toWindow(value);
      if (win && win !== window) install(win, false); // throws (caught) for a cross-origin window
    } catch (_) { /* not ours to patch */ }
  };

  try {
    if (typeof window.RTCPeerConnection !== 'function') return; // no WebRTC here
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
    // A bridge adopt.js injected into a running page is there first: it takes the port during
    // this first offer and says LATE while it does (a document_start bridge never does).
    let late = false;
    const onLate = () => { late = true; };
    document.addEventListener(LATE, onLate, true);
    offer();
    document.removeEventListener(LATE, onLate, true);
    if (!install(window, late)) { // this frame was already patched by its parent
      port = null;
      document.removeEventListener(HELLO, onHello, true);
    }
  } catch (_) { /* the hook must never break the page */ }
})();
