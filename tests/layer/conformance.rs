//! The OpenID Connect relying-party negative cases (after the OpenID
//! Foundation's RP test plans), each against the embedded provider misbehaving on purpose,
//! through the real layer configured by discovery.

use crate::support;

use std::time::Duration;

use reqwest::{Method, StatusCode};
use support::app::{self, param, Browser, Client, Options, CLIENT_ID};
use tower_oauth2_login::LoginLayer;
use tower_oauth2_login_dev_provider::{
    AuthorizeBehavior, IdTokenBehavior, LogoutTokenMisbehavior, RefreshIdTokenBehavior,
    TokenBehavior, UserinfoBehavior,
};

async fn oidc_app() -> app::TestApp {
    oidc_app_with(Client::Basic, |b| b).await
}

async fn oidc_app_with(
    client: Client,
    layer: impl FnOnce(tower_oauth2_login::LoginLayerBuilder) -> tower_oauth2_login::LoginLayerBuilder
        + Send
        + 'static,
) -> app::TestApp {
    app::start_with(Options {
        client,
        discover: true,
        layer: Box::new(layer),
        ..Default::default()
    })
    .await
}

/// Signs in; asserts success and returns the browser.
async fn accepted(app: &app::TestApp) -> Browser {
    let browser = Browser::new();
    let res = app.login(&browser, "/protected").await;
    assert_eq!(res.status, StatusCode::SEE_OTHER, "{res:#?}");
    assert_eq!(res.location(), Some("/protected"));
    assert_eq!(
        browser.get_json(&app.url("/me")).await.status,
        StatusCode::OK
    );
    browser
}

/// Signs in with the provider misbehaving; asserts the login is refused with a page, no
/// session, and (for a bad ID token) no call to userinfo.
async fn rejected(app: &app::TestApp, what: &str) {
    let browser = Browser::new();
    let res = app.login(&browser, "/protected").await;
    assert!(
        res.status.is_client_error() || res.status.is_server_error(),
        "{what}: {res:#?}"
    );
    assert!(res.location().is_none(), "{what}: no redirect");
    assert!(res.body.contains("Try again"), "{what}");
    assert!(
        browser.cookie(&app.base, "oauth2_session").is_none(),
        "{what}: no session"
    );
    assert_eq!(
        browser.get_json(&app.url("/me")).await.status,
        StatusCode::UNAUTHORIZED,
        "{what}"
    );
}

async fn id_token_rejected(behavior: IdTokenBehavior) {
    let app = oidc_app().await;
    app.provider.set_id_token_behavior(behavior);
    rejected(&app, &format!("{behavior:?}")).await;
    assert_eq!(
        app.provider.userinfo_requests(),
        0,
        "{behavior:?}: userinfo is not called after a bad ID token"
    );
}

#[tokio::test]
async fn happy_path_with_userinfo() {
    let app = oidc_app().await;
    let browser = accepted(&app).await;
    let me: serde_json::Value =
        serde_json::from_str(&browser.get_json(&app.url("/me")).await.body).unwrap();
    assert_eq!(me["subject"], "alice");
    assert_eq!(me["claims"]["iss"], app.provider.issuer());
    assert_eq!(
        me["claims"]["email"], "alice@example.test",
        "userinfo merged"
    );
    assert_eq!(app.provider.userinfo_requests(), 1);
    let nonce = app
        .provider
        .last_authorize_params()
        .unwrap()
        .into_iter()
        .find(|(n, _)| n == "nonce");
    assert!(nonce.is_some_and(|(_, n)| n.len() >= 43), "a nonce is sent");
}

#[tokio::test]
async fn rs256_is_accepted() {
    let app = oidc_app().await;
    app.provider.set_id_token_behavior(IdTokenBehavior::Normal);
    accepted(&app).await;
}

#[tokio::test]
async fn wrong_iss_is_rejected() {
    id_token_rejected(IdTokenBehavior::WrongIss).await;
}

#[tokio::test]
async fn missing_sub_is_rejected() {
    id_token_rejected(IdTokenBehavior::MissingSub).await;
}

#[tokio::test]
async fn wrong_aud_is_rejected() {
    id_token_rejected(IdTokenBehavior::WrongAud).await;
}

#[tokio::test]
async fn missing_aud_is_rejected() {
    id_token_rejected(IdTokenBehavior::MissingAud).await;
}

#[tokio::test]
async fn untrusted_extra_audience_without_azp_is_rejected() {
    id_token_rejected(IdTokenBehavior::ExtraAudNoAzp).await;
}

