//! The load harness: `cargo run --release -p tower-oauth2-login-perf --bin loadtest`.
//!
//! Serves the same axum handler several ways on loopback, in this process, and loads them
//! by turns with the same in-process HTTP/1.1 load generator (keep-alive connections, each
//! sending its next request when the last answer is read):
//!
//! | target | what serves `GET /hello` |
//! |---|---|
//! | `bare` | the handler alone |
//! | `layer-memory` | the handler behind `LoginLayer`, memory store, a signed-in session |
//! | `layer-redis` | the same with `RedisStore` (a private `redis-server`, or `REDIS_URL`), its local cache on (the default) |
//! | `layer-redis-uncached` | the same with the local cache off: a `GET` per request |
//! | `axum-oidc` | the handler behind `axum-oidc` 0.6 (`OidcLoginLayer`, `OidcAuthLayer`) and `tower-sessions`' memory store, signed in |
//!
//! Both layers sign in against the embedded development provider (OpenID Connect, with
//! discovery) before each round, one browser per connection by default (32 users, as a
//! site has many: one session shared by every connection would make every request of both
//! server threads touch the same reference count and lock); every measured answer must be
//! the handler's `200`, so every measured request is an authenticated one.
//!
//! **Taking turns.** On this two-core machine a run's throughput drifts by up to ±25 %
//! from one few-second window to the next, for the bare handler as much as for the layer
//! (where the four runtime threads settle), so two targets measured one after the other
//! differ by that much with the same code. Within a round, every target's connections are
//! open at once and the targets take turns of 100 ms (one turn each is a cycle, in reverse
//! order every other cycle): a drift falls on all of them alike. A throughput ratio is the
//! median over every cycle of all rounds of the target's throughput over the other's in
//! that cycle (above 1: the first serves more requests a second); requests/s, p50 and p99
//! are medians over the rounds.
//!
//! Each round also says how busy the cores were (this process, redis-server, and the rest
//! of the machine, from `/proc`), and the table gives the CPU each target spends per request:
//! on a machine that other work shares, throughput follows what the others leave, while
//! CPU per request does not, so `CPU vs bare` (bare's CPU per request over the target's)
//! is the steadier estimate of the throughput ratio on a machine of one's own.
//!
//! Options (defaults in brackets): `--rounds N` [15], `--duration SECS` measured per target
//! and round [2], `--warmup SECS` per target and round, unrecorded turns that open the
//! round [0.5], `--connections N` per target [32],
//! `--sessions N` signed-in browsers per target, connection `i` being the `i % N`th [32],
//! `--server-threads N` and `--client-threads N` (tokio workers of the servers and of the
//! load generator) [number of CPUs each], `--no-redis`, `--no-peer`, `--only
//! layer-redis,...` (those targets and `bare`, e.g. to profile one). A longer run:
//! `cargo run --release -p tower-oauth2-login-perf --bin loadtest -- --rounds 31 --duration 5`.
//!
//! The last lines are one summary per comparison, for scripts:
//! `ratio layer/bare memory: X.XX`, `ratio layer/bare redis: X.XX` (when Redis is there)
//! and `ratio layer/axum-oidc: X.XX`.

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::error_handling::HandleErrorLayer;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::serve::ListenerExt;
use axum::Router;
use bytes::Bytes;
use http::{header, HeaderValue, Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use tower_oauth2_login::{LoginLayer, RedisStore};
use tower_oauth2_login_dev_provider::{DevClient, DevProvider};

type Error = Box<dyn std::error::Error + Send + Sync>;

const PATH: &str = "/hello";

/// The handler every target serves.
async fn hello() -> &'static str {
    "hello"
}

#[derive(Clone)]
struct Options {
    rounds: usize,
    duration: Duration,
    warmup: Duration,
    connections: usize,
    /// Signed-in browsers per target, spread over the connections.
    sessions: usize,
    server_threads: usize,
    client_threads: usize,
    redis: bool,
    peer: bool,
    /// Only these targets (and `bare`), when given.
    only: Option<Vec<String>>,
}

