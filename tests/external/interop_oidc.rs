//! Interop as an OpenID Connect relying party: the real `LoginLayer`, configured by
//! discovery, against panva's `oidc-provider` (ID tokens, userinfo, RP-initiated logout,
//! revocation).

use crate::support;

use std::time::Duration;

use reqwest::{Method, StatusCode};
use support::app::{param, routes, Browser};
use support::oidc_provider::{
    complete_login_with, complete_logout_with, provider_http_client, OidcProvider,
    OidcProviderOptions, CONFIDENTIAL_CLIENT_ID, CONFIDENTIAL_CLIENT_SECRET, PUBLIC_CLIENT_ID,
};
use tower_oauth2_login::LoginLayer;

struct Interop {
    base: String,
    provider: OidcProvider,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for Interop {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl Interop {
    fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }
}

async fn start(public: bool) -> Interop {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let provider = OidcProvider::start_with(
        OidcProviderOptions::new(&[format!("{base}/auth/callback")])
            .post_logout_redirect_uris(&[format!("{base}/auth/logout-callback")]),
    )
    .await;
    let builder = LoginLayer::builder()
        .with_redirect_url(format!("{base}/auth/callback"))
        .with_scopes(["openid", "profile", "email"])
        .with_logout_path("/logout")
        .with_post_logout_redirect("/logged-out")
        .with_public_path("/")
        .with_public_path("/logged-out");
    let builder = if public {
        builder.with_client_id(PUBLIC_CLIENT_ID)
    } else {
        builder
            .with_client_id(CONFIDENTIAL_CLIENT_ID)
            .with_client_secret(CONFIDENTIAL_CLIENT_SECRET)
    };
    let layer = builder
        .discover(provider.issuer())
        .await
        .expect("discovery")
        .build()
        .unwrap();
    let app = routes().layer(layer);
    let server = tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    Interop {
        base,
        provider,
        server,
    }
}

async fn sign_in(it: &Interop, browser: &Browser, provider_browser: &reqwest::Client) {
    let start = browser.get(&it.url("/protected?via=discovery")).await;
    assert_eq!(start.status, StatusCode::SEE_OTHER);
    let auth = start.location().unwrap().to_string();
    assert!(
        param(&auth, "nonce").is_some_and(|n| n.len() >= 43),
        "{auth}"
    );
    assert!(param(&auth, "scope")
        .unwrap()
        .split(' ')
        .any(|s| s == "openid"));
    let callback = complete_login_with(provider_browser, &auth, "alice").await;
    let done = browser.get(callback.as_str()).await;
    assert_eq!(
        done.status,
        StatusCode::SEE_OTHER,
        "{done:#?}\n{}",
        it.provider.logs()
    );
    assert_eq!(done.location(), Some("/protected?via=discovery"));
}

#[tokio::test]
async fn signs_in_through_discovery_with_a_verified_id_token() {
    for public in [false, true] {
        let it = start(public).await;
        let browser = Browser::new();
        sign_in(&it, &browser, &provider_http_client()).await;
        let me = browser.get_json(&it.url("/me")).await;
        let me: serde_json::Value = serde_json::from_str(&me.body).unwrap();
        assert_eq!(me["subject"], "alice");
        // From the ID token...
        assert_eq!(me["claims"]["iss"], it.provider.issuer());
        let client = if public {
            PUBLIC_CLIENT_ID
        } else {
            CONFIDENTIAL_CLIENT_ID
        };
        assert_eq!(me["claims"]["aud"], serde_json::json!([client]));
        assert!(me["claims"]["nonce"].is_string());
        // ...and from userinfo.
        assert_eq!(me["claims"]["email"], "alice@example.com");
        assert_eq!(me["claims"]["name"], "Alice");
    }
}

#[tokio::test]
async fn discovery_of_another_issuer_fails_at_build_time() {
    let provider = OidcProvider::start(&["http://127.0.0.1:9/cb".to_string()]).await;
    let err = LoginLayer::builder()
        .with_client_id(PUBLIC_CLIENT_ID)
        .with_redirect_url("http://127.0.0.1:9/cb")
        // The same server under another name: its document says another issuer.
        .discover(provider.issuer().replace("127.0.0.1", "localhost"))
        .await
        .expect_err("issuer mismatch");
    // The typed cause, with both issuers, and its text as the source (the top level says
    // discovery failed).
    let tower_oauth2_login::ConfigError::Discovery(
        tower_oauth2_login::DiscoveryError::IssuerMismatch {
            configured,
            discovered,
        },
    ) = &err
    else {
        panic!("expected an issuer mismatch, got {err:?}");
    };
    assert_eq!(
        configured,
        &provider.issuer().replace("127.0.0.1", "localhost")
    );
    assert_eq!(discovered, &provider.issuer());
    let cause = std::error::Error::source(&err).expect("a source");
    assert_eq!(
        cause.to_string(),
        format!("the provider says its issuer is {discovered}, you configured {configured}")
    );
}

#[tokio::test]
async fn rp_initiated_logout_revokes_and_returns_with_state() {
    let it = start(false).await;
    let browser = Browser::new();
    let provider_browser = provider_http_client();
    sign_in(&it, &browser, &provider_browser).await;

    let out = browser
        .request(
            Method::POST,
            &it.url("/logout"),
            &[("sec-fetch-site", "same-origin")],
        )
        .await;
    assert_eq!(out.status, StatusCode::SEE_OTHER);
    let end_session = out.location().unwrap().to_string();
    assert!(
        end_session.starts_with(&it.provider.end_session_endpoint()),
        "{end_session}"
    );
    assert!(param(&end_session, "id_token_hint").is_some());
    assert_eq!(
        param(&end_session, "post_logout_redirect_uri").as_deref(),
        Some(&*it.url("/auth/logout-callback"))
    );
    let state = param(&end_session, "state").unwrap();
    // Signed out here already, before the provider is even asked.
    assert_eq!(
        browser.get_json(&it.url("/me")).await.status,
        StatusCode::UNAUTHORIZED
    );

    let back = complete_logout_with(&provider_browser, &end_session).await;
    assert_eq!(param(back.as_str(), "state").as_deref(), Some(&*state));
    let done = browser.get(back.as_str()).await;
    assert_eq!(done.status, StatusCode::SEE_OTHER, "{done:#?}");
    assert_eq!(done.location(), Some("/logged-out"));

    // The provider session ended: the next login asks for the password again, and the
    // refresh token was revoked (RFC 7009).
    let mut revoked = false;
    for _ in 0..50 {
        let logs = it.provider.logs();
        if logs.contains("EVENT refresh_token.destroyed") {
            revoked = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(revoked, "{}", it.provider.logs());
    assert!(it.provider.logs().contains("EVENT end_session.success"));
}

#[tokio::test]
async fn logout_return_without_or_with_a_wrong_state() {
    let it = start(true).await;
    let browser = Browser::new();
    let provider_browser = provider_http_client();
    sign_in(&it, &browser, &provider_browser).await;
    let out = browser
        .request(
            Method::POST,
            &it.url("/logout"),
            &[("sec-fetch-site", "same-origin")],
        )
        .await;
    assert!(out
        .location()
        .unwrap()
        .starts_with(&it.provider.end_session_endpoint()));

    // A provider that does not echo the state still lands on the post-logout page.
    let without = browser.get(&it.url("/auth/logout-callback")).await;
    assert_eq!(without.location(), Some("/logged-out"));
    // A state that is not ours is refused with a page.
    let wrong = browser
        .get(&it.url("/auth/logout-callback?state=forged"))
        .await;
    assert_eq!(wrong.status, StatusCode::BAD_REQUEST);
    assert!(wrong.body.contains("You are signed out"));
}

#[tokio::test]
async fn a_five_second_token_is_refreshed_and_keeps_working_at_the_provider() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let provider = OidcProvider::start_with(
        OidcProviderOptions::new(&[format!("{base}/auth/callback")])
            .access_token_ttl(Duration::from_secs(5)),
    )
    .await;
    let layer = LoginLayer::builder()
        .with_client_id(CONFIDENTIAL_CLIENT_ID)
        .with_client_secret(CONFIDENTIAL_CLIENT_SECRET)
        .with_redirect_url(format!("{base}/auth/callback"))
        .with_scopes(["openid", "profile"])
        .discover(provider.issuer())
        .await
        .unwrap()
        .build()
        .unwrap();
    let userinfo = layer.userinfo_endpoint().unwrap().to_string();
    // A handler that uses the token at the provider, as an app would.
    let app = routes()
        .route(
            "/at-provider",
            axum::routing::get(move |token: tower_oauth2_login::AccessToken| {
                let userinfo = userinfo.clone();
                async move {
                    let res = reqwest::Client::new()
                        .get(userinfo)
                        .bearer_auth(token.secret())
                        .send()
                        .await
                        .unwrap();
                    format!("{}", res.status().as_u16())
                }
            }),
        )
        .layer(layer);
    let server = tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let it = Interop {
        base,
        provider,
        server,
    };
    let browser = Browser::new();
    sign_in(&it, &browser, &provider_http_client()).await;
    let first = browser.get_json(&it.url("/token-hash")).await.body;
    assert_eq!(browser.get(&it.url("/at-provider")).await.body, "200");

    let refreshes = || {
        it.provider
            .logs()
            .matches("EVENT grant.success refresh_token")
            .count()
    };
    for round in 1..=2 {
        tokio::time::sleep(Duration::from_millis(5200)).await;
        // Thirty requests of the session at once, after expiry.
        let answers = futures_util::future::join_all((0..30).map(|_| {
            let browser = browser.clone();
            let url = it.url("/at-provider");
            async move { browser.get(&url).await }
        }))
        .await;
        for at_provider in answers {
            assert_eq!(
                at_provider.body, "200",
                "round {round}: the refreshed token works at the provider"
            );
        }
        assert_eq!(
            refreshes(),
            round,
            "one refresh per expiry\n{}",
            it.provider.logs()
        );
    }
    assert_ne!(browser.get_json(&it.url("/token-hash")).await.body, first);
    println!(
        "oidc-provider refresh grants after two expiries of 30 concurrent requests: {}",
        refreshes()
    );
}
