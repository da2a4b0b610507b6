//! What the application must register at the provider, as the layer will send it.

use std::fmt;

use crate::context::Context;

/// The URLs to register for this client at the provider, exactly as the layer sends them
/// (a provider compares them as strings). Get them from
/// [`LoginLayer::registration`](crate::LoginLayer::registration); the layer also logs them
/// once at start-up.
///
/// # Example
///
/// ```
/// # fn main() -> Result<(), tower_oauth2_login::ConfigError> {
/// let login = tower_oauth2_login::LoginLayer::builder()
///     .with_client_id("my-app")
///     .with_issuer("https://idp.example")
///     .with_jwks_uri("https://idp.example/jwks")
///     .with_authorization_endpoint("https://idp.example/authorize")
///     .with_token_endpoint("https://idp.example/token")
///     .with_end_session_endpoint("https://idp.example/logout")
///     .with_redirect_url("https://app.example/auth/callback")
///     .build()?;
/// let urls = login.registration();
/// assert_eq!(urls.redirect_uri(), "https://app.example/auth/callback");
/// assert_eq!(
///     urls.post_logout_redirect_uri(),
///     Some("https://app.example/auth/logout-callback")
/// );
/// assert_eq!(
///     urls.backchannel_logout_uri(),
///     Some("https://app.example/auth/backchannel-logout")
/// );
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registration {
    redirect_uri: String,
    post_logout_redirect_uri: Option<String>,
    backchannel_logout_uri: Option<String>,
}

impl Registration {
    pub(crate) fn of(context: &Context) -> Self {
        let oidc = context.provider.oidc.as_ref();
        Self {
            redirect_uri: context.provider.oauth.redirect_uri().map_or_else(
                || format!("{}{}", context.app_origin, context.callback_path),
                |u| u.to_string(),
            ),
            post_logout_redirect_uri: oidc
                .and_then(|o| o.end_session_endpoint.as_ref())
                .map(|_| context.post_logout_redirect_uri.clone()),
            backchannel_logout_uri: oidc
                .and(context.backchannel_logout_path.as_ref())
                .map(|path| format!("{}{}", context.app_origin, path)),
        }
    }

    /// The redirect URI (`redirect_uris` of the client), where the provider sends the
    /// browser back with the code.
    pub fn redirect_uri(&self) -> &str {
        &self.redirect_uri
    }

    /// The post-logout redirect URI (`post_logout_redirect_uris`), where the provider's
    /// end-session page sends the browser back after signing out; `None` when the provider
    /// has no end-session endpoint.
    pub fn post_logout_redirect_uri(&self) -> Option<&str> {
        self.post_logout_redirect_uri.as_deref()
    }

    /// The back-channel logout URI (`backchannel_logout_uri`), where the provider posts
    /// logout tokens; `None` without OpenID Connect.
    pub fn backchannel_logout_uri(&self) -> Option<&str> {
        self.backchannel_logout_uri.as_deref()
    }
}

/// One line per URL, as the start-up log prints them.
impl fmt::Display for Registration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "redirect URI: {}", self.redirect_uri)?;
        if let Some(uri) = &self.post_logout_redirect_uri {
            write!(f, "\npost-logout redirect URI: {uri}")?;
        }
        if let Some(uri) = &self.backchannel_logout_uri {
            write!(f, "\nback-channel logout URI: {uri}")?;
        }
        Ok(())
    }
}
