//! OpenID Connect discovery: what a provider's discovery document tells the builder.

use openidconnect::core::{CoreClientAuthMethod, CoreJsonWebKeySet};

use super::check::endpoint;
use super::LoginLayerBuilder;
use crate::error::{ConfigError, DiscoveryError};
use crate::provider::oidc;

/// What discovery found, kept apart from the explicit settings (which win over it).
pub(crate) struct Discovered {
    pub(super) issuer: String,
    pub(super) authorization_endpoint: String,
    pub(super) token_endpoint: Option<String>,
    pub(super) userinfo_endpoint: Option<String>,
    pub(super) jwks_uri: String,
    pub(super) jwks: CoreJsonWebKeySet,
    pub(super) end_session_endpoint: Option<String>,
    pub(super) revocation_endpoint: Option<String>,
    pub(super) iss_parameter_supported: bool,
    pub(super) auth_methods: Option<Vec<CoreClientAuthMethod>>,
}

impl LoginLayerBuilder {
    /// Makes the layer an OpenID Connect relying party of `issuer`, from its discovery
    /// document (`<issuer>/.well-known/openid-configuration`, whose `issuer` must be the same
    /// string): the endpoints, the signing keys, the end-session and revocation endpoints,
    /// whether the `iss` callback parameter is required, and the client authentication
    /// methods it supports.
    ///
    /// The order of the builder's calls does not matter: an endpoint or flag set
    /// explicitly wins over the discovered one, whether it is set before or after this
    /// call. Only the back-channel settings ([`with_http_timeout`](Self::with_http_timeout)
    /// and its neighbours) must come first to govern the discovery request itself.
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), tower_oauth2_login::ConfigError> {
    /// let layer = tower_oauth2_login::LoginLayer::builder()
    ///     .with_client_id("my-app")
    ///     .with_redirect_url("https://app.example/auth/callback")
    ///     .discover("https://accounts.example")
    ///     .await?
    ///     .build()?;
    /// # let _ = layer; Ok(()) }
    /// ```
    pub async fn discover(self, issuer: impl Into<String>) -> Result<Self, ConfigError> {
        let issuer = issuer.into();
        endpoint(&issuer, "issuer")?;
        let http = self.http.build()?;
        let metadata = oidc::discover(&http, &issuer)
            .await
            .map_err(ConfigError::Discovery)?;
        self.apply_metadata(issuer, &metadata)
    }

    /// Takes the settings of a discovery document whose `issuer` was checked.
    pub(crate) fn apply_metadata(
        mut self,
        issuer: String,
        metadata: &oidc::Metadata,
    ) -> Result<Self, ConfigError> {
        if !metadata
            .response_types_supported()
            .iter()
            .any(|types| types.iter().map(|t| t.as_ref()).eq(["code"]))
        {
            return Err(DiscoveryError::CodeFlowUnsupported.into());
        }
        let extra = metadata.additional_metadata();
        self.provider.discovered = Some(Box::new(Discovered {
            issuer,
            authorization_endpoint: metadata.authorization_endpoint().to_string(),
            token_endpoint: metadata.token_endpoint().map(|u| u.to_string()),
            userinfo_endpoint: metadata.userinfo_endpoint().map(|u| u.to_string()),
            jwks_uri: metadata.jwks_uri().to_string(),
            jwks: metadata.jwks().clone(),
            end_session_endpoint: extra.end_session_endpoint.clone(),
            revocation_endpoint: extra.revocation_endpoint.clone(),
            iss_parameter_supported: extra
                .authorization_response_iss_parameter_supported
                .unwrap_or(false),
            auth_methods: metadata.token_endpoint_auth_methods_supported().cloned(),
        }));
        Ok(self)
    }
}
