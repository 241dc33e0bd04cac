//! Browser harness for the end-to-end tests and tools: in-process collector, chromedriver + Chromium with the extension, coturn, Janus.

pub mod janus;
pub mod lab;
pub mod proxy;
pub mod tap;

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{json, Value};
use std::net::TcpListener as StdListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long a condition may take before a test fails (Chromium on two busy cores is slow).
const PATIENCE: Duration = Duration::from_secs(45);
pub const INGEST_KEY: &str = "test-ingest-key";
pub const ADMIN_TOKEN: &str = "test-admin-token";

pub fn free_port() -> u16 {
    StdListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

/// A child process killed when dropped; for chromedriver, also the Chromium it started with
/// the `--user-data-dir` given (killing chromedriver leaves its browser running, and a failed
/// test would leave a call going on both cores).
pub struct Proc(Child, Option<PathBuf>);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
        if let Some(profile) = &self.1 {
            kill_chromium(profile);
        }
    }
}

/// Kills every process whose command line names `profile` as its user data directory.
fn kill_chromium(profile: &Path) {
    let flag = format!("--user-data-dir={}", profile.display());
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return;
    };
    let pids: Vec<String> = entries
        .flatten()
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|pid| pid.bytes().all(|b| b.is_ascii_digit()))
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|cmd| cmd.split(|&b| b == 0).any(|arg| arg == flag.as_bytes()))
        })
        .collect();
    if !pids.is_empty() {
        let _ = Command::new("kill").arg("-9").args(&pids).status();
    }
}

/// The collector, in-process on a free port, with the embedded store.
pub struct Collector {
    pub base: String,
    http: reqwest::Client,
}

impl Collector {
    pub async fn start() -> Self {
        Self::start_with(vitals_collector::AppState::for_tests(INGEST_KEY, ADMIN_TOKEN)).await
    }