impl Options {
    fn parse() -> Result<Self, Error> {
        let cpus = std::thread::available_parallelism().map_or(2, |n| n.get());
        let mut o = Options {
            // Many short rounds rather than a few long ones: on two cores shared by four
            // runtime threads a round's throughput moves by up to ±25 % (the threads'
            // placement settles differently each time connections are opened), for the
            // bare handler as for the layer, so it is the number of rounds that steadies
            // the medians.
            rounds: 15,
            duration: Duration::from_secs(2),
            warmup: Duration::from_millis(500),
            connections: 32,
            sessions: 32,
            server_threads: cpus,
            client_threads: cpus,
            redis: true,
            peer: true,
            only: None,
        };
        let mut args = std::env::args().skip(1);
        while let Some(arg) = args.next() {
            let mut value = || args.next().ok_or_else(|| format!("{arg} needs a value"));
            match arg.as_str() {
                "--rounds" => o.rounds = value()?.parse()?,
                "--duration" => o.duration = Duration::from_secs_f64(value()?.parse()?),
                "--warmup" => o.warmup = Duration::from_secs_f64(value()?.parse()?),
                "--connections" => o.connections = value()?.parse()?,
                "--sessions" => o.sessions = value()?.parse()?,
                "--server-threads" => o.server_threads = value()?.parse()?,
                "--client-threads" => o.client_threads = value()?.parse()?,
                "--no-redis" => o.redis = false,
                "--no-peer" => o.peer = false,
                "--only" => {
                    o.only = Some(value()?.split(',').map(|t| t.trim().to_string()).collect())
                }
                "-h" | "--help" => {
                    println!(
                        "usage: loadtest [--rounds N] [--duration SECS] [--warmup SECS] \
                         [--connections N] [--sessions N] [--server-threads N] [--client-threads N] \
                         [--no-redis] [--no-peer] [--only TARGET[,TARGET...]]"
                    );
                    std::process::exit(0);
                }
                other => return Err(format!("unknown argument {other:?} (try --help)").into()),
            }
        }
        if o.rounds == 0 || o.connections == 0 || o.sessions == 0 || o.duration.is_zero() {
            return Err(
                "--rounds, --connections, --sessions and --duration must be above zero".into(),
            );
        }
        // A bound on the whole run, whatever is asked: a few hours at most.
        let per_round = (o.duration + o.warmup).as_secs_f64() * 5.0; // five targets take turns
        if per_round * o.rounds as f64 > 4.0 * 3600.0 {
            return Err("that run would take more than four hours".into());
        }
        Ok(o)
    }
}

/// How a target is signed in before a round.
#[derive(Clone, Copy, PartialEq)]
enum SignIn {
    None,
    /// Through this layer: the `oauth2_session` cookie.
    Layer,
    /// Through axum-oidc: the `tower-sessions` cookie.
    Peer,
}

struct Target {
    name: &'static str,
    addr: SocketAddr,
    sign_in: SignIn,
    /// The `Cookie` headers of the measured requests, one per signed-in browser (signed
    /// in before each round); connection `i` sends the `i % len`th.
    cookies: Vec<String>,
    /// Requests a second, per round.
    rps: Vec<f64>,
    /// Requests a second in each of the target's slices, all rounds one after the other:
    /// the `i`th slice of every target is in the same cycle.
    slice_rps: Vec<f64>,
    p50: Vec<f64>,
    p99: Vec<f64>,
    /// Microseconds of CPU (this process and redis-server) per request, per round.
    cpu_us: Vec<f64>,
}

