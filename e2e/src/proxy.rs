//! A UDP and TCP forwarding proxy between Chromium and coturn that injects delay, loss and a rate limit, and logs every TURN message it forwards.
//!
//! The kernel of the test machines has no netem, so network conditions are made here: the
//! client's TURN url points at the proxy, which forwards UDP (one upstream socket per client
//! address) and TCP (one upstream connection per client connection) to coturn.
//!
//! - Delay: every message waits `delay_ms` in each direction. Receiving is tokio; sending is a
//!   plain thread per direction (a "delay line") because tokio's timer rounds every sleep up to
//!   the next millisecond, which would add up to 4 ms to a relayed round trip (four proxy hops).
//!   `std::thread::sleep` is accurate to well under 0.1 ms on Linux.
//! - Loss: each UDP datagram of a direction is dropped with probability `loss_*` (seeded RNG).
//! - Rate: a token-free pacer per direction (the link is busy `bytes·8/rate` per message); a
//!   message that would wait more than `queue_ms` behind others is dropped (drop-tail).
//! - Log: one [`Entry`] per TURN message (a datagram, or a frame of the TCP stream), with the
//!   wall-clock time it arrived and left, its size, and what it carries (RTP with its SSRC and
//!   payload size, RTCP, STUN, DTLS, TURN control), so tests count bytes independently.

use std::collections::HashMap;
use std::io::Write;
use std::net::SocketAddr;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::task::AbortHandle;

/// The network conditions the proxy injects; changeable while it runs.
#[derive(Debug, Clone, Copy, Default)]
pub struct Impairment {
    /// Added to every message, in each direction, ms.
    pub delay_ms: f64,
    /// Probability of dropping a UDP datagram going to the TURN server.
    pub loss_to_server: f64,
    /// Probability of dropping a UDP datagram going to the client.
    pub loss_to_client: f64,
    /// Link rate of each direction, kbit/s; `None` is unlimited.
    pub rate_kbps: Option<f64>,
    /// Longest a message may queue behind others under the rate limit before it is dropped, ms.
    pub queue_ms: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Dir {
    /// Client (Chromium) to the TURN server.
    ToServer,
    /// TURN server to the client.
    ToClient,
}

/// What a TURN message carries.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Kind {
    /// SRTP: `payload` is everything after the RTP header (media, the SRTP tag, any padding).
    Rtp {
        ssrc: u32,
        payload: usize,
        padded: bool,
    },
    Rtcp,
    /// A STUN message between the peers (ICE checks, consent), inside ChannelData or Send/Data:
    /// its class (0 request, 1 indication, 2 success response, 3 error response) and
    /// transaction id, so a test can pair each check with its answer.
    Stun {
        class: u8,
        txid: [u8; 12],
    },
    Dtls,
    /// TURN's own requests and responses (Allocate, Refresh, ChannelBind, ...).
    TurnControl,
    Other,
}

/// One forwarded (or dropped) TURN message.
#[derive(Debug, Clone)]
pub struct Entry {
    pub dir: Dir,
    pub tcp: bool,
    /// Wall-clock time it reached the proxy, ms since the Unix epoch.
    pub in_ms: f64,
    /// Wall-clock time the proxy sent it on; `None` when it was dropped.
    pub out_ms: Option<f64>,
    /// Size of the TURN message (ChannelData or STUN framing included).
    pub bytes: usize,
    pub kind: Kind,
}

/// A running proxy; dropping it stops it.
pub struct Proxy {
    /// UDP and TCP port on 127.0.0.1.
    pub port: u16,
    shared: Arc<Shared>,
    /// The proxy's own runtime (one worker thread): the test's runtime also runs an in-process
    /// collector and the WebDriver client, whose work would otherwise delay the arrival stamps.
    runtime: Option<tokio::runtime::Runtime>,
}

