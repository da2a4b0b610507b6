//! The pending login: what the callback needs to finish a login this browser started
//! (state, PKCE verifier, nonce, where to return), sealed in a cookie of its own, and how
//! the callback opens it and sweeps the others.

use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;

use crate::context::Context;
use crate::flow::return_to::safe_return_to;
use crate::http::cookie::{CallbackCookies, PendingIndex, MAX_PENDING_LOGINS};
use crate::session::now_secs;

/// What the callback needs to finish a login, kept in the browser's pending cookie.
///
/// Sealed with the cookie key, so the browser can neither read the PKCE verifier nor
/// change the return path.
#[derive(Serialize, Deserialize)]
pub(crate) struct PendingLogin {
    /// The `state` sent to the provider.
    #[serde(rename = "s")]
    pub(crate) state: String,
    /// The PKCE code verifier whose S256 challenge was sent.
    #[serde(rename = "v")]
    pub(crate) verifier: String,
    /// The same-origin path and query to return to, as [`safe_return_to`] resolved it.
    #[serde(rename = "r", deserialize_with = "resolved_return_to")]
    pub(crate) return_to: String,
    /// When the login started, in seconds since the Unix epoch.
    #[serde(rename = "t")]
    pub(crate) created_at: u64,
    /// The OpenID Connect nonce the ID token must carry.
    #[serde(rename = "n", default, skip_serializing_if = "Option::is_none")]
    pub(crate) nonce: Option<String>,
}

/// Reads a sealed return path through [`safe_return_to`] again (anything unsafe becomes
/// `/`): a cookie sealed by an older version of the layer, which stored paths as given,
/// can still arrive at the callback after an upgrade, and the redirect must not trust it.
fn resolved_return_to<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let given = String::deserialize(d)?;
    Ok(safe_return_to(&given).unwrap_or_else(|| "/".to_string()))
}

/// What becomes of the other pending logins of this browser, as the index names them (a
/// few at most; pending cookies it does not name are not looked at, see
/// [`CallbackCookies`]): the names of those to clear (unreadable, expired, or the oldest
/// past the cap), and the index to write back, `None` when the request had none.
pub(crate) fn sweep_pending(
    inner: &Context,
    cookies: &CallbackCookies<'_>,
    answered: &[String],
) -> (Vec<String>, Option<PendingIndex>) {
    if cookies.index.0.is_empty() {
        return (Vec::new(), None);
    }
    let now = now_secs();
    let lifetime = inner.pending_lifetime.as_secs();
    let mut stale = Vec::new();
    let mut live: Vec<(u64, usize)> = Vec::new();
    let mut keep = vec![false; cookies.index.0.len()];
    for (i, ((hash, started), sealed)) in cookies.index.0.iter().zip(&cookies.indexed).enumerate() {
        let name = format!("{}{hash}", inner.cookies.pending_prefix);
        if answered.contains(&name) {
            continue;
        }
        let Some(sealed) = sealed else {
            // Not sent here: the browser dropped it, or sends it elsewhere. The entry
            // stays while it may still be live, as the index's own time says.
            keep[i] = now.saturating_sub(*started) <= lifetime;
            continue;
        };
        let created = inner
            .cookies
            .open_pending(&name, sealed)
            .and_then(|json| serde_json::from_str::<PendingLogin>(&json).ok())
            .map(|p| p.created_at)
            .filter(|t| now.saturating_sub(*t) <= lifetime);
        match created {
            Some(t) => live.push((t, i)),
            None => stale.push(name),
        }
    }
    live.sort_by_key(|(t, _)| std::cmp::Reverse(*t));
    for (rank, (_, i)) in live.into_iter().enumerate() {
        if rank < MAX_PENDING_LOGINS {
            keep[i] = true;
        } else {
            stale.push(format!(
                "{}{}",
                inner.cookies.pending_prefix, cookies.index.0[i].0
            ));
        }
    }
    let kept = cookies
        .index
        .0
        .iter()
        .zip(keep)
        .filter(|(_, keep)| *keep)
        .map(|(entry, _)| entry.clone())
        .collect();
    (stale, Some(PendingIndex(kept)))
}

/// Opens the pending cookie `name` of the request and checks it belongs to `state` and is
/// fresh.
#[cfg(any(test, fuzzing))]
pub(crate) fn open_pending(
    inner: &Context,
    headers: &http::HeaderMap,
    name: &str,
    state: &str,
) -> Option<PendingLogin> {
    let sealed = crate::http::cookie::find(headers, name).next()?;
    open_pending_value(inner, name, sealed, state)
}

/// Opens the sealed value of the pending cookie `name` and checks it belongs to `state` and
/// is fresh.
pub(crate) fn open_pending_value(
    inner: &Context,
    name: &str,
    sealed: &str,
    state: &str,
) -> Option<PendingLogin> {
    let json = inner.cookies.open_pending(name, sealed)?;
    let pending: PendingLogin = serde_json::from_str(&json).ok()?;
    let same_state: bool = pending.state.as_bytes().ct_eq(state.as_bytes()).into();
    let age = now_secs().saturating_sub(pending.created_at);
    (same_state && age <= inner.pending_lifetime.as_secs()).then_some(pending)
}
