//! End-to-end: Debian's headless Chromium, driven over WebDriver, signs in through the real
//! layer, with the provider on another site (`127.0.0.2`) than the app (`127.0.0.1`), as in
//! production: the cookies, redirects and `SameSite` choices are checked where they matter,
//! in a browser.
//!
//! Providers: the embedded development provider with its login form (in this process, or in
//! the demo binary), panva's `oidc-provider` (as a plain OAuth 2.0 provider, and as an OpenID
//! Connect provider found by discovery, for RP-initiated logout), and the embedded provider in
//! its GitHub shape (no OpenID Connect).
//!
//! `bash scripts/test.sh` installs Chromium and ChromeDriver (Debian's `chromium` and
//! `chromium-driver`) and the oidc-provider's npm packages; `harness.rs` says how the browser
//! is run, waited on and cleaned up, and where a failing test leaves its screenshot
//! (`target/browser-screenshots/<test>.png`).
//!
//! A binary of its own: it alone needs Chromium, and the harness's limit on browsers at once
//! counts on the test threads of this process running browser tests only (a binary shared with
//! the HTTP tests would leave threads waiting on browser slots next to busy ones). The
//! in-process tests are in `tests/layer/`, those against other programs in `tests/external/`.

mod apps;
mod harness;
#[path = "../support/mod.rs"]
mod support;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use apps::{Demo, EmbeddedApp, OidcApp, OidcClient, PROVIDER_HOST};
use harness::Browser;
use serde_json::Value;
use support::oidc_provider::LOGIN_PASSWORD;
use tower_cookies::cookie::SameSite;

const SESSION_COOKIE: &str = "oauth2_session";
const PENDING_INDEX_COOKIE: &str = "oauth2_logins";
const PENDING_COOKIE_PREFIX: &str = "oauth2_pending_";
const APP_HOST: &str = "127.0.0.1";

// ---------------------------------------------------------------------------------------------
// What a person does at the providers
// ---------------------------------------------------------------------------------------------

/// Waits for the embedded provider's login form (on the provider's site).
async fn embedded_form(b: &Browser) {
    b.wait_for_url("the embedded provider's login form", |u| {
        u.host_str() == Some(PROVIDER_HOST) && u.path() == "/authorize"
    })
    .await;
    b.find("#username").await;
}

/// Signs in on the embedded provider's form as `user`.
async fn embedded_sign_in(b: &Browser, user: &str) {
    embedded_form(b).await;
    b.fill("#username", user).await;
    b.click("button[value=login]").await;
}

/// Waits for oidc-provider's login form (on the provider's site).
async fn oidc_form(b: &Browser) {
    b.wait_for_url("oidc-provider's login form", |u| {
        u.host_str() == Some(PROVIDER_HOST) && u.path().starts_with("/interaction/")
    })
    .await;
    b.find("input[name=login]").await;
}

/// Signs in on oidc-provider's login form as `user` (any password does).
async fn oidc_sign_in(b: &Browser, user: &str) {
    oidc_form(b).await;
    b.fill("input[name=login]", user).await;
    b.fill("input[name=password]", LOGIN_PASSWORD).await;
    b.click("button[type=submit]").await;
}

// ---------------------------------------------------------------------------------------------
// Checks
// ---------------------------------------------------------------------------------------------

fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// The cookies the current (app) page sees, by WebDriver's "Get All Cookies" (HttpOnly ones
/// included), must be the session cookie alone, with the flags the design gives it; returns
/// its value.
async fn only_the_session_cookie(b: &Browser) -> String {
    let cookies = b.cookies().await;
    let names: Vec<&str> = cookies.iter().map(|c| c.name()).collect();
    assert_eq!(names, [SESSION_COOKIE], "cookies: {cookies:#?}");
    let cookie = &cookies[0];
    assert_eq!(cookie.http_only(), Some(true), "{cookie:?}");
    assert_eq!(cookie.same_site(), Some(SameSite::Lax), "{cookie:?}");
    assert_eq!(cookie.path(), Some("/"), "{cookie:?}");
    // Plain http on loopback: not Secure (over https it is, with the __Host- prefix).
    assert_ne!(cookie.secure(), Some(true), "{cookie:?}");
    // Host-only: no Domain attribute widens it.
    assert_eq!(cookie.domain(), Some(APP_HOST), "{cookie:?}");
    // Max-Age is the absolute session lifetime (7 days by default).
    let expires = cookie
        .expires_datetime()
        .unwrap_or_else(|| panic!("a persistent cookie: {cookie:?}"))
        .unix_timestamp();
    let week = 7 * 24 * 60 * 60;
    assert!(
        (expires - now_secs() - week).abs() < 120,
        "expires in {} s",
        expires - now_secs()
    );
    // An opaque id: 256 bits, base64url.
    let value = cookie.value().to_owned();
    assert_eq!(value.len(), 43, "{value:?}");
    assert!(value
        .bytes()
        .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_'));
    // Scripts cannot read it.
    assert_eq!(b.execute("return document.cookie").await, "");
    value
}

/// The session cookie's value the current page sees, if any.
async fn session_cookie(b: &Browser) -> Option<String> {
    b.cookies()
        .await
        .into_iter()
        .find(|c| c.name() == SESSION_COOKIE)
        .map(|c| c.value().to_owned())
}

/// The app's cookies in the whole jar (any path), by Chrome DevTools.
async fn app_cookies_in_jar(b: &Browser) -> Vec<Value> {
    b.whole_cookie_jar()
        .await
        .into_iter()
        .filter(|c| c["domain"] == APP_HOST)
        .collect()
}

/// The page's text, parsed as JSON (a JSON document shown by the browser).
async fn page_json(b: &Browser) -> Value {
    let text = b.page_text().await;
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text:?}"))
}

// ---------------------------------------------------------------------------------------------
// Scenarios
// ---------------------------------------------------------------------------------------------

/// The page first asked for, query string and all, is where the browser lands after signing
/// in at a provider on another site; the browser keeps the session cookie alone.
#[tokio::test]
async fn sign_in_lands_on_the_page_first_asked_for_with_its_query() {
    let b = Browser::start().await;
    let it = OidcApp::start(OidcClient::Confidential, |l| l).await;
    let first = "/protected?q=caf%C3%A9+au+lait&tab=2&empty=&x=%2F%2Fevil.example";
    b.goto(&it.url(first)).await;
    oidc_sign_in(&b, "alice").await;
    b.wait_for_exact_url(&it.url(first)).await;
    assert_eq!(b.text("#who").await, "alice");
    assert_eq!(b.text("#where").await, first);
    only_the_session_cookie(&b).await;
    // A reload keeps the session (the cookie goes with a same-site request).
    b.refresh().await;
    assert_eq!(b.text("#who").await, "alice");
}

/// A public client (no secret: PKCE alone) signs in across sites, and the handler sees the
/// user the provider described.
#[tokio::test]
async fn public_client_signs_in() {
    let b = Browser::start().await;
    let it = OidcApp::start(OidcClient::Public, |l| l).await;
    b.goto(&it.url("/protected?client=public")).await;
    oidc_sign_in(&b, "bob").await;
    b.wait_for_exact_url(&it.url("/protected?client=public"))
        .await;
    assert_eq!(b.text("#who").await, "bob");
    b.goto(&it.url("/me")).await;
    let me = page_json(&b).await;
    assert_eq!(me["subject"], "bob");
    assert_eq!(me["claims"]["name"], "Bob");
    only_the_session_cookie(&b).await;
}

