//! The browser: Debian's headless Chromium driven over WebDriver (`chromedriver` +
//! `fantoccini`).
//!
//! * [`Browser::start`] starts a `chromedriver` of its own (`--port=0`: it picks a free port and
//!   says which), and through it one Chromium session with a fresh, empty profile
//!   (`--user-data-dir` in a new temporary folder), headless, with the flags this machine needs
//!   ([`CHROMIUM_FLAGS`]).
//! * At most [`parallel_browsers`] sessions run at once in this test binary, whatever
//!   `--test-threads` says (a global semaphore, held by each [`Browser`]): each Chromium is half
//!   a dozen processes, and the machine has two cores.
//! * Waits are explicit: every `wait_*` method polls for a condition (an element, a URL, a text)
//!   every [`POLL`] until [`wait_timeout`], then fails with what it waited for, where the browser
//!   is and what the page says. No test sleeps for the browser.
//! * Dropping a [`Browser`] — at the end of a test or while a failed test unwinds — kills
//!   chromedriver and every process under it (by their ids: the process tree of the chromedriver
//!   this harness started, nothing found by name) and removes the profile. When the test is
//!   failing, it first saves a screenshot, the page's HTML and its URL to
//!   `target/browser-screenshots/<test>.png` (`.html`, `.txt`), and says where.
//! * Starting is the one thing retried (three attempts, each reported): on a busy machine
//!   chromedriver or Chromium may fail to come up. No chromium or chromedriver at all is a
//!   clear failure that names `scripts/test.sh`, never a skip.
//!
//! `CHROMIUM` and `CHROMEDRIVER` override the binaries (`/usr/bin/chromium`,
//! `/usr/bin/chromedriver`), `BROWSER_TESTS_PARALLEL` the number of browsers at once (2), and
//! `BROWSER_WAIT_SECS` the wait timeout (20).

use std::collections::VecDeque;
use std::future::Future;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use fantoccini::elements::Element;
use fantoccini::wd::{Capabilities, WebDriverCompatibleCommand, WindowHandle};
use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::{json, Value};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use url::Url;

/// The flags Chromium needs on this machine (see the machine notes: headless, as root, and no
/// network but loopback). `--host-resolver-rules` makes every host name but `localhost`
/// unresolvable at once, so that pages that load outside resources (oidc-provider's pages
/// import a web font) neither wait for nor touch the network.
pub const CHROMIUM_FLAGS: &[&str] = &[
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--disable-extensions",
    "--no-default-browser-check",
    "--password-store=basic",
    "--window-size=1280,900",
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE localhost, EXCLUDE 127.0.0.1, EXCLUDE 127.0.0.2",
];

/// How often the waits poll.
pub const POLL: Duration = Duration::from_millis(50);

/// How long a wait waits before the test fails: `BROWSER_WAIT_SECS`, 20 s by default.
pub fn wait_timeout() -> Duration {
    Duration::from_secs(env_number("BROWSER_WAIT_SECS").unwrap_or(20))
}

/// How many browsers may run at once: `BROWSER_TESTS_PARALLEL`, 2 by default.
pub fn parallel_browsers() -> usize {
    env_number("BROWSER_TESTS_PARALLEL").unwrap_or(2).max(1) as usize
}

fn env_number(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.trim().parse().ok())
}

static SLOTS: LazyLock<Arc<Semaphore>> =
    LazyLock::new(|| Arc::new(Semaphore::new(parallel_browsers())));

/// How long starting chromedriver may take.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// Attempts at starting chromedriver and Chromium before the test fails.
const START_ATTEMPTS: usize = 3;
/// Lines of chromedriver output kept for failure reports.
const LOG_LINES_KEPT: usize = 200;

fn binary(env: &str, default: &str) -> PathBuf {
    let path = std::env::var_os(env)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(default));
    if !path.is_file() {
        panic!(
            "{} not found: the browser tests need Debian's `chromium` and `chromium-driver` \
             packages (/usr/bin/chromium, /usr/bin/chromedriver; or set {env}).\n\
             Run `bash scripts/test.sh`, which installs them with apt when they are missing, \
             or `apt-get install chromium chromium-driver`.",
            path.display()
        );
    }
    path
}

/// The folder failure screenshots go to: `target/browser-screenshots`.
pub fn screenshot_dir() -> PathBuf {
    // CARGO_TARGET_TMPDIR is `<target>/tmp`.
    Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("target dir")
        .join("browser-screenshots")
}

