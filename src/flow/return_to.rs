//! Where a login returns to: only a same-origin path, in the form the browser resolves it.

use crate::context::Context;
use crate::http::cookie;

/// The longest `return_to` looked at: no longer one can fit in the cookie that carries it.
/// A bound on the work per request; what decides whether a return path is kept is the size
/// of the sealed cookie as built (see `login::start`).
pub(crate) const MAX_RETURN_TO_LEN: usize = cookie::MAX_COOKIE_PAIR_BYTES;

/// `path` as the browser would resolve it, if that is safe to redirect the browser to
/// after login: a same-origin relative path, with its query and fragment.
///
/// The resolved form is what is returned (dot segments, percent-encoded ones too,
/// removed; what a browser percent-encodes encoded), because that is what a browser reads
/// in a `Location`: a check of the path as given passes `/.//evil.example`, which a browser
/// turns into the network path `//evil.example`.
///
/// Refused: anything not starting with a single `/` (`//host`, `/\host`, `\\host`,
/// schemes), backslashes, control characters and whitespace anywhere, any of those hidden
/// behind percent-encoding (decoded repeatedly), and any path that resolves to one starting
/// with `//`, also after one or more rounds of decoding and with `;` parameters stripped from
/// its segments (a proxy or a framework that decodes once more, or reads `..;` as `..`,
/// must not turn it into a network path either). The fragment is kept: the browser never
/// sends it, so it cannot steer a server, and it lets a page's client-side route survive the
/// login.
pub(crate) fn safe_return_to(path: &str) -> Option<String> {
    if path.len() > MAX_RETURN_TO_LEN {
        return None;
    }
    // The path part: a server splits the query and fragment off before it decodes.
    let path_part = path.split(['?', '#']).next().unwrap_or_default();
    // Decode up to three times to see through double and triple encoding; a value still
    // encoded after that is refused.
    let mut current = std::borrow::Cow::Borrowed(path);
    let mut current_path = std::borrow::Cow::Borrowed(path_part);
    for round in 0..4 {
        if !looks_like_local_path(&current)
            || climbs_to_network_path(&current_path, false)
            || climbs_to_network_path(&current_path, true)
        {
            return None;
        }
        let decoded = percent_decode(&current)?;
        if decoded == *current {
            break;
        }
        if round == 3 {
            return None;
        }
        current_path = std::borrow::Cow::Owned(percent_decode(&current_path)?);
        current = std::borrow::Cow::Owned(decoded);
    }
    // Finally resolve it the way a browser does (the WHATWG URL parser: `.`, `..`, `%2e`
    // and `%2E` dot segments), against a placeholder origin, and keep what came out.
    let base = url::Url::parse("http://origin.invalid/").ok()?;
    let joined = base.join(path).ok()?;
    let resolved = &joined[url::Position::BeforePath..];
    let same_origin = joined.origin() == base.origin()
        && joined.username().is_empty()
        && joined.password().is_none();
    (same_origin && looks_like_local_path(resolved)).then(|| resolved.to_string())
}

/// Whether removing the dot segments of `path` (RFC 3986 section 5.2.4, with `%2e` read as
/// `.` in any case as browsers do) leaves a path that starts with `//`. With
/// `strip_params`, each segment is first cut at its first `;`, as servlet containers read
/// `..;x` as `..`.
fn climbs_to_network_path(path: &str, strip_params: bool) -> bool {
    let Some(rest) = path.strip_prefix('/') else {
        return false;
    };
    let mut segments = rest.split('/').peekable();
    // Only how many segments are kept, and whether the first of them is empty, matter.
    let mut depth = 0usize;
    let mut first_empty = false;
    let mut keep = |depth: &mut usize, empty: bool| {
        if *depth == 0 {
            first_empty = empty;
        }
        *depth += 1;
    };
    while let Some(segment) = segments.next() {
        let segment = if strip_params {
            segment.split(';').next().unwrap_or_default()
        } else {
            segment
        };
        let last = segments.peek().is_none();
        match dot_segment(segment) {
            Some(dots) => {
                if dots == 2 {
                    depth = depth.saturating_sub(1);
                }
                // A trailing dot segment leaves a trailing slash.
                if last {
                    keep(&mut depth, true);
                }
            }
            None => keep(&mut depth, segment.is_empty()),
        }
    }
    depth > 1 && first_empty
}

/// `Some(1)` for `.`, `Some(2)` for `..`, each dot possibly written `%2e` or `%2E`.
fn dot_segment(segment: &str) -> Option<u8> {
    let mut rest = segment.as_bytes();
    let mut dots = 0;
    while !rest.is_empty() {
        if rest[0] == b'.' {
            rest = &rest[1..];
        } else if rest.len() >= 3 && rest[..3].eq_ignore_ascii_case(b"%2e") {
            rest = &rest[3..];
        } else {
            return None;
        }
        dots += 1;
        if dots > 2 {
            return None;
        }
    }
    (dots > 0).then_some(dots)
}

fn looks_like_local_path(p: &str) -> bool {
    let bytes = p.as_bytes();
    bytes.first() == Some(&b'/')
        && bytes.get(1) != Some(&b'/')
        && !p.contains('\\')
        && !p
            .chars()
            .any(|c| c.is_control() || c.is_whitespace() || c == '\u{FEFF}')
}