/// Two tabs start a login at once (two pending logins, two cookies); each finishes in its own
/// order and lands on its own page, and both tabs end signed in.
#[tokio::test]
async fn two_tabs_sign_in_at_once() {
    let b = Browser::start().await;
    let it = EmbeddedApp::start(|l| l).await;
    let tab_a = b.current_tab().await;
    b.goto(&it.url("/protected?tab=a")).await;
    embedded_form(&b).await;
    let tab_b = b.new_tab().await;
    b.goto(&it.url("/protected?tab=b")).await;
    embedded_form(&b).await;

    let jar: Vec<Value> = app_cookies_in_jar(&b).await;
    let pending: Vec<&Value> = jar
        .iter()
        .filter(|c| {
            c["name"]
                .as_str()
                .unwrap()
                .starts_with(PENDING_COOKIE_PREFIX)
        })
        .collect();
    assert_eq!(pending.len(), 2, "two pending logins: {jar:#?}");
    // Besides them, only the index of pending logins (Path=/, so that the start of a login
    // can drop the oldest past the cap).
    assert_eq!(jar.len(), 3, "{jar:#?}");
    assert!(jar.iter().any(|c| c["name"] == PENDING_INDEX_COOKIE));

    // The second tab finishes first.
    embedded_sign_in(&b, "alice").await;
    b.wait_for_exact_url(&it.url("/protected?tab=b")).await;
    assert_eq!(b.text("#who").await, "alice");

    b.switch_to(&tab_a).await;
    embedded_sign_in(&b, "alice").await;
    b.wait_for_exact_url(&it.url("/protected?tab=a")).await;
    assert_eq!(b.text("#who").await, "alice");

    // The other tab is still signed in (one browser, one session cookie).
    b.switch_to(&tab_b).await;
    b.refresh().await;
    b.wait_for_exact_url(&it.url("/protected?tab=b")).await;
    assert_eq!(b.text("#who").await, "alice");
    assert_eq!(it.provider().codes_redeemed(), 2);
    only_the_session_cookie(&b).await;
    assert_eq!(
        app_cookies_in_jar(&b).await.len(),
        1,
        "no pending login left"
    );
}

/// Loading the callback URL again after signing in (and reloading it) shows a page that says
/// the sign-in response is spent; it neither redeems the code a second time nor touches the
/// session.
#[tokio::test]
async fn reloading_the_callback_keeps_the_session_and_redeems_no_code_twice() {
    let b = Browser::start().await;
    let it = EmbeddedApp::start(|l| l).await;
    b.goto(&it.url("/protected?from=reload")).await;
    embedded_sign_in(&b, "alice").await;
    b.wait_for_exact_url(&it.url("/protected?from=reload"))
        .await;
    let session = only_the_session_cookie(&b).await;
    let callbacks = it.requests.to("/auth/callback");
    assert_eq!(callbacks.len(), 1, "{:#?}", it.requests.all());
    assert_eq!(it.provider().codes_redeemed(), 1);

    // Signed in already: the spent callback sends the browser home, not to an error.
    b.goto(&it.url(&callbacks[0])).await;
    b.wait_for_exact_url(&it.url("/")).await;
    assert_eq!(b.text("#who").await, "signed in as alice");
    b.goto(&it.url(&callbacks[0])).await;
    b.wait_for_exact_url(&it.url("/")).await;
    assert_eq!(it.requests.to("/auth/callback").len(), 3);
    assert_eq!(it.provider().token_requests(), 1, "the code went out once");
    assert_eq!(it.provider().codes_redeemed(), 1);

    b.goto(&it.url("/protected?from=reload")).await;
    b.wait_for_exact_url(&it.url("/protected?from=reload"))
        .await;
    assert_eq!(b.text("#who").await, "alice");
    assert_eq!(session_cookie(&b).await, Some(session), "the same session");
}

/// The back button after signing in goes back to the provider's form (the callback is not in
/// the history: it redirected); forward returns to the signed-in page. Signing in again on
/// that stale form is refused at the state check, before any code is redeemed, and the
/// session stays.
#[tokio::test]
async fn back_button_after_sign_in() {
    let b = Browser::start().await;
    let it = EmbeddedApp::start(|l| l).await;
    let page = it.url("/protected?from=back");
    b.goto(&page).await;
    embedded_sign_in(&b, "alice").await;
    b.wait_for_exact_url(&page).await;
    let session = only_the_session_cookie(&b).await;

    b.back().await;
    embedded_form(&b).await;
    assert_eq!(it.requests.to("/auth/callback").len(), 1);
    b.forward().await;
    b.wait_for_exact_url(&page).await;
    assert_eq!(b.text("#who").await, "alice");

    // Back again, and sign in on that old form. Whether the browser shows the spent form
    // from its back-forward cache (the provider refuses it) or loads it anew (the provider
    // answers with the spent state, which the app refuses), no code is redeemed a second
    // time and the session stays.
    b.back().await;
    embedded_sign_in(&b, "alice").await;
    b.wait_until(
        "the provider or the app to refuse the spent login",
        || async {
            let text = b.page_text().await;
            let home = b.url().await.as_str() == it.url("/");
            (text.contains("This login request is unknown, expired or was already answered")
                || home)
                .then_some(())
        },
    )
    .await;
    assert_eq!(it.provider().token_requests(), 1, "no second redemption");

    b.goto(&page).await;
    b.wait_for_exact_url(&page).await;
    assert_eq!(b.text("#who").await, "alice");
    assert_eq!(session_cookie(&b).await, Some(session));
}

