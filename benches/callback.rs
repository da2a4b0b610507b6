//! The callback's own CPU cost, with the provider's answer recorded: everything the layer
//! does at the callback but the code exchange's round trip (callback parameters, opening
//! the sealed pending-login cookie, state and issuer checks, token checks, RS256 ID token
//! verification, session creation in the memory store, cookies), and two of its pieces.
//!
//! `cargo bench --bench callback`. The fixture signs in once against the embedded provider
//! (OpenID Connect, RS256, no userinfo endpoint) and records the token endpoint's answer;
//! then the provider is shut down, and every measured call completes without waiting
//! (`now_or_never`): no network is involved.

use std::sync::LazyLock;

use bytes::Bytes;
use futures_util::FutureExt;
use http::{header, HeaderMap, HeaderValue, Request, Response, StatusCode};
use http_body_util::Full;
use tower::ServiceExt;
use tower_oauth2_login::bench;
use tower_oauth2_login::LoginLayer;
use tower_oauth2_login_dev_provider::{DevClient, DevProvider};

fn main() {
    divan::main();
}

struct Fixture {
    layer: LoginLayer,
    /// The callback request's headers: the pending-login cookie.
    headers: HeaderMap,
    /// The same, after 16,000 made-up pending-cookie names, a hostile request whose cost must stay bounded.
    flooded: HeaderMap,
    /// The callback request's query: code, state, iss.
    query: String,
    token_response: Bytes,
    id_token: String,
    nonce: String,
    pending_name: String,
    pending_sealed: String,
}

const REDIRECT: &str = "http://app.localhost/auth/callback";

fn fixture() -> Fixture {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let provider = DevProvider::builder()
            .with_client(DevClient::public("bench", REDIRECT))
            .with_auto_login("bench-user")
            .start()
            .await
            .unwrap();
        let layer = LoginLayer::builder()
            .with_client_id("bench")
            .with_authorization_endpoint(provider.authorization_endpoint())
            .with_token_endpoint(provider.token_endpoint())
            .with_issuer(provider.issuer())
            .with_jwks_uri(provider.jwks_uri())
            .with_scopes(["openid", "profile", "email"])
            .with_redirect_url(REDIRECT)
            .with_cookie_key([3u8; 64])
            .build()
            .unwrap();

        // 1. The login starts: the pending cookie and the way to the provider.
        let svc = tower::ServiceBuilder::new()
            .layer(layer.clone())
            .service(tower::service_fn(|_req: Request<Full<Bytes>>| async {
                Ok::<_, std::convert::Infallible>(Response::new(Full::new(Bytes::new())))
            }));
        let start = svc
            .oneshot(
                Request::get("/")
                    .header(header::ACCEPT, "text/html")
                    .body(Full::new(Bytes::new()))
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(start.status(), StatusCode::SEE_OTHER);
        let pending = start.headers()[header::SET_COOKIE]
            .to_str()
            .unwrap()
            .split(';')
            .next()
            .unwrap()
            .to_string();
        let (pending_name, pending_sealed) = pending.split_once('=').unwrap();
        let authorize = start.headers()[header::LOCATION].to_str().unwrap();

        // 2. The provider answers (auto-login) with the code.
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        let back = http.get(authorize).send().await.unwrap();
        let callback = back.headers()[header::LOCATION].to_str().unwrap();
        let query = callback.split_once('?').unwrap().1.to_string();
        let code = url::form_urlencoded::parse(query.as_bytes())
            .find(|(n, _)| n == "code")
            .unwrap()
            .1
            .into_owned();

        // 3. The token endpoint's answer, recorded once: the code with the PKCE verifier
        // sealed in the pending cookie.
        let json = bench::open_pending_cookie(&layer, pending_name, pending_sealed).unwrap();
        let pending_login: serde_json::Value = serde_json::from_str(&json).unwrap();
        let verifier = pending_login["v"].as_str().unwrap();
        let nonce = pending_login["n"].as_str().unwrap().to_string();
        let token_response = http
            .post(provider.token_endpoint())
            .form(&[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("redirect_uri", REDIRECT),
                ("client_id", "bench"),
                ("code_verifier", verifier),
            ])
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        let id_token = serde_json::from_slice::<serde_json::Value>(&token_response).unwrap()
            ["id_token"]
            .as_str()
            .expect("an ID token")
            .to_string();

        let mut headers = HeaderMap::new();
        headers.insert(header::ACCEPT, HeaderValue::from_static("text/html"));
        headers.insert(header::COOKIE, HeaderValue::from_str(&pending).unwrap());

        // 4. Once with the provider up: the layer fetches and caches its keys (JWKS).
        let res =
            bench::callback_with_token_response(&layer, &headers, &query, token_response.clone())
                .await;
        assert_eq!(res.status(), StatusCode::SEE_OTHER, "{res:?}");
        provider.shutdown();

        // What one hostile request can carry: 16,000 made-up pending-cookie names before
        // the real one, a 384 KB header (under hyper's default limit of about 400 KB).
        let bogus: String = (0..BOGUS_PENDING_COOKIES)
            .map(|i| format!("oauth2_pending_{i:05}=x; "))
            .collect();
        let mut flooded = headers.clone();
        flooded.insert(
            header::COOKIE,
            HeaderValue::from_str(&format!("{bogus}{pending}")).unwrap(),
        );

        Fixture {
            layer,
            headers,
            flooded,
            query,
            token_response,
            id_token,
            nonce,
            pending_name: pending_name.to_string(),
            pending_sealed: pending_sealed.to_string(),
        }
    })
}

