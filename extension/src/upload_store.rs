//! The upload queue's storage format: one entry per queued event and one per participant session, so each change writes only what changed.
//!
//! The offscreen document keeps its queue in the extension origin's `localStorage` (see
//! `local_storage.rs` for why there). Keys, all under [`PREFIX`]:
//! - `s:{session}`: a [`SessionRecord`] (the tab, the meeting, the last sequence number given
//!   out, whether a call still feeds it, the collector's participant token);
//! - `e:{session}:{seq}`: one queued [`Event`], exactly as it goes on the wire;
//! - `dropped`: how many events the bound evicted (a decimal number).
//!
//! Values are JSON. Queuing an event writes its entry and its session's record (a few hundred
//! bytes, however long the queue); an acknowledgement removes the event's entry. Nothing is ever
//! rewritten whole.

use serde::{Deserialize, Serialize};
use vitals_shared::wire::Event;

/// Every key of the upload queue starts with this (the version goes up if the format changes;
/// entries of another version are not ours and are left alone).
pub const PREFIX: &str = "cv-upload-v1:";

/// One change to the stored queue, applied in order by the shell.
#[derive(Debug, Clone, PartialEq)]
pub enum StoreOp {
    Put(String, String),
    Remove(String),
}

/// What is kept of one participant session (one tab's call), besides its events.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SessionRecord {
    pub tab: i64,
    /// Where its events go: the page's origin and path (`privacy::meeting_id`).
    pub meeting: String,
    /// The highest sequence number given out: a resumed session continues after it, so no
    /// number is ever used twice (the collector would drop the second as a duplicate).
    pub last_seq: u64,
    /// A call still fed the session when this was written (a restarted document may resume it).
    pub live: bool,
    /// The collector's participant token for this session's participant (from its latest
    /// acknowledgement), sent with every batch; absent until the first one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub participant_token: Option<String>,
}

pub fn session_key(session: &str) -> String {
    format!("{PREFIX}s:{session}")
}

pub fn event_key(session: &str, seq: u64) -> String {
    format!("{PREFIX}e:{session}:{seq}")
}

/// Whether `key` names a stored event (even a damaged one).
pub fn is_event_key(key: &str) -> bool {
    key.strip_prefix(PREFIX).is_some_and(|rest| rest.starts_with("e:"))
}

pub fn dropped_key() -> String {
    format!("{PREFIX}dropped")
}

pub fn put_session(session: &str, record: &SessionRecord) -> StoreOp {
    StoreOp::Put(session_key(session), serde_json::to_string(record).unwrap_or_default())
}

pub fn put_event(session: &str, event: &Event) -> StoreOp {
    StoreOp::Put(
        event_key(session, event.seq),
        serde_json::to_string(event).unwrap_or_default(),
    )
}

/// One stored entry, read back.
#[derive(Debug, Clone, PartialEq)]
pub enum Entry {
    Session(String, SessionRecord),
    Event(String, Event),
    Dropped(u64),
    /// Ours but unreadable (a damaged or hand-edited value): removed on restore.
    Bad(String),
}

/// Reads one stored entry; `None` for keys that are not the queue's.
pub fn parse(key: &str, value: &str) -> Option<Entry> {
    let rest = key.strip_prefix(PREFIX)?;
    let bad = || Some(Entry::Bad(key.to_string()));
    if rest == "dropped" {
        return value.trim().parse().map(Entry::Dropped).ok().or_else(bad);
    }
    if let Some(session) = rest.strip_prefix("s:") {
        return match serde_json::from_str::<SessionRecord>(value) {
            Ok(record) if !session.is_empty() => Some(Entry::Session(session.to_string(), record)),
            _ => bad(),
        };
    }
    if let Some(rest) = rest.strip_prefix("e:") {
        let parsed = rest.rsplit_once(':').and_then(|(session, seq)| {
            let seq: u64 = seq.parse().ok()?;
            let event: Event = serde_json::from_str(value).ok()?;
            (event.seq == seq && seq > 0 && !session.is_empty()).then(|| Entry::Event(session.to_string(), event))
        });
        return parsed.or_else(bad);
    }
    bad()
}

/// What the stored queue holds while no offscreen document runs (the popup shows it): events
/// waiting for the next call, and events given up so far.
pub fn waiting<'a>(entries: impl IntoIterator<Item = (&'a str, &'a str)>) -> (usize, u64) {
    entries
        .into_iter()
        .fold((0, 0), |(queued, dropped), (k, v)| match parse(k, v) {
            Some(Entry::Event(..)) => (queued + 1, dropped),
            Some(Entry::Dropped(n)) => (queued, dropped + n),
            _ => (queued, dropped),
        })
}

