//! Load and soak harness, on loopback only, bounded in time:
//!
//! ```text
//! cargo run --release -p tower-oauth2-login-perf --bin soak -- --duration 300 --connections 256
//! ```
//!
//! (`--token-lifetime <seconds>`: the provider's access token lifetime, default 10.
//! `--redis`: the app keeps its sessions in a private `redis-server` started on a free
//! loopback port, through `RedisStore` and its local cache, instead of the memory store.)
//!
//! Two processes: this one runs the embedded provider (auto-login) and the load; a child
//! process (this program with `--serve-app`) runs an app behind the `LoginLayer`
//! (OpenID Connect through discovery, the memory store or Redis), so that its resident memory is
//! measured alone. Each of the `--connections` virtual browsers has its own cookie jar and
//! connections and loops over a mix of requests until the time is up:
//!
//! - authenticated page loads (`GET /protected`, 200),
//! - anonymous requests (`GET /`, 200, and `GET /api/me` as JSON, 401),
//! - logins (login link, the provider's auto-login, the callback, the page: 303, 303, 303,
//!   200), ID token verified at each,
//! - logouts (`POST /logout`, 303, then 401),
//! - and refreshes: access tokens live 10 s, and a quarter of the browsers stay signed in
//!   (no logins or logouts after the first), so their sessions are refreshed on the
//!   request path all through the run.
//!
//! It prints the requests, the errors by kind (any answer other than the expected one),
//! p50/p99/max latency, and the app's resident memory (`/proc/<pid>/status`, `VmRSS`) at
//! the start, every 30 s, and at the end. Exits non-zero when there was an error.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::routing::get;
use axum::{Json, Router};
use rand::Rng;
use reqwest::{Method, StatusCode};
use tokio::io::AsyncBufReadExt;
use tower_oauth2_login::{AuthUser, LoginLayer, RedisStore};
use tower_oauth2_login_dev_provider::{DevClient, DevProvider};

// The tests' private `redis-server` (free loopback port, no persistence, stopped on drop).
#[path = "../../../tests/support/redis.rs"]
#[allow(dead_code)]
mod redis_server;
use redis_server::RedisServer;

type Error = Box<dyn std::error::Error + Send + Sync>;

const CLIENT_ID: &str = "soak-app";
const CLIENT_SECRET: &str = "soak-secret";

fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

fn main() -> Result<(), Error> {
    let args: Vec<String> = std::env::args().collect();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    if args.iter().any(|a| a == "--serve-app") {
        let port: u16 = arg(&args, "--port").ok_or("--port")?.parse()?;
        let issuer = arg(&args, "--issuer").ok_or("--issuer")?;
        let redis = arg(&args, "--redis-url");
        return rt.block_on(serve_app(port, issuer, redis));
    }
    let duration = Duration::from_secs(arg(&args, "--duration").map_or(Ok(60), |d| d.parse())?);
    let connections: usize = arg(&args, "--connections").map_or(Ok(64), |c| c.parse())?;
    let token_lifetime =
        Duration::from_secs(arg(&args, "--token-lifetime").map_or(Ok(10), |t| t.parse())?);
    let redis = args.iter().any(|a| a == "--redis").then(RedisServer::start);
    rt.block_on(load(duration, connections, token_lifetime, redis.as_ref()))
}

// ---------------------------------------------------------------------------------------
// The app (child process)
// ---------------------------------------------------------------------------------------

async fn serve_app(port: u16, issuer: String, redis: Option<String>) -> Result<(), Error> {
    // The layer's warnings (why a login failed) go to stderr, which is the harness's.
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .init();
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let layer = LoginLayer::builder()
        .discover(&issuer)
        .await?
        .with_client_id(CLIENT_ID)
        .with_client_secret(CLIENT_SECRET)
        .with_redirect_url(format!("http://{addr}/auth/callback"))
        .with_scopes(["openid", "profile"])
        .with_logout_path("/logout")
        .with_public_path("/")
        .with_cookie_key([5u8; 64]);
    let layer = match redis {
        Some(url) => layer.with_store(RedisStore::connect(&url).await?),
        None => layer,
    }
    .build()?;
    let app = Router::new()
        .route("/", get(|| async { "home" }))
        .route(
            "/protected",
            get(|user: AuthUser| async move { format!("hello {}", user.subject()) }),
        )
        .route(
            "/api/me",
            get(|user: AuthUser| async move { Json(serde_json::json!({"sub": user.subject()})) }),
        )
        .layer(layer);
    let listener = tokio::net::TcpListener::bind(addr).await?;
    println!("ready");
    axum::serve(listener, app).await?;
    Ok(())
}

