//! `RedisStore` against a real `redis-server` (each test starts its own, see
//! `tests/support/redis.rs`; `scripts/test.sh` installs it): the store operations, expiry by
//! Redis, the indexes of back-channel logout, timeouts, and the layer on two instances
//! sharing one Redis through an outage and a hang.

use crate::support;

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use reqwest::{Method, StatusCode};
use support::app::{self, Browser, Options, TestApp};
use support::redis::RedisServer;
use tower_oauth2_login::{RedisStore, Session, SessionKey, SessionMatch, SessionStore};

const PREFIX: &str = "tower-oauth2-login:";

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn key(n: u8) -> SessionKey {
    let mut bytes = [0u8; 32];
    bytes[0] = n;
    bytes[31] = 0xa5;
    SessionKey::from_bytes(bytes)
}

/// The fields of a session as the layer would make it, `idle` and `absolute` seconds from
/// now, with its tokens in the clear.
fn fields(subject: &str, sid: Option<&str>, idle: u64, absolute: u64) -> serde_json::Value {
    let now = now();
    serde_json::json!({
        "subject": subject,
        "claims": {"sub": subject, "name": "Alice Ünicode", "groups": ["a", "b"]},
        "scopes": ["openid", "profile"],
        "access_token": "access-token-secret",
        "access_expires_at": now + 300,
        "refresh_token": "refresh-token-secret",
        "id_token": null,
        "sid": sid,
        "created_at": now,
        "expires_at": now + idle.min(absolute),
        "absolute_expires_at": now + absolute,
    })
}

/// Such a session for a fresh session id (these tests store it under keys of their own: a
/// store never opens a session).
fn session(subject: &str, sid: Option<&str>, idle: u64, absolute: u64) -> Arc<Session> {
    let id = tower_oauth2_login::bench::new_session_id();
    Arc::new(tower_oauth2_login::bench::session(&id, fields(subject, sid, idle, absolute)).unwrap())
}

fn session_key(k: &SessionKey) -> String {
    format!("{PREFIX}session:{}", k.to_hex())
}

async fn store(server: &RedisServer) -> RedisStore {
    RedisStore::connect(&server.url()).await.unwrap()
}

#[tokio::test]
async fn save_load_delete() {
    let server = RedisServer::start();
    let store = store(&server).await;
    let k = key(1);
    assert!(store.load(&k).await.unwrap().is_none());
    store.delete(&k).await.unwrap(); // a missing session is no error

    let saved = session("alice", Some("sid-1"), 600, 3600);
    store.save(&k, Arc::clone(&saved)).await.unwrap();
    let loaded = store.load(&k).await.unwrap().expect("the saved session");
    assert_eq!(
        serde_json::to_value(&*loaded).unwrap(),
        serde_json::to_value(&*saved).unwrap(),
        "every field survives the round trip"
    );

    // The layout: keyed by the hex of the key under the prefix, expiring at the
    // session's deadline; the index sets name it and live at least as long.
    let skey = session_key(&k);
    assert_eq!(
        server.cmd::<u64>(&["EXPIRETIME", &skey]),
        saved.expires_at()
    );
    let hex = k.to_hex();
    for index in [
        format!("{PREFIX}subject:alice"),
        format!("{PREFIX}sid:sid-1"),
    ] {
        assert!(server.cmd::<bool>(&["SISMEMBER", &index, &hex]), "{index}");
        assert_eq!(
            server.cmd::<u64>(&["EXPIRETIME", &index]),
            saved.absolute_expires_at(),
            "{index}"
        );
    }

    // A save replaces, and moves the deadline.
    let later = session("alice", Some("sid-1"), 1200, 3600);
    store.save(&k, Arc::clone(&later)).await.unwrap();
    assert_eq!(
        server.cmd::<u64>(&["EXPIRETIME", &skey]),
        later.expires_at()
    );

    store.delete(&k).await.unwrap();
    assert!(store.load(&k).await.unwrap().is_none());
    assert_eq!(server.cmd::<u64>(&["EXISTS", &skey]), 0);
    // delete also takes the session out of its index sets.
    assert!(!server.cmd::<bool>(&["SISMEMBER", &format!("{PREFIX}subject:alice"), &hex]));
    assert!(!server.cmd::<bool>(&["SISMEMBER", &format!("{PREFIX}sid:sid-1"), &hex]));
}

#[tokio::test]
async fn update_replaces_only_a_session_that_is_still_there() {
    let server = RedisServer::start();
    let store = store(&server).await;
    let k = key(42);
    // Deleted (say, by a logout on another instance) before the slide or refresh lands:
    // the update does not bring it back.
    assert!(!store
        .update(&k, session("alice", None, 60, 600))
        .await
        .unwrap());
    assert!(store.load(&k).await.unwrap().is_none());
    store
        .save(&k, session("alice", None, 60, 600))
        .await
        .unwrap();
    assert!(store
        .update(&k, session("alice", None, 120, 600))
        .await
        .unwrap());
    let loaded = store.load(&k).await.unwrap().unwrap();
    assert_eq!(loaded.expires_at(), now() + 120);
    store.delete(&k).await.unwrap();
    assert!(!store
        .update(&k, session("alice", None, 60, 600))
        .await
        .unwrap());
    assert!(store.load(&k).await.unwrap().is_none());
}

#[tokio::test]
async fn an_expired_session_is_not_written() {
    let server = RedisServer::start();
    let store = store(&server).await;
    let k = key(2);
    store
        .save(&k, session("alice", None, 600, 3600))
        .await
        .unwrap();
    let mut dead = (*session("alice", None, 600, 3600)).clone();
    dead = serde_json::from_value({
        let mut v = serde_json::to_value(&dead).unwrap();
        v["expires_at"] = (now() - 1).into();
        v
    })
    .unwrap();
    store.save(&k, Arc::new(dead)).await.unwrap();
    assert_eq!(
        server.cmd::<u64>(&["EXISTS", &session_key(&k)]),
        0,
        "saving an expired session leaves nothing under its key"
    );
    assert!(store.load(&k).await.unwrap().is_none());
}

#[tokio::test]
async fn the_absolute_deadline_caps_the_ttl() {
    let server = RedisServer::start();
    let store = store(&server).await;
    let k = key(3);
    // A record whose idle deadline lies past its absolute one (not what the layer
    // writes, but a store must not keep it longer).
    let mut v = serde_json::to_value(&*session("alice", None, 600, 60)).unwrap();
    v["expires_at"] = (now() + 600).into();
    let s: Session = serde_json::from_value(v).unwrap();
    store.save(&k, Arc::new(s.clone())).await.unwrap();
    assert_eq!(
        server.cmd::<u64>(&["EXPIRETIME", &session_key(&k)]),
        s.absolute_expires_at()
    );
}

