//! `GET /api/v1/export`: every history point and alert of a range (and meeting) as CSV or JSON, streamed a bounded page at a time, at most a bounded number of rows.
//!
//! Linear in the series and rows: the range's series are listed once (one index read), counted
//! against the row bound before the first byte, then read a window of them at a time, each page
//! starting where the previous one ended (never listing the series again).

use super::auth::AdminToken;
use super::error::ApiError;
use super::params::{alerts_after, bad, history_after, Params, HOUR_MS};
use crate::alerts::AlertRecord;
use crate::state::AppState;
use crate::store::{
    history_bucket, AlertPage, HistoryPage, HistoryPoint, HistoryPosition, HistoryQuery, SeriesKey, Store, StoreError,
    FIELD_COUNT, FIELD_NAMES,
};
use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use futures_util::StreamExt;
use serde::Serialize;
use std::sync::Arc;
use vitals_shared::fields::FieldValue;

/// How many rows the export reads from the store, and so holds, at a time.
pub const EXPORT_CHUNK_ROWS: usize = 1_000;
/// How many series one read of the export looks at, at most.
const EXPORT_CHUNK_SERIES: usize = 256;
/// The most rows one export answers unless configured otherwise (`VITALS_EXPORT_MAX_ROWS`).
pub const EXPORT_MAX_ROWS: usize = 1_000_000;

/// The export route.
pub fn router() -> Router<AppState> {
    Router::new().route("/api/v1/export", get(export))
}

