//! A logging, cuttable TCP forwarder in front of the collector: what the extension posted and what it got back, byte for byte, and what its uploads cost on the wire.

use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::AbortHandle;

/// The bytes of one connection through the tap, as forwarded.
#[derive(Default)]
struct ConnLog {
    /// Extension to collector.
    up: Vec<u8>,
    /// Collector to extension.
    down: Vec<u8>,
}

struct Conn {
    log: Arc<Mutex<ConnLog>>,
    pumps: [AbortHandle; 2],
}

/// A cuttable, logging TCP forwarder in front of the collector.
pub struct Tap {
    pub base: String,
    cut: Arc<AtomicBool>,
    conns: Arc<Mutex<Vec<Conn>>>,
    accept: AbortHandle,
}

async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    log: Arc<Mutex<ConnLog>>,
    up: bool,
) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if to.write_all(&buf[..n]).await.is_err() {
            break;
        }
        let mut log = log.lock().unwrap();
        let side = if up { &mut log.up } else { &mut log.down };
        side.extend_from_slice(&buf[..n]);
    }
    let _ = to.shutdown().await;
}

impl Tap {
    pub async fn start(upstream: &str) -> Self {
        let upstream = upstream.trim_start_matches("http://").to_string();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let cut = Arc::new(AtomicBool::new(false));
        let conns: Arc<Mutex<Vec<Conn>>> = Arc::default();
        let (cut2, conns2) = (cut.clone(), conns.clone());
        let accept = tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    continue;
                };
                if cut2.load(Ordering::SeqCst) {
                    drop(client); // unreachable: the connection closes at once
                    continue;
                }
                let Ok(server) = TcpStream::connect(&upstream).await else {
                    continue;
                };
                let log = Arc::new(Mutex::new(ConnLog::default()));
                let (cr, cw) = client.into_split();
                let (sr, sw) = server.into_split();
                let up = tokio::spawn(pump(cr, sw, log.clone(), true));
                let down = tokio::spawn(pump(sr, cw, log.clone(), false));
                conns2.lock().unwrap().push(Conn {
                    log,
                    pumps: [up.abort_handle(), down.abort_handle()],
                });
            }
        })
        .abort_handle();
        Self {
            base,
            cut,
            conns,
            accept,
        }
    }

    /// The collector becomes unreachable: open connections drop, new ones close at once.
    pub fn cut(&self) {
        self.cut.store(true, Ordering::SeqCst);
        for conn in self.conns.lock().unwrap().iter() {
            conn.pumps.iter().for_each(AbortHandle::abort);
        }
    }

    pub fn restore(&self) {
        self.cut.store(false, Ordering::SeqCst);
    }

    /// Every complete ingest request so far, with its answer (`None` when the connection
    /// dropped before a whole answer got through).
    fn ingest_messages(&self) -> Vec<(Message, Option<Message>)> {
        let mut all = Vec::new();
        for conn in self.conns.lock().unwrap().iter() {
            let log = conn.log.lock().unwrap();
            let mut answers = http_messages(&log.down).into_iter();
            for request in http_messages(&log.up) {
                // HTTP/1.1 without pipelining: the n-th answer is the n-th request's.
                let answer = answers.next();
                if request.start.starts_with("POST /api/v1/ingest ") {
                    all.push((request, answer));
                }
            }
        }
        all
    }

    /// Every ingest request the collector received, with the answer the extension received
    /// (`None` when the connection dropped before a whole answer got through).
    pub fn exchanges(&self) -> Vec<(Value, Option<(u16, Value)>)> {
        self.ingest_messages()
            .into_iter()
            .map(|(request, answer)| {
                let batch: Value = serde_json::from_slice(&request.body).expect("ingest body is JSON");
                let answer = answer.map(|answer| {
                    let status = answer.start.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
                    (status, serde_json::from_slice(&answer.body).unwrap_or(Value::Null))
                });
                (batch, answer)
            })
            .collect()
    }

    /// Per meeting and participant, what its ingest requests took on the wire so far
    /// (complete requests only): requests, their bytes with headers, and their answers' bytes.
    pub fn ingest_bytes(&self) -> BTreeMap<(String, String), WireBytes> {
        let mut all: BTreeMap<(String, String), WireBytes> = BTreeMap::new();
        for (request, answer) in self.ingest_messages() {
            let Ok(batch) = serde_json::from_slice::<Value>(&request.body) else {
                continue;
            };
            let id = |name: &str| batch[name].as_str().unwrap_or_default().to_string();
            let bytes = all.entry((id("meeting_id"), id("participant_id"))).or_default();
            bytes.requests += 1;
            bytes.up += request.wire_bytes;
            bytes.down += answer.map_or(0, |a| a.wire_bytes);
        }
        all
    }
}

/// What one participant's uploads took on the wire.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub struct WireBytes {
    pub requests: usize,
    /// Requests: start line, headers and body.
    pub up: usize,
    /// Their answers.
    pub down: usize,
}

impl Drop for Tap {
    fn drop(&mut self) {
        self.accept.abort();
        self.cut();
    }
}

/// One HTTP/1.1 message as it crossed the wire.
pub struct Message {
    /// The request or status line.
    pub start: String,
    pub body: Vec<u8>,
    /// Its size on the wire: start line, headers and body with their framing.
    pub wire_bytes: usize,
}

/// The complete HTTP/1.1 messages of one direction of a connection: start line and body
/// (Content-Length or chunked). A message cut short is not returned.
pub fn http_messages(mut bytes: &[u8]) -> Vec<Message> {
    let mut out = Vec::new();
    while let Some(end) = bytes.windows(4).position(|w| w == b"\r\n\r\n") {
        let head = String::from_utf8_lossy(&bytes[..end]).to_string();
        let mut rest = &bytes[end + 4..];
        let header = |name: &str| {
            head.lines().skip(1).find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.trim().eq_ignore_ascii_case(name).then(|| v.trim().to_string())
            })
        };
        let body = if header("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
            let mut body = Vec::new();
            loop {
                let Some(line_end) = rest.windows(2).position(|w| w == b"\r\n") else {
                    return out;
                };
                let size_text = String::from_utf8_lossy(&rest[..line_end]).to_string();
                let Ok(size) = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16) else {
                    return out;
                };
                rest = &rest[line_end + 2..];
                if rest.len() < size + 2 {
                    return out;
                }
                body.extend_from_slice(&rest[..size]);
                rest = &rest[size + 2..];
                if size == 0 {
                    break;
                }
            }
            body
        } else {
            let len: usize = header("content-length").and_then(|v| v.parse().ok()).unwrap_or(0);
            if rest.len() < len {
                return out;
            }
            let body = rest[..len].to_vec();
            rest = &rest[len..];
            body
        };
        let wire_bytes = bytes.len() - rest.len();
        out.push(Message {
            start: head.lines().next().unwrap_or_default().to_string(),
            body,
            wire_bytes,
        });
        bytes = rest;
    }
    out
}
