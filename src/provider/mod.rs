//! One provider: its client (endpoints, client authentication), the bounded HTTP client
//! every request to it goes through, and what it answers: tokens, userinfo, revocation, and
//! with OpenID Connect its discovery document, keys, ID and logout tokens ([`oidc`]).
//!
//! Nothing here knows of requests, cookies or sessions: the flow steps call it.

use oauth2::basic::{
    BasicErrorResponse, BasicRevocationErrorResponse, BasicTokenIntrospectionResponse,
    BasicTokenType,
};
use oauth2::{
    ClientSecret, EndpointNotSet, EndpointSet, StandardRevocableToken, StandardTokenResponse,
};
use serde::{Deserialize, Serialize};
use url::Url;

pub(crate) mod http_client;
pub(crate) mod oidc;
pub(crate) mod revoke;
pub(crate) mod token;
pub(crate) mod userinfo;

use http_client::Backchannel;
use oidc::Oidc;

/// The `id_token` of a token response (OpenID Connect Core 3.1.3.3), kept as a string and
/// verified by [`Oidc`]; plain OAuth 2.0 providers leave it out.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub(crate) struct IdTokenField {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) id_token: Option<String>,
}

impl oauth2::ExtraTokenFields for IdTokenField {}

/// A token response, with the ID token when there is one.
pub(crate) type TokenResponse = StandardTokenResponse<IdTokenField, BasicTokenType>;

/// The `oauth2` client as the layer uses it: authorization and token endpoints set.
/// (Revocation is sent by [`revoke`]: `oauth2` only allows https revocation endpoints.)
pub(crate) type OAuthClient = oauth2::Client<
    BasicErrorResponse,
    TokenResponse,
    BasicTokenIntrospectionResponse,
    StandardRevocableToken,
    BasicRevocationErrorResponse,
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointSet,
>;

/// How the client authenticates at the token endpoint (RFC 6749 section 2.3.1).
///
/// A client without a secret is a public client and authenticates with PKCE alone
/// (`token_endpoint_auth_method=none`); these choices apply to confidential clients.
///
/// # Example
///
/// A provider that takes the secret only in the request body:
///
/// ```
/// use tower_oauth2_login::{ClientAuth, LoginLayer};
///
/// # fn main() -> Result<(), tower_oauth2_login::ConfigError> {
/// let login = LoginLayer::builder()
///     .with_client_id("my-app")
///     .with_authorization_endpoint("https://idp.example/authorize")
///     .with_token_endpoint("https://idp.example/token")
///     .with_userinfo_endpoint("https://idp.example/userinfo")
///     .with_redirect_url("https://app.example/auth/callback")
///     .with_client_secret("s3cret")
///     .with_client_auth(ClientAuth::ClientSecretPost)
///     .build()?;
/// # let _ = login; Ok(()) }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum ClientAuth {
    /// `client_secret_basic`: the id and secret in an HTTP Basic `Authorization` header.
    #[default]
    ClientSecretBasic,
    /// `client_secret_post`: the id and secret in the form body.
    ClientSecretPost,
}
/// A provider as the layer talks to it, built once by the builder.
pub(crate) struct Provider {
    pub(crate) oauth: OAuthClient,
    /// Kept beside `oauth`, which does not give it back, for the revocation request.
    pub(crate) client_secret: Option<ClientSecret>,
    pub(crate) revocation_url: Option<Url>,
    /// Every request to the provider goes through it: no redirects, timeouts, a size cap.
    pub(crate) http: Backchannel,
    pub(crate) scopes: Vec<String>,
    pub(crate) extra_auth_params: Vec<(String, String)>,
    pub(crate) issuer: Option<String>,
    pub(crate) require_iss: bool,
    pub(crate) userinfo_url: Option<Url>,
    pub(crate) subject_field: String,
    /// OpenID Connect: ID token checks, keys, logout tokens; `None` for plain OAuth 2.0.
    pub(crate) oidc: Option<Oidc>,
    pub(crate) id_token_hint: bool,
}
