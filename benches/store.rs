//! The session store operations: `load` and `save` of one session, on `MemoryStore` and on
//! `RedisStore`, and the JSON encoding and sealing a Redis save and load pay for.
//!
//! Sealing (AES-256-GCM, key by HKDF from the session id) is paid for when a store first
//! serializes a session made here (a login, a refresh: `save_new`, `seal_and_encode`) and
//! when the layer opens a session read from a store (a cache miss: `load_and_open`,
//! `decode_and_open`); never on a request served from the memory store or the local
//! cache, and not for a write of the idle deadline (`save`: the sealed form is reused).
//!
//! `cargo bench --bench store`. The Redis benches use `REDIS_URL` when it is set, else a
//! private `redis-server` started on a free loopback port (no persistence, stopped at the
//! end) when one is installed, else they are skipped with a note. Redis figures are
//! round trips over loopback on this machine: compare them with the memory store's, and
//! with a whole request (`--bench hot_path`), not across machines. On a `REDIS_URL` server
//! the benches write under the prefix `tower-oauth2-login-bench:` (keys expire by themselves).

use std::process::{Child, Command, Stdio};
use std::sync::{Arc, LazyLock, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use divan::Bencher;
use futures_util::FutureExt;
use tower_oauth2_login::{bench, MemoryStore, RedisStore, Session, SessionKey, SessionStore};

/// The session id the benches' session is sealed for.
static ID: LazyLock<String> = LazyLock::new(bench::new_session_id);

/// The Redis server the benches use, when there is one.
static REDIS_URL: OnceLock<String> = OnceLock::new();

fn main() {
    let local = match std::env::var("REDIS_URL") {
        Ok(url) => {
            let _ = REDIS_URL.set(url);
            None
        }
        Err(_) => LocalRedis::start(),
    };
    if let Some(server) = &local {
        let _ = REDIS_URL.set(format!("redis://127.0.0.1:{}/", server.port));
    }
    let mut divan = divan::Divan::from_args();
    if REDIS_URL.get().is_none() {
        eprintln!("redis benches skipped: no REDIS_URL and no redis-server to start");
        divan = divan.skip_regex("(^|::)redis::");
    }
    divan.main();
    drop(local);
}

/// A session like one the layer stores after a login: OpenID-style claims and a
/// JWT-sized access token.
fn session() -> Arc<Session> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    Arc::new(
        bench::session(
            &ID,
            serde_json::json!({
                "subject": "248289761001",
                "claims": {
                    "sub": "248289761001",
                    "name": "Jane Doe",
                    "preferred_username": "j.doe",
                    "email": "janedoe@example.com",
                    "email_verified": true,
                },
                "scopes": ["openid", "profile", "email"],
                "access_token": "a".repeat(900),
                "access_expires_at": now + 3600,
                "refresh_token": "r".repeat(64),
                "id_token": null,
                "sid": "08a5019c-17e1-4977-8f42-65a12843ea02",
                "created_at": now,
                "expires_at": now + 8 * 3600,
                "absolute_expires_at": now + 7 * 24 * 3600,
            }),
        )
        .unwrap(),
    )
}

fn key(n: u32) -> SessionKey {
    let mut bytes = [0x5au8; 32];
    bytes[..4].copy_from_slice(&n.to_be_bytes());
    SessionKey::from_bytes(bytes)
}

mod memory {
    use super::*;

    static STORE: LazyLock<MemoryStore> = LazyLock::new(|| {
        let store = MemoryStore::new();
        // A store with some sessions in it, the measured one among them.
        for n in 0..10_000 {
            store
                .save(&key(n), session())
                .now_or_never()
                .unwrap()
                .unwrap();
        }
        store
    });

    #[divan::bench]
    fn load(bencher: Bencher) {
        let store = &*STORE;
        let k = key(42);
        bencher.bench_local(|| {
            let s = store.load(&k).now_or_never().unwrap().unwrap();
            assert!(s.is_some());
            s
        });
    }

    #[divan::bench]
    fn save(bencher: Bencher) {
        let store = &*STORE;
        let k = key(43);
        let s = session();
        bencher.bench_local(|| {
            store
                .save(&k, Arc::clone(&s))
                .now_or_never()
                .unwrap()
                .unwrap()
        });
    }
}

mod redis {
    use super::*;

    struct Fixture {
        rt: tokio::runtime::Runtime,
        /// The local cache off: every load is a `GET`.
        store: RedisStore,
        /// The local cache on (the default), the sessions read once.
        cached: RedisStore,
    }

    static FIXTURE: LazyLock<Fixture> = LazyLock::new(|| {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let url = REDIS_URL.get().expect("a Redis server");
        let (store, cached) = rt.block_on(async {
            let connect = |cache| {
                RedisStore::builder(url.as_str())
                    .with_prefix("tower-oauth2-login-bench:")
                    .with_local_cache(cache)
                    .connect()
            };
            let store = connect(0).await.unwrap();
            let cached = connect(RedisStore::DEFAULT_CACHE_CAPACITY).await.unwrap();
            for n in 0..64 {
                store.save(&key(n), session()).await.unwrap();
                cached.load(&key(n)).await.unwrap();
            }
            (store, cached)
        });
        Fixture { rt, store, cached }
    });

