//! Signing out: the server-side session is deleted, the cookie cleared, and the browser
//! sent to the post-logout page.

use bytes::Bytes;
use http::{header, HeaderMap, Response};

use crate::config::Inner;
use crate::error::FlowError;
use crate::session::SessionId;
use crate::{cookie, page};

/// Answers `POST <logout path>`.
#[tracing::instrument(name = "oauth2_login.logout", skip_all)]
pub(crate) async fn handle(inner: &Inner, headers: &HeaderMap) -> Response<Bytes> {
    let wants_json = crate::layer::wants_json(headers);
    // Another site must not be able to sign users out (logout CSRF).
    if is_cross_site(inner, headers) {
        tracing::info!("cross-site logout refused");
        return FlowError::CrossSite.response(wants_json, None);
    }
    let mut failed = false;
    for value in cookie::find(headers, &inner.cookies.session_name) {
        if let Some(id) = SessionId::parse(value) {
            if let Err(e) = inner.store.delete(&id.key()).await {
                tracing::error!(error = %e, "could not delete the session at logout");
                failed = true;
            }
        }
    }
    let mut res = if failed {
        // The browser forgets the cookie either way, but the person must know the
        // server-side session may still be alive.
        FlowError::Store.response(wants_json, None)
    } else {
        tracing::info!("logged out");
        page::see_other(&inner.post_logout_redirect)
    };
    res.headers_mut()
        .append(header::SET_COOKIE, inner.cookies.clear_session_cookie());
    res
}

/// Whether the request comes from another site, by `Sec-Fetch-Site` (modern browsers) or
/// else by `Origin`. A request with neither is not a browser's cross-site form post
/// (those carry `Origin`), and the `SameSite=Lax` session cookie would not be sent with
/// one anyway.
pub(crate) fn is_cross_site(inner: &Inner, headers: &HeaderMap) -> bool {
    if let Some(site) = headers.get("sec-fetch-site") {
        return !(site == "same-origin" || site == "none");
    }
    if let Some(origin) = headers.get(header::ORIGIN) {
        return origin.as_bytes() != inner.app_origin.as_bytes();
    }
    false
}
