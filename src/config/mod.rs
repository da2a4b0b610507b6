//! Configuration: the builder, and what it checks before the first request.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use oauth2::basic::{
    BasicErrorResponse, BasicRevocationErrorResponse, BasicTokenIntrospectionResponse,
};
use oauth2::{
    AuthType, AuthUrl, ClientId, ClientSecret, RedirectUrl, StandardRevocableToken, TokenUrl,
};
use openidconnect::core::{CoreClientAuthMethod, CoreJsonWebKeySet, CoreJwsSigningAlgorithm};
use openidconnect::{IssuerUrl, JsonWebKeySetUrl};
use tower_cookies::Key;
use url::Url;

use crate::context::{Access, Context, PublicRoutes, UnauthenticatedApi};
use crate::error::{ConfigError, DiscoveryError};
use crate::flow::return_to::safe_return_to;
use crate::http::cookie::CookieConfig;
use crate::provider::http_client::Backchannel;
use crate::provider::oidc::{self, Oidc};
use crate::provider::{ClientAuth, Provider, TokenResponse};
use crate::service::LoginLayer;
use crate::session::{MemoryStore, SessionStore};

impl LoginLayer {
    /// Starts the configuration.
    pub fn builder() -> LoginLayerBuilder {
        LoginLayerBuilder::default()
    }
}

/// Builds a [`LoginLayer`]. Start with [`LoginLayer::builder`].
///
/// Required: [`with_client_id`](Self::with_client_id),
/// [`with_authorization_endpoint`](Self::with_authorization_endpoint),
/// [`with_token_endpoint`](Self::with_token_endpoint),
/// [`with_redirect_url`](Self::with_redirect_url) and
/// [`with_userinfo_endpoint`](Self::with_userinfo_endpoint) (who the user is).
/// Everything else has a safe default. [`build`](Self::build) checks it all and returns a
/// [`ConfigError`] rather than failing at the first request.
#[must_use]
pub struct LoginLayerBuilder {
    client_id: Option<String>,
    client_secret: Option<String>,
    client_auth: Option<ClientAuth>,
    authorization_endpoint: Option<String>,
    token_endpoint: Option<String>,
    userinfo_endpoint: Option<String>,
    subject_field: String,
    redirect_url: Option<String>,
    issuer: Option<String>,
    require_iss: bool,
    jwks_uri: Option<String>,
    initial_jwks: Option<CoreJsonWebKeySet>,
    end_session_endpoint: Option<String>,
    revocation_endpoint: Option<String>,
    supported_auth_methods: Option<Vec<CoreClientAuthMethod>>,
    id_token_algs: Vec<String>,
    leeway: Duration,
    id_token_hint: bool,
    scopes: Vec<String>,
    extra_auth_params: Vec<(String, String)>,
    cookie_key: Option<Vec<u8>>,
    login_path: Option<String>,
    logout_path: Option<String>,
    logout_callback_path: Option<String>,
    backchannel_logout_path: Option<String>,
    post_logout_redirect: String,
    access: Access,
    public: PublicRoutes,
    unauthenticated_api: UnauthenticatedApi,
    realm: String,
    store: Option<Arc<dyn SessionStore>>,
    connect_timeout: Duration,
    timeout: Duration,
    max_response_bytes: usize,
    idle_timeout: Duration,
    absolute_lifetime: Duration,
    pending_lifetime: Duration,
    refresh_skew: Duration,
}

impl fmt::Debug for LoginLayerBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoginLayerBuilder")
            .field("client_id", &self.client_id)
            .field(
                "client_secret",
                &self.client_secret.as_ref().map(|_| "<redacted>"),
            )
            .field("redirect_url", &self.redirect_url)
            .finish_non_exhaustive()
    }
}