#[tokio::test]
async fn redis_expires_sessions_by_itself() {
    let server = RedisServer::start();
    let store = store(&server).await;
    let k = key(4);
    let started = Instant::now();
    store
        .save(&k, session("alice", None, 2, 3600))
        .await
        .unwrap();
    assert!(store.load(&k).await.unwrap().is_some());
    // No read, no sweep from our side: the key vanishes because Redis expires it.
    let skey = session_key(&k);
    while server.cmd::<u64>(&["EXISTS", &skey]) == 1 {
        assert!(
            started.elapsed() < Duration::from_secs(6),
            "still there after 6 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(started.elapsed() >= Duration::from_millis(900));
    assert!(store.load(&k).await.unwrap().is_none());
}

#[tokio::test]
async fn prefixes_keep_apps_apart() {
    let server = RedisServer::start();
    let one = store(&server).await;
    let two = RedisStore::builder(server.url())
        .with_prefix("other-app:")
        .connect()
        .await
        .unwrap();
    assert_eq!(two.prefix(), "other-app:");
    let k = key(5);
    one.save(&k, session("alice", Some("s"), 600, 3600))
        .await
        .unwrap();
    assert!(two.load(&k).await.unwrap().is_none());
    let by_subject = SessionMatch {
        subject: Some("alice"),
        sid: None,
    };
    assert_eq!(two.delete_matching(&by_subject).await.unwrap(), 0);
    assert!(one.load(&k).await.unwrap().is_some());
    assert_eq!(
        server.cmd::<u64>(&["EXISTS", &format!("other-app:session:{}", k.to_hex())]),
        0
    );
}

#[tokio::test]
async fn delete_matching_by_sid_and_subject() {
    let server = RedisServer::start();
    let store = store(&server).await;
    let (a1, a2, b, gone) = (key(10), key(11), key(12), key(13));
    store
        .save(&a1, session("alice", Some("s1"), 600, 3600))
        .await
        .unwrap();
    store
        .save(&a2, session("alice", Some("s2"), 600, 3600))
        .await
        .unwrap();
    store
        .save(&b, session("bob", Some("s1"), 600, 3600))
        .await
        .unwrap();
    store
        .save(&gone, session("alice", Some("s1"), 600, 3600))
        .await
        .unwrap();
    // A session that expired (or was removed) behind the store's back: its index
    // members remain, and must be neither counted nor kept.
    let () = server.cmd(&["DEL", &session_key(&gone)]);

    let by = |subject, sid| SessionMatch { subject, sid };
    assert_eq!(store.delete_matching(&by(None, None)).await.unwrap(), 0);
    assert_eq!(
        store
            .delete_matching(&by(Some("alice"), Some("s9")))
            .await
            .unwrap(),
        0
    );
    // sid and sub together: only alice's s1 (bob shares the sid).
    assert_eq!(
        store
            .delete_matching(&by(Some("alice"), Some("s1")))
            .await
            .unwrap(),
        1
    );
    assert!(store.load(&a1).await.unwrap().is_none());
    assert!(store.load(&b).await.unwrap().is_some());
    let sid_index = format!("{PREFIX}sid:s1");
    let members: Vec<String> = server.cmd(&["SMEMBERS", &sid_index]);
    assert_eq!(
        members,
        vec![b.to_hex()],
        "the deleted and the vanished session left the sid index; bob's stays"
    );
    assert!(!server.cmd::<bool>(&["SISMEMBER", &format!("{PREFIX}subject:alice"), &a1.to_hex()]));

    // sub alone: all of alice's that are left.
    assert_eq!(
        store
            .delete_matching(&by(Some("alice"), None))
            .await
            .unwrap(),
        1
    );
    assert!(store.load(&a2).await.unwrap().is_none());
    assert_eq!(
        server.cmd::<u64>(&["EXISTS", &format!("{PREFIX}subject:alice")]),
        0,
        "alice's index is empty, so gone"
    );
    // sid alone.
    assert_eq!(
        store.delete_matching(&by(None, Some("s1"))).await.unwrap(),
        1
    );
    assert!(store.load(&b).await.unwrap().is_none());
    let keys: Vec<String> = server.cmd(&["KEYS", "*"]);
    assert!(keys.is_empty(), "nothing left behind: {keys:?}");
}

#[tokio::test]
async fn delete_matching_many_sessions() {
    let server = RedisServer::start();
    let store = store(&server).await;
    // More than one MGET's worth.
    for n in 0..300u16 {
        let mut bytes = [7u8; 32];
        bytes[..2].copy_from_slice(&n.to_be_bytes());
        store
            .save(
                &SessionKey::from_bytes(bytes),
                session("carol", Some(&format!("s{n}")), 600, 3600),
            )
            .await
            .unwrap();
    }
    let by_subject = SessionMatch {
        subject: Some("carol"),
        sid: None,
    };
    assert_eq!(store.delete_matching(&by_subject).await.unwrap(), 300);
    let keys: Vec<String> = server.cmd(&["KEYS", &format!("{PREFIX}session:*")]);
    assert!(keys.is_empty());
}

#[tokio::test]
async fn connecting_fails_fast_and_says_why_without_secrets() {
    // Nothing listens on the port: refused at once.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let started = Instant::now();
    let err = RedisStore::connect(&format!("redis://:hunter2@127.0.0.1:{port}/"))
        .await
        .unwrap_err()
        .to_string();
    assert!(started.elapsed() < Duration::from_secs(2), "{err}");
    assert!(err.contains("connection refused"), "{err}");
    assert!(!err.contains("hunter2"), "{err}");

    // A server that accepts and never answers: bounded by the timeout.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent_addr = silent.local_addr().unwrap();
    let hold = tokio::spawn(async move {
        let mut held = Vec::new();
        loop {
            if let Ok((s, _)) = silent.accept().await {
                held.push(s);
            }
        }
    });
    let started = Instant::now();
    let err = RedisStore::builder(format!("redis://{silent_addr}/"))
        .with_timeout(Duration::from_millis(300))
        .connect()
        .await
        .unwrap_err()
        .to_string();
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(250), "{took:?}");
    assert!(took < Duration::from_secs(2), "{took:?}");
    assert!(err.contains("no answer within 300 ms"), "{err}");
    hold.abort();

    let err = RedisStore::connect("http://127.0.0.1/")
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("invalid Redis URL"), "{err}");

    let builder = RedisStore::builder("redis://:hunter2@127.0.0.1:1/");
    assert!(!format!("{builder:?}").contains("hunter2"));
}

