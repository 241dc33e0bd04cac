//! Flood limits over real sockets and both stores: client addresses, the new-id quota, `/metrics` behind a token and without the store, the request timeout.

use crate::support::{now_ms, send, TestRedis};
use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use vitals_collector::admission::AdmissionLimits;
use vitals_collector::ratelimit::RateLimit;
use vitals_collector::store::{self as store, MemoryStore, Store, StoreFuture};
use vitals_collector::{AppState, Secret, ServerLimits, Settings};

const INGEST_KEY: &str = "flood-ingest-key";
const ADMIN_TOKEN: &str = "flood-admin-token";

fn body(meeting: &str, participant: &str, seq: u64) -> String {
    crate::support::rtt_batch(ADMIN_TOKEN, meeting, participant, seq)
}

fn ingest_request(body: String, forwarded_for: Option<&str>) -> Request<Body> {
    let mut request = Request::post("/api/v1/ingest")
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::AUTHORIZATION, format!("Bearer {INGEST_KEY}"));
    if let Some(address) = forwarded_for {
        request = request.header("x-forwarded-for", address);
    }
    request.body(Body::from(body)).unwrap()
}

/// Serves `state` on a loopback port; its address.
pub(crate) async fn serve(state: AppState) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(vitals_collector::serve(listener, state));
    address
}

/// A connection to `server` from the loopback address `from` (127.0.0.0/8 is all local).
async fn connect_from(from: IpAddr, server: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::new(from, 0)).unwrap();
    socket.connect(server).await.unwrap()
}