impl Default for LoginLayerBuilder {
    fn default() -> Self {
        Self {
            client_id: None,
            client_secret: None,
            client_auth: None,
            authorization_endpoint: None,
            token_endpoint: None,
            userinfo_endpoint: None,
            subject_field: "sub".to_string(),
            redirect_url: None,
            issuer: None,
            require_iss: false,
            jwks_uri: None,
            initial_jwks: None,
            end_session_endpoint: None,
            revocation_endpoint: None,
            supported_auth_methods: None,
            id_token_algs: vec!["RS256".to_string()],
            leeway: Duration::from_secs(60),
            id_token_hint: true,
            scopes: Vec::new(),
            extra_auth_params: Vec::new(),
            cookie_key: None,
            login_path: None,
            logout_path: None,
            logout_callback_path: None,
            backchannel_logout_path: None,
            post_logout_redirect: "/".to_string(),
            access: Access::LoginRequired,
            public: PublicRoutes::default(),
            unauthenticated_api: UnauthenticatedApi::Unauthorized,
            realm: "app".to_string(),
            store: None,
            connect_timeout: Duration::from_secs(5),
            timeout: Duration::from_secs(10),
            max_response_bytes: 1024 * 1024,
            idle_timeout: Duration::from_secs(8 * 60 * 60),
            absolute_lifetime: Duration::from_secs(7 * 24 * 60 * 60),
            pending_lifetime: Duration::from_secs(10 * 60),
            refresh_skew: Duration::from_secs(60),
        }
    }
}

impl LoginLayerBuilder {
    /// The client id registered with the provider. Required.
    pub fn with_client_id(mut self, client_id: impl Into<String>) -> Self {
        self.client_id = Some(client_id.into());
        self
    }

    /// The client secret, for a confidential client. Without one, the client is public
    /// and authenticates with PKCE alone.
    pub fn with_client_secret(mut self, secret: impl Into<String>) -> Self {
        self.client_secret = Some(secret.into());
        self
    }

    /// How the secret is sent to the token endpoint: [`ClientAuth::ClientSecretBasic`]
    /// (the default) or [`ClientAuth::ClientSecretPost`]. Needs a client secret.
    pub fn with_client_auth(mut self, auth: ClientAuth) -> Self {
        self.client_auth = Some(auth);
        self
    }

    /// The provider's authorization endpoint. Required.
    pub fn with_authorization_endpoint(mut self, url: impl Into<String>) -> Self {
        self.authorization_endpoint = Some(url.into());
        self
    }

    /// The provider's token endpoint. Required.
    pub fn with_token_endpoint(mut self, url: impl Into<String>) -> Self {
        self.token_endpoint = Some(url.into());
        self
    }

    /// The endpoint that tells who the user is, called once at login with the new access
    /// token (e.g. OpenID Connect's userinfo, or GitHub's `https://api.github.com/user`).
    pub fn with_userinfo_endpoint(mut self, url: impl Into<String>) -> Self {
        self.userinfo_endpoint = Some(url.into());
        self
    }

    /// The field of the userinfo JSON that identifies the user: `sub` by default; `id`
    /// for GitHub. A string or a number.
    pub fn with_subject_field(mut self, field: impl Into<String>) -> Self {
        self.subject_field = field.into();
        self
    }

    /// The absolute redirect URL registered with the provider, e.g.
    /// `https://app.example/auth/callback`. Required. The layer answers its path itself,
    /// and cookies are `Secure` (with the `__Host-` prefix) when it is https.
    pub fn with_redirect_url(mut self, url: impl Into<String>) -> Self {
        self.redirect_url = Some(url.into());
        self
    }

    /// The provider's issuer identifier. When set, an `iss` parameter in the callback
    /// must equal it (RFC 9207).
    pub fn with_issuer(mut self, issuer: impl Into<String>) -> Self {
        self.issuer = Some(issuer.into());
        self
    }

    /// Requires the `iss` parameter in every callback (for providers that advertise
    /// `authorization_response_iss_parameter_supported`). Needs an issuer.
    pub fn with_iss_parameter_required(mut self, required: bool) -> Self {
        self.require_iss = required;
        self
    }

