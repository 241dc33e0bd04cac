//! Load generator for the collector: simulated participants posting one event per request, and alert latency over the admin stream.
//!
//! Every worker owns a disjoint set of participants and one keep-alive HTTP/1.1 connection, so a
//! participant's requests are sequential and its sequence numbers arrive in order. Each
//! participant keeps the participant token of its first acknowledgement and sends it with every
//! later batch, as the extension does (the collector refuses them without it). Metrics follow
//! a random walk below every alert threshold; now and then an idle participant starts an
//! "episode" (high RTT, loss, relay or poor quality) that must raise an alert. The send time of
//! the event that starts an episode is recorded under (participant, alert kind), and the matching
//! `raised` message on the admin WebSocket gives the emit-to-admin latency. A new episode of a
//! kind starts only after the stream reported the previous alert of that kind resolved.
//!
//! Targets are loopback addresses only. Runs are bounded (at most one hour).

use clap::Parser;
use indicatif::{ProgressBar, ProgressStyle};
use serde::Deserialize;
use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use vitals_collector::alerts::{AlertKind, AlertState};
use vitals_shared::wire::Event;
use vitals_shared::wire::{IngestAck, IngestBatch, MetricsFields};
use vitals_shared::QualityClass;

/// Longest run accepted, seconds.
const MAX_DURATION_SECS: f64 = 3600.0;
/// An expected alert not seen on the stream this long after its event counts as missed.
const ALERT_GIVE_UP: Duration = Duration::from_secs(2);

/// Call Vitals load generator: N participants over M meetings, one event per request.
#[derive(Debug, Parser)]
#[command(name = "loadgen")]
struct Args {
    /// The collector, `http://IP:PORT` with a loopback IP (or `localhost`).
    #[arg(long, default_value = "http://127.0.0.1:7878")]
    url: String,
    /// Ingest key.
    #[arg(long, env = "VITALS_INGEST_KEY", hide_env_values = true)]
    ingest_key: String,
    /// Admin token; without it alert latency is not measured.
    #[arg(long, env = "VITALS_ADMIN_TOKEN", hide_env_values = true)]
    admin_token: Option<String>,
    /// Simulated participants.
    #[arg(long, default_value_t = 2000)]
    participants: usize,
    /// Meetings the participants are spread over.
    #[arg(long, default_value_t = 200)]
    meetings: usize,
    /// Target events per second in total; 0 sends as fast as the workers can.
    #[arg(long, default_value_t = 0.0)]
    rate: f64,
    /// How long to send, seconds.
    #[arg(long, default_value_t = 30.0)]
    duration: f64,
    /// Concurrent requests (workers, each with its own connection).
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// The collector's process id: its VmRSS is read at start, every `--rss-every` s and at the end.
    #[arg(long)]
    pid: Option<u32>,
    /// Seconds between two readings of the collector's VmRSS.
    #[arg(long, default_value_t = 5.0)]
    rss_every: f64,
    /// The collector's `high-latency` threshold (normal RTT stays well below it).
    #[arg(long, default_value_t = 300.0)]
    latency_threshold_ms: f64,
    /// The collector's `packet-loss` threshold, percent.
    #[arg(long, default_value_t = 5.0)]
    loss_threshold_pct: f64,
    /// Chance per event that an idle participant starts an alert episode.
    #[arg(long, default_value_t = 0.01)]
    episode_chance: f64,
    /// Random seed (default: from the clock).
    #[arg(long)]
    seed: Option<u64>,
    /// No progress bar.
    #[arg(long)]
    no_progress: bool,
}

/// The simulation's seeded randomness (fastrand's wyrand), with the draws it needs.
struct Rng(fastrand::Rng);

impl Rng {
    fn new(seed: u64) -> Self {
        Self(fastrand::Rng::with_seed(seed))
    }
    fn next_u64(&mut self) -> u64 {
        self.0.u64(..)
    }
    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        self.0.f64()
    }
    fn range(&mut self, low: f64, high: f64) -> f64 {
        low + (high - low) * self.unit()
    }
    fn below(&mut self, n: usize) -> usize {
        self.0.usize(..n)
    }
}

/// A value that wanders in `[low, high]`, reflecting at the edges.
fn walk(value: f64, step: f64, low: f64, high: f64, rng: &mut Rng) -> f64 {
    let next = value + rng.range(-step, step);
    if next < low {
        (2.0 * low - next).min(high)
    } else if next > high {
        (2.0 * high - next).max(low)
    } else {
        next
    }
}

fn round(value: f64, places: i32) -> f64 {
    let k = 10f64.powi(places);
    (value * k).round() / k
}

/// An alert episode in progress: the condition of `kind` holds for `left` more events.
struct Episode {
    kind: AlertKind,
    left: u32,
}