fn main() -> Result<(), Error> {
    let mut o = Options::parse()?;
    let server_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(o.server_threads)
        .thread_name("server")
        .enable_all()
        .build()?;
    let client_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(o.client_threads)
        .thread_name("load")
        .enable_all()
        .build()?;

    let wanted = |name: &str| {
        name == "bare"
            || o.only
                .as_ref()
                .is_none_or(|only| only.iter().any(|t| t == name))
    };
    if let Some(only) = &o.only {
        for name in only {
            if ![
                "bare",
                "layer-memory",
                "layer-redis",
                "layer-redis-uncached",
                "axum-oidc",
            ]
            .contains(&name.as_str())
            {
                return Err(format!("unknown target {name:?}").into());
            }
        }
    }
    o.redis &= wanted("layer-redis") || wanted("layer-redis-uncached");
    o.peer &= wanted("axum-oidc");
    let redis = if o.redis { redis_url() } else { None };
    let (mut targets, _provider) = server_rt.block_on(start_targets(&o, redis.as_ref()))?;
    targets.retain(|t| wanted(t.name));

    println!("loadtest: {}", machine());
    println!(
        "  {} rounds; in each, the targets take turns of {} ms, each measured for {} s in \
         all after {} s of warm-up; {} keep-alive connections and {} signed-in browsers \
         per target; server {} tokio workers, load generator {}; GET {PATH}",
        o.rounds,
        SLICE.as_millis(),
        o.duration.as_secs_f64(),
        o.warmup.as_secs_f64(),
        o.connections,
        o.sessions,
        o.server_threads,
        o.client_threads
    );
    match &redis {
        Some(r) => println!("  redis: {}", r.describe()),
        None if o.redis => println!("  redis: skipped (no REDIS_URL and no redis-server on PATH)"),
        None => println!("  redis: skipped (--no-redis)"),
    }
    println!();

    // One unrecorded round first: the first moments of a fresh process also pay for its
    // own warm-up (allocator, thread pools).
    let redis_pid = redis.as_ref().and_then(Redis::pid);
    for round in 0..=o.rounds {
        for t in targets.iter_mut() {
            t.cookies = client_rt.block_on(sign_in_all(t, o.sessions))?;
        }
        let measured = if round == 0 {
            Duration::from_millis(200) * targets.len() as u32
        } else {
            o.duration
        };
        let runs = client_rt.block_on(load_round(&targets, &o, measured, redis_pid))?;
        if round == 0 {
            continue;
        }
        for (t, run) in targets.iter_mut().zip(runs) {
            println!(
                "round {}/{}  {:<20} {:>9.0} req/s   p50 {:>7.3} ms   p99 {:>7.3} ms   \
                 cores busy: this process {:.2}, redis {:.2}, others {:.2}",
                round,
                o.rounds,
                t.name,
                run.rps,
                run.p50_ms,
                run.p99_ms,
                run.cpu.this,
                run.cpu.redis,
                run.cpu.others
            );
            t.rps.push(run.rps);
            t.slice_rps.extend(run.slice_rps);
            t.cpu_us
                .push((run.cpu.this + run.cpu.redis) / run.rps * 1e6);
            t.p50.push(run.p50_ms);
            t.p99.push(run.p99_ms);
        }
    }

    println!();
    println!(
        "{:<20} {:>10} {:>9} {:>9} {:>8} {:>11} {:>12}",
        "target", "req/s", "p50 ms", "p99 ms", "vs bare", "CPU µs/req", "CPU vs bare"
    );
    let bare_rps = targets[0].slice_rps.clone();
    let bare_cpu = targets[0].cpu_us.clone();
    for t in &targets {
        println!(
            "{:<20} {:>10.0} {:>9.3} {:>9.3} {:>8.2} {:>11.1} {:>12.2}",
            t.name,
            median(&t.rps),
            median(&t.p50),
            median(&t.p99),
            paired_ratio(&t.slice_rps, &bare_rps),
            median(&t.cpu_us),
            paired_ratio(&bare_cpu, &t.cpu_us)
        );
    }
    println!(
        "(req/s, p50, p99, CPU: medians of {} rounds. vs bare: the median over the {} \
         cycles of the target's throughput over bare's in the same cycle. CPU µs/req: \
         this process (servers and load generator) and redis-server, per request; CPU vs \
         bare: the median of the rounds' bare CPU per request over the target's)",
        o.rounds,
        bare_rps.len()
    );
    println!();
    let find = |name: &str| targets.iter().find(|t| t.name == name);
    if let Some(memory) = find("layer-memory") {
        println!(
            "ratio layer/bare memory: {:.2}",
            paired_ratio(&memory.slice_rps, &bare_rps)
        );
    }
    if let Some(redis) = find("layer-redis") {
        println!(
            "ratio layer/bare redis: {:.2}",
            paired_ratio(&redis.slice_rps, &bare_rps)
        );
    }
    if let (Some(memory), Some(peer)) = (find("layer-memory"), find("axum-oidc")) {
        println!(
            "ratio layer/axum-oidc: {:.2}",
            paired_ratio(&memory.slice_rps, &peer.slice_rps)
        );
    }
    drop(redis);
    Ok(())
}

fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// The median of the ratios `a[i] / b[i]`.
fn paired_ratio(a: &[f64], b: &[f64]) -> f64 {
    let ratios: Vec<f64> = a.iter().zip(b).map(|(a, b)| a / b).collect();
    median(&ratios)
}

/// Binds a loopback listener and serves `app` on it (Nagle off, as for every target).
async fn serve(app: Router) -> Result<SocketAddr, Error> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok(addr)
}

