//! Memory figures of the memory store and of anonymous traffic:
//! `cargo run --release -p tower-oauth2-login-perf --bin memory`.
//!
//! 1. Resident bytes per session with 100,000 and 1,000,000 sessions in a [`MemoryStore`],
//!    each session as a login with OpenID Connect leaves it: a 1 KiB access token, a
//!    100-byte refresh token, a 1 KiB ID token, the claims of the ID token and userinfo, the
//!    granted scopes. Each figure comes from a fresh process (this program run again), as
//!    the growth of its resident set (`/proc/self/statm`) divided by the number of
//!    sessions, and is also given without the tokens' own bytes.
//! 2. One million anonymous requests through the layer (called directly, no network), each
//!    redirected to the provider with a new pending login, every second one with a
//!    well-formed session cookie that names no session: the resident set before and after,
//!    and the number of sessions stored (none: the pending login lives in the cookie).
//!
//! Options: `--sessions N[,N...]` (default `100000,1000000`), `--anonymous N` (default
//! 1000000).

use std::convert::Infallible;
use std::process::Command;
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use futures_util::FutureExt;
use http::{header, Request, Response, StatusCode};
use http_body_util::Full;
use tower::{Service, ServiceExt};
use tower_oauth2_login::{LoginLayer, MemoryStore, Session, SessionKey, SessionStore};

const ACCESS_TOKEN_BYTES: usize = 1024;
const REFRESH_TOKEN_BYTES: usize = 100;
const ID_TOKEN_BYTES: usize = 1024;

type Error = Box<dyn std::error::Error + Send + Sync>;

fn main() -> Result<(), Error> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let [flag, n] = args.as_slice() {
        if flag == "--child-sessions" {
            return child_sessions(n.parse()?);
        }
    }
    let mut counts = vec![100_000usize, 1_000_000];
    let mut anonymous = 1_000_000usize;
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let mut value = || it.next().ok_or(format!("{arg} needs a value"));
        match arg.as_str() {
            "--sessions" => {
                counts = value()?
                    .split(',')
                    .map(|n| n.trim().parse())
                    .collect::<Result<_, _>>()?
            }
            "--anonymous" => anonymous = value()?.parse()?,
            "-h" | "--help" => {
                println!("usage: memory [--sessions N[,N...]] [--anonymous N]");
                return Ok(());
            }
            other => return Err(format!("unknown argument {other:?} (try --help)").into()),
        }
    }

    println!("memory store: resident bytes per session (each line a fresh process)");
    let sample = session(0);
    let own = ACCESS_TOKEN_BYTES + REFRESH_TOKEN_BYTES + ID_TOKEN_BYTES;
    println!(
        "  a session: access token {ACCESS_TOKEN_BYTES} B, refresh token {REFRESH_TOKEN_BYTES} B, \
         ID token {ID_TOKEN_BYTES} B ({own} B of tokens), {} claims, {} scopes",
        sample.claims().len(),
        sample.scopes().len()
    );
    println!(
        "  {:>10}  {:>14}  {:>12}  {:>18}",
        "sessions", "resident MiB", "per session", "beyond the tokens"
    );
    for n in counts {
        let exe = std::env::current_exe()?;
        let out = Command::new(exe)
            .args(["--child-sessions", &n.to_string()])
            .output()?;
        if !out.status.success() {
            return Err(format!(
                "the measuring process failed: {}",
                String::from_utf8_lossy(&out.stderr)
            )
            .into());
        }
        let grown: u64 = String::from_utf8(out.stdout)?.trim().parse()?;
        let per = grown as f64 / n as f64;
        println!(
            "  {:>10}  {:>14.1}  {:>10.0} B  {:>16.0} B",
            n,
            grown as f64 / (1024.0 * 1024.0),
            per,
            per - own as f64
        );
    }

    println!();
    anonymous_requests(anonymous)
}

/// Fills a store with `n` sessions and prints how much the resident set grew, in bytes.
fn child_sessions(n: usize) -> Result<(), Error> {
    let store = MemoryStore::new();
    // Whatever the first save sets up (the map's shards, the sweep clock) is not counted.
    save(&store, u32::MAX, session(u32::MAX as usize))?;
    let before = resident_bytes();
    for i in 0..n {
        let i = u32::try_from(i)?;
        save(&store, i, session(i as usize))?;
    }
    let after = resident_bytes();
    assert_eq!(store.len(), n + 1);
    println!("{}", after.saturating_sub(before));
    Ok(())
}

fn save(store: &MemoryStore, i: u32, session: Session) -> Result<(), Error> {
    let mut key = [0u8; 32];
    // Keys as the layer makes them would be SHA-256 outputs: spread the index over the
    // bytes the map hashes.
    key[..4].copy_from_slice(&i.to_le_bytes());
    key[28..].copy_from_slice(&i.to_be_bytes());
    store
        .save(&SessionKey::from_bytes(key), Arc::new(session))
        .now_or_never()
        .ok_or("the memory store waited")??;
    Ok(())
}

