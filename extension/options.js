// Call Vitals options loader: starts the Yew options page (extension/src/options).
import init, { start_options } from './pkg/vitals_extension.js';

await init();
start_options();