async fn start_targets(
    o: &Options,
    redis: Option<&Redis>,
) -> Result<(Vec<Target>, DevProvider), Error> {
    // The listeners first: their ports make the redirect URIs the provider registers.
    let ours = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let ours_redis = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let ours_uncached = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let peer = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let redirect = |l: &tokio::net::TcpListener, path: &str| -> Result<String, Error> {
        Ok(format!("http://{}{path}", l.local_addr()?))
    };
    let provider = DevProvider::builder()
        .with_client(
            DevClient::confidential("ours", "ours-secret", redirect(&ours, "/auth/callback")?)
                .with_redirect_uri(redirect(&ours_redis, "/auth/callback")?)
                .with_redirect_uri(redirect(&ours_uncached, "/auth/callback")?),
        )
        // axum-oidc sends the page itself as the redirect URI.
        .with_client(DevClient::confidential(
            "peer",
            "peer-secret",
            redirect(&peer, PATH)?,
        ))
        .with_auto_login("alice")
        .start()
        .await?;

    let handler = || Router::new().route(PATH, get(hello));
    let mut targets = Vec::new();
    let target = |name, addr, sign_in| Target {
        name,
        addr,
        sign_in,
        cookies: Vec::new(),
        rps: Vec::new(),
        slice_rps: Vec::new(),
        p50: Vec::new(),
        p99: Vec::new(),
        cpu_us: Vec::new(),
    };

    targets.push(target("bare", serve(handler()).await?, SignIn::None));

    let layer = |listener: &tokio::net::TcpListener| -> Result<_, Error> {
        Ok(LoginLayer::builder()
            .with_client_id("ours")
            .with_client_secret("ours-secret")
            .with_redirect_url(redirect(listener, "/auth/callback")?)
            .with_scopes(["openid", "profile", "email"]))
    };
    let memory = layer(&ours)?.discover(provider.issuer()).await?.build()?;
    targets.push(target(
        "layer-memory",
        serve_on(ours, handler().layer(memory)),
        SignIn::Layer,
    ));

    match redis {
        Some(redis) => {
            for (name, listener, cache) in [
                (
                    "layer-redis",
                    ours_redis,
                    RedisStore::DEFAULT_CACHE_CAPACITY,
                ),
                ("layer-redis-uncached", ours_uncached, 0),
            ] {
                let store = RedisStore::builder(redis.url.as_str())
                    .with_prefix("tower-oauth2-login-loadtest:")
                    .with_local_cache(cache)
                    .connect()
                    .await?;
                let layer = layer(&listener)?
                    .discover(provider.issuer())
                    .await?
                    .with_store(store)
                    .build()?;
                targets.push(target(
                    name,
                    serve_on(listener, handler().layer(layer)),
                    SignIn::Layer,
                ));
            }
        }
        None => drop((ours_redis, ours_uncached)),
    }

    if o.peer {
        let base: http::Uri = format!("http://{}", peer.local_addr()?).parse()?;
        let auth = axum_oidc::OidcAuthLayer::<axum_oidc::EmptyAdditionalClaims>::discover_client(
            base,
            provider.issuer().to_string(),
            "peer".to_string(),
            Some("peer-secret".to_string()),
            vec!["profile".to_string(), "email".to_string()],
        )
        .await
        .map_err(|e| format!("axum-oidc discovery: {e}"))?;
        let app = handler()
            .layer(
                tower::ServiceBuilder::new()
                    .layer(HandleErrorLayer::new(
                        |e: axum_oidc::error::MiddlewareError| async { e.into_response() },
                    ))
                    .layer(axum_oidc::OidcLoginLayer::<axum_oidc::EmptyAdditionalClaims>::new()),
            )
            .layer(
                tower::ServiceBuilder::new()
                    .layer(HandleErrorLayer::new(
                        |e: axum_oidc::error::MiddlewareError| async { e.into_response() },
                    ))
                    .layer(auth),
            )
            .layer(
                tower_sessions::SessionManagerLayer::new(tower_sessions::MemoryStore::default())
                    .with_secure(false)
                    .with_same_site(tower_sessions::cookie::SameSite::Lax),
            );
        targets.push(target("axum-oidc", serve_on(peer, app), SignIn::Peer));
    }
    Ok((targets, provider))
}

fn serve_on(listener: tokio::net::TcpListener, app: Router) -> SocketAddr {
    let addr = listener.local_addr().expect("a bound listener");
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    addr
}

