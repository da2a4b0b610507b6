//! The authenticated request through `LoginService` (memory store) beside the same handler
//! with no layer, and the anonymous request that gets redirected to the provider.
//!
//! `cargo bench --bench hot_path`. In-process, no network: the services are called
//! directly and their futures complete without a runtime. `axum_router::*` do the same
//! through an axum `Router` with one route, as perf/src/bin/loadtest.rs serves it (axum clones
//! and boxes each route's service per request, the layer's included).

use std::convert::Infallible;

use bytes::Bytes;
use futures_util::FutureExt;
use http::{header, Request, Response, StatusCode};
use http_body_util::Full;
use tower::{Service, ServiceExt};
use tower_oauth2_login::{AuthUser, LoginLayer};
use tower_oauth2_login_dev_provider::{DevClient, DevProvider};

fn main() {
    divan::main();
}

type Svc =
    tower::util::BoxCloneSyncService<Request<Full<Bytes>>, Response<Full<Bytes>>, Infallible>;

async fn handler(req: Request<Full<Bytes>>) -> Result<Response<Full<Bytes>>, Infallible> {
    let who = req
        .extensions()
        .get::<AuthUser>()
        .map(|u| u.subject().len())
        .unwrap_or(0);
    Ok(Response::new(Full::new(Bytes::from_static(if who > 0 {
        b"hello user"
    } else {
        b"hello"
    }))))
}

struct Fixture {
    bare: Svc,
    layered: Svc,
    layer: LoginLayer,
    session_cookie: String,
}

/// Signs in once against the embedded provider, in process, to get a real session cookie.
fn fixture() -> Fixture {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let redirect = "http://app.localhost/auth/callback";
        let provider = DevProvider::builder()
            .with_client(DevClient::public("bench", redirect))
            .with_auto_login("bench-user")
            .start()
            .await
            .unwrap();
        let layer = LoginLayer::builder()
            .with_client_id("bench")
            .with_authorization_endpoint(provider.authorization_endpoint())
            .with_token_endpoint(provider.token_endpoint())
            .with_userinfo_endpoint(provider.userinfo_endpoint())
            .with_redirect_url(redirect)
            .with_cookie_key([3u8; 64])
            .build()
            .unwrap();
        let layer_for_axum = layer.clone();
        let bare: Svc = tower::util::BoxCloneSyncService::new(tower::service_fn(handler));
        let layered: Svc = tower::util::BoxCloneSyncService::new(
            tower::ServiceBuilder::new()
                .layer(layer)
                .service(tower::service_fn(handler)),
        );
        let layer = layer_for_axum;

        let get = |path: &str, cookie: Option<&str>| {
            let mut b = Request::get(path).header(header::ACCEPT, "text/html");
            if let Some(c) = cookie {
                b = b.header(header::COOKIE, c);
            }
            b.body(Full::new(Bytes::new())).unwrap()
        };
        let start = layered.clone().oneshot(get("/", None)).await.unwrap();
        let pending = start.headers()[header::SET_COOKIE]
            .to_str()
            .unwrap()
            .split(';')
            .next()
            .unwrap()
            .to_string();
        let auth = start.headers()[header::LOCATION]
            .to_str()
            .unwrap()
            .to_string();
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        let back = http.get(&auth).send().await.unwrap();
        let callback = back.headers()[header::LOCATION]
            .to_str()
            .unwrap()
            .to_string();
        let path = callback
            .strip_prefix("http://app.localhost")
            .unwrap()
            .to_string();
        let done = layered
            .clone()
            .oneshot(get(&path, Some(&pending)))
            .await
            .unwrap();
        let session_cookie = done
            .headers()
            .get_all(header::SET_COOKIE)
            .iter()
            .map(|v| v.to_str().unwrap())
            .find(|c| c.starts_with("oauth2_session="))
            .unwrap()
            .split(';')
            .next()
            .unwrap()
            .to_string();
        provider.shutdown();
        Fixture {
            bare,
            layered,
            layer,
            session_cookie,
        }
    })
}

fn request(cookie: Option<&str>) -> Request<Full<Bytes>> {
    let mut b = Request::get("/dashboard?tab=1")
        .header(header::ACCEPT, "text/html,application/xhtml+xml")
        .header(header::USER_AGENT, "bench");
    if let Some(c) = cookie {
        b = b.header(header::COOKIE, format!("_ga=GA1.1.1; theme=dark; {c}"));
    }
    b.body(Full::new(Bytes::new())).unwrap()
}

fn call(svc: &mut Svc, req: Request<Full<Bytes>>) -> Response<Full<Bytes>> {
    svc.call(req)
        .now_or_never()
        .expect("completes without waiting")
        .unwrap()
}

static FIXTURE: std::sync::LazyLock<Fixture> = std::sync::LazyLock::new(fixture);

#[divan::bench]
fn bare_handler(bencher: divan::Bencher) {
    let mut svc = FIXTURE.bare.clone();
    let cookie = FIXTURE.session_cookie.clone();
    bencher
        .with_inputs(|| request(Some(&cookie)))
        .bench_local_values(|req| {
            let res = call(&mut svc, req);
            assert_eq!(res.status(), StatusCode::OK);
            res
        });
}

#[divan::bench]
fn authenticated_through_layer(bencher: divan::Bencher) {
    let mut svc = FIXTURE.layered.clone();
    let cookie = FIXTURE.session_cookie.clone();
    bencher
        .with_inputs(|| request(Some(&cookie)))
        .bench_local_values(|req| {
            let res = call(&mut svc, req);
            assert_eq!(res.status(), StatusCode::OK);
            res
        });
}

#[divan::bench]
fn anonymous_redirected_to_provider(bencher: divan::Bencher) {
    let mut svc = FIXTURE.layered.clone();
    bencher
        .with_inputs(|| request(None))
        .bench_local_values(|req| {
            let res = call(&mut svc, req);
            assert_eq!(res.status(), StatusCode::SEE_OTHER);
            res
        });
}

/// The same two through axum, as perf/src/bin/loadtest.rs serves them: a `Router` with one
/// route, bare and with the layer on it.
mod axum_router {
    use super::*;

    async fn hello() -> &'static str {
        "hello"
    }

    fn call(router: &mut axum::Router, req: Request<Full<Bytes>>) -> StatusCode {
        router
            .call(req)
            .now_or_never()
            .expect("completes without waiting")
            .unwrap()
            .status()
    }

    #[divan::bench]
    fn bare(bencher: divan::Bencher) {
        let mut router = axum::Router::new().route("/dashboard", axum::routing::get(hello));
        let cookie = FIXTURE.session_cookie.clone();
        bencher
            .with_inputs(|| request(Some(&cookie)))
            .bench_local_values(|req| assert_eq!(call(&mut router, req), StatusCode::OK));
    }

    #[divan::bench]
    fn authenticated_through_layer(bencher: divan::Bencher) {
        let mut router = axum::Router::new()
            .route("/dashboard", axum::routing::get(hello))
            .layer(FIXTURE.layer.clone());
        let cookie = FIXTURE.session_cookie.clone();
        bencher
            .with_inputs(|| request(Some(&cookie)))
            .bench_local_values(|req| assert_eq!(call(&mut router, req), StatusCode::OK));
    }
}