/// One simulated participant.
struct Participant {
    meeting_id: String,
    participant_id: String,
    seq: u64,
    upload_kbps: f64,
    download_kbps: f64,
    rtt_ms: f64,
    loss_pct: f64,
    jitter_ms: f64,
    episode: Option<Episode>,
    /// What the collector holds (after the last event sent).
    sent: MetricsFields,
    /// The collector's participant token, from the first accepted batch: every later batch
    /// carries it.
    token: Option<String>,
}

/// Normal (non-alerting) ranges, below the thresholds.
struct Ranges {
    rtt_max: f64,
    loss_max: f64,
}

impl Participant {
    fn new(meeting_id: String, participant_id: String, ranges: &Ranges, rng: &mut Rng) -> Self {
        Self {
            meeting_id,
            participant_id,
            seq: 0,
            upload_kbps: rng.range(300.0, 2500.0),
            download_kbps: rng.range(500.0, 4000.0),
            rtt_ms: rng.range(20.0, ranges.rtt_max * 0.6),
            loss_pct: rng.range(0.0, ranges.loss_max * 0.3),
            jitter_ms: rng.range(2.0, 15.0),
            episode: None,
            sent: MetricsFields::default(),
            token: None,
        }
    }

    /// Moves the metrics one step and returns the event; `start` begins an episode of that kind.
    fn step(&mut self, ranges: &Ranges, start: Option<AlertKind>, rng: &mut Rng) -> Event {
        self.upload_kbps = walk(self.upload_kbps, 60.0, 50.0, 4000.0, rng);
        self.download_kbps = walk(self.download_kbps, 90.0, 80.0, 6000.0, rng);
        self.rtt_ms = walk(self.rtt_ms, 8.0, 10.0, ranges.rtt_max, rng);
        self.loss_pct = walk(self.loss_pct, 0.2, 0.0, ranges.loss_max, rng);
        self.jitter_ms = walk(self.jitter_ms, 1.5, 0.5, 40.0, rng);
        if let Some(kind) = start {
            self.episode = Some(Episode {
                kind,
                left: 3 + rng.below(6) as u32,
            });
        }
        let quality = if self.rtt_ms < 0.4 * ranges.rtt_max && self.loss_pct < 0.3 * ranges.loss_max {
            QualityClass::Excellent
        } else if self.rtt_ms < 0.7 * ranges.rtt_max && self.loss_pct < 0.6 * ranges.loss_max {
            QualityClass::Good
        } else {
            QualityClass::Fair
        };
        let mos = match quality {
            QualityClass::Excellent => 4.3,
            QualityClass::Good => 3.9,
            _ => 3.3,
        };
        let mut now = MetricsFields {
            upload_kbps: Some(round(self.upload_kbps, 1)),
            download_kbps: Some(round(self.download_kbps, 1)),
            rtt_ms: Some(round(self.rtt_ms, 1)),
            loss_pct: Some(round(self.loss_pct, 2)),
            jitter_ms: Some(round(self.jitter_ms, 1)),
            quality: Some(quality),
            mos: Some(mos),
            using_relay: Some(false),
            relay_protocol: None,
            relay_server: None,
            findings: Some(String::new()),
        };
        if let Some(episode) = &mut self.episode {
            match episode.kind {
                AlertKind::HighLatency => now.rtt_ms = Some(round(rng.range(400.0, 700.0), 1)),
                AlertKind::PacketLoss => now.loss_pct = Some(round(rng.range(8.0, 20.0), 2)),
                AlertKind::UsingTurn => {
                    now.using_relay = Some(true);
                    now.relay_protocol = Some(if self.seq.is_multiple_of(2) { "udp" } else { "tcp" }.into());
                    now.relay_server = Some("turn.example.com".into());
                }
                AlertKind::PoorConnection => {
                    now.quality = Some(QualityClass::Poor);
                    now.mos = Some(1.8);
                }
                AlertKind::Finding(id) => now.findings = Some(id.as_str().into()),
            }
            episode.left -= 1;
            if episode.left == 0 {
                self.episode = None;
            }
        }
        self.seq += 1;
        let full = self.seq == 1;
        let metrics = if full {
            now.clone()
        } else {
            now.changed_since(&self.sent)
        };
        self.sent = now;
        Event {
            seq: self.seq,
            ts_ms: wall_ms(),
            full,
            metrics,
        }
    }
}

fn wall_ms() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64() * 1000.0)
        .unwrap_or(0.0)
}

/// What the generator knows of one (participant, kind) alert.
#[derive(Debug, Clone, Copy)]
enum Track {
    /// The event that must raise it was sent at this instant.
    Pending(Instant),
    /// Raised (seen on the stream), not yet resolved.
    Active,
}

type TrackKey = (String, AlertKind);

