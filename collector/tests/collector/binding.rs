//! Participant binding over the ingest API: a second writer without the participant token is refused and changes nothing, seq jumps are bounded, tokens are per (meeting, participant) and shared by collectors with one admin token.

use crate::support::{send, Answer, TestRedis};
use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use serde_json::{json, Value};
use std::sync::Arc;
use vitals_collector::store::MAX_SEQ;
use vitals_collector::{app, App, AppState, Secret, Settings, MAX_SEQ_JUMP};

const INGEST_KEY: &str = "ingest-key-for-tests";
const ADMIN_TOKEN: &str = "admin-token-for-tests";
const MEETING: &str = "https://meet.example.com/bound";

/// One event of `participant` in `meeting`; `full` replaces the state (a forger's "erase").
fn batch(meeting: &str, participant: &str, seq: u64, full: bool, metrics: Value, token: Option<&str>) -> Value {
    let mut batch = json!({"meeting_id": meeting, "participant_id": participant, "label": "Alice",
        "events": [{"seq": seq, "ts_ms": 0, "full": full, "metrics": metrics}]});
    if let Some(token) = token {
        batch["participant_token"] = token.into();
    }
    batch
}

async fn post(app: &App, body: &Value) -> Answer {
    let request = Request::post("/api/v1/ingest")
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::AUTHORIZATION, format!("Bearer {INGEST_KEY}"))
        .body(Body::from(body.to_string()))
        .unwrap();
    send(app, request).await
}

/// Posts the first batch of `participant` (rtt 10 ms, label Alice); its participant token.
async fn claim(app: &App, meeting: &str, participant: &str) -> String {
    let answer = post(
        app,
        &batch(meeting, participant, 1, true, json!({"rtt_ms": 10.0}), None),
    )
    .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
    assert_eq!(answer.body["accepted"], json!([1]));
    let token = answer.body["participant_token"]
        .as_str()
        .expect("the ack carries a token");
    assert_eq!(token.len(), vitals_collector::participant::TOKEN_LEN);
    token.to_owned()
}

/// `GET path` as the admin; the answer must be a 200.
async fn admin_get(app: &App, path: &str) -> Answer {
    let request = Request::get(path)
        .header(header::AUTHORIZATION, format!("Bearer {ADMIN_TOKEN}"))
        .body(Body::empty())
        .unwrap();
    let answer = send(app, request).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
    answer
}

