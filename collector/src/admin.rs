//! The admin read API beyond the live list: one meeting, history, alerts, TURN usage and export.
//!
//! Times in queries and answers are ms since the Unix epoch. Ranges default to the last hour
//! (alerts: the last 24 hours) and are inclusive at both ends. History and alerts answer in pages
//! of at most `limit` rows, with a `next_cursor` to pass back as `cursor` for the rest; the export
//! streams the whole range, reading the store a bounded page at a time. Every bad parameter is a
//! 400 whose error names it.

use crate::alerts::{ActiveAlert, AlertRecord};
use crate::api::{now_ms, AdminToken};
use crate::error::ApiError;
use crate::store::{
    history_bucket, AlertPage, HistoryPage, HistoryPoint, HistoryPosition, HistoryQuery, ParticipantView, Store,
    StoreError, FIELD_COUNT, FIELD_NAMES,
};
use crate::AppState;
use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures_util::StreamExt;
use serde::Serialize;
use std::sync::Arc;
use vitals_shared::fields::FieldValue;

const HOUR_MS: u64 = 3_600_000;

/// The rows of one history page: by default and at most.
pub const HISTORY_LIMIT: Limit = Limit {
    default: 5_000,
    max: 20_000,
};
/// The records of one alerts page: by default and at most.
pub const ALERTS_LIMIT: Limit = Limit {
    default: 1_000,
    max: 10_000,
};
/// How many rows the export reads from the store, and so holds, at a time.
pub const EXPORT_CHUNK_ROWS: usize = 1_000;

/// A route's page size: what it answers without `limit`, and the largest `limit` it takes.
#[derive(Debug, Clone, Copy)]
pub struct Limit {
    pub default: usize,
    pub max: usize,
}

fn bad(message: String) -> ApiError {
    ApiError::BadRequest(message)
}

/// A request's query parameters, read by name so that every error names its parameter.
struct Params(Vec<(String, String)>);