    /// Makes the layer an OpenID Connect relying party of `issuer`, from its discovery
    /// document (`<issuer>/.well-known/openid-configuration`, whose `issuer` must be the same
    /// string): the endpoints, the signing keys, the end-session and revocation endpoints,
    /// whether the `iss` callback parameter is required, and the client authentication
    /// methods it supports. Settings made after this call override what was discovered.
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), tower_oauth2_login::ConfigError> {
    /// let layer = tower_oauth2_login::LoginLayer::builder()
    ///     .with_client_id("my-app")
    ///     .with_redirect_url("https://app.example/auth/callback")
    ///     .discover("https://accounts.example")
    ///     .await?
    ///     .build()?;
    /// # Ok(()) }
    /// ```
    pub async fn discover(self, issuer: impl Into<String>) -> Result<Self, ConfigError> {
        let issuer = issuer.into();
        endpoint(Some(issuer.clone()), "issuer")?;
        let http = Backchannel::new(self.connect_timeout, self.timeout, self.max_response_bytes)?;
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
        self.issuer = Some(issuer);
        self.authorization_endpoint = Some(metadata.authorization_endpoint().to_string());
        self.token_endpoint = metadata.token_endpoint().map(|u| u.to_string());
        self.userinfo_endpoint = metadata.userinfo_endpoint().map(|u| u.to_string());
        self.jwks_uri = Some(metadata.jwks_uri().to_string());
        self.initial_jwks = Some(metadata.jwks().clone());
        let extra = metadata.additional_metadata();
        self.end_session_endpoint = extra.end_session_endpoint.clone();
        self.revocation_endpoint = extra.revocation_endpoint.clone();
        self.require_iss = extra
            .authorization_response_iss_parameter_supported
            .unwrap_or(false);
        self.supported_auth_methods = metadata.token_endpoint_auth_methods_supported().cloned();
        Ok(self)
    }

    /// Makes the layer an OpenID Connect relying party without discovery: ID tokens are
    /// verified with the keys at `url`. Needs [`with_issuer`](Self::with_issuer).
    pub fn with_jwks_uri(mut self, url: impl Into<String>) -> Self {
        self.jwks_uri = Some(url.into());
        self
    }

    /// The provider's end-session endpoint (OpenID Connect RP-Initiated Logout): logging
    /// out sends the browser there.
    pub fn with_end_session_endpoint(mut self, url: impl Into<String>) -> Self {
        self.end_session_endpoint = Some(url.into());
        self
    }

    /// The provider's revocation endpoint (RFC 7009): logging out revokes the refresh token.
    pub fn with_revocation_endpoint(mut self, url: impl Into<String>) -> Self {
        self.revocation_endpoint = Some(url.into());
        self
    }

    /// The algorithms ID tokens may be signed with (`RS256` by default). `none` and the
    /// MAC algorithms (`HS256`, ...) are refused at build time.
    pub fn with_id_token_signing_algs<I, S>(mut self, algs: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.id_token_algs = algs.into_iter().map(Into::into).collect();
        self
    }

    /// How far the provider's clock may be off when `exp` and `iat` are checked. Default
    /// 60 seconds; at most 5 minutes.
    pub fn with_clock_leeway(mut self, leeway: Duration) -> Self {
        self.leeway = leeway;
        self
    }

    /// Whether RP-initiated logout sends the ID token as `id_token_hint` (the default;
    /// the browser carries it to the provider), or only `client_id`.
    pub fn with_id_token_hint(mut self, send: bool) -> Self {
        self.id_token_hint = send;
        self
    }

    /// The path the provider sends the browser back to after RP-initiated logout
    /// (register `<origin><path>` as a post-logout redirect URI). Defaults to
    /// `logout-callback` beside the callback path.
    pub fn with_logout_callback_path(mut self, path: impl Into<String>) -> Self {
        self.logout_callback_path = Some(path.into());
        self
    }

    /// The path the provider POSTs back-channel logout tokens to (register
    /// `<origin><path>` as the client's `backchannel_logout_uri`). Defaults to
    /// `backchannel-logout` beside the callback path; answered only for OpenID Connect.
    pub fn with_backchannel_logout_path(mut self, path: impl Into<String>) -> Self {
        self.backchannel_logout_path = Some(path.into());
        self
    }

    /// Adds a scope to request.
    pub fn with_scope(mut self, scope: impl Into<String>) -> Self {
        self.scopes.push(scope.into());
        self
    }

    /// Adds several scopes to request.
    pub fn with_scopes<I, S>(mut self, scopes: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.scopes.extend(scopes.into_iter().map(Into::into));
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
        self.extra_auth_params.push((name.into(), value.into()));
        self
    }

    /// The key that seals the pending-login cookies: at least 64 random bytes. Without
    /// it a random key is made at start-up (with a warning), and logins in progress
    /// during a restart must start again. Several instances must share one key.
    pub fn with_cookie_key(mut self, key: impl AsRef<[u8]>) -> Self {
        self.cookie_key = Some(key.as_ref().to_vec());
        self
    }

    /// The path that starts a login: `GET <path>?return_to=/somewhere`. Defaults to
    /// `login` beside the callback path (`/auth/login` for `/auth/callback`).
    pub fn with_login_path(mut self, path: impl Into<String>) -> Self {
        self.login_path = Some(path.into());
        self
    }

    /// The path that signs out on `POST`. Defaults to `logout` beside the callback path.
    /// A `GET` to it passes through to your app, to show a sign-out button.
    pub fn with_logout_path(mut self, path: impl Into<String>) -> Self {
        self.logout_path = Some(path.into());
        self
    }

    /// Where the browser goes after signing out (a same-origin path). Default `/`. Kept in
    /// the form a browser resolves it to (`/a/../b` is `/b`); [`build`](Self::build) fails
    /// with a path that is not same-origin or resolves to one starting with `//`.
    pub fn with_post_logout_redirect(mut self, path: impl Into<String>) -> Self {
        self.post_logout_redirect = path.into();
        self
    }

    /// Whether requests outside the public paths need a signed-in user (the default) or
    /// all pass (to protect routes one by one with [`LoginLayer::require_login`]).
    pub fn with_default_access(mut self, access: Access) -> Self {
        self.access = access;
        self
    }

    /// A path that passes without a signed-in user (exact match).
    pub fn with_public_path(mut self, path: impl Into<String>) -> Self {
        self.public.exact.push(path.into());
        self
    }

    /// A path prefix under which requests pass without a signed-in user, e.g.
    /// `/assets/`.
    pub fn with_public_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.public.prefixes.push(prefix.into());
        self
    }

    /// Requests for which `f` returns true pass without a signed-in user.
    pub fn with_public_if<F>(mut self, f: F) -> Self
    where
        F: Fn(&http::Method, &http::Uri) -> bool + Send + Sync + 'static,
    {
        self.public.predicates.push(Arc::new(f));
        self
    }

    /// What an unauthenticated API request gets. Default: 401 with JSON.
    pub fn with_unauthenticated_api(mut self, answer: UnauthenticatedApi) -> Self {
        self.unauthenticated_api = answer;
        self
    }

    /// The realm of the `WWW-Authenticate` challenge of 401 answers. Default `app`.
    pub fn with_realm(mut self, realm: impl Into<String>) -> Self {
        self.realm = realm.into();
        self
    }

    /// Where sessions are kept. Default: a [`MemoryStore`].
    pub fn with_store(mut self, store: impl SessionStore) -> Self {
        self.store = Some(Arc::new(store));
        self
    }

    /// The total time a call to the provider may take, body included. Default 10 s.
    pub fn with_http_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The time to connect to the provider. Default 5 s.
    pub fn with_connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// The largest answer read from the provider. Default 1 MiB.
    pub fn with_max_response_bytes(mut self, bytes: usize) -> Self {
        self.max_response_bytes = bytes;
        self
    }

    /// How long a session lasts without being used. Default 8 hours.
    pub fn with_idle_timeout(mut self, timeout: Duration) -> Self {
        self.idle_timeout = timeout;
        self
    }

    /// How long a session lasts at most, however much it is used. Default 7 days.
    pub fn with_absolute_lifetime(mut self, lifetime: Duration) -> Self {
        self.absolute_lifetime = lifetime;
        self
    }

    /// How long a user may take at the provider to sign in. Default 10 minutes.
    pub fn with_login_timeout(mut self, lifetime: Duration) -> Self {
        self.pending_lifetime = lifetime;
        self
    }

    /// How long before its expiry the access token is refreshed (with the refresh token,
    /// on the next request of the session). Default 60 s; never more than a quarter of the
    /// token's lifetime.
    pub fn with_refresh_skew(mut self, skew: Duration) -> Self {
        self.refresh_skew = skew;
        self
    }

    /// Checks the configuration and builds the layer.
    pub fn build(self) -> Result<LoginLayer, ConfigError> {
        let client_id = self
            .client_id
            .filter(|s| !s.is_empty())
            .ok_or(ConfigError::Missing("client id"))?;
        let auth_url = endpoint(self.authorization_endpoint, "authorization endpoint")?;
        let token_url = endpoint(self.token_endpoint, "token endpoint")?;
        let openid = self.jwks_uri.is_some();
        let userinfo_url = match self.userinfo_endpoint {
            Some(url) => Some(endpoint(Some(url), "userinfo endpoint")?),
            // Without OpenID Connect the userinfo endpoint is the only way to know the user.
            None if !openid => return Err(ConfigError::Missing("userinfo endpoint")),
            None => None,
        };
        let redirect = endpoint(self.redirect_url, "redirect URL")?;
        if redirect.fragment().is_some() {
            return Err(ConfigError::InvalidUrl {
                field: "redirect URL",
                reason: "must not have a fragment".into(),
            });
        }
        let secure = redirect.scheme() == "https";
        let app_origin = redirect.origin().ascii_serialization();
        let callback_path = redirect.path().to_string();
        let parent = callback_path
            .rsplit_once('/')
            .map(|(dir, _)| dir)
            .unwrap_or("");
        let login_path = self.login_path.unwrap_or_else(|| format!("{parent}/login"));
        let logout_path = self
            .logout_path
            .unwrap_or_else(|| format!("{parent}/logout"));
        let logout_callback_path = self
            .logout_callback_path
            .unwrap_or_else(|| format!("{parent}/logout-callback"));
        let backchannel_logout_path = self
            .backchannel_logout_path
            .unwrap_or_else(|| format!("{parent}/backchannel-logout"));
        let paths = [
            ("callback path", &callback_path),
            ("login path", &login_path),
            ("logout path", &logout_path),
            ("logout callback path", &logout_callback_path),
            ("back-channel logout path", &backchannel_logout_path),
        ];
        for (i, (field, path)) in paths.iter().enumerate() {
            check_path(field, path)?;
            if paths[..i].iter().any(|(_, other)| other == path) {
                return Err(ConfigError::InvalidPath {
                    field,
                    reason: "must differ from the layer's other paths".into(),
                });
            }
        }
        let post_logout_redirect_uri = format!("{app_origin}{logout_callback_path}");
        // Kept as the browser resolves it, like a login's return path: `/.//x` passes a
        // check of the path as given and lands on `//x`.
        let Some(post_logout_redirect) = safe_return_to(&self.post_logout_redirect) else {
            return Err(ConfigError::InvalidPath {
                field: "post-logout redirect",
                reason: "must be a same-origin path starting with a single / that does not \
                         resolve to //"
                    .into(),
            });
        };

        const RESERVED: [&str; 8] = [
            "response_type",
            "client_id",
            "redirect_uri",
            "scope",
            "state",
            "code_challenge",
            "code_challenge_method",
            "nonce",
        ];
        if let Some((name, _)) = self
            .extra_auth_params
            .iter()
            .find(|(n, _)| RESERVED.contains(&n.as_str()))
        {
            return Err(ConfigError::ReservedAuthorizationParam { name: name.clone() });
        }

        if self.require_iss && self.issuer.is_none() {
            return Err(ConfigError::Missing("issuer (needed to require iss)"));
        }
        if self.leeway > oidc::MAX_LEEWAY {
            return Err(ConfigError::InvalidDuration {
                field: "clock leeway",
                reason: "must be at most 5 minutes",
            });
        }
        if self.idle_timeout.is_zero() || self.absolute_lifetime.is_zero() {
            return Err(ConfigError::InvalidDuration {
                field: "session lifetime",
                reason: "must be more than zero",
            });
        }
        if self.pending_lifetime < Duration::from_secs(30) {
            return Err(ConfigError::InvalidDuration {
                field: "login timeout",
                reason: "must be at least 30 seconds",
            });
        }
        if self.timeout.is_zero() || self.connect_timeout.is_zero() {
            return Err(ConfigError::InvalidDuration {
                field: "HTTP timeout",
                reason: "must be more than zero",
            });
        }

        let key = match self.cookie_key {
            Some(bytes) => Key::try_from(bytes.as_slice())
                .map_err(|_| ConfigError::CookieKeyTooShort(bytes.len()))?,
            None => {
                tracing::warn!(
                    "no cookie key configured: using a random one; logins in progress \
                     during a restart will have to start again, and several instances \
                     will not understand each other's cookies"
                );
                Key::generate()
            }
        };

        let revocation_url = self
            .revocation_endpoint
            .map(|u| endpoint(Some(u), "revocation endpoint"))
            .transpose()?;
        let end_session_url = self
            .end_session_endpoint
            .map(|u| endpoint(Some(u), "end-session endpoint"))
            .transpose()?;

        let oidc = match self.jwks_uri {
            Some(jwks_uri) => {
                let jwks_uri = endpoint(Some(jwks_uri), "JWKS URI")?;
                let issuer = self
                    .issuer
                    .clone()
                    .ok_or(ConfigError::Missing("issuer (needed for OpenID Connect)"))?;
                let algs = self
                    .id_token_algs
                    .iter()
                    .map(|alg| parse_alg(alg))
                    .collect::<Result<Vec<_>, _>>()?;
                if algs.is_empty() {
                    return Err(ConfigError::Missing("ID token signing algorithm"));
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
                    self.leeway,
                    end_session_url,
                ))
            }
            None => None,
        };
        let mut scopes = self.scopes;
        if oidc.is_some() && !scopes.iter().any(|s| s == "openid") {
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
        let client_secret = self.client_secret.map(ClientSecret::new);
        match (&client_secret, self.client_auth) {
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

        let backchannel =
            Backchannel::new(self.connect_timeout, self.timeout, self.max_response_bytes)?;
        let cookies = CookieConfig::new(
            secure,
            &callback_path,
            &logout_callback_path,
            key,
            self.pending_lifetime,
            self.absolute_lifetime,
        );

        let provider = Provider {
            oauth,
            client_secret,
            revocation_url,
            http: backchannel,
            scopes,
            extra_auth_params: self.extra_auth_params,
            issuer: self.issuer,
            require_iss: self.require_iss,
            userinfo_url,
            subject_field: self.subject_field,
            oidc,
            id_token_hint: self.id_token_hint,
        };
        let inner = Context {
            provider,
            store: self.store.unwrap_or_else(|| Arc::new(MemoryStore::new())),
            cookies,
            callback_path,
            login_path,
            logout_path,
            logout_callback_path,
            backchannel_logout_path: Some(backchannel_logout_path),
            post_logout_redirect,
            post_logout_redirect_uri,
            app_origin,
            access: self.access,
            public: self.public,
            unauthenticated_api: self.unauthenticated_api,
            realm: self.realm,
            idle_timeout: self.idle_timeout,
            absolute_lifetime: self.absolute_lifetime,
            pending_lifetime: self.pending_lifetime,
            refresh_skew: self.refresh_skew,
            refresh_flights: Default::default(),
            refresh_lock_ttl: self.timeout + Duration::from_secs(5),
        };
        Ok(LoginLayer::from_inner(Arc::new(inner)))
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

/// Parses an endpoint URL: absolute, http(s), and https unless it is on loopback (so
/// development works without certificates but production cannot leak over plain http).
fn endpoint(value: Option<String>, field: &'static str) -> Result<Url, ConfigError> {
    let value = value.ok_or(ConfigError::Missing(field))?;
    let url = Url::parse(&value).map_err(|source| ConfigError::UnparsableUrl { field, source })?;
    match url.scheme() {
        "https" => {}
        "http" if is_loopback(&url) => {}
        "http" => {
            return Err(ConfigError::InvalidUrl {
                field,
                reason: "must be https (plain http is allowed on loopback only)".into(),
            })
        }
        other => {
            return Err(ConfigError::InvalidUrl {
                field,
                reason: format!("unsupported scheme {other}"),
            })
        }
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(ConfigError::InvalidUrl {
            field,
            reason: "must not carry credentials".into(),
        });
    }
    Ok(url)
}

fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => d == "localhost" || d.ends_with(".localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

fn check_path(field: &'static str, path: &str) -> Result<(), ConfigError> {
    if !path.starts_with('/') || path.starts_with("//") || path.contains(['?', '#', '\\']) {
        return Err(ConfigError::InvalidPath {
            field,
            reason: "must be an absolute path like /auth/logout".into(),
        });
    }
    // The layer compares these with request paths, which browsers send resolved; and the
    // login path goes into links and the 401 body, where `/.//x` would read as `//x`.
    if safe_return_to(path).as_deref() != Some(path) {
        return Err(ConfigError::InvalidPath {
            field,
            reason: "must be in the form a browser sends it: no . or .. segments (plain or \
                     encoded), nothing that resolves to //, no whitespace, non-ASCII \
                     percent-encoded"
                .into(),
        });
    }
    Ok(())
}