#[tokio::test]
async fn azp_of_another_client_is_rejected() {
    id_token_rejected(IdTokenBehavior::AzpMismatch).await;
}

#[tokio::test]
async fn missing_iat_is_rejected() {
    id_token_rejected(IdTokenBehavior::MissingIat).await;
}

#[tokio::test]
async fn iat_in_the_future_is_rejected() {
    id_token_rejected(IdTokenBehavior::IatInFuture).await;
}

#[tokio::test]
async fn expired_exp_is_rejected() {
    id_token_rejected(IdTokenBehavior::Expired).await;
}

#[tokio::test]
async fn single_key_without_kid_is_accepted() {
    let app = oidc_app().await;
    app.provider
        .set_id_token_behavior(IdTokenBehavior::NoKidSingleKey);
    // The layer fetched the JWKS at discovery, when it held the usual keys; the first
    // token without kid then has one candidate key only if the JWKS is fetched in this mode.
    accepted(&app).await;
}

#[tokio::test]
async fn several_keys_without_kid_are_tried_in_turn() {
    // OpenID Connect Core 10.1: reject or try all. The layer tries each key: the token is accepted only
    // because one of the provider's keys really signed it.
    let app = oidc_app().await;
    app.provider.rotate_signing_key(true);
    app.provider
        .set_id_token_behavior(IdTokenBehavior::NoKidMultipleKeys);
    assert!(app.provider.published_key_ids().len() > 1);
    accepted(&app).await;
    // A token without kid whose signature no key verifies is still refused.
    app.provider
        .set_id_token_behavior(IdTokenBehavior::BadRs256Signature);
    rejected(&app, "bad signature, several keys").await;
}

#[tokio::test]
async fn alg_none_is_rejected() {
    id_token_rejected(IdTokenBehavior::AlgNone).await;
}

#[tokio::test]
async fn bad_rs256_signature_is_rejected() {
    id_token_rejected(IdTokenBehavior::BadRs256Signature).await;
}

#[tokio::test]
async fn hs256_signature_is_rejected() {
    id_token_rejected(IdTokenBehavior::Hs256).await;
}

#[tokio::test]
async fn bad_es256_signature_is_rejected() {
    id_token_rejected(IdTokenBehavior::Es256BadSignature).await;
}

#[tokio::test]
async fn wrong_nonce_is_rejected() {
    id_token_rejected(IdTokenBehavior::WrongNonce).await;
}

#[tokio::test]
async fn missing_nonce_is_rejected() {
    id_token_rejected(IdTokenBehavior::MissingNonce).await;
}

#[tokio::test]
async fn userinfo_with_another_sub_is_rejected() {
    let app = oidc_app().await;
    app.provider
        .set_userinfo_behavior(UserinfoBehavior::OtherSub);
    rejected(&app, "userinfo sub").await;
}

#[tokio::test]
async fn discovery_issuer_mismatch_is_refused_at_build_time() {
    let app = oidc_app().await;
    app.provider
        .set_discovery_issuer(Some("https://impostor.example".to_string()));
    let err = LoginLayer::builder()
        .with_client_id(CLIENT_ID)
        .with_redirect_url(&app.redirect_url)
        .discover(app.provider.issuer())
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
    assert_eq!(configured, &app.provider.issuer());
    assert_eq!(discovered, "https://impostor.example");
    let cause = std::error::Error::source(&err).expect("a source");
    assert_eq!(
        cause.to_string(),
        format!("the provider says its issuer is {discovered}, you configured {configured}")
    );
}

#[tokio::test]
async fn signing_key_rotated_before_login_is_fetched() {
    let app = oidc_app().await;
    let fetched = app.provider.jwks_requests();
    app.provider.rotate_signing_key(false);
    accepted(&app).await;
    assert_eq!(
        app.provider.jwks_requests(),
        fetched + 1,
        "one re-fetch for the new kid"
    );
}

#[tokio::test]
async fn signing_key_rotated_between_logins_is_fetched() {
    let app = oidc_app().await;
    accepted(&app).await;
    let fetched = app.provider.jwks_requests();
    app.provider.rotate_signing_key(true);
    accepted(&app).await;
    assert_eq!(app.provider.jwks_requests(), fetched + 1);
    // The keys are cached: another login needs no fetch.
    accepted(&app).await;
    assert_eq!(app.provider.jwks_requests(), fetched + 1);
}