/// The running test's name, from its thread (libtest names each test's thread after it).
fn test_name() -> String {
    static UNNAMED: AtomicUsize = AtomicUsize::new(0);
    match std::thread::current().name() {
        Some(name) if name != "main" => name.replace("::", "__"),
        _ => format!("unnamed-{}", UNNAMED.fetch_add(1, Ordering::Relaxed)),
    }
}

// ---------------------------------------------------------------------------------------------
// chromedriver
// ---------------------------------------------------------------------------------------------

struct ChromeDriver {
    child: Child,
    port: u16,
    log: Arc<Mutex<VecDeque<String>>>,
}

impl ChromeDriver {
    /// Starts chromedriver on a port of its choosing and waits until it says which.
    async fn start() -> Result<ChromeDriver, String> {
        let path = binary("CHROMEDRIVER", "/usr/bin/chromedriver");
        let mut child = Command::new(&path)
            .arg("--port=0")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", path.display()))?;
        let log = Arc::new(Mutex::new(VecDeque::new()));
        let (port_tx, port_rx) = tokio::sync::oneshot::channel();
        let stdout = child.stdout.take().expect("piped stdout");
        let stderr = child.stderr.take().expect("piped stderr");
        {
            let log = Arc::clone(&log);
            std::thread::spawn(move || {
                let mut port_tx = Some(port_tx);
                for line in BufReader::new(stdout).split(b'\n').map_while(Result::ok) {
                    let line = String::from_utf8_lossy(&line).into_owned();
                    // "ChromeDriver was started successfully on port 36755."
                    if let Some(rest) = line.split("started successfully on port ").nth(1) {
                        if let Some(tx) = port_tx.take() {
                            let _ = tx.send(rest.trim_end_matches('.').trim().parse::<u16>());
                        }
                    }
                    push_log(&log, line);
                }
            });
        }
        {
            let log = Arc::clone(&log);
            std::thread::spawn(move || {
                for line in BufReader::new(stderr).split(b'\n').map_while(Result::ok) {
                    push_log(&log, format!("[stderr] {}", String::from_utf8_lossy(&line)));
                }
            });
        }
        let mut driver = ChromeDriver {
            child,
            port: 0,
            log,
        };
        match tokio::time::timeout(START_TIMEOUT, port_rx).await {
            Ok(Ok(Ok(port))) => {
                driver.port = port;
                Ok(driver)
            }
            other => {
                // Give the output readers a moment to collect the last lines.
                tokio::time::sleep(Duration::from_millis(200)).await;
                let status = driver.child.try_wait();
                Err(format!(
                    "chromedriver did not report its port ({other:?}; exit status {status:?}); \
                     its output:\n{}",
                    driver.logs()
                ))
                // `driver` is dropped here: the process is killed.
            }
        }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn logs(&self) -> String {
        let log = self.log.lock().unwrap_or_else(|e| e.into_inner());
        log.iter().cloned().collect::<Vec<_>>().join("\n")
    }
}

impl Drop for ChromeDriver {
    fn drop(&mut self) {
        // Chromium and its helpers are chromedriver's children and grandchildren: collect the
        // whole tree first (once chromedriver is gone they are re-parented and cannot be told
        // from other processes), then kill it, leaves and root alike.
        let mut pids = descendants(self.child.id());
        pids.push(self.child.id());
        for pid in pids {
            // SAFETY: kill(2) with a pid of a process this harness started, or one of its
            // descendants collected just above; no memory is involved.
            unsafe {
                libc::kill(pid as libc::pid_t, libc::SIGKILL);
            }
        }
        let _ = self.child.wait();
    }
}

fn push_log(log: &Mutex<VecDeque<String>>, line: String) {
    let mut log = log.lock().unwrap_or_else(|e| e.into_inner());
    if log.len() == LOG_LINES_KEPT {
        log.pop_front();
    }
    log.push_back(line);
}

/// Every process under `root`, from /proc (each process's parent is field 4 of its `stat`).
fn descendants(root: u32) -> Vec<u32> {
    let mut parent_of = Vec::new();
    if let Ok(entries) = std::fs::read_dir("/proc") {
        for entry in entries.flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|s| s.parse::<u32>().ok())
            else {
                continue;
            };
            let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
                continue;
            };
            // "pid (comm) state ppid ...": comm may hold spaces and parentheses.
            let Some(after_comm) = stat.rfind(')').map(|i| &stat[i + 1..]) else {
                continue;
            };
            if let Some(ppid) = after_comm
                .split_whitespace()
                .nth(1)
                .and_then(|s| s.parse::<u32>().ok())
            {
                parent_of.push((pid, ppid));
            }
        }
    }
    let mut found = vec![root];
    let mut i = 0;
    while i < found.len() {
        let parent = found[i];
        found.extend(
            parent_of
                .iter()
                .filter(|(_, ppid)| *ppid == parent)
                .map(|(pid, _)| *pid),
        );
        i += 1;
    }
    found.remove(0);
    found
}

