//! Limits on what the layer accepts and reads: the pending cookies a browser collects, the
//! back-channel logout body. (Provider answers: `faults.rs`, huge and endless bodies.)

use reqwest::StatusCode;

use super::support::app::{self, Browser, Options};

/// Many page loads that start a login and never finish it (tabs restored after the session
/// ended, a crawler with a cookie jar): the pending cookies stay at the cap, so the
/// `Cookie` header of the callback stays small (proxies refuse headers past 8 KiB), and the
/// newest logins still complete.
#[tokio::test]
async fn pending_logins_stay_capped_however_many_start() {
    let app = app::start().await;
    let browser = Browser::new();
    let mut authorizations = Vec::new();
    for i in 0..30 {
        authorizations.push(
            app.start_login(&browser, &format!("/protected?tab={i}"))
                .await,
        );
    }
    let header = browser.cookies_for(&app.redirect_url);
    let pending = header.matches("oauth2_pending_").count();
    assert_eq!(pending, 5, "{header}");
    assert!(header.len() < 3 * 1024, "{} bytes: {header}", header.len());
    // The newest completes; the oldest were dropped.
    let callback = app
        .authorize(&browser, authorizations.last().unwrap())
        .await;
    let done = browser.get(&callback).await;
    assert_eq!(done.location(), Some("/protected?tab=29"));
    // The oldest was dropped: its callback redeems nothing (the browser, signed in now,
    // is sent home).
    let redeemed = app.provider.token_requests();
    let old = app.authorize(&browser, &authorizations[0]).await;
    assert_eq!(browser.get(&old).await.location(), Some("/"));
    assert_eq!(app.provider.token_requests(), redeemed);
    // Pages stay reachable, and the index cookie stays small.
    let index = browser
        .cookie(&app.base, "oauth2_logins")
        .unwrap_or_default();
    assert!(index.len() <= 5 * 24, "{index}");
}

/// Long return paths make bigger pending cookies: still capped, each under the 4 KiB a
/// browser keeps.
#[tokio::test]
async fn long_return_paths_make_bounded_pending_cookies() {
    let app = app::start().await;
    let browser = Browser::new();
    for i in 0..10 {
        let path = format!("/protected?{}={i}", "q".repeat(2000));
        app.start_login(&browser, &path).await;
    }
    let header = browser.cookies_for(&app.redirect_url);
    assert_eq!(header.matches("oauth2_pending_").count(), 5);
    for pair in header.split("; ") {
        assert!(pair.len() < 4096, "{}", pair.len());
    }
    assert!(header.len() < 5 * 4096);
}

/// A malicious or garbled index cookie changes nothing but which of the browser's own
/// pending cookies are dropped first.
#[tokio::test]
async fn a_forged_index_cookie_is_harmless() {
    let app = app::start().await;
    let browser = Browser::new();
    let auth = app.start_login(&browser, "/protected?mine").await;
    let callback = app.authorize(&browser, &auth).await;
    for forged in [
        "x",
        "AAAAAAAAAAA.0|BBBBBBBBBBB.99999999999999999999",
        &"AAAAAAAAAAA.1|".repeat(2000),
        "AAAAAAAAAAA.18446744073709551615",
    ] {
        let cookie = format!("oauth2_logins={forged}; {}", browser.cookies_for(&callback));
        let res = Browser::new()
            .request(
                reqwest::Method::GET,
                &app.url("/protected?other"),
                &[("cookie", &cookie), ("accept", app::HTML)],
            )
            .await;
        assert_eq!(res.status, StatusCode::SEE_OTHER);
        assert!(res.set_cookies().len() <= 2 + 5, "{:?}", res.set_cookies());
    }
    // The browser's own login still completes.
    assert_eq!(
        browser.get(&callback).await.location(),
        Some("/protected?mine")
    );
}

#[tokio::test]
async fn back_channel_logout_bodies_past_64_kib_are_refused() {
    let app = app::start_with(Options {
        discover: true,
        ..Default::default()
    })
    .await;
    let browser = Browser::new();
    app.login(&browser, "/protected").await;
    let url = app.url("/auth/backchannel-logout");
    let token = app
        .provider
        .mint_logout_token(app::CLIENT_ID, Some("alice"), None, Default::default())
        .unwrap();
    let http = reqwest::Client::new();
    let form = "application/x-www-form-urlencoded";
    // A valid token padded past the limit, with a length and without one (chunked).
    let padded = format!("logout_token={token}&pad={}", "p".repeat(70 * 1024));
    let res = http
        .post(&url)
        .header("content-type", form)
        .body(padded.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        chunked_post(
            app.addr,
            "/auth/backchannel-logout",
            form,
            padded.as_bytes()
        )
        .await,
        400
    );
    assert_eq!(
        browser.get_json(&app.url("/me")).await.status,
        StatusCode::OK,
        "no session ended"
    );
    // Under the limit, the same token works.
    let res = http
        .post(&url)
        .header("content-type", form)
        .body(format!("logout_token={token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(
        browser.get_json(&app.url("/me")).await.status,
        StatusCode::UNAUTHORIZED
    );
}

/// A POST with a chunked body (no Content-Length), over a raw connection; the status.
async fn chunked_post(
    addr: std::net::SocketAddr,
    path: &str,
    content_type: &str,
    body: &[u8],
) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut request = format!(
        "POST {path} HTTP/1.1\r\nhost: {addr}\r\ncontent-type: {content_type}\r\n\
         transfer-encoding: chunked\r\nconnection: close\r\n\r\n"
    )
    .into_bytes();
    for chunk in body.chunks(8192) {
        request.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        request.extend_from_slice(chunk);
        request.extend_from_slice(b"\r\n");
    }
    request.extend_from_slice(b"0\r\n\r\n");
    // The server may answer and close before reading it all.
    let _ = stream.write_all(&request).await;
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer).await;
    let head = String::from_utf8_lossy(&answer);
    head.split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}