#[tokio::test]
async fn an_unknown_kid_refetches_once_then_is_rate_limited() {
    let app = oidc_app().await;
    let fetched = app.provider.jwks_requests();
    app.provider
        .set_id_token_behavior(IdTokenBehavior::UnknownKid);
    rejected(&app, "unknown kid").await;
    assert_eq!(app.provider.jwks_requests(), fetched + 1);
    rejected(&app, "unknown kid again").await;
    assert_eq!(
        app.provider.jwks_requests(),
        fetched + 1,
        "no second fetch within the rate limit"
    );
    // Within the window, a token under a known key still verifies with the cached keys.
    app.provider.set_id_token_behavior(IdTokenBehavior::Normal);
    accepted(&app).await;
}

#[tokio::test]
async fn refresh_returning_another_iss_or_sub_ends_the_session() {
    for behavior in [
        RefreshIdTokenBehavior::OtherIss,
        RefreshIdTokenBehavior::OtherSub,
        RefreshIdTokenBehavior::OtherAud,
        RefreshIdTokenBehavior::WithNonce("new-nonce".into()),
    ] {
        let app = app::start_with(Options {
            discover: true,
            provider: Box::new(|b| b.with_access_token_lifetime(Duration::from_secs(3))),
            ..Default::default()
        })
        .await;
        let browser = accepted(&app).await;
        app.provider.set_refresh_id_token_behavior(behavior.clone());
        tokio::time::sleep(Duration::from_millis(3100)).await;
        let res = browser.get_json(&app.url("/me")).await;
        assert_eq!(res.status, StatusCode::UNAUTHORIZED, "{behavior:?}");
        assert_eq!(app.provider.refresh_requests(), 1, "{behavior:?}");
    }
}

#[tokio::test]
async fn refresh_with_a_good_or_no_id_token_keeps_the_session() {
    for behavior in [
        RefreshIdTokenBehavior::Normal,
        RefreshIdTokenBehavior::OmitIdToken,
    ] {
        let app = app::start_with(Options {
            discover: true,
            provider: Box::new(|b| b.with_access_token_lifetime(Duration::from_secs(3))),
            ..Default::default()
        })
        .await;
        let browser = accepted(&app).await;
        app.provider.set_refresh_id_token_behavior(behavior.clone());
        tokio::time::sleep(Duration::from_millis(3100)).await;
        assert_eq!(
            browser.get_json(&app.url("/me")).await.status,
            StatusCode::OK,
            "{behavior:?}"
        );
        assert_eq!(app.provider.refresh_requests(), 1);
    }
}

#[tokio::test]
async fn callback_with_a_wrong_or_missing_iss_is_rejected() {
    // The embedded provider advertises authorization_response_iss_parameter_supported.
    for behavior in [AuthorizeBehavior::WrongIss, AuthorizeBehavior::OmitIss] {
        let app = oidc_app().await;
        app.provider.set_authorize_behavior(behavior.clone());
        rejected(&app, &format!("{behavior:?}")).await;
        assert_eq!(
            app.provider.token_requests(),
            0,
            "{behavior:?}: before the code is redeemed"
        );
    }
}

#[tokio::test]
async fn callback_with_a_wrong_or_missing_state_is_rejected() {
    let app = oidc_app().await;
    let browser = Browser::new();
    let auth = app.start_login(&browser, "/protected").await;
    let callback = app.authorize(&browser, &auth).await;
    let state = param(&callback, "state").unwrap();
    let wrong = browser.get(&callback.replace(&state, "wrong")).await;
    assert_eq!(wrong.status, StatusCode::BAD_REQUEST);
    let missing = browser
        .get(&callback.replace(&format!("state={state}"), "x=y"))
        .await;
    assert_eq!(missing.status, StatusCode::BAD_REQUEST);
    assert_eq!(app.provider.token_requests(), 0);
}

#[tokio::test]
async fn token_type_in_another_case_is_accepted() {
    let app = oidc_app().await;
    app.provider
        .set_token_behavior(TokenBehavior::TokenTypeCase("BEARER".into()));
    accepted(&app).await;
}