/// Alert bookkeeping shared by the workers and the stream reader.
#[derive(Default)]
struct Alerts {
    tracks: Mutex<HashMap<TrackKey, Track>>,
    latencies_us: Mutex<Vec<u64>>,
    expected: AtomicU64,
    missed: AtomicU64,
    unexpected: AtomicU64,
    raised: AtomicU64,
    resolved: AtomicU64,
    cancelled: AtomicU64,
}

impl Alerts {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<TrackKey, Track>> {
        self.tracks.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether `participant` may start an episode of `kind` (no alert of that kind outstanding).
    /// A pending one given up on is counted as missed and forgotten.
    fn idle(&self, participant: &str, kind: AlertKind) -> bool {
        let mut tracks = self.lock();
        let key = (participant.to_owned(), kind);
        match tracks.get(&key) {
            None => true,
            Some(Track::Pending(at)) if at.elapsed() > ALERT_GIVE_UP => {
                tracks.remove(&key);
                self.missed.fetch_add(1, Ordering::Relaxed);
                false
            }
            Some(_) => false,
        }
    }

    fn expect(&self, participant: &str, kind: AlertKind, at: Instant) {
        self.lock().insert((participant.to_owned(), kind), Track::Pending(at));
        self.expected.fetch_add(1, Ordering::Relaxed);
    }

