//! Where the browser goes after a login or a logout, through the real `LoginLayer` over
//! real HTTP against the embedded provider: the resolved return path, never one that a
//! browser reads as a network path, and a pending cookie the browser keeps.

use crate::support;

use reqwest::{Method, StatusCode};
use support::app::{self, Browser, Options};
use tower_oauth2_login::LoginLayer;

/// What browsers keep of one cookie: 4096 bytes of name and value (RFC 6265bis section
/// 5.7; Chrome and Firefox drop a larger cookie without a word).
const BROWSER_COOKIE_LIMIT: usize = 4096;

fn login_url(app: &app::TestApp, return_to: &str) -> String {
    let query: String = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("return_to", return_to)
        .finish();
    app.url(&format!("/auth/login?{query}"))
}

/// The `name=value` part of the pending-login cookie the login start set.
fn pending_pair(res: &app::Seen) -> String {
    let set = res
        .set_cookies()
        .into_iter()
        .find(|c| c.starts_with("oauth2_pending_"))
        .expect("a pending-login cookie");
    set.split(';').next().unwrap().to_string()
}

/// A whole login that starts at `<login path>?return_to=<return_to>`: the pending cookie
/// the browser was given, and where the callback's 303 sends it.
async fn login_returning_to(app: &app::TestApp, return_to: &str) -> (String, Option<String>) {
    let browser = Browser::new();
    let start = browser.get(&login_url(app, return_to)).await;
    assert_eq!(start.status, StatusCode::SEE_OTHER, "{start:#?}");
    let pair = pending_pair(&start);
    let auth = start.location().unwrap().to_string();
    let callback = app.authorize(&browser, &auth).await;
    let done = browser.get(&callback).await;
    assert_eq!(
        done.status,
        StatusCode::SEE_OTHER,
        "{return_to:?}: {done:#?}"
    );
    (pair, done.location().map(str::to_string))
}

#[tokio::test]
async fn the_callback_redirects_to_the_resolved_path() {
    let app = app::start().await;
    for (given, expected) in [
        // Dot segments that climb to a `//` path: a browser would land on the network path
        // `//evil.example`; refused, so the login goes home.
        ("/.//evil.example", "/"),
        ("/..//evil.example", "/"),
        ("/%2e%2e//evil.example", "/"),
        ("/%2E%2e//evil.example", "/"),
        ("/a/../..//evil.example", "/"),
        ("/%2e%2e%2f%2fevil.example", "/"),
        ("/..;//evil.example", "/"),
        // Harmless dot segments: stored and redirected to resolved.
        ("/protected/./x/../y?p=1", "/protected/y?p=1"),
        ("/a/%2e%2e/protected?q=%2F", "/protected?q=%2F"),
        ("/caf\u{e9}", "/caf%C3%A9"),
    ] {
        let (_, location) = login_returning_to(&app, given).await;
        assert_eq!(location.as_deref(), Some(expected), "return_to {given:?}");
    }
}

#[tokio::test]
async fn a_protected_page_behind_dot_segments_returns_resolved() {
    let app = app::start().await;
    let browser = Browser::new();
    // The request path as sent on the wire, dot segments left in (reqwest resolves them
    // itself, so the request goes through hyper's client directly).
    let start = raw_get(&app, "/x/../protected/./?p=1").await;
    assert_eq!(start.0, StatusCode::SEE_OTHER);
    let auth = start.1.expect("a redirect to the provider");
    let cookie = start.2.expect("a pending cookie");
    let name_value = cookie.split(';').next().unwrap();
    let url = url::Url::parse(&app.base).unwrap();
    browser
        .jar
        .add_cookie_str(&format!("{name_value}; Path=/auth/callback"), &url);
    let callback = app.authorize(&browser, &auth).await;
    let done = browser.get(&callback).await;
    assert_eq!(done.location(), Some("/protected/?p=1"));
}

/// A `GET` of `path_and_query` exactly as given, from a browser navigation: status,
/// `Location` and the pending cookie set.
async fn raw_get(
    app: &app::TestApp,
    path_and_query: &str,
) -> (StatusCode, Option<String>, Option<String>) {
    use http_body_util::Empty;
    use hyper_util::client::legacy::Client;
    use hyper_util::rt::TokioExecutor;
    let client: Client<_, Empty<bytes::Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let uri: hyper::Uri = format!("http://{}{path_and_query}", app.addr)
        .parse()
        .unwrap();
    let req = hyper::Request::get(uri)
        .header("accept", app::HTML)
        .header("sec-fetch-mode", "navigate")
        .body(Empty::new())
        .unwrap();
    let res = client.request(req).await.unwrap();
    let status = StatusCode::from_u16(res.status().as_u16()).unwrap();
    let header = |name: &str| {
        res.headers()
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find(|v| name != "set-cookie" || v.starts_with("oauth2_pending_"))
            .map(str::to_string)
    };
    (status, header("location"), header("set-cookie"))
}

