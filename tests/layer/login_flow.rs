//! The login flow through the real `LoginLayer` over real HTTP, against the embedded
//! provider.

use crate::support;

use reqwest::{Method, StatusCode};
use support::app::{self, param, Browser, Client, Options, CLIENT_ID, CLIENT_SECRET};
use tower_oauth2_login_dev_provider::{
    AuthorizeBehavior, TokenBehavior, UserShape, UserinfoBehavior,
};

fn token_param(app: &app::TestApp, name: &str) -> Option<String> {
    app.provider
        .last_token_params()
        .unwrap()
        .into_iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v)
}

/// The whole happy path for one kind of client; returns the app and the browser.
async fn sign_in(client: Client) -> (app::TestApp, Browser) {
    let app = app::start_with(Options {
        client,
        ..Default::default()
    })
    .await;
    let browser = Browser::new();

    let auth_url = app.start_login(&browser, "/protected?x=1&y=two").await;
    // The authorization request (RFC 6749 4.1.1, RFC 7636 4.3).
    assert_eq!(param(&auth_url, "response_type").as_deref(), Some("code"));
    assert_eq!(param(&auth_url, "client_id").as_deref(), Some(CLIENT_ID));
    assert_eq!(
        param(&auth_url, "redirect_uri").as_deref(),
        Some(&*app.redirect_url)
    );
    assert_eq!(param(&auth_url, "scope").as_deref(), Some("openid profile"));
    assert_eq!(
        param(&auth_url, "code_challenge_method").as_deref(),
        Some("S256")
    );
    assert_eq!(param(&auth_url, "code_challenge").unwrap().len(), 43);
    let state = param(&auth_url, "state").unwrap();
    assert!(
        state.len() >= 22,
        "state carries at least 128 bits: {state}"
    );

    let callback = app.authorize(&browser, &auth_url).await;
    assert_eq!(param(&callback, "state").as_deref(), Some(&*state));
    let done = browser.get(&callback).await;
    assert_eq!(done.status, StatusCode::SEE_OTHER, "{done:#?}");
    assert_eq!(done.location(), Some("/protected?x=1&y=two"));

    // The token request (RFC 6749 4.1.3, RFC 7636 4.5): same redirect_uri, the verifier.
    assert_eq!(
        token_param(&app, "grant_type").as_deref(),
        Some("authorization_code")
    );
    assert_eq!(
        token_param(&app, "redirect_uri").as_deref(),
        Some(&*app.redirect_url)
    );
    assert_eq!(token_param(&app, "code_verifier").unwrap().len(), 43);
    assert_eq!(app.provider.codes_redeemed(), 1);

    let page = browser.get(&app.url("/protected?x=1&y=two")).await;
    assert_eq!(page.status, StatusCode::OK);
    assert_eq!(page.body, "<p>protected: alice at /protected?x=1&y=two</p>");
    (app, browser)
}

#[tokio::test]
async fn confidential_client_with_basic_auth_signs_in() {
    let (app, _) = sign_in(Client::Basic).await;
    let auth = app.provider.last_token_authorization_header().unwrap();
    assert!(auth.starts_with("Basic "), "{auth}");
    assert_eq!(token_param(&app, "client_secret"), None);
}

#[tokio::test]
async fn confidential_client_with_post_auth_signs_in() {
    let (app, _) = sign_in(Client::Post).await;
    assert_eq!(app.provider.last_token_authorization_header(), None);
    assert_eq!(token_param(&app, "client_id").as_deref(), Some(CLIENT_ID));
    assert_eq!(
        token_param(&app, "client_secret").as_deref(),
        Some(CLIENT_SECRET)
    );
}

#[tokio::test]
async fn public_client_signs_in_with_pkce_alone() {
    let (app, _) = sign_in(Client::Public).await;
    assert_eq!(app.provider.last_token_authorization_header(), None);
    assert_eq!(token_param(&app, "client_id").as_deref(), Some(CLIENT_ID));
    assert_eq!(token_param(&app, "client_secret"), None);
}

#[tokio::test]
async fn each_login_gets_a_fresh_state_and_verifier() {
    let app = app::start().await;
    let browser = Browser::new();
    let a = app.start_login(&browser, "/protected").await;
    let b = app.start_login(&browser, "/protected").await;
    assert_ne!(param(&a, "state"), param(&b, "state"));
    assert_ne!(param(&a, "code_challenge"), param(&b, "code_challenge"));
}