#[tokio::test]
async fn a_hung_server_fails_each_call_within_the_timeout() {
    let server = RedisServer::start();
    let timeout = Duration::from_millis(300);
    let store = RedisStore::builder(server.url())
        .with_timeout(timeout)
        .connect()
        .await
        .unwrap();
    assert_eq!(store.timeout(), timeout);
    let k = key(20);
    store
        .save(&k, session("alice", Some("s"), 600, 3600))
        .await
        .unwrap();

    server.pause(Duration::from_secs(4));
    let by_subject = SessionMatch {
        subject: Some("alice"),
        sid: None,
    };
    for (what, result) in [
        ("load", store.load(&k).await.map(|_| ())),
        (
            "save",
            store.save(&k, session("alice", Some("s"), 600, 3600)).await,
        ),
        ("delete", store.delete(&key(21)).await),
        (
            "delete_matching",
            store.delete_matching(&by_subject).await.map(|_| ()),
        ),
    ] {
        let err = result.expect_err(what).to_string();
        assert!(
            err.contains(&format!("redis {what}: no answer within 300 ms")),
            "{err}"
        );
        assert!(!err.contains(&k.to_hex()), "no key material: {err}");
    }
    let started = Instant::now();
    assert!(store.load(&k).await.is_err());
    let took = started.elapsed();
    assert!(took < timeout + Duration::from_secs(1), "{took:?}");

    server.wait_unpaused();
    // The same connection, no reconnect needed: the session is there.
    let loaded = store.load(&k).await.unwrap();
    assert_eq!(loaded.unwrap().subject(), "alice");
}

#[tokio::test]
async fn the_store_reconnects_after_an_outage() {
    let mut server = RedisServer::start();
    let store = store(&server).await;
    let k = key(30);
    store
        .save(&k, session("alice", None, 600, 3600))
        .await
        .unwrap();
    server.stop();
    let started = Instant::now();
    let err = store.load(&k).await.unwrap_err().to_string();
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "a refused connection fails fast, not at the timeout: {:?}",
        started.elapsed()
    );
    assert!(
        err.starts_with("session store error: redis load: "),
        "{err}"
    );
    assert!(store
        .save(&k, session("alice", None, 600, 3600))
        .await
        .is_err());

    server.restart();
    // The first call after the outage succeeds (empty: --save "" lost everything).
    assert!(store.load(&k).await.unwrap().is_none());
    store
        .save(&k, session("alice", None, 600, 3600))
        .await
        .unwrap();
    assert!(store.load(&k).await.unwrap().is_some());
}

// ---- Through the layer: several instances on one Redis --------------------------------

/// An app instance (its own `LoginLayer`, router and embedded provider, the same cookie
/// key as every test app) whose sessions live in `store`.
async fn instance(store: RedisStore) -> TestApp {
    app::start_with(Options {
        layer: Box::new(move |b| b.with_store(store)),
        ..Default::default()
    })
    .await
}

async fn instance_with(
    store: RedisStore,
    layer: impl FnOnce(tower_oauth2_login::LoginLayerBuilder) -> tower_oauth2_login::LoginLayerBuilder
        + Send
        + 'static,
) -> TestApp {
    app::start_with(Options {
        layer: Box::new(move |b| layer(b.with_store(store))),
        ..Default::default()
    })
    .await
}

async fn me_with_cookie(app: &TestApp, id: &str) -> StatusCode {
    Browser::new()
        .request(
            Method::GET,
            &app.url("/me"),
            &[
                ("cookie", &format!("oauth2_session={id}")),
                ("accept", "application/json"),
            ],
        )
        .await
        .status
}

