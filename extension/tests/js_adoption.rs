//! The names the adoption path shares between its JS files and Rust agree: Coverage's values in adopt.js, the get-coverage message in sw.js, the late event and the isolated-world keys of hook.js, bridge.js and adopt.js.

use vitals_shared::messages::{Coverage, ToWorker};

const HOOK: &str = include_str!("../hook.js");
const BRIDGE: &str = include_str!("../bridge.js");
const ADOPT: &str = include_str!("../adopt.js");
const SW: &str = include_str!("../sw.js");

/// The quoted value of the one `const NAME = '...';` line of a JS file.
fn string_const<'a>(file: &str, js: &'a str, name: &str) -> &'a str {
    let prefix = format!("const {name} = '");
    let found: Vec<&str> = js
        .lines()
        .filter_map(|l| l.trim_start().strip_prefix(prefix.as_str()))
        .filter_map(|rest| rest.split_once('\'').map(|(v, _)| v))
        .collect();
    let [value] = found[..] else {
        panic!("{file}: expected one `const {name} = '...';`, found {found:?}")
    };
    value
}

#[test]
fn every_coverage_adopt_js_answers_is_one_serde_reads() {
    for c in [
        Coverage::Measured,
        Coverage::Adopted,
        Coverage::ReloadNeeded,
        Coverage::Off,
    ] {
        let name = serde_json::to_value(c).unwrap();
        let name = name.as_str().unwrap();
        assert!(ADOPT.contains(&format!("'{name}'")), "adopt.js never answers '{name}'");
    }
}

#[test]
fn the_worker_handles_the_message_the_popup_sends() {
    let m = serde_json::to_value(ToWorker::GetCoverage { tab: 1 }).unwrap();
    let ty = m["type"].as_str().unwrap();
    assert!(
        SW.contains(&format!("msg.type === '{ty}'")),
        "sw.js does not handle '{ty}'"
    );
    assert!(
        SW.contains("coverageOf(msg.tab)"),
        "sw.js reads the tab from another member"
    );
}

#[test]
fn hook_bridge_and_injector_use_the_same_names() {
    assert_eq!(
        string_const("hook.js", HOOK, "LATE"),
        string_const("bridge.js", BRIDGE, "LATE")
    );
    assert_eq!(string_const("adopt.js", ADOPT, "BRIDGE"), "call-vitals.bridge");
    assert!(BRIDGE.contains("const BRIDGE = Symbol.for('call-vitals.bridge');"));
    assert_eq!(string_const("adopt.js", ADOPT, "LATE_MARK"), "call-vitals.late");
    assert!(BRIDGE.contains("const LATE_MARK = Symbol.for('call-vitals.late');"));
    // The bridge's value is what adopt.js injects the hook on.
    assert!(BRIDGE.contains("return 'started';") && ADOPT.contains("r.result === 'started'"));
}
