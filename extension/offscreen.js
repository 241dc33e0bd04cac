// Call Vitals offscreen document: loads the WebAssembly driver and hands it runtime messages (ToOffscreen in, FromOffscreen out: shared/src/messages.rs).
import init, { start_offscreen, offscreen_message } from './pkg/vitals_extension.js';

// Who may send each ToOffscreen kind. Content scripts (any page's isolated world, which a
// compromised renderer controls) also reach this listener: their sender has a tab and the page's
// URL, never one of this extension's own. Feeding the driver (snapshots, tab ends) and its config
// come only from the service worker; questions come from the service worker or an extension page
// (the popup, also when opened as a tab, which then has a `sender.tab`).
const EXTENSION_ORIGIN = chrome.runtime.getURL('');
const WORKER_URL = chrome.runtime.getURL('sw.js');
const fromWorker = (sender) => sender.url === WORKER_URL && !sender.tab;
const fromExtensionPage = (sender) => typeof sender.url === 'string' && sender.url.startsWith(EXTENSION_ORIGIN);
const ALLOWED = {
  stats: fromWorker,
  'pc-closed': fromWorker,
  'tab-gone': fromWorker,
  config: fromWorker,
  'get-badge': fromWorker,
  'get-tab': (sender) => fromWorker(sender) || fromExtensionPage(sender),
  'get-report': (sender) => fromWorker(sender) || fromExtensionPage(sender),
};

await init();
start_offscreen();
chrome.runtime.onMessage.addListener((message, sender, sendResponse) => {
  if (!message || message.target !== 'offscreen' || sender.id !== chrome.runtime.id) return false;
  const allowed = Object.hasOwn(ALLOWED, message.type) && ALLOWED[message.type](sender);
  if (!allowed) return false;
  const answer = offscreen_message(message);
  if (answer !== undefined) sendResponse(answer);
  return false;
});
chrome.runtime.sendMessage({ type: 'offscreen-ready' }).catch(() => {}); // FromOffscreen::OffscreenReady