    /// The collector in-process over `state` (another store, e.g. Redis), on a free port, with
    /// the demo call page the tests open.
    pub async fn start_with(state: vitals_collector::AppState) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(vitals_collector::serve(listener, state.with_demo_page()));
        Self::at(base)
    }

    /// A collector reached at `base`, e.g. through a test proxy in front of a real one (for
    /// [`Browser::start`], which points the extension at `base`).
    pub fn at(base: String) -> Self {
        Self {
            base,
            http: reqwest::Client::new(),
        }
    }

    /// The meeting id the extension uploads for this collector's page at `path` (the origin
    /// without its port, the IP-literal host replaced: `privacy::meeting_id`).
    pub fn meeting_id(&self, path: &str) -> String {
        vitals_shared::privacy::meeting_id(&format!("{}{path}", self.base)).expect("an http URL")
    }

    /// The demo call page, relayed through `turn` over `transport` when given.
    pub fn demo_url(&self, turn: Option<(&Turn, &str)>) -> String {
        match turn {
            None => format!("{}/demo", self.base),
            Some((t, transport)) => format!(
                "{}/demo?turn=turn:127.0.0.1:{}&transport={transport}&username={}&credential={}",
                self.base,
                t.port,
                Turn::USER,
                Turn::PASSWORD
            ),
        }
    }

    pub async fn meetings(&self) -> Value {
        let res = self
            .http
            .get(format!("{}/api/v1/meetings", self.base))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .expect("meetings request");
        assert!(res.status().is_success(), "GET /api/v1/meetings: {}", res.status());
        res.json().await.expect("meetings JSON")
    }

    /// Waits for a participant of any meeting that satisfies `pred`, and returns it.
    pub async fn wait_participant(&self, pred: impl Fn(&Value) -> bool) -> Value {
        let start = Instant::now();
        loop {
            let meetings = self.meetings().await;
            let found = meetings["meetings"]
                .as_array()
                .into_iter()
                .flatten()
                .flat_map(|m| m["participants"].as_array().cloned().unwrap_or_default())
                .find(|p| pred(p));
            if let Some(p) = found {
                return p;
            }
            assert!(
                start.elapsed() < PATIENCE,
                "no matching participant on the collector; it has {meetings}"
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
}

/// A coturn server on free loopback ports (UDP and TCP on the same port).
pub struct Turn {
    pub port: u16,
    _proc: Proc,
}

impl Turn {
    pub const USER: &'static str = "vitals";
    pub const PASSWORD: &'static str = "secret";

    pub fn start() -> Self {
        let port = free_port();
        let relay_min = 40_000 + (port % 10_000) * 2;
        let child = Command::new("turnserver")
            .args([
                "-n",
                "--listening-ip=127.0.0.1",
                "--relay-ip=127.0.0.1",
                "--realm=test",
                "--lt-cred-mech",
            ])
            .arg(format!("--listening-port={port}"))
            .arg(format!("--user={}:{}", Self::USER, Self::PASSWORD))
            .arg(format!("--min-port={relay_min}"))
            .arg(format!("--max-port={}", relay_min + 200))
            .args([
                "--allow-loopback-peers",
                "--no-cli",
                "--no-tls",
                "--no-dtls",
                "--fingerprint",
                "--no-stdout-log",
            ])
            .arg(format!(
                "--pidfile={}",
                std::env::temp_dir().join(format!("turn-{port}.pid")).display()
            ))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("turnserver (coturn) must be installed: scripts/test installs it");
        let turn = Self {
            port,
            _proc: Proc(child, None),
        };
        wait_tcp(port);
        turn
    }
}

pub fn wait_tcp(port: u16) {
    let start = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "nothing listens on port {port}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Chromium with the extension loaded, driven through chromedriver.
pub struct Browser {
    client: Client,
    extension_id: String,
    _driver: Proc,
    _profile: tempfile::TempDir,
    _dist: tempfile::TempDir,
}

/// Copies `extension/dist` and points its defaults at `collector`.
pub fn configured_extension(collector: &Collector) -> tempfile::TempDir {
    let dist = std::env::var_os("VITALS_EXTENSION_DIST")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("extension/dist"));
    assert!(
        dist.join("manifest.json").exists(),
        "no built extension at {}: run scripts/build-extension (scripts/test does)",
        dist.display()
    );
    let copy = tempfile::tempdir().unwrap();
    copy_dir(&dist, copy.path());
    let defaults = json!({"collector_url": collector.base, "ingest_key": INGEST_KEY, "sending": true});
    std::fs::write(copy.path().join("defaults.json"), defaults.to_string()).unwrap();
    copy
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// Starts chromedriver and a headless Chromium session
/// with fake media devices and a fresh `profile`, loading `extension` when given (else none).
pub async fn webdriver(profile: &Path, extension: Option<&Path>) -> (Proc, Client) {
    webdriver_with_flags(profile, extension, &[]).await
}

/// [`webdriver`], with more Chromium command-line flags.
pub async fn webdriver_with_flags(profile: &Path, extension: Option<&Path>, flags: &[&str]) -> (Proc, Client) {
    let port = free_port();
    let driver = std::env::var("CHROMEDRIVER").unwrap_or_else(|_| "chromedriver".into());
    let child = Command::new(&driver)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("{driver}: {e} (scripts/test installs chromium-driver)"));
    let driver = Proc(child, Some(profile.to_path_buf()));
    wait_tcp(port);
    let mut args: Vec<String> = [
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--use-fake-device-for-media-stream",
        "--use-fake-ui-for-media-stream",
        "--autoplay-policy=no-user-gesture-required",
    ]
    .map(String::from)
    .to_vec();
    args.extend(flags.iter().map(|f| f.to_string()));
    args.push(format!("--user-data-dir={}", profile.display()));
    match extension {
        Some(dir) => {
            args.push(format!("--disable-extensions-except={}", dir.display()));
            args.push(format!("--load-extension={}", dir.display()));
        }
        None => args.push("--disable-extensions".into()),
    }
    let caps = json!({
        "goog:chromeOptions": {
            "binary": std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into()),
            "args": args,
        }
    });
    let client = ClientBuilder::native()
        .capabilities(caps.as_object().unwrap().clone())
        .connect(&format!("http://127.0.0.1:{port}"))
        .await
        .expect("WebDriver session with Chromium");
    (driver, client)
}

/// Waits until the service worker has registered the hook and bridge content scripts (it does
/// so at install, moments after start; a page opened before then would not be measured), then
/// leaves the tab blank.
pub async fn wait_hook_registered(client: &Client, extension_id: &str) {
    client
        .goto(&format!("chrome-extension://{extension_id}/options.html"))
        .await
        .expect("open options page");
    let script = "const done = arguments[arguments.length - 1];
        chrome.scripting.getRegisteredContentScripts().then((s) => done(s.length), (e) => done(String(e)));";
    let start = Instant::now();
    loop {
        let registered = client.execute_async(script, vec![]).await.unwrap_or(Value::Null);
        if registered.as_u64() >= Some(2) {
            break;
        }
        assert!(
            start.elapsed() < PATIENCE,
            "content scripts never registered: {registered}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    client.goto("about:blank").await.expect("blank tab");
}

impl Browser {
    pub async fn start(collector: &Collector) -> Self {
        Self::start_with_flags(collector, &[]).await
    }

    /// [`Browser::start`], with more Chromium command-line flags (for example a WebRTC field
    /// trial).
    pub async fn start_with_flags(collector: &Collector, flags: &[&str]) -> Self {
        let dist = configured_extension(collector);
        let extension_id = std::fs::read_to_string(workspace_root().join("extension/EXTENSION_ID"))
            .expect("extension/EXTENSION_ID")
            .trim()
            .to_string();
        let profile = tempfile::tempdir().unwrap();
        let (driver, client) = webdriver_with_flags(profile.path(), Some(dist.path()), flags).await;
        wait_hook_registered(&client, &extension_id).await;
        Self {
            client,
            extension_id,
            _driver: driver,
            _profile: profile,
            _dist: dist,
        }
    }

    /// Opens the demo call in the first tab and waits until both peers are connected.
    pub async fn open_demo(&self, url: &str) {
        self.client.goto(url).await.expect("open demo");
        let start = Instant::now();
        loop {
            let state = self
                .client
                .execute("return window.demo && [window.demo.state, window.demo.error]", vec![])
                .await;
            let state = state.unwrap_or(Value::Null);
            if state[0] == "connected" {
                return;
            }
            assert!(state[0] != "failed", "demo call failed: {state}");
            assert!(start.elapsed() < PATIENCE, "demo call did not connect: {state}");
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// The WebDriver client, for tests that script pages themselves.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Opens the popup as a page in a new tab (it then shows the tab that last had a call).
    pub async fn open_popup(&self) -> Popup<'_> {
        let win = self.client.new_window(true).await.expect("new tab");
        self.client.switch_to_window(win.handle).await.expect("switch tab");
        let url = format!("chrome-extension://{}/popup.html", self.extension_id);
        self.client.goto(&url).await.expect("open popup");
        Popup { client: &self.client }
    }

    pub async fn quit(self) {
        let _ = self.client.close().await;
    }

    /// The extension's id (its pages are `chrome-extension://<id>/...`).
    pub fn extension_id(&self) -> &str {
        &self.extension_id
    }

    /// The folder Chromium loaded the extension from (a copy of the built one: a test may
    /// change its files and reload the extension, as an update does).
    pub fn extension_dir(&self) -> &Path {
        self._dist.path()
    }

    /// The current tab, read as a popup page (for a test that opened it itself).
    pub fn current_page(&self) -> Popup<'_> {
        Popup { client: &self.client }
    }

    /// Opens one of the extension's pages (e.g. `options.html`) in a new tab.
    pub async fn open_extension_page(&self, page: &str) -> Popup<'_> {
        let win = self.client.new_window(true).await.expect("new tab");
        self.client.switch_to_window(win.handle).await.expect("switch tab");
        let url = format!("chrome-extension://{}/{page}", self.extension_id);
        self.client.goto(&url).await.expect("open extension page");
        Popup { client: &self.client }
    }

    /// Quits Chromium and starts it again on the same profile and extension folder (what a
    /// browser restart keeps: storage, settings). Chromium loads a command-line extension
    /// afresh at every start, as an install.
    pub async fn restart(self) -> Self {
        let browser = self.relaunch(&[]).await;
        wait_hook_registered(&browser.client, &browser.extension_id).await;
        browser
    }

    /// [`Browser::restart`] as a browser set to continue where it left off: the tabs open at
    /// the quit are restored and load at once, perhaps before the extension has registered its
    /// content scripts. Nothing is waited for; the restored tabs are the session's windows.
    pub async fn restart_restoring_tabs(self) -> Self {
        self.relaunch(&["--restore-last-session"]).await
    }

    async fn relaunch(self, flags: &[&str]) -> Self {
        let Browser {
            client,
            extension_id,
            _driver,
            _profile,
            _dist,
        } = self;
        let _ = client.close().await;
        drop(_driver);
        let (driver, client) = webdriver_with_flags(_profile.path(), Some(_dist.path()), flags).await;
        Self {
            client,
            extension_id,
            _driver: driver,
            _profile,
            _dist,
        }
    }
}

/// Chromedriver's `goog/cdp/execute`: one Chrome DevTools Protocol command on the session's
/// current page target (browser-wide domains such as `Target` and `Browser` work from any page).
#[derive(Debug)]
struct CdpCommand {
    cmd: String,
    params: Value,
}

impl fantoccini::wd::WebDriverCompatibleCommand for CdpCommand {
    fn endpoint(&self, base: &url::Url, session: Option<&str>) -> Result<url::Url, url::ParseError> {
        base.join(&format!("session/{}/goog/cdp/execute", session.unwrap_or_default()))
    }

    fn method_and_body(&self, _url: &url::Url) -> (axum::http::Method, Option<String>) {
        let body = json!({"cmd": self.cmd, "params": self.params});
        (axum::http::Method::POST, Some(body.to_string()))
    }
}

/// Runs the CDP command `cmd` with `params` and returns its result object.
pub async fn cdp(client: &Client, cmd: &str, params: Value) -> Value {
    let command = CdpCommand {
        cmd: cmd.to_owned(),
        params,
    };
    client
        .issue_cmd(command)
        .await
        .unwrap_or_else(|e| panic!("CDP {cmd}: {e}"))
}

/// Clicks the element `css` of the current page (a WebDriver click: a real user gesture).
pub async fn click(client: &Client, css: &str) {
    client
        .find(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("{css}: {e}"))
        .click()
        .await
        .unwrap_or_else(|e| panic!("click {css}: {e}"));
}

/// The popup page.
pub struct Popup<'a> {
    client: &'a Client,
}

impl Popup<'_> {
    pub async fn exists(&self, css: &str) -> bool {
        self.client.find(Locator::Css(css)).await.is_ok()
    }

    /// Waits for `css` to carry a numeric attribute satisfying `pred`; returns the number.
    pub async fn wait_number(&self, css: &str, attr: &str, pred: impl Fn(f64) -> bool) -> f64 {
        let start = Instant::now();
        let mut last = None;
        loop {
            if let Ok(el) = self.client.find(Locator::Css(css)).await {
                last = el.attr(attr).await.ok().flatten();
                if let Some(v) = last.as_deref().and_then(|s| s.parse::<f64>().ok()) {
                    if pred(v) {
                        return v;
                    }
                }
            }
            assert!(
                start.elapsed() < PATIENCE,
                "popup {css}[{attr}] never satisfied the condition; last {last:?}"
            );
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }

    /// Waits for `css` to exist and returns its text.
    pub async fn wait_text(&self, css: &str) -> String {
        let start = Instant::now();
        loop {
            if let Ok(el) = self.client.find(Locator::Css(css)).await {
                if let Ok(text) = el.text().await {
                    return text;
                }
            }
            let body = match self.client.find(Locator::Css("body")).await {
                Ok(b) => b.text().await.unwrap_or_default(),
                Err(_) => String::new(),
            };
            assert!(start.elapsed() < PATIENCE, "popup never showed {css}; it shows: {body}");
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }
}
