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
    let body = format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{title}</title>\
         <style>body{{font-family:system-ui,sans-serif;max-width:36rem;margin:4rem auto;padding:0 1rem;color:#222}}\
         h1{{font-size:1.4rem}}a{{color:#0b57d0}}</style></head>\
         <body><h1>{title}</h1><p>{text}</p>{retry}</body></html>\n",
        title = escape(title),
        text = escape(text),
    );
    let mut res = Response::new(Bytes::from(body));
    *res.status_mut() = status;
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
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
    fn html_page_is_escaped_and_not_stored() {
        let res = html(StatusCode::BAD_REQUEST, "<t>", "<b>", Some("/a?b=\"c\""));
        let body = std::str::from_utf8(res.body()).unwrap();
        assert!(body.contains("&lt;t&gt;"));
        assert!(!body.contains("<b>"));
        assert!(body.contains(r#"href="/a?b=&quot;c&quot;""#));
        assert_eq!(res.headers()[header::CACHE_CONTROL], "no-store");
    }
}