/// Posts one ingest body over a new connection from `from`; the answer's status.
async fn post_from(from: IpAddr, server: SocketAddr, body: &str) -> u16 {
    let mut stream = connect_from(from, server).await;
    let request = format!(
        "POST /api/v1/ingest HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {INGEST_KEY}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.unwrap();
    answer.split(' ').nth(1).and_then(|code| code.parse().ok()).unwrap_or(0)
}

#[tokio::test]
async fn another_client_address_cannot_drain_a_participants_rate_limit() {
    let state = AppState::for_tests(INGEST_KEY, ADMIN_TOKEN);
    let server = serve(state).await;
    let attacker: IpAddr = "127.0.0.2".parse().unwrap();
    let owner: IpAddr = "127.0.0.1".parse().unwrap();
    let mut statuses = Vec::new();
    for seq in 1..=30 {
        statuses.push(post_from(attacker, server, &body("m", "victim", seq)).await);
    }
    assert!(statuses.contains(&429), "the attacker is limited: {statuses:?}");
    assert_eq!(
        post_from(owner, server, &body("m", "victim", 100)).await,
        200,
        "the participant's own client still gets through"
    );
}

#[tokio::test]
async fn behind_a_trusted_proxy_the_forwarded_address_is_the_client() {
    let settings = Settings {
        admission: AdmissionLimits {
            trust_proxy: true,
            ..Default::default()
        },
        ..Default::default()
    };
    let app = vitals_collector::app(AppState::for_tests(INGEST_KEY, ADMIN_TOKEN).with_settings(settings));
    let mut limited = false;
    for seq in 1..=30 {
        let answer = send(&app, ingest_request(body("m", "victim", seq), Some("203.0.113.9"))).await;
        limited |= answer.status == StatusCode::TOO_MANY_REQUESTS;
    }
    assert!(limited, "the forwarded client is limited");
    let answer = send(&app, ingest_request(body("m", "victim", 100), Some("198.51.100.7"))).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
}

/// Posts 10,000 batches of new participants from one client; how many were stored.
async fn ten_thousand_new_ids(store: Arc<dyn Store>) -> usize {
    let settings = Settings {
        admission: AdmissionLimits {
            per_client: RateLimit {
                per_sec: 1e6,
                burst: 1e6,
            },
            global: RateLimit {
                per_sec: 1e6,
                burst: 1e6,
            },
            new_ids_per_min: 50,
            trust_proxy: false,
        },
        ..Default::default()
    };
    let state =
        AppState::new(Arc::clone(&store), Secret::new(INGEST_KEY), Secret::new(ADMIN_TOKEN)).with_settings(settings);
    let app = vitals_collector::app(state);
    let mut accepted = 0;
    for i in 0..10_000 {
        let answer = send(
            &app,
            ingest_request(body(&format!("m{}", i % 100), &format!("p{i}"), 1), None),
        )
        .await;
        match answer.status {
            StatusCode::OK => accepted += 1,
            StatusCode::TOO_MANY_REQUESTS => {
                let retry_after: u64 = answer.headers[header::RETRY_AFTER].to_str().unwrap().parse().unwrap();
                assert!((1..=60).contains(&retry_after), "{retry_after}");
            }
            other => panic!("unexpected {other}: {}", answer.text),
        }
    }
    assert_eq!(accepted, 50);
    let meetings = store.live_meetings(now_ms()).await.unwrap();
    meetings.iter().map(|m| m.participants.len()).sum()
}

#[tokio::test]
async fn ten_thousand_new_ids_from_one_client_hit_the_quota_memory() {
    assert_eq!(ten_thousand_new_ids(Arc::new(MemoryStore::default())).await, 50);
}

#[tokio::test]
async fn ten_thousand_new_ids_from_one_client_hit_the_quota_redis() {
    let redis = TestRedis::start().await;
    let store = redis.store(store::LIVE_TTL_MS);
    assert_eq!(ten_thousand_new_ids(Arc::new(store)).await, 50);
}

#[tokio::test]
async fn metrics_need_the_metrics_or_admin_token() {
    let settings = Settings {
        metrics_token: Some(Secret::new("scrape-token")),
        ..Default::default()
    };
    let app = vitals_collector::app(AppState::for_tests(INGEST_KEY, ADMIN_TOKEN).with_settings(settings));
    let get = |token: Option<&str>| {
        let mut request = Request::get("/metrics");
        if let Some(token) = token {
            request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
        }
        send(&app, request.body(Body::empty()).unwrap())
    };
    assert_eq!(get(None).await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(get(Some(INGEST_KEY)).await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(get(Some("scrape-token")).await.status, StatusCode::OK);
    assert_eq!(get(Some(ADMIN_TOKEN)).await.status, StatusCode::OK);
}

/// The real store, counting every call made to it, and the history series handed to it.
pub(crate) struct Counting {
    pub(crate) inner: Arc<dyn Store>,
    pub(crate) calls: AtomicUsize,
    /// Calls listing the history series.
    pub(crate) series_listed: AtomicUsize,
    /// Series handed to the calls that read or count history points, summed.
    pub(crate) series_read: AtomicUsize,
}

impl Counting {
    pub(crate) fn new(inner: Arc<dyn Store>) -> Self {
        Self {
            inner,
            calls: AtomicUsize::new(0),
            series_listed: AtomicUsize::new(0),
            series_read: AtomicUsize::new(0),
        }
    }

    fn count(&self) {
        self.calls.fetch_add(1, Ordering::SeqCst);
    }

    fn read(&self, series: usize) {
        self.series_read.fetch_add(series, Ordering::SeqCst);
    }
}

impl Store for Counting {
    fn live_ttl_ms(&self) -> u64 {
        self.inner.live_ttl_ms()
    }
    fn load<'a>(&'a self, key: &'a store::ParticipantKey) -> StoreFuture<'a, store::Versioned> {
        self.count();
        self.inner.load(key)
    }
    fn commit(&self, commit: store::Commit) -> StoreFuture<'_, store::CommitOutcome> {
        self.count();
        self.inner.commit(commit)
    }
    fn due(&self, now_ms: u64, limit: usize) -> StoreFuture<'_, Vec<store::ParticipantKey>> {
        // The sweeper's, not a request's: not counted.
        self.inner.due(now_ms, limit)
    }
    fn publish_target(&self) -> Option<&str> {
        self.inner.publish_target()
    }
    fn live_meetings(&self, now_ms: u64) -> StoreFuture<'_, Vec<store::MeetingView>> {
        self.count();
        self.inner.live_meetings(now_ms)
    }
    fn live_meetings_page<'a>(
        &'a self,
        now_ms: u64,
        page: &'a store::MeetingsPage,
    ) -> StoreFuture<'a, Vec<store::MeetingView>> {
        self.count();
        self.inner.live_meetings_page(now_ms, page)
    }
    fn live_count<'a>(&'a self, meeting_id: &'a str, now_ms: u64) -> StoreFuture<'a, store::LiveCount> {
        self.count();
        self.inner.live_count(meeting_id, now_ms)
    }
    fn history_series<'a>(&'a self, query: &'a store::HistoryQuery) -> StoreFuture<'a, Vec<store::SeriesKey>> {
        self.count();
        self.series_listed.fetch_add(1, Ordering::SeqCst);
        self.inner.history_series(query)
    }
    fn series_page<'a>(
        &'a self,
        series: &'a [store::SeriesKey],
        page: &'a store::HistoryPage,
    ) -> StoreFuture<'a, Vec<store::HistoryPoint>> {
        self.count();
        self.read(series.len());
        self.inner.series_page(series, page)
    }
    fn history_count<'a>(
        &'a self,
        series: &'a [store::SeriesKey],
        from_ms: u64,
        to_ms: u64,
        cap: usize,
    ) -> StoreFuture<'a, usize> {
        self.count();
        self.read(series.len());
        self.inner.history_count(series, from_ms, to_ms, cap)
    }
    fn alert_count<'a>(&'a self, page: &'a store::AlertPage) -> StoreFuture<'a, usize> {
        self.count();
        self.inner.alert_count(page)
    }
    fn ping(&self) -> StoreFuture<'_, ()> {
        self.count();
        self.inner.ping()
    }
    fn derived<'a>(&'a self, meeting_id: &'a str, participant_id: &'a str) -> StoreFuture<'a, store::DerivedSlot> {
        self.count();
        self.inner.derived(meeting_id, participant_id)
    }
    fn alert_history<'a>(
        &'a self,
        since_ms: u64,
        meeting_id: Option<&'a str>,
    ) -> StoreFuture<'a, Vec<vitals_collector::alerts::AlertRecord>> {
        self.count();
        self.inner.alert_history(since_ms, meeting_id)
    }
    fn history<'a>(&'a self, query: &'a store::HistoryQuery) -> StoreFuture<'a, Vec<store::HistoryPoint>> {
        self.count();
        self.inner.history(query)
    }
    fn history_page<'a>(&'a self, page: &'a store::HistoryPage) -> StoreFuture<'a, Vec<store::HistoryPoint>> {
        self.count();
        self.inner.history_page(page)
    }
    fn alert_page<'a>(
        &'a self,
        page: &'a store::AlertPage,
    ) -> StoreFuture<'a, Vec<vitals_collector::alerts::AlertRecord>> {
        self.count();
        self.inner.alert_page(page)
    }
    fn turn_usage(&self, from_ms: u64, to_ms: u64) -> StoreFuture<'_, Vec<vitals_collector::turn::TurnUsage>> {
        self.count();
        self.inner.turn_usage(from_ms, to_ms)
    }
}