struct Shared {
    impairment: Mutex<Impairment>,
    rng: Mutex<SplitMix64>,
    log: Mutex<Vec<Entry>>,
    clock: Clock,
    lines: [mpsc::Sender<Job>; 2],
    tasks: Mutex<Vec<AbortHandle>>,
    upstream: SocketAddr,
}

/// Wall-clock ms from a monotonic clock: the epoch time once, plus elapsed `Instant`s.
#[derive(Clone, Copy)]
struct Clock {
    start: Instant,
    start_epoch_ms: f64,
}

impl Clock {
    fn new() -> Self {
        let start_epoch_ms = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs_f64() * 1000.0;
        Self {
            start: Instant::now(),
            start_epoch_ms,
        }
    }
    fn ms(&self, t: Instant) -> f64 {
        self.start_epoch_ms + t.duration_since(self.start).as_secs_f64() * 1000.0
    }
}

/// splitmix64: a tiny seeded generator, so a test's loss pattern needs no extra crate.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next_f64(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        (z >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Where a delay line delivers a message.
enum Sink {
    /// The client-facing UDP socket, to this client.
    UdpTo(Arc<std::net::UdpSocket>, SocketAddr),
    /// A client's own UDP socket connected to coturn.
    Udp(Arc<std::net::UdpSocket>),
    Tcp(Arc<std::net::TcpStream>),
}

struct Job {
    due: Instant,
    bytes: Vec<u8>,
    sink: Sink,
    entries: Vec<usize>,
}

impl Proxy {
    /// Starts a proxy to the TURN server at `127.0.0.1:turn_port` (UDP and TCP).
    pub async fn start(turn_port: u16, impairment: Impairment, seed: u64) -> Self {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("proxy")
            .enable_all()
            .build()
            .unwrap();
        let _in_runtime = runtime.enter();
        let (tcp, udp) = bind_pair();
        let port = tcp.local_addr().unwrap().port();
        let clock = Clock::new();
        let log = Mutex::new(Vec::new());
        let (to_server, rx_server) = mpsc::channel();
        let (to_client, rx_client) = mpsc::channel();
        let shared = Arc::new(Shared {
            impairment: Mutex::new(impairment),
            rng: Mutex::new(SplitMix64(seed)),
            log,
            clock,
            lines: [to_server, to_client],
            tasks: Mutex::new(Vec::new()),
            upstream: SocketAddr::from(([127, 0, 0, 1], turn_port)),
        });
        for rx in [rx_server, rx_client] {
            let weak = Arc::downgrade(&shared);
            std::thread::spawn(move || delay_line(rx, weak));
        }
        let s = shared.clone();
        let udp_task = runtime.spawn(async move { serve_udp(s, udp).await });
        let s = shared.clone();
        let tcp_task = runtime.spawn(async move { serve_tcp(s, tcp).await });
        shared
            .tasks
            .lock()
            .unwrap()
            .extend([udp_task.abort_handle(), tcp_task.abort_handle()]);
        drop(_in_runtime);
        Self {
            port,
            shared,
            runtime: Some(runtime),
        }
    }

    pub fn set_impairment(&self, impairment: Impairment) {
        *self.shared.impairment.lock().unwrap() = impairment;
    }

    /// A copy of the log so far.
    pub fn log(&self) -> Vec<Entry> {
        self.shared.log.lock().unwrap().clone()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        for task in self.shared.tasks.lock().unwrap().drain(..) {
            task.abort();
        }
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background(); // a test drops the proxy inside its own runtime
        }
    }
}

/// A TCP listener and a UDP socket on the same free loopback port.
fn bind_pair() -> (tokio::net::TcpListener, tokio::net::UdpSocket) {
    for _ in 0..50 {
        let tcp = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = tcp.local_addr().unwrap().port();
        if let Ok(udp) = std::net::UdpSocket::bind(("127.0.0.1", port)) {
            tcp.set_nonblocking(true).unwrap();
            udp.set_nonblocking(true).unwrap();
            return (
                tokio::net::TcpListener::from_std(tcp).unwrap(),
                tokio::net::UdpSocket::from_std(udp).unwrap(),
            );
        }
    }
    panic!("no free port for both UDP and TCP");
}

