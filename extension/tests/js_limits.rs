//! The limits the JavaScript files repeat (bridge.js, hook.js, sw.js) equal the ones in `vitals_shared::limits`, none is missing there, their `source` is `messages::PageSource`, and the members the hook copies are those `vitals_shared::stats` reads.

use vitals_shared::limits::*;

const HOOK: &str = include_str!("../hook.js");
const BRIDGE: &str = include_str!("../bridge.js");
const SW: &str = include_str!("../sw.js");

/// Every `const NAME = VALUE;` of a JS file (one per line, as the files write them), with the
/// value's text.
fn constants(js: &str) -> Vec<(&str, &str)> {
    js.lines()
        .filter_map(|line| {
            let rest = line.trim_start().strip_prefix("const ")?;
            let (name, value) = rest.split_once(" = ")?;
            let value = value.split_once(';')?.0.trim();
            name.chars()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
                .then_some((name, value))
        })
        .collect()
}

fn number(file: &str, js: &str, name: &str) -> usize {
    let found: Vec<&str> = constants(js)
        .into_iter()
        .filter(|(n, _)| *n == name)
        .map(|(_, v)| v)
        .collect();
    let [value] = found[..] else {
        panic!("{file}: expected one `const {name} = ...;`, found {found:?}")
    };
    value
        .replace('_', "")
        .parse()
        .unwrap_or_else(|e| panic!("{file}: {name} = {value}: {e}"))
}

#[test]
fn the_js_limits_are_the_shared_ones() {
    let expected: &[(&str, &str, &str, usize)] = &[
        ("hook.js", HOOK, "MAX_CONNECTIONS_PER_POLL", MAX_CONNECTIONS_PER_POLL),
        (
            "bridge.js",
            BRIDGE,
            "MAX_CONNECTIONS_PER_POLL",
            MAX_CONNECTIONS_PER_POLL,
        ),
        ("bridge.js", BRIDGE, "MAX_PC_ID_LEN", MAX_PC_ID_LEN),
        ("bridge.js", BRIDGE, "MAX_MESSAGES_PER_SECOND", MAX_MESSAGES_PER_SECOND),
        (
            "bridge.js",
            BRIDGE,
            "MAX_CONNECTIONS_PER_FRAME",
            MAX_CONNECTIONS_PER_FRAME,
        ),
        ("bridge.js", BRIDGE, "MAX_POLL_JSON_LEN", MAX_POLL_JSON_LEN),
        ("sw.js", SW, "MAX_CONNECTIONS_PER_POLL", MAX_CONNECTIONS_PER_POLL),
        ("sw.js", SW, "MAX_REPORTS_PER_CONNECTION", MAX_REPORTS_PER_CONNECTION),
        ("sw.js", SW, "MAX_REPORTS_PER_POLL", MAX_REPORTS_PER_POLL),
        ("sw.js", SW, "MAX_POLL_JSON_LEN", MAX_POLL_JSON_LEN),
        ("sw.js", SW, "MAX_TYPE_LEN", MAX_TYPE_LEN),
        ("sw.js", SW, "MAX_REPORT_MEMBERS", MAX_REPORT_MEMBERS),
        ("sw.js", SW, "MAX_MEMBER_NAME_LEN", MAX_MEMBER_NAME_LEN),
        ("sw.js", SW, "MAX_NESTED_MEMBERS", MAX_NESTED_MEMBERS),
        ("sw.js", SW, "MAX_STRING_LEN", MAX_STRING_LEN),
        ("sw.js", SW, "MAX_BUFFERED_SNAPSHOTS", MAX_BUFFERED_SNAPSHOTS),
    ];
    for (file, js, name, value) in expected {
        assert_eq!(
            number(file, js, name),
            *value,
            "{file}: {name} differs from vitals_shared::limits"
        );
    }
    // A limit added to a JS file alone would escape this test: every MAX_ constant is listed.
    for (file, js) in [("hook.js", HOOK), ("bridge.js", BRIDGE), ("sw.js", SW)] {
        for (name, _) in constants(js).into_iter().filter(|(n, _)| n.starts_with("MAX_")) {
            assert!(
                expected.iter().any(|(f, _, n, _)| *f == file && *n == name),
                "{file}: {name} is not in vitals_shared::limits (or not in this test)"
            );
        }
    }
}

