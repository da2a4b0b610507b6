//! Interop: the real `LoginLayer` against panva's `oidc-provider`, an independent,
//! OpenID-certified server (tests/oidc-provider, started on loopback), through its `/auth`,
//! `/token` and `/me` endpoints, with confidential and public clients.

use crate::support;

use reqwest::{Method, StatusCode};
use support::app::{param, routes, Browser};
use support::oidc_provider::{
    complete_login_with, provider_http_client, OidcProvider, CONFIDENTIAL_CLIENT_ID,
    CONFIDENTIAL_CLIENT_SECRET, POST_CLIENT_ID, POST_CLIENT_SECRET, PUBLIC_CLIENT_ID,
};
use tower_oauth2_login::{ClientAuth, LoginLayer, LoginLayerBuilder};

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

#[derive(Clone, Copy, Debug)]
enum Kind {
    Basic,
    Post,
    Public,
}

async fn start(kind: Kind) -> Interop {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let redirect = format!("{base}/auth/callback");
    let provider = OidcProvider::start(std::slice::from_ref(&redirect)).await;

    let builder: LoginLayerBuilder = LoginLayer::builder()
        .with_authorization_endpoint(provider.authorization_endpoint())
        .with_token_endpoint(provider.token_endpoint())
        .with_userinfo_endpoint(provider.userinfo_endpoint())
        .with_issuer(provider.issuer())
        // The provider advertises authorization_response_iss_parameter_supported.
        .with_iss_parameter_required(true)
        .with_redirect_url(&redirect)
        // Its userinfo endpoint needs the openid scope on the access token.
        .with_scopes(["openid", "profile", "email"])
        .with_logout_path("/logout")
        .with_post_logout_redirect("/logged-out")
        .with_public_path("/");
    let builder = match kind {
        Kind::Basic => builder
            .with_client_id(CONFIDENTIAL_CLIENT_ID)
            .with_client_secret(CONFIDENTIAL_CLIENT_SECRET),
        Kind::Post => builder
            .with_client_id(POST_CLIENT_ID)
            .with_client_secret(POST_CLIENT_SECRET)
            .with_client_auth(ClientAuth::ClientSecretPost),
        Kind::Public => builder.with_client_id(PUBLIC_CLIENT_ID),
    };
    let layer = builder.build().unwrap();
    let app = routes().layer(layer);
    let server = tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    Interop {
        base,
        provider,
        server,
    }
}

/// Loads `path`, signs in at the provider as `user`, and returns the callback's answer.
async fn login(it: &Interop, browser: &Browser, path: &str, user: &str) -> support::app::Seen {
    let start = browser.get(&it.url(path)).await;
    assert_eq!(start.status, StatusCode::SEE_OTHER, "{start:#?}");
    let auth = start.location().unwrap().to_string();
    assert!(
        auth.starts_with(&it.provider.authorization_endpoint()),
        "{auth}"
    );
    let callback = complete_login_with(&provider_http_client(), &auth, user).await;
    assert!(callback.as_str().starts_with(&it.url("/auth/callback")));
    assert_eq!(
        param(callback.as_str(), "iss").as_deref(),
        Some(it.provider.issuer())
    );
    browser.get(callback.as_str()).await
}

async fn signs_in(kind: Kind) {
    let it = start(kind).await;
    let browser = Browser::new();
    let done = login(&it, &browser, "/protected?from=interop", "alice").await;
    assert_eq!(
        done.status,
        StatusCode::SEE_OTHER,
        "{kind:?}: {done:#?}\n{}",
        it.provider.logs()
    );
    assert_eq!(done.location(), Some("/protected?from=interop"));
    let page = browser.get(&it.url("/protected?from=interop")).await;
    assert_eq!(
        page.body,
        "<p>protected: alice at /protected?from=interop</p>"
    );
    let me = browser.get_json(&it.url("/me")).await;
    let me: serde_json::Value = serde_json::from_str(&me.body).unwrap();
    assert_eq!(me["subject"], "alice");
    assert_eq!(me["claims"]["name"], "Alice");
    assert_eq!(me["claims"]["email"], "alice@example.com");
}

#[tokio::test]
async fn confidential_client_basic_signs_in() {
    signs_in(Kind::Basic).await;
}

