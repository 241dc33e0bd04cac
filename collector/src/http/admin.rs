//! The admin read API: live meetings, one meeting, history, alerts and TURN usage.
//!
//! Times in queries and answers are ms since the Unix epoch. Ranges default to the last hour
//! (alerts: the last 24 hours) and are inclusive at both ends. Live meetings, history and alerts
//! answer in pages of at most `limit` rows, with a `next_cursor` to pass back as `cursor` for the
//! rest. Every bad parameter is a 400 whose error names it.

use super::auth::AdminToken;
use super::error::ApiError;
use super::params::{
    alerts_after, history_after, invalid_cursor, meeting_after, meeting_cursor, ordered, page, Params, HOUR_MS,
};
use crate::alerts::{ActiveAlert, AlertRecord};
use crate::clock::now_ms;
use crate::state::AppState;
use crate::store::{
    history_bucket, AlertPage, HistoryPage, HistoryPoint, HistoryQuery, MeetingView, MeetingsPage, ParticipantView,
};
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;

/// The meetings of one page of live meetings: by default and at most.
pub const MEETINGS_LIMIT: Limit = Limit {
    default: 100,
    max: 1_000,
};
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

pub use super::params::Limit;

/// The admin read routes.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/meetings", get(meetings))
        .route("/api/v1/meetings/{id}", get(meeting))
        .route("/api/v1/meetings/{id}/history", get(history))
        .route("/api/v1/alerts", get(alerts))
        .route("/api/v1/turn-usage", get(turn_usage))
}

#[derive(Serialize)]
struct MeetingsResponse {
    /// Ordered by meeting id.
    meetings: Vec<MeetingView>,
    limit: usize,
    /// The `cursor` of the next page; null on the last page.
    next_cursor: Option<String>,
}

/// `GET /api/v1/meetings?limit=&cursor=`: live meetings with their participants' merged
/// metrics, ordered by id, at most `limit` (`MEETINGS_LIMIT`) a page; the rest come with
/// `cursor` (opaque: the last meeting id of the page, which a page then starts after).
async fn meetings(
    State(state): State<AppState>,
    _token: AdminToken,
    raw: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let params = Params::parse(raw, &["limit", "cursor"])?;
    let limit = params.limit(MEETINGS_LIMIT)?;
    let read = MeetingsPage {
        after: params.text("cursor").map(meeting_after).transpose()?,
        limit: limit + 1,
    };
    let rows = state.store.live_meetings_page(now_ms(), &read).await?;
    let (meetings, next_cursor) = page(rows, limit, |meetings| {
        meeting_cursor(&meetings.last().expect("a full page").meeting_id)
    });
    Ok(Json(MeetingsResponse {
        meetings,
        limit,
        next_cursor,
    }))
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

/// Most alerts of one millisecond an alerts cursor may say were sent already.
const MAX_CURSOR_SKIP: usize = 1_000_000;

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
        // A skip beyond any real page (Redis refuses offsets past i64) is not one we answered.
        Some((at, skip)) => (
            at,
            skip.parse()
                .ok()
                .filter(|skip| *skip <= MAX_CURSOR_SKIP)
                .ok_or_else(invalid_cursor)?,
        ),
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
