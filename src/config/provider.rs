//! The provider settings: the client, the endpoints, OpenID Connect, what the authorization
//! request asks for, and the back channel; and how they become a [`Provider`].

use std::time::Duration;

use oauth2::basic::{
    BasicErrorResponse, BasicRevocationErrorResponse, BasicTokenIntrospectionResponse,
};
use oauth2::{
    AuthType, AuthUrl, ClientId, ClientSecret, RedirectUrl, StandardRevocableToken, TokenUrl,
};
use openidconnect::core::{CoreClientAuthMethod, CoreJsonWebKeySet, CoreJwsSigningAlgorithm};
use openidconnect::{IssuerUrl, JsonWebKeySetUrl};
use url::Url;

use super::check::{endpoint, optional_endpoint, required, Missing};
use super::discovery::Discovered;
use super::LoginLayerBuilder;
use crate::error::ConfigError;
use crate::provider::http_client::Backchannel;
use crate::provider::oidc::{self, Oidc};
use crate::provider::{ClientAuth, Provider, TokenResponse};

/// Parameters of the authorization request that the layer sets itself: letting an extra
/// parameter replace one would undo a protection (`state`, PKCE, `nonce`) or send the code
/// elsewhere (`redirect_uri`).
const RESERVED_AUTHORIZATION_PARAMS: [&str; 8] = [
    "response_type",
    "client_id",
    "redirect_uri",
    "scope",
    "state",
    "code_challenge",
    "code_challenge_method",
    "nonce",
];

/// What the builder knows of the provider. Explicit settings and what discovery found are
/// kept apart, and [`resolve`](Self::resolve) lets an explicit setting win whichever was
/// made first, so the order of the builder calls does not matter.
pub(super) struct ProviderSettings {
    pub(super) client_id: Option<String>,
    client_secret: Option<String>,
    client_auth: Option<ClientAuth>,
    authorization_endpoint: Option<String>,
    token_endpoint: Option<String>,
    userinfo_endpoint: Option<String>,
    subject_field: String,
    issuer: Option<String>,
    require_iss: Option<bool>,
    jwks_uri: Option<String>,
    end_session_endpoint: Option<String>,
    revocation_endpoint: Option<String>,
    id_token_algs: Vec<String>,
    leeway: Duration,
    id_token_hint: bool,
    scopes: Vec<String>,
    extra_auth_params: Vec<(String, String)>,
    pub(super) discovered: Option<Box<Discovered>>,
}

/// The back channel to the provider: its timeouts and the largest answer it reads.
pub(super) struct HttpSettings {
    pub(super) connect_timeout: Duration,
    pub(super) timeout: Duration,
    pub(super) max_response_bytes: usize,
}

impl Default for ProviderSettings {
    fn default() -> Self {
        Self {
            client_id: None,
            client_secret: None,
            client_auth: None,
            authorization_endpoint: None,
            token_endpoint: None,
            userinfo_endpoint: None,
            subject_field: "sub".to_string(),
            issuer: None,
            require_iss: None,
            jwks_uri: None,
            end_session_endpoint: None,
            revocation_endpoint: None,
            id_token_algs: vec!["RS256".to_string()],
            leeway: Duration::from_secs(60),
            id_token_hint: true,
            scopes: Vec::new(),
            extra_auth_params: Vec::new(),
            discovered: None,
        }
    }
}

impl Default for HttpSettings {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(5),
            timeout: Duration::from_secs(10),
            max_response_bytes: 1024 * 1024,
        }
    }
}

impl HttpSettings {
    /// The HTTP client for the provider.
    pub(super) fn build(&self) -> Result<Backchannel, ConfigError> {
        if self.timeout.is_zero() || self.connect_timeout.is_zero() {
            return Err(ConfigError::InvalidDuration {
                field: "HTTP timeout",
                reason: "must be more than zero",
            });
        }
        Backchannel::new(self.connect_timeout, self.timeout, self.max_response_bytes)
    }
}

/// The provider settings with discovery folded in: what [`ProviderSettings::build`] reads.
pub(super) struct Resolved {
    settings: ProviderSettings,
    initial_jwks: Option<CoreJsonWebKeySet>,
    supported_auth_methods: Option<Vec<CoreClientAuthMethod>>,
    require_iss: bool,
}