/// Return paths whose sealed cookie would be over the browser's limit (quotes and
/// backslashes that JSON escapes, multi-byte characters and characters that the
/// resolution percent-encodes, `%` sequences): the cookie stays within the limit, and the
/// login returns home rather than failing without a word.
#[tokio::test]
async fn the_pending_cookie_always_fits_in_a_browser() {
    let app = app::start().await;
    let worst = [
        format!("/{}", "\"".repeat(2040)),
        format!("/x?q={}", "\"".repeat(2040)),
        format!("/x?q={}", "%22".repeat(680)),
        format!("/{}", "%25".repeat(682)),
        format!("/{}", "\u{e9}".repeat(1023)),
        format!("/{}", "\u{1F600}".repeat(511)),
        format!("/{}", "<>`{}".repeat(409)),
        format!("/x?{}", "\\".repeat(2040)),
        format!("/x?q={}", "\u{7f}".repeat(2040)),
        format!("/{}", "a".repeat(2047)),
    ];
    for return_to in &worst {
        let (pair, location) = login_returning_to(&app, return_to).await;
        assert!(
            pair.len() <= BROWSER_COOKIE_LIMIT,
            "a {}-byte pending cookie for a {}-byte return path",
            pair.len(),
            return_to.len()
        );
        let location = location.unwrap();
        assert!(
            location == "/" || location.len() >= 1000,
            "either home or the whole path, got {location:?}"
        );
    }
}

/// A long return path that fits is kept, whole.
#[tokio::test]
async fn a_long_return_path_that_fits_is_kept() {
    let app = app::start().await;
    let long = format!("/protected?p={}", "a".repeat(1900));
    let (pair, location) = login_returning_to(&app, &long).await;
    assert!(pair.len() <= BROWSER_COOKIE_LIMIT, "{}", pair.len());
    assert_eq!(location.as_deref(), Some(long.as_str()));
    let encoded = format!("/p{}", "\u{e9}".repeat(400));
    let (pair, location) = login_returning_to(&app, &encoded).await;
    assert!(pair.len() <= BROWSER_COOKIE_LIMIT, "{}", pair.len());
    assert_eq!(
        location.as_deref(),
        Some(format!("/p{}", "%C3%A9".repeat(400)).as_str())
    );
}

fn valid() -> tower_oauth2_login::LoginLayerBuilder {
    LoginLayer::builder()
        .with_client_id("c")
        .with_authorization_endpoint("https://idp.example/authorize")
        .with_token_endpoint("https://idp.example/token")
        .with_userinfo_endpoint("https://idp.example/userinfo")
        .with_redirect_url("https://app.example/auth/callback")
}

#[test]
fn configured_paths_that_resolve_elsewhere_are_refused() {
    for bad in [
        "/.//evil.example",
        "/..//evil.example",
        "/%2e%2e//evil.example",
        "/a/../..//evil.example",
    ] {
        assert!(
            valid().with_post_logout_redirect(bad).build().is_err(),
            "post-logout redirect {bad:?}"
        );
        assert!(
            valid().with_login_path(bad).build().is_err(),
            "login path {bad:?}"
        );
        assert!(
            valid().with_logout_path(bad).build().is_err(),
            "logout path {bad:?}"
        );
    }
    // A path the layer compares with request paths must be one a browser can send.
    for unreachable in ["/auth/./login", "/auth/x/../login", "/auth/%2e/login"] {
        assert!(
            valid().with_login_path(unreachable).build().is_err(),
            "{unreachable:?}"
        );
    }
    assert!(valid()
        .with_post_logout_redirect("/bye?x=1")
        .build()
        .is_ok());
}

#[tokio::test]
async fn logout_redirects_to_the_resolved_post_logout_path() {
    let app = app::start_with(Options {
        layer: Box::new(|b| {
            b.with_post_logout_redirect("/x/../logged-out")
                .with_public_path("/logged-out")
        }),
        ..Default::default()
    })
    .await;
    let browser = Browser::new();
    app.login(&browser, "/protected").await;
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
}
