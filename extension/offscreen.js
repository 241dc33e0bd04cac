// Call Vitals offscreen document: loads the WebAssembly driver and hands it runtime messages (ToOffscreen in, FromOffscreen out: shared/src/messages.rs).
import init, { start_offscreen, offscreen_message } from './pkg/vitals_extension.js';

await init();
start_offscreen();
chrome.runtime.onMessage.addListener((message, _sender, sendResponse) => {
  if (!message || message.target !== 'offscreen') return false;
  const answer = offscreen_message(message);
  if (answer !== undefined) sendResponse(answer);
  return false;
});
chrome.runtime.sendMessage({ type: 'offscreen-ready' }).catch(() => {}); // FromOffscreen::OffscreenReady
