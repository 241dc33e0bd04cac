//! Call Vitals extension (wasm32): placeholder until the extension crate lands.
