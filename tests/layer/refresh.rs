//! The token lifecycle: refresh once per session, rotation, and what the user gets when
//! the provider refuses or fails.

use crate::support;

use std::time::Duration;

use reqwest::StatusCode;
use support::app::{self, token_hash, Browser, Options};
use tower_oauth2_login_dev_provider::TokenBehavior;

/// An app whose provider issues access tokens that live `lifetime`.
async fn short_lived(lifetime: Duration) -> app::TestApp {
    app::start_with(Options {
        provider: Box::new(move |b| b.with_access_token_lifetime(lifetime)),
        layer: Box::new(|b| b.with_http_timeout(Duration::from_secs(2))),
        ..Default::default()
    })
    .await
}

#[tokio::test]
async fn a_hundred_concurrent_requests_after_expiry_make_one_refresh() {
    let app = short_lived(Duration::from_secs(3)).await;
    let browser = Browser::new();
    app.login(&browser, "/protected").await;
    let first = browser.get_json(&app.url("/token-hash")).await.body;
    assert_eq!(app.provider.refresh_requests(), 0);
    tokio::time::sleep(Duration::from_millis(3100)).await;

    let requests = (0..100).map(|_| {
        let browser = browser.clone();
        let url = app.url("/token-hash");
        async move { browser.get_json(&url).await }
    });
    let answers = futures_util::future::join_all(requests).await;
    assert_eq!(
        app.provider.refresh_requests(),
        1,
        "one refresh for the whole burst"
    );
    let fresh = token_hash(app.provider.issued_access_tokens().last().unwrap());
    assert_ne!(fresh, first);
    for answer in &answers {
        assert_eq!(answer.status, StatusCode::OK);
        assert_eq!(answer.body, fresh, "every request got the new token");
    }
    println!(
        "refresh calls for 100 concurrent requests: {}",
        app.provider.refresh_requests()
    );
}

#[tokio::test]
async fn rotated_refresh_tokens_are_used_across_several_refreshes() {
    let app = short_lived(Duration::from_secs(3)).await;
    let browser = Browser::new();
    app.login(&browser, "/protected").await;
    for round in 1..=3 {
        tokio::time::sleep(Duration::from_millis(3100)).await;
        let res = browser.get_json(&app.url("/token-hash")).await;
        assert_eq!(res.status, StatusCode::OK, "round {round}: {res:#?}");
        assert_eq!(app.provider.refresh_requests(), round);
        assert_eq!(
            res.body,
            token_hash(app.provider.issued_access_tokens().last().unwrap())
        );
    }
    // Four refresh tokens issued (login and three rotations); the provider refuses old
    // ones, so each refresh used the latest.
    assert_eq!(app.provider.issued_refresh_tokens().len(), 4);
}