impl Shared {
    fn track(&self, task: tokio::task::JoinHandle<()>) {
        self.tasks.lock().unwrap().push(task.abort_handle());
    }

    /// Logs the TURN messages of `frames` and hands `bytes` to the direction's delay line,
    /// unless `droppable` and the loss draw says drop.
    fn submit(&self, dir: Dir, tcp: bool, bytes: Vec<u8>, frames: Vec<(usize, Kind)>, sink: Sink, droppable: bool) {
        let now = Instant::now();
        let imp = *self.impairment.lock().unwrap();
        let p = match dir {
            Dir::ToServer => imp.loss_to_server,
            Dir::ToClient => imp.loss_to_client,
        };
        let lost = droppable && p > 0.0 && self.rng.lock().unwrap().next_f64() < p;
        let in_ms = self.clock.ms(now);
        let entries = {
            let mut log = self.log.lock().unwrap();
            let first = log.len();
            log.extend(frames.into_iter().map(|(size, kind)| Entry {
                dir,
                tcp,
                in_ms,
                out_ms: None,
                bytes: size,
                kind,
            }));
            (first..log.len()).collect()
        };
        if lost {
            return;
        }
        let due = now + Duration::from_secs_f64(imp.delay_ms.max(0.0) / 1000.0);
        let line = match dir {
            Dir::ToServer => &self.lines[0],
            Dir::ToClient => &self.lines[1],
        };
        let _ = line.send(Job {
            due,
            bytes,
            sink,
            entries,
        });
    }
}

/// Sends each job at its due time, paced by the rate limit, and stamps its log entries.
fn delay_line(rx: mpsc::Receiver<Job>, shared: std::sync::Weak<Shared>) {
    let mut link_free = Instant::now();
    while let Ok(job) = rx.recv() {
        let Some(s) = shared.upgrade() else { return };
        let imp = *s.impairment.lock().unwrap();
        let mut send_at = job.due;
        if let Some(rate) = imp.rate_kbps.filter(|r| *r > 0.0) {
            let start = send_at.max(link_free);
            if start.duration_since(job.due).as_secs_f64() * 1000.0 > imp.queue_ms {
                continue; // drop-tail: the queue is full
            }
            link_free = start + Duration::from_secs_f64(job.bytes.len() as f64 * 8.0 / (rate * 1000.0));
            send_at = link_free;
        }
        drop(s);
        let now = Instant::now();
        if send_at > now {
            std::thread::sleep(send_at - now);
        }
        let sent = match &job.sink {
            Sink::UdpTo(sock, to) => retry(|| sock.send_to(&job.bytes, to).map(|_| ())),
            Sink::Udp(sock) => retry(|| sock.send(&job.bytes).map(|_| ())),
            Sink::Tcp(stream) => write_all_nonblocking(stream, &job.bytes),
        };
        let Some(s) = shared.upgrade() else { return };
        if sent {
            let out_ms = s.clock.ms(Instant::now());
            let mut log = s.log.lock().unwrap();
            for i in &job.entries {
                log[*i].out_ms = Some(out_ms);
            }
        }
    }
}

/// The sockets are shared with tokio, so they are non-blocking: wait out a full buffer.
fn retry(mut f: impl FnMut() -> std::io::Result<()>) -> bool {
    for _ in 0..1000 {
        match f() {
            Ok(()) => return true,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => std::thread::sleep(Duration::from_micros(200)),
            Err(_) => return false,
        }
    }
    false
}

fn write_all_nonblocking(stream: &std::net::TcpStream, mut buf: &[u8]) -> bool {
    let mut w = stream;
    let deadline = Instant::now() + Duration::from_secs(5);
    while !buf.is_empty() {
        match w.write(buf) {
            Ok(0) => return false,
            Ok(n) => buf = &buf[n..],
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_micros(200))
            }
            Err(_) => return false,
        }
    }
    true
}