/// `GET /api/v1/export?format=csv|json&from=&to=&meeting=`: every history point and alert of the
/// range (default: the last hour), of one meeting when `meeting` is given, as a download streamed
/// while it is read from the store, at most `EXPORT_CHUNK_ROWS` rows at a time. JSON is
/// `{"from", "to", "history": [...], "alerts": [...]}`. More than the settings' `export_max_rows`
/// rows is a 413 that says to narrow the range or name a meeting. A store failure before the
/// first byte is an error status; after it, the body is cut off (never a file that looks
/// complete).
async fn export(
    State(state): State<AppState>,
    _token: AdminToken,
    raw: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Result<Response, ApiError> {
    let params = Params::parse(raw, &["format", "from", "to", "meeting"])?;
    let csv = match params.text("format") {
        None | Some("json") => false,
        Some("csv") => true,
        Some(_) => return Err(bad("format must be csv or json".into())),
    };
    let (from, to) = params.range(HOUR_MS)?;
    let meeting_id = params.text("meeting").map(str::to_owned);
    let query = HistoryQuery {
        meeting_id: meeting_id.clone(),
        participant_id: None,
        from_ms: history_bucket(from),
        to_ms: to,
    };
    let series = state.store.history_series(&query).await?;
    let max_rows = state.settings.export_max_rows;
    let points = state.store.history_count(&series, query.from_ms, to, max_rows).await?;
    let alerts = AlertPage {
        from_ms: from,
        to_ms: to,
        meeting_id: meeting_id.clone(),
        skip: 0,
        limit: max_rows.saturating_add(1),
    };
    if points > max_rows || points + state.store.alert_count(&alerts).await? > max_rows {
        return Err(ApiError::ExportTooLarge { max_rows });
    }
    let mut export = Export {
        store: state.store.clone(),
        csv,
        from,
        to,
        meeting_id,
        series,
        next_series: 0,
        started: false,
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
    meeting_id: Option<String>,
    /// Every series of the range (and meeting), sorted, listed once.
    series: Vec<SeriesKey>,
    /// The first series of `series` the next history read looks at.
    next_series: usize,
    /// Whether the head (CSV header, JSON opening) was written.
    started: bool,
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
                if !self.started {
                    self.started = true;
                    if self.csv {
                        csv_row(&mut out, CSV_COLUMNS.map(str::to_owned).to_vec());
                    } else {
                        out.push_str(&format!("{{\"from\":{},\"to\":{},\"history\":[", self.from, self.to));
                    }
                }
                let end = self.series.len().min(self.next_series + EXPORT_CHUNK_SERIES);
                let window = &self.series[self.next_series..end];
                let query = HistoryPage {
                    query: HistoryQuery {
                        meeting_id: self.meeting_id.clone(),
                        participant_id: None,
                        from_ms: history_bucket(self.from),
                        to_ms: self.to,
                    },
                    after,
                    limit: EXPORT_CHUNK_ROWS,
                };
                let points = self.store.series_page(window, &query).await?;
                // A full page: the next one starts after its last point, in that point's series.
                let full = match points.last() {
                    Some(last) if points.len() == EXPORT_CHUNK_ROWS => {
                        let series = window.partition_point(|(m, p)| {
                            (m.as_str(), p.as_str()) < (last.meeting_id.as_str(), last.participant_id.as_str())
                        });
                        Some((self.next_series + series, history_after(last)))
                    }
                    _ => None,
                };
                for point in &points {
                    self.row(&mut out, point, csv_point);
                }
                self.step = match full {
                    Some((series, after)) => {
                        self.next_series = series;
                        Step::History(Some(after))
                    }
                    // The window is done: the next one, or the alerts.
                    None if end < self.series.len() => {
                        self.next_series = end;
                        Step::History(None)
                    }
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
                    meeting_id: self.meeting_id.clone(),
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

/// Participant-chosen text that a spreadsheet would run as a formula (it starts with `=`, `+`,
/// `-` or `@`, or with a TAB or CR, which spreadsheets skip before reading a formula, and is not
/// a number) gets a leading `'`.
fn defused(value: &str) -> std::borrow::Cow<'_, str> {
    if value.starts_with(['=', '+', '-', '@', '\t', '\r']) && value.parse::<f64>().is_err() {
        format!("'{value}").into()
    } else {
        value.into()
    }
}

/// A CSV writer of RFC 4180 records (quoted only where needed, CRLF line ends).
fn csv_writer() -> csv::Writer<Vec<u8>> {
    csv::WriterBuilder::new()
        .quote_style(csv::QuoteStyle::Necessary)
        .terminator(csv::Terminator::CRLF)
        .from_writer(Vec::new())
}

/// The text of a CSV writer's buffer (the fields it was given were UTF-8).
fn written(writer: csv::Writer<Vec<u8>>) -> String {
    let bytes = writer.into_inner().expect("a Vec never fails to flush");
    String::from_utf8(bytes).expect("CSV of UTF-8 fields is UTF-8")
}

/// One CSV field as [`csv_row`] writes it (RFC 4180, by the `csv` crate): quoted when it holds a
/// comma, quote or line break, quotes doubled; formulas defused.
#[cfg(test)]
fn csv_field(value: &str) -> String {
    // Written as a record of its own, less the line end. (A lone empty field would be quoted,
    // to tell it from no record at all; as a field of a row it is empty.)
    if value.is_empty() {
        return String::new();
    }
    let mut writer = csv_writer();
    writer
        .write_record([defused(value).as_ref()])
        .expect("writing to a Vec never fails");
    let mut field = written(writer);
    field.truncate(field.len() - "\r\n".len());
    field
}

/// Appends one CSV line of `CSV_WIDTH` fields (missing ones empty), ending with CRLF.
fn csv_row(out: &mut String, mut fields: Vec<String>) {
    fields.resize(CSV_WIDTH, String::new());
    let mut writer = csv_writer();
    writer
        .write_record(fields.iter().map(|f| defused(f).into_owned()))
        .expect("writing to a Vec never fails");
    out.push_str(&written(writer));
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
    fn a_leading_tab_or_carriage_return_is_defused_too() {
        assert_eq!(defused("\t=cmd()"), "'\t=cmd()");
        assert_eq!(defused("\r=cmd()"), "'\r=cmd()");
        assert_eq!(csv_field("\t=1+1"), "'\t=1+1");
        assert_eq!(defused("a\tb"), "a\tb");
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
                findings: Some("packet-loss,mic-silent".into()),
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
             quality,mos,using_relay,relay_protocol,relay_server,findings,alert_type,severity,state,message,cost"
        );
        assert_eq!(
            lines[1],
            "metrics,10000,\"https://meet.example.com/a,b\",\"p\"\"1\",,,42.5,,,,,true,,,\"packet-loss,mic-silent\",,,,,"
        );
        assert_eq!(
            lines[2],
            "alert,12345,m,p,,,,,,,,,,,,packet-loss,warning,raised,\"Packet loss 8.0 %, bad\","
        );
    }

    /// Each metric value stands under the column of its name, as the JSON export names it.
    #[test]
    fn csv_metric_values_follow_the_column_names() {
        let json = serde_json::json!({"meeting_id": "m", "participant_id": "p", "t": 0,
            "upload_kbps": 1.5, "download_kbps": 2.5, "rtt_ms": 3.5, "loss_pct": 4.5, "jitter_ms": 5.5,
            "quality": "fair", "mos": 4.1, "using_relay": true, "relay_protocol": "tcp",
            "relay_server": "turn.example", "findings": "high-jitter"});
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
}