/// Through the demo binary (the README's demo, its embedded provider on 127.0.0.2): sign in,
/// sign out with the demo's button, and the protected page asks for a login again.
#[tokio::test]
async fn demo_sign_out_then_the_protected_page_asks_for_login_again() {
    let b = Browser::start().await;
    let demo = Demo::start(&[("DEV_PROVIDER_ADDR", "127.0.0.2:0")]);
    assert!(demo.banner.contains("http://127.0.0.2:"), "{}", demo.banner);
    b.goto(&demo.url("/")).await;
    assert!(b.text("#who").await.contains("Not signed in"));
    b.click("#signin").await;
    embedded_sign_in(&b, "maria").await;
    b.wait_for_exact_url(&demo.url("/protected")).await;
    b.wait_for_text("#welcome", "Welcome, Maria").await;
    assert_eq!(b.text("#subject").await, "maria");
    only_the_session_cookie(&b).await;

    b.goto(&demo.url("/logout")).await;
    b.click("#sign-out").await;
    b.wait_for_exact_url(&demo.url("/logged-out")).await;
    b.find("#bye").await;
    assert_eq!(session_cookie(&b).await, None, "the cookie is cleared");

    b.goto(&demo.url("/protected")).await;
    embedded_form(&b).await;
    b.goto(&demo.url("/")).await;
    assert!(b.text("#who").await.contains("Not signed in"));
    assert!(demo.logs().contains("login completed"), "{}", demo.logs());
}

/// "Cancel" at the provider comes back as `access_denied`: a page that says so, whose
/// "Try again" starts a new login that lands on the page first asked for.
#[tokio::test]
async fn cancel_at_the_provider_shows_the_error_page_and_try_again_works() {
    let b = Browser::start().await;
    let it = EmbeddedApp::start(|l| l).await;
    let page = it.url("/protected?after=cancel");
    b.goto(&page).await;
    embedded_form(&b).await;
    b.click("button[value=cancel]").await;
    b.wait_for_url("the app's error page", |u| {
        u.host_str() == Some(APP_HOST) && u.path() == "/auth/callback"
    })
    .await;
    b.wait_for_text("h1", "Sign-in was cancelled").await;
    assert!(b.page_text().await.contains("access_denied"));
    assert_eq!(app_cookies_in_jar(&b).await, Vec::<Value>::new());

    b.click("a[href^='/auth/login']").await;
    embedded_sign_in(&b, "alice").await;
    b.wait_for_exact_url(&page).await;
    assert_eq!(b.text("#who").await, "alice");
    assert_eq!(it.provider().codes_redeemed(), 1);
}

/// The same at oidc-provider, across sites: its "[ Cancel ]" link answers `access_denied`.
#[tokio::test]
async fn cancel_at_oidc_provider_shows_the_error_page_and_try_again_works() {
    let b = Browser::start().await;
    let it = OidcApp::start(OidcClient::Confidential, |l| l).await;
    let page = it.url("/protected?after=cancel");
    b.goto(&page).await;
    oidc_form(&b).await;
    b.click("a[href*='/abort']").await;
    b.wait_for_text("h1", "Sign-in was cancelled").await;
    assert!(b
        .url()
        .await
        .as_str()
        .starts_with(&it.url("/auth/callback?")));
    b.click("a[href^='/auth/login']").await;
    oidc_sign_in(&b, "carol").await;
    b.wait_for_exact_url(&page).await;
    assert_eq!(b.text("#who").await, "carol");
}

