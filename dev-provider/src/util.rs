//! Request parameter parsing and validation, random tokens, and response helpers.

use super::*;

pub(super) fn parse_params(input: &[u8]) -> Vec<(String, String)> {
    url::form_urlencoded::parse(input).into_owned().collect()
}

/// The value of a parameter. Parameters without a value count as omitted (RFC 6749
/// section 3.1); with duplicates (rejected elsewhere), the first value.
pub(super) fn get_param<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(key, value)| key == name && !value.is_empty())
        .map(|(_, value)| value.as_str())
}

pub(super) fn count_param(params: &[(String, String)], name: &str) -> usize {
    params
        .iter()
        .filter(|(key, value)| key == name && !value.is_empty())
        .count()
}

/// The name of the first parameter given more than once (RFC 6749 section 3.1).
pub(super) fn duplicate_param(params: &[(String, String)]) -> Option<&str> {
    let mut seen = HashSet::new();
    params
        .iter()
        .filter(|(_, value)| !value.is_empty())
        .find(|(key, _)| !seen.insert(key.as_str()))
        .map(|(key, _)| key.as_str())
}

/// `application/x-www-form-urlencoded` decoding of one component (`+` is a space).
pub(super) fn form_urldecode(s: &str) -> Option<String> {
    fn hex(b: u8) -> Option<u8> {
        match b {
            b'0'..=b'9' => Some(b - b'0'),
            b'a'..=b'f' => Some(b - b'a' + 10),
            b'A'..=b'F' => Some(b - b'A' + 10),
            _ => None,
        }
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        match b {
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b'%' => {
                let high = hex(*bytes.get(i + 1)?)?;
                let low = hex(*bytes.get(i + 2)?)?;
                out.push((high << 4) | low);
                i += 3;
            }
            other => {
                out.push(other);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

pub(super) fn is_form_content_type(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split(';').next())
        .is_some_and(|mime| {
            mime.trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        })
}

/// Whether the `Accept` header asks for `application/json` by name (as GitHub wants it:
/// `*/*` is not enough).
pub(super) fn accepts_json(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .filter_map(|item| item.split(';').next())
        .any(|mime| mime.trim().eq_ignore_ascii_case("application/json"))
}

/// Re-encodes a JSON object answer as `application/x-www-form-urlencoded` (strings and numbers;
/// other members are left out), keeping the status, as GitHub's token endpoint answers clients
/// that do not ask for JSON. Anything else is passed on unchanged.
pub(super) async fn json_to_form_response(response: Response) -> Response {
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|value| value.as_bytes().starts_with(b"application/json"));
    if !is_json {
        return response;
    }
    let (parts, body) = response.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, usize::MAX).await else {
        return plain_response(StatusCode::INTERNAL_SERVER_ERROR, "unreadable answer\n");
    };
    let Ok(Value::Object(members)) = serde_json::from_slice::<Value>(&bytes) else {
        return Response::from_parts(parts, axum::body::Body::from(bytes));
    };
    let mut form = url::form_urlencoded::Serializer::new(String::new());
    for (name, value) in &members {
        match value {
            Value::String(s) => {
                form.append_pair(name, s);
            }
            Value::Number(n) => {
                form.append_pair(name, &n.to_string());
            }
            _ => {}
        }
    }
    let mut response = Response::from_parts(parts, axum::body::Body::from(form.finish()));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-www-form-urlencoded"),
    );
    response.headers_mut().remove(header::CONTENT_LENGTH);
    response
}

pub(super) fn is_base64url_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-' || b == b'_'
}

/// An `S256` challenge is the unpadded base64url encoding of 32 bytes: 43 characters.
pub(super) fn is_s256_challenge(challenge: &str) -> bool {
    challenge.len() == 43
        && challenge.bytes().all(is_base64url_char)
        && URL_SAFE_NO_PAD
            .decode(challenge)
            .is_ok_and(|bytes| bytes.len() == 32)
}