// ---------------------------------------------------------------------------------------
// The load (this process)
// ---------------------------------------------------------------------------------------

/// Latencies in 100 µs buckets up to 10 s; the last bucket holds the rest.
struct Histogram {
    buckets: Vec<AtomicU64>,
    max_us: AtomicU64,
}

impl Histogram {
    const BUCKET_US: u64 = 100;
    fn new() -> Self {
        Self {
            buckets: (0..100_001).map(|_| AtomicU64::new(0)).collect(),
            max_us: AtomicU64::new(0),
        }
    }
    fn record(&self, d: Duration) {
        let us = d.as_micros() as u64;
        let i = ((us / Self::BUCKET_US) as usize).min(self.buckets.len() - 1);
        self.buckets[i].fetch_add(1, Ordering::Relaxed);
        self.max_us.fetch_max(us, Ordering::Relaxed);
    }
    fn count(&self) -> u64 {
        self.buckets.iter().map(|b| b.load(Ordering::Relaxed)).sum()
    }
    fn quantile_ms(&self, q: f64) -> f64 {
        let total = self.count();
        let target = ((total as f64) * q).ceil() as u64;
        let mut seen = 0;
        for (i, b) in self.buckets.iter().enumerate() {
            seen += b.load(Ordering::Relaxed);
            if seen >= target.max(1) {
                return ((i as u64 + 1) * Self::BUCKET_US) as f64 / 1000.0;
            }
        }
        f64::NAN
    }
}

struct Stats {
    latency: Histogram,
    errors: Mutex<BTreeMap<String, u64>>,
    by_kind: [AtomicU64; 4],
}

const KINDS: [&str; 4] = ["authenticated", "anonymous", "login", "logout"];

impl Stats {
    fn error(&self, what: String) {
        *self.errors.lock().unwrap().entry(what).or_default() += 1;
    }
    fn error_count(&self) -> u64 {
        self.errors.lock().unwrap().values().sum()
    }
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

async fn load(
    duration: Duration,
    connections: usize,
    token_lifetime: Duration,
    redis: Option<&RedisServer>,
) -> Result<(), Error> {
    // The app's port, chosen now (the provider must know the redirect URL).
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let base = format!("http://127.0.0.1:{port}");
    let provider = DevProvider::builder()
        .with_client(
            DevClient::confidential(CLIENT_ID, CLIENT_SECRET, format!("{base}/auth/callback"))
                .with_post_logout_redirect_uri(format!("{base}/auth/logout-callback")),
        )
        .with_auto_login("soak-user")
        // Short-lived access tokens: the app refreshes them on the request path (one
        // flight per session) all through the run. Not shorter: a login must use its new
        // token at the userinfo endpoint before it expires, even on a busy machine.
        .with_access_token_lifetime(token_lifetime)
        .start()
        .await?;

    let mut command = tokio::process::Command::new(std::env::current_exe()?);
    command
        .args(["--serve-app", "--port", &port.to_string()])
        .args(["--issuer", provider.issuer()]);
    if let Some(redis) = redis {
        command.args(["--redis-url", &redis.url()]);
    }
    let mut child = command.stdout(Stdio::piped()).kill_on_drop(true).spawn()?;
    let pid = child.id().ok_or("no child pid")?;
    let mut lines = tokio::io::BufReader::new(child.stdout.take().ok_or("no stdout")?).lines();
    match tokio::time::timeout(Duration::from_secs(30), lines.next_line()).await {
        Ok(Ok(Some(line))) if line == "ready" => {}
        other => return Err(format!("the app did not start: {other:?}").into()),
    }

    println!(
        "soak: {connections} connections for {}s against {base} (app pid {pid}), sessions in {}",
        duration.as_secs(),
        if redis.is_some() {
            "a private redis-server (RedisStore, local cache on)"
        } else {
            "the memory store"
        }
    );
    let rss_start = rss_kib(pid);
    println!("app RSS at start: {} KiB", rss_start);

    let stats = Arc::new(Stats {
        latency: Histogram::new(),
        errors: Mutex::new(BTreeMap::new()),
        by_kind: Default::default(),
    });
    let started = Instant::now();
    let deadline = started + duration;
    let anonymous = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(30))
        .build()?;
    let mut tasks = Vec::new();
    for n in 0..connections {
        // A quarter of the browsers stay signed in for the whole run (their sessions are
        // refreshed every few seconds); the others sign in and out as they go.
        let stays = n % 4 == 0;
        let stats = Arc::clone(&stats);
        let base = base.clone();
        let anonymous = anonymous.clone();
        tasks.push(tokio::spawn(async move {
            let jar = Arc::new(reqwest::cookie::Jar::default());
            let client = reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .cookie_provider(jar)
                .timeout(Duration::from_secs(30))
                .build()
                .expect("client");
            let user = User {
                client,
                anonymous,
                base,
                stats,
            };
            let mut signed_in = false;
            while Instant::now() < deadline {
                let roll = rand::thread_rng().gen_range(0..100);
                let roll = if stays { roll % 80 } else { roll };
                signed_in = match roll {
                    0..60 if signed_in => user.authenticated().await,
                    60..80 => {
                        user.anonymous().await;
                        signed_in
                    }
                    80..90 if signed_in => !user.logout().await,
                    _ => user.login().await,
                };
            }
        }));
    }