/// Signs `n` browsers in to a target (a few at a time), or one cookie for `bare`.
async fn sign_in_all(t: &Target, n: usize) -> Result<Vec<String>, Error> {
    if t.sign_in == SignIn::None {
        return Ok(vec![sign_in(t).await?]);
    }
    let mut cookies = Vec::with_capacity(n);
    for chunk in (0..n).collect::<Vec<_>>().chunks(8) {
        let signed = futures_util::future::join_all(chunk.iter().map(|_| sign_in(t))).await;
        for cookie in signed {
            cookies.push(cookie?);
        }
    }
    Ok(cookies)
}

/// Signs in to a target the way a browser would (following the redirects through the
/// provider) and returns the `Cookie` header to load it with.
async fn sign_in(t: &Target) -> Result<String, Error> {
    // The same extra cookies for every target, as a browser would send.
    const OTHERS: &str = "_ga=GA1.1.1234567890.1700000000; theme=dark";
    if t.sign_in == SignIn::None {
        return Ok(OTHERS.to_string());
    }
    let jar = Arc::new(reqwest::cookie::Jar::default());
    let http = reqwest::Client::builder()
        .cookie_provider(Arc::clone(&jar))
        .build()?;
    let url: reqwest::Url = format!("http://{}{PATH}", t.addr).parse()?;
    let res = http
        .get(url.clone())
        .header(header::ACCEPT, "text/html")
        .send()
        .await?;
    let status = res.status();
    let body = res.text().await?;
    if status != StatusCode::OK || body != "hello" {
        return Err(format!("{}: sign-in ended with {status}: {body:.200}", t.name).into());
    }
    use reqwest::cookie::CookieStore;
    let cookies = jar
        .cookies(&url)
        .ok_or_else(|| format!("{}: no cookie after sign-in", t.name))?;
    let wanted = match t.sign_in {
        SignIn::Layer => "oauth2_session=",
        _ => "id=",
    };
    let cookies = cookies.to_str()?;
    if !cookies.split("; ").any(|c| c.starts_with(wanted)) {
        return Err(format!("{}: no session cookie after sign-in: {cookies}", t.name).into());
    }
    Ok(format!("{OTHERS}; {cookies}"))
}

/// What one round measured of one target.
struct Run {
    rps: f64,
    /// Requests a second in each of the target's measured slices, in order.
    slice_rps: Vec<f64>,
    p50_ms: f64,
    p99_ms: f64,
    /// How busy the cores were during the target's slices.
    cpu: CpuUse,
}

/// Which target is loaded when, within a round: the round is cut into slices of
/// [`SLICE`], the targets take one slice each in turn (a cycle), in reverse order every
/// other cycle. A round's throughput on this machine drifts by up to ±25 % from one
/// round to the next, for the bare handler as much as for the layer; targets that take
/// turns every few hundred milliseconds meet the same drift, so the ratio of two targets
/// within a cycle is steady where the ratio of two whole runs is not.
#[derive(Clone, Copy)]
struct Schedule {
    start: Instant,
    targets: u64,
    /// Unrecorded slices first (whole cycles): the connections warm up.
    warmup_slices: u64,
    slices: u64,
}

/// The length of one target's turn.
const SLICE: Duration = Duration::from_millis(100);

impl Schedule {
    fn new(start: Instant, targets: usize, warmup: Duration, measured: Duration) -> Self {
        let targets = targets as u64;
        let cycles = |d: Duration| (d.as_secs_f64() / SLICE.as_secs_f64()).ceil() as u64;
        Schedule {
            start,
            targets,
            warmup_slices: cycles(warmup) * targets,
            slices: (cycles(warmup) + cycles(measured).max(1)) * targets,
        }
    }

    fn slice_at(&self, t: Instant) -> u64 {
        (t.saturating_duration_since(self.start).as_nanos() / SLICE.as_nanos()) as u64
    }

    fn starts(&self, slice: u64) -> Instant {
        self.start + SLICE * u32::try_from(slice).unwrap_or(u32::MAX)
    }

    fn end(&self) -> Instant {
        self.starts(self.slices)
    }

    fn target_of(&self, slice: u64) -> usize {
        let (cycle, turn) = (slice / self.targets, slice % self.targets);
        (if cycle % 2 == 0 {
            turn
        } else {
            self.targets - 1 - turn
        }) as usize
    }