/// `code-verifier = 43*128unreserved` (RFC 7636 section 4.1).
pub(super) fn is_valid_verifier(verifier: &str) -> bool {
    (43..=128).contains(&verifier.len())
        && verifier
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'))
}

/// `scope = scope-token *( SP scope-token )`, `scope-token = 1*NQCHAR` (RFC 6749 section 3.3).
pub(super) fn is_valid_scope(scope: &str) -> bool {
    scope.split(' ').all(|token| {
        !token.is_empty()
            && token
                .bytes()
                .all(|b| b == 0x21 || (0x23..=0x5B).contains(&b) || (0x5D..=0x7E).contains(&b))
    })
}

/// 256 random bits from the OS, base64url without padding.
pub(super) fn random_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

// ---------------------------------------------------------------------------------------------
// Responses and HTML
// ---------------------------------------------------------------------------------------------

pub(super) fn json_response(status: StatusCode, body: &Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

pub(super) fn plain_response(status: StatusCode, body: &'static str) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        body,
    )
        .into_response()
}

pub(super) fn not_json_response() -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        "<!doctype html><html><head><title>Welcome</title></head>\
         <body><h1>Welcome!</h1><p>This is not the JSON you are looking for.</p></body></html>",
    )
        .into_response()
}

/// Escapes text for HTML element content and quoted attribute values: the five characters
/// that can end either, as the login layer's own pages escape them.
pub(super) fn html_escape(text: &str) -> String {
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

const STYLE: &str = "\
*{box-sizing:border-box}\
body{margin:0;min-height:100vh;display:flex;align-items:center;justify-content:center;\
font:16px/1.5 system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;background:#eef1f5;color:#1f2933}\
main{background:#fff;max-width:26rem;width:calc(100% - 2rem);padding:2rem;border-radius:12px;\
box-shadow:0 4px 24px rgba(15,23,42,.12)}\
h1{font-size:1.25rem;margin:0 0 .25rem}\
.badge{display:inline-block;font-size:.75rem;font-weight:600;letter-spacing:.04em;text-transform:uppercase;\
color:#92400e;background:#fef3c7;border-radius:999px;padding:.1rem .6rem;margin-bottom:.75rem}\
p{margin:.5rem 0;color:#52606d}\
code{background:#f1f5f9;padding:.05rem .3rem;border-radius:4px;word-break:break-all}\
label{display:block;font-weight:600;margin:1.25rem 0 .35rem}\
input[type=text]{width:100%;padding:.6rem .75rem;font-size:1rem;border:1px solid #cbd2d9;border-radius:8px}\
input[type=text]:focus{outline:2px solid #2563eb;border-color:#2563eb}\
.error{color:#b91c1c;background:#fef2f2;border-radius:8px;padding:.5rem .75rem}\
.actions{display:flex;gap:.75rem;margin-top:1.25rem}\
button{flex:1;padding:.6rem 1rem;font-size:1rem;border-radius:8px;border:1px solid transparent;cursor:pointer}\
button.primary{background:#2563eb;color:#fff}\
button.primary:hover{background:#1d4ed8}\
button.secondary{background:#fff;color:#1f2933;border-color:#cbd2d9}\
button.secondary:hover{background:#f8fafc}";

pub(super) fn html_response(status: StatusCode, title: &str, body: &str) -> Response {
    let page = format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <meta name=\"referrer\" content=\"no-referrer\">\
         <title>{title}</title><style>{STYLE}</style></head>\
         <body><main><span class=\"badge\">Development only</span>{body}</main></body></html>\n",
        title = html_escape(title),
    );
    (
        status,
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
            (header::X_FRAME_OPTIONS, "DENY"),
            (header::REFERRER_POLICY, "no-referrer"),
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'",
            ),
        ],
        page,
    )
        .into_response()
}

pub(super) fn error_page(status: StatusCode, message: &str) -> Response {
    let body = format!(
        "<h1>Authorization request rejected</h1><p class=\"error\">{}</p>\
         <p>The development provider did not redirect back to the application because the \
         request could not be verified.</p>",
        html_escape(message)
    );
    html_response(status, "Authorization request rejected", &body)
}