impl ProviderSettings {
    /// Folds in what discovery found, under the explicit settings. An explicit issuer must
    /// be the discovered one: the discovered endpoints and keys are that issuer's.
    pub(super) fn resolve(mut self) -> Result<Resolved, ConfigError> {
        let Some(found) = self.discovered.take() else {
            let require_iss = self.require_iss.unwrap_or(false);
            return Ok(Resolved {
                settings: self,
                initial_jwks: None,
                supported_auth_methods: None,
                require_iss,
            });
        };
        let found = *found;
        if self.issuer.as_ref().is_some_and(|i| *i != found.issuer) {
            return Err(ConfigError::Conflict { field: "issuer" });
        }
        self.issuer = Some(found.issuer);
        fill(
            &mut self.authorization_endpoint,
            Some(found.authorization_endpoint),
        );
        fill(&mut self.token_endpoint, found.token_endpoint);
        fill(&mut self.userinfo_endpoint, found.userinfo_endpoint);
        fill(&mut self.end_session_endpoint, found.end_session_endpoint);
        fill(&mut self.revocation_endpoint, found.revocation_endpoint);
        // The discovered keys belong to the discovered key set: an explicit other one is
        // fetched when first needed.
        let initial_jwks = match &self.jwks_uri {
            Some(explicit) if *explicit != found.jwks_uri => None,
            _ => Some(found.jwks),
        };
        fill(&mut self.jwks_uri, Some(found.jwks_uri));
        let require_iss = self.require_iss.unwrap_or(found.iss_parameter_supported);
        Ok(Resolved {
            settings: self,
            initial_jwks,
            supported_auth_methods: found.auth_methods,
            require_iss,
        })
    }
}

/// Takes `found` unless the setting was made explicitly.
fn fill(setting: &mut Option<String>, found: Option<String>) {
    if setting.is_none() {
        *setting = found;
    }
}

impl Resolved {
    /// Whether the provider is an OpenID Connect provider (ID tokens are verified).
    fn openid(&self) -> bool {
        self.settings.jwks_uri.is_some()
    }

    /// Notes the required provider settings that are missing.
    pub(super) fn require(&self, missing: &mut Missing) {
        let s = &self.settings;
        missing.require(
            s.client_id.as_ref().is_some_and(|id| !id.is_empty()),
            "client id",
        );
        missing.require(s.authorization_endpoint.is_some(), "authorization endpoint");
        missing.require(s.token_endpoint.is_some(), "token endpoint");
        // Without OpenID Connect the userinfo endpoint is the only way to know the user.
        missing.require(
            self.openid() || s.userinfo_endpoint.is_some(),
            "userinfo endpoint",
        );
        missing.require(
            !self.openid() || s.issuer.is_some(),
            "issuer (needed for OpenID Connect)",
        );
        missing.require(
            !self.require_iss || s.issuer.is_some(),
            "issuer (needed to require iss)",
        );
        missing.require(
            !self.openid() || !s.id_token_algs.is_empty(),
            "ID token signing algorithm",
        );
    }