    /// The first slice from `from` on that is `target`'s.
    fn next_of(&self, target: usize, from: u64) -> u64 {
        (from..from + 2 * self.targets)
            .find(|&k| self.target_of(k) == target)
            .unwrap_or(from)
    }
}

/// One round: every target's connections open at once, each target loaded in its own
/// slices only (see [`Schedule`]); requests are counted in the slice they were sent in.
async fn load_round(
    targets: &[Target],
    o: &Options,
    measured: Duration,
    redis_pid: Option<u32>,
) -> Result<Vec<Run>, Error> {
    let schedule = Schedule::new(
        Instant::now() + Duration::from_millis(100),
        targets.len(),
        o.warmup,
        measured,
    );
    let sampler = tokio::spawn(async move {
        // The CPU counters at each slice boundary.
        let mut marks = Vec::with_capacity(schedule.slices as usize + 1);
        for k in 0..=schedule.slices {
            tokio::time::sleep_until(schedule.starts(k).into()).await;
            marks.push(Cpu::now(redis_pid));
        }
        marks
    });
    let mut tasks = Vec::new();
    for (i, t) in targets.iter().enumerate() {
        let cookies = t
            .cookies
            .iter()
            .map(|c| HeaderValue::from_str(c))
            .collect::<Result<Vec<_>, _>>()?;
        let host = HeaderValue::from_str(&t.addr.to_string())?;
        for c in 0..o.connections {
            let cookie = cookies[c % cookies.len()].clone();
            tasks.push((
                i,
                tokio::spawn(connection(t.addr, host.clone(), cookie, i, schedule)),
            ));
        }
    }
    let measured_slices = (schedule.slices - schedule.warmup_slices) as usize;
    let mut counts = vec![vec![0u64; measured_slices]; targets.len()];
    let mut latencies: Vec<Vec<u32>> = vec![Vec::new(); targets.len()];
    for (i, task) in tasks {
        let seen = task.await??;
        for (slice, latency) in seen {
            counts[i][slice as usize] += 1;
            latencies[i].push(latency);
        }
    }
    let marks = sampler.await?;
    let mut runs = Vec::new();
    for (i, t) in targets.iter().enumerate() {
        let mine: Vec<u64> = (schedule.warmup_slices..schedule.slices)
            .filter(|&k| schedule.target_of(k) == i)
            .collect();
        let slice_rps: Vec<f64> = mine
            .iter()
            .map(|&k| counts[i][(k - schedule.warmup_slices) as usize] as f64 / SLICE.as_secs_f64())
            .collect();
        let total: u64 = counts[i].iter().sum();
        if total == 0 {
            return Err(format!("{}: no request completed", t.name).into());
        }
        let mut cpu = CpuUse::default();
        for &k in &mine {
            let used = marks[k as usize + 1].since(&marks[k as usize]);
            cpu.this += used.this;
            cpu.redis += used.redis;
            cpu.others += used.others;
        }
        let n = mine.len() as f64;
        let cpu = CpuUse {
            this: cpu.this / n,
            redis: cpu.redis / n,
            others: cpu.others / n,
        };
        let all = &mut latencies[i];
        all.sort_unstable();
        // Latencies are kept in units of 100 ns.
        let pick = |q: f64| all[((all.len() as f64 * q) as usize).min(all.len() - 1)] as f64 / 1e4;
        runs.push(Run {
            rps: total as f64 / (n * SLICE.as_secs_f64()),
            slice_rps,
            p50_ms: pick(0.50),
            p99_ms: pick(0.99),
            cpu,
        });
    }
    Ok(runs)
}

