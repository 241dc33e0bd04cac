//! Query parameters and paging for the admin routes: read by name so that every error names its parameter, and cursors that resume where a page ended.

use super::error::ApiError;
use crate::alerts::AlertRecord;
use crate::clock::now_ms;
use crate::store::{HistoryPoint, HistoryPosition};
use axum::extract::rejection::QueryRejection;
use axum::extract::Query;

pub(super) const HOUR_MS: u64 = 3_600_000;

/// A route's page size: what it answers without `limit`, and the largest `limit` it takes.
#[derive(Debug, Clone, Copy)]
pub struct Limit {
    pub default: usize,
    pub max: usize,
}

pub(super) fn bad(message: String) -> ApiError {
    ApiError::BadRequest(message)
}

/// A request's query parameters, read by name so that every error names its parameter.
pub(super) struct Params(Vec<(String, String)>);

impl Params {
    /// The parameters of a request to a route that takes the `known` ones (each at most once).
    pub(super) fn parse(
        raw: Result<Query<Vec<(String, String)>>, QueryRejection>,
        known: &[&str],
    ) -> Result<Self, ApiError> {
        let Query(pairs) = raw.map_err(|r| bad(r.body_text()))?;
        for (i, (name, _)) in pairs.iter().enumerate() {
            if !known.contains(&name.as_str()) {
                return Err(bad(format!(
                    "unknown parameter {name:?}: this route takes {}",
                    known.join(", ")
                )));
            }
            if pairs[..i].iter().any(|(earlier, _)| earlier == name) {
                return Err(bad(format!("parameter {name} is given more than once")));
            }
        }
        Ok(Self(pairs))
    }

    pub(super) fn text(&self, name: &str) -> Option<&str> {
        self.0.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    /// A time parameter: ms since the Unix epoch.
    pub(super) fn time(&self, name: &str) -> Result<Option<u64>, ApiError> {
        self.text(name)
            .map(|v| {
                v.parse()
                    .map_err(|_| bad(format!("{name} must be a time in ms since the Unix epoch")))
            })
            .transpose()
    }

    /// `from` and `to`: `to` defaults to now, `from` to `default_span_ms` before `to`.
    pub(super) fn range(&self, default_span_ms: u64) -> Result<(u64, u64), ApiError> {
        let to = self.time("to")?.unwrap_or_else(now_ms);
        let from = self.time("from")?.unwrap_or(to.saturating_sub(default_span_ms));
        ordered("from", from, to)?;
        Ok((from, to))
    }

    pub(super) fn limit(&self, limit: Limit) -> Result<usize, ApiError> {
        let Some(text) = self.text("limit") else {
            return Ok(limit.default);
        };
        match text.parse() {
            Ok(n) if (1..=limit.max).contains(&n) => Ok(n),
            _ => Err(bad(format!("limit must be a whole number from 1 to {}", limit.max))),
        }
    }

    /// A cursor of `next_cursor`: `{time}:{rest}`.
    pub(super) fn cursor(&self) -> Result<Option<(u64, &str)>, ApiError> {
        self.text("cursor")
            .map(|c| {
                c.split_once(':')
                    .and_then(|(t, rest)| Some((t.parse().ok()?, rest)))
                    .ok_or_else(invalid_cursor)
            })
            .transpose()
    }
}

pub(super) fn ordered(from_name: &str, from: u64, to: u64) -> Result<(), ApiError> {
    if from > to {
        return Err(bad(format!("{from_name} must not be after to")));
    }
    Ok(())
}

pub(super) fn invalid_cursor() -> ApiError {
    bad("cursor is not one this route answered with".into())
}

/// The cursor of a page of meetings that ends with `meeting_id`: `m` and the id's bytes in hex.
pub(super) fn meeting_cursor(meeting_id: &str) -> String {
    use std::fmt::Write as _;
    let mut cursor = String::with_capacity(1 + 2 * meeting_id.len());
    cursor.push('m');
    for byte in meeting_id.bytes() {
        let _ = write!(cursor, "{byte:02x}");
    }
    cursor
}

/// The meeting id of a [`meeting_cursor`]; a cursor longer than any id's, or not one, is a 400.
pub(super) fn meeting_after(cursor: &str) -> Result<String, ApiError> {
    let hex = cursor.strip_prefix('m').ok_or_else(invalid_cursor)?;
    // (`from_str_radix` would take a sign too.)
    if hex.len() % 2 != 0
        || hex.len() > 2 * vitals_shared::wire::MAX_ID_LEN
        || !hex.bytes().all(|b| b.is_ascii_hexdigit())
    {
        return Err(invalid_cursor());
    }
    let bytes = (0..hex.len())
        .step_by(2)
        .map(|at| hex.get(at..at + 2).and_then(|pair| u8::from_str_radix(pair, 16).ok()))
        .collect::<Option<Vec<u8>>>()
        .ok_or_else(invalid_cursor)?;
    String::from_utf8(bytes).map_err(|_| invalid_cursor())
}

/// The first `limit` rows, and the cursor of the next page if `rows` (read with one more than
/// `limit`) has more.
pub(super) fn page<T>(
    mut rows: Vec<T>,
    limit: usize,
    cursor_after: impl FnOnce(&[T]) -> String,
) -> (Vec<T>, Option<String>) {
    let more = rows.len() > limit;
    rows.truncate(limit);
    let next = more.then(|| cursor_after(&rows));
    (rows, next)
}

/// Where the alerts after `page` start, for `alert_page`: the time of its last record, and how
/// many records of that time come before (`page` was read from `from`, leaving out `skip`).
pub(super) fn alerts_after(from: u64, skip: usize, page: &[AlertRecord]) -> (u64, usize) {
    let last = page.last().map_or(from, |a| a.at);
    let of_last = page.iter().rev().take_while(|a| a.at == last).count();
    (last, if last == from { skip + of_last } else { of_last })
}

pub(super) fn history_after(point: &HistoryPoint) -> HistoryPosition {
    (point.meeting_id.clone(), point.participant_id.clone(), point.t)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alerts::{AlertKind, AlertState, Severity};

    #[test]
    fn meeting_cursors_round_trip_and_refuse_what_they_are_not() {
        let longest = "x".repeat(vitals_shared::wire::MAX_ID_LEN);
        for id in ["https://meet.example.com/a b", "", "é:ü", longest.as_str()] {
            assert_eq!(meeting_after(&meeting_cursor(id)).unwrap(), id);
        }
        let huge = format!("m{}", "61".repeat(vitals_shared::wire::MAX_ID_LEN + 1));
        for bad in ["", "x61", "m6", "m6g", "mff", "m+1", huge.as_str()] {
            assert!(meeting_after(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn an_alerts_cursor_counts_the_records_of_the_last_time() {
        let at = |t: u64| AlertRecord {
            at: t,
            meeting_id: "m".into(),
            participant_id: "p".into(),
            kind: AlertKind::PacketLoss,
            severity: Severity::Warning,
            state: AlertState::Raised,
            message: String::new(),
            cost: None,
        };
        assert_eq!(alerts_after(5, 0, &[at(5), at(7), at(7)]), (7, 2));
        // A page all of the cursor's time adds to what was left out before.
        assert_eq!(alerts_after(7, 2, &[at(7), at(7)]), (7, 4));
        assert_eq!(alerts_after(7, 2, &[at(7), at(9)]), (9, 1));
    }
}