    /// Checks the provider settings and builds the provider's client.
    pub(super) fn build(self, redirect: Url, http: Backchannel) -> Result<Provider, ConfigError> {
        let s = self.settings;
        let client_id = required(s.client_id.filter(|id| !id.is_empty()), "client id")?;
        let auth_url = endpoint(
            &required(s.authorization_endpoint, "authorization endpoint")?,
            "authorization endpoint",
        )?;
        let token_url = endpoint(
            &required(s.token_endpoint, "token endpoint")?,
            "token endpoint",
        )?;
        let userinfo_url = optional_endpoint(s.userinfo_endpoint.as_deref(), "userinfo endpoint")?;
        let revocation_url =
            optional_endpoint(s.revocation_endpoint.as_deref(), "revocation endpoint")?;
        let end_session_url =
            optional_endpoint(s.end_session_endpoint.as_deref(), "end-session endpoint")?;

        if let Some((name, _)) = s
            .extra_auth_params
            .iter()
            .find(|(n, _)| RESERVED_AUTHORIZATION_PARAMS.contains(&n.as_str()))
        {
            return Err(ConfigError::ReservedAuthorizationParam { name: name.clone() });
        }
        if s.leeway > oidc::MAX_LEEWAY {
            return Err(ConfigError::InvalidDuration {
                field: "clock leeway",
                reason: "must be at most 5 minutes",
            });
        }

        let oidc = match s.jwks_uri {
            Some(jwks_uri) => {
                let jwks_uri = endpoint(&jwks_uri, "JWKS URI")?;
                let issuer = required(s.issuer.clone(), "issuer (needed for OpenID Connect)")?;
                let algs = s
                    .id_token_algs
                    .iter()
                    .map(|alg| parse_alg(alg))
                    .collect::<Result<Vec<_>, _>>()?;
                if algs.is_empty() {
                    return Err(ConfigError::Missing {
                        settings: vec!["ID token signing algorithm"],
                    });
                }
                Some(Oidc::new(
                    IssuerUrl::new(issuer).map_err(|source| ConfigError::UnparsableUrl {
                        field: "issuer",
                        source,
                    })?,
                    ClientId::new(client_id.clone()),
                    JsonWebKeySetUrl::from_url(jwks_uri),
                    self.initial_jwks,
                    algs,
                    s.leeway,
                    end_session_url,
                ))
            }
            None => None,
        };
        if self.require_iss && s.issuer.is_none() {
            return Err(ConfigError::Missing {
                settings: vec!["issuer (needed to require iss)"],
            });
        }
        let mut scopes = s.scopes;
        if oidc.is_some() && !scopes.iter().any(|scope| scope == "openid") {
            scopes.insert(0, "openid".to_string());
        }

        let mut oauth = oauth2::Client::<
            BasicErrorResponse,
            TokenResponse,
            BasicTokenIntrospectionResponse,
            StandardRevocableToken,
            BasicRevocationErrorResponse,
        >::new(ClientId::new(client_id))
        .set_auth_uri(AuthUrl::from_url(auth_url))
        .set_token_uri(TokenUrl::from_url(token_url))
        .set_redirect_uri(RedirectUrl::from_url(redirect));
        let client_secret = s.client_secret.map(ClientSecret::new);
        match (&client_secret, s.client_auth) {
            (Some(secret), auth) => {
                let auth = resolve_client_auth(auth, self.supported_auth_methods.as_deref())?;
                oauth = oauth
                    .set_client_secret(secret.clone())
                    .set_auth_type(match auth {
                        ClientAuth::ClientSecretBasic => AuthType::BasicAuth,
                        ClientAuth::ClientSecretPost => AuthType::RequestBody,
                    });
            }
            (None, Some(ClientAuth::ClientSecretBasic)) => {
                return Err(ConfigError::SecretRequired("client_secret_basic"))
            }
            (None, Some(ClientAuth::ClientSecretPost)) => {
                return Err(ConfigError::SecretRequired("client_secret_post"))
            }
            // A public client: `oauth2` sends `client_id` in the body and no secret.
            (None, None) => oauth = oauth.set_auth_type(AuthType::RequestBody),
        }

        Ok(Provider {
            oauth,
            client_secret,
            revocation_url,
            http,
            scopes,
            extra_auth_params: s.extra_auth_params,
            issuer: s.issuer,
            require_iss: self.require_iss,
            userinfo_url,
            subject_field: s.subject_field,
            oidc,
            id_token_hint: s.id_token_hint,
        })
    }
}

/// # The client and the provider
///
/// Who the application is at the provider, and where the provider's endpoints are: set
/// them one by one, or let [`discover`](Self::discover) fill them in from the provider's
/// OpenID Connect discovery document. A setting made here always wins over a discovered
/// one, before or after `discover`.
///
/// ```
/// # fn main() -> Result<(), tower_oauth2_login::ConfigError> {
/// // A plain OAuth 2.0 provider (GitHub): the user is whoever its user API says.
/// let layer = tower_oauth2_login::LoginLayer::builder()
///     .with_client_id("my-app")
///     .with_client_secret("s3cret")
///     .with_authorization_endpoint("https://github.com/login/oauth/authorize")
///     .with_token_endpoint("https://github.com/login/oauth/access_token")
///     .with_userinfo_endpoint("https://api.github.com/user")
///     .with_subject_field("id")
///     .with_scope("read:user")
///     .with_redirect_url("https://app.example/auth/callback")
///     .build()?;
/// # let _ = layer; Ok(()) }
/// ```
impl LoginLayerBuilder {
    /// The client id registered with the provider. Required.
    pub fn with_client_id(mut self, client_id: impl Into<String>) -> Self {
        self.provider.client_id = Some(client_id.into());
        self
    }