#[tokio::test]
async fn rp_initiated_logout_with_state() {
    let app = oidc_app().await;
    let browser = accepted(&app).await;
    let out = browser
        .request(
            Method::POST,
            &app.url("/logout"),
            &[("sec-fetch-site", "same-origin")],
        )
        .await;
    let end_session = out.location().unwrap().to_string();
    assert!(end_session.starts_with(&app.provider.end_session_endpoint()));
    assert!(param(&end_session, "id_token_hint").is_some());
    let state = param(&end_session, "state").unwrap();
    let back = browser.get(&end_session).await;
    let back_to = back.location().unwrap().to_string();
    assert_eq!(param(&back_to, "state").as_deref(), Some(&*state));
    let done = browser.get(&back_to).await;
    assert_eq!(done.location(), Some("/logged-out"));
    assert_eq!(app.provider.end_session_requests(), 1);
    // The refresh token is revoked in the background.
    for _ in 0..50 {
        if app.provider.revocation_requests() == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(app.provider.revocation_requests(), 1);
    assert_eq!(
        app.provider.revoked_tokens(),
        app.provider.issued_refresh_tokens()
    );
}

#[tokio::test]
async fn rp_initiated_logout_without_state_in_the_return() {
    let app = oidc_app().await;
    let browser = accepted(&app).await;
    browser
        .request(
            Method::POST,
            &app.url("/logout"),
            &[("sec-fetch-site", "same-origin")],
        )
        .await;
    let done = browser.get(&app.url("/auth/logout-callback")).await;
    assert_eq!(done.location(), Some("/logged-out"));
    assert_eq!(
        browser.get_json(&app.url("/me")).await.status,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn back_channel_logout_tokens_that_must_be_refused() {
    let app = oidc_app().await;
    let browser = accepted(&app).await;
    let sid = app
        .provider
        .sessions_of("alice")
        .pop()
        .expect("a provider session");
    for bad in [
        LogoutTokenMisbehavior::AlgNone,
        LogoutTokenMisbehavior::NoEvents,
        LogoutTokenMisbehavior::WrongEvent,
        LogoutTokenMisbehavior::WithNonce,
        LogoutTokenMisbehavior::WrongAud,
        LogoutTokenMisbehavior::WrongIss,
        LogoutTokenMisbehavior::Hs256,
        LogoutTokenMisbehavior::Expired,
        LogoutTokenMisbehavior::BadSignature,
        LogoutTokenMisbehavior::NoSubNoSid,
    ] {
        let status = app
            .provider
            .backchannel_logout_with(CLIENT_ID, Some("alice"), Some(&sid), bad)
            .await
            .unwrap();
        assert_eq!(status, 400, "{bad:?}");
        assert_eq!(
            browser.get_json(&app.url("/me")).await.status,
            StatusCode::OK,
            "{bad:?}: the session survives"
        );
    }
    // A correct one ends it.
    let status = app
        .provider
        .backchannel_logout(CLIENT_ID, Some("alice"), Some(&sid))
        .await
        .unwrap();
    assert_eq!(status, 200);
    assert_eq!(
        browser.get_json(&app.url("/me")).await.status,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn back_channel_logout_by_sub_alone_ends_all_sessions_of_the_user() {
    let app = oidc_app().await;
    let first = accepted(&app).await;
    let second = accepted(&app).await;
    let status = app
        .provider
        .backchannel_logout(CLIENT_ID, Some("alice"), None)
        .await
        .unwrap();
    assert_eq!(status, 200);
    for browser in [first, second] {
        assert_eq!(
            browser.get_json(&app.url("/me")).await.status,
            StatusCode::UNAUTHORIZED
        );
    }
}

#[tokio::test]
async fn back_channel_logout_endpoint_refuses_bad_requests() {
    let app = oidc_app().await;
    let http = reqwest::Client::new();
    let url = app.url("/auth/backchannel-logout");
    let get = http.get(&url).send().await.unwrap();
    assert_eq!(get.status(), StatusCode::METHOD_NOT_ALLOWED);
    let json = http
        .post(&url)
        .json(&serde_json::json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(json.status(), StatusCode::BAD_REQUEST);
    let empty = http.post(&url).form(&[("x", "y")]).send().await.unwrap();
    assert_eq!(empty.status(), StatusCode::BAD_REQUEST);
    let garbage = http
        .post(&url)
        .form(&[("logout_token", "a.b.c")])
        .send()
        .await
        .unwrap();
    assert_eq!(garbage.status(), StatusCode::BAD_REQUEST);
    let huge = http
        .post(&url)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("logout_token={}", "a".repeat(200_000)))
        .send()
        .await
        .unwrap();
    assert_eq!(huge.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn public_client_through_discovery() {
    let app = oidc_app_with(Client::Public, |b| b).await;
    accepted(&app).await;
}