// ---------------------------------------------------------------------------------------------
// The profile folder
// ---------------------------------------------------------------------------------------------

struct Profile(PathBuf);

impl Profile {
    fn new(test: &str) -> Profile {
        static COUNT: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "tower-oauth2-login-chromium-{}-{}-{}",
            std::process::id(),
            COUNT.fetch_add(1, Ordering::Relaxed),
            test.chars().take(40).collect::<String>()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
        Profile(dir)
    }
}

impl Drop for Profile {
    fn drop(&mut self) {
        // Chromium was killed just before; a process still exiting may write a last file.
        for _ in 0..5 {
            if std::fs::remove_dir_all(&self.0).is_ok() || !self.0.exists() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The browser
// ---------------------------------------------------------------------------------------------

/// One Chromium session in its own profile, with its own chromedriver.
pub struct Browser {
    client: Client,
    session_id: String,
    name: String,
    // Dropped in this order, after `Drop for Browser` ran: chromedriver and Chromium are
    // killed, then the profile is removed, then the slot is given back.
    driver: ChromeDriver,
    _profile: Profile,
    _slot: OwnedSemaphorePermit,
}

impl Browser {
    /// Waits for a free slot, then starts chromedriver and a Chromium session.
    pub async fn start() -> Browser {
        let name = test_name();
        let slot = Arc::clone(&SLOTS)
            .acquire_owned()
            .await
            .expect("the semaphore is never closed");
        let chromium = binary("CHROMIUM", "/usr/bin/chromium");
        // A fresh run of a test leaves no stale failure report behind.
        for ext in ["png", "html", "txt"] {
            let _ = std::fs::remove_file(screenshot_dir().join(format!("{name}.{ext}")));
        }
        // Starting is the one step retried: on a busy machine chromedriver or Chromium can fail
        // to come up; what the tests check is never retried.
        let mut failures = Vec::new();
        for attempt in 1..=START_ATTEMPTS {
            match Self::launch(&name, &chromium).await {
                Ok((driver, profile, client, session_id)) => {
                    return Browser {
                        client,
                        session_id,
                        name,
                        driver,
                        _profile: profile,
                        _slot: slot,
                    }
                }
                Err(why) => {
                    eprintln!(
                        "browser test `{name}`: the browser did not start \
                         (attempt {attempt} of {START_ATTEMPTS}): {why}"
                    );
                    failures.push(why);
                }
            }
        }
        panic!(
            "the browser did not start in {START_ATTEMPTS} attempts:\n{}",
            failures.join("\n---\n")
        );
    }

    /// One attempt at chromedriver and a Chromium session in a fresh profile.
    async fn launch(
        name: &str,
        chromium: &Path,
    ) -> Result<(ChromeDriver, Profile, Client, String), String> {
        let driver = ChromeDriver::start().await?;
        let profile = Profile::new(name);
        let mut args: Vec<String> = CHROMIUM_FLAGS.iter().map(|s| s.to_string()).collect();
        args.push(format!("--user-data-dir={}", profile.0.display()));
        let capabilities: Capabilities = match json!({
            "browserName": "chrome",
            "pageLoadStrategy": "normal",
            "unhandledPromptBehavior": "dismiss",
            "timeouts": { "implicit": 0, "pageLoad": 30_000, "script": 10_000 },
            "goog:chromeOptions": {
                "binary": chromium,
                "args": args,
            },
        }) {
            Value::Object(map) => map,
            _ => unreachable!(),
        };
        let connect = ClientBuilder::new(HttpConnector::new())
            .capabilities(capabilities)
            .connect(&driver.url())
            .await;
        let client = connect.map_err(|e| {
            format!(
                "chromedriver could not start Chromium: {e}\nchromedriver output:\n{}",
                driver.logs()
            )
        })?;
        let session_id = client
            .session_id()
            .await
            .ok()
            .flatten()
            .ok_or("no WebDriver session id")?;
        Ok((driver, profile, client, session_id))
    }

    /// The fantoccini client, for what the helpers below do not cover.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Loads `url` (and waits for the load, as WebDriver navigation does).
    pub async fn goto(&self, url: &str) {
        self.client
            .goto(url)
            .await
            .unwrap_or_else(|e| panic!("navigating to {url}: {e}"));
    }

    pub async fn url(&self) -> Url {
        self.client.current_url().await.expect("current URL")
    }

    pub async fn back(&self) {
        self.client.back().await.expect("back");
    }

    pub async fn forward(&self) {
        self.client.forward().await.expect("forward");
    }

    pub async fn refresh(&self) {
        self.client.refresh().await.expect("refresh");
    }

    /// Polls `probe` until it returns `Some`, or fails the test after [`wait_timeout`] with
    /// `what` and where the browser is.
    pub async fn wait_until<T, F, Fut>(&self, what: &str, mut probe: F) -> T
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Option<T>>,
    {
        let deadline = Instant::now() + wait_timeout();
        loop {
            if let Some(value) = probe().await {
                return value;
            }
            if Instant::now() >= deadline {
                let url = self
                    .client
                    .current_url()
                    .await
                    .map(|u| u.to_string())
                    .unwrap_or_else(|e| format!("(unknown: {e})"));
                let text = self.page_text().await;
                panic!(
                    "timed out after {:?} waiting for {what}\n  at: {url}\n  page text: {text:?}",
                    wait_timeout()
                );
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Waits until the current URL satisfies `accept`; returns it.
    pub async fn wait_for_url(&self, what: &str, accept: impl Fn(&Url) -> bool) -> Url {
        self.wait_until(what, || async {
            let url = self.client.current_url().await.ok()?;
            accept(&url).then_some(url)
        })
        .await
    }

    /// Waits until the current URL is exactly `expected`.
    pub async fn wait_for_exact_url(&self, expected: &str) -> Url {
        self.wait_for_url(&format!("the URL {expected}"), |u| u.as_str() == expected)
            .await
    }

    /// Waits for an element matching the CSS selector `css`.
    pub async fn find(&self, css: &str) -> Element {
        self.wait_until(&format!("an element `{css}`"), || async {
            self.client.find(Locator::Css(css)).await.ok()
        })
        .await
    }

    /// Waits for `css` and returns its text.
    pub async fn text(&self, css: &str) -> String {
        self.wait_until(&format!("the text of `{css}`"), || async {
            self.client
                .find(Locator::Css(css))
                .await
                .ok()?
                .text()
                .await
                .ok()
        })
        .await
    }

    /// Waits until the text of `css` contains `needle`; returns the text.
    pub async fn wait_for_text(&self, css: &str, needle: &str) -> String {
        self.wait_until(&format!("`{css}` to contain {needle:?}"), || async {
            let text = self
                .client
                .find(Locator::Css(css))
                .await
                .ok()?
                .text()
                .await
                .ok()?;
            text.contains(needle).then_some(text)
        })
        .await
    }

    /// Waits for `css`, then clicks it.
    pub async fn click(&self, css: &str) {
        let element = self.find(css).await;
        element
            .click()
            .await
            .unwrap_or_else(|e| panic!("clicking `{css}`: {e}"));
    }

    /// Waits for the input `css`, clears it and types `text`.
    pub async fn fill(&self, css: &str, text: &str) {
        let element = self.find(css).await;
        element.clear().await.expect("clear");
        element
            .send_keys(text)
            .await
            .unwrap_or_else(|e| panic!("typing into `{css}`: {e}"));
    }

    /// The visible text of the whole page (empty when it cannot be read).
    pub async fn page_text(&self) -> String {
        match self.client.find(Locator::Css("body")).await {
            Ok(body) => body.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        }
    }

    /// WebDriver's "Get All Cookies": the cookies of the current document (HttpOnly ones
    /// included), with their flags.
    pub async fn cookies(&self) -> Vec<fantoccini::cookies::Cookie<'static>> {
        self.client
            .get_all_cookies()
            .await
            .expect("get all cookies")
    }

    /// Every cookie in the browser's jar, of every site and path, as Chrome DevTools
    /// (`Storage.getCookies`) describes them: `name`, `value`, `domain`, `path`, `expires`,
    /// `httpOnly`, `secure`, `session`, `sameSite`, ...
    pub async fn whole_cookie_jar(&self) -> Vec<Value> {
        let answer = self
            .client
            .issue_cmd(Cdp {
                cmd: "Storage.getCookies",
                params: json!({}),
            })
            .await
            .expect("Storage.getCookies");
        answer["cookies"]
            .as_array()
            .cloned()
            .unwrap_or_else(|| panic!("no cookies array in {answer}"))
    }

    /// Runs `script` in the page; returns its result.
    pub async fn execute(&self, script: &str) -> Value {
        self.client
            .execute(script, vec![])
            .await
            .unwrap_or_else(|e| panic!("executing {script:?}: {e}"))
    }

    /// Opens a new tab and switches to it; returns its handle.
    pub async fn new_tab(&self) -> WindowHandle {
        let created = self.client.new_window(true).await.expect("new tab");
        self.client
            .switch_to_window(created.handle.clone())
            .await
            .expect("switch to the new tab");
        created.handle
    }

    pub async fn current_tab(&self) -> WindowHandle {
        self.client.window().await.expect("current tab")
    }

    pub async fn switch_to(&self, tab: &WindowHandle) {
        self.client
            .switch_to_window(tab.clone())
            .await
            .expect("switch tab");
    }

    /// Saves a screenshot, the page's HTML and URL under [`screenshot_dir`]; called from
    /// `Drop` while a test fails. Runs on a thread of its own with its own runtime and plain
    /// HTTP to chromedriver, since the test's runtime may be unwinding.
    fn save_failure_report(&self) {
        let base = format!("{}/session/{}", self.driver.url(), self.session_id);
        let dir = screenshot_dir();
        let name = self.name.clone();
        let driver_log = self.driver.logs();
        let saved = std::thread::spawn(move || -> Result<PathBuf, String> {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?;
            runtime.block_on(async move {
                let http = reqwest::Client::builder()
                    .timeout(Duration::from_secs(10))
                    .build()
                    .map_err(|e| e.to_string())?;
                let get = |what: &'static str| {
                    let http = http.clone();
                    let url = format!("{base}/{what}");
                    async move {
                        let answer: Value = http
                            .get(url)
                            .send()
                            .await
                            .map_err(|e| format!("{what}: {e}"))?
                            .json()
                            .await
                            .map_err(|e| format!("{what}: {e}"))?;
                        answer["value"]
                            .as_str()
                            .map(str::to_owned)
                            .ok_or_else(|| format!("{what}: {answer}"))
                    }
                };
                std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
                let png_path = dir.join(format!("{name}.png"));
                let url = get("url").await.unwrap_or_else(|e| format!("(unknown: {e})"));
                let png = get("screenshot").await.and_then(|b64| {
                    base64::engine::general_purpose::STANDARD
                        .decode(b64)
                        .map_err(|e| e.to_string())
                });
                let png_note = match png {
                    Ok(png) => {
                        std::fs::write(&png_path, png).map_err(|e| e.to_string())?;
                        "saved".to_owned()
                    }
                    Err(e) => format!("no screenshot: {e}"),
                };
                if let Ok(html) = get("source").await {
                    let _ = std::fs::write(dir.join(format!("{name}.html")), html);
                }
                let _ = std::fs::write(
                    dir.join(format!("{name}.txt")),
                    format!("URL: {url}\nscreenshot: {png_note}\n\nchromedriver output (last lines):\n{driver_log}\n"),
                );
                eprintln!(
                    "browser test `{name}` failed at {url}\n  screenshot: {} ({png_note}); page HTML and URL beside it",
                    png_path.display()
                );
                Ok(png_path)
            })
        })
        .join();
        match saved {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => eprintln!("browser test `{}`: no failure report: {e}", self.name),
            Err(_) => eprintln!("browser test `{}`: the failure report panicked", self.name),
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.save_failure_report();
        }
        // The fields drop next: chromedriver and Chromium are killed, the profile removed.
    }
}

/// A Chrome DevTools Protocol command, through chromedriver's `goog/cdp/execute`.
#[derive(Debug)]
struct Cdp {
    cmd: &'static str,
    params: Value,
}

impl WebDriverCompatibleCommand for Cdp {
    fn endpoint(&self, base_url: &Url, session_id: Option<&str>) -> Result<Url, url::ParseError> {
        base_url.join(&format!(
            "session/{}/goog/cdp/execute",
            session_id.unwrap_or_default()
        ))
    }

    fn method_and_body(&self, _request_url: &Url) -> (http::Method, Option<String>) {
        (
            http::Method::POST,
            Some(json!({ "cmd": self.cmd, "params": self.params }).to_string()),
        )
    }
}