impl Params {
    /// The parameters of a request to a route that takes the `known` ones (each at most once).
    fn parse(raw: Result<Query<Vec<(String, String)>>, QueryRejection>, known: &[&str]) -> Result<Self, ApiError> {
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

    fn text(&self, name: &str) -> Option<&str> {
        self.0.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    /// A time parameter: ms since the Unix epoch.
    fn time(&self, name: &str) -> Result<Option<u64>, ApiError> {
        self.text(name)
            .map(|v| {
                v.parse()
                    .map_err(|_| bad(format!("{name} must be a time in ms since the Unix epoch")))
            })
            .transpose()
    }

    /// `from` and `to`: `to` defaults to now, `from` to `default_span_ms` before `to`.
    fn range(&self, default_span_ms: u64) -> Result<(u64, u64), ApiError> {
        let to = self.time("to")?.unwrap_or_else(now_ms);
        let from = self.time("from")?.unwrap_or(to.saturating_sub(default_span_ms));
        ordered("from", from, to)?;
        Ok((from, to))
    }

    fn limit(&self, limit: Limit) -> Result<usize, ApiError> {
        let Some(text) = self.text("limit") else {
            return Ok(limit.default);
        };
        match text.parse() {
            Ok(n) if (1..=limit.max).contains(&n) => Ok(n),
            _ => Err(bad(format!("limit must be a whole number from 1 to {}", limit.max))),
        }
    }

    /// A cursor of `next_cursor`: `{time}:{rest}`.
    fn cursor(&self) -> Result<Option<(u64, &str)>, ApiError> {
        self.text("cursor")
            .map(|c| {
                c.split_once(':')
                    .and_then(|(t, rest)| Some((t.parse().ok()?, rest)))
                    .ok_or_else(invalid_cursor)
            })
            .transpose()
    }
}

fn ordered(from_name: &str, from: u64, to: u64) -> Result<(), ApiError> {
    if from > to {
        return Err(bad(format!("{from_name} must not be after to")));
    }
    Ok(())
}

fn invalid_cursor() -> ApiError {
    bad("cursor is not one this route answered with".into())
}

/// The first `limit` rows, and the cursor of the next page if `rows` (read with one more than
/// `limit`) has more.
fn page<T>(mut rows: Vec<T>, limit: usize, cursor_after: impl FnOnce(&[T]) -> String) -> (Vec<T>, Option<String>) {
    let more = rows.len() > limit;
    rows.truncate(limit);
    let next = more.then(|| cursor_after(&rows));
    (rows, next)
}

/// Where the alerts after `page` start, for `alert_page`: the time of its last record, and how
/// many records of that time come before (`page` was read from `from`, leaving out `skip`).
fn alerts_after(from: u64, skip: usize, page: &[AlertRecord]) -> (u64, usize) {
    let last = page.last().map_or(from, |a| a.at);
    let of_last = page.iter().rev().take_while(|a| a.at == last).count();
    (last, if last == from { skip + of_last } else { of_last })
}

fn history_after(point: &HistoryPoint) -> HistoryPosition {
    (point.meeting_id.clone(), point.participant_id.clone(), point.t)
}

#[derive(Serialize)]
pub struct ParticipantDetail {
    #[serde(flatten)]
    participant: ParticipantView,
    /// The participant's active alerts.
    alerts: Vec<ActiveAlert>,
}

#[derive(Serialize)]
pub struct MeetingDetail {
    meeting_id: String,
    participants: Vec<ParticipantDetail>,
}

/// `GET /api/v1/meetings/{id}` (the id URL-encoded): a live meeting with active alerts; 404 when
/// the meeting has no live participant.
pub async fn meeting(
    State(state): State<AppState>,
    _token: AdminToken,
    Path(meeting_id): Path<String>,
) -> Result<Json<MeetingDetail>, ApiError> {
    let meetings = state.store.live_meetings(now_ms()).await?;
    let meeting = meetings
        .into_iter()
        .find(|m| m.meeting_id == meeting_id)
        .ok_or_else(|| ApiError::NotFound("no live meeting with this id".into()))?;
    let mut participants = Vec::with_capacity(meeting.participants.len());
    for participant in meeting.participants {
        let slot = state.store.derived(&meeting_id, &participant.participant_id).await?;
        participants.push(ParticipantDetail {
            participant,
            alerts: slot.derived.alerts,
        });
    }
    Ok(Json(MeetingDetail {
        meeting_id,
        participants,
    }))
}

#[derive(Serialize)]
pub struct HistoryResponse {
    meeting_id: String,
    from: u64,
    to: u64,
    limit: usize,
    /// Ordered by participant, then time; one point per participant per 10 s bucket.
    points: Vec<HistoryPoint>,
    /// The `cursor` of the next page (asked with the same `from`, `to` and `participant`); null
    /// on the last page.
    next_cursor: Option<String>,
}

/// `GET /api/v1/meetings/{id}/history?participant=&from=&to=&limit=&cursor=`: the time series
/// for charts: the points of the 10 s buckets from the one holding `from` to the last one
/// starting by `to`, at most `limit` of them (`HISTORY_LIMIT`); the rest come with `cursor`.
pub async fn history(
    State(state): State<AppState>,
    _token: AdminToken,
    Path(meeting_id): Path<String>,
    raw: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Result<Json<HistoryResponse>, ApiError> {
    let params = Params::parse(raw, &["participant", "from", "to", "limit", "cursor"])?;
    let (from, to) = params.range(HOUR_MS)?;
    let limit = params.limit(HISTORY_LIMIT)?;
    // The cursor is `{bucket start}:{participant id}` of the last point sent.
    let after = params
        .cursor()?
        .map(|(t, participant_id)| (meeting_id.clone(), participant_id.to_owned(), t));
    let query = HistoryQuery {
        meeting_id: Some(meeting_id.clone()),
        participant_id: params.text("participant").map(str::to_owned),
        // The bucket holding `from` counts: its point describes time after `from` too.
        from_ms: history_bucket(from),
        to_ms: to,
    };
    let read = HistoryPage {
        query,
        after,
        limit: limit + 1,
    };
    let rows = state.store.history_page(&read).await?;
    let (points, next_cursor) = page(rows, limit, |points| {
        let (_, participant_id, t) = history_after(points.last().expect("a full page"));
        format!("{t}:{participant_id}")
    });
    Ok(Json(HistoryResponse {
        meeting_id,
        from,
        to,
        limit,
        points,
        next_cursor,
    }))
}

#[derive(Serialize)]
pub struct AlertsResponse {
    since: u64,
    /// Null when the range is open-ended.
    to: Option<u64>,
    limit: usize,
    /// Raised and resolved alerts, oldest first.
    alerts: Vec<AlertRecord>,
    /// The `cursor` of the next page (asked with the same `since`, `to` and `meeting`); null on
    /// the last page.
    next_cursor: Option<String>,
}

/// `GET /api/v1/alerts?since=&to=&meeting=&limit=&cursor=`: the alert history from `since`
/// (default: 24 hours ago) to `to` (default: no end), at most `limit` records (`ALERTS_LIMIT`);
/// the rest come with `cursor`.
pub async fn alerts(
    State(state): State<AppState>,
    _token: AdminToken,
    raw: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Result<Json<AlertsResponse>, ApiError> {
    let params = Params::parse(raw, &["since", "to", "meeting", "limit", "cursor"])?;
    let since = params.time("since")?.unwrap_or(now_ms().saturating_sub(24 * HOUR_MS));
    let to = params.time("to")?;
    ordered("since", since, to.unwrap_or(u64::MAX))?;
    let limit = params.limit(ALERTS_LIMIT)?;
    // The cursor is `{time}:{records of that time already sent}`.
    let (from, skip) = match params.cursor()? {
        Some((at, skip)) => (at, skip.parse().map_err(|_| invalid_cursor())?),
        None => (since, 0),
    };
    let read = AlertPage {
        from_ms: from,
        to_ms: to.unwrap_or(u64::MAX),
        meeting_id: params.text("meeting").map(str::to_owned),
        skip,
        limit: limit + 1,
    };
    let rows = state.store.alert_page(&read).await?;
    let (alerts, next_cursor) = page(rows, limit, |alerts| {
        let (at, skip) = alerts_after(from, skip, alerts);
        format!("{at}:{skip}")
    });
    Ok(Json(AlertsResponse {
        since,
        to,
        limit,
        alerts,
        next_cursor,
    }))
}

#[derive(Serialize)]
pub struct UsageRow {
    meeting_id: String,
    participant_id: String,
    relay_server: Option<String>,
    relayed_bytes: u64,
    /// Dollars at `price_per_gb`.
    cost: f64,
}

#[derive(Serialize)]
pub struct TurnUsageResponse {
    from: u64,
    to: u64,
    price_per_gb: f64,
    total_bytes: u64,
    total_cost: f64,
    usage: Vec<UsageRow>,
}

/// `GET /api/v1/turn-usage?from=&to=`: relayed bytes and cost per meeting, participant and TURN
/// server (default: the last 24 hours; usage is kept in 1-minute buckets, and a range takes
/// the buckets starting from `from` rounded down to the minute up to `to`). One row per
/// relayed participant and server, whatever the length of the range.
pub async fn turn_usage(
    State(state): State<AppState>,
    _token: AdminToken,
    raw: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Result<Json<TurnUsageResponse>, ApiError> {
    let (from, to) = Params::parse(raw, &["from", "to"])?.range(24 * HOUR_MS)?;
    let price_per_gb = state.settings.alerts.turn_price_per_gb;
    let usage: Vec<UsageRow> = state
        .store
        .turn_usage(from, to)
        .await?
        .into_iter()
        .map(|u| UsageRow {
            cost: crate::turn::cost(u.relayed_bytes as f64, price_per_gb),
            meeting_id: u.meeting_id,
            participant_id: u.participant_id,
            relay_server: u.relay_server,
            relayed_bytes: u.relayed_bytes,
        })
        .collect();
    let total_bytes = usage.iter().map(|u| u.relayed_bytes).sum();
    Ok(Json(TurnUsageResponse {
        total_cost: crate::turn::cost(total_bytes as f64, price_per_gb),
        total_bytes,
        price_per_gb,
        from,
        to,
        usage,
    }))
}

/// `GET /api/v1/export?format=csv|json&from=&to=`: every history point and alert of the range
/// (default: the last hour), as a download streamed while it is read from the store, at most
/// `EXPORT_CHUNK_ROWS` rows at a time. JSON is `{"from", "to", "history": [...], "alerts": [...]}`.
/// A store failure before the first byte is an error status; after it, the body is cut off
/// (never a file that looks complete).
pub async fn export(
    State(state): State<AppState>,
    _token: AdminToken,
    raw: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Result<Response, ApiError> {
    let params = Params::parse(raw, &["format", "from", "to"])?;
    let csv = match params.text("format") {
        None | Some("json") => false,
        Some("csv") => true,
        Some(_) => return Err(bad("format must be csv or json".into())),
    };
    let (from, to) = params.range(HOUR_MS)?;
    let mut export = Export {
        store: state.store.clone(),
        csv,
        from,
        to,
        step: Step::History(None),
        rows_in_section: 0,
    };
    // The first chunk is read before answering, so that an unavailable store is a 503.
    let first = export.next_chunk().await?.unwrap_or_default();
    let rest = futures_util::stream::unfold(Some(export), |export| async move {
        let mut export = export?;
        match export.next_chunk().await {
            Ok(Some(chunk)) => Some((Ok(chunk), Some(export))),
            Ok(None) => None,
            Err(error) => {
                tracing::warn!(%error, "export cut off");
                Some((Err(error), None))
            }
        }
    });
    let body = futures_util::stream::once(std::future::ready(Ok::<_, StoreError>(first))).chain(rest);
    let (content_type, extension) = if csv {
        ("text/csv; charset=utf-8", "csv")
    } else {
        ("application/json", "json")
    };
    Ok((
        [
            (header::CONTENT_TYPE, content_type.to_owned()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"call-vitals-{from}-{to}.{extension}\""),
            ),
        ],
        Body::from_stream(body),
    )
        .into_response())
}

/// What the export reads next.
enum Step {
    /// History points after this one (from the start when none).
    History(Option<HistoryPosition>),
    /// Alerts from this time, leaving out this many of that time.
    Alerts(u64, usize),
    Done,
}

/// An export between two chunks of its body.
struct Export {
    store: Arc<dyn Store>,
    csv: bool,
    from: u64,
    to: u64,
    step: Step,
    /// Rows written in the current JSON array, for the commas between them.
    rows_in_section: usize,
}

impl Export {
    /// The next piece of the body: one page of rows with the text around them; None at the end.
    async fn next_chunk(&mut self) -> Result<Option<String>, StoreError> {
        let mut out = String::new();
        match std::mem::replace(&mut self.step, Step::Done) {
            Step::History(after) => {
                if after.is_none() {
                    if self.csv {
                        csv_row(&mut out, CSV_COLUMNS.map(str::to_owned).to_vec());
                    } else {
                        out.push_str(&format!("{{\"from\":{},\"to\":{},\"history\":[", self.from, self.to));
                    }
                }
                let query = HistoryPage {
                    query: HistoryQuery {
                        from_ms: history_bucket(self.from),
                        to_ms: self.to,
                        ..Default::default()
                    },
                    after,
                    limit: EXPORT_CHUNK_ROWS,
                };
                let points = self.store.history_page(&query).await?;
                for point in &points {
                    self.row(&mut out, point, csv_point);
                }
                self.step = match points.last() {
                    Some(last) if points.len() == EXPORT_CHUNK_ROWS => Step::History(Some(history_after(last))),
                    _ => {
                        self.end_section(&mut out, "],\"alerts\":[");
                        Step::Alerts(self.from, 0)
                    }
                };
            }
            Step::Alerts(from, skip) => {
                let query = AlertPage {
                    from_ms: from,
                    to_ms: self.to,
                    meeting_id: None,
                    skip,
                    limit: EXPORT_CHUNK_ROWS,
                };
                let alerts = self.store.alert_page(&query).await?;
                for alert in &alerts {
                    self.row(&mut out, alert, csv_alert);
                }
                if alerts.len() == EXPORT_CHUNK_ROWS {
                    let (at, skip) = alerts_after(from, skip, &alerts);
                    self.step = Step::Alerts(at, skip);
                } else {
                    self.end_section(&mut out, "]}");
                }
            }
            Step::Done => return Ok(None),
        }
        Ok(Some(out))
    }

    /// One row: a CSV line, or an element of the JSON array.
    fn row<T: Serialize>(&mut self, out: &mut String, row: &T, csv_fields: fn(&T) -> Vec<String>) {
        if self.csv {
            csv_row(out, csv_fields(row));
        } else {
            if self.rows_in_section > 0 {
                out.push(',');
            }
            self.rows_in_section += 1;
            out.push_str(&serde_json::to_string(row).expect("plain data always serializes"));
        }
    }

    fn end_section(&mut self, out: &mut String, json_text: &str) {
        if !self.csv {
            out.push_str(json_text);
        }
        self.rows_in_section = 0;
    }
}

const CSV_LEAD: [&str; 4] = ["record", "time_ms", "meeting_id", "participant_id"];
const CSV_ALERT: [&str; 5] = ["alert_type", "severity", "state", "message", "cost"];
const CSV_WIDTH: usize = CSV_LEAD.len() + FIELD_COUNT + CSV_ALERT.len();

/// The CSV columns: a `record` column says whether a row is a metrics point or an alert; then
/// the metric fields (the store's `FIELD_NAMES`), then the alert's.
pub const CSV_COLUMNS: [&str; CSV_WIDTH] = csv_columns();

const fn csv_columns() -> [&'static str; CSV_WIDTH] {
    let mut columns = [""; CSV_WIDTH];
    let mut i = 0;
    while i < CSV_WIDTH {
        columns[i] = if i < CSV_LEAD.len() {
            CSV_LEAD[i]
        } else if i < CSV_LEAD.len() + FIELD_COUNT {
            FIELD_NAMES[i - CSV_LEAD.len()]
        } else {
            CSV_ALERT[i - CSV_LEAD.len() - FIELD_COUNT]
        };
        i += 1;
    }
    columns
}

/// One CSV field (RFC 4180): quoted when it holds a comma, quote or line break, quotes doubled.
/// A field starting with `=`, `+`, `-` or `@` is prefixed with `'` so that a spreadsheet does
/// not run participant-chosen text as a formula.
pub fn csv_field(value: &str) -> String {
    let value = if value.starts_with(['=', '+', '-', '@']) && value.parse::<f64>().is_err() {
        format!("'{value}")
    } else {
        value.to_owned()
    };
    if value.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", value.replace('"', "\"\""))
    } else {
        value
    }
}

/// Appends one CSV line of `CSV_WIDTH` fields (missing ones empty), ending with CRLF.
fn csv_row(out: &mut String, mut fields: Vec<String>) {
    fields.resize(CSV_WIDTH, String::new());
    let escaped: Vec<String> = fields.iter().map(|f| csv_field(f)).collect();
    out.push_str(&escaped.join(","));
    out.push_str("\r\n");
}

fn opt<T: ToString>(value: &Option<T>) -> String {
    value.as_ref().map(T::to_string).unwrap_or_default()
}

/// A history point's CSV fields; the metrics in the order of `FIELD_NAMES`.
fn csv_point(p: &HistoryPoint) -> Vec<String> {
    let mut fields = vec![
        "metrics".to_owned(),
        p.t.to_string(),
        p.meeting_id.clone(),
        p.participant_id.clone(),
    ];
    fields.extend(
        p.metrics
            .values()
            .map(|(_, value)| value.map(FieldValue::to_text).unwrap_or_default()),
    );
    fields
}

/// An alert record's CSV fields: the metric columns stay empty.
fn csv_alert(a: &AlertRecord) -> Vec<String> {
    let mut fields = vec![
        "alert".to_owned(),
        a.at.to_string(),
        a.meeting_id.clone(),
        a.participant_id.clone(),
    ];
    fields.resize(CSV_LEAD.len() + FIELD_COUNT, String::new());
    fields.extend([
        a.kind.as_str().to_owned(),
        a.severity.as_str().to_owned(),
        a.state.as_str().to_owned(),
        a.message.clone(),
        opt(&a.cost),
    ]);
    fields
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alerts::{AlertKind, AlertState, Severity};
    use crate::store::MetricsView;

    #[test]
    fn csv_fields_are_quoted_and_formulas_defused() {
        assert_eq!(csv_field("plain"), "plain");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_field("two\nlines"), "\"two\nlines\"");
        assert_eq!(csv_field("=cmd()"), "'=cmd()");
        assert_eq!(csv_field("-12.5"), "-12.5");
        assert_eq!(csv_field(""), "");
    }

    #[test]
    fn csv_has_a_header_and_one_row_per_record_of_equal_width() {
        let point = HistoryPoint {
            meeting_id: "https://meet.example.com/a,b".into(),
            participant_id: "p\"1".into(),
            t: 10_000,
            metrics: MetricsView {
                rtt_ms: Some(42.5),
                using_relay: Some(true),
                ..Default::default()
            },
        };
        let alert = AlertRecord {
            at: 12_345,
            meeting_id: "m".into(),
            participant_id: "p".into(),
            kind: AlertKind::PacketLoss,
            severity: Severity::Warning,
            state: AlertState::Raised,
            message: "Packet loss 8.0 %, bad".into(),
            cost: None,
        };
        let mut csv = String::new();
        csv_row(&mut csv, CSV_COLUMNS.map(str::to_owned).to_vec());
        csv_row(&mut csv, csv_point(&point));
        csv_row(&mut csv, csv_alert(&alert));
        let lines: Vec<&str> = csv.split("\r\n").collect();
        assert_eq!(lines.len(), 4, "{csv}");
        assert_eq!(lines[3], "");
        assert_eq!(
            lines[0],
            "record,time_ms,meeting_id,participant_id,upload_kbps,download_kbps,rtt_ms,loss_pct,jitter_ms,\
             quality,mos,using_relay,relay_protocol,relay_server,alert_type,severity,state,message,cost"
        );
        assert_eq!(
            lines[1],
            "metrics,10000,\"https://meet.example.com/a,b\",\"p\"\"1\",,,42.5,,,,,true,,,,,,,"
        );
        assert_eq!(
            lines[2],
            "alert,12345,m,p,,,,,,,,,,,packet-loss,warning,raised,\"Packet loss 8.0 %, bad\","
        );
    }

    /// Each metric value stands under the column of its name, as the JSON export names it.
    #[test]
    fn csv_metric_values_follow_the_column_names() {
        let json = serde_json::json!({"meeting_id": "m", "participant_id": "p", "t": 0,
            "upload_kbps": 1.5, "download_kbps": 2.5, "rtt_ms": 3.5, "loss_pct": 4.5, "jitter_ms": 5.5,
            "quality": "fair", "mos": 4.1, "using_relay": true, "relay_protocol": "tcp",
            "relay_server": "turn.example"});
        let point: HistoryPoint = serde_json::from_value(json.clone()).unwrap();
        // Every metric is set, so that a value under the wrong column shows.
        assert_eq!(serde_json::to_value(&point).unwrap(), json);
        for (column, value) in CSV_COLUMNS.iter().zip(csv_point(&point)).skip(CSV_LEAD.len()) {
            let expected = match &json[*column] {
                serde_json::Value::String(s) => s.clone(),
                serde_json::Value::Number(n) => n.as_f64().unwrap().to_string(),
                other => other.to_string(),
            };
            assert_eq!(value, expected, "{column}");
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
