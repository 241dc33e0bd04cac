//! A Janus WebRTC server (Debian's `janus`, VideoRoom plugin and HTTP transport only) on free loopback ports, for the SFU browser test.

use crate::{free_port, wait_tcp, Proc};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Janus with a generated configuration folder: the HTTP API and the admin API on their own free
/// loopback ports, ICE on 127.0.0.1 only (no STUN, no 1:1 NAT), one VideoRoom room
/// ([`Janus::ROOM`]). Killed when dropped.
pub struct Janus {
    /// The Janus API, e.g. `http://127.0.0.1:PORT/janus`.
    pub api: String,
    /// The admin API, e.g. `http://127.0.0.1:PORT/admin`.
    pub admin: String,
    http: reqwest::Client,
    _proc: Proc,
    _dir: tempfile::TempDir,
}

/// The folder of Janus's plugins and transports (Debian puts them under the multiarch folder).
fn modules_folder() -> PathBuf {
    let mut candidates = vec![PathBuf::from("/usr/lib/janus"), PathBuf::from("/opt/janus/lib/janus")];
    if let Ok(entries) = std::fs::read_dir("/usr/lib") {
        candidates.extend(entries.flatten().map(|e| e.path().join("janus")));
    }
    candidates
        .into_iter()
        .find(|dir| dir.join("plugins/libjanus_videoroom.so").exists())
        .expect("Janus's VideoRoom plugin (libjanus_videoroom.so) not found: scripts/test installs janus")
}

/// A folder holding a link to only `library` of `from`, so Janus loads nothing else of that kind.
fn only(dir: &Path, kind: &str, from: &Path, library: Option<&str>) -> PathBuf {
    let folder = dir.join(kind);
    std::fs::create_dir_all(&folder).unwrap();
    if let Some(library) = library {
        std::os::unix::fs::symlink(from.join(kind).join(library), folder.join(library)).unwrap();
    }
    folder
}

impl Janus {
    pub const ADMIN_SECRET: &'static str = "vitals-admin-secret";
    pub const ROOM: u64 = 1234;

    pub fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let modules = modules_folder();
        let plugins = only(dir.path(), "plugins", &modules, Some("libjanus_videoroom.so"));
        let transports = only(dir.path(), "transports", &modules, Some("libjanus_http.so"));
        let events = only(dir.path(), "events", &modules, None);
        let loggers = only(dir.path(), "loggers", &modules, None);
        let (api_port, admin_port) = (free_port(), free_port());
        let rtp_min = 20_000 + (api_port % 1_000) * 20;
        let configs = dir.path().join("configs");
        std::fs::create_dir_all(&configs).unwrap();
        let write = |name: &str, text: String| std::fs::write(configs.join(name), text).unwrap();
        write(
            "janus.jcfg",
            format!(
                r#"general: {{
  configs_folder = "{configs}"
  plugins_folder = "{plugins}"
  transports_folder = "{transports}"
  events_folder = "{events}"
  loggers_folder = "{loggers}"
  debug_level = 3
  admin_secret = "{secret}"
  session_timeout = 120
}}
certificates: {{}}
media: {{
  ipv6 = false
  rtp_port_range = "{rtp_min}-{rtp_max}"
}}
nat: {{
  ice_enforce_list = "127.0.0.1"
  nice_debug = false
  full_trickle = false
  ice_lite = false
  ice_tcp = false
}}
plugins: {{}}
transports: {{}}
loggers: {{}}
events: {{}}
"#,
                configs = configs.display(),
                plugins = plugins.display(),
                transports = transports.display(),
                events = events.display(),
                loggers = loggers.display(),
                secret = Self::ADMIN_SECRET,
                rtp_max = rtp_min + 19,
            ),
        );
        write(
            "janus.transport.http.jcfg",
            format!(
                r#"general: {{
  json = "plain"
  base_path = "/janus"
  http = true
  port = {api_port}
  ip = "127.0.0.1"
  https = false
}}
admin: {{
  admin_base_path = "/admin"
  admin_http = true
  admin_port = {admin_port}
  admin_ip = "127.0.0.1"
  admin_https = false
}}
cors: {{}}
"#
            ),
        );
        // Room bitrate 0: Janus does not cap the publishers (REMB), so Chromium sends what it wants.
        write(
            "janus.plugin.videoroom.jcfg",
            format!(
                r#"general: {{}}
room-{room}: {{
  description = "Call Vitals SFU test"
  publishers = 6
  bitrate = 0
  fir_freq = 10
  audiocodec = "opus"
  videocodec = "vp8"
  record = false
}}
"#,
                room = Self::ROOM
            ),
        );
        let log = dir.path().join("janus.log");
        let child = Command::new("janus")
            .arg("-F")
            .arg(&configs)
            .arg("--interface=127.0.0.1")
            .arg(format!("--log-file={}", log.display()))
            .arg("--disable-colors")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("janus must be installed: scripts/test installs it (Debian package janus)");
        let janus = Self {
            api: format!("http://127.0.0.1:{api_port}/janus"),
            admin: format!("http://127.0.0.1:{admin_port}/admin"),
            http: reqwest::Client::new(),
            _proc: Proc(child, None),
            _dir: dir,
        };
        let start = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", api_port)).is_err() {
            assert!(
                start.elapsed() < Duration::from_secs(15),
                "janus did not listen on {api_port}; its log: {}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        wait_tcp(admin_port);
        janus
    }

    /// One admin API request (`admin_secret` and a transaction added), answered with `success`.
    pub async fn admin(&self, path: &str, mut request: Value) -> Value {
        request["admin_secret"] = json!(Self::ADMIN_SECRET);
        static NEXT: AtomicU64 = AtomicU64::new(1);
        request["transaction"] = json!(format!("t{}", NEXT.fetch_add(1, Ordering::Relaxed)));
        let answer: Value = self
            .http
            .post(format!("{}{path}", self.admin))
            .json(&request)
            .send()
            .await
            .expect("Janus admin request")
            .json()
            .await
            .expect("Janus admin JSON");
        assert_eq!(answer["janus"], "success", "Janus admin {path} {request}: {answer}");
        answer
    }

    /// `handle_info` of one handle of one session: its `info` object (plugin data, and per
    /// medium under `webrtc.media` the `stats` with `in`/`out` bytes and packets).
    pub async fn handle_info(&self, session: u64, handle: u64) -> Value {
        self.admin(&format!("/{session}/{handle}"), json!({"janus": "handle_info"}))
            .await["info"]
            .clone()
    }
}