    /// The event was not stored: no alert will come.
    fn cancel(&self, participant: &str, kind: AlertKind) {
        let key = (participant.to_owned(), kind);
        let mut tracks = self.lock();
        if matches!(tracks.get(&key), Some(Track::Pending(_))) {
            tracks.remove(&key);
            self.expected.fetch_sub(1, Ordering::Relaxed);
            self.cancelled.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn on_stream(&self, alert: StreamAlert, received: Instant) {
        let key = (alert.participant_id, alert.kind);
        let mut tracks = self.lock();
        match alert.state {
            AlertState::Raised => {
                self.raised.fetch_add(1, Ordering::Relaxed);
                match tracks.get(&key) {
                    Some(Track::Pending(sent)) => {
                        let micros = received.saturating_duration_since(*sent).as_micros() as u64;
                        tracks.insert(key, Track::Active);
                        drop(tracks);
                        self.latencies_us.lock().unwrap_or_else(|p| p.into_inner()).push(micros);
                    }
                    _ => {
                        self.unexpected.fetch_add(1, Ordering::Relaxed);
                        tracks.insert(key, Track::Active);
                    }
                }
            }
            AlertState::Resolved => {
                self.resolved.fetch_add(1, Ordering::Relaxed);
                if matches!(tracks.get(&key), Some(Track::Active)) {
                    tracks.remove(&key);
                }
            }
        }
    }
}

#[derive(Deserialize)]
struct StreamAlertMessage {
    alert: StreamAlert,
}

#[derive(Deserialize)]
struct StreamAlert {
    participant_id: String,
    #[serde(rename = "type")]
    kind: AlertKind,
    state: AlertState,
}

/// What one worker measured.
#[derive(Default)]
struct WorkerStats {
    /// Ingest latency of accepted (200) requests, µs.
    latencies_us: Vec<u32>,
    statuses: BTreeMap<u16, u64>,
    transport_errors: u64,
}

/// Counters the progress bar reads.
#[derive(Default)]
struct Progress {
    sent: AtomicU64,
    accepted: AtomicU64,
    failed: AtomicU64,
}

struct Target {
    addr: SocketAddr,
    /// Every ingest request up to its `Content-Length` value: request line, `Host`,
    /// `Authorization` and `Content-Type`.
    head: Vec<u8>,
}

impl Target {
    fn new(addr: SocketAddr, ingest_key: &str) -> Result<Self, Error> {
        if ingest_key.bytes().any(|b| b.is_ascii_control()) {
            return Err(Error::Usage("the ingest key is not a valid header value".into()));
        }
        let head = format!(
            "POST /api/v1/ingest HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {ingest_key}\r\n\
             Content-Type: application/json\r\nContent-Length: "
        );
        Ok(Self {
            addr,
            head: head.into_bytes(),
        })
    }
}

/// A keep-alive HTTP/1.1 connection sending one request at a time: each request is written
/// with one `write`, and the response is read into a buffer kept across requests. Responses
/// are framed by `Content-Length` or chunked; `Connection: close` ends the connection after
/// the response.
struct Connection {
    stream: TcpStream,
    /// Bytes read and not yet consumed.
    input: Vec<u8>,
}

/// Why a response could not be read; the connection is dropped and opened again.
#[derive(Debug, thiserror::Error)]
enum Broken {
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error("connection closed by the collector")]
    Closed,
    #[error("bad response: {0}")]
    Parse(#[from] httparse::Error),
    #[error("bad response: {0}")]
    Framing(&'static str),
}

impl Connection {
    async fn open(addr: SocketAddr) -> Result<Self, Broken> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(Self {
            stream,
            input: Vec::with_capacity(4096),
        })
    }

    /// Reads more input; an error at the end of the stream.
    async fn fill(&mut self) -> Result<(), Broken> {
        if self.input.capacity() - self.input.len() < 1024 {
            self.input.reserve(4096);
        }
        match self.stream.read_buf(&mut self.input).await {
            Ok(0) => Err(Broken::Closed),
            Ok(_) => Ok(()),
            Err(error) => Err(error.into()),
        }
    }

    /// Sends `request` and reads the whole response: its status, and whether the connection
    /// stays open. With `body`, a body of known length is copied there (the collector's ingest
    /// answers have one; a chunked body is not kept).
    async fn exchange(&mut self, request: &[u8], body: Option<&mut Vec<u8>>) -> Result<(u16, bool), Broken> {
        self.stream.write_all(request).await?;
        let (status, head_len, framing, keep_alive) = loop {
            let mut headers = [httparse::EMPTY_HEADER; 24];
            let mut response = httparse::Response::new(&mut headers);
            match response.parse(&self.input)? {
                httparse::Status::Complete(head_len) => {
                    let status = response.code.unwrap_or(0);
                    let mut framing = Framing::UntilClose;
                    let mut keep_alive = response.version == Some(1);
                    for header in response.headers.iter() {
                        if header.name.eq_ignore_ascii_case("content-length") {
                            let length = std::str::from_utf8(header.value)
                                .ok()
                                .and_then(|v| v.trim().parse().ok());
                            framing = Framing::Length(length.ok_or(Broken::Framing("bad Content-Length"))?);
                        } else if header.name.eq_ignore_ascii_case("transfer-encoding") {
                            framing = Framing::Chunked;
                        } else if header.name.eq_ignore_ascii_case("connection") {
                            keep_alive = !header.value.eq_ignore_ascii_case(b"close");
                        }
                    }
                    break (status, head_len, framing, keep_alive);
                }
                httparse::Status::Partial => self.fill().await?,
            }
        };
        let end = match framing {
            Framing::Length(length) => {
                while self.input.len() < head_len + length {
                    self.fill().await?;
                }
                if let Some(body) = body {
                    body.extend_from_slice(&self.input[head_len..head_len + length]);
                }
                head_len + length
            }
            Framing::Chunked => self.chunked_end(head_len).await?,
            Framing::UntilClose => return Err(Broken::Framing("a response without length")),
        };
        self.input.drain(..end);
        Ok((status, keep_alive))
    }

    /// Where a chunked body starting at `at` ends (reading until it has all of it).
    async fn chunked_end(&mut self, mut at: usize) -> Result<usize, Broken> {
        loop {
            let line_end = loop {
                if let Some(i) = self.input[at..].windows(2).position(|w| w == b"\r\n") {
                    break at + i;
                }
                self.fill().await?;
            };
            let bad_size = || Broken::Framing("bad chunk size");
            let size_text = std::str::from_utf8(&self.input[at..line_end]).map_err(|_| bad_size())?;
            let size_text = size_text.split(';').next().unwrap_or("").trim();
            let size = usize::from_str_radix(size_text, 16).map_err(|_| bad_size())?;
            at = line_end + 2;
            if size == 0 {
                // No trailers from the collector: the body ends with an empty line.
                while self.input.len() < at + 2 {
                    self.fill().await?;
                }
                return Ok(at + 2);
            }
            while self.input.len() < at + size + 2 {
                self.fill().await?;
            }
            at += size + 2;
        }
    }
}

/// How a response body ends.
enum Framing {
    Length(usize),
    Chunked,
    UntilClose,
}

/// One worker's client: its connection (opened again after an error), its request buffer, and
/// the body of the last answer it was asked to keep.
struct Client {
    target: Arc<Target>,
    connection: Option<Connection>,
    request: Vec<u8>,
    answer: Vec<u8>,
}

impl Client {
    fn new(target: Arc<Target>) -> Self {
        Self {
            target,
            connection: None,
            request: Vec::with_capacity(1024),
            answer: Vec::with_capacity(256),
        }
    }

    /// Posts one body; the status, or None on a transport error (the connection is then dropped).
    /// With `keep_answer`, the answer's body is in `self.answer` afterwards.
    async fn post(&mut self, body: &[u8], keep_answer: bool) -> Option<u16> {
        if self.connection.is_none() {
            self.connection = Connection::open(self.target.addr).await.ok();
        }
        let connection = self.connection.as_mut()?;
        self.request.clear();
        self.request.extend_from_slice(&self.target.head);
        self.request.extend_from_slice(body.len().to_string().as_bytes());
        self.request.extend_from_slice(b"\r\n\r\n");
        self.request.extend_from_slice(body);
        self.answer.clear();
        let answer = keep_answer.then_some(&mut self.answer);
        match connection.exchange(&self.request, answer).await {
            Ok((status, keep_alive)) => {
                if !keep_alive {
                    self.connection = None;
                }
                Some(status)
            }
            Err(_) => {
                self.connection = None;
                None
            }
        }
    }
}

#[allow(clippy::too_many_arguments, reason = "one worker task gets all it needs at spawn")]
async fn worker(
    index: usize,
    mut participants: Vec<Participant>,
    target: Arc<Target>,
    alerts: Option<Arc<Alerts>>,
    progress: Arc<Progress>,
    args: Arc<Args>,
    seed: u64,
    start: tokio::time::Instant,
) -> WorkerStats {
    let mut rng = Rng::new(seed ^ (index as u64 + 1).wrapping_mul(0xA24B_AED4_963E_E407));
    let ranges = Ranges {
        rtt_max: (args.latency_threshold_ms * 0.6).min(200.0),
        loss_max: (args.loss_threshold_pct * 0.6).min(3.0),
    };
    let end = start + Duration::from_secs_f64(args.duration);
    // Open loop: this worker's share of the rate, on a fixed schedule from `start`.
    let period = (args.rate > 0.0).then(|| Duration::from_secs_f64(args.concurrency as f64 / args.rate));
    let mut next = start + Duration::from_secs_f64(index as f64 / args.rate.max(1.0));
    let mut stats = WorkerStats {
        latencies_us: Vec::with_capacity(1 << 14),
        ..Default::default()
    };
    let mut client = Client::new(target);
    let mut body = Vec::with_capacity(1024);
    let mut turn = 0usize;
    while !participants.is_empty() {
        if let Some(period) = period {
            let now = tokio::time::Instant::now();
            // More than a second behind: skip ahead rather than burst.
            if next + Duration::from_secs(1) < now {
                next = now;
            }
            if next >= end {
                break;
            }
            tokio::time::sleep_until(next).await;
            next += period;
        } else if tokio::time::Instant::now() >= end {
            break;
        }
        let count = participants.len();
        let participant = &mut participants[turn];
        turn = (turn + 1) % count;
        let start_kind = match &alerts {
            Some(alerts) if participant.episode.is_none() && rng.unit() < args.episode_chance => {
                // The collector's own four kinds, as before findings existed (the benchmark's
                // figures stay comparable).
                let kind = AlertKind::ALL[rng.below(4)];
                alerts.idle(&participant.participant_id, kind).then_some(kind)
            }
            _ => None,
        };
        let event = participant.step(&ranges, start_kind, &mut rng);
        let batch = IngestBatch {
            meeting_id: participant.meeting_id.clone(),
            participant_id: participant.participant_id.clone(),
            label: None,
            participant_token: participant.token.clone(),
            client_health: None,
            events: vec![event],
        };
        body.clear();
        serde_json::to_writer(&mut body, &batch).expect("plain data always serializes");
        let sent_at = Instant::now();
        if let (Some(alerts), Some(kind)) = (&alerts, start_kind) {
            alerts.expect(&participant.participant_id, kind, sent_at);
        }
        progress.sent.fetch_add(1, Ordering::Relaxed);
        // The token is read from the first acknowledgement only: it stays the same.
        let status = client.post(&body, participant.token.is_none()).await;
        let elapsed = sent_at.elapsed();
        match status {
            Some(200) => {
                stats
                    .latencies_us
                    .push(elapsed.as_micros().min(u32::MAX as u128) as u32);
                progress.accepted.fetch_add(1, Ordering::Relaxed);
                if participant.token.is_none() {
                    participant.token = serde_json::from_slice::<IngestAck>(&client.answer)
                        .ok()
                        .and_then(|ack| ack.participant_token);
                }
            }
            other => {
                progress.failed.fetch_add(1, Ordering::Relaxed);
                match other {
                    Some(code) => *stats.statuses.entry(code).or_default() += 1,
                    None => {
                        stats.transport_errors += 1;
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                }
                if let (Some(alerts), Some(kind)) = (&alerts, start_kind) {
                    alerts.cancel(&participant.participant_id, kind);
                }
            }
        }
    }
    stats
}

/// Reads the admin stream until `stop`, feeding alert messages to `alerts`.
async fn read_stream(
    mut socket: tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<TcpStream>>,
    alerts: Arc<Alerts>,
    stop: Arc<tokio::sync::Notify>,
) -> (u64, u64) {
    use futures_util::StreamExt;
    use tokio_tungstenite::tungstenite::Message;
    let (mut alert_messages, mut metrics_messages) = (0u64, 0u64);
    loop {
        tokio::select! {
            () = stop.notified() => break,
            message = socket.next() => match message {
                Some(Ok(Message::Text(text))) => {
                    let received = Instant::now();
                    // The tag is serialized first, so other messages are skipped unparsed.
                    if text.as_str().starts_with(r#"{"type":"alert""#) {
                        alert_messages += 1;
                        if let Ok(message) = serde_json::from_str::<StreamAlertMessage>(text.as_str()) {
                            alerts.on_stream(message.alert, received);
                        }
                    } else {
                        metrics_messages += 1;
                    }
                }
                Some(Ok(_)) => {}
                Some(Err(error)) => {
                    eprintln!("loadgen: admin stream error: {error}");
                    break;
                }
                None => {
                    eprintln!("loadgen: admin stream closed by the collector");
                    break;
                }
            },
        }
    }
    (alert_messages, metrics_messages)
}

/// Opens the admin stream and reads it on a thread of its own (with its own runtime), so that
/// an alert is timed when it arrives, not when the workers leave the generator's threads free.
/// Returns once the stream is open; the task's result is what [`read_stream`] counted.
async fn spawn_stream_reader(
    url: String,
    admin_token: String,
    alerts: Arc<Alerts>,
    stop: Arc<tokio::sync::Notify>,
) -> Result<tokio::sync::oneshot::Receiver<(u64, u64)>, Error> {
    // The admin token as a bearer header: the collector refuses it in the URL.
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut request = url.into_client_request().map_err(Error::Stream)?;
    let bearer = format!("Bearer {admin_token}")
        .parse()
        .map_err(|_| Error::Usage("the admin token must be visible ASCII".into()))?;
    request.headers_mut().insert("authorization", bearer);
    let (opened_tx, opened_rx) = tokio::sync::oneshot::channel();
    let (done_tx, done_rx) = tokio::sync::oneshot::channel();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::Start("the admin stream's runtime", e))?;
    std::thread::Builder::new()
        .name("admin-stream".into())
        .spawn(move || {
            runtime.block_on(async move {
                match tokio_tungstenite::connect_async(request).await {
                    Ok((socket, _)) => {
                        let _ = opened_tx.send(Ok(()));
                        let _ = done_tx.send(read_stream(socket, alerts, stop).await);
                    }
                    Err(error) => {
                        let _ = opened_tx.send(Err(Error::Stream(error)));
                    }
                }
            })
        })
        .map_err(|e| Error::Start("the admin stream's thread", e))?;
    opened_rx.await.map_err(|_| Error::StreamStopped)??;
    Ok(done_rx)
}

/// Start, median, end and largest of the (seconds, kB) readings, in MB.
fn rss_summary(samples: &[(f64, u64)]) -> String {
    let (Some(first), Some(last)) = (samples.first(), samples.last()) else {
        return "no reading".into();
    };
    let mut sorted: Vec<u64> = samples.iter().map(|(_, kb)| *kb).collect();
    sorted.sort_unstable();
    let mb = |kb: u64| kb as f64 / 1024.0;
    format!(
        "start {:.1} MB, median {:.1} MB, end {:.1} MB, max {:.1} MB ({} readings over {:.0} s)",
        mb(first.1),
        mb(percentile(&sorted, 50.0) as u64),
        mb(last.1),
        mb(*sorted.last().unwrap_or(&0)),
        samples.len(),
        last.0 - first.0
    )
}

/// VmRSS of `pid`, kB.
fn rss_kb(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1] as f64
}

/// `http://IP:PORT` (or `localhost:PORT`) with a loopback IP.
fn loopback_addr(url: &str) -> Result<SocketAddr, Error> {
    let rest = url
        .strip_prefix("http://")
        .ok_or(Error::Usage("the URL must start with http://".into()))?
        .trim_end_matches('/');
    let rest = match rest.strip_prefix("localhost:") {
        Some(port) => format!("127.0.0.1:{port}"),
        None => rest.to_owned(),
    };
    let addr: SocketAddr = rest
        .parse()
        .map_err(|_| Error::Usage(format!("{url}: expected http://IP:PORT")))?;
    if !addr.ip().is_loopback() {
        return Err(Error::Usage(format!("{url}: only loopback targets are allowed")));
    }
    Ok(addr)
}

fn validate(args: &Args) -> Result<(), Error> {
    let usage = |message: &str| Err(Error::Usage(message.to_owned()));
    if !(args.duration > 0.0 && args.duration <= MAX_DURATION_SECS) {
        return Err(Error::Usage(format!(
            "--duration must be over 0 and at most {MAX_DURATION_SECS} s"
        )));
    }
    if !(args.rate.is_finite() && args.rate >= 0.0) {
        return usage("--rate must be 0 (as fast as possible) or a positive number");
    }
    if !(args.rss_every.is_finite() && args.rss_every >= 0.1) {
        return usage("--rss-every must be at least 0.1 s");
    }
    if args.participants == 0 || args.meetings == 0 || args.concurrency == 0 {
        return usage("--participants, --meetings and --concurrency must be at least 1");
    }
    if args.concurrency > 4096 {
        return usage("--concurrency is at most 4096");
    }
    if !(0.0..=1.0).contains(&args.episode_chance) {
        return usage("--episode-chance must be from 0 to 1");
    }
    Ok(())
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::process::ExitCode {
    match run(Args::parse()).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("loadgen: {message}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Why the load generator stopped.
#[derive(Debug, thiserror::Error)]
enum Error {
    /// Options or a target it does not take.
    #[error("{0}")]
    Usage(String),
    #[error("cannot start {0}: {1}")]
    Start(&'static str, #[source] std::io::Error),
    #[error("cannot open the admin stream: {0}")]
    Stream(#[source] tokio_tungstenite::tungstenite::Error),
    #[error("the admin stream's thread stopped")]
    StreamStopped,
    #[error("a worker failed: {0}")]
    Worker(#[from] tokio::task::JoinError),
}

async fn run(mut args: Args) -> Result<(), Error> {
    validate(&args)?;
    let addr = loopback_addr(&args.url)?;
    args.concurrency = args.concurrency.min(args.participants);
    let seed = args.seed.unwrap_or_else(|| wall_ms() as u64);
    let run_id = format!("{:08x}", Rng::new(seed).next_u64() as u32);
    let target = Arc::new(Target::new(addr, &args.ingest_key)?);

    // The admin stream first, so that no alert is missed.
    let alerts = Arc::new(Alerts::default());
    let stop_stream = Arc::new(tokio::sync::Notify::new());
    let stream_task = match &args.admin_token {
        Some(token) => {
            let url = format!("ws://{addr}/api/v1/stream");
            Some(spawn_stream_reader(url, token.clone(), alerts.clone(), stop_stream.clone()).await?)
        }
        None => None,
    };

    // Resident memory: start, every 10 s, end.
    let rss_samples = Arc::new(Mutex::new(Vec::<(f64, u64)>::new()));
    let started = Instant::now();
    let rss_every = Duration::from_secs_f64(args.rss_every);
    let rss_task = args.pid.map(|pid| {
        let samples = rss_samples.clone();
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(rss_every);
            loop {
                ticks.tick().await;
                if let Some(kb) = rss_kb(pid) {
                    samples
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .push((started.elapsed().as_secs_f64(), kb));
                }
            }
        })
    });

    // Participants, dealt round-robin to the workers.
    let mut rng = Rng::new(seed);
    let ranges = Ranges {
        rtt_max: (args.latency_threshold_ms * 0.6).min(200.0),
        loss_max: (args.loss_threshold_pct * 0.6).min(3.0),
    };
    let mut shares: Vec<Vec<Participant>> = (0..args.concurrency).map(|_| Vec::new()).collect();
    for i in 0..args.participants {
        let meeting = format!("https://meet.example.com/lg-{run_id}-m{}", i % args.meetings);
        let participant = format!("lg-{run_id}-p{i}");
        shares[i % args.concurrency].push(Participant::new(meeting, participant, &ranges, &mut rng));
    }

    let progress = Arc::new(Progress::default());
    let args = Arc::new(args);
    let bar = if args.no_progress {
        ProgressBar::hidden()
    } else {
        let bar = ProgressBar::new((args.duration * 10.0).round() as u64);
        bar.set_style(
            ProgressStyle::with_template("{elapsed:>4} [{bar:30}] {msg}")
                .expect("valid template")
                .progress_chars("=> "),
        );
        bar
    };
    let done = Arc::new(AtomicBool::new(false));
    let ticker = {
        let (bar, progress, done) = (bar.clone(), progress.clone(), done.clone());
        tokio::spawn(async move {
            let mut last = (Instant::now(), 0u64);
            while !done.load(Ordering::Relaxed) {
                tokio::time::sleep(Duration::from_millis(250)).await;
                let accepted = progress.accepted.load(Ordering::Relaxed);
                let now = Instant::now();
                let rate = (accepted - last.1) as f64 / now.duration_since(last.0).as_secs_f64();
                last = (now, accepted);
                bar.set_position((started.elapsed().as_secs_f64() * 10.0) as u64);
                bar.set_message(format!(
                    "{accepted} accepted, {rate:.0}/s, {} failed",
                    progress.failed.load(Ordering::Relaxed)
                ));
            }
        })
    };

    let start = tokio::time::Instant::now();
    let load_started = Instant::now();
    let measure_alerts = stream_task.is_some().then(|| alerts.clone());
    let workers: Vec<_> = shares
        .into_iter()
        .enumerate()
        .map(|(index, share)| {
            tokio::spawn(worker(
                index,
                share,
                target.clone(),
                measure_alerts.clone(),
                progress.clone(),
                args.clone(),
                seed,
                start,
            ))
        })
        .collect();
    let mut total = WorkerStats::default();
    for handle in workers {
        let stats = handle.await?;
        total.latencies_us.extend(stats.latencies_us);
        for (code, count) in stats.statuses {
            *total.statuses.entry(code).or_default() += count;
        }
        total.transport_errors += stats.transport_errors;
    }
    let load_secs = load_started.elapsed().as_secs_f64();
    done.store(true, Ordering::Relaxed);
    let _ = ticker.await;
    bar.finish_and_clear();

    // Let outstanding alerts arrive.
    let (mut alert_messages, mut metrics_messages) = (0, 0);
    if let Some(task) = stream_task {
        let deadline = Instant::now() + ALERT_GIVE_UP;
        while Instant::now() < deadline && alerts.lock().values().any(|track| matches!(track, Track::Pending(_))) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        stop_stream.notify_one();
        (alert_messages, metrics_messages) = task.await.unwrap_or_default();
    }
    if let Some(task) = rss_task {
        task.abort();
    }
    if let Some(kb) = args.pid.and_then(rss_kb) {
        rss_samples
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((started.elapsed().as_secs_f64(), kb));
    }

    // Summary.
    let accepted = total.latencies_us.len() as u64;
    let mut latencies: Vec<u64> = total.latencies_us.iter().map(|&us| us as u64).collect();
    latencies.sort_unstable();
    let too_many = total.statuses.get(&429).copied().unwrap_or(0);
    let sent = progress.sent.load(Ordering::Relaxed);
    let rate = if args.rate > 0.0 {
        format!("{} events/s", args.rate)
    } else {
        "as fast as possible".into()
    };
    println!(
        "loadgen: {} participants in {} meetings, {} connections, target {rate}, {:.1} s (run {run_id})",
        args.participants, args.meetings, args.concurrency, args.duration
    );
    println!(
        "  requests: {sent} sent, {accepted} accepted (200) = {:.0} events/s accepted over {load_secs:.1} s",
        accepted as f64 / load_secs
    );
    println!(
        "  ingest latency (200s): p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        percentile(&latencies, 50.0) / 1000.0,
        percentile(&latencies, 90.0) / 1000.0,
        percentile(&latencies, 99.0) / 1000.0,
        latencies.last().copied().unwrap_or(0) as f64 / 1000.0
    );
    let others: Vec<String> = total
        .statuses
        .iter()
        .filter(|(code, _)| **code != 429)
        .map(|(code, count)| format!("{code}: {count}"))
        .collect();
    println!(
        "  errors: 429 (rate limited): {too_many}; other statuses: {}; transport errors: {}",
        if others.is_empty() {
            "none".into()
        } else {
            others.join(", ")
        },
        total.transport_errors
    );
    if args.admin_token.is_some() {
        let mut alert_latencies = alerts.latencies_us.lock().unwrap_or_else(|p| p.into_inner()).clone();
        alert_latencies.sort_unstable();
        let still_pending = alerts
            .lock()
            .values()
            .filter(|track| matches!(track, Track::Pending(_)))
            .count() as u64;
        println!(
            "  alert latency (event sent to alert on the admin stream): {} measured, p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
            alert_latencies.len(),
            percentile(&alert_latencies, 50.0) / 1000.0,
            percentile(&alert_latencies, 99.0) / 1000.0,
            alert_latencies.last().copied().unwrap_or(0) as f64 / 1000.0
        );
        println!(
            "  alerts: {} expected, {} missed, {} unexpected raises, {} raised and {} resolved seen; \
             {} cancelled (event not accepted); stream: {alert_messages} alert and {metrics_messages} metrics messages",
            alerts.expected.load(Ordering::Relaxed),
            alerts.missed.load(Ordering::Relaxed) + still_pending,
            alerts.unexpected.load(Ordering::Relaxed),
            alerts.raised.load(Ordering::Relaxed),
            alerts.resolved.load(Ordering::Relaxed),
            alerts.cancelled.load(Ordering::Relaxed),
        );
    }
    if let Some(pid) = args.pid {
        let samples = rss_samples.lock().unwrap_or_else(|p| p.into_inner()).clone();
        println!("  collector (pid {pid}) VmRSS: {}", rss_summary(&samples));
        // Every reading when there are few; otherwise about twelve, evenly spread.
        let step = samples.len().div_ceil(12).max(1);
        let text: Vec<String> = samples
            .iter()
            .enumerate()
            .filter(|(i, _)| i % step == 0 || *i == samples.len() - 1)
            .map(|(_, (at, kb))| format!("{at:.0} s: {:.1}", *kb as f64 / 1024.0))
            .collect();
        println!("    readings (MB): {}", text.join(", "));
    }
    Ok(())
}