    #[divan::bench]
    fn load(bencher: Bencher) {
        let Fixture { rt, store, .. } = &*FIXTURE;
        let k = key(42);
        bencher.bench_local(|| {
            let s = rt.block_on(store.load(&k)).unwrap();
            assert!(s.is_some());
            s
        });
    }

    /// A cache miss as the layer pays for it: one `GET`, the JSON decode, then the seal
    /// key derived from the cookie and the tokens opened.
    #[divan::bench]
    fn load_and_open(bencher: Bencher) {
        let Fixture { rt, store, .. } = &*FIXTURE;
        let k = key(42);
        bencher.bench_local(|| {
            let s = rt.block_on(store.load(&k)).unwrap().unwrap();
            assert!(bench::open_session(&s, &ID));
            s
        });
    }

    /// A session this instance read before, from the local cache (what the layer's hot
    /// path calls first).
    #[divan::bench]
    fn load_now_cached(bencher: Bencher) {
        let Fixture { cached, .. } = &*FIXTURE;
        let k = key(42);
        bencher.bench_local(|| {
            let s = cached.load_now(&k);
            assert!(matches!(s, Some(Some(_))));
            s
        });
    }

    #[divan::bench]
    fn load_missing(bencher: Bencher) {
        let Fixture { rt, store, .. } = &*FIXTURE;
        let k = key(999_999);
        bencher.bench_local(|| rt.block_on(store.load(&k)).unwrap());
    }

    /// A save of a session sealed before (an idle-deadline write): its sealed form reused.
    #[divan::bench]
    fn save(bencher: Bencher) {
        let Fixture { rt, store, .. } = &*FIXTURE;
        let k = key(43);
        let s = session();
        bencher.bench_local(|| rt.block_on(store.save(&k, Arc::clone(&s))).unwrap());
    }

    /// The first save of a session made here (a login, a refresh): sealed, then written.
    #[divan::bench]
    fn save_new(bencher: Bencher) {
        let Fixture { rt, store, .. } = &*FIXTURE;
        let k = key(44);
        let made = session();
        bencher
            .with_inputs(|| Arc::new((*made).clone()))
            .bench_local_values(|s| rt.block_on(store.save(&k, s)).unwrap());
    }

    /// 64 loads at once on the one multiplexed connection, as under load: the time of
    /// the batch, and loads per second.
    #[divan::bench(counters = [divan::counter::ItemsCount::new(64usize)])]
    fn load_64_concurrent(bencher: Bencher) {
        let Fixture { rt, store, .. } = &*FIXTURE;
        let keys: Vec<SessionKey> = (0..64).map(key).collect();
        bencher.bench_local(|| {
            rt.block_on(futures_util::future::join_all(
                keys.iter().map(|k| store.load(k)),
            ))
        });
    }
}

mod session_json {
    use super::*;

    /// The encoding of a session sealed before.
    #[divan::bench]
    fn encode(bencher: Bencher) {
        let s = session();
        let _ = serde_json::to_vec(&*s).unwrap();
        bencher.bench_local(|| serde_json::to_vec(&*s).unwrap());
    }

    /// The first encoding of a session made here: the tokens sealed, then the JSON.
    #[divan::bench]
    fn seal_and_encode(bencher: Bencher) {
        let made = session();
        bencher
            .with_inputs(|| (*made).clone())
            .bench_local_values(|s| serde_json::to_vec(&s).unwrap());
    }

    #[divan::bench]
    fn decode(bencher: Bencher) {
        let bytes = serde_json::to_vec(&*session()).unwrap();
        bencher.bench_local(|| serde_json::from_slice::<Session>(&bytes).unwrap());
    }

    /// What the layer does with a record read from a store: decode, derive the seal key,
    /// open.
    #[divan::bench]
    fn decode_and_open(bencher: Bencher) {
        let bytes = serde_json::to_vec(&*session()).unwrap();
        bencher.bench_local(|| {
            let s = serde_json::from_slice::<Session>(&bytes).unwrap();
            assert!(bench::open_session(&s, &ID));
            s
        });
    }

    /// The opening alone: the seal key derived (HKDF-SHA256), AES-256-GCM decryption and
    /// the tokens' JSON.
    #[divan::bench]
    fn open(bencher: Bencher) {
        let bytes = serde_json::to_vec(&*session()).unwrap();
        bencher
            .with_inputs(|| serde_json::from_slice::<Session>(&bytes).unwrap())
            .bench_local_refs(|s| assert!(bench::open_session(s, &ID)));
    }
}

/// A private `redis-server` on a free loopback port, for the length of the run.
struct LocalRedis {
    child: Child,
    port: u16,
}

impl LocalRedis {
    fn start() -> Option<Self> {
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
        let server = LocalRedis { child, port };
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Some(server)
    }
}

impl Drop for LocalRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