/// A session as an OpenID Connect login stores it, with tokens of the typical sizes, each
/// of its own bytes (`i` makes them differ).
fn session(i: usize) -> Session {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let token = |len: usize, tag: &str| {
        let mut t = format!("{tag}{i:012}.");
        while t.len() < len {
            t.push_str("eyJhbGciOiJSUzI1NiIsImtpZCI6ImsxIn0");
        }
        t.truncate(len);
        // Exactly its length, as a token read from the provider's answer.
        t.shrink_to_fit();
        t
    };
    let subject = format!("user-{i:08}");
    let json = serde_json::json!({
        "subject": subject,
        // The ID token's claims and userinfo's, as the callback merges them.
        "claims": {
            "iss": "https://idp.example.com",
            "sub": subject,
            "aud": "my-client",
            "exp": now + 600,
            "iat": now,
            "nonce": token(43, "n"),
            "sid": format!("08a5019c-17e1-4977-8f42-{i:012}"),
            "name": "Jane Doe",
            "email": format!("jane.doe.{i}@example.com"),
            "email_verified": true,
        },
        "scopes": ["openid", "profile", "email"],
        "access_token": token(ACCESS_TOKEN_BYTES, "a"),
        "access_expires_at": now + 3600,
        "access_obtained_at": now,
        "refresh_token": token(REFRESH_TOKEN_BYTES, "r"),
        "id_token": token(ID_TOKEN_BYTES, "i"),
        "sid": format!("08a5019c-17e1-4977-8f42-{i:012}"),
        "created_at": now,
        "expires_at": now + 8 * 3600,
        "absolute_expires_at": now + 7 * 24 * 3600,
    });
    // Opened, as a login leaves it in the memory store (which never seals it).
    tower_oauth2_login::bench::session(&tower_oauth2_login::bench::new_session_id(), json)
        .expect("a valid session")
}

/// `n` anonymous requests through the layer: the resident set before and after.
fn anonymous_requests(n: usize) -> Result<(), Error> {
    let store = MemoryStore::new();
    let layer = LoginLayer::builder()
        .with_client_id("memory")
        // Never contacted: an anonymous request only builds the redirect to it.
        .with_authorization_endpoint("http://127.0.0.1:9/authorize")
        .with_token_endpoint("http://127.0.0.1:9/token")
        .with_userinfo_endpoint("http://127.0.0.1:9/userinfo")
        .with_redirect_url("http://127.0.0.1:3000/auth/callback")
        .with_scopes(["openid", "profile"])
        .with_cookie_key([7u8; 64])
        .with_store(store.clone())
        .build()?;
    let mut svc = tower::ServiceBuilder::new()
        .layer(layer)
        .service(tower::service_fn(|_req: Request<Full<Bytes>>| async {
            Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"hello"))))
        }));
    let bogus = |i: usize| {
        // 43 base64url characters: the shape of a session id, naming no session.
        let mut id = format!("{i:043}");
        id.truncate(43);
        format!("_ga=GA1.1.1; theme=dark; oauth2_session={id}")
    };
    let mut call = |i: usize| -> Result<(), Error> {
        let mut req = Request::get(format!("/dashboard?tab={}", i % 100))
            .header(header::ACCEPT, "text/html,application/xhtml+xml")
            .header(header::USER_AGENT, "memory");
        if i % 2 == 1 {
            req = req.header(header::COOKIE, bogus(i));
        }
        let req = req.body(Full::new(Bytes::new()))?;
        let res = svc
            .ready()
            .now_or_never()
            .ok_or("not ready")??
            .call(req)
            .now_or_never()
            .ok_or("the layer waited")??;
        if res.status() != StatusCode::SEE_OTHER {
            return Err(format!("expected 303, got {}", res.status()).into());
        }
        Ok(())
    };
    // Warm-up: allocator arenas, the thread's RNG, lazily built tables.
    for i in 0..10_000 {
        call(i)?;
    }
    let before = resident_bytes();
    let started = Instant::now();
    for i in 0..n {
        call(i)?;
    }
    let took = started.elapsed();
    let after = resident_bytes();
    println!(
        "anonymous requests: {n} through the layer in {:.1} s ({:.1} µs each), each a 303 to \
         the provider with a sealed pending-login cookie, every second one with an unknown \
         session cookie",
        took.as_secs_f64(),
        took.as_secs_f64() * 1e6 / n.max(1) as f64
    );
    println!(
        "  resident before {:.1} MiB, after {:.1} MiB: change {:+.1} KiB ({:+.3} bytes a request); \
         sessions stored: {}",
        before as f64 / (1024.0 * 1024.0),
        after as f64 / (1024.0 * 1024.0),
        (after as f64 - before as f64) / 1024.0,
        (after as f64 - before as f64) / n.max(1) as f64,
        store.len()
    );
    Ok(())
}

/// The resident set of this process, in bytes.
fn resident_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("/proc/self/statm (Linux)");
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .expect("resident pages in /proc/self/statm");
    // SAFETY: sysconf has no preconditions; it reads a constant of the system.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    pages * u64::try_from(page).unwrap_or(4096)
}
