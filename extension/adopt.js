// Call Vitals adoption: injects bridge.js and hook.js into the tabs already open when this run of the extension starts, and tells the popup whether a tab is measured (Coverage in shared/src/messages.rs).
//
// Content scripts only reach documents that load after their registration, so a call already
// running when the extension is installed, updated, reloaded or re-enabled, or in a tab the
// browser restored before the service worker registered the scripts, would go unseen until a
// reload. chrome.storage.session is empty at each of those starts (Chrome clears it when the
// extension is disabled, reloaded or updated and when the browser restarts) and survives the
// service worker's own restarts, so one mark in it makes this run once per run of the extension.
import { HOOK_ID, syncSites } from './sites.js';

const STARTED = 'adopted_at';
const BRIDGE = 'call-vitals.bridge'; // Symbol.for keys bridge.js reads in its world
const LATE_MARK = 'call-vitals.late';

// Run in the page's isolated world: marks the next bridge.js as injected late.
function markLate(key) { globalThis[Symbol.for(key)] = true; }

// Run in the page's isolated world: what the top frame's bridge says (Coverage), or null.
function probe(key) {
  try {
    const bridge = globalThis[Symbol.for(key)];
    if (!bridge || !bridge.alive()) return null;
    return bridge.late ? 'adopted' : 'measured';
  } catch (_) { return null; }
}

// The tabs whose top document is on a site the user lets Call Vitals measure (the registered
// hook's matches, less its excludes: Chrome matches the patterns).
async function siteTabs() {
  const [hook] = await chrome.scripting.getRegisteredContentScripts({ ids: [HOOK_ID] });
  if (!hook || !hook.matches || !hook.matches.length) return [];
  const tabs = await chrome.tabs.query({ url: hook.matches });
  const excludes = hook.excludeMatches || [];
  const excluded = new Set(excludes.length ? (await chrome.tabs.query({ url: excludes })).map((t) => t.id) : []);
  let files = true;
  try { files = await chrome.extension.isAllowedFileSchemeAccess(); } catch (_) { /* assume yes */ }
  return tabs.filter((t) => !excluded.has(t.id) && (files || !String(t.url).startsWith('file:')));
}

// bridge.js into every frame of the tab, then hook.js into the frames where the bridge started
// (not where a live bridge of this run already was: that page is measured from its start).
async function inject(tab) {
  if (tab.discarded || tab.status === 'unloaded') return; // loads afresh, with the content scripts
  const all = { tabId: tab.id, allFrames: true };
  try {
    await chrome.scripting.executeScript({ target: all, world: 'ISOLATED', injectImmediately: true, func: markLate, args: [LATE_MARK] });
    const results = await chrome.scripting.executeScript({ target: all, world: 'ISOLATED', injectImmediately: true, files: ['bridge.js'] });
    const frameIds = results.filter((r) => r.result === 'started').map((r) => r.frameId);
    if (!frameIds.length) return;
    await chrome.scripting.executeScript({ target: { tabId: tab.id, frameIds }, world: 'MAIN', injectImmediately: true, files: ['hook.js'] });
  } catch (e) {
    // A page Chrome does not let extensions script, or one that went away: the popup says so.
    console.warn('Call Vitals: could not reach tab', tab.id, String(e && e.message || e));
  }
}

// Once per run of the extension: reaches every open tab on an allowed site.
export async function adoptOpenTabs() {
  try {
    if ((await chrome.storage.session.get(STARTED))[STARTED]) return;
    await chrome.storage.session.set({ [STARTED]: Date.now() });
    await syncSites(); // the registrations say which sites are allowed
    const tabs = await siteTabs();
    await Promise.all(tabs.map(inject));
  } catch (e) {
    console.error('Call Vitals: open tabs not adopted:', e);
  }
}

// Whether a tab's top document is measured (Coverage): 'measured' (its scripts came at its
// start), 'adopted' (injected into it while it ran: a call there is measured once the page
// touches it), 'reload-needed' (on an allowed site but no live bridge: it was open before this
// run and could not be reached) or 'off' (not a site Call Vitals runs on, or a browser page).
export async function coverageOf(tabId) {
  try {
    if (typeof tabId !== 'number' || !(await siteTabs()).some((t) => t.id === tabId)) return 'off';
    const [first] = await chrome.scripting.executeScript({ target: { tabId, frameIds: [0] }, world: 'ISOLATED', func: probe, args: [BRIDGE] });
    return (first && first.result) || 'reload-needed';
  } catch (e) {
    // Pages no extension may script (the Web Store) stay so after a reload.
    return String(e && e.message).includes('cannot be scripted') ? 'off' : 'reload-needed';
  }
}