async fn serve_udp(shared: Arc<Shared>, sock: tokio::net::UdpSocket) {
    let client_side = Arc::new(clone_udp(&sock));
    let mut clients: HashMap<SocketAddr, Arc<std::net::UdpSocket>> = HashMap::new();
    let mut buf = vec![0u8; 65_536];
    loop {
        let Ok((n, from)) = sock.recv_from(&mut buf).await else {
            continue;
        };
        let upstream = clients
            .entry(from)
            .or_insert_with(|| {
                let up = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
                up.connect(shared.upstream).unwrap();
                up.set_nonblocking(true).unwrap();
                let send = Arc::new(up.try_clone().unwrap());
                let recv = tokio::net::UdpSocket::from_std(up).unwrap();
                let (s, back) = (shared.clone(), client_side.clone());
                let task = tokio::spawn(async move {
                    let mut buf = vec![0u8; 65_536];
                    while let Ok(n) = recv.recv(&mut buf).await {
                        let msg = buf[..n].to_vec();
                        let kind = classify_turn(&msg);
                        s.submit(
                            Dir::ToClient,
                            false,
                            msg,
                            vec![(n, kind)],
                            Sink::UdpTo(back.clone(), from),
                            true,
                        );
                    }
                });
                shared.track(task);
                send
            })
            .clone();
        let msg = buf[..n].to_vec();
        let kind = classify_turn(&msg);
        shared.submit(Dir::ToServer, false, msg, vec![(n, kind)], Sink::Udp(upstream), true);
    }
}

fn clone_udp(sock: &tokio::net::UdpSocket) -> std::net::UdpSocket {
    use std::os::fd::{AsFd, OwnedFd};
    let fd: OwnedFd = sock.as_fd().try_clone_to_owned().unwrap();
    std::net::UdpSocket::from(fd)
}

async fn serve_tcp(shared: Arc<Shared>, listener: tokio::net::TcpListener) {
    loop {
        let Ok((client, _)) = listener.accept().await else {
            continue;
        };
        let Ok(server) = tokio::net::TcpStream::connect(shared.upstream).await else {
            continue;
        };
        let _ = client.set_nodelay(true);
        let _ = server.set_nodelay(true);
        let client = client.into_std().unwrap();
        let server = server.into_std().unwrap();
        let client_w = Arc::new(client.try_clone().unwrap());
        let server_w = Arc::new(server.try_clone().unwrap());
        let client_r = tokio::net::TcpStream::from_std(client).unwrap();
        let server_r = tokio::net::TcpStream::from_std(server).unwrap();
        let s = shared.clone();
        shared.track(tokio::spawn(pump(s, Dir::ToServer, client_r, server_w)));
        let s = shared.clone();
        shared.track(tokio::spawn(pump(s, Dir::ToClient, server_r, client_w)));
    }
}

/// Forwards one direction of a TCP connection, logging each complete TURN frame.
async fn pump(shared: Arc<Shared>, dir: Dir, from: tokio::net::TcpStream, to: Arc<std::net::TcpStream>) {
    let mut buf = vec![0u8; 65_536];
    let mut pending: Vec<u8> = Vec::new();
    loop {
        // tokio's `io-util` feature is not enabled in this crate: readiness plus `try_read`.
        if from.readable().await.is_err() {
            return;
        }
        let n = match from.try_read(&mut buf) {
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            Ok(0) | Err(_) => {
                let _ = to.shutdown(std::net::Shutdown::Write);
                return;
            }
            Ok(n) => n,
        };
        pending.extend_from_slice(&buf[..n]);
        let mut frames = Vec::new();
        while let Some(len) = tcp_frame_len(&pending) {
            if pending.len() < len {
                break;
            }
            frames.push((len, classify_turn(&pending[..len])));
            pending.drain(..len);
        }
        shared.submit(dir, true, buf[..n].to_vec(), frames, Sink::Tcp(to.clone()), false);
    }
}

