//! The admin read API beyond the live list: one meeting, history, alerts, TURN usage and export.
//!
//! Times in queries and answers are ms since the Unix epoch. Ranges default to the last hour
//! (alerts: the last 24 hours) and are inclusive at both ends.

use crate::alerts::{ActiveAlert, AlertRecord};
use crate::api::{now_ms, AdminToken};
use crate::error::ApiError;
use crate::store::{history_bucket, HistoryPoint, HistoryQuery, ParticipantView};
use crate::AppState;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};

const HOUR_MS: u64 = 3_600_000;

fn query<T>(query: Result<Query<T>, QueryRejection>) -> Result<T, ApiError> {
    query.map(|Query(q)| q).map_err(|r| ApiError::BadRequest(r.body_text()))
}

/// A `from`/`to` pair with defaults: `to` now, `from` `default_span_ms` before `to`.
fn range(from: Option<u64>, to: Option<u64>, default_span_ms: u64) -> Result<(u64, u64), ApiError> {
    let to = to.unwrap_or_else(now_ms);
    let from = from.unwrap_or(to.saturating_sub(default_span_ms));
    if from > to {
        return Err(ApiError::BadRequest("from must not be after to".into()));
    }
    Ok((from, to))
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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HistoryParams {
    participant: Option<String>,
    from: Option<u64>,
    to: Option<u64>,
}

#[derive(Serialize)]
pub struct HistoryResponse {
    meeting_id: String,
    from: u64,
    to: u64,
    /// Ordered by participant, then time; one point per participant per 10 s bucket.
    points: Vec<HistoryPoint>,
}

/// `GET /api/v1/meetings/{id}/history?participant=&from=&to=`: the time series for charts: the
/// points of the 10 s buckets from the one holding `from` to the last one starting by `to`.
pub async fn history(
    State(state): State<AppState>,
    _token: AdminToken,
    Path(meeting_id): Path<String>,
    params: Result<Query<HistoryParams>, QueryRejection>,
) -> Result<Json<HistoryResponse>, ApiError> {
    let params = query(params)?;
    let (from, to) = range(params.from, params.to, HOUR_MS)?;
    let points = state
        .store
        .history(&HistoryQuery {
            meeting_id: Some(meeting_id.clone()),
            participant_id: params.participant,
            // The bucket holding `from` counts: its point describes time after `from` too.
            from_ms: history_bucket(from),
            to_ms: to,
        })
        .await?;
    Ok(Json(HistoryResponse {
        meeting_id,
        from,
        to,
        points,
    }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertParams {
    since: Option<u64>,
    meeting: Option<String>,
}

#[derive(Serialize)]
pub struct AlertsResponse {
    since: u64,
    /// Raised and resolved alerts, oldest first.
    alerts: Vec<AlertRecord>,
}

/// `GET /api/v1/alerts?since=&meeting=`: the alert history (default: the last 24 hours).
pub async fn alerts(
    State(state): State<AppState>,
    _token: AdminToken,
    params: Result<Query<AlertParams>, QueryRejection>,
) -> Result<Json<AlertsResponse>, ApiError> {
    let params = query(params)?;
    let since = params.since.unwrap_or(now_ms().saturating_sub(24 * HOUR_MS));
    let alerts = state.store.alert_history(since, params.meeting.as_deref()).await?;
    Ok(Json(AlertsResponse { since, alerts }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RangeParams {
    from: Option<u64>,
    to: Option<u64>,
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
/// the buckets starting from `from` rounded down to the minute up to `to`).
pub async fn turn_usage(
    State(state): State<AppState>,
    _token: AdminToken,
    params: Result<Query<RangeParams>, QueryRejection>,
) -> Result<Json<TurnUsageResponse>, ApiError> {
    let params = query(params)?;
    let (from, to) = range(params.from, params.to, 24 * HOUR_MS)?;
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
        from,
        to,
        price_per_gb,
        total_bytes,
        total_cost: crate::turn::cost(total_bytes as f64, price_per_gb),
        usage,
    }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportParams {
    format: Option<String>,
    from: Option<u64>,
    to: Option<u64>,
}

#[derive(Serialize)]
struct ExportJson {
    from: u64,
    to: u64,
    history: Vec<HistoryPoint>,
    alerts: Vec<AlertRecord>,
}

/// `GET /api/v1/export?format=csv|json&from=&to=`: every history point and alert of the range
/// (default: the last hour), as a download.
pub async fn export(
    State(state): State<AppState>,
    _token: AdminToken,
    params: Result<Query<ExportParams>, QueryRejection>,
) -> Result<Response, ApiError> {
    let params = query(params)?;
    let csv = match params.format.as_deref() {
        None | Some("json") => false,
        Some("csv") => true,
        Some(_) => return Err(ApiError::BadRequest("format must be csv or json".into())),
    };
    let (from, to) = range(params.from, params.to, HOUR_MS)?;
    let history = state
        .store
        .history(&HistoryQuery {
            from_ms: history_bucket(from),
            to_ms: to,
            ..Default::default()
        })
        .await?;
    let alerts: Vec<AlertRecord> = state
        .store
        .alert_history(from, None)
        .await?
        .into_iter()
        .filter(|a| a.at <= to)
        .collect();
    let file = format!("call-vitals-{from}-{to}");
    if csv {
        Ok((
            [
                (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_owned()),
                (
                    header::CONTENT_DISPOSITION,
                    format!("attachment; filename=\"{file}.csv\""),
                ),
            ],
            to_csv(&history, &alerts),
        )
            .into_response())
    } else {
        Ok((
            [(
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{file}.json\""),
            )],
            Json(ExportJson {
                from,
                to,
                history,
                alerts,
            }),
        )
            .into_response())
    }
}

/// The CSV columns: a `record` column says whether a row is a metrics point or an alert.
pub const CSV_COLUMNS: [&str; 19] = [
    "record",
    "time_ms",
    "meeting_id",
    "participant_id",
    "upload_kbps",
    "download_kbps",
    "rtt_ms",
    "loss_pct",
    "jitter_ms",
    "quality",
    "mos",
    "using_relay",
    "relay_protocol",
    "relay_server",
    "alert_type",
    "severity",
    "state",
    "message",
    "cost",
];

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

fn opt<T: ToString>(value: &Option<T>) -> String {
    value.as_ref().map(T::to_string).unwrap_or_default()
}

/// The history points, then the alerts, as CSV with a header line; lines end with CRLF.
pub fn to_csv(history: &[HistoryPoint], alerts: &[AlertRecord]) -> String {
    let mut out = String::new();
    let mut line = |fields: Vec<String>| {
        let escaped: Vec<String> = fields.iter().map(|f| csv_field(f)).collect();
        out.push_str(&escaped.join(","));
        out.push_str("\r\n");
    };
    line(CSV_COLUMNS.iter().map(|c| c.to_string()).collect());
    for p in history {
        let m = &p.metrics;
        let mut fields = vec![
            "metrics".to_owned(),
            p.t.to_string(),
            p.meeting_id.clone(),
            p.participant_id.clone(),
            opt(&m.upload_kbps),
            opt(&m.download_kbps),
            opt(&m.rtt_ms),
            opt(&m.loss_pct),
            opt(&m.jitter_ms),
            m.quality.map(|q| q.as_str().to_owned()).unwrap_or_default(),
            opt(&m.mos),
            opt(&m.using_relay),
            opt(&m.relay_protocol),
            opt(&m.relay_server),
        ];
        fields.resize(CSV_COLUMNS.len(), String::new());
        line(fields);
    }
    for a in alerts {
        let mut fields = vec![
            "alert".to_owned(),
            a.at.to_string(),
            a.meeting_id.clone(),
            a.participant_id.clone(),
        ];
        fields.resize(14, String::new());
        fields.extend([
            a.kind.as_str().to_owned(),
            serde_json::to_value(a.severity)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default(),
            match a.state {
                crate::alerts::AlertState::Raised => "raised".to_owned(),
                crate::alerts::AlertState::Resolved => "resolved".to_owned(),
            },
            a.message.clone(),
            opt(&a.cost),
        ]);
        line(fields);
    }
    out
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
        let csv = to_csv(&[point], &[alert]);
        let lines: Vec<&str> = csv.split("\r\n").collect();
        assert_eq!(lines.len(), 4, "{csv}");
        assert_eq!(lines[3], "");
        assert_eq!(lines[0], CSV_COLUMNS.join(","));
        assert_eq!(
            lines[1],
            "metrics,10000,\"https://meet.example.com/a,b\",\"p\"\"1\",,,42.5,,,,,true,,,,,,,"
        );
        assert_eq!(
            lines[2],
            "alert,12345,m,p,,,,,,,,,,,packet-loss,warning,raised,\"Packet loss 8.0 %, bad\","
        );
    }
}
