//! The participant metric fields, declared once: the sparse wire struct, the dense view, their names, merge rules, checks and a visitor.
//!
//! `metric_fields!` below is the only list of the fields. It generates [`MetricsFields`] (what
//! travels: an absent field is unchanged in a delta, unknown in a full event), [`MetricsView`]
//! (every field present, null when unknown, for admin clients), [`FIELD_NAMES`] and
//! [`FIELD_COUNT`], the delta and last-writer-wins merge rules, the range checks, and
//! [`MetricsView::values`], which hands each field to exports (CSV) and other protocols
//! (Socket.IO) by name, [`MetricsFields::set_json`], which reads one field by name, and
//! [`FIELD_INFO`], how the dashboard shows each field. A new field is one line here.

use crate::finding::FINDING_NAMES;
use crate::quality::QualityClass;
use serde::{Deserialize, Serialize};

/// Longest meeting id, participant id, label or relay server name the collector accepts, in bytes.
pub const MAX_ID_LEN: usize = 256;

/// One field's value, borrowed, for code that handles every field alike.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum FieldValue<'a> {
    Number(f64),
    Bool(bool),
    Text(&'a str),
    Quality(QualityClass),
}

impl FieldValue<'_> {
    /// The value as text, as a CSV cell shows it (numbers in Rust's shortest round-trip form).
    pub fn to_text(self) -> String {
        match self {
            Self::Number(x) => x.to_string(),
            Self::Bool(b) => b.to_string(),
            Self::Text(s) => s.to_owned(),
            Self::Quality(q) => q.as_str().to_owned(),
        }
    }
}

/// The types a metric field can have, seen as a [`FieldValue`].
pub trait AsFieldValue {
    fn field_value(&self) -> FieldValue<'_>;
}

impl AsFieldValue for f64 {
    fn field_value(&self) -> FieldValue<'_> {
        FieldValue::Number(*self)
    }
}

impl AsFieldValue for bool {
    fn field_value(&self) -> FieldValue<'_> {
        FieldValue::Bool(*self)
    }
}

impl AsFieldValue for String {
    fn field_value(&self) -> FieldValue<'_> {
        FieldValue::Text(self)
    }
}

impl AsFieldValue for QualityClass {
    fn field_value(&self) -> FieldValue<'_> {
        FieldValue::Quality(*self)
    }
}

/// What a JSON value for a field of this type must be, in words (for error messages).
pub trait FieldType {
    const EXPECTED: &'static str;
}

impl FieldType for f64 {
    const EXPECTED: &'static str = "a number";
}

impl FieldType for bool {
    const EXPECTED: &'static str = "true or false";
}

impl FieldType for String {
    const EXPECTED: &'static str = "a string";
}

impl FieldType for QualityClass {
    const EXPECTED: &'static str = "excellent, good, fair or poor";
}

/// How the dashboard draws a field's value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ShowKind {
    /// A number with `decimals` digits after the point.
    Number,
    /// The quality class (a coloured cell; 1 poor to 4 excellent in a chart).
    Quality,
    /// The relay flag, shown with the relay details ("yes tcp turn.example.org" or "no").
    Relay,
    /// A relay detail: no column of its own, part of the relay cell.
    Detail,
    /// A comma-separated list (the findings' ids), shown with a space after each comma.
    List,
}

/// How the dashboard shows one field: served to it as JSON ([`FIELD_INFO`]), so its table and
/// charts follow the declaration.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Show {
    /// The column heading (and chart title); `None` for a field shown inside another's cell.
    pub label: Option<&'static str>,
    /// Position among the table's columns, left to right (0 for no column).
    pub column: u8,
    pub kind: ShowKind,
    /// Digits after the decimal point.
    pub decimals: u8,
    /// The id of the history chart that draws the field (`figure[data-chart=...]`), if any.
    pub chart: Option<&'static str>,
}

impl Show {
    const fn number(column: u8, label: &'static str, decimals: u8, chart: Option<&'static str>) -> Self {
        Self {
            label: Some(label),
            column,
            kind: ShowKind::Number,
            decimals,
            chart,
        }
    }