/// One round of percent-decoding (`+` stays `+`); `None` when the result is not UTF-8.
/// Strict rather than lossy, so that a path and its encoded form are judged alike.
fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: Option<&u8>| b.and_then(|b| (*b as char).to_digit(16));
        if bytes[i] == b'%' {
            if let (Some(high), Some(low)) = (hex(bytes.get(i + 1)), hex(bytes.get(i + 2))) {
                // Two hex digits make one byte: the cast cannot truncate.
                out.push((high * 16 + low) as u8);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8(out).ok()
}

/// `<login path>?return_to=<path>`, for the "Try again" links of error pages.
pub(crate) fn login_href(inner: &Context, return_to: &str) -> String {
    let encoded: String = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("return_to", return_to)
        .finish();
    format!("{}?{}", inner.login_path, encoded)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_local_paths() {
        for ok in [
            "/",
            "/protected",
            "/a/b?c=d&e=%2Ff",
            "/search?q=a+b",
            "/caf%C3%A9",
            "/x#frag",
        ] {
            assert_eq!(safe_return_to(ok).as_deref(), Some(ok), "{ok}");
        }
    }

    #[test]
    fn refuses_open_redirects() {
        for bad in [
            "",
            "//evil.example",
            "///evil.example",
            "/\\evil.example",
            "\\\\evil.example",
            "\\/evil.example",
            "https://evil.example",
            "http:evil.example",
            "javascript:alert(1)",
            "evil.example",
            "/%2Fevil.example",
            "/%2fevil.example",
            "%2F%2Fevil.example",
            "/%5Cevil.example",
            "/%255Cevil.example",
            "/%252F%252Fevil.example",
            "/%25252F%25252Fevil.example",
            "/\tevil",
            "/\n/evil.example",
            "/%09/evil.example",
            "/%0d%0a/evil.example",
            " /evil",
            "/ /evil",
            "/%20/evil",
            "/\u{3000}evil",
            "/\u{FEFF}/evil",
            "/%E3%80%80/evil",
            "/%FF",
        ] {
            assert_eq!(safe_return_to(bad), None, "{bad:?}");
        }
        assert_eq!(safe_return_to(&format!("/{}", "a".repeat(5000))), None);
    }

    /// Paths whose dot segments (plain, percent-encoded in any case, behind `;`
    /// parameters or behind one more round of decoding) climb to a `//` path: a browser
    /// resolves them to a network-path reference, and one echo into a relative URL makes
    /// an open redirect.
    #[test]
    fn refuses_what_resolves_to_a_network_path() {
        for bad in [
            "/.//evil.example",
            "/..//evil.example",
            "/%2e%2e//evil.example",
            "/%2E%2E//evil.example",
            "/%2e%2E//evil.example",
            "/.%2e//evil.example",
            "/%2e.//evil.example",
            "/%2e//evil.example",
            "/a/../..//x",
            "/a/..//b",
            "/a/b/../../..//x",
            "/a/./.././/x",
            "/././/x",
            "/.//x?q=1",
            "/..//x#frag",
            "/%2e%2e%2f%2fx",
            "/%2E%2E%2F%2Fx",
            "/.%2f%2fx",
            "/a/..%2f%2fx",
            "/%252e%252e//x",
            "/%252e%252e%252f%252fx",
            "/..;//x",
            "/.;x//x",
            "/a;p=1/..;/..;//x",
            "/..;/..;//x",
            "/;x//evil.example",
        ] {
            assert_eq!(safe_return_to(bad), None, "{bad:?}");
        }
    }

    /// What is accepted comes back resolved the way a browser resolves it: dot segments
    /// (encoded ones too) removed, characters a browser would encode percent-encoded; and
    /// the result is a fixed point.
    #[test]
    fn returns_the_resolved_path() {
        for (given, resolved) in [
            ("/a/./b", "/a/b"),
            ("/a/b/../c", "/a/c"),
            ("/a/%2e%2e/c", "/c"),
            ("/a/%2E/c", "/a/c"),
            ("/./%2e/x", "/x"),
            ("/a/.%2E/b?q=1", "/b?q=1"),
            ("/..", "/"),
            ("/../x", "/x"),
            ("/a/..", "/"),
            ("/a/.", "/a/"),
            ("/a//b", "/a//b"),
            ("/x?next=/../..//y", "/x?next=/../..//y"),
            ("/x?a=%2F&b=..", "/x?a=%2F&b=.."),
            ("/caf\u{e9}", "/caf%C3%A9"),
            ("/a\"b", "/a%22b"),
            ("/a<b>", "/a%3Cb%3E"),
            ("/x#/settings/../..//y", "/x#/settings/../..//y"),
            ("/a;p=1/b", "/a;p=1/b"),
        ] {
            assert_eq!(
                safe_return_to(given).as_deref(),
                Some(resolved),
                "{given:?}"
            );
            assert_eq!(
                safe_return_to(resolved).as_deref(),
                Some(resolved),
                "{given:?} resolves to {resolved:?}, which is not a fixed point"
            );
        }
    }
}