#[tokio::test]
async fn metrics_are_kept_as_events_arrive_and_a_scrape_calls_no_store() {
    let redis = TestRedis::start().await;
    let store = Arc::new(Counting::new(Arc::new(redis.store(store::LIVE_TTL_MS))));
    let state = AppState::new(store.clone(), Secret::new(INGEST_KEY), Secret::new(ADMIN_TOKEN));
    let app = vitals_collector::app(state);
    for participant in ["a", "b", "c"] {
        let answer = send(&app, ingest_request(body("m", participant, 1), None)).await;
        assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
    }
    let before = store.calls.load(Ordering::SeqCst);
    assert!(before >= 6, "ingest went through the counting store: {before}");
    let request = Request::get("/metrics")
        .header(header::AUTHORIZATION, format!("Bearer {ADMIN_TOKEN}"))
        .body(Body::empty())
        .unwrap();
    let answer = send(&app, request).await;
    assert_eq!(answer.status, StatusCode::OK);
    assert!(
        answer
            .text
            .lines()
            .any(|l| l == "vitals_participants{quality=\"unknown\"} 3"),
        "{}",
        answer.text
    );
    assert_eq!(
        store.calls.load(Ordering::SeqCst),
        before,
        "the scrape called the store"
    );
}

#[tokio::test]
async fn a_slow_loris_body_is_cut_off_within_the_timeout() {
    let settings = Settings {
        server: ServerLimits {
            request_timeout: Duration::from_secs(1),
            ..Default::default()
        },
        ..Default::default()
    };
    let server = serve(AppState::for_tests(INGEST_KEY, ADMIN_TOKEN).with_settings(settings)).await;
    let mut stream = connect_from("127.0.0.1".parse().unwrap(), server).await;
    let head = format!(
        "POST /api/v1/ingest HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {INGEST_KEY}\r\ncontent-type: application/json\r\ncontent-length: 4000\r\n\r\n{{"
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let started = Instant::now();
    let (mut reader, mut writer) = stream.into_split();
    // One byte every 100 ms: it would take 400 s to send the whole body.
    let dripping = tokio::spawn(async move {
        while writer.write_all(b" ").await.is_ok() {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), reader.read_to_end(&mut answer)).await;
    dripping.abort();
    let elapsed = started.elapsed();
    assert!(read.is_ok(), "the connection was still open after 5 s");
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(elapsed < Duration::from_millis(2_500), "{elapsed:?}");
}
