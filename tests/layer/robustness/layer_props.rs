//! Properties of the whole layer, in process with the embedded provider: arbitrary callback
//! requests and session cookies never open a session, never reach the token endpoint, and
//! never leave anything but a 4xx (callback) or the anonymous answer.

use std::convert::Infallible;
use std::sync::OnceLock;

use bytes::Bytes;
use http::{header, Request, Response, StatusCode};
use http_body_util::Full;
use proptest::prelude::*;
use tower::ServiceExt;
use tower_oauth2_login::{AuthUser, LoginLayer};
use tower_oauth2_login_dev_provider::{DevClient, DevProvider};

type Service =
    tower::util::BoxCloneSyncService<Request<Full<Bytes>>, Response<Full<Bytes>>, Infallible>;

struct World {
    rt: tokio::runtime::Runtime,
    provider: DevProvider,
    service: Service,
}

fn world() -> &'static World {
    static WORLD: OnceLock<World> = OnceLock::new();
    WORLD.get_or_init(|| {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let redirect = "http://127.0.0.1:3999/auth/callback";
        let provider = rt.block_on(async {
            DevProvider::builder()
                .with_client(DevClient::confidential("c", "s", redirect))
                .with_auto_login("alice")
                .start()
                .await
                .unwrap()
        });
        let layer = rt.block_on(async {
            LoginLayer::builder()
                .with_client_id("c")
                .with_client_secret("s")
                .with_authorization_endpoint(provider.authorization_endpoint())
                .with_token_endpoint(provider.token_endpoint())
                .with_userinfo_endpoint(provider.userinfo_endpoint())
                .with_issuer(provider.issuer())
                .with_redirect_url(redirect)
                .with_cookie_key([3u8; 64])
                .build()
                .unwrap()
        });
        let service = tower::ServiceBuilder::new()
            .layer(layer)
            .service(tower::service_fn(|req: Request<Full<Bytes>>| async move {
                let who = req
                    .extensions()
                    .get::<AuthUser>()
                    .map(|u| u.subject().to_string());
                Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(format!(
                    "user={}",
                    who.unwrap_or_default()
                )))))
            }));
        World {
            rt,
            provider,
            service: tower::util::BoxCloneSyncService::new(service),
        }
    })
}

fn call(uri: &str, cookie: &str) -> Option<Response<Full<Bytes>>> {
    let w = world();
    let mut req = Request::get(uri).header(header::ACCEPT, "application/json");
    if let Ok(v) = http::HeaderValue::from_str(cookie) {
        req = req.header(header::COOKIE, v);
    }
    let req = req.body(Full::new(Bytes::new())).ok()?;
    Some(w.rt.block_on(w.service.clone().oneshot(req)).unwrap())
}

fn cookie_pairs() -> impl Strategy<Value = String> {
    prop::collection::vec(
        (
            prop_oneof![
                Just("oauth2_session".to_string()),
                "oauth2_pending_[A-Za-z0-9_-]{11}",
                Just("oauth2_logins".to_string()),
                "[a-z]{1,5}",
            ],
            prop_oneof![
                "[A-Za-z0-9_-]{43}",
                "[A-Za-z0-9+/=.|_-]{0,300}",
                "[ -~]{0,30}"
            ],
        ),
        0..6,
    )
    .prop_map(|pairs| {
        pairs
            .iter()
            .map(|(n, v)| format!("{n}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_callbacks_open_nothing(
        query in prop_oneof![
            "[a-z_]{1,6}=[A-Za-z0-9%+._-]{0,60}(&[a-z_]{1,6}=[A-Za-z0-9%+._-]{0,60}){0,5}",
            "code=[a-z0-9]{1,20}&state=[A-Za-z0-9_-]{43}(&iss=[a-z:/.%0-9]{0,30})?",
        ],
        cookie in cookie_pairs(),
    ) {
        let before = world().provider.token_requests();
        let Some(res) = call(&format!("/auth/callback?{query}"), &cookie) else { return Ok(()) };
        prop_assert!(res.status().is_client_error(), "{}", res.status());
        for set in res.headers().get_all(header::SET_COOKIE) {
            let set = set.to_str().unwrap();
            prop_assert!(!set.starts_with("oauth2_session=") || set.starts_with("oauth2_session=;"), "{}", set);
        }
        prop_assert!(res.headers().get(header::LOCATION).is_none());
        prop_assert_eq!(world().provider.token_requests(), before, "the code was sent");
    }

    #[test]
    fn arbitrary_cookies_are_anonymous(cookie in cookie_pairs(), path in "/[a-z]{0,8}") {
        let Some(res) = call(&path, &cookie) else { return Ok(()) };
        // An API call without a valid session: 401, never the handler with a user.
        prop_assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    }
}
