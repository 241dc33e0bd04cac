//! Every limit on what a page can send into the extension, defined once (the JS files repeat them; a test checks they agree).
//!
//! A page is untrusted: `hook.js` runs in its world and a hostile page can imitate it. So each
//! snapshot is bounded before it costs anything, by the first code out of the page's reach:
//! `bridge.js` checks a message's shape (connection ids, the size of a poll's JSON string, the
//! rate), and `sw.js` parses the poll's JSON (out of the page's thread) and enforces the limits on
//! its items and reports; the offscreen document's wasm enforces the ones about connections,
//! reports and ids again on what it converts (`extension/src/convert.rs`), since it trusts no
//! content script. The JavaScript copies of these constants carry the same names;
//! `extension/tests/js_limits.rs` reads the JS files and fails when one differs or when a JS
//! file has a `MAX_` constant that is not here.

use std::ops::RangeInclusive;

/// Connections in one poll: the hook polls at most this many per document (`hook.js`), and a
/// `stats` message with more ids or items is refused whole (`bridge.js`, `sw.js`, the wasm).
pub const MAX_CONNECTIONS_PER_POLL: usize = 64;
/// Reports in one connection's snapshot; an item with more is dropped (`sw.js` drops the
/// whole message, the wasm the item).
pub const MAX_REPORTS_PER_CONNECTION: usize = 500;
/// Reports in one `stats` message, all its connections together; more and it is refused whole.
pub const MAX_REPORTS_PER_POLL: usize = 2000;
/// Longest peer-connection id, in bytes (the hook's ids are ASCII).
pub const MAX_PC_ID_LEN: usize = 64;
/// The bytes a peer-connection id may hold: printable ASCII, no space (`!` to `~`).
pub const PC_ID_BYTES: RangeInclusive<u8> = 0x21..=0x7e;
/// Longest report `type` `sw.js` passes on (the longest real one, `remote-outbound-rtp`,
/// has 19), in UTF-16 units.
pub const MAX_TYPE_LEN: usize = 32;
/// Most members in one report; a report with more is dropped by `sw.js` (the hook's trimmed
/// reports have at most 30: `InboundRtp::MEMBERS` and the type).
pub const MAX_REPORT_MEMBERS: usize = 40;
/// Most members of an object-valued report member (`qualityLimitationDurations` has four);
/// `sw.js` leaves out a larger object, or one with anything but finite numbers.
pub const MAX_NESTED_MEMBERS: usize = 8;
/// Longest member name `sw.js` keeps, in UTF-16 units; longer ones are left out.
pub const MAX_MEMBER_NAME_LEN: usize = 64;
/// Longest string member `sw.js` keeps, in UTF-16 units; longer ones are left out.
pub const MAX_STRING_LEN: usize = 256;
/// Messages `bridge.js` forwards per second per frame; the rest of the second's are dropped.
pub const MAX_MESSAGES_PER_SECOND: usize = 200;
/// Connections `bridge.js` remembers per frame (to report them closed when the page goes);
/// snapshots of further ones are dropped.
pub const MAX_CONNECTIONS_PER_FRAME: usize = 256;
/// Longest JSON string of one poll's items (`HookMessage::Stats::json`), in UTF-16 units:
/// `bridge.js` refuses a longer one unread and `sw.js` before parsing it. An audio and video
/// connection is about 3,300 (the `direct` fixture's), so a poll of the hook's 64 stays near
/// 210,000.
pub const MAX_POLL_JSON_LEN: usize = 1_048_576;
/// Snapshots (one per connection of a `stats` message; any other message counts one) `sw.js`
/// keeps while the offscreen document is not there yet; the oldest go first.
pub const MAX_BUFFERED_SNAPSHOTS: usize = 1000;

// The per-poll bound is what keeps a message small: it bites before the product of the other two.
const _: () = assert!(MAX_REPORTS_PER_CONNECTION <= MAX_REPORTS_PER_POLL);
const _: () = assert!(MAX_REPORTS_PER_POLL < MAX_CONNECTIONS_PER_POLL * MAX_REPORTS_PER_CONNECTION);

/// The peer-connection id rule: 1 to [`MAX_PC_ID_LEN`] bytes, each in [`PC_ID_BYTES`].
pub fn valid_pc_id(pc: &str) -> bool {
    !pc.is_empty() && pc.len() <= MAX_PC_ID_LEN && pc.bytes().all(|b| PC_ID_BYTES.contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pc_ids_are_short_printable_ascii() {
        assert!(valid_pc_id("k3j9x2-12"));
        assert!(valid_pc_id("!~"));
        assert!(valid_pc_id(&"x".repeat(MAX_PC_ID_LEN)));
        for bad in [
            String::new(),
            "x".repeat(MAX_PC_ID_LEN + 1),
            "a b".into(),
            "é".into(),
            "a\u{7f}".into(),
        ] {
            assert!(!valid_pc_id(&bad), "{bad:?}");
        }
    }
}
