//! The load harness: `cargo run --release --example loadtest`.
//!
//! Serves the same axum handler several ways on loopback, in this process, and loads each
//! in turn with the same in-process HTTP/1.1 load generator (keep-alive connections, each
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
//! the handler's `200`, so every measured request is an authenticated one. The targets take turns within a round
//! (in reverse order every other round) and the rounds repeat, so a change in the
//! machine's load falls on all of them alike; the figures are medians over the rounds and
//! each ratio is the median of the rounds' own ratios (throughput: above 1 means this
//! layer serves more requests a second).
//!
//! Each round also says how busy the cores were (this process, redis-server, and the rest
//! of the machine, from `/proc`), and the table gives the CPU each target spends per request:
//! on a machine that other work shares, throughput follows what the others leave, while
//! CPU per request does not, so `CPU vs bare` (bare's CPU per request over the target's)
//! is the steadier estimate of the throughput ratio on a machine of one's own.
//!
//! Options (defaults in brackets): `--rounds N` [5], `--duration SECS` measured per target
//! and round [3], `--warmup SECS` per target and round [1], `--connections N` [32],
//! `--sessions N` signed-in browsers per target, connection `i` being the `i % N`th [32],
//! `--server-threads N` and `--client-threads N` (tokio workers of the servers and of the
//! load generator) [number of CPUs each], `--no-redis`, `--no-peer`, `--only
//! layer-redis,...` (those targets and `bare`, e.g. to profile one). A longer run:
//! `cargo run --release --example loadtest -- --rounds 15 --duration 10`.
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
use tower_oauth2_login::dev::{DevClient, DevProvider};
use tower_oauth2_login::{LoginLayer, RedisStore};

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
            rounds: 5,
            duration: Duration::from_secs(3),
            warmup: Duration::from_secs(1),
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
        let per_round = (o.duration + o.warmup).as_secs_f64() * 4.0;
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
    rps: Vec<f64>,
    p50: Vec<f64>,
    p99: Vec<f64>,
    /// Microseconds of CPU (this process and redis-server) per request.
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
        "  {} rounds; each target {} s measured after {} s of warm-up, {} keep-alive \
         connections, {} signed-in browsers per target; server {} tokio workers, load \
         generator {}; GET {PATH}",
        o.rounds,
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

    // One unrecorded pass over every target first: the first target of a fresh process
    // would otherwise also pay for the process's own warm-up (allocator, thread pools).
    for t in &mut targets {
        t.cookies = client_rt.block_on(sign_in_all(t, o.sessions))?;
        let warmup = Options {
            duration: o.warmup,
            warmup: Duration::ZERO,
            only: None,
            ..o.clone()
        };
        client_rt.block_on(load(t.addr, &t.cookies, &warmup))?;
    }

    for round in 0..o.rounds {
        let order: Vec<usize> = if round % 2 == 0 {
            (0..targets.len()).collect()
        } else {
            (0..targets.len()).rev().collect()
        };
        for i in order {
            let t = &mut targets[i];
            t.cookies = client_rt.block_on(sign_in_all(t, o.sessions))?;
            let before = Cpu::now(redis.as_ref().and_then(Redis::pid));
            let run = client_rt.block_on(load(t.addr, &t.cookies, &o))?;
            let cpu = Cpu::now(redis.as_ref().and_then(Redis::pid)).since(&before);
            println!(
                "round {}/{}  {:<20} {:>9.0} req/s   p50 {:>7.3} ms   p99 {:>7.3} ms   \
                 cores busy: this process {:.2}, redis {:.2}, others {:.2}",
                round + 1,
                o.rounds,
                t.name,
                run.rps,
                run.p50_ms,
                run.p99_ms,
                cpu.this,
                cpu.redis,
                cpu.others
            );
            t.rps.push(run.rps);
            t.cpu_us.push((cpu.this + cpu.redis) / run.rps * 1e6);
            t.p50.push(run.p50_ms);
            t.p99.push(run.p99_ms);
        }
    }

    println!();
    println!(
        "{:<20} {:>10} {:>9} {:>9} {:>8} {:>11} {:>12}",
        "target", "req/s", "p50 ms", "p99 ms", "vs bare", "CPU µs/req", "CPU vs bare"
    );
    let bare_rps = targets[0].rps.clone();
    let bare_cpu = targets[0].cpu_us.clone();
    for t in &targets {
        println!(
            "{:<20} {:>10.0} {:>9.3} {:>9.3} {:>8.2} {:>11.1} {:>12.2}",
            t.name,
            median(&t.rps),
            median(&t.p50),
            median(&t.p99),
            paired_ratio(&t.rps, &bare_rps),
            median(&t.cpu_us),
            paired_ratio(&bare_cpu, &t.cpu_us)
        );
    }
    println!(
        "(medians of {} rounds; ratios are medians of the rounds' own ratios. CPU µs/req: \
         this process (servers and load generator) and redis-server, per request; CPU vs \
         bare: bare's CPU per request over the target's, the throughput ratio it would have \
         with the machine to itself)",
        o.rounds
    );
    println!();
    let find = |name: &str| targets.iter().find(|t| t.name == name);
    if let Some(memory) = find("layer-memory") {
        println!(
            "ratio layer/bare memory: {:.2}",
            paired_ratio(&memory.rps, &bare_rps)
        );
    }
    if let Some(redis) = find("layer-redis") {
        println!(
            "ratio layer/bare redis: {:.2}",
            paired_ratio(&redis.rps, &bare_rps)
        );
    }
    if let (Some(memory), Some(peer)) = (find("layer-memory"), find("axum-oidc")) {
        println!(
            "ratio layer/axum-oidc: {:.2}",
            paired_ratio(&memory.rps, &peer.rps)
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

/// The median of the rounds' ratios `a[i] / b[i]`.
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
                ("layer-redis", ours_redis, RedisStore::DEFAULT_CACHE_CAPACITY),
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

struct Run {
    rps: f64,
    p50_ms: f64,
    p99_ms: f64,
}

/// Loads `addr` with `o.connections` keep-alive connections for the warm-up and then the
/// measured duration; counts the requests sent and answered within the measured window.
async fn load(addr: SocketAddr, cookies: &[String], o: &Options) -> Result<Run, Error> {
    let cookies = cookies
        .iter()
        .map(|c| HeaderValue::from_str(c))
        .collect::<Result<Vec<_>, _>>()?;
    let host = HeaderValue::from_str(&addr.to_string())?;
    let start = Instant::now() + Duration::from_millis(50);
    let measure_from = start + o.warmup;
    let measure_until = measure_from + o.duration;
    let mut tasks = Vec::new();
    for i in 0..o.connections {
        let cookie = cookies[i % cookies.len()].clone();
        let host = host.clone();
        tasks.push(tokio::spawn(async move {
            let stream = tokio::net::TcpStream::connect(addr).await?;
            stream.set_nodelay(true)?;
            let (mut send, conn) =
                hyper::client::conn::http1::handshake::<_, Empty<Bytes>>(TokioIo::new(stream))
                    .await?;
            tokio::spawn(conn);
            let mut latencies: Vec<u32> = Vec::with_capacity(1 << 16);
            tokio::time::sleep_until(start.into()).await;
            loop {
                let sent = Instant::now();
                if sent >= measure_until {
                    break;
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
                    return Err::<Vec<u32>, Error>(
                        format!("{addr}: answered {status}, not the handler's 200").into(),
                    );
                }
                if sent >= measure_from && done <= measure_until {
                    let micros = done.duration_since(sent).as_nanos() / 100;
                    latencies.push(u32::try_from(micros).unwrap_or(u32::MAX));
                }
            }
            Ok(latencies)
        }));
    }
    let mut all: Vec<u32> = Vec::new();
    for task in tasks {
        all.extend(task.await??);
    }
    if all.is_empty() {
        return Err(format!("{addr}: no request completed").into());
    }
    all.sort_unstable();
    // Latencies are kept in units of 100 ns.
    let pick = |q: f64| all[((all.len() as f64 * q) as usize).min(all.len() - 1)] as f64 / 1e4;
    Ok(Run {
        rps: all.len() as f64 / o.duration.as_secs_f64(),
        p50_ms: pick(0.50),
        p99_ms: pick(0.99),
    })
}

/// CPU time so far: this process, the private redis-server, the whole machine.
struct Cpu {
    at: Instant,
    this: f64,
    redis: f64,
    machine: f64,
}

/// Cores kept busy over an interval.
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