    // Samples every 30 s while the load runs.
    let mut samples = vec![(0u64, rss_start)];
    let mut last_count = 0;
    while Instant::now() < deadline {
        let left = deadline.saturating_duration_since(Instant::now());
        tokio::time::sleep(left.min(Duration::from_secs(30))).await;
        let count = stats.latency.count();
        let elapsed = started.elapsed().as_secs();
        let rss = rss_kib(pid);
        samples.push((elapsed, rss));
        println!(
            "t={elapsed:>4}s requests={count:>9} ({:>6.0}/s) errors={} app RSS={rss} KiB",
            (count - last_count) as f64 / 30f64.min(elapsed as f64).max(1.0),
            stats.error_count(),
        );
        last_count = count;
    }
    for task in tasks {
        task.await?;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let rss_end = rss_kib(pid);
    let _ = child.kill().await;

    let total = stats.latency.count();
    println!("\n== soak summary");
    println!("duration            {elapsed:.0} s, {connections} connections");
    println!(
        "requests            {total} ({:.0}/s)",
        total as f64 / elapsed
    );
    for (i, kind) in KINDS.iter().enumerate() {
        println!(
            "  {kind:<17} {} flows",
            stats.by_kind[i].load(Ordering::Relaxed)
        );
    }
    println!(
        "provider            {} codes redeemed, {} refreshes (one flight per session)",
        provider.codes_redeemed(),
        provider.refresh_requests()
    );
    println!(
        "latency             p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        stats.latency.quantile_ms(0.50),
        stats.latency.quantile_ms(0.99),
        stats.latency.max_us.load(Ordering::Relaxed) as f64 / 1000.0
    );
    let errors = stats.errors.lock().unwrap().clone();
    println!("errors              {}", errors.values().sum::<u64>());
    for (kind, n) in &errors {
        println!("  {kind}: {n}");
    }
    let (warm_at, warm) = samples.get(1).copied().unwrap_or((0, rss_start));
    println!(
        "app RSS             start {rss_start} KiB, at {warm_at} s {warm} KiB, end {rss_end} KiB ({:+} KiB since {warm_at} s)",
        rss_end as i64 - warm as i64
    );
    println!(
        "load process RSS    {} KiB (the embedded provider keeps every token it issued)",
        rss_kib(std::process::id())
    );
    drop(provider);
    if errors.is_empty() {
        Ok(())
    } else {
        Err("there were unexpected errors".into())
    }
}

/// One virtual browser.
struct User {
    client: reqwest::Client,
    anonymous: reqwest::Client,
    base: String,
    stats: Arc<Stats>,
}

impl User {
    /// One request; `Some(response)` when its status is `expected`, else the error is
    /// counted under `step`.
    async fn step(
        &self,
        client: &reqwest::Client,
        step: &str,
        method: Method,
        url: &str,
        headers: &[(&str, &str)],
        expected: StatusCode,
    ) -> Option<reqwest::Response> {
        let mut req = client.request(method, url);
        for (n, v) in headers {
            req = req.header(*n, *v);
        }
        let started = Instant::now();
        let res = req.send().await;
        self.stats.latency.record(started.elapsed());
        match res {
            Ok(res) if res.status() == expected => Some(res),
            Ok(res) => {
                self.stats.error(format!(
                    "{step}: status {} (expected {expected})",
                    res.status()
                ));
                None
            }
            Err(e) => {
                let why = if e.is_timeout() {
                    "timeout"
                } else if e.is_connect() {
                    "connect"
                } else {
                    "request"
                };
                self.stats.error(format!("{step}: {why}"));
                None
            }
        }
    }