static FIXTURE: LazyLock<Fixture> = LazyLock::new(fixture);

/// The whole callback, provider's answer recorded: a new session and a `303` each time.
#[divan::bench]
fn callback_without_network(bencher: divan::Bencher) {
    let f = &*FIXTURE;
    bencher.bench_local(|| {
        let res = bench::callback_with_token_response(
            &f.layer,
            &f.headers,
            &f.query,
            f.token_response.clone(),
        )
        .now_or_never()
        .expect("no network: the callback completes without waiting");
        assert_eq!(res.status(), StatusCode::SEE_OTHER);
        assert!(res.headers()[header::LOCATION] == "/");
        res
    });
}

/// How many made-up pending cookies the flooded callback carries.
const BOGUS_PENDING_COOKIES: usize = 16_000;

/// The same callback, its `Cookie` header flooded with 16,000 made-up pending-cookie names:
/// the cost of one pass over a 384 KB header on top of the normal callback, and an answer
/// of the normal size (the session cookie and the answered pending cookie cleared).
#[divan::bench]
fn callback_with_16000_bogus_pending_cookies(bencher: divan::Bencher) {
    let f = &*FIXTURE;
    bencher.bench_local(|| {
        let res = bench::callback_with_token_response(
            &f.layer,
            &f.flooded,
            &f.query,
            f.token_response.clone(),
        )
        .now_or_never()
        .expect("no network: the callback completes without waiting");
        assert_eq!(res.status(), StatusCode::SEE_OTHER);
        assert!(res.headers().get_all(header::SET_COOKIE).iter().count() <= 3);
        res
    });
}

/// Its largest piece: the ID token's RS256 signature and claims.
#[divan::bench]
fn id_token_verification_rs256(bencher: divan::Bencher) {
    let f = &*FIXTURE;
    bencher.bench_local(|| {
        bench::verify_id_token(&f.layer, &f.id_token, &f.nonce)
            .now_or_never()
            .expect("keys cached")
            .unwrap()
    });
}

/// Opening the sealed pending-login cookie (AES-256-GCM).
#[divan::bench]
fn pending_cookie_opening(bencher: divan::Bencher) {
    let f = &*FIXTURE;
    bencher.bench_local(|| {
        bench::open_pending_cookie(&f.layer, &f.pending_name, &f.pending_sealed).unwrap()
    });
}