fn be16(b: &[u8], at: usize) -> Option<usize> {
    Some(u16::from_be_bytes([*b.get(at)?, *b.get(at + 1)?]) as usize)
}

/// Length of the TURN frame at the start of a TCP stream (RFC 8656 §12.5: ChannelData is padded
/// to four bytes over TCP), when its header is complete.
fn tcp_frame_len(b: &[u8]) -> Option<usize> {
    let len = be16(b, 2)?;
    match b[0] >> 6 {
        0 => Some(20 + len),
        1 => Some(4 + len.div_ceil(4) * 4),
        _ => Some(b.len().max(1)), // not TURN framing: forward as it comes
    }
}

/// What a TURN message (ChannelData or STUN) carries.
pub fn classify_turn(msg: &[u8]) -> Kind {
    match msg.first().map(|b| b >> 6) {
        Some(1) => {
            let len = be16(msg, 2).unwrap_or(0);
            msg.get(4..4 + len).map_or(Kind::Other, classify_inner)
        }
        Some(0) if msg.len() >= 20 => {
            let method = be16(msg, 0).unwrap_or(0);
            // Send (0x0016) and Data (0x0017) indications carry a DATA attribute (0x0013).
            if method == 0x0016 || method == 0x0017 {
                let end = (20 + be16(msg, 2).unwrap_or(0)).min(msg.len());
                let mut at = 20;
                while at + 4 <= end {
                    let (typ, len) = (be16(msg, at).unwrap(), be16(msg, at + 2).unwrap());
                    if typ == 0x0013 {
                        return msg.get(at + 4..at + 4 + len).map_or(Kind::Other, classify_inner);
                    }
                    at += 4 + len.div_ceil(4) * 4;
                }
            }
            Kind::TurnControl
        }
        _ => Kind::Other,
    }
}

/// Demultiplexes a relayed packet as RFC 7983 does; parses the RTP header's length.
fn classify_inner(p: &[u8]) -> Kind {
    match p.first() {
        Some(0..=3) if p.len() >= 20 => {
            let typ = be16(p, 0).unwrap_or(0);
            let class = (((typ >> 7) & 0b10) | ((typ >> 4) & 0b01)) as u8;
            let mut txid = [0; 12];
            txid.copy_from_slice(&p[8..20]);
            Kind::Stun { class, txid }
        }
        Some(20..=63) => Kind::Dtls,
        Some(128..=191) if p.len() >= 12 => {
            if (192..=223).contains(&p[1]) {
                return Kind::Rtcp;
            }
            let csrc = (p[0] & 0x0f) as usize;
            let mut header = 12 + 4 * csrc;
            if p[0] & 0x10 != 0 {
                header += 4 + 4 * be16(p, header + 2).unwrap_or(0);
            }
            let ssrc = u32::from_be_bytes([p[8], p[9], p[10], p[11]]);
            Kind::Rtp {
                ssrc,
                payload: p.len().saturating_sub(header),
                padded: p[0] & 0x20 != 0,
            }
        }
        _ => Kind::Other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_data_with_rtp_is_parsed() {
        // ChannelData 0x4000, length 12+2 (header with one extension word... kept simple: no X).
        let mut rtp = vec![0x80, 111, 0, 1, 0, 0, 0, 1, 0xde, 0xad, 0xbe, 0xef];
        rtp.extend_from_slice(&[1, 2, 3, 4, 5]);
        let mut msg = vec![0x40, 0x00, 0, rtp.len() as u8];
        msg.extend_from_slice(&rtp);
        assert_eq!(
            classify_turn(&msg),
            Kind::Rtp {
                ssrc: 0xdeadbeef,
                payload: 5,
                padded: false
            }
        );
        assert_eq!(tcp_frame_len(&msg), Some(4 + 20));
    }
}