#[tokio::test]
async fn a_refused_refresh_ends_the_session() {
    let app = short_lived(Duration::from_secs(3)).await;
    let browser = Browser::new();
    app.login(&browser, "/protected").await;
    app.provider.revoke_all_tokens();
    tokio::time::sleep(Duration::from_millis(3100)).await;

    // A page load goes to login again, keeping its return path...
    let page = browser.get(&app.url("/protected?keep=me")).await;
    assert_eq!(page.status, StatusCode::SEE_OTHER);
    assert!(page
        .location()
        .unwrap()
        .starts_with(&app.provider.authorization_endpoint()));
    assert_eq!(app.provider.refresh_requests(), 1);
    let callback = app.authorize(&browser, page.location().unwrap()).await;
    assert_eq!(
        browser.get(&callback).await.location(),
        Some("/protected?keep=me")
    );

    // ...and an API call of an ended session gets 401.
    app.provider.revoke_all_tokens();
    tokio::time::sleep(Duration::from_millis(3100)).await;
    let api = browser.get_json(&app.url("/me")).await;
    assert_eq!(api.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn a_provider_that_fails_yields_503_and_the_session_survives() {
    for behavior in [
        TokenBehavior::Slow(Duration::from_secs(4)),
        TokenBehavior::ServerError,
    ] {
        let app = short_lived(Duration::from_secs(3)).await;
        let browser = Browser::new();
        app.login(&browser, "/protected").await;
        tokio::time::sleep(Duration::from_millis(3100)).await;
        app.provider.set_token_behavior(behavior.clone());

        let page = browser.get(&app.url("/protected")).await;
        assert_eq!(page.status, StatusCode::SERVICE_UNAVAILABLE, "{behavior:?}");
        assert!(page.header("retry-after").is_some());
        assert!(page.body.contains("still signed in"));
        let api = browser.get_json(&app.url("/me")).await;
        assert_eq!(api.status, StatusCode::SERVICE_UNAVAILABLE);

        app.provider.set_token_behavior(TokenBehavior::Normal);
        // Past a slow answer still being served by the provider.
        tokio::time::sleep(Duration::from_millis(100)).await;
        let page = browser.get(&app.url("/protected")).await;
        assert_eq!(
            page.status,
            StatusCode::OK,
            "{behavior:?}: the session survived"
        );
    }
}

#[tokio::test]
async fn a_token_within_the_skew_is_served_when_the_refresh_fails() {
    // A 20-second token with a 60-second skew: refreshed from its 15th second (a quarter
    // of its life), still valid until its 20th.
    let app = short_lived(Duration::from_secs(20)).await;
    let browser = Browser::new();
    app.login(&browser, "/protected").await;
    let before = browser.get_json(&app.url("/token-hash")).await.body;
    app.provider.set_token_behavior(TokenBehavior::ServerError);
    tokio::time::sleep(Duration::from_millis(16_000)).await;
    let res = browser.get_json(&app.url("/token-hash")).await;
    assert_eq!(res.status, StatusCode::OK);
    assert_eq!(res.body, before, "the old, still valid token");
    assert!(app.provider.refresh_requests() >= 1);
}

#[tokio::test]
async fn a_slow_refresh_does_not_block_other_sessions() {
    let app = short_lived(Duration::from_secs(3)).await;
    let slow_user = Browser::new();
    app.login(&slow_user, "/protected").await;
    tokio::time::sleep(Duration::from_millis(1900)).await;
    let other_user = Browser::new();
    app.login(&other_user, "/protected").await;
    tokio::time::sleep(Duration::from_millis(1200)).await;
    // The first session's token has expired, the second's has not.
    app.provider
        .set_token_behavior(TokenBehavior::Slow(Duration::from_millis(1500)));
    let slow = tokio::spawn({
        let url = app.url("/me");
        async move { slow_user.get_json(&url).await }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let started = std::time::Instant::now();
    let res = other_user.get_json(&app.url("/me")).await;
    assert_eq!(res.status, StatusCode::OK);
    assert!(
        started.elapsed() < Duration::from_millis(1200),
        "served while the other session refreshes: {:?}",
        started.elapsed()
    );
    assert_eq!(slow.await.unwrap().status, StatusCode::OK);
    assert_eq!(app.provider.refresh_requests(), 1);
}

/// An app whose provider rotates refresh tokens and takes the reuse of a rotated one for a
/// theft (it revokes the grant, RFC 9700 4.14.2), as many providers do.
async fn rotating_with_reuse_detection(lifetime: Duration) -> app::TestApp {
    app::start_with(Options {
        provider: Box::new(move |b| {
            b.with_access_token_lifetime(lifetime)
                .with_refresh_token_reuse_detection()
        }),
        layer: Box::new(|b| b.with_http_timeout(Duration::from_secs(10))),
        ..Default::default()
    })
    .await
}

/// A request of `browser` for `/token-hash` that gives up after a second, as a browser
/// whose user navigates away.
async fn give_up_after_a_second(app: &app::TestApp, browser: &Browser) {
    let res = browser
        .http
        .get(app.url("/token-hash"))
        .header(reqwest::header::ACCEPT, "application/json")
        .timeout(Duration::from_secs(1))
        .send()
        .await;
    assert!(
        res.as_ref().is_err_and(|e| e.is_timeout()),
        "the client gave up: {res:?}"
    );
}

#[tokio::test]
async fn a_refresh_outlives_the_request_that_started_it() {
    // Tokens that outlive the provider's slow answer (a token's lifetime counts from
    // the refresh request).
    let app = rotating_with_reuse_detection(Duration::from_secs(6)).await;
    let browser = Browser::new();
    app.login(&browser, "/protected").await;
    tokio::time::sleep(Duration::from_millis(6100)).await;
    // The provider rotates the refresh token at once and answers 3 s later; the browser
    // is gone by then.
    app.provider
        .set_token_behavior(TokenBehavior::SlowAnswer(Duration::from_secs(3)));
    give_up_after_a_second(&app, &browser).await;
    assert_eq!(app.provider.refresh_requests(), 1);
    tokio::time::sleep(Duration::from_millis(2500)).await;
    app.provider.set_token_behavior(TokenBehavior::Normal);

    let res = browser.get_json(&app.url("/token-hash")).await;
    assert_eq!(res.status, StatusCode::OK, "still signed in: {res:#?}");
    assert_eq!(
        res.body,
        token_hash(app.provider.issued_access_tokens().last().unwrap()),
        "served with the tokens of the abandoned refresh"
    );
    assert_eq!(app.provider.refresh_requests(), 1, "exactly one refresh");
    assert_eq!(
        app.provider.refresh_token_reuses(),
        0,
        "the spent refresh token was never sent again"
    );
}

#[tokio::test]
async fn a_request_during_an_abandoned_refresh_gets_its_result() {
    let app = rotating_with_reuse_detection(Duration::from_secs(6)).await;
    let browser = Browser::new();
    app.login(&browser, "/protected").await;
    tokio::time::sleep(Duration::from_millis(6100)).await;
    app.provider
        .set_token_behavior(TokenBehavior::SlowAnswer(Duration::from_secs(3)));
    give_up_after_a_second(&app, &browser).await;
    // The refresh is still at the provider: this request waits for it.
    let res = browser.get_json(&app.url("/token-hash")).await;
    assert_eq!(res.status, StatusCode::OK, "still signed in: {res:#?}");
    assert_eq!(
        res.body,
        token_hash(app.provider.issued_access_tokens().last().unwrap())
    );
    assert_eq!(app.provider.refresh_requests(), 1, "exactly one refresh");
    assert_eq!(app.provider.refresh_token_reuses(), 0);
}

#[tokio::test]
async fn an_expired_token_that_cannot_be_refreshed_is_refused() {
    let app = app::start_with(Options {
        dev_client: Box::new(|c| c.without_refresh_tokens()),
        provider: Box::new(|b| b.with_access_token_lifetime(Duration::from_secs(2))),
        ..Default::default()
    })
    .await;
    let browser = Browser::new();
    app.login(&browser, "/protected").await;
    assert!(app.provider.issued_refresh_tokens().is_empty());
    let res = browser.get_json(&app.url("/token-hash")).await;
    assert_eq!(res.status, StatusCode::OK);
    tokio::time::sleep(Duration::from_millis(2100)).await;

    // Still signed in: only the token is dead.
    assert_eq!(
        browser.get_json(&app.url("/me")).await.status,
        StatusCode::OK
    );
    // An API call gets the layer's JSON 401...
    let api = browser.get_json(&app.url("/token-hash")).await;
    assert_eq!(api.status, StatusCode::UNAUTHORIZED, "{api:#?}");
    assert!(api
        .header("content-type")
        .unwrap()
        .starts_with("application/json"));
    assert!(api.header("www-authenticate").is_some(), "{api:#?}");
    let body: serde_json::Value = serde_json::from_str(&api.body).unwrap();
    assert_eq!(body["error"], "unauthenticated");
    assert_eq!(app.provider.token_requests(), 1, "nothing to refresh with");

    // ...and a page load signs in again, back to where it was, with a live token.
    let page = browser.get(&app.url("/token-hash?from=page")).await;
    assert_eq!(page.status, StatusCode::SEE_OTHER, "{page:#?}");
    let location = page.location().unwrap();
    assert!(
        location.starts_with(&app.provider.authorization_endpoint()),
        "{location}"
    );
    let callback = app.authorize(&browser, location).await;
    assert_eq!(
        browser.get(&callback).await.location(),
        Some("/token-hash?from=page")
    );
    let res = browser.get_json(&app.url("/token-hash")).await;
    assert_eq!(res.status, StatusCode::OK);
    assert_eq!(
        res.body,
        token_hash(app.provider.issued_access_tokens().last().unwrap())
    );
}