    const fn of(kind: ShowKind, column: u8, label: Option<&'static str>, chart: Option<&'static str>) -> Self {
        Self {
            label,
            column,
            kind,
            decimals: 0,
            chart,
        }
    }
}

/// A field's name and how the dashboard shows it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct FieldInfo {
    pub name: &'static str,
    #[serde(flatten)]
    pub show: Show,
}

/// Why a field read by name ([`MetricsFields::set_json`]) was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SetFieldError {
    #[error("no metric field is named {0}")]
    Unknown(String),
    /// The value has the wrong type; `expected` says what it must be.
    #[error("{name} must be {expected}")]
    WrongType { name: &'static str, expected: &'static str },
}

/// Why an ingested metric field was refused: the message names the field and the rule.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FieldError {
    #[error("metrics.{name} must be a number from 0 to {max}")]
    OutOfRange { name: &'static str, max: f64 },
    #[error("metrics.{name} must be {}", one_of(.allowed))]
    NotOneOf {
        name: &'static str,
        allowed: &'static [&'static str],
    },
    #[error("metrics.{name} is longer than {max} bytes")]
    TooLong { name: &'static str, max: usize },
    #[error("metrics.{name} must be a comma-separated list of distinct names from: {}", .allowed.join(", "))]
    NotSetOf {
        name: &'static str,
        allowed: &'static [&'static str],
    },
}

/// "a, b or c".
fn one_of(allowed: &[&str]) -> String {
    match allowed.split_last() {
        Some((last, [])) => (*last).to_owned(),
        Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
        None => String::new(),
    }
}

/// What an ingested field must satisfy.
#[derive(Debug, Clone, Copy)]
enum Check {
    /// Any value of the type.
    Any,
    /// A finite number from 0 to `max`.
    Range(f64),
    /// One of these strings.
    OneOf(&'static [&'static str]),
    /// At most this many bytes.
    MaxLen(usize),
    /// A comma-separated list of distinct names from this set (empty for none).
    SetOf(&'static [&'static str]),
}

impl Check {
    fn check(self, name: &'static str, value: FieldValue<'_>) -> Result<(), FieldError> {
        match (self, value) {
            (Self::Range(max), FieldValue::Number(v)) if !v.is_finite() || !(0.0..=max).contains(&v) => {
                Err(FieldError::OutOfRange { name, max })
            }
            (Self::OneOf(allowed), FieldValue::Text(s)) if !allowed.contains(&s) => {
                Err(FieldError::NotOneOf { name, allowed })
            }
            (Self::MaxLen(max), FieldValue::Text(s)) if s.len() > max => Err(FieldError::TooLong { name, max }),
            (Self::SetOf(allowed), FieldValue::Text(s)) => {
                let items: Vec<&str> = s.split(',').filter(|i| !i.is_empty()).collect();
                let known = items.iter().all(|i| allowed.contains(i));
                let distinct = items.iter().enumerate().all(|(k, i)| !items[..k].contains(i));
                if known && distinct && (s.is_empty() || items.len() == s.split(',').count()) {
                    Ok(())
                } else {
                    Err(FieldError::NotSetOf { name, allowed })
                }
            }
            _ => Ok(()),
        }
    }
}