    /// The client secret, for a confidential client. Without one, the client is public
    /// and authenticates with PKCE alone.
    pub fn with_client_secret(mut self, secret: impl Into<String>) -> Self {
        self.provider.client_secret = Some(secret.into());
        self
    }

    /// How the secret is sent to the token endpoint: [`ClientAuth::ClientSecretBasic`]
    /// (the default, unless the provider supports only the other) or
    /// [`ClientAuth::ClientSecretPost`]. Needs a client secret.
    pub fn with_client_auth(mut self, auth: ClientAuth) -> Self {
        self.provider.client_auth = Some(auth);
        self
    }

    /// The provider's authorization endpoint. Required (or discovered).
    pub fn with_authorization_endpoint(mut self, url: impl Into<String>) -> Self {
        self.provider.authorization_endpoint = Some(url.into());
        self
    }

    /// The provider's token endpoint. Required (or discovered).
    pub fn with_token_endpoint(mut self, url: impl Into<String>) -> Self {
        self.provider.token_endpoint = Some(url.into());
        self
    }

    /// The endpoint that tells who the user is, called once at login with the new access
    /// token (e.g. OpenID Connect's userinfo, or GitHub's `https://api.github.com/user`).
    /// Required without OpenID Connect.
    pub fn with_userinfo_endpoint(mut self, url: impl Into<String>) -> Self {
        self.provider.userinfo_endpoint = Some(url.into());
        self
    }

    /// The field of the userinfo JSON that identifies the user: `sub` by default; `id`
    /// for GitHub. A string or a number.
    pub fn with_subject_field(mut self, field: impl Into<String>) -> Self {
        self.provider.subject_field = field.into();
        self
    }

    /// The provider's issuer identifier. When set, an `iss` parameter in the callback
    /// must equal it (RFC 9207). With [`discover`](Self::discover) it must be the
    /// discovered issuer.
    pub fn with_issuer(mut self, issuer: impl Into<String>) -> Self {
        self.provider.issuer = Some(issuer.into());
        self
    }

    /// Whether every callback must carry the `iss` parameter. Discovery turns it on for
    /// providers that advertise `authorization_response_iss_parameter_supported`; this
    /// setting wins over that. Needs an issuer.
    pub fn with_iss_parameter_required(mut self, required: bool) -> Self {
        self.provider.require_iss = Some(required);
        self
    }

    /// Makes the layer an OpenID Connect relying party without discovery: ID tokens are
    /// verified with the keys at `url`. Needs [`with_issuer`](Self::with_issuer).
    pub fn with_jwks_uri(mut self, url: impl Into<String>) -> Self {
        self.provider.jwks_uri = Some(url.into());
        self
    }

    /// The provider's end-session endpoint (OpenID Connect RP-Initiated Logout): logging
    /// out sends the browser there.
    pub fn with_end_session_endpoint(mut self, url: impl Into<String>) -> Self {
        self.provider.end_session_endpoint = Some(url.into());
        self
    }

    /// The provider's revocation endpoint (RFC 7009): logging out revokes the refresh token.
    pub fn with_revocation_endpoint(mut self, url: impl Into<String>) -> Self {
        self.provider.revocation_endpoint = Some(url.into());
        self
    }

    /// The algorithms ID tokens may be signed with (`RS256` by default). `none` and the
    /// MAC algorithms (`HS256`, ...) are refused at build time.
    pub fn with_id_token_signing_algs<I, S>(mut self, algs: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.provider.id_token_algs = algs.into_iter().map(Into::into).collect();
        self
    }

    /// How far the provider's clock may be off when `exp` and `iat` are checked. Default
    /// 60 seconds; at most 5 minutes.
    pub fn with_clock_leeway(mut self, leeway: Duration) -> Self {
        self.provider.leeway = leeway;
        self
    }

    /// Whether RP-initiated logout sends the ID token as `id_token_hint` (the default;
    /// the browser carries it to the provider), or only `client_id`.
    pub fn with_id_token_hint(mut self, send: bool) -> Self {
        self.provider.id_token_hint = send;
        self
    }