/// One keep-alive connection of a target: sends its next request as soon as the last
/// answer is read, in the target's slices only. Returns `(measured slice, latency in
/// 100 ns)` of each request it sent in a measured slice.
async fn connection(
    addr: SocketAddr,
    host: HeaderValue,
    cookie: HeaderValue,
    target: usize,
    schedule: Schedule,
) -> Result<Vec<(u32, u32)>, Error> {
    let stream = tokio::net::TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let (mut send, conn) =
        hyper::client::conn::http1::handshake::<_, Empty<Bytes>>(TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    let end = schedule.end();
    let mut seen: Vec<(u32, u32)> = Vec::with_capacity(1 << 14);
    loop {
        let sent = Instant::now();
        if sent >= end {
            break;
        }
        let slice = schedule.slice_at(sent);
        if schedule.target_of(slice) != target {
            let next = schedule.next_of(target, slice);
            tokio::time::sleep_until(schedule.starts(next).into()).await;
            continue;
        }
        let req = Request::get(PATH)
            .header(header::HOST, host.clone())
            .header(header::ACCEPT, "text/html,application/xhtml+xml")
            .header(header::USER_AGENT, "loadtest")
            .header(header::COOKIE, cookie.clone())
            .body(Empty::<Bytes>::new())?;
        send.ready().await?;
        let res = send.send_request(req).await?;
        let status = res.status();
        let body = res.into_body().collect().await?.to_bytes();
        let done = Instant::now();
        if status != StatusCode::OK || body.as_ref() != b"hello" {
            return Err(format!("{addr}: answered {status}, not the handler's 200").into());
        }
        if slice >= schedule.warmup_slices {
            let micros = done.duration_since(sent).as_nanos() / 100;
            seen.push((
                (slice - schedule.warmup_slices) as u32,
                u32::try_from(micros).unwrap_or(u32::MAX),
            ));
        }
    }
    Ok(seen)
}

/// CPU time so far: this process, the private redis-server, the whole machine.
struct Cpu {
    at: Instant,
    this: f64,
    redis: f64,
    machine: f64,
}

/// Cores kept busy over an interval.
#[derive(Default)]
struct CpuUse {
    this: f64,
    redis: f64,
    others: f64,
}

impl Cpu {
    fn now(redis: Option<u32>) -> Cpu {
        // Clock ticks of /proc: 100 a second on Linux.
        const TICK: f64 = 0.01;
        let process = |pid: &str| -> f64 {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|stat| {
                    // After the command name in parentheses: utime and stime are the 12th
                    // and 13th fields.
                    let rest = stat.rsplit_once(')')?.1;
                    let fields: Vec<&str> = rest.split_whitespace().collect();
                    Some(
                        fields.get(11)?.parse::<f64>().ok()?
                            + fields.get(12)?.parse::<f64>().ok()?,
                    )
                })
                .unwrap_or(0.0)
                * TICK
        };
        let machine = std::fs::read_to_string("/proc/stat")
            .ok()
            .and_then(|stat| {
                let cpu = stat.lines().next()?;
                let ticks: Vec<f64> = cpu
                    .split_whitespace()
                    .skip(1)
                    .filter_map(|t| t.parse().ok())
                    .collect();
                // user nice system idle iowait irq softirq steal: busy is all but idle
                // and iowait.
                let busy: f64 = ticks.iter().sum::<f64>() - ticks.get(3)? - ticks.get(4)?;
                Some(busy * TICK)
            })
            .unwrap_or(0.0);
        Cpu {
            at: Instant::now(),
            this: process("self"),
            redis: redis.map_or(0.0, |pid| process(&pid.to_string())),
            machine,
        }
    }

    fn since(&self, before: &Cpu) -> CpuUse {
        let secs = self.at.duration_since(before.at).as_secs_f64().max(1e-9);
        let this = (self.this - before.this) / secs;
        let redis = (self.redis - before.redis) / secs;
        let machine = (self.machine - before.machine) / secs;
        CpuUse {
            this,
            redis,
            others: (machine - this - redis).max(0.0),
        }
    }
}

/// The machine, for the record: CPUs, model, load.
fn machine() -> String {
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, m)| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let load = std::fs::read_to_string("/proc/loadavg")
        .ok()
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default();
    format!("{cpus} CPUs ({model}), load average {load}")
}

/// The Redis server of the run: `REDIS_URL`, or a private `redis-server` on a free
/// loopback port (no persistence), stopped at the end.
struct Redis {
    url: String,
    child: Option<Child>,
}

impl Redis {
    fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    fn describe(&self) -> String {
        match &self.child {
            Some(_) => format!("a private redis-server at {}", self.url),
            None => "REDIS_URL".to_string(),
        }
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn redis_url() -> Option<Redis> {
    if let Ok(url) = std::env::var("REDIS_URL") {
        return Some(Redis { url, child: None });
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .ok()?
        .local_addr()
        .ok()?
        .port();
    let child = Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no", "--logfile", ""])
        .args(["--dir", &std::env::temp_dir().to_string_lossy()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let redis = Redis {
        url: format!("redis://127.0.0.1:{port}/"),
        child: Some(child),
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Some(redis)
}
