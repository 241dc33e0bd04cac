// Call Vitals popup loader: starts the Yew popup (extension/src/popup).
import init, { start_popup } from './pkg/vitals_extension.js';

await init();
start_popup();
