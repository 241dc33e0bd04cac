// Call Vitals sites: registers hook.js (MAIN world) and bridge.js (ISOLATED) as content scripts on the sites the user chose (Settings.sites_mode and sites in shared/src/messages.rs).
//
// The scripts are registered dynamically, not listed in manifest.json, because manifest
// content scripts cannot be switched off per site. Chrome keeps registrations across browser
// restarts (persistAcrossSessions) and drops them when the extension is installed, updated or
// loaded again, so they are checked on install, on browser start and every time the service
// worker starts, and follow every change of the setting.

export const HOOK_ID = 'call-vitals-hook';
const BRIDGE_ID = 'call-vitals-bridge';
const KEYS = ['sites_mode', 'sites'];
const COMMON = {
  runAt: 'document_start',
  allFrames: true,
  matchOriginAsFallback: true, // about:blank, srcdoc, data: and blob: frames of a matched page
  persistAcrossSessions: true,
};

// The two registrations for a setting: none for an empty allow list. Any mode other than
// "allow" or "deny" means all sites, as the options page reads it.
function scriptsFor({ sites_mode: mode, sites }) {
  const list = Array.isArray(sites) ? sites.filter((s) => typeof s === 'string') : [];
  let where;
  if (mode === 'allow') {
    if (list.length === 0) return [];
    where = { matches: list, excludeMatches: [] };
  } else {
    // Every http(s) page: the host permission the manifest asks for (`*://*/*`).
    where = { matches: ['*://*/*'], excludeMatches: mode === 'deny' ? list : [] };
  }
  return [
    { id: HOOK_ID, js: ['hook.js'], world: 'MAIN', ...COMMON, ...where },
    { id: BRIDGE_ID, js: ['bridge.js'], world: 'ISOLATED', ...COMMON, ...where },
  ];
}

// Chrome returns match patterns sorted, so lists compare as sets.
const sameList = (a, b) => JSON.stringify([...(a || [])].sort()) === JSON.stringify([...(b || [])].sort());
const sameScript = (have, want) => have && sameList(have.matches, want.matches)
  && sameList(have.excludeMatches, want.excludeMatches) && sameList(have.js, want.js)
  && have.world === want.world && have.runAt === want.runAt && have.allFrames === want.allFrames
  && have.matchOriginAsFallback === want.matchOriginAsFallback;

async function apply() {
  const wanted = scriptsFor(await chrome.storage.sync.get(KEYS));
  const current = await chrome.scripting.getRegisteredContentScripts({ ids: [HOOK_ID, BRIDGE_ID] });
  const byId = new Map(current.map((s) => [s.id, s]));
  if (wanted.length === 0) {
    if (current.length) await chrome.scripting.unregisterContentScripts({ ids: current.map((s) => s.id) });
    return;
  }
  if (wanted.every((w) => sameScript(byId.get(w.id), w))) return;
  if (current.length === wanted.length) {
    // One call changes both in place: no moment without the scripts a page could load in.
    await chrome.scripting.updateContentScripts(wanted);
    return;
  }
  if (current.length) await chrome.scripting.unregisterContentScripts({ ids: current.map((s) => s.id) });
  await chrome.scripting.registerContentScripts(wanted);
}

let queue = Promise.resolve();

// Brings the registrations in line with the stored setting; calls run one after another. A
// pattern Chrome refuses (the options page validates each, so only a setting written by another
// version could hold one) leaves the registrations as they were and is logged.
export function syncSites() {
  queue = queue.then(apply).catch((e) => console.error('Call Vitals: content scripts not registered:', e));
  return queue;
}

// Called once, synchronously, at the top level of the service worker.
export function watchSites() {
  chrome.runtime.onInstalled.addListener(() => { syncSites(); });
  chrome.runtime.onStartup.addListener(() => { syncSites(); });
  chrome.storage.onChanged.addListener((changes, area) => {
    if (area === 'sync' && KEYS.some((k) => k in changes)) syncSites();
  });
  syncSites();
}
