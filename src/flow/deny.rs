//! How a refused request is answered: a failed step of the flow gets a page (with a way to
//! start again) or JSON; an API call without a session gets a `401` with a challenge.

use bytes::Bytes;
use http::{header, HeaderValue, Response, StatusCode};

use crate::context::Context;
use crate::error::FlowError;
use crate::http::page;

impl FlowError {
    /// The response: an HTML page with a way to start again for browsers, JSON otherwise.
    pub(crate) fn response(&self, wants_json: bool, retry_href: Option<&str>) -> Response<Bytes> {
        let (title, text) = self.explain();
        let mut res = if wants_json {
            page::json(
                self.status(),
                &serde_json::json!({ "error": self.code(), "error_description": text }),
            )
        } else {
            page::html(self.status(), title, &text, retry_href)
        };
        if self.status() == StatusCode::SERVICE_UNAVAILABLE {
            res.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
        }
        if let FlowError::MethodNotAllowed(allowed) = self {
            res.headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static(allowed));
        }
        res
    }
}

/// The `401` for an API call that needs a signed-in user: `WWW-Authenticate` and a small
/// JSON body that says where to sign in.
pub(crate) fn unauthorized(inner: &Context) -> Response<Bytes> {
    let mut res = page::json(
        StatusCode::UNAUTHORIZED,
        &serde_json::json!({
            "error": "unauthenticated",
            "error_description": "sign in first",
            "login_url": inner.login_path,
        }),
    );
    let challenge = format!("Cookie realm=\"{}\"", inner.realm.replace(['"', '\\'], ""));
    if let Ok(v) = HeaderValue::from_str(&challenge) {
        res.headers_mut().insert(header::WWW_AUTHENTICATE, v);
    }
    res
}