#[test]
fn the_bridge_checks_pc_ids_by_the_shared_rule() {
    let (start, end) = (PC_ID_BYTES.start(), PC_ID_BYTES.end());
    let pattern = format!(r"/^[\x{start:02x}-\x{end:02x}]+$/; // PC_ID_BYTES");
    let line = BRIDGE.lines().find(|l| l.contains("const PC_ID = ")).unwrap();
    assert!(
        line.ends_with(&pattern),
        "bridge.js: {line:?}, expected it to end with {pattern:?}"
    );
    // The length check around it uses the shared bound too (MAX_PC_ID_LEN, checked above).
    assert!(BRIDGE.contains("pc.length <= MAX_PC_ID_LEN && PC_ID.test(pc)"));
}

#[test]
fn the_constant_reader_reads_what_the_files_write() {
    // Guards the reader itself: a file it read nothing from would pass the tests above.
    let read = constants("  const MAX_A = 2_000; // note\nconst lower = 1;\n  const B = 'x';\nlet MAX_C = 3;");
    assert_eq!(read, [("MAX_A", "2_000"), ("B", "'x'")]);
    assert!(constants(BRIDGE).len() >= 6 && !constants(HOOK).is_empty() && !constants(SW).is_empty());
}

#[test]
fn the_page_source_is_the_shared_one() {
    // Not a limit, but the same kind of copy: the `source` member bridge.js stamps and sw.js
    // routes on (`messages::PageSource`).
    let source = serde_json::to_value(vitals_shared::messages::PageSource::Hook).unwrap();
    let quoted = format!("'{}'", source.as_str().unwrap());
    for (file, js) in [("bridge.js", BRIDGE), ("sw.js", SW)] {
        let found: Vec<&str> = constants(js)
            .into_iter()
            .filter(|(n, _)| *n == "SOURCE")
            .map(|(_, v)| v)
            .collect();
        assert_eq!(found, [quoted.as_str()], "{file}: SOURCE");
    }
}

/// The hook's `FIELDS`: each `FIELDS['type'] = [...]` (or `FIELDS.type = [...]`) statement, with
/// `...RTP` spread out, as (type, members).
fn hook_fields() -> Vec<(String, Vec<String>)> {
    let quoted = |text: &str| -> Vec<String> { text.split('\'').skip(1).step_by(2).map(str::to_owned).collect() };
    let rtp_line = HOOK
        .lines()
        .find(|l| l.trim_start().starts_with("const RTP = ["))
        .expect("const RTP");
    let rtp = quoted(rtp_line);
    let mut out = Vec::new();
    let mut rest = HOOK;
    while let Some(at) = rest.find("\n  FIELDS") {
        rest = &rest[at + 9..];
        let statement = &rest[..rest.find("];").expect("a FIELDS statement ends with ];")];
        let (target, list) = statement.split_once(" = [").expect("FIELDS[...] = [");
        let kind = target
            .trim_start_matches(['[', '.', '\''])
            .trim_end_matches([']', '\''])
            .to_owned();
        let mut members = if list.contains("...RTP") {
            rtp.clone()
        } else {
            Vec::new()
        };
        members.extend(quoted(list.split_once("...RTP").map_or(list, |(_, after)| after)));
        out.push((kind, members));
    }
    out
}

#[test]
fn the_hook_copies_exactly_the_members_the_processor_reads() {
    use vitals_shared::stats::{PeerConnection, REPORT_MEMBERS};
    let fields = hook_fields();
    let types: Vec<&str> = fields.iter().map(|(t, _)| t.as_str()).collect();
    let expected: Vec<&str> = REPORT_MEMBERS.iter().map(|(t, _)| *t).collect();
    assert_eq!(types, expected, "hook.js FIELDS types");
    for ((kind, members), (_, read)) in fields.iter().zip(REPORT_MEMBERS) {
        assert_eq!(members, read, "hook.js FIELDS['{kind}']");
    }
    // The connection's own states, which the hook reads from the connection itself.
    for member in PeerConnection::MEMBERS {
        assert!(HOOK.contains(&format!("state.{member} = ")), "hook.js sets {member}");
    }
    assert!(HOOK.contains("const PEER_CONNECTION = 'peer-connection';"));
}
