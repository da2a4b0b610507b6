//! What kind of request this is: a browser's page load (which can follow a redirect to the
//! provider) or an API call (which gets a status and JSON), and whether it comes from
//! another site.

use http::{header, HeaderMap, Method};

/// A top-level page load by a browser, which can follow a redirect to the provider;
/// anything else (fetch/XHR, JSON clients, non-GET) is an API call.
pub(crate) fn is_browser_navigation(method: &Method, headers: &HeaderMap) -> bool {
    if method != Method::GET && method != Method::HEAD {
        return false;
    }
    if headers.contains_key("x-requested-with") {
        return false;
    }
    if let Some(mode) = headers.get("sec-fetch-mode") {
        return mode == "navigate";
    }
    accepts_html(headers)
}

fn accepts_html(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("text/html"))
}

/// Whether an error should be JSON rather than a page.
pub(crate) fn wants_json(headers: &HeaderMap) -> bool {
    if headers.contains_key("x-requested-with") {
        return true;
    }
    let json = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("application/json") || v.contains("+json"));
    json && !accepts_html(headers)
}

/// Whether the request comes from another site than `app_origin` (`scheme://host[:port]`), by `Sec-Fetch-Site` (modern browsers) or
/// else by `Origin`. A request with neither is not a browser's cross-site form post
/// (those carry `Origin`), and the `SameSite=Lax` session cookie would not be sent with
/// one anyway.
pub(crate) fn is_cross_site(app_origin: &str, headers: &HeaderMap) -> bool {
    if let Some(site) = headers.get("sec-fetch-site") {
        return !(site == "same-origin" || site == "none");
    }
    if let Some(origin) = headers.get(header::ORIGIN) {
        return origin.as_bytes() != app_origin.as_bytes();
    }
    false
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (n, v) in pairs {
            h.append(*n, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn classifies_navigation_and_api_calls() {
        let html = headers(&[("accept", "text/html,application/xhtml+xml,*/*;q=0.8")]);
        assert!(is_browser_navigation(&Method::GET, &html));
        assert!(is_browser_navigation(&Method::HEAD, &html));
        assert!(!is_browser_navigation(&Method::POST, &html));
        assert!(!is_browser_navigation(
            &Method::GET,
            &headers(&[("accept", "application/json")])
        ));
        assert!(!is_browser_navigation(
            &Method::GET,
            &headers(&[
                ("accept", "text/html"),
                ("x-requested-with", "XMLHttpRequest")
            ])
        ));
        assert!(!is_browser_navigation(
            &Method::GET,
            &headers(&[("accept", "text/html"), ("sec-fetch-mode", "cors")])
        ));
        assert!(is_browser_navigation(
            &Method::GET,
            &headers(&[("sec-fetch-mode", "navigate")])
        ));
        assert!(!is_browser_navigation(&Method::GET, &HeaderMap::new()));
    }

    #[test]
    fn json_errors_for_api_clients() {
        assert!(wants_json(&headers(&[("accept", "application/json")])));
        assert!(wants_json(&headers(&[("x-requested-with", "fetch")])));
        assert!(!wants_json(&headers(&[(
            "accept",
            "text/html, application/json"
        )])));
        assert!(!wants_json(&HeaderMap::new()));
    }
}