    /// Adds a scope to request.
    pub fn with_scope(mut self, scope: impl Into<String>) -> Self {
        self.provider.scopes.push(scope.into());
        self
    }

    /// Adds several scopes to request.
    pub fn with_scopes<I, S>(mut self, scopes: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.provider
            .scopes
            .extend(scopes.into_iter().map(Into::into));
        self
    }

    /// Adds a parameter to every authorization request (e.g. `prompt`, `audience`).
    /// Parameters the layer manages itself (`state`, `code_challenge`, ...) are refused
    /// at build time.
    pub fn with_authorization_param(
        mut self,
        name: impl Into<String>,
        value: impl Into<String>,
    ) -> Self {
        self.provider
            .extra_auth_params
            .push((name.into(), value.into()));
        self
    }
}

/// # The back channel
///
/// The calls the layer makes to the provider (discovery, keys, token, userinfo,
/// revocation) are bounded in time and size, so that a slow or hostile provider cannot
/// hold requests or memory. Set these before [`discover`](Self::discover) for them to
/// apply to the discovery request too.
///
/// ```
/// use std::time::Duration;
///
/// let builder = tower_oauth2_login::LoginLayer::builder()
///     .with_connect_timeout(Duration::from_secs(2))
///     .with_http_timeout(Duration::from_secs(5))
///     .with_max_response_bytes(256 * 1024);
/// # let _ = builder;
/// ```
impl LoginLayerBuilder {
    /// The total time a call to the provider may take, body included. Default 10 s.
    pub fn with_http_timeout(mut self, timeout: Duration) -> Self {
        self.http.timeout = timeout;
        self
    }

    /// The time to connect to the provider. Default 5 s.
    pub fn with_connect_timeout(mut self, timeout: Duration) -> Self {
        self.http.connect_timeout = timeout;
        self
    }

    /// The largest answer read from the provider. Default 1 MiB.
    pub fn with_max_response_bytes(mut self, bytes: usize) -> Self {
        self.http.max_response_bytes = bytes;
        self
    }
}

/// Picks the client authentication: the one asked for, which the provider must support
/// when it says what it supports; else `client_secret_basic` unless the provider only
/// supports `client_secret_post`.
fn resolve_client_auth(
    asked: Option<ClientAuth>,
    supported: Option<&[CoreClientAuthMethod]>,
) -> Result<ClientAuth, ConfigError> {
    let has = |m: &CoreClientAuthMethod| supported.is_none_or(|list| list.contains(m));
    match asked {
        Some(ClientAuth::ClientSecretBasic) if !has(&CoreClientAuthMethod::ClientSecretBasic) => {
            Err(ConfigError::Unsupported("client_secret_basic".into()))
        }
        Some(ClientAuth::ClientSecretPost) if !has(&CoreClientAuthMethod::ClientSecretPost) => {
            Err(ConfigError::Unsupported("client_secret_post".into()))
        }
        Some(auth) => Ok(auth),
        None if has(&CoreClientAuthMethod::ClientSecretBasic) => Ok(ClientAuth::ClientSecretBasic),
        None if has(&CoreClientAuthMethod::ClientSecretPost) => Ok(ClientAuth::ClientSecretPost),
        None => Err(ConfigError::Unsupported(
            "the provider supports neither client_secret_basic nor client_secret_post".into(),
        )),
    }
}

/// An ID token signing algorithm; `none` and MAC algorithms are refused (a MAC keyed with
/// the client secret proves nothing about the issuer, and the secret is not confidential
/// for public clients).
fn parse_alg(alg: &str) -> Result<CoreJwsSigningAlgorithm, ConfigError> {
    let parsed: CoreJwsSigningAlgorithm =
        serde_json::from_value(serde_json::Value::String(alg.to_string()))
            .map_err(|_| ConfigError::Unsupported(format!("ID token signing algorithm {alg}")))?;
    match parsed {
        CoreJwsSigningAlgorithm::None
        | CoreJwsSigningAlgorithm::HmacSha256
        | CoreJwsSigningAlgorithm::HmacSha384
        | CoreJwsSigningAlgorithm::HmacSha512 => Err(ConfigError::Unsupported(format!(
            "ID token signing algorithm {alg}"
        ))),
        ok => Ok(ok),
    }
}