/// A session that expires (idle timeout) while two tabs are open: the tab used next signs in
/// again (the provider, which still knows the user, answers at once) and is back on its own
/// page; the other tab then uses the new session.
#[tokio::test]
async fn an_expired_session_signs_in_again_and_returns_to_that_tabs_page() {
    const IDLE: Duration = Duration::from_secs(4);
    let b = Browser::start().await;
    let it = OidcApp::start(OidcClient::Confidential, |l| l.with_idle_timeout(IDLE)).await;
    let (page_a, page_b) = (it.url("/protected?tab=a"), it.url("/protected?tab=b"));
    let tab_a = b.current_tab().await;
    b.goto(&page_a).await;
    oidc_sign_in(&b, "alice").await;
    b.wait_for_exact_url(&page_a).await;
    let first = only_the_session_cookie(&b).await;
    let tab_b = b.new_tab().await;
    b.goto(&page_b).await;
    b.wait_for_exact_url(&page_b).await;
    assert_eq!(b.text("#who").await, "alice");
    assert_eq!(session_cookie(&b).await.as_deref(), Some(first.as_str()));

    // Wait until the server has let the session go (the cookie itself lives on).
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let me = it.url("/me");
    b.wait_until("the session to expire on the server", || async {
        let res = http
            .get(&me)
            .header("accept", "application/json")
            .header("cookie", format!("{SESSION_COOKIE}={first}"))
            .send()
            .await
            .ok()?;
        (res.status() == reqwest::StatusCode::UNAUTHORIZED).then_some(())
    })
    .await;

    b.switch_to(&tab_a).await;
    b.refresh().await;
    b.wait_for_exact_url(&page_a).await;
    assert_eq!(b.text("#who").await, "alice");
    let second = only_the_session_cookie(&b).await;
    assert_ne!(first, second, "a new session");

    b.switch_to(&tab_b).await;
    b.refresh().await;
    b.wait_for_exact_url(&page_b).await;
    assert_eq!(b.text("#who").await, "alice");
    assert_eq!(session_cookie(&b).await, Some(second));
}

/// After sign-in the jar holds the session cookie alone (HttpOnly, SameSite=Lax, Path=/), no
/// pending-login cookie is left at any path, and no cookie of any site, nor the page, holds a
/// token. While the login is at the provider, the pending cookie has its own flags.
#[tokio::test]
async fn the_cookie_jar_holds_no_token_and_only_the_session_cookie() {
    let b = Browser::start().await;
    let it = EmbeddedApp::start(|l| l).await;
    b.goto(&it.url("/protected?jar=1")).await;
    embedded_form(&b).await;

    let jar = app_cookies_in_jar(&b).await;
    let pending: Vec<&Value> = jar
        .iter()
        .filter(|c| {
            c["name"]
                .as_str()
                .unwrap()
                .starts_with(PENDING_COOKIE_PREFIX)
        })
        .collect();
    assert_eq!(pending.len(), 1, "{jar:#?}");
    // The index of pending logins: no secret (hashes and times), HttpOnly, Lax, Path=/.
    let index: Vec<&Value> = jar
        .iter()
        .filter(|c| c["name"] == PENDING_INDEX_COOKIE)
        .collect();
    assert_eq!(index.len(), 1, "{jar:#?}");
    assert_eq!(jar.len(), 2, "{jar:#?}");
    assert_eq!(index[0]["httpOnly"], true);
    assert_eq!(index[0]["sameSite"], "Lax");
    assert_eq!(index[0]["path"], "/");
    let p = pending[0];
    assert!(p["name"]
        .as_str()
        .unwrap()
        .starts_with(PENDING_COOKIE_PREFIX));
    assert_eq!(p["httpOnly"], true, "{p}");
    assert_eq!(p["sameSite"], "Lax", "{p}");
    assert_eq!(p["path"], "/auth/callback", "{p}");
    assert_eq!(p["secure"], false, "{p}");
    let expires_in = p["expires"].as_f64().unwrap() as i64 - now_secs();
    assert!((590..=600).contains(&expires_in), "{p}");

    embedded_sign_in(&b, "alice").await;
    b.wait_for_exact_url(&it.url("/protected?jar=1")).await;
    let session = only_the_session_cookie(&b).await;

    let jar = b.whole_cookie_jar().await;
    let app: Vec<&Value> = jar.iter().filter(|c| c["domain"] == APP_HOST).collect();
    assert_eq!(app.len(), 1, "{jar:#?}");
    assert_eq!(app[0]["name"], SESSION_COOKIE);
    assert_eq!(app[0]["value"], session.as_str());

    let tokens: Vec<String> = it
        .provider()
        .issued_access_tokens()
        .into_iter()
        .chain(it.provider().issued_refresh_tokens())
        .collect();
    assert_eq!(tokens.len(), 2, "one access and one refresh token");
    let page = b.client().source().await.unwrap();
    for token in &tokens {
        for cookie in &jar {
            assert!(
                !cookie.to_string().contains(token.as_str()),
                "a token in a cookie: {cookie}"
            );
        }
        assert!(!page.contains(token.as_str()), "a token in the page");
        assert!(!b.url().await.as_str().contains(token.as_str()));
    }
}