#[tokio::test]
async fn confidential_client_post_signs_in() {
    signs_in(Kind::Post).await;
}

#[tokio::test]
async fn public_client_signs_in() {
    signs_in(Kind::Public).await;
}

#[tokio::test]
async fn state_mismatch_is_refused_before_the_real_provider_sees_the_code() {
    let it = start(Kind::Basic).await;
    let browser = Browser::new();
    let start = browser.get(&it.url("/protected")).await;
    let auth = start.location().unwrap().to_string();
    let callback = complete_login_with(&provider_http_client(), &auth, "alice").await;
    let state = param(callback.as_str(), "state").unwrap();
    let forged = callback.as_str().replace(&state, "not-the-state-we-sent");
    let res = browser.get(&forged).await;
    assert_eq!(res.status, StatusCode::BAD_REQUEST);

    // The code was never redeemed, so the genuine callback still works.
    let res = browser.get(callback.as_str()).await;
    assert_eq!(res.status, StatusCode::SEE_OTHER, "{res:#?}");
}

#[tokio::test]
async fn code_replay_is_refused_by_the_real_provider() {
    let it = start(Kind::Basic).await;
    let browser = Browser::new();
    let start = browser.get(&it.url("/protected")).await;
    let auth = start.location().unwrap().to_string();
    let callback = complete_login_with(&provider_http_client(), &auth, "alice").await;
    let pending = browser.cookies_for(callback.as_str());
    assert_eq!(
        browser.get(callback.as_str()).await.status,
        StatusCode::SEE_OTHER
    );

    // Replayed with the pending cookie, past the state check: the provider refuses it.
    let res = Browser::new()
        .request(
            Method::GET,
            callback.as_str(),
            &[("cookie", &pending), ("accept", "text/html")],
        )
        .await;
    assert_eq!(res.status, StatusCode::BAD_REQUEST, "{res:#?}");
    assert!(res.body.contains("invalid_grant"), "{}", res.body);
}

#[tokio::test]
async fn two_logins_in_one_browser_and_logout() {
    let it = start(Kind::Public).await;
    let browser = Browser::new();
    let a = browser.get(&it.url("/protected?tab=a")).await;
    let b = browser.get(&it.url("/protected?tab=b")).await;
    let provider_browser = provider_http_client();
    let cb_a = complete_login_with(&provider_browser, a.location().unwrap(), "alice").await;
    let cb_b = complete_login_with(&provider_browser, b.location().unwrap(), "alice").await;
    assert_eq!(
        browser.get(cb_b.as_str()).await.location(),
        Some("/protected?tab=b")
    );
    assert_eq!(
        browser.get(cb_a.as_str()).await.location(),
        Some("/protected?tab=a")
    );

    let out = browser
        .request(
            Method::POST,
            &it.url("/logout"),
            &[("sec-fetch-site", "same-origin")],
        )
        .await;
    assert_eq!(out.status, StatusCode::SEE_OTHER);
    assert_eq!(
        browser.get_json(&it.url("/me")).await.status,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn provider_error_from_the_real_provider_is_a_page() {
    // An empty grant makes this provider answer access_denied: the layer shows its page
    // and a retry link, not a loop.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let redirect = format!("{base}/auth/callback");
    let provider = OidcProvider::start(std::slice::from_ref(&redirect)).await;
    let layer = LoginLayer::builder()
        .with_client_id(PUBLIC_CLIENT_ID)
        .with_authorization_endpoint(provider.authorization_endpoint())
        .with_token_endpoint(provider.token_endpoint())
        .with_userinfo_endpoint(provider.userinfo_endpoint())
        .with_issuer(provider.issuer())
        .with_redirect_url(&redirect)
        .build()
        .unwrap();
    let app = routes().layer(layer);
    let server = tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let browser = Browser::new();
    let start = browser.get(&format!("{base}/protected")).await;
    let callback =
        complete_login_with(&provider_http_client(), start.location().unwrap(), "alice").await;
    assert!(param(callback.as_str(), "error").is_some(), "{callback}");
    let res = browser.get(callback.as_str()).await;
    assert!(res.status.is_client_error(), "{res:#?}");
    assert!(res.location().is_none());
    assert!(res.body.contains("Try again"));
    server.abort();
}