/// The participant as `GET /api/v1/meetings` shows it.
async fn shown(app: &App, meeting: &str, participant: &str) -> Value {
    let answer = admin_get(app, "/api/v1/meetings").await;
    answer.body["meetings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["meeting_id"] == meeting)
        .flat_map(|m| m["participants"].as_array().unwrap().clone())
        .find(|p| p["participant_id"] == participant)
        .unwrap_or_else(|| panic!("{participant} not shown: {}", answer.body))
}

fn assert_refused(answer: &Answer, status: StatusCode, starts: &str) {
    assert_eq!(answer.status, status, "{}", answer.text);
    let error = answer.body["error"].as_str().expect("a JSON error");
    assert!(error.starts_with(starts), "{error}");
}

#[tokio::test]
async fn a_second_writer_without_the_token_is_refused_and_the_participants_fields_are_unchanged() {
    let app = app(AppState::for_tests(INGEST_KEY, ADMIN_TOKEN));
    let token = claim(&app, MEETING, "alice").await;
    let before = shown(&app, MEETING, "alice").await;
    let mut forged = batch(MEETING, "alice", 2, false, json!({"rtt_ms": 999.0}), None);
    forged["label"] = "Mallory".into();
    assert_refused(
        &post(&app, &forged).await,
        StatusCode::FORBIDDEN,
        "missing participant token",
    );
    forged["participant_token"] = "0".repeat(64).into();
    assert_refused(
        &post(&app, &forged).await,
        StatusCode::FORBIDDEN,
        "wrong participant token",
    );
    let after = shown(&app, MEETING, "alice").await;
    assert_eq!(after, before, "nothing of the refused batches was applied");
    assert_eq!(
        (after["label"].as_str(), after["rtt_ms"].as_f64()),
        (Some("Alice"), Some(10.0))
    );

    // The real writer, with its token, keeps writing (seq 2 was not taken by the forger).
    let real = post(
        &app,
        &batch(MEETING, "alice", 2, false, json!({"rtt_ms": 20.0}), Some(&token)),
    )
    .await;
    assert_eq!(real.status, StatusCode::OK, "{}", real.text);
    assert_eq!(real.body["participant_token"], token.as_str(), "the same token again");
    let after = shown(&app, MEETING, "alice").await;
    assert_eq!(
        (after["last_seq"].as_u64(), after["rtt_ms"].as_f64()),
        (Some(2), Some(20.0))
    );
}

#[tokio::test]
async fn a_forged_huge_seq_without_the_token_cannot_freeze_or_erase_a_participant() {
    let app = app(AppState::for_tests(INGEST_KEY, ADMIN_TOKEN));
    let token = claim(&app, MEETING, "bob").await;
    // One event at the highest seq, a full snapshot with no fields: it would erase every field and
    // win over every later real event. And the sparse huge seqs that would raise the seq floor.
    let erase = batch(MEETING, "bob", MAX_SEQ, true, json!({}), None);
    assert_refused(
        &post(&app, &erase).await,
        StatusCode::FORBIDDEN,
        "missing participant token",
    );
    for i in 0..70 {
        let sparse = batch(MEETING, "bob", MAX_SEQ - 2 * i, false, json!({"rtt_ms": 1.0}), None);
        assert_eq!(post(&app, &sparse).await.status, StatusCode::FORBIDDEN);
    }
    let shown_now = shown(&app, MEETING, "bob").await;
    assert_eq!(
        (shown_now["last_seq"].as_u64(), shown_now["rtt_ms"].as_f64()),
        (Some(1), Some(10.0))
    );
    // Later real events are applied, not frozen out or silently dropped.
    for seq in 2..=4 {
        let rtt = 10.0 * seq as f64;
        let real = post(
            &app,
            &batch(MEETING, "bob", seq, false, json!({"rtt_ms": rtt}), Some(&token)),
        )
        .await;
        assert_eq!(real.status, StatusCode::OK, "{}", real.text);
        assert_eq!(real.body["accepted"], json!([seq]));
    }
    let shown_now = shown(&app, MEETING, "bob").await;
    assert_eq!(
        (shown_now["last_seq"].as_u64(), shown_now["rtt_ms"].as_f64()),
        (Some(4), Some(40.0))
    );
}

#[tokio::test]
async fn a_seq_jump_is_refused_even_with_the_token_and_changes_nothing() {
    let app = app(AppState::for_tests(INGEST_KEY, ADMIN_TOKEN));
    let token = claim(&app, MEETING, "carol").await;
    let too_far = 1 + MAX_SEQ_JUMP + 1;
    let mut jump = batch(MEETING, "carol", 2, false, json!({"rtt_ms": 30.0}), Some(&token));
    jump["events"]
        .as_array_mut()
        .unwrap()
        .push(json!({"seq": too_far, "ts_ms": 0, "full": true, "metrics": {}}));
    let answer = post(&app, &jump).await;
    assert_refused(
        &answer,
        StatusCode::BAD_REQUEST,
        &format!("event {too_far}: seq is more than"),
    );
    let shown_now = shown(&app, MEETING, "carol").await;
    assert_eq!(
        (shown_now["last_seq"].as_u64(), shown_now["rtt_ms"].as_f64()),
        (Some(1), Some(10.0)),
        "the whole batch was refused"
    );
    // Up to the bound is fine, and the participant keeps writing from there.
    let edge = batch(
        MEETING,
        "carol",
        1 + MAX_SEQ_JUMP,
        false,
        json!({"rtt_ms": 40.0}),
        Some(&token),
    );
    assert_eq!(post(&app, &edge).await.status, StatusCode::OK);
    let next = batch(
        MEETING,
        "carol",
        2 + MAX_SEQ_JUMP,
        false,
        json!({"rtt_ms": 50.0}),
        Some(&token),
    );
    assert_eq!(post(&app, &next).await.status, StatusCode::OK);
    let shown_now = shown(&app, MEETING, "carol").await;
    assert_eq!(shown_now["last_seq"].as_u64(), Some(2 + MAX_SEQ_JUMP));
    assert_eq!(shown_now["rtt_ms"].as_f64(), Some(50.0));
    // A new participant may start anywhere (the bound is for existing records).
    let fresh = batch(MEETING, "dave", 5 * MAX_SEQ_JUMP, true, json!({"rtt_ms": 5.0}), None);
    assert_eq!(post(&app, &fresh).await.status, StatusCode::OK);
}

#[tokio::test]
async fn a_token_works_only_for_its_own_meeting_and_participant() {
    let app = app(AppState::for_tests(INGEST_KEY, ADMIN_TOKEN));
    let other_meeting = "https://meet.example.com/other";
    let alice = claim(&app, MEETING, "alice").await;
    let bob = claim(&app, MEETING, "bob").await;
    let alice_elsewhere = claim(&app, other_meeting, "alice").await;
    assert!(alice != bob && alice != alice_elsewhere && bob != alice_elsewhere);
    for (meeting, participant, token) in [
        (MEETING, "bob", &alice),
        (MEETING, "alice", &bob),
        (other_meeting, "alice", &alice),
        (MEETING, "alice", &alice_elsewhere),
    ] {
        let answer = post(
            &app,
            &batch(meeting, participant, 2, false, json!({"rtt_ms": 1.0}), Some(token)),
        )
        .await;
        assert_refused(&answer, StatusCode::FORBIDDEN, "wrong participant token");
    }
    for (meeting, participant, token) in [
        (MEETING, "alice", &alice),
        (MEETING, "bob", &bob),
        (other_meeting, "alice", &alice_elsewhere),
    ] {
        let answer = post(
            &app,
            &batch(meeting, participant, 2, false, json!({"rtt_ms": 1.0}), Some(token)),
        )
        .await;
        assert_eq!(
            answer.status,
            StatusCode::OK,
            "{meeting} {participant}: {}",
            answer.text
        );
    }
}

#[tokio::test]
async fn a_refused_writer_drains_nothing_of_the_participants_rate_limit() {
    // The per-participant limit (burst 20) is kept per client address: the forger here writes
    // from the real writer's address, so only the order of the checks protects the writer.
    let app = app(AppState::for_tests(INGEST_KEY, ADMIN_TOKEN));
    let token = claim(&app, MEETING, "erin").await;
    for seq in 2..40 {
        let forged = batch(MEETING, "erin", seq, false, json!({"rtt_ms": 999.0}), None);
        assert_eq!(post(&app, &forged).await.status, StatusCode::FORBIDDEN, "seq {seq}");
    }
    let real = post(
        &app,
        &batch(MEETING, "erin", 2, false, json!({"rtt_ms": 20.0}), Some(&token)),
    )
    .await;
    assert_eq!(real.status, StatusCode::OK, "{}", real.text);
}

#[tokio::test]
async fn collectors_with_the_same_admin_token_accept_each_others_tokens() {
    let redis = TestRedis::start().await;
    let settings = Settings::default();
    let collector = |admin_token: &str, settings: Settings| {
        app(AppState::new(
            Arc::new(redis.store(60_000)),
            Secret::new(INGEST_KEY),
            Secret::new(admin_token),
        )
        .with_settings(settings))
    };
    // Two processes on one Redis, built from the same settings and admin token.
    let (a, b) = (
        collector(ADMIN_TOKEN, settings.clone()),
        collector(ADMIN_TOKEN, settings.clone()),
    );
    let token = claim(&a, MEETING, "frank").await;
    let at_b = post(
        &b,
        &batch(MEETING, "frank", 2, false, json!({"rtt_ms": 20.0}), Some(&token)),
    )
    .await;
    assert_eq!(at_b.status, StatusCode::OK, "{}", at_b.text);
    assert_eq!(at_b.body["participant_token"], token.as_str());
    let without = post(&b, &batch(MEETING, "frank", 3, false, json!({"rtt_ms": 30.0}), None)).await;
    assert_refused(&without, StatusCode::FORBIDDEN, "missing participant token");
    // Another admin token, or a participant secret of its own, is another key.
    let other_admin = collector("another-admin-token", settings.clone());
    let secret = Settings {
        participant_secret: Some(Secret::new("participant-secret-for-tests")),
        ..settings
    };
    let (own_secret, same_secret) = (collector(ADMIN_TOKEN, secret.clone()), collector("yet-another", secret));
    for other in [&other_admin, &own_secret] {
        let answer = post(
            other,
            &batch(MEETING, "frank", 3, false, json!({"rtt_ms": 30.0}), Some(&token)),
        )
        .await;
        assert_refused(&answer, StatusCode::FORBIDDEN, "wrong participant token");
    }
    // Processes sharing the participant secret accept each other's tokens whatever their admin
    // tokens.
    let grace = claim(&own_secret, MEETING, "grace").await;
    let answer = post(
        &same_secret,
        &batch(MEETING, "grace", 2, false, json!({}), Some(&grace)),
    )
    .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
}

/// Posts `participant`'s event `seq` reporting `dropped` events and `refused` uploads.
async fn report_health(app: &App, token: &str, seq: u64, dropped: u64, refused: u64) {
    let mut body = batch(MEETING, "henry", seq, false, json!({"rtt_ms": 10.0}), Some(token));
    body["client_health"] = json!({"dropped_events": dropped, "refused_uploads": refused});
    let answer = post(app, &body).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
}

/// The `/metrics` value of the counter `name`.
async fn counter(app: &App, name: &str) -> u64 {
    let answer = admin_get(app, "/metrics").await;
    let line = answer
        .text
        .lines()
        .find(|l| l.starts_with(&format!("{name} ")))
        .unwrap_or_else(|| panic!("no {name} in {}", answer.text));
    line[name.len() + 1..].parse().unwrap()
}

async fn client_health_is_shown_to_admins_and_counted_once(app: &App) {
    let token = claim(app, MEETING, "henry").await;
    assert!(shown(app, MEETING, "henry").await.get("client_health").is_none());
    report_health(app, &token, 2, 3, 1).await;
    // A retried report, and an older one arriving late, count nothing more and lower nothing.
    report_health(app, &token, 2, 3, 1).await;
    report_health(app, &token, 3, 2, 0).await;
    report_health(app, &token, 4, 7, 1).await;
    assert_eq!(
        shown(app, MEETING, "henry").await["client_health"],
        json!({"dropped_events": 7, "refused_uploads": 1})
    );
    assert_eq!(counter(app, "vitals_client_dropped_events_total").await, 7);
    assert_eq!(counter(app, "vitals_client_refused_uploads_total").await, 1);
    // Counts beyond what JavaScript can hold exactly are a clear 400 that changes nothing.
    let mut huge = batch(MEETING, "henry", 5, false, json!({}), Some(&token));
    huge["client_health"] = json!({"dropped_events": 1u64 << 60, "refused_uploads": 0});
    assert_refused(&post(app, &huge).await, StatusCode::BAD_REQUEST, "client_health counts");
    assert_eq!(counter(app, "vitals_client_dropped_events_total").await, 7);
}

#[tokio::test]
async fn the_extensions_dropped_and_refused_counts_are_shown_to_admins_and_in_metrics_memory() {
    client_health_is_shown_to_admins_and_counted_once(&app(AppState::for_tests(INGEST_KEY, ADMIN_TOKEN))).await;
}

#[tokio::test]
async fn the_extensions_dropped_and_refused_counts_are_shown_to_admins_and_in_metrics_redis() {
    let redis = TestRedis::start().await;
    let state = AppState::new(
        Arc::new(redis.store(60_000)),
        Secret::new(INGEST_KEY),
        Secret::new(ADMIN_TOKEN),
    );
    client_health_is_shown_to_admins_and_counted_once(&app(state)).await;
}