/// A GitHub-style provider (no OpenID Connect: no ID token, the user from `/user` with a
/// numeric `id`, a token endpoint that answers JSON only when asked), through the demo binary.
#[tokio::test]
async fn github_style_provider_signs_in_through_the_demo() {
    let b = Browser::start().await;
    let demo = Demo::start(&[
        ("DEV_PROVIDER_ADDR", "127.0.0.2:0"),
        ("DEV_PROVIDER_SHAPE", "github"),
    ]);
    assert!(demo.banner.contains("GitHub-style"), "{}", demo.banner);
    b.goto(&demo.url("/protected?from=github")).await;
    embedded_form(&b).await;
    assert!(b.page_text().await.contains("read:user"), "GitHub's scope");
    embedded_sign_in(&b, "octo-cat").await;
    b.wait_for_exact_url(&demo.url("/protected?from=github"))
        .await;
    b.wait_for_text("#welcome", "Welcome, Octo-cat").await;
    let subject = b.text("#subject").await;
    assert!(
        subject.parse::<u64>().is_ok(),
        "the numeric id: {subject:?}"
    );
    only_the_session_cookie(&b).await;

    b.goto(&demo.url("/me")).await;
    let me = page_json(&b).await;
    assert_eq!(me["subject"], subject.as_str());
    assert_eq!(me["claims"]["login"], "octo-cat");
    assert_eq!(me["claims"]["id"].as_u64(), subject.parse::<u64>().ok());
    assert!(me["claims"].get("sub").is_none(), "{me}");
    assert_eq!(me["scopes"], serde_json::json!(["read:user"]));
}

/// OpenID Connect RP-initiated logout, across sites: signing out ends the app's session at
/// once and sends the browser to the provider's end-session page; "Yes, sign me out" ends the
/// provider's session too and comes back, with the `state` whose cookie must survive the
/// cross-site return, to the post-logout page. The next sign-in asks for the password again.
#[tokio::test]
async fn rp_initiated_logout_signs_out_at_the_provider_too() {
    let b = Browser::start().await;
    let it = OidcApp::start_discovered(OidcClient::Confidential).await;
    let page = it.url("/protected?via=discovery");
    b.goto(&page).await;
    oidc_sign_in(&b, "dora").await;
    b.wait_for_exact_url(&page).await;
    assert_eq!(b.text("#who").await, "dora");
    only_the_session_cookie(&b).await;

    b.goto(&it.url("/logout")).await;
    b.click("#sign-out").await;
    b.wait_for_url("the provider's end-session page", |u| {
        u.host_str() == Some(PROVIDER_HOST) && u.path().starts_with("/session/end")
    })
    .await;
    // Signed out of the app already; only the logout state waits, at its own path.
    let jar = app_cookies_in_jar(&b).await;
    assert_eq!(jar.len(), 1, "{jar:#?}");
    assert_eq!(jar[0]["name"], "oauth2_logout_state", "{jar:#?}");
    assert_eq!(jar[0]["path"], "/auth/logout-callback");
    assert_eq!(jar[0]["httpOnly"], true);
    assert_eq!(jar[0]["sameSite"], "Lax");

    b.click("button[name=logout][value=yes]").await;
    b.wait_for_exact_url(&it.url("/logged-out")).await;
    b.find("#bye").await;
    assert_eq!(
        app_cookies_in_jar(&b).await,
        Vec::<Value>::new(),
        "no session and no logout state left"
    );

    // The provider forgot the user too: no silent sign-in.
    b.goto(&it.url("/protected?again=1")).await;
    oidc_form(&b).await;
}