async fn logout(app: &TestApp, browser: &Browser) -> app::Seen {
    browser
        .request(
            Method::POST,
            &app.url("/logout"),
            &[
                ("origin", app.base.as_str()),
                ("sec-fetch-site", "same-origin"),
            ],
        )
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_made_on_one_instance_is_served_by_another() {
    let server = RedisServer::start();
    let a = instance(store(&server).await).await;
    let b = instance(store(&server).await).await;
    let browser = Browser::new();

    let res = a.login(&browser, "/protected").await;
    assert_eq!(res.status, StatusCode::SEE_OTHER, "{res:#?}");
    assert_eq!(
        browser.get(&a.url("/protected")).await.body,
        format!("<p>protected: alice at /protected</p>")
    );
    // Cookies are per host, not per port: the browser sends the same cookie to B, which
    // never saw this login.
    let id = browser.cookie(&a.base, "oauth2_session").unwrap();
    assert_eq!(browser.cookie(&b.base, "oauth2_session"), Some(id.clone()));
    let on_b = browser.get(&b.url("/protected")).await;
    assert_eq!(on_b.status, StatusCode::OK, "{on_b:#?}");
    assert_eq!(on_b.body, "<p>protected: alice at /protected</p>");
    let me = browser.get_json(&b.url("/me")).await;
    let me: serde_json::Value = serde_json::from_str(&me.body).unwrap();
    assert_eq!(me["subject"], "alice");
    // Redis holds the session under the hash of the cookie, never the cookie itself.
    let keys: Vec<String> = server.cmd(&["KEYS", "*"]);
    assert!(!keys.iter().any(|k| k.contains(&id)), "{keys:?}");
    assert!(keys.contains(&format!("{PREFIX}subject:alice")), "{keys:?}");

    // Sign out on B: the session ends on A too.
    let res = logout(&b, &browser).await;
    assert_eq!(res.status, StatusCode::SEE_OTHER, "{res:#?}");
    assert_eq!(me_with_cookie(&a, &id).await, StatusCode::UNAUTHORIZED);
    assert_eq!(me_with_cookie(&b, &id).await, StatusCode::UNAUTHORIZED);
    let keys: Vec<String> = server.cmd(&["KEYS", &format!("{PREFIX}session:*")]);
    assert!(keys.is_empty(), "{keys:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn back_channel_logout_reaches_sessions_made_on_every_instance() {
    let server = RedisServer::start();
    let store_a = store(&server).await;
    let a = instance(store_a.clone()).await;
    let b = instance(store(&server).await).await;
    let (on_a, on_b) = (Browser::new(), Browser::new());
    a.login(&on_a, "/protected").await;
    b.login(&on_b, "/protected").await;
    assert_eq!(on_a.get(&b.url("/protected")).await.status, StatusCode::OK);
    assert_eq!(on_b.get(&a.url("/protected")).await.status, StatusCode::OK);

    // What a back-channel logout for alice does, through instance A's store.
    let by_subject = SessionMatch {
        subject: Some("alice"),
        sid: None,
    };
    assert_eq!(store_a.delete_matching(&by_subject).await.unwrap(), 2);
    for (browser, app) in [(&on_a, &a), (&on_a, &b), (&on_b, &a), (&on_b, &b)] {
        let res = browser.get_json(&app.url("/me")).await;
        assert_eq!(res.status, StatusCode::UNAUTHORIZED, "{res:#?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_down_fails_closed_and_the_app_recovers_by_itself() {
    let mut server = RedisServer::start();
    let timeout = Duration::from_millis(500);
    let connect = || {
        RedisStore::builder(server.url())
            .with_timeout(timeout)
            .connect()
    };
    let a = instance(connect().await.unwrap()).await;
    let b = instance(connect().await.unwrap()).await;
    let browser = Browser::new();
    a.login(&browser, "/protected").await;
    assert_eq!(
        browser.get(&b.url("/protected")).await.status,
        StatusCode::OK
    );

    server.stop();
    for app in [&a, &b] {
        // Protected and public pages alike: never anonymous, never a login loop.
        for path in ["/protected", "/"] {
            let started = Instant::now();
            let res = browser.get(&app.url(path)).await;
            assert!(
                started.elapsed() < timeout + Duration::from_secs(1),
                "{path}"
            );
            assert_eq!(
                res.status,
                StatusCode::SERVICE_UNAVAILABLE,
                "{path}: {res:#?}"
            );
            assert_eq!(res.header("retry-after"), Some("5"));
            assert!(res.location().is_none());
            assert!(res.set_cookies().is_empty(), "the session cookie is kept");
            assert!(
                res.body.contains("Sessions are unavailable"),
                "{}",
                res.body
            );
        }
        let api = browser.get_json(&app.url("/me")).await;
        assert_eq!(api.status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(api.header("retry-after"), Some("5"));
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&api.body).unwrap()["error"],
            "session_store_unavailable"
        );
    }
    // A login that cannot store its session says so.
    let newcomer = Browser::new();
    // So does a logout that cannot delete one.
    let other = Browser::new();
    let id = browser.cookie(&a.base, "oauth2_session").unwrap();
    other
        .jar
        .add_cookie_str(&format!("oauth2_session={id}"), &a.base.parse().unwrap());
    let res = logout(&a, &other).await;
    assert_eq!(res.status, StatusCode::SERVICE_UNAVAILABLE, "{res:#?}");
    assert!(
        res.body.contains("Sessions are unavailable"),
        "{}",
        res.body
    );
    let res = a.login(&newcomer, "/protected").await;
    assert_eq!(res.status, StatusCode::SERVICE_UNAVAILABLE, "{res:#?}");
    assert!(
        res.body.contains("Sessions are unavailable"),
        "{}",
        res.body
    );
    assert!(newcomer.cookie(&a.base, "oauth2_session").is_none());
    // Anonymous traffic on public pages does not touch the store.
    assert_eq!(newcomer.get(&a.url("/")).await.status, StatusCode::OK);

    // Redis is back, empty (no persistence): the old session is gone, so a page load goes
    // to the provider and a new login works on both instances — without restarting them.
    server.restart();
    let res = browser.get(&a.url("/protected")).await;
    assert_eq!(res.status, StatusCode::SEE_OTHER, "{res:#?}");
    assert!(res
        .location()
        .unwrap()
        .starts_with(&a.provider.authorization_endpoint()));
    let res = a.login(&browser, "/protected").await;
    assert_eq!(res.status, StatusCode::SEE_OTHER, "{res:#?}");
    assert_eq!(
        browser.get(&a.url("/protected")).await.status,
        StatusCode::OK
    );
    assert_eq!(
        browser.get(&b.url("/protected")).await.status,
        StatusCode::OK
    );
    assert_eq!(
        newcomer.get(&b.url("/protected")).await.status,
        StatusCode::SEE_OTHER
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_redis_answers_503_within_the_timeout_then_the_same_session_works() {
    for cache in [RedisStore::DEFAULT_CACHE_CAPACITY, 0] {
        hung_redis(cache).await;
    }
}

async fn hung_redis(cache: usize) {
    let server = RedisServer::start();
    let timeout = Duration::from_millis(300);
    let store = RedisStore::builder(server.url())
        .with_timeout(timeout)
        .with_local_cache(cache)
        .connect()
        .await
        .unwrap();
    let app = instance(store).await;
    let browser = Browser::new();
    app.login(&browser, "/protected").await;
    assert_eq!(
        browser.get(&app.url("/protected")).await.status,
        StatusCode::OK
    );

    server.pause(Duration::from_secs(4));
    if cache > 0 {
        // The local copy is served only while Redis has answered within the last second.
        tokio::time::sleep(Duration::from_millis(1300)).await;
    }
    let started = Instant::now();
    let page = browser.get(&app.url("/protected")).await;
    let api = browser.get_json(&app.url("/me")).await;
    let took = started.elapsed();
    assert_eq!(
        page.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "cache {cache}: {page:#?}"
    );
    assert_eq!(
        api.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "cache {cache}: {api:#?}"
    );
    assert!(
        took < 2 * timeout + Duration::from_millis(1500),
        "two requests took {took:?}"
    );
    server.wait_unpaused();
    // The same session, with no restart of anything.
    assert_eq!(
        browser.get(&app.url("/protected")).await.status,
        StatusCode::OK
    );

    // A logout while Redis hangs says it could not end the session. Its command was sent,
    // though: once Redis answers again it runs, late, and the session is gone.
    let id = browser.cookie(&app.base, "oauth2_session").unwrap();
    server.pause(Duration::from_secs(1));
    let res = logout(&app, &browser).await;
    assert_eq!(res.status, StatusCode::SERVICE_UNAVAILABLE, "{res:#?}");
    assert!(
        res.body.contains("Sessions are unavailable"),
        "{}",
        res.body
    );
    server.wait_unpaused();
    assert_eq!(me_with_cookie(&app, &id).await, StatusCode::UNAUTHORIZED);
}

/// How many `GET`s Redis has served.
fn gets(server: &RedisServer) -> u64 {
    let info: String = server.cmd(&["INFO", "commandstats"]);
    info.lines()
        .find_map(|l| l.strip_prefix("cmdstat_get:calls="))
        .and_then(|rest| rest.split(',').next())
        .map_or(0, |n| n.parse().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_local_cache_spares_redis_and_hears_of_every_change() {
    let server = RedisServer::start();
    let a = instance(store(&server).await).await;
    let b = instance(store(&server).await).await;
    let browser = Browser::new();
    a.login(&browser, "/protected").await;
    let id = browser.cookie(&a.base, "oauth2_session").unwrap();
    assert_eq!(me_with_cookie(&a, &id).await, StatusCode::OK);

    // Read once, then served from memory.
    let before = gets(&server);
    for _ in 0..100 {
        assert_eq!(me_with_cookie(&a, &id).await, StatusCode::OK);
    }
    let read = gets(&server) - before;
    assert!(read <= 1, "100 requests read Redis {read} times");

    // Deleted behind the instance's back (another instance's logout, an operator): the
    // invalidation Redis sends ends it here at once.
    let keys: Vec<String> = server.cmd(&["KEYS", &format!("{PREFIX}session:*")]);
    assert_eq!(keys.len(), 1);
    let () = server.cmd(&["DEL", &keys[0]]);
    let deadline = Instant::now() + Duration::from_millis(500);
    while me_with_cookie(&a, &id).await != StatusCode::UNAUTHORIZED {
        assert!(Instant::now() < deadline, "still served after DEL");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }

    // The same through the layer: signed in again, cached on both, signed out on B.
    let browser = Browser::new();
    a.login(&browser, "/protected").await;
    let id = browser.cookie(&a.base, "oauth2_session").unwrap();
    assert_eq!(me_with_cookie(&a, &id).await, StatusCode::OK);
    assert_eq!(me_with_cookie(&b, &id).await, StatusCode::OK);
    assert_eq!(me_with_cookie(&a, &id).await, StatusCode::OK);
    let res = logout(&b, &browser).await;
    assert_eq!(res.status, StatusCode::SEE_OTHER, "{res:#?}");
    assert_eq!(me_with_cookie(&b, &id).await, StatusCode::UNAUTHORIZED);
    let deadline = Instant::now() + Duration::from_millis(500);
    while me_with_cookie(&a, &id).await != StatusCode::UNAUTHORIZED {
        assert!(
            Instant::now() < deadline,
            "A still serves a session signed out on B"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_local_cache_every_request_reads_redis() {
    let server = RedisServer::start();
    let store = RedisStore::builder(server.url())
        .with_local_cache(0)
        .connect()
        .await
        .unwrap();
    let a = instance(store).await;
    let browser = Browser::new();
    a.login(&browser, "/protected").await;
    let id = browser.cookie(&a.base, "oauth2_session").unwrap();
    let before = gets(&server);
    for _ in 0..20 {
        assert_eq!(me_with_cookie(&a, &id).await, StatusCode::OK);
    }
    assert_eq!(gets(&server) - before, 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_idle_timeout_is_enforced_by_redis() {
    let server = RedisServer::start();
    let app = instance_with(store(&server).await, |b| {
        b.with_idle_timeout(Duration::from_secs(2))
    })
    .await;
    let browser = Browser::new();
    app.login(&browser, "/protected").await;
    assert_eq!(
        browser.get(&app.url("/protected")).await.status,
        StatusCode::OK
    );
    let keys: Vec<String> = server.cmd(&["KEYS", &format!("{PREFIX}session:*")]);
    assert_eq!(keys.len(), 1);
    let expires: u64 = server.cmd(&["EXPIRETIME", &keys[0]]);
    assert!(expires <= now() + 2, "the TTL follows the idle timeout");

    let started = Instant::now();
    while server.cmd::<u64>(&["EXISTS", &keys[0]]) == 1 {
        assert!(started.elapsed() < Duration::from_secs(6));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let res = browser.get(&app.url("/protected")).await;
    assert_eq!(res.status, StatusCode::SEE_OTHER, "back to the provider");
    assert!(res
        .set_cookies()
        .iter()
        .any(|c| c.starts_with("oauth2_session=;")));
}

// ---- Refresh across instances --------------------------------------------------------

/// Two app instances on one Redis and one provider whose access tokens live `lifetime`;
/// instance A answers the callback.
struct Pair {
    provider: tower_oauth2_login_dev_provider::DevProvider,
    a: String,
    b: String,
    servers: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for Pair {
    fn drop(&mut self) {
        for s in &self.servers {
            s.abort();
        }
        self.provider.shutdown();
    }
}

async fn pair(server: &RedisServer, lifetime: Duration) -> Pair {
    pair_with(server, lifetime, |p| p, Duration::from_secs(2)).await
}

/// [`pair`], with the provider changed by `provider` and the layers' HTTP timeout (the
/// refresh lock lives this plus 5 s).
async fn pair_with(
    server: &RedisServer,
    lifetime: Duration,
    provider: impl FnOnce(
        tower_oauth2_login_dev_provider::DevProviderBuilder,
    ) -> tower_oauth2_login_dev_provider::DevProviderBuilder,
    http_timeout: Duration,
) -> Pair {
    use tower_oauth2_login_dev_provider::{DevClient, DevProvider};
    let la = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let lb = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let a = format!("http://{}", la.local_addr().unwrap());
    let b = format!("http://{}", lb.local_addr().unwrap());
    let redirect = format!("{a}/auth/callback");
    let provider = provider(
        DevProvider::builder()
            .with_client(DevClient::confidential(
                app::CLIENT_ID,
                app::CLIENT_SECRET,
                &redirect,
            ))
            .with_auto_login("alice")
            .with_access_token_lifetime(lifetime),
    )
    .start()
    .await
    .unwrap();
    let mut servers = Vec::new();
    for listener in [la, lb] {
        let layer = tower_oauth2_login::LoginLayer::builder()
            .with_client_id(app::CLIENT_ID)
            .with_client_secret(app::CLIENT_SECRET)
            .with_authorization_endpoint(provider.authorization_endpoint())
            .with_token_endpoint(provider.token_endpoint())
            .with_userinfo_endpoint(provider.userinfo_endpoint())
            .with_redirect_url(&redirect)
            .with_cookie_key([7u8; 64])
            .with_store(store(server).await)
            .with_http_timeout(http_timeout)
            .build()
            .unwrap();
        let router = app::routes().layer(layer);
        servers.push(tokio::spawn(async move {
            axum::serve(listener, router).await.unwrap();
        }));
    }
    Pair {
        provider,
        a,
        b,
        servers,
    }
}

/// Signs in on A; returns the browser (its cookie goes to both: cookies are per host).
async fn sign_in_on_a(pair: &Pair) -> Browser {
    let browser = Browser::new();
    let start = browser.get(&format!("{}/protected", pair.a)).await;
    let hops = browser.follow(start.location().unwrap()).await;
    assert_eq!(hops.last().unwrap().status, StatusCode::OK, "{hops:#?}");
    browser
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_requests_split_across_two_instances_after_expiry_make_one_refresh() {
    let server = RedisServer::start();
    let pair = pair(&server, Duration::from_secs(3)).await;
    let browser = sign_in_on_a(&pair).await;
    tokio::time::sleep(Duration::from_millis(3100)).await;

    let requests = (0..50).map(|i| {
        let browser = browser.clone();
        let url = format!("{}/token-hash", if i % 2 == 0 { &pair.a } else { &pair.b });
        async move { browser.get_json(&url).await }
    });
    let answers = futures_util::future::join_all(requests).await;
    let fresh = app::token_hash(pair.provider.issued_access_tokens().last().unwrap());
    for answer in &answers {
        assert_eq!(answer.status, StatusCode::OK, "{answer:#?}");
        assert_eq!(
            answer.body, fresh,
            "every request, on either instance, got the new token"
        );
    }
    assert_eq!(
        pair.provider.refresh_requests(),
        1,
        "one refresh between the two instances"
    );
    println!(
        "refresh calls for 50 requests split across two instances: {}",
        pair.provider.refresh_requests()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refresh_abandoned_on_one_instance_is_finished_for_the_other() {
    let server = RedisServer::start();
    // Tokens that outlive the provider's slow answer; a provider that revokes the grant
    // of a reused refresh token; the refresh lock lives 15 s.
    let pair = pair_with(
        &server,
        Duration::from_secs(6),
        |p| p.with_refresh_token_reuse_detection(),
        Duration::from_secs(10),
    )
    .await;
    let browser = sign_in_on_a(&pair).await;
    tokio::time::sleep(Duration::from_millis(6100)).await;
    pair.provider
        .set_token_behavior(tower_oauth2_login_dev_provider::TokenBehavior::SlowAnswer(
            Duration::from_secs(3),
        ));
    // Instance A starts the refresh (the provider rotates at once, answers 3 s later);
    // the browser gives up after a second.
    let gave_up = browser
        .http
        .get(format!("{}/token-hash", pair.a))
        .header(reqwest::header::ACCEPT, "application/json")
        .timeout(Duration::from_secs(1))
        .send()
        .await;
    assert!(
        gave_up.as_ref().is_err_and(|e| e.is_timeout()),
        "{gave_up:?}"
    );
    // Instance B waits on A's refresh lock, and gets what A stored.
    let res = browser.get_json(&format!("{}/token-hash", pair.b)).await;
    assert_eq!(res.status, StatusCode::OK, "{res:#?}");
    assert_eq!(
        res.body,
        app::token_hash(pair.provider.issued_access_tokens().last().unwrap())
    );
    assert_eq!(pair.provider.refresh_requests(), 1, "exactly one refresh");
    assert_eq!(pair.provider.refresh_token_reuses(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashed_lock_holder_blocks_the_session_for_the_lock_lifetime_only() {
    use sha2::Digest;
    let server = RedisServer::start();
    let pair = pair(&server, Duration::from_secs(3)).await;
    let browser = sign_in_on_a(&pair).await;
    // An instance took the refresh lock and died: the lock is left for its lifetime.
    let id = browser.cookie(&pair.a, "oauth2_session").unwrap();
    let hex: String = sha2::Sha256::digest(id.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let _: Option<String> = server.cmd(&[
        "SET",
        &format!("{PREFIX}refresh:{hex}"),
        "dead-holder",
        "PX",
        "2500",
    ]);
    tokio::time::sleep(Duration::from_millis(3100)).await;
    // The lock is gone by now or soon; the request waits for it and then refreshes.
    let started = Instant::now();
    let res = browser.get_json(&format!("{}/me", pair.b)).await;
    assert_eq!(res.status, StatusCode::OK, "{res:#?}");
    assert_eq!(pair.provider.refresh_requests(), 1);
    assert!(started.elapsed() < Duration::from_secs(10));

    // A lock that outlives the wait: the request fails closed (503), and the session
    // lives on for the next one.
    tokio::time::sleep(Duration::from_millis(3100)).await;
    let _: Option<String> = server.cmd(&[
        "SET",
        &format!("{PREFIX}refresh:{hex}"),
        "dead-holder",
        "PX",
        "60000",
    ]);
    let res = browser.get_json(&format!("{}/me", pair.a)).await;
    assert_eq!(res.status, StatusCode::SERVICE_UNAVAILABLE, "{res:#?}");
    let _: i64 = server.cmd(&["DEL", &format!("{PREFIX}refresh:{hex}")]);
    let res = browser.get_json(&format!("{}/me", pair.a)).await;
    assert_eq!(res.status, StatusCode::OK);
    assert_eq!(pair.provider.refresh_requests(), 2);
}

// ---- Back-channel logout tokens are used once, across instances -----------------------

#[tokio::test]
async fn once_only_keys_are_shared_by_every_store_and_expire_in_redis() {
    use tower_oauth2_login::OnceKey;
    let server = RedisServer::start();
    let (one, two) = (store(&server).await, store(&server).await);
    let k = OnceKey::from_bytes([3u8; 32]);
    assert!(!one.is_remembered(&k).await.unwrap());
    assert!(one
        .remember_once(&k, Duration::from_secs(120))
        .await
        .unwrap());
    assert!(
        two.is_remembered(&k).await.unwrap(),
        "seen by another store"
    );
    assert!(!two
        .remember_once(&k, Duration::from_secs(120))
        .await
        .unwrap());
    let name = format!("{PREFIX}once:{}", k.to_hex());
    let ttl: i64 = server.cmd(&["TTL", &name]);
    assert!((100..=120).contains(&ttl), "{ttl}");
    // Redis forgets it by itself.
    let short = OnceKey::from_bytes([4u8; 32]);
    assert!(one
        .remember_once(&short, Duration::from_secs(1))
        .await
        .unwrap());
    let started = Instant::now();
    while two.is_remembered(&short).await.unwrap() {
        assert!(started.elapsed() < Duration::from_secs(6), "still there");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(one
        .remember_once(&short, Duration::from_secs(1))
        .await
        .unwrap());
}

async fn post_logout_token(base: &str, token: &str) -> StatusCode {
    reqwest::Client::new()
        .post(format!("{base}/auth/backchannel-logout"))
        .form(&[("logout_token", token)])
        .send()
        .await
        .unwrap()
        .status()
}

/// Two instances of one app (one provider, A answers the callback), OpenID Connect by
/// discovery, sessions in one Redis.
async fn oidc_pair(server: &RedisServer) -> Pair {
    use tower_oauth2_login_dev_provider::{DevClient, DevProvider};
    let la = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let lb = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let a = format!("http://{}", la.local_addr().unwrap());
    let b = format!("http://{}", lb.local_addr().unwrap());
    let redirect = format!("{a}/auth/callback");
    let provider = DevProvider::builder()
        .with_client(DevClient::confidential(
            app::CLIENT_ID,
            app::CLIENT_SECRET,
            &redirect,
        ))
        .with_auto_login("alice")
        .start()
        .await
        .unwrap();
    let mut servers = Vec::new();
    for listener in [la, lb] {
        let layer = tower_oauth2_login::LoginLayer::builder()
            .discover(provider.issuer())
            .await
            .unwrap()
            .with_client_id(app::CLIENT_ID)
            .with_client_secret(app::CLIENT_SECRET)
            .with_redirect_url(&redirect)
            .with_cookie_key([7u8; 64])
            .with_store(store(server).await)
            .build()
            .unwrap();
        let router = app::routes().layer(layer);
        servers.push(tokio::spawn(async move {
            axum::serve(listener, router).await.unwrap();
        }));
    }
    Pair {
        provider,
        a,
        b,
        servers,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_logout_token_used_on_one_instance_is_refused_on_another() {
    use tower_oauth2_login_dev_provider::LogoutTokenMisbehavior;
    let server = RedisServer::start();
    let pair = oidc_pair(&server).await;
    let me = |browser: &Browser, base: &str| {
        let (browser, url) = (browser.clone(), format!("{base}/me"));
        async move { browser.get_json(&url).await.status }
    };
    let first = sign_in_on_a(&pair).await;
    // About the user, without sid: it names the later sessions of alice too.
    let token = pair
        .provider
        .mint_logout_token(
            app::CLIENT_ID,
            Some("alice"),
            None,
            LogoutTokenMisbehavior::Normal,
        )
        .unwrap();
    assert_eq!(post_logout_token(&pair.a, &token).await, StatusCode::OK);
    assert_eq!(me(&first, &pair.b).await, StatusCode::UNAUTHORIZED);

    let second = sign_in_on_a(&pair).await;
    assert_eq!(me(&second, &pair.b).await, StatusCode::OK);
    // The same token at the other instance: refused, and the new session lives.
    assert_eq!(
        post_logout_token(&pair.b, &token).await,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(me(&second, &pair.a).await, StatusCode::OK);
    assert_eq!(me(&second, &pair.b).await, StatusCode::OK);
    // One key, hashed (no jti in it), for as long as the token is accepted: iat + 10 min
    // + the leeway, or its exp (2 min) + the leeway, whichever is first; plus a minute.
    let keys: Vec<String> = server.cmd(&["KEYS", &format!("{PREFIX}once:*")]);
    assert_eq!(keys.len(), 1, "{keys:?}");
    let ttl: i64 = server.cmd(&["TTL", &keys[0]]);
    assert!((100..=30 * 60).contains(&ttl), "{ttl}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_jti_from_two_issuers_is_two_tokens() {
    // Two apps, each with its own provider (two issuers), sharing one Redis and prefix.
    // The embedded providers sign with the same embedded keys, so this test can sign a
    // token for either.
    let server = RedisServer::start();
    let mut apps = Vec::new();
    for _ in 0..2 {
        let store = store(&server).await;
        apps.push(
            app::start_with(Options {
                discover: true,
                layer: Box::new(move |b| b.with_store(store)),
                ..Default::default()
            })
            .await,
        );
    }
    let token_of = |app: &TestApp| {
        let now = now();
        let serde_json::Value::Object(claims) = serde_json::json!({
            "iss": app.provider.issuer(), "aud": app::CLIENT_ID, "iat": now,
            "exp": now + 120, "jti": "the-same-jti", "sub": "alice",
            "events": {"http://schemas.openid.net/event/backchannel-logout": {}},
        }) else {
            unreachable!()
        };
        use tower_oauth2_login_dev_provider::keys::{key_ring, sign_jwt, Signing};
        let ring = key_ring().unwrap();
        let key = ring.rotation_key(0).unwrap();
        sign_jwt(None, &claims, Signing::Rs256, key, ring, b"").unwrap()
    };
    let (a, b) = (&apps[0], &apps[1]);
    assert_eq!(
        post_logout_token(&a.base, &token_of(a)).await,
        StatusCode::OK
    );
    assert_eq!(
        post_logout_token(&b.base, &token_of(b)).await,
        StatusCode::OK,
        "another issuer's jti is another token"
    );
    assert_eq!(
        post_logout_token(&a.base, &token_of(a)).await,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        post_logout_token(&b.base, &token_of(b)).await,
        StatusCode::BAD_REQUEST
    );
    let keys: Vec<String> = server.cmd(&["KEYS", &format!("{PREFIX}once:*")]);
    assert_eq!(keys.len(), 2, "{keys:?}");
}

// ---- Sealed tokens at rest ------------------------------------------------------------------

/// The Redis key of the session of the cookie value `id`.
fn record_of(id: &str) -> String {
    use sha2::Digest;
    let hex: String = sha2::Sha256::digest(id.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("{PREFIX}session:{hex}")
}

/// An OpenID Connect app (so that there is an ID token to keep) on `server`.
async fn oidc_instance(server: &RedisServer) -> TestApp {
    let store = store(server).await;
    app::start_with(Options {
        discover: true,
        layer: Box::new(move |b| b.with_store(store)),
        ..Default::default()
    })
    .await
}

/// Signs a new browser in on `app`; returns it and its session id.
async fn signed_in(app: &TestApp) -> (Browser, String) {
    let browser = Browser::new();
    let res = app.login(&browser, "/protected").await;
    assert_eq!(res.status, StatusCode::SEE_OTHER, "{res:#?}");
    let id = browser
        .cookie(&app.base, "oauth2_session")
        .expect("a session");
    assert_eq!(
        browser.get_json(&app.url("/me")).await.status,
        StatusCode::OK
    );
    (browser, id)
}

/// `url` as `browser` sees it once the change just made in Redis has reached the app's
/// local cache (an invalidation message: well under a second).
async fn after_invalidation(browser: &Browser, url: &str) -> app::Seen {
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let res = browser.get_json(url).await;
        if res.status != StatusCode::OK || Instant::now() > deadline {
            return res;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn a_redis_dump_holds_no_token() {
    let server = RedisServer::start();
    let app = oidc_instance(&server).await;
    let (browser, id) = signed_in(&app).await;
    let raw: String = server.cmd(&["GET", &record_of(&id)]);
    let tokens: Vec<String> = app
        .provider
        .issued_access_tokens()
        .into_iter()
        .chain(app.provider.issued_refresh_tokens())
        .collect();
    assert!(
        tokens.len() >= 2,
        "the provider issued an access and a refresh token"
    );
    for token in &tokens {
        assert!(
            !raw.contains(token.as_str()),
            "a token in the clear in {raw}"
        );
    }
    assert!(!raw.contains("eyJ"), "no JWT (the ID token) in {raw}");
    assert!(!raw.contains(&id), "nor the session id");
    // What expiry and back-channel logout need is readable.
    let record: serde_json::Value = serde_json::from_str(&raw).unwrap();
    assert_eq!(record["subject"], "alice");
    assert!(record["expires_at"].is_u64());
    // Every key the store wrote: none holds a token.
    let keys: Vec<String> = server.cmd(&["KEYS", "*"]);
    for key in keys {
        if server.cmd::<String>(&["TYPE", &key]) == "string" {
            let value: String = server.cmd(&["GET", &key]);
            for token in &tokens {
                assert!(!value.contains(token.as_str()), "{key}");
            }
        }
    }
    // And the handler still gets its token, opened with the cookie.
    let hash = browser.get_json(&app.url("/token-hash")).await;
    assert_eq!(hash.status, StatusCode::OK);
    assert_eq!(
        hash.body,
        app::token_hash(app.provider.issued_access_tokens().last().unwrap())
    );
}

#[tokio::test]
async fn a_record_moved_under_another_session_is_refused() {
    let server = RedisServer::start();
    let app = oidc_instance(&server).await;
    let (a, a_id) = signed_in(&app).await;
    let (b, b_id) = signed_in(&app).await;
    // Someone with write access to Redis gives B the record of A (the same user here, so
    // only the tokens differ: B would act with A's).
    let a_record: String = server.cmd(&["GET", &record_of(&a_id)]);
    let _: () = server.cmd(&["SET", &record_of(&b_id), &a_record, "KEEPTTL"]);
    let res = after_invalidation(&b, &app.url("/token-hash")).await;
    assert_eq!(res.status, StatusCode::UNAUTHORIZED, "{res:#?}");
    assert!(
        res.set_cookies()
            .iter()
            .any(|c| c.starts_with("oauth2_session=;")),
        "the stale cookie is cleared"
    );
    // A's own session is untouched.
    assert_eq!(a.get_json(&app.url("/me")).await.status, StatusCode::OK);
}

#[tokio::test]
async fn an_edited_record_is_no_session() {
    let server = RedisServer::start();
    let app = oidc_instance(&server).await;
    let (browser, id) = signed_in(&app).await;
    let key = record_of(&id);
    let original: String = server.cmd(&["GET", &key]);
    let edit = |f: &dyn Fn(&mut serde_json::Value)| {
        let mut record: serde_json::Value = serde_json::from_str(&original).unwrap();
        f(&mut record);
        let _: () = server.cmd(&["SET", &key, &record.to_string(), "KEEPTTL"]);
    };
    // Who the session is, rewritten in the store.
    edit(&|r| r["subject"] = "mallory".into());
    let res = after_invalidation(&browser, &app.url("/me")).await;
    assert_eq!(res.status, StatusCode::UNAUTHORIZED, "{}", res.body);
    assert!(!res.body.contains("mallory"));

    let (browser, id) = signed_in(&app).await;
    let key = record_of(&id);
    let original: String = server.cmd(&["GET", &key]);
    let mut record: serde_json::Value = serde_json::from_str(&original).unwrap();
    // One bit of the sealed tokens flipped (a character of the base64 text changed).
    let sealed = record["sealed"].as_str().expect("sealed tokens").to_owned();
    let mid = sealed.len() / 2;
    let flipped = if &sealed[mid..=mid] == "A" { "B" } else { "A" };
    record["sealed"] = format!("{}{flipped}{}", &sealed[..mid], &sealed[mid + 1..]).into();
    let _: () = server.cmd(&["SET", &key, &record.to_string(), "KEEPTTL"]);
    let res = after_invalidation(&browser, &app.url("/me")).await;
    assert_eq!(res.status, StatusCode::UNAUTHORIZED, "{}", res.body);
    // Garbage there is no session either, and no 500 (the cookie sent again by hand: the
    // browser was told to forget it).
    let _: () = server.cmd(&["SET", &key, "{\"subject\":1}", "KEEPTTL"]);
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(me_with_cookie(&app, &id).await, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn the_local_cache_keeps_sessions_opened() {
    use tower_oauth2_login::bench;
    let server = RedisServer::start();
    let store = store(&server).await;
    let id = bench::new_session_id();
    let k = bench::session_key(&id);
    let made = bench::session(&id, fields("alice", None, 600, 3600)).unwrap();
    store.save(&k, Arc::new(made)).await.unwrap();
    // A miss: what Redis gave, sealed.
    let read = store.load(&k).await.unwrap().unwrap();
    assert_eq!(bench::access_token(&read), None);
    assert!(!bench::open_session(&read, &bench::new_session_id()));
    assert!(bench::open_session(&read, &id));
    // The cached copy is that very session, opened once: the hot path does no crypto.
    let cached = store.load_now(&k).unwrap().unwrap();
    assert!(Arc::ptr_eq(&cached, &read));
    assert_eq!(bench::access_token(&cached), Some("access-token-secret"));
}