    /// A page load whose body is read, as a browser would; whether it was `expected`.
    async fn page(&self, step: &str, url: &str, expected: StatusCode) -> bool {
        let headers = [("accept", "text/html"), ("sec-fetch-mode", "navigate")];
        match self
            .step(&self.client, step, Method::GET, url, &headers, expected)
            .await
        {
            Some(res) => res.bytes().await.is_ok(),
            None => false,
        }
    }

    async fn authenticated(&self) -> bool {
        self.stats.by_kind[0].fetch_add(1, Ordering::Relaxed);
        let url = format!("{}/protected", self.base);
        self.page("authenticated", &url, StatusCode::OK).await
    }

    async fn anonymous(&self) {
        self.stats.by_kind[1].fetch_add(1, Ordering::Relaxed);
        let _ = self
            .step(
                &self.anonymous,
                "anonymous /",
                Method::GET,
                &format!("{}/", self.base),
                &[],
                StatusCode::OK,
            )
            .await;
        let _ = self
            .step(
                &self.anonymous,
                "anonymous /api/me",
                Method::GET,
                &format!("{}/api/me", self.base),
                &[("accept", "application/json")],
                StatusCode::UNAUTHORIZED,
            )
            .await;
    }

    /// A whole login; whether it ended signed in.
    async fn login(&self) -> bool {
        self.stats.by_kind[2].fetch_add(1, Ordering::Relaxed);
        let start = format!("{}/auth/login?return_to=%2Fprotected", self.base);
        let headers = [("accept", "text/html"), ("sec-fetch-mode", "navigate")];
        let Some(res) = self
            .step(
                &self.client,
                "login start",
                Method::GET,
                &start,
                &headers,
                StatusCode::SEE_OTHER,
            )
            .await
        else {
            return false;
        };
        let Some(authorize) = location(&res) else {
            self.stats.error("login start: no Location".into());
            return false;
        };
        let Some(res) = self
            .step(
                &self.client,
                "provider authorize",
                Method::GET,
                &authorize,
                &headers,
                StatusCode::SEE_OTHER,
            )
            .await
        else {
            return false;
        };
        let Some(callback) = location(&res) else {
            self.stats.error("provider authorize: no Location".into());
            return false;
        };
        let Some(res) = self
            .step(
                &self.client,
                "callback",
                Method::GET,
                &callback,
                &headers,
                StatusCode::SEE_OTHER,
            )
            .await
        else {
            return false;
        };
        if location(&res).as_deref() != Some("/protected") {
            self.stats.error("callback: wrong Location".into());
            return false;
        }
        let url = format!("{}/protected", self.base);
        self.page("after login", &url, StatusCode::OK).await
    }

    /// A logout; whether it signed out.
    async fn logout(&self) -> bool {
        self.stats.by_kind[3].fetch_add(1, Ordering::Relaxed);
        let url = format!("{}/logout", self.base);
        let origin = self.base.clone();
        let headers = [("origin", origin.as_str()), ("accept", "text/html")];
        if self
            .step(
                &self.client,
                "logout",
                Method::POST,
                &url,
                &headers,
                StatusCode::SEE_OTHER,
            )
            .await
            .is_none()
        {
            return false;
        }
        self.step(
            &self.client,
            "after logout",
            Method::GET,
            &format!("{}/api/me", self.base),
            &[("accept", "application/json")],
            StatusCode::UNAUTHORIZED,
        )
        .await
        .is_some()
    }
}

fn location(res: &reqwest::Response) -> Option<String> {
    res.headers()
        .get("location")?
        .to_str()
        .ok()
        .map(str::to_string)
}