/// Applies `ops` to a map standing in for `localStorage` (for the tests of the queue's users).
#[cfg(test)]
pub fn apply_to(disk: &mut std::collections::BTreeMap<String, String>, ops: Vec<StoreOp>) {
    for op in ops {
        match op {
            StoreOp::Put(k, v) => disk.insert(k, v),
            StoreOp::Remove(k) => disk.remove(&k),
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vitals_shared::quality::QualityClass;
    use vitals_shared::wire::MetricsFields;

    fn event(seq: u64) -> Event {
        Event {
            seq,
            ts_ms: 1_700_000_000_123.5,
            full: true,
            metrics: MetricsFields {
                upload_kbps: Some(812.3),
                quality: Some(QualityClass::Good),
                using_relay: Some(false),
                ..MetricsFields::default()
            },
        }
    }

    #[test]
    fn the_stored_format_is_stable() {
        // Written by one version of the extension and read by the next: a change here needs a
        // new PREFIX.
        let record = SessionRecord {
            tab: 7,
            meeting: "https://meet.example.com/abc".into(),
            last_seq: 12,
            live: true,
            participant_token: None,
        };
        assert_eq!(
            put_session("7-18c2", &record),
            StoreOp::Put(
                "cv-upload-v1:s:7-18c2".into(),
                r#"{"tab":7,"meeting":"https://meet.example.com/abc","last_seq":12,"live":true}"#.into()
            )
        );
        assert_eq!(
            put_event("7-18c2", &event(12)),
            StoreOp::Put(
                "cv-upload-v1:e:7-18c2:12".into(),
                r#"{"seq":12,"ts_ms":1700000000123.5,"full":true,"metrics":{"upload_kbps":812.3,"quality":"good","using_relay":false}}"#
                    .into()
            )
        );
        assert_eq!(dropped_key(), "cv-upload-v1:dropped");
        // The token is written once the collector gave one, and a record without it still reads.
        let with_token = SessionRecord {
            participant_token: Some("9f0a".into()),
            ..record
        };
        let StoreOp::Put(key, value) = put_session("7-18c2", &with_token) else {
            panic!("a put")
        };
        assert_eq!(
            value,
            r#"{"tab":7,"meeting":"https://meet.example.com/abc","last_seq":12,"live":true,"participant_token":"9f0a"}"#
        );
        assert_eq!(parse(&key, &value), Some(Entry::Session("7-18c2".into(), with_token)));
    }

    #[test]
    fn waiting_counts_stored_events_and_drops_only() {
        let mut disk = std::collections::BTreeMap::new();
        let record = SessionRecord {
            tab: 4,
            meeting: "https://meet.example/x".into(),
            last_seq: 2,
            live: false,
            participant_token: None,
        };
        apply_to(
            &mut disk,
            vec![
                put_session("s1", &record),
                put_event("s1", &event(1)),
                put_event("s1", &event(2)),
                StoreOp::Put(dropped_key(), "7".into()),
                StoreOp::Put(event_key("s1", 3), "{damaged".into()),
                StoreOp::Put("unrelated".into(), "1".into()),
            ],
        );
        assert_eq!(waiting(disk.iter().map(|(k, v)| (k.as_str(), v.as_str()))), (2, 7));
        assert_eq!(waiting(std::iter::empty()), (0, 0));
    }

    #[test]
    fn entries_read_back_as_written() {
        let record = SessionRecord {
            tab: -1,
            meeting: "http://127.0.0.1:8000/demo".into(),
            last_seq: 3,
            live: false,
            participant_token: None,
        };
        let StoreOp::Put(key, value) = put_session("a:b", &record) else {
            panic!("a put")
        };
        assert_eq!(parse(&key, &value), Some(Entry::Session("a:b".into(), record)));
        // A session id may hold ':'; the seq is what follows the last one.
        let StoreOp::Put(key, value) = put_event("a:b", &event(3)) else {
            panic!("a put")
        };
        assert_eq!(parse(&key, &value), Some(Entry::Event("a:b".into(), event(3))));
        assert_eq!(parse("cv-upload-v1:dropped", "42"), Some(Entry::Dropped(42)));
    }

    #[test]
    fn foreign_keys_are_ignored_and_damaged_ones_reported() {
        assert_eq!(parse("theme", "dark"), None);
        assert_eq!(parse("cv-upload-v0:s:x", "{}"), None);
        for (key, value) in [
            ("cv-upload-v1:s:x", "{not json"),
            (
                "cv-upload-v1:s:x",
                r#"{"tab":1,"meeting":"m","last_seq":1,"live":true,"extra":1}"#,
            ),
            ("cv-upload-v1:s:", r#"{"tab":1,"meeting":"m","last_seq":1,"live":true}"#),
            ("cv-upload-v1:e:x:2", &serde_json::to_string(&event(3)).unwrap()),
            ("cv-upload-v1:e:x:zero", &serde_json::to_string(&event(3)).unwrap()),
            ("cv-upload-v1:e:x", &serde_json::to_string(&event(3)).unwrap()),
            ("cv-upload-v1:e::3", &serde_json::to_string(&event(3)).unwrap()),
            ("cv-upload-v1:dropped", "-1"),
            ("cv-upload-v1:other", "1"),
        ] {
            assert_eq!(parse(key, value), Some(Entry::Bad(key.into())), "{key} = {value}");
        }
    }
}
