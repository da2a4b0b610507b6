//! The few responses the layer writes itself: small HTML pages and JSON bodies.
//!
//! Written by hand because they are a dozen lines of markup; everything put into them is
//! HTML-escaped, and every one of them is marked `no-store`.

use bytes::Bytes;
use http::{header, HeaderValue, Response, StatusCode};

/// Escapes text for an HTML text node or a double-quoted attribute.
pub(crate) fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// An HTML page with a title, a paragraph and an optional "Try again" link.
pub(crate) fn html(
    status: StatusCode,
    title: &str,
    text: &str,
    retry_href: Option<&str>,
) -> Response<Bytes> {
    let retry = retry_href
        .map(|href| format!(r#"<p><a href="{}">Try again</a></p>"#, escape(href)))
        .unwrap_or_default();
    let content = format!("<p>{}</p>{retry}", escape(text));
    document(status, title, &content)
}

/// The page a `GET` on the logout path shows: signing out changes state, so it takes a
/// `POST`, and a plain "Sign out" link lands here, on a button that sends one.
pub(crate) fn sign_out_confirmation(action: &str, cancel_href: &str) -> Response<Bytes> {
    let content = format!(
        r#"<p>Do you want to sign out?</p><form method="post" action="{action}"><button type="submit" id="sign-out">Sign out</button> <a href="{cancel}">Cancel</a></form>"#,
        action = escape(action),
        cancel = escape(cancel_href),
    );
    document(StatusCode::OK, "Sign out", &content)
}

/// The frame of every page: a title and `content` (markup the caller has escaped).
///
/// The pages need no script, no image, no font, and are never framed: the policy says so,
/// so that an injected tag could do nothing and another site cannot frame the sign-out
/// button to have it clicked unseen. It sets no `form-action`: browsers hold the
/// redirects after a form's POST to it, and signing out goes on to the provider.
fn document(status: StatusCode, title: &str, content: &str) -> Response<Bytes> {
    let body = format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{title}</title>\
         <style>body{{font-family:system-ui,sans-serif;max-width:36rem;margin:4rem auto;padding:0 1rem;color:#222}}\
         h1{{font-size:1.4rem}}a{{color:#0b57d0}}button{{font:inherit;padding:.4rem 1rem}}</style></head>\
         <body><h1>{title}</h1>{content}</body></html>\n",
        title = escape(title),
    );
    let mut res = Response::new(Bytes::from(body));
    *res.status_mut() = status;
    let headers = res.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; \
             base-uri 'none'",
        ),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    no_store(&mut res);
    res
}

/// A JSON body.
pub(crate) fn json(status: StatusCode, value: &serde_json::Value) -> Response<Bytes> {
    let mut res = Response::new(Bytes::from(value.to_string()));
    *res.status_mut() = status;
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    no_store(&mut res);
    res
}

/// A `303 See Other` to `location`.
pub(crate) fn see_other(location: &str) -> Response<Bytes> {
    let mut res = Response::new(Bytes::new());
    *res.status_mut() = StatusCode::SEE_OTHER;
    match HeaderValue::from_str(location) {
        Ok(v) => {
            res.headers_mut().insert(header::LOCATION, v);
        }
        Err(_) => {
            // Only URLs we built ourselves reach here; an invalid one is a bug, and "/" is
            // always a safe place to send the browser.
            res.headers_mut()
                .insert(header::LOCATION, HeaderValue::from_static("/"));
        }
    }
    no_store(&mut res);
    res
}

/// Marks a response as not to be stored by any cache.
pub(crate) fn no_store(res: &mut Response<Bytes>) {
    res.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup() {
        assert_eq!(
            escape(r#"<script>"x"&'y'</script>"#),
            "&lt;script&gt;&quot;x&quot;&amp;&#39;y&#39;&lt;/script&gt;"
        );
    }

    #[test]
    fn sign_out_page_posts_to_the_logout_path_and_cannot_be_framed() {
        let res = sign_out_confirmation("/auth/logout", "/\"x");
        assert_eq!(res.status(), StatusCode::OK);
        let body = std::str::from_utf8(res.body()).unwrap();
        assert!(body.contains(r#"<form method="post" action="/auth/logout">"#));
        assert!(body.contains(r#"<a href="/&quot;x">Cancel</a>"#));
        assert_eq!(res.headers()[header::X_FRAME_OPTIONS], "DENY");
        let csp = res.headers()[header::CONTENT_SECURITY_POLICY]
            .to_str()
            .unwrap();
        assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
        // No `form-action`: browsers apply it to the redirects after the POST, and signing
        // out continues at the provider's end-session endpoint.
        assert!(!csp.contains("form-action"), "{csp}");
        assert_eq!(res.headers()[header::CACHE_CONTROL], "no-store");
    }

    #[test]
    fn html_page_is_escaped_and_not_stored() {
        let res = html(StatusCode::BAD_REQUEST, "<t>", "<b>", Some("/a?b=\"c\""));
        let body = std::str::from_utf8(res.body()).unwrap();
        assert!(body.contains("&lt;t&gt;"));
        assert!(!body.contains("<b>"));
        assert!(body.contains(r#"href="/a?b=&quot;c&quot;""#));
        assert_eq!(res.headers()[header::CACHE_CONTROL], "no-store");
    }
}