macro_rules! metric_fields {
    ($( $(#[doc = $doc:literal])* $name:ident : $ty:ty => $check:expr, $show:expr );* $(;)?) => {
        /// The metrics of a participant as they travel. In a delta event an absent field is
        /// unchanged; in a full event an absent field is unknown.
        #[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
        #[serde(deny_unknown_fields)]
        pub struct MetricsFields {
            $(
                $(#[doc = $doc])*
                #[serde(default, skip_serializing_if = "Option::is_none")]
                pub $name: Option<$ty>,
            )*
        }

        /// [`MetricsFields`] with every field present (null when unknown), so admin clients see
        /// a fixed shape.
        #[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
        pub struct MetricsView {
            $(
                $(#[doc = $doc])*
                pub $name: Option<$ty>,
            )*
        }

        /// The metric fields' names, in declaration order (the order of CSV columns too).
        pub const FIELD_NAMES: [&str; FIELD_COUNT] = [$(stringify!($name)),*];
        /// How many metric fields there are.
        pub const FIELD_COUNT: usize = [$(stringify!($name)),*].len();
        /// Every field with how the dashboard shows it, in [`FIELD_NAMES`] order.
        pub const FIELD_INFO: [FieldInfo; FIELD_COUNT] = [$( FieldInfo { name: stringify!($name), show: $show } ),*];

        impl MetricsFields {
            /// The fields of `self` that differ from `before`.
            pub fn changed_since(&self, before: &Self) -> Self {
                Self {
                    $( $name: if self.$name != before.$name { self.$name.clone() } else { None }, )*
                }
            }

            /// Overlays the fields `incoming` has on `self` (a delta).
            fn overlay(&mut self, incoming: &Self) {
                $( if incoming.$name.is_some() { self.$name = incoming.$name.clone(); } )*
            }

            /// Last writer wins, per field: each field `incoming` (event `seq`) writes (every
            /// field when `full`) and whose `field_seq` entry is older is taken, and its entry
            /// set to `seq`. Returns the fields taken with a value; a field a full event
            /// leaves out is cleared (unknown) in `self` right away.
            pub fn take_newer(
                &mut self,
                incoming: &Self,
                full: bool,
                seq: u64,
                field_seq: &mut [u64; FIELD_COUNT],
            ) -> Self {
                let mut won = Self::default();
                let mut index = 0;
                $(
                    if (full || incoming.$name.is_some()) && field_seq[index] < seq {
                        field_seq[index] = seq;
                        match &incoming.$name {
                            Some(_) => won.$name = incoming.$name.clone(),
                            None => self.$name = None,
                        }
                    }
                    index += 1;
                )*
                debug_assert_eq!(index, FIELD_COUNT);
                won
            }

            /// Sets the field named `name` from a JSON value of its type (unchecked: see
            /// [`validate`](Self::validate)).
            pub fn set_json(&mut self, name: &str, value: &serde_json::Value) -> Result<(), SetFieldError> {
                match name {
                    $(
                        stringify!($name) => {
                            let parsed = <$ty>::deserialize(value).map_err(|_| SetFieldError::WrongType {
                                name: stringify!($name),
                                expected: <$ty as FieldType>::EXPECTED,
                            })?;
                            self.$name = Some(parsed);
                            Ok(())
                        }
                    )*
                    other => Err(SetFieldError::Unknown(other.to_owned())),
                }
            }

            /// Checks ranges and lengths; the error names the offending field.
            pub fn validate(&self) -> Result<(), FieldError> {
                $(
                    if let Some(value) = &self.$name {
                        $check.check(stringify!($name), value.field_value())?;
                    }
                )*
                Ok(())
            }
        }

        impl MetricsView {
            /// Every field by name, in [`FIELD_NAMES`] order, with its value when known.
            pub fn values(&self) -> [(&'static str, Option<FieldValue<'_>>); FIELD_COUNT] {
                [$( (stringify!($name), self.$name.as_ref().map(AsFieldValue::field_value)) ),*]
            }
        }

        impl From<MetricsFields> for MetricsView {
            fn from(m: MetricsFields) -> Self {
                Self { $( $name: m.$name, )* }
            }
        }

        impl From<MetricsView> for MetricsFields {
            fn from(m: MetricsView) -> Self {
                Self { $( $name: m.$name, )* }
            }
        }
    };
}

metric_fields! {
    upload_kbps: f64 => Check::Range(10_000_000.0), Show::number(3, "Upload kbps", 0, Some("upload"));
    download_kbps: f64 => Check::Range(10_000_000.0), Show::number(4, "Download kbps", 0, Some("download"));
    rtt_ms: f64 => Check::Range(600_000.0), Show::number(5, "RTT ms", 0, Some("rtt"));
    loss_pct: f64 => Check::Range(100.0), Show::number(6, "Loss %", 1, Some("loss"));
    jitter_ms: f64 => Check::Range(600_000.0), Show::number(7, "Jitter ms", 1, Some("jitter"));
    quality: QualityClass => Check::Any, Show::of(ShowKind::Quality, 1, Some("Quality"), Some("quality"));
    mos: f64 => Check::Range(5.0), Show::number(2, "MOS", 2, None);
    using_relay: bool => Check::Any, Show::of(ShowKind::Relay, 8, Some("TURN relay"), None);
    /// "udp", "tcp" or "tls".
    relay_protocol: String => Check::OneOf(&["udp", "tcp", "tls"]), Show::of(ShowKind::Detail, 0, None, None);
    /// The TURN server's host name, never an address (see `privacy::turn_server_name`).
    relay_server: String => Check::MaxLen(MAX_ID_LEN), Show::of(ShowKind::Detail, 0, None, None);
    /// The ids of the active findings (`finding::FindingId`), comma-separated in id order; empty
    /// for none.
    findings: String => Check::SetOf(&FINDING_NAMES), Show::of(ShowKind::List, 9, Some("Findings"), None);
}

impl MetricsFields {
    /// Applies an event's fields on top of `self`: a full event replaces, a delta overlays.
    /// Relay details are cleared when relay use stops.
    pub fn merge(&mut self, incoming: &Self, full: bool) {
        if full {
            *self = incoming.clone();
        } else {
            self.overlay(incoming);
        }
        if self.using_relay == Some(false) {
            self.relay_protocol = None;
            self.relay_server = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_declaration_and_the_serialized_view() {
        let view = MetricsView::default();
        let json = serde_json::to_value(&view).unwrap();
        let object = json.as_object().unwrap();
        assert_eq!(object.len(), FIELD_COUNT);
        for name in FIELD_NAMES {
            assert!(object.contains_key(name), "{name}");
        }
        let names: Vec<&str> = view.values().iter().map(|(name, _)| *name).collect();
        assert_eq!(names, FIELD_NAMES);
    }

    #[test]
    fn values_hand_out_each_field_with_its_kind() {
        let view = MetricsView {
            rtt_ms: Some(42.5),
            quality: Some(QualityClass::Good),
            using_relay: Some(true),
            relay_protocol: Some("tcp".into()),
            ..Default::default()
        };
        let values = view.values();
        let get = |name: &str| values.iter().find(|(n, _)| *n == name).unwrap().1;
        assert_eq!(get("rtt_ms"), Some(FieldValue::Number(42.5)));
        assert_eq!(get("quality").map(FieldValue::to_text).as_deref(), Some("good"));
        assert_eq!(get("using_relay"), Some(FieldValue::Bool(true)));
        assert_eq!(get("relay_protocol"), Some(FieldValue::Text("tcp")));
        assert_eq!(get("upload_kbps"), None);
    }

    #[test]
    fn checks_name_the_field_and_the_rule() {
        let bad = |m: MetricsFields| m.validate().unwrap_err().to_string();
        assert_eq!(
            bad(MetricsFields {
                mos: Some(5.5),
                ..Default::default()
            }),
            "metrics.mos must be a number from 0 to 5"
        );
        assert_eq!(
            bad(MetricsFields {
                relay_protocol: Some("quic".into()),
                ..Default::default()
            }),
            "metrics.relay_protocol must be udp, tcp or tls"
        );
        assert_eq!(
            bad(MetricsFields {
                relay_server: Some("x".repeat(MAX_ID_LEN + 1)),
                ..Default::default()
            }),
            format!("metrics.relay_server is longer than {MAX_ID_LEN} bytes")
        );
        assert_eq!(
            bad(MetricsFields {
                findings: Some("packet-loss,packet-loss".into()),
                ..Default::default()
            }),
            format!(
                "metrics.findings must be a comma-separated list of distinct names from: {}",
                FINDING_NAMES.join(", ")
            )
        );
        for wrong in ["nope", "packet-loss,", ",packet-loss", "packet-loss,,high-jitter"] {
            let m = MetricsFields {
                findings: Some(wrong.into()),
                ..Default::default()
            };
            assert!(m.validate().is_err(), "{wrong}");
        }
        assert!(MetricsFields {
            findings: Some("packet-loss,high-jitter".into()),
            ..Default::default()
        }
        .validate()
        .is_ok());
        assert!(MetricsFields {
            findings: Some(String::new()),
            ..Default::default()
        }
        .validate()
        .is_ok());
        assert!(MetricsFields {
            upload_kbps: Some(0.0),
            loss_pct: Some(100.0),
            ..Default::default()
        }
        .validate()
        .is_ok());
    }

    #[test]
    fn set_json_reads_a_field_by_name_with_its_type() {
        let mut m = MetricsFields::default();
        m.set_json("rtt_ms", &serde_json::json!(42)).unwrap();
        m.set_json("quality", &serde_json::json!("fair")).unwrap();
        m.set_json("using_relay", &serde_json::json!(true)).unwrap();
        assert_eq!(
            (m.rtt_ms, m.quality, m.using_relay),
            (Some(42.0), Some(QualityClass::Fair), Some(true))
        );
        let wrong = |name, value| m.clone().set_json(name, &value).unwrap_err().to_string();
        assert_eq!(wrong("rtt_ms", serde_json::json!("42")), "rtt_ms must be a number");
        assert_eq!(
            wrong("quality", serde_json::json!("great")),
            "quality must be excellent, good, fair or poor"
        );
        assert_eq!(
            wrong("using_relay", serde_json::json!(1)),
            "using_relay must be true or false"
        );
        assert_eq!(wrong("nope", serde_json::json!(1)), "no metric field is named nope");
    }

    #[test]
    fn the_dashboard_columns_are_one_each_from_one_and_charts_unique() {
        let mut columns: Vec<u8> = FIELD_INFO.iter().map(|f| f.show.column).filter(|c| *c > 0).collect();
        columns.sort_unstable();
        assert_eq!(columns, (1..=columns.len() as u8).collect::<Vec<_>>());
        for info in FIELD_INFO {
            assert_eq!(info.show.label.is_some(), info.show.column > 0, "{}", info.name);
        }
        let charts: std::collections::BTreeSet<_> = FIELD_INFO.iter().filter_map(|f| f.show.chart).collect();
        assert_eq!(
            charts.len(),
            FIELD_INFO.iter().filter(|f| f.show.chart.is_some()).count()
        );
        let json = serde_json::to_value(FIELD_INFO[2]).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"name": "rtt_ms", "label": "RTT ms", "column": 5, "kind": "number", "decimals": 0, "chart": "rtt"})
        );
    }

    #[test]
    fn take_newer_is_last_writer_wins_per_field() {
        let mut state = MetricsFields {
            rtt_ms: Some(40.0),
            ..Default::default()
        };
        let mut seqs = [0; FIELD_COUNT];
        let newer = MetricsFields {
            rtt_ms: Some(50.0),
            ..Default::default()
        };
        let won = state.take_newer(&newer, false, 5, &mut seqs);
        assert_eq!(won.rtt_ms, Some(50.0));
        // An older event loses the field, and a full one still clears what it leaves out.
        let older = MetricsFields {
            rtt_ms: Some(10.0),
            ..Default::default()
        };
        assert_eq!(state.take_newer(&older, false, 3, &mut seqs).rtt_ms, None);
        let full = MetricsFields {
            upload_kbps: Some(1.0),
            ..Default::default()
        };
        state.upload_kbps = Some(9.0);
        state.jitter_ms = Some(3.0);
        let won = state.take_newer(&full, true, 6, &mut seqs);
        assert_eq!((won.upload_kbps, state.jitter_ms), (Some(1.0), None));
        assert_eq!(seqs.iter().filter(|s| **s == 6).count(), FIELD_COUNT);
    }
}