#[tokio::test]
async fn callback_with_another_state_is_refused() {
    let app = app::start().await;
    let browser = Browser::new();
    let auth = app.start_login(&browser, "/protected").await;
    let callback = app.authorize(&browser, &auth).await;
    let state = param(&callback, "state").unwrap();
    let forged = callback.replace(&state, "forged-state-value-0123456789");
    let res = browser.get(&forged).await;
    assert_eq!(res.status, StatusCode::BAD_REQUEST);
    assert!(
        res.body.contains("Sign-in expired or not started here"),
        "{}",
        res.body
    );
    assert_eq!(app.provider.token_requests(), 0, "no code is redeemed");
    assert_eq!(
        browser.get_json(&app.url("/me")).await.status,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn callback_without_state_is_refused() {
    let app = app::start().await;
    let browser = Browser::new();
    let auth = app.start_login(&browser, "/protected").await;
    let callback = app.authorize(&browser, &auth).await;
    let code = param(&callback, "code").unwrap();
    let res = browser
        .get(&app.url(&format!("/auth/callback?code={code}")))
        .await;
    assert_eq!(res.status, StatusCode::BAD_REQUEST);
    assert_eq!(app.provider.token_requests(), 0);
}

#[tokio::test]
async fn callback_in_another_browser_is_refused() {
    // The pending cookie binds the state to the browser that started the login: a
    // callback URL replayed elsewhere (login CSRF, a stolen URL) does not complete.
    let app = app::start().await;
    let victim = Browser::new();
    let auth = app.start_login(&victim, "/protected").await;
    let callback = app.authorize(&victim, &auth).await;
    let attacker = Browser::new();
    let res = attacker.get(&callback).await;
    assert_eq!(res.status, StatusCode::BAD_REQUEST);
    assert_eq!(app.provider.token_requests(), 0);
    assert!(attacker.cookies_for(&app.base).is_empty());
}

#[tokio::test]
async fn repeated_callback_parameters_are_refused() {
    let app = app::start().await;
    let browser = Browser::new();
    let auth = app.start_login(&browser, "/protected").await;
    let callback = app.authorize(&browser, &auth).await;
    let res = browser.get(&format!("{callback}&code=second")).await;
    assert_eq!(res.status, StatusCode::BAD_REQUEST);
    assert_eq!(app.provider.token_requests(), 0);
}

#[tokio::test]
async fn provider_error_shows_a_page_with_a_retry_and_no_loop() {
    let app = app::start().await;
    app.provider
        .set_authorize_behavior(AuthorizeBehavior::Error {
            error: "access_denied".into(),
            description: Some("The user said <no>".into()),
        });
    let browser = Browser::new();
    let auth = app.start_login(&browser, "/protected?p=1").await;
    let callback = app.authorize(&browser, &auth).await;
    let res = browser.get(&callback).await;
    assert_eq!(res.status, StatusCode::FORBIDDEN);
    assert!(res.location().is_none(), "an error page, not a redirect");
    assert!(res.body.contains("Sign-in was cancelled"));
    assert!(
        res.body.contains("The user said &lt;no&gt;"),
        "escaped: {}",
        res.body
    );
    assert!(
        res.body
            .contains(r#"href="/auth/login?return_to=%2Fprotected%3Fp%3D1""#),
        "a retry link back to the page first asked for: {}",
        res.body
    );
    // The pending cookie is cleared.
    assert!(res
        .set_cookies()
        .iter()
        .any(|c| c.starts_with("oauth2_pending_") && c.contains("Max-Age=0")));
    assert_eq!(app.provider.token_requests(), 0);

    // The retry link starts a new login and, once the provider says yes, lands on the page.
    app.provider
        .set_authorize_behavior(AuthorizeBehavior::Normal);
    let hops = browser
        .follow(&app.url("/auth/login?return_to=%2Fprotected%3Fp%3D1"))
        .await;
    let last = hops.last().unwrap();
    assert_eq!(last.status, StatusCode::OK, "{hops:#?}");
    assert_eq!(last.body, "<p>protected: alice at /protected?p=1</p>");
}

#[tokio::test]
async fn provider_error_for_api_clients_is_json() {
    let app = app::start().await;
    app.provider
        .set_authorize_behavior(AuthorizeBehavior::Error {
            error: "server_error".into(),
            description: None,
        });
    let browser = Browser::new();
    let auth = app.start_login(&browser, "/protected").await;
    let callback = app.authorize(&browser, &auth).await;
    let res = browser.get_json(&callback).await;
    // `server_error` is the provider saying it failed (RFC 6749 4.1.2.1): a 502, not the
    // browser's bad request; the provider's code is kept.
    assert_eq!(res.status, StatusCode::BAD_GATEWAY);
    let body: serde_json::Value = serde_json::from_str(&res.body).unwrap();
    assert_eq!(body["error"], "server_error");
}

#[tokio::test]
async fn replayed_code_is_refused_and_creates_no_session() {
    let app = app::start().await;
    let browser = Browser::new();
    let auth = app.start_login(&browser, "/protected").await;
    let callback = app.authorize(&browser, &auth).await;
    // Keep the pending cookie so the replay gets past the state check to the provider.
    let state = param(&callback, "state").unwrap();
    let pending = browser.cookies_for(&callback);
    assert!(pending.contains("oauth2_pending_"), "{pending}");
    let first = browser.get(&callback).await;
    assert_eq!(first.status, StatusCode::SEE_OTHER);

    let replayer = Browser::new();
    let res = replayer
        .request(
            Method::GET,
            &callback,
            &[("cookie", &pending), ("accept", app::HTML)],
        )
        .await;
    assert_eq!(res.status, StatusCode::BAD_REQUEST, "{res:#?}");
    assert!(res.body.contains("invalid_grant"), "{}", res.body);
    assert_eq!(app.provider.token_requests(), 2);
    assert_eq!(app.provider.codes_redeemed(), 1);
    assert!(!res
        .set_cookies()
        .iter()
        .any(|c| c.starts_with("oauth2_session=") && !c.contains("Max-Age=0")));
    let _ = state;
}

#[tokio::test]
async fn return_paths_that_leave_the_site_are_refused() {
    let app = app::start().await;
    let payloads = [
        "//evil.example/",
        "///evil.example/",
        "/\\evil.example/",
        "\\\\evil.example",
        "https://evil.example/",
        "javascript:alert(1)",
        "/%2F%2Fevil.example",
        "/%5Cevil.example",
        "/%252F%252Fevil.example",
        "/%09/evil.example",
        "/\t/evil.example",
        "/\r\n/evil.example",
        " /evil.example",
        "/%E3%80%80/evil.example",
        "evil.example",
    ];
    for payload in payloads {
        let browser = Browser::new();
        let start: String = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("return_to", payload)
            .finish();
        let auth = app
            .start_login(&browser, &format!("/auth/login?{start}"))
            .await;
        let callback = app.authorize(&browser, &auth).await;
        let done = browser.get(&callback).await;
        assert_eq!(done.status, StatusCode::SEE_OTHER);
        assert_eq!(done.location(), Some("/"), "payload {payload:?}");
    }

    // A request path that looks like a network path is not echoed back either.
    let browser = Browser::new();
    let auth = app.start_login(&browser, "//evil.example/x").await;
    let callback = app.authorize(&browser, &auth).await;
    assert_eq!(browser.get(&callback).await.location(), Some("/"));
}

#[tokio::test]
async fn api_requests_get_401_not_a_redirect() {
    let app = app::start().await;
    let browser = Browser::new();
    for (method, path, headers) in [
        (Method::GET, "/me", vec![("accept", "application/json")]),
        (
            Method::GET,
            "/protected",
            vec![
                ("accept", app::HTML),
                ("x-requested-with", "XMLHttpRequest"),
            ],
        ),
        (
            Method::GET,
            "/protected",
            vec![("accept", "*/*"), ("sec-fetch-mode", "cors")],
        ),
        (Method::POST, "/echo", vec![("accept", app::HTML)]),
        (Method::DELETE, "/protected", vec![]),
    ] {
        let res = browser
            .request(method.clone(), &app.url(path), &headers)
            .await;
        assert_eq!(res.status, StatusCode::UNAUTHORIZED, "{method} {path}");
        assert!(res.location().is_none());
        assert_eq!(res.header("www-authenticate"), Some("Cookie realm=\"app\""));
        let body: serde_json::Value = serde_json::from_str(&res.body).unwrap();
        assert_eq!(body["error"], "unauthenticated");
    }
    assert_eq!(app.provider.authorize_requests(), 0);
}

#[tokio::test]
async fn unknown_paths_need_login_too() {
    let app = app::start().await;
    let browser = Browser::new();
    let hops = browser.follow(&app.url("/no/such/page?q=1")).await;
    let last = hops.last().unwrap();
    assert_eq!(last.status, StatusCode::NOT_FOUND);
    assert_eq!(last.body, "no page here, alice");
    assert_eq!(last.url, app.url("/no/such/page?q=1"));
}

#[tokio::test]
async fn public_paths_pass_with_or_without_a_user() {
    let app = app::start().await;
    let browser = Browser::new();
    let res = browser.get(&app.url("/")).await;
    assert_eq!(res.status, StatusCode::OK);
    assert_eq!(res.body, "<p>home: anonymous</p>");
    app.login(&browser, "/protected").await;
    assert_eq!(
        browser.get(&app.url("/")).await.body,
        "<p>home: signed in as alice</p>"
    );
}

#[tokio::test]
async fn two_tabs_logging_in_at_once_both_succeed() {
    let app = app::start().await;
    let browser = Browser::new();
    let tab1 = app.start_login(&browser, "/protected?tab=1").await;
    let tab2 = app.start_login(&browser, "/protected?tab=2").await;
    let cb1 = app.authorize(&browser, &tab1).await;
    let cb2 = app.authorize(&browser, &tab2).await;
    // Finished in the other order.
    let done2 = browser.get(&cb2).await;
    assert_eq!(done2.location(), Some("/protected?tab=2"), "{done2:#?}");
    let done1 = browser.get(&cb1).await;
    assert_eq!(done1.location(), Some("/protected?tab=1"), "{done1:#?}");
    assert_eq!(
        browser.get(&app.url("/protected?tab=1")).await.body,
        "<p>protected: alice at /protected?tab=1</p>"
    );
    assert!(!browser
        .cookies_for(&app.redirect_url)
        .contains("oauth2_pending_"));
}

#[tokio::test]
async fn session_id_is_new_at_every_login_and_the_old_one_dies() {
    let app = app::start().await;
    let browser = Browser::new();
    app.login(&browser, "/protected").await;
    let first = browser.cookie(&app.base, "oauth2_session").unwrap();
    assert_eq!(first.len(), 43);

    // Signing in again (e.g. as someone else) gives a new id.
    let hops = browser
        .follow(&app.url("/auth/login?return_to=%2Fme"))
        .await;
    assert_eq!(hops.last().unwrap().status, StatusCode::OK);
    let second = browser.cookie(&app.base, "oauth2_session").unwrap();
    assert_ne!(first, second);

    // The old id no longer opens a session.
    let other = Browser::new();
    let res = other
        .request(
            Method::GET,
            &app.url("/me"),
            &[
                ("cookie", &format!("oauth2_session={first}")),
                ("accept", "application/json"),
            ],
        )
        .await;
    assert_eq!(res.status, StatusCode::UNAUTHORIZED);
    assert!(
        res.set_cookies()
            .iter()
            .any(|c| c.starts_with("oauth2_session=;") && c.contains("Max-Age=0")),
        "a stale cookie is cleared: {res:#?}"
    );
}

#[tokio::test]
async fn a_session_id_chosen_by_the_browser_is_never_adopted() {
    let app = app::start().await;
    let browser = Browser::new();
    let planted = "A".repeat(43);
    browser.jar.add_cookie_str(
        &format!("oauth2_session={planted}; Path=/"),
        &app.base.parse().unwrap(),
    );
    app.login(&browser, "/protected").await;
    let now = browser.cookie(&app.base, "oauth2_session").unwrap();
    assert_ne!(now, planted);
}

#[tokio::test]
async fn cookies_have_the_right_flags() {
    let app = app::start().await;
    let browser = Browser::new();
    let start = browser.get(&app.url("/protected")).await;
    let (pending, index): (Vec<String>, Vec<String>) = start
        .set_cookies()
        .into_iter()
        .partition(|c| !c.starts_with("oauth2_logins="));
    assert_eq!(pending.len(), 1);
    // The index of pending logins: no secret, Path=/ so that the next login start sees it.
    assert_eq!(index.len(), 1);
    for flag in ["HttpOnly", "SameSite=Lax", "Path=/", "Max-Age=600"] {
        assert!(index[0].contains(flag), "{flag} in {}", index[0]);
    }
    let p = &pending[0];
    assert!(p.starts_with("oauth2_pending_"), "{p}");
    for flag in [
        "HttpOnly",
        "SameSite=Lax",
        "Path=/auth/callback",
        "Max-Age=600",
    ] {
        assert!(p.contains(flag), "{flag} in {p}");
    }
    assert!(!p.contains("Domain"));

    let auth = start.location().unwrap().to_string();
    let callback = app.authorize(&browser, &auth).await;
    let done = browser.get(&callback).await;
    let session = done
        .set_cookies()
        .into_iter()
        .find(|c| c.starts_with("oauth2_session="))
        .unwrap();
    for flag in ["HttpOnly", "SameSite=Lax", "Path=/"] {
        assert!(session.contains(flag), "{flag} in {session}");
    }
    assert!(!session.contains("Domain"));
    // Plain http on loopback: no Secure (the browser would drop it); https is covered by
    // `https_cookies_are_secure_and_prefixed` in `layer.rs`.
    assert!(!session.contains("Secure"));
}

#[tokio::test]
async fn callback_responses_are_not_stored_and_send_no_referrer() {
    let app = app::start().await;
    let browser = Browser::new();
    let done = app.login(&browser, "/protected").await;
    assert_eq!(done.header("cache-control"), Some("no-store"));
    assert_eq!(done.header("referrer-policy"), Some("no-referrer"));
    // (Another browser: a signed-in one is sent home from a callback it did not start.)
    let bad = Browser::new()
        .get(&app.url("/auth/callback?state=x&code=y"))
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert_eq!(bad.header("cache-control"), Some("no-store"));
    assert_eq!(bad.header("referrer-policy"), Some("no-referrer"));
}

#[tokio::test]
async fn no_token_reaches_the_browser() {
    let app = app::start().await;
    let browser = Browser::new();
    app.login(&browser, "/protected").await;
    browser.get(&app.url("/protected")).await;
    browser.get(&app.url("/me")).await;
    browser.get_json(&app.url("/me")).await;
    let check = browser.get(&app.url("/token-check")).await;
    assert_eq!(
        check.body,
        "token present: true, debug: AccessToken(<redacted>), display: <redacted>"
    );

    let secrets: Vec<String> = app
        .provider
        .issued_access_tokens()
        .into_iter()
        .chain(app.provider.issued_refresh_tokens())
        .chain([CLIENT_SECRET.to_string()])
        .collect();
    assert!(secrets.len() >= 3);
    let transcript = browser.transcript();
    for seen in &transcript {
        for secret in &secrets {
            assert!(
                !seen.body.contains(secret.as_str()),
                "a secret in the body of {}",
                seen.url
            );
            for (name, value) in &seen.headers {
                assert!(
                    !value.to_str().unwrap_or("").contains(secret.as_str()),
                    "a secret in the {name} header of {}",
                    seen.url
                );
            }
        }
    }
    let jar = browser.cookies_for(&app.base) + &browser.cookies_for(&app.redirect_url);
    for secret in &secrets {
        assert!(!jar.contains(secret.as_str()));
    }
    // Only the session cookie is left.
    assert_eq!(
        browser.cookies_for(&app.base).matches('=').count(),
        1,
        "{jar}"
    );
}

#[tokio::test]
async fn logout_deletes_the_session_and_refuses_other_sites() {
    let app = app::start().await;
    let browser = Browser::new();
    app.login(&browser, "/protected").await;
    let id = browser.cookie(&app.base, "oauth2_session").unwrap();

    for (name, value) in [
        ("sec-fetch-site", "cross-site"),
        ("origin", "http://evil.example"),
    ] {
        let res = browser
            .request(Method::POST, &app.url("/logout"), &[(name, value)])
            .await;
        assert_eq!(res.status, StatusCode::FORBIDDEN, "{name}: {value}");
    }
    assert_eq!(
        browser.get(&app.url("/protected")).await.status,
        StatusCode::OK,
        "still signed in"
    );

    // GET shows the layer's confirmation page (a button that POSTs); it does not sign out.
    let page = browser.get(&app.url("/logout")).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(
        page.body
            .contains(r#"<form method="post" action="/logout">"#),
        "{}",
        page.body
    );
    assert_eq!(
        browser.get_json(&app.url("/me")).await.status,
        StatusCode::OK
    );

    let res = browser
        .request(
            Method::POST,
            &app.url("/logout"),
            &[
                ("origin", app.base.as_str()),
                ("sec-fetch-site", "same-origin"),
            ],
        )
        .await;
    assert_eq!(res.status, StatusCode::SEE_OTHER);
    assert_eq!(res.location(), Some("/logged-out"));
    assert!(res
        .set_cookies()
        .iter()
        .any(|c| c.starts_with("oauth2_session=;") && c.contains("Max-Age=0")));
    assert!(browser.cookie(&app.base, "oauth2_session").is_none());

    // The server-side session is gone: the old id does not work anywhere.
    let other = Browser::new();
    let res = other
        .request(
            Method::GET,
            &app.url("/me"),
            &[
                ("cookie", &format!("oauth2_session={id}")),
                ("accept", "application/json"),
            ],
        )
        .await;
    assert_eq!(res.status, StatusCode::UNAUTHORIZED);
    // And the protected page asks for login again.
    assert_eq!(
        browser.get(&app.url("/protected")).await.status,
        StatusCode::SEE_OTHER
    );
}

#[tokio::test]
async fn wrong_issuer_in_the_callback_is_refused_before_the_exchange() {
    let app = app::start().await;
    app.provider
        .set_authorize_behavior(AuthorizeBehavior::WrongIss);
    let browser = Browser::new();
    let res = app.login(&browser, "/protected").await;
    assert_eq!(res.status, StatusCode::BAD_REQUEST);
    assert!(
        res.body.contains("expected identity provider"),
        "{}",
        res.body
    );
    assert_eq!(app.provider.token_requests(), 0);
}

#[tokio::test]
async fn missing_issuer_is_accepted_unless_required() {
    let app = app::start().await;
    app.provider
        .set_authorize_behavior(AuthorizeBehavior::OmitIss);
    let res = app.login(&Browser::new(), "/protected").await;
    assert_eq!(res.status, StatusCode::SEE_OTHER);

    let strict = app::start_with(Options {
        layer: Box::new(|b| b.with_iss_parameter_required(true)),
        ..Default::default()
    })
    .await;
    strict
        .provider
        .set_authorize_behavior(AuthorizeBehavior::OmitIss);
    let res = strict.login(&Browser::new(), "/protected").await;
    assert_eq!(res.status, StatusCode::BAD_REQUEST);
    assert_eq!(strict.provider.token_requests(), 0);
}

async fn token_endpoint_failure(behavior: TokenBehavior, status: StatusCode, text: &str) {
    let app = app::start_with(Options {
        layer: Box::new(|b| b.with_http_timeout(std::time::Duration::from_secs(1))),
        ..Default::default()
    })
    .await;
    app.provider.set_token_behavior(behavior.clone());
    let browser = Browser::new();
    let started = std::time::Instant::now();
    let res = app.login(&browser, "/protected").await;
    assert_eq!(res.status, status, "{behavior:?}: {res:#?}");
    assert!(res.body.contains(text), "{behavior:?}: {}", res.body);
    assert!(res.body.contains("Try again"));
    assert!(!res.body.contains(CLIENT_SECRET));
    assert!(
        started.elapsed() < std::time::Duration::from_secs(5),
        "bounded by the timeout"
    );
    assert!(
        browser.cookie(&app.base, "oauth2_session").is_none(),
        "no session"
    );
    assert_eq!(
        browser.get_json(&app.url("/me")).await.status,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn token_endpoint_invalid_grant_is_a_400_page() {
    token_endpoint_failure(
        TokenBehavior::InvalidGrant,
        StatusCode::BAD_REQUEST,
        "invalid_grant",
    )
    .await;
}

#[tokio::test]
async fn token_endpoint_5xx_is_a_502_page() {
    token_endpoint_failure(
        TokenBehavior::ServerError,
        StatusCode::BAD_GATEWAY,
        "answered with a server error",
    )
    .await;
}

#[tokio::test]
async fn token_endpoint_non_json_is_a_502_page() {
    token_endpoint_failure(TokenBehavior::NotJson, StatusCode::BAD_GATEWAY, "not valid").await;
}

/// RFC 9110 15.6.5: the provider not answering in time is a gateway timeout, not a bad
/// answer; the JSON code stays `provider_error`.
#[tokio::test]
async fn token_endpoint_timeout_is_a_504_page() {
    token_endpoint_failure(
        TokenBehavior::Slow(std::time::Duration::from_secs(3)),
        StatusCode::GATEWAY_TIMEOUT,
        "did not answer in time",
    )
    .await;
}

/// A provider that refuses this client (a wrong or revoked secret: `invalid_client`)
/// answered as it should: the fault is the application's configuration, a 500, and the
/// page says so without the secret.
#[tokio::test]
async fn a_client_the_provider_refuses_is_a_500_page() {
    let app = app::start_with(Options {
        layer: Box::new(|b| b.with_client_secret("not-the-registered-secret")),
        ..Default::default()
    })
    .await;
    let browser = Browser::new();
    let res = app.login(&browser, "/protected").await;
    assert_eq!(res.status, StatusCode::INTERNAL_SERVER_ERROR, "{res:#?}");
    // Its own page: a configuration to fix, not a passing failure to wait out.
    assert!(
        res.body.contains("not set up correctly at the provider")
            && res.body.contains("refused this application"),
        "{}",
        res.body
    );
    assert!(!res.body.contains("Try again in a moment"), "{}", res.body);
    assert!(!res.body.contains("not-the-registered-secret"));
    assert!(!res.body.contains(CLIENT_SECRET));
    assert!(browser.cookie(&app.base, "oauth2_session").is_none());
}

#[tokio::test]
async fn token_endpoint_huge_answer_is_refused() {
    token_endpoint_failure(
        TokenBehavior::HugeBody,
        StatusCode::BAD_GATEWAY,
        "too large",
    )
    .await;
}

#[tokio::test]
async fn token_type_in_another_case_and_missing_expires_in_are_accepted() {
    for behavior in [
        TokenBehavior::TokenTypeCase("bEaReR".into()),
        TokenBehavior::OmitExpiresIn,
    ] {
        let app = app::start().await;
        app.provider.set_token_behavior(behavior.clone());
        let res = app.login(&Browser::new(), "/protected").await;
        assert_eq!(res.status, StatusCode::SEE_OTHER, "{behavior:?}");
    }
}

#[tokio::test]
async fn unknown_token_type_is_refused() {
    let app = app::start().await;
    app.provider
        .set_token_behavior(TokenBehavior::TokenTypeCase("MAC".into()));
    let res = app.login(&Browser::new(), "/protected").await;
    assert_eq!(res.status, StatusCode::BAD_GATEWAY);
    assert_eq!(app.provider.userinfo_requests(), 0);
}

#[tokio::test]
async fn userinfo_failure_is_a_502_and_no_session() {
    for behavior in [UserinfoBehavior::ServerError, UserinfoBehavior::NotJson] {
        let app = app::start().await;
        app.provider.set_userinfo_behavior(behavior.clone());
        let browser = Browser::new();
        let res = app.login(&browser, "/protected").await;
        assert_eq!(res.status, StatusCode::BAD_GATEWAY, "{behavior:?}");
        assert!(browser.cookie(&app.base, "oauth2_session").is_none());
    }
}

#[tokio::test]
async fn github_style_provider_with_numeric_id() {
    let app = app::start_with(Options {
        provider: Box::new(|b| b.with_user_shape(UserShape::GitHub)),
        layer: Box::new(|b| b.with_subject_field("id")),
        ..Default::default()
    })
    .await;
    let browser = Browser::new();
    app.login(&browser, "/protected").await;
    let me = browser.get_json(&app.url("/me")).await;
    let body: serde_json::Value = serde_json::from_str(&me.body).unwrap();
    let subject = body["subject"].as_str().unwrap();
    assert!(subject.parse::<u64>().is_ok(), "{subject}");
    assert_eq!(body["claims"]["login"], "alice");
}

#[tokio::test]
async fn idle_sessions_expire() {
    let app = app::start_with(Options {
        layer: Box::new(|b| b.with_idle_timeout(std::time::Duration::from_secs(1))),
        ..Default::default()
    })
    .await;
    let browser = Browser::new();
    app.login(&browser, "/protected").await;
    assert_eq!(
        browser.get_json(&app.url("/me")).await.status,
        StatusCode::OK
    );
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    assert_eq!(
        browser.get_json(&app.url("/me")).await.status,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn absolute_lifetime_ends_sessions_however_busy() {
    // Deadlines are whole seconds, so a 3-second lifetime ends between 2 and 3 seconds
    // after login: busy for 1.5 s it lives, 4.2 s after login it is gone.
    let app = app::start_with(Options {
        layer: Box::new(|b| b.with_absolute_lifetime(std::time::Duration::from_secs(3))),
        ..Default::default()
    })
    .await;
    let browser = Browser::new();
    app.login(&browser, "/protected").await;
    for _ in 0..5 {
        assert_eq!(
            browser.get_json(&app.url("/me")).await.status,
            StatusCode::OK
        );
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    }
    tokio::time::sleep(std::time::Duration::from_millis(2700)).await;
    assert_eq!(
        browser.get_json(&app.url("/me")).await.status,
        StatusCode::UNAUTHORIZED
    );
}

/// The `name=value` of the pending cookie the browser sends to `callback`.
fn pending_pair(browser: &Browser, callback: &str) -> String {
    browser
        .cookies_for(callback)
        .split("; ")
        .find(|pair| pair.starts_with("oauth2_pending_"))
        .expect("a pending cookie")
        .to_string()
}

/// Opens the sealed pending cookie of `browser` for `callback` with the test key, lets `edit`
/// change its JSON, and seals it again: what an attacker without the key cannot do.
fn reseal_pending(
    browser: &Browser,
    callback: &str,
    edit: impl FnOnce(&mut serde_json::Value),
) -> String {
    use tower_cookies::cookie::{Cookie, CookieJar};
    let key = tower_cookies::Key::from(&[7u8; 64]);
    let pair = pending_pair(browser, callback);
    let (name, value) = pair.split_once('=').unwrap();
    let jar = CookieJar::new();
    let opened = jar
        .private(&key)
        .decrypt(Cookie::new(name.to_string(), value.to_string()))
        .expect("the test key opens the cookie");
    let mut json: serde_json::Value = serde_json::from_str(opened.value()).unwrap();
    edit(&mut json);
    let mut jar = CookieJar::new();
    jar.private_mut(&key)
        .add(Cookie::new(name.to_string(), json.to_string()));
    format!("{name}={}", jar.get(name).unwrap().value())
}

#[tokio::test]
async fn an_expired_pending_login_is_refused() {
    let app = app::start().await;
    let browser = Browser::new();
    let auth = app.start_login(&browser, "/protected").await;
    let callback = app.authorize(&browser, &auth).await;

    let old = reseal_pending(&browser, &callback, |j| {
        j["t"] = serde_json::json!(j["t"].as_u64().unwrap() - 601);
    });
    let res = Browser::new()
        .request(
            Method::GET,
            &callback,
            &[("cookie", &old), ("accept", app::HTML)],
        )
        .await;
    assert_eq!(res.status, StatusCode::BAD_REQUEST);
    assert!(res.body.contains("took too long"), "{}", res.body);
    assert_eq!(app.provider.token_requests(), 0);

    // The same cookie, resealed but not aged, works: the refusal was the age.
    let fresh = reseal_pending(&browser, &callback, |_| {});
    let res = Browser::new()
        .request(
            Method::GET,
            &callback,
            &[("cookie", &fresh), ("accept", app::HTML)],
        )
        .await;
    assert_eq!(res.status, StatusCode::SEE_OTHER);
}

#[tokio::test]
async fn a_pending_cookie_with_another_return_path_needs_the_key() {
    let app = app::start().await;
    let browser = Browser::new();
    let auth = app.start_login(&browser, "/protected").await;
    let callback = app.authorize(&browser, &auth).await;
    let pair = pending_pair(&browser, &callback);
    let (name, value) = pair.split_once('=').unwrap();
    // Flip one character of the sealed value: the seal breaks.
    let mut bytes = value.as_bytes().to_vec();
    bytes[20] = if bytes[20] == b'A' { b'B' } else { b'A' };
    let tampered = format!("{name}={}", String::from_utf8(bytes).unwrap());
    let res = Browser::new()
        .request(
            Method::GET,
            &callback,
            &[("cookie", &tampered), ("accept", app::HTML)],
        )
        .await;
    assert_eq!(res.status, StatusCode::BAD_REQUEST);
    assert_eq!(app.provider.token_requests(), 0);
}

#[tokio::test]
async fn old_pending_logins_are_dropped_past_the_cap() {
    let app = app::start().await;
    let browser = Browser::new();
    let mut callbacks = Vec::new();
    for i in 0..7 {
        let auth = app
            .start_login(&browser, &format!("/protected?n={i}"))
            .await;
        callbacks.push(app.authorize(&browser, &auth).await);
        // Pending logins are ordered by their start second.
        if i < 6 {
            tokio::time::sleep(std::time::Duration::from_millis(1001)).await;
        }
    }
    // The two oldest were dropped when the sixth and seventh logins started (the index
    // cookie tells the start of a login which pending cookies the browser holds).
    let cookie_header = browser.cookies_for(&app.redirect_url);
    assert_eq!(cookie_header.matches("oauth2_pending_").count(), 5);
    let done = browser.get(callbacks.last().unwrap()).await;
    assert_eq!(done.location(), Some("/protected?n=6"));
    let cleared = done
        .set_cookies()
        .into_iter()
        .filter(|c| c.starts_with("oauth2_pending_") && c.contains("Max-Age=0"))
        .count();
    assert_eq!(cleared, 1, "the answered one");
    assert_eq!(
        browser
            .cookies_for(&app.redirect_url)
            .matches("oauth2_pending_")
            .count(),
        4
    );
    // The newest of the others still completes.
    assert_eq!(
        browser.get(&callbacks[5]).await.location(),
        Some("/protected?n=5")
    );
    // The oldest two were dropped: their callbacks redeem nothing (this browser is signed
    // in now, so it is sent home rather than to an error page).
    let redeemed = app.provider.token_requests();
    for dropped in &callbacks[..2] {
        let res = browser.get(dropped).await;
        assert_eq!(res.status, StatusCode::SEE_OTHER);
        assert_eq!(res.location(), Some("/"));
    }
    assert_eq!(app.provider.token_requests(), redeemed);
}

#[tokio::test]
async fn a_spent_callback_sends_a_signed_in_browser_home_and_redeems_nothing() {
    let app = app::start().await;
    let browser = Browser::new();
    let auth = app.start_login(&browser, "/protected").await;
    let callback = app.authorize(&browser, &auth).await;
    assert_eq!(browser.get(&callback).await.location(), Some("/protected"));
    let again = browser.get(&callback).await;
    assert_eq!(again.status, StatusCode::SEE_OTHER);
    assert_eq!(again.location(), Some("/"));
    assert_eq!(app.provider.token_requests(), 1);
    // Not signed in, the same URL is an error page.
    let stranger = Browser::new().get(&callback).await;
    assert_eq!(stranger.status, StatusCode::BAD_REQUEST);
}

/// Anyone can link to the callback with an `error`
/// and a description of their own; the app's origin shows that text only for a login this
/// browser started (the state names its pending login), a generic page otherwise.
#[tokio::test]
async fn provider_error_text_is_shown_only_for_a_login_this_browser_started() {
    let app = app::start().await;
    let lure = "error=Account_locked_call_5550100&error_description=\
                Your+account+is+locked.+Call+555-0100";
    let browser = Browser::new();
    let auth = app.start_login(&browser, "/protected").await;
    let state = param(&auth, "state").unwrap();
    let strangers = [
        format!("/auth/callback?{lure}"),
        format!("/auth/callback?{lure}&state=made-up"),
        // Another browser's state: its pending cookie is not here.
        format!("/auth/callback?{lure}&state={state}"),
    ];
    for path in &strangers {
        for res in [
            Browser::new().get(&app.url(path)).await,
            Browser::new().get_json(&app.url(path)).await,
        ] {
            assert_eq!(res.status, StatusCode::BAD_REQUEST, "{path}");
            for attacker_text in ["locked", "555", "Account_locked"] {
                assert!(!res.body.contains(attacker_text), "{path}: {}", res.body);
            }
        }
    }
    // This browser's own login: the provider's answer, escaped, as before.
    let res = browser
        .get(&app.url(&format!("/auth/callback?{lure}&state={state}")))
        .await;
    assert_eq!(res.status, StatusCode::BAD_REQUEST);
    assert!(
        res.body.contains("Your account is locked. Call 555-0100"),
        "{}",
        res.body
    );
    assert_eq!(app.provider.token_requests(), 0);
}

/// State is single-use: a callback with a repeated or oversized parameter
/// is refused, and the pending cookie its state names is cleared all the same.
#[tokio::test]
async fn a_malformed_callback_clears_the_pending_cookie_of_its_state() {
    let app = app::start().await;
    let long = "a".repeat(5000);
    for extra in [
        "&state={state}".to_string(),
        "&code=second".to_string(),
        format!("&error_description={long}"),
    ] {
        let browser = Browser::new();
        let auth = app.start_login(&browser, "/protected").await;
        let callback = app.authorize(&browser, &auth).await;
        let state = param(&callback, "state").unwrap();
        assert!(browser.cookies_for(&callback).contains("oauth2_pending_"));
        let res = browser
            .get(&format!("{callback}{}", extra.replace("{state}", &state)))
            .await;
        assert_eq!(res.status, StatusCode::BAD_REQUEST, "{extra}");
        assert!(
            !browser.cookies_for(&callback).contains("oauth2_pending_"),
            "{extra}: {:?}",
            res.set_cookies()
        );
        // Single use: the well-formed callback redeems nothing now.
        let again = browser.get(&callback).await;
        assert_eq!(again.status, StatusCode::BAD_REQUEST);
    }
    assert_eq!(app.provider.token_requests(), 0);
}
