//! An embedded **development** OAuth 2.0 authorization server.
//!
//! [`DevProvider`] is a small but real authorization server that listens on loopback HTTP
//! (`axum` on a tokio `TcpListener`). It implements the parts of the OAuth 2.0 Authorization
//! Code Grant that this crate uses, and validates requests as strictly as RFC 6749 (OAuth 2.0),
//! RFC 7636 (PKCE, `S256` only) and RFC 9207 (the `iss` authorization response parameter) ask
//! an authorization server to:
//!
//! * `GET /authorize` validates the client and its exactly-registered redirect URI (an error
//!   there is shown as a page and never redirected), requires `response_type=code` and a PKCE
//!   `S256` challenge, then shows a "sign in as any user" form (or, with auto-login, signs in at
//!   once) and redirects back with `code`, `state` and `iss`.
//! * `POST /token` authenticates the client (`client_secret_basic`, `client_secret_post` or
//!   none for public clients) and serves the `authorization_code` grant (single-use, short-lived
//!   codes bound to the client, redirect URI and PKCE challenge; a replayed code revokes the
//!   tokens issued for it) and the `refresh_token` grant (with refresh-token rotation).
//! * `GET /userinfo` (also at `GET /user`, GitHub style) returns the signed-in user for a valid
//!   bearer access token, in a standard (OpenID Connect-like) or a GitHub-like JSON shape.
//! * `GET /.well-known/oauth-authorization-server` serves RFC 8414 metadata.
//!
//! It exists for two purposes: the demo application, so that someone can try the login flow
//! without a provider account, and the integration tests, which use the knobs
//! ([`TokenBehavior`], [`AuthorizeBehavior`], [`UserinfoBehavior`]) to make it misbehave and the
//! recording accessors (such as [`DevProvider::last_token_params`]) to inspect what the client
//! sent.
//!
//! **It is for development and tests only.** Anyone who can reach it can sign in as any user,
//! all state is in memory, it speaks plain HTTP, and it records client secrets and request
//! parameters for the tests to inspect. Never expose it or enable the `dev-provider` feature in
//! production builds.
//!
//! # Example
//!
//! ```no_run
//! use tower_oauth2_login::dev::{DevClient, DevProvider};
//!
//! # async fn run() -> std::io::Result<()> {
//! let provider = DevProvider::builder()
//!     .with_client(DevClient::confidential(
//!         "demo-app",
//!         "demo-secret",
//!         "http://127.0.0.1:3000/auth/callback",
//!     ))
//!     .start()
//!     .await?;
//!
//! // Configure the login layer with these endpoints and the client above.
//! println!("issuer:                 {}", provider.issuer());
//! println!("authorization endpoint: {}", provider.authorization_endpoint());
//! println!("token endpoint:         {}", provider.token_endpoint());
//! println!("userinfo endpoint:      {}", provider.userinfo_endpoint());
//!
//! // The server keeps running until the last `DevProvider` handle is dropped
//! // or `shutdown()` is called.
//! # Ok(())
//! # }
//! ```

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use rand::RngCore as _;
use serde_json::{json, Map, Value};
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq as _;
use tokio::sync::watch;

/// How long a rendered login form stays usable.
const PENDING_LIFETIME: Duration = Duration::from_secs(10 * 60);
/// How long a code is remembered after it expired, so that a late replay still revokes the
/// tokens issued for it (RFC 6749 section 10.5).
const CODE_GRACE: Duration = Duration::from_secs(10 * 60);
/// The `iss` value sent with [`AuthorizeBehavior::WrongIss`].
const WRONG_ISSUER: &str = "https://wrong-issuer.example";
/// The realm used in `WWW-Authenticate` challenges.
const REALM: &str = "dev-provider";
/// Size of the padding field sent with [`TokenBehavior::HugeBody`].
const HUGE_BODY_PADDING: usize = 5 * 1024 * 1024;
/// Longest username accepted by the login form.
const MAX_USERNAME_CHARS: usize = 64;

// ---------------------------------------------------------------------------------------------
// Public configuration types
// ---------------------------------------------------------------------------------------------

/// How a registered client authenticates at the token endpoint (RFC 6749 section 2.3).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum DevClientAuth {
    /// `client_secret_basic`: HTTP Basic authentication with the form-urlencoded client id and
    /// secret (RFC 6749 section 2.3.1). The default for confidential clients.
    #[default]
    ClientSecretBasic,
    /// `client_secret_post`: `client_id` and `client_secret` in the form body.
    ClientSecretPost,
    /// No client authentication (a public client, RFC 6749 section 2.1): `client_id` in the
    /// form body, and any secret is rejected.
    None,
}

/// A client registered with the [`DevProvider`].
///
/// The `Debug` output redacts the secret.
#[derive(Clone, PartialEq, Eq)]
pub struct DevClient {
    id: String,
    secret: Option<String>,
    redirect_uris: Vec<String>,
    auth: DevClientAuth,
}

impl DevClient {
    /// A confidential client with a secret and one registered redirect URI, authenticating with
    /// [`DevClientAuth::ClientSecretBasic`] (change it with [`DevClient::with_auth`]).
    pub fn confidential(
        id: impl Into<String>,
        secret: impl Into<String>,
        redirect_uri: impl Into<String>,
    ) -> Self {
        Self {
            id: id.into(),
            secret: Some(secret.into()),
            redirect_uris: vec![redirect_uri.into()],
            auth: DevClientAuth::ClientSecretBasic,
        }
    }

    /// A public client (no secret, [`DevClientAuth::None`]) with one registered redirect URI.
    pub fn public(id: impl Into<String>, redirect_uri: impl Into<String>) -> Self {
        Self {
            id: id.into(),
            secret: None,
            redirect_uris: vec![redirect_uri.into()],
            auth: DevClientAuth::None,
        }
    }

    /// Sets how the client authenticates at the token endpoint.
    ///
    /// A client without a secret (see [`DevClient::public`]) set to a secret-based method can
    /// never authenticate; a client with a secret set to [`DevClientAuth::None`] is treated as
    /// public and must not send its secret.
    pub fn with_auth(mut self, auth: DevClientAuth) -> Self {
        self.auth = auth;
        self
    }

    /// Registers one more redirect URI. Redirect URIs are compared by exact string match.
    pub fn with_redirect_uri(mut self, uri: impl Into<String>) -> Self {
        self.redirect_uris.push(uri.into());
        self
    }

    /// The client identifier.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The registered redirect URIs.
    pub fn redirect_uris(&self) -> &[String] {
        &self.redirect_uris
    }

    /// The registered token endpoint authentication method.
    pub fn auth(&self) -> DevClientAuth {
        self.auth
    }
}

impl fmt::Debug for DevClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DevClient")
            .field("id", &self.id)
            .field("secret", &self.secret.as_ref().map(|_| "<redacted>"))
            .field("redirect_uris", &self.redirect_uris)
            .field("auth", &self.auth)
            .finish()
    }
}

/// The JSON shape of the userinfo response.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum UserShape {
    /// OpenID Connect-like claims:
    /// `{"sub", "name", "preferred_username", "email"}`.
    #[default]
    Standard,
    /// GitHub-like: `{"id": <number>, "login", "name"}` (no `sub`). The numeric id is derived
    /// from the username, so it is stable across runs.
    GitHub,
}

/// How `POST /token` answers. Every knob applies to every token request (any grant type);
/// only [`TokenBehavior::Normal`], [`TokenBehavior::Slow`], [`TokenBehavior::TokenTypeCase`] and
/// [`TokenBehavior::OmitExpiresIn`] process the grant (and so consume codes or refresh tokens).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum TokenBehavior {
    /// Validate and answer as the RFCs say.
    #[default]
    Normal,
    /// Answer `400 {"error":"invalid_grant"}` without looking at the request.
    InvalidGrant,
    /// Answer `500` with a plain-text body.
    ServerError,
    /// Answer `200` with an HTML body.
    NotJson,
    /// Sleep for the duration, then behave normally.
    Slow(Duration),
    /// Behave normally but send this `token_type` value (for example `"bEaReR"` or `"MAC"`).
    TokenTypeCase(String),
    /// Behave normally but leave out `expires_in`.
    OmitExpiresIn,
    /// Answer `200` with a syntactically valid JSON body of about 5 MiB (a long string field);
    /// no grant is processed.
    HugeBody,
}

/// How `GET /authorize` (and the login form) answers a *valid* authorization request.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum AuthorizeBehavior {
    /// Show the login form (or auto-login) and redirect back with a code.
    #[default]
    Normal,
    /// Redirect back with this error (for example `access_denied`) instead of a code.
    Error {
        /// The `error` parameter value.
        error: String,
        /// The optional `error_description` parameter value.
        description: Option<String>,
    },
    /// Send an `iss` parameter that is not this server's issuer (a mix-up attack simulation).
    WrongIss,
    /// Leave out the `iss` parameter.
    OmitIss,
}

/// How `GET /userinfo` (and `GET /user`) answers.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum UserinfoBehavior {
    /// Validate the access token and return the user.
    #[default]
    Normal,
    /// Answer `500` with a plain-text body.
    ServerError,
    /// Answer `200` with an HTML body.
    NotJson,
}

// ---------------------------------------------------------------------------------------------
// Builder
// ---------------------------------------------------------------------------------------------

/// Configures and starts a [`DevProvider`]; see [`DevProvider::builder`].
#[derive(Debug)]
pub struct DevProviderBuilder {
    addr: SocketAddr,
    clients: Vec<DevClient>,
    user_shape: UserShape,
    access_token_lifetime: Duration,
    code_lifetime: Duration,
    auto_login: Option<String>,
}

impl Default for DevProviderBuilder {
    fn default() -> Self {
        Self {
            addr: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            clients: Vec::new(),
            user_shape: UserShape::Standard,
            access_token_lifetime: Duration::from_secs(60 * 60),
            code_lifetime: Duration::from_secs(60),
            auto_login: None,
        }
    }
}

impl DevProviderBuilder {
    /// The address to listen on. Defaults to `127.0.0.1:0` (a free loopback port).
    pub fn with_addr(mut self, addr: SocketAddr) -> Self {
        self.addr = addr;
        self
    }

    /// Registers a client. May be called several times; client ids must be distinct.
    pub fn with_client(mut self, client: DevClient) -> Self {
        self.clients.push(client);
        self
    }

    /// The userinfo JSON shape. Defaults to [`UserShape::Standard`].
    pub fn with_user_shape(mut self, shape: UserShape) -> Self {
        self.user_shape = shape;
        self
    }

    /// The lifetime of access tokens. Defaults to one hour.
    pub fn with_access_token_lifetime(mut self, lifetime: Duration) -> Self {
        self.access_token_lifetime = lifetime;
        self
    }

    /// The lifetime of authorization codes. Defaults to 60 seconds.
    pub fn with_code_lifetime(mut self, lifetime: Duration) -> Self {
        self.code_lifetime = lifetime;
        self
    }

    /// Skips the login form: every valid authorization request signs in as `user` at once.
    /// Can be changed later with [`DevProvider::set_auto_login`].
    pub fn with_auto_login(mut self, user: impl Into<String>) -> Self {
        self.auto_login = Some(user.into());
        self
    }

    /// Binds the listener, spawns the server on the current tokio runtime and returns once it
    /// is listening.
    ///
    /// Fails with [`std::io::ErrorKind::InvalidInput`] if two clients share an id or a
    /// registered redirect URI is not an absolute URI or has a fragment (RFC 6749
    /// section 3.1.2), and with the bind error if the address cannot be bound.
    pub async fn start(self) -> std::io::Result<DevProvider> {
        let mut clients = HashMap::new();
        for client in self.clients {
            for uri in &client.redirect_uris {
                let valid = url::Url::parse(uri).is_ok_and(|u| u.fragment().is_none());
                if !valid || uri.contains('#') {
                    return Err(invalid_input(format!(
                        "client {:?}: redirect URI {uri:?} must be an absolute URI without a fragment",
                        client.id
                    )));
                }
            }
            if clients.contains_key(&client.id) {
                return Err(invalid_input(format!(
                    "client id {:?} registered twice",
                    client.id
                )));
            }
            clients.insert(client.id.clone(), client);
        }

        let listener = tokio::net::TcpListener::bind(self.addr).await?;
        let local_addr = listener.local_addr()?;
        let base_url = format!("http://{local_addr}");

        let shared = Arc::new(Shared {
            issuer: base_url.clone(),
            clients,
            user_shape: self.user_shape,
            access_token_lifetime: self.access_token_lifetime,
            code_lifetime: self.code_lifetime,
            state: Mutex::new(ServerState {
                auto_login: self.auto_login,
                ..ServerState::default()
            }),
        });

        let (shutdown, mut stop) = watch::channel(false);
        let app = router(Arc::clone(&shared));
        tokio::spawn(async move {
            let signal = async move {
                // Completes when `true` is sent or the sender is gone.
                let _ = stop.wait_for(|stopped| *stopped).await;
            };
            if let Err(error) = axum::serve(listener, app)
                .with_graceful_shutdown(signal)
                .await
            {
                tracing::debug!(%error, "dev provider server stopped with an error");
            }
            tracing::debug!("dev provider server stopped");
        });
        tracing::debug!(%local_addr, "dev provider listening");

        Ok(DevProvider {
            inner: Arc::new(Handle {
                shared,
                local_addr,
                base_url,
                shutdown,
            }),
        })
    }
}

fn invalid_input(message: String) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidInput, message)
}

// ---------------------------------------------------------------------------------------------
// Handle
// ---------------------------------------------------------------------------------------------

/// A handle to a running development authorization server.
///
/// Cloning is cheap and shares the server. The server stops when the last handle is dropped
/// or [`DevProvider::shutdown`] is called.
#[derive(Clone)]
pub struct DevProvider {
    inner: Arc<Handle>,
}

struct Handle {
    shared: Arc<Shared>,
    local_addr: SocketAddr,
    base_url: String,
    shutdown: watch::Sender<bool>,
}

impl Drop for Handle {
    fn drop(&mut self) {
        self.shutdown.send_replace(true);
    }
}

impl fmt::Debug for DevProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DevProvider")
            .field("base_url", &self.inner.base_url)
            .finish_non_exhaustive()
    }
}

impl DevProvider {
    /// Starts configuring a provider.
    pub fn builder() -> DevProviderBuilder {
        DevProviderBuilder::default()
    }

    /// The base URL, `http://127.0.0.1:PORT` (no trailing slash). It is also the issuer.
    pub fn base_url(&self) -> &str {
        &self.inner.base_url
    }

    /// The issuer identifier (RFC 9207 / RFC 8414): the same as [`DevProvider::base_url`].
    pub fn issuer(&self) -> &str {
        &self.inner.shared.issuer
    }

    /// The address the server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.inner.local_addr
    }

    /// `{base}/authorize`.
    pub fn authorization_endpoint(&self) -> String {
        format!("{}/authorize", self.base_url())
    }

    /// `{base}/token`.
    pub fn token_endpoint(&self) -> String {
        format!("{}/token", self.base_url())
    }

    /// `{base}/userinfo`. The same resource is also served at `{base}/user` (GitHub style).
    pub fn userinfo_endpoint(&self) -> String {
        format!("{}/userinfo", self.base_url())
    }

    /// Changes how `POST /token` answers from now on.
    pub fn set_token_behavior(&self, behavior: TokenBehavior) {
        self.state().token_behavior = behavior;
    }

    /// Changes how valid authorization requests are answered from now on.
    pub fn set_authorize_behavior(&self, behavior: AuthorizeBehavior) {
        self.state().authorize_behavior = behavior;
    }

    /// Changes how the userinfo endpoint answers from now on.
    pub fn set_userinfo_behavior(&self, behavior: UserinfoBehavior) {
        self.state().userinfo_behavior = behavior;
    }

    /// `Some(user)`: a valid `GET /authorize` skips the form and signs in as `user` at once.
    /// `None`: show the login form.
    pub fn set_auto_login(&self, user: Option<String>) {
        self.state().auto_login = user;
    }

    /// The number of `GET /authorize` requests received (valid or not).
    pub fn authorize_requests(&self) -> usize {
        self.state().authorize_requests
    }

    /// The number of `POST /token` requests received (any outcome).
    pub fn token_requests(&self) -> usize {
        self.state().token_requests
    }

    /// The number of userinfo requests received (any outcome).
    pub fn userinfo_requests(&self) -> usize {
        self.state().userinfo_requests
    }

    /// The number of successful authorization code exchanges.
    pub fn codes_redeemed(&self) -> usize {
        self.state().codes_redeemed
    }

    /// The decoded query parameters of the last `GET /authorize`, in order.
    pub fn last_authorize_params(&self) -> Option<Vec<(String, String)>> {
        self.state().last_authorize_params.clone()
    }

    /// The decoded form parameters of the last `POST /token`, in order.
    ///
    /// For tests only: this includes any `client_secret`, `code`, `code_verifier` and
    /// `refresh_token` the client sent.
    pub fn last_token_params(&self) -> Option<Vec<(String, String)>> {
        self.state().last_token_params.clone()
    }

    /// The raw `Authorization` header of the last `POST /token`, if it had one.
    ///
    /// For tests only: it contains the client's credentials.
    pub fn last_token_authorization_header(&self) -> Option<String> {
        self.state().last_token_authorization_header.clone()
    }

    /// Every access token ever issued, in issue order (including expired and revoked ones).
    pub fn issued_access_tokens(&self) -> Vec<String> {
        self.state().issued_access_tokens.clone()
    }

    /// Every refresh token ever issued, in issue order (including rotated and revoked ones).
    pub fn issued_refresh_tokens(&self) -> Vec<String> {
        self.state().issued_refresh_tokens.clone()
    }

    /// Invalidates every access token issued so far (refresh tokens stay valid), so that the
    /// next userinfo call fails with `invalid_token`.
    pub fn revoke_access_tokens(&self) {
        self.state().access_tokens.clear();
    }

    /// Invalidates every access and refresh token issued so far.
    pub fn revoke_all_tokens(&self) {
        let mut state = self.state();
        state.access_tokens.clear();
        state.refresh_tokens.clear();
    }

    /// Stops the server (gracefully: requests in flight are finished). The accessors keep
    /// working afterwards. Dropping the last handle has the same effect.
    pub fn shutdown(&self) {
        self.inner.shutdown.send_replace(true);
    }

    fn state(&self) -> MutexGuard<'_, ServerState> {
        self.inner.shared.lock()
    }
}

// ---------------------------------------------------------------------------------------------
// Server state
// ---------------------------------------------------------------------------------------------

struct Shared {
    issuer: String,
    clients: HashMap<String, DevClient>,
    user_shape: UserShape,
    access_token_lifetime: Duration,
    code_lifetime: Duration,
    state: Mutex<ServerState>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, ServerState> {
        // A panic while holding the lock cannot leave the maps inconsistent in a way that
        // matters for a development server; keep serving.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn iss_param(&self, behavior: &AuthorizeBehavior) -> Option<String> {
        match behavior {
            AuthorizeBehavior::OmitIss => None,
            AuthorizeBehavior::WrongIss => Some(WRONG_ISSUER.to_owned()),
            AuthorizeBehavior::Normal | AuthorizeBehavior::Error { .. } => {
                Some(self.issuer.clone())
            }
        }
    }
}

#[derive(Default)]
struct ServerState {
    token_behavior: TokenBehavior,
    authorize_behavior: AuthorizeBehavior,
    userinfo_behavior: UserinfoBehavior,
    auto_login: Option<String>,

    pending: HashMap<String, PendingAuthorization>,
    codes: HashMap<String, CodeGrant>,
    access_tokens: HashMap<String, AccessTokenEntry>,
    refresh_tokens: HashMap<String, RefreshTokenEntry>,

    issued_access_tokens: Vec<String>,
    issued_refresh_tokens: Vec<String>,
    authorize_requests: usize,
    token_requests: usize,
    userinfo_requests: usize,
    codes_redeemed: usize,
    last_authorize_params: Option<Vec<(String, String)>>,
    last_token_params: Option<Vec<(String, String)>>,
    last_token_authorization_header: Option<String>,
}

/// A validated authorization request.
#[derive(Clone)]
struct AuthorizationRequest {
    client_id: String,
    redirect_uri: String,
    /// Whether `redirect_uri` was in the request (if not, it is the single registered one and
    /// the token request need not repeat it; RFC 6749 section 4.1.3).
    redirect_uri_in_request: bool,
    state: Option<String>,
    scope: Option<String>,
    code_challenge: String,
}

struct PendingAuthorization {
    request: AuthorizationRequest,
    created: Instant,
}

struct CodeGrant {
    client_id: String,
    redirect_uri: String,
    redirect_uri_in_request: bool,
    code_challenge: String,
    scope: Option<String>,
    username: String,
    grant_id: String,
    created: Instant,
    used: bool,
}

struct AccessTokenEntry {
    username: String,
    grant_id: String,
    created: Instant,
    lifetime: Duration,
}

/// A refresh token; also describes the grant when issuing a token pair.
struct RefreshTokenEntry {
    client_id: String,
    username: String,
    scope: Option<String>,
    grant_id: String,
}

impl ServerState {
    fn prune(&mut self, now: Instant, code_lifetime: Duration) {
        let code_keep = code_lifetime.saturating_add(CODE_GRACE);
        self.codes
            .retain(|_, code| now.saturating_duration_since(code.created) < code_keep);
        self.pending
            .retain(|_, p| now.saturating_duration_since(p.created) < PENDING_LIFETIME);
        self.access_tokens
            .retain(|_, t| now.saturating_duration_since(t.created) < t.lifetime);
    }

    /// Revokes every token issued from one authorization code (RFC 6749 section 10.5).
    fn revoke_grant(&mut self, grant_id: &str) {
        self.access_tokens.retain(|_, t| t.grant_id != grant_id);
        self.refresh_tokens.retain(|_, t| t.grant_id != grant_id);
    }

    fn issue_code(
        &mut self,
        request: &AuthorizationRequest,
        username: String,
        now: Instant,
    ) -> String {
        let code = random_token();
        self.codes.insert(
            code.clone(),
            CodeGrant {
                client_id: request.client_id.clone(),
                redirect_uri: request.redirect_uri.clone(),
                redirect_uri_in_request: request.redirect_uri_in_request,
                code_challenge: request.code_challenge.clone(),
                scope: request.scope.clone(),
                username,
                grant_id: random_token(),
                created: now,
                used: false,
            },
        );
        code
    }
}

// ---------------------------------------------------------------------------------------------
// Routing
// ---------------------------------------------------------------------------------------------

fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/", get(index))
        .route("/.well-known/oauth-authorization-server", get(metadata))
        .route("/authorize", get(authorize_get).post(authorize_post))
        .route("/token", post(token))
        .route("/userinfo", get(userinfo))
        .route("/user", get(userinfo))
        .with_state(shared)
}

async fn index(State(shared): State<Arc<Shared>>) -> Response {
    let issuer = html_escape(&shared.issuer);
    let body = format!(
        "<h1>Development OAuth 2.0 provider</h1>\
         <p>This is an embedded authorization server for development and tests. \
         Anyone can sign in as any user. Do not use it in production.</p>\
         <ul>\
         <li>Issuer: <code>{issuer}</code></li>\
         <li>Authorization endpoint: <code>{issuer}/authorize</code></li>\
         <li>Token endpoint: <code>{issuer}/token</code></li>\
         <li>Userinfo endpoint: <code>{issuer}/userinfo</code></li>\
         <li>Metadata: <code>{issuer}/.well-known/oauth-authorization-server</code></li>\
         </ul>"
    );
    html_response(StatusCode::OK, "Development OAuth 2.0 provider", &body)
}

async fn metadata(State(shared): State<Arc<Shared>>) -> Response {
    let issuer = &shared.issuer;
    let body = json!({
        "issuer": issuer,
        "authorization_endpoint": format!("{issuer}/authorize"),
        "token_endpoint": format!("{issuer}/token"),
        "userinfo_endpoint": format!("{issuer}/userinfo"),
        "response_types_supported": ["code"],
        "grant_types_supported": ["authorization_code", "refresh_token"],
        "code_challenge_methods_supported": ["S256"],
        "token_endpoint_auth_methods_supported":
            ["client_secret_basic", "client_secret_post", "none"],
        "authorization_response_iss_parameter_supported": true,
    });
    json_response(StatusCode::OK, &body)
}

// ---------------------------------------------------------------------------------------------
// Authorization endpoint
// ---------------------------------------------------------------------------------------------

enum AuthorizeFailure {
    /// The client or redirect URI cannot be trusted: show a page, never redirect
    /// (RFC 6749 section 4.1.2.1).
    Page(String),
    /// Redirect the error back to the client.
    Redirect {
        redirect_uri: String,
        state: Option<String>,
        error: &'static str,
        description: String,
    },
}

async fn authorize_get(State(shared): State<Arc<Shared>>, RawQuery(query): RawQuery) -> Response {
    let params = parse_params(query.as_deref().unwrap_or_default().as_bytes());
    let now = Instant::now();
    let (behavior, auto_login) = {
        let mut state = shared.lock();
        state.prune(now, shared.code_lifetime);
        state.authorize_requests += 1;
        state.last_authorize_params = Some(params.clone());
        (state.authorize_behavior.clone(), state.auto_login.clone())
    };

    let request = match validate_authorization_request(&shared, &params) {
        Ok(request) => request,
        Err(AuthorizeFailure::Page(message)) => {
            tracing::debug!(%message, "dev provider: rejected authorization request (no redirect)");
            return error_page(StatusCode::BAD_REQUEST, &message);
        }
        Err(AuthorizeFailure::Redirect {
            redirect_uri,
            state,
            error,
            description,
        }) => {
            tracing::debug!(error, %description, "dev provider: authorization error redirect");
            return error_redirect(
                &shared,
                &behavior,
                &redirect_uri,
                state.as_deref(),
                error,
                Some(&description),
            );
        }
    };
    tracing::debug!(client_id = %request.client_id, "dev provider: valid authorization request");

    if let AuthorizeBehavior::Error { error, description } = &behavior {
        return error_redirect(
            &shared,
            &behavior,
            &request.redirect_uri,
            request.state.as_deref(),
            error,
            description.as_deref(),
        );
    }

    if let Some(username) = auto_login {
        tracing::debug!(%username, "dev provider: auto-login");
        let code = shared.lock().issue_code(&request, username, now);
        return code_redirect(&shared, &behavior, &request, &code);
    }

    let pending_id = random_token();
    let page = login_page(&request, &pending_id, "", None);
    shared.lock().pending.insert(
        pending_id,
        PendingAuthorization {
            request,
            created: now,
        },
    );
    page
}

fn validate_authorization_request(
    shared: &Shared,
    params: &[(String, String)],
) -> Result<AuthorizationRequest, AuthorizeFailure> {
    use AuthorizeFailure::Page;

    if count_param(params, "client_id") > 1 {
        return Err(Page(
            "The client_id parameter was given more than once.".into(),
        ));
    }
    let Some(client_id) = get_param(params, "client_id") else {
        return Err(Page("The client_id parameter is missing.".into()));
    };
    let Some(client) = shared.clients.get(client_id) else {
        return Err(Page(format!("Unknown client_id {client_id:?}.")));
    };
    if count_param(params, "redirect_uri") > 1 {
        return Err(Page(
            "The redirect_uri parameter was given more than once.".into(),
        ));
    }
    let (redirect_uri, redirect_uri_in_request) = match get_param(params, "redirect_uri") {
        Some(uri) if client.redirect_uris.iter().any(|r| r == uri) => (uri.to_owned(), true),
        Some(uri) => {
            return Err(Page(format!(
                "The redirect_uri {uri:?} is not registered for client {client_id:?}."
            )))
        }
        None => match client.redirect_uris.as_slice() {
            [only] => (only.clone(), false),
            _ => {
                return Err(Page(
                    "The redirect_uri parameter is missing (required: the client has several \
                     registered redirect URIs)."
                        .into(),
                ))
            }
        },
    };

    // From here on, errors are redirected back to the client.
    let state = if count_param(params, "state") > 1 {
        None
    } else {
        get_param(params, "state").map(str::to_owned)
    };
    let fail = |error: &'static str, description: &str| {
        Err(AuthorizeFailure::Redirect {
            redirect_uri: redirect_uri.clone(),
            state: state.clone(),
            error,
            description: description.to_owned(),
        })
    };

    if let Some(name) = duplicate_param(params) {
        return fail(
            "invalid_request",
            &format!("The {name} parameter was given more than once."),
        );
    }
    match get_param(params, "response_type") {
        None => return fail("invalid_request", "The response_type parameter is missing."),
        Some("code") => {}
        Some(_) => {
            return fail(
                "unsupported_response_type",
                "Only response_type=code is supported.",
            )
        }
    }
    let Some(code_challenge) = get_param(params, "code_challenge") else {
        return fail("invalid_request", "code_challenge is required (PKCE).");
    };
    match get_param(params, "code_challenge_method") {
        Some("S256") => {}
        None => {
            return fail(
                "invalid_request",
                "code_challenge_method is required and must be S256.",
            )
        }
        Some(_) => {
            return fail(
                "invalid_request",
                "Transform algorithm not supported: code_challenge_method must be S256.",
            )
        }
    }
    if !is_s256_challenge(code_challenge) {
        return fail(
            "invalid_request",
            "code_challenge must be the 43-character base64url SHA-256 of the verifier.",
        );
    }
    let scope = get_param(params, "scope");
    if let Some(scope) = scope {
        if !is_valid_scope(scope) {
            return fail("invalid_scope", "The scope parameter is malformed.");
        }
    }

    Ok(AuthorizationRequest {
        client_id: client.id.clone(),
        redirect_uri,
        redirect_uri_in_request,
        state,
        scope: scope.map(str::to_owned),
        code_challenge: code_challenge.to_owned(),
    })
}

async fn authorize_post(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    let params = parse_params(&body);
    let Some(pending_id) = get_param(&params, "pending") else {
        return error_page(
            StatusCode::BAD_REQUEST,
            "The login form was submitted without its request id.",
        );
    };
    let now = Instant::now();
    let mut state = shared.lock();
    state.prune(now, shared.code_lifetime);
    let Some(pending) = state.pending.remove(pending_id) else {
        return error_page(
            StatusCode::BAD_REQUEST,
            "This login request is unknown, expired or was already answered. \
             Start again from the application.",
        );
    };
    let behavior = state.authorize_behavior.clone();
    let request = pending.request;

    if get_param(&params, "action") == Some("cancel") {
        drop(state);
        tracing::debug!(client_id = %request.client_id, "dev provider: user cancelled");
        return error_redirect(
            &shared,
            &behavior,
            &request.redirect_uri,
            request.state.as_deref(),
            "access_denied",
            Some("The user cancelled the sign-in."),
        );
    }
    if let AuthorizeBehavior::Error { error, description } = &behavior {
        drop(state);
        return error_redirect(
            &shared,
            &behavior,
            &request.redirect_uri,
            request.state.as_deref(),
            error,
            description.as_deref(),
        );
    }

    let username = get_param(&params, "username").unwrap_or_default().trim();
    if let Err(problem) = validate_username(username) {
        let page = login_page(&request, pending_id, username, Some(problem));
        state.pending.insert(
            pending_id.to_owned(),
            PendingAuthorization {
                request,
                created: now,
            },
        );
        return page;
    }
    let code = state.issue_code(&request, username.to_owned(), now);
    drop(state);
    tracing::debug!(%username, client_id = %request.client_id, "dev provider: user signed in");
    code_redirect(&shared, &behavior, &request, &code)
}

fn validate_username(username: &str) -> Result<(), &'static str> {
    let count = username.chars().count();
    if count == 0 {
        return Err("Enter a username.");
    }
    if count > MAX_USERNAME_CHARS {
        return Err("The username is too long (at most 64 characters).");
    }
    if !username
        .chars()
        .all(|c| c.is_alphanumeric() || matches!(c, '.' | '_' | '-'))
    {
        return Err("Use letters, digits, '.', '_' and '-' only.");
    }
    Ok(())
}

fn code_redirect(
    shared: &Shared,
    behavior: &AuthorizeBehavior,
    request: &AuthorizationRequest,
    code: &str,
) -> Response {
    let mut params = vec![("code", code.to_owned())];
    if let Some(state) = &request.state {
        params.push(("state", state.clone()));
    }
    if let Some(iss) = shared.iss_param(behavior) {
        params.push(("iss", iss));
    }
    redirect_with_params(&request.redirect_uri, &params)
}

fn error_redirect(
    shared: &Shared,
    behavior: &AuthorizeBehavior,
    redirect_uri: &str,
    state: Option<&str>,
    error: &str,
    description: Option<&str>,
) -> Response {
    let mut params = vec![("error", error.to_owned())];
    if let Some(description) = description {
        params.push(("error_description", description.to_owned()));
    }
    if let Some(state) = state {
        params.push(("state", state.to_owned()));
    }
    if let Some(iss) = shared.iss_param(behavior) {
        params.push(("iss", iss));
    }
    redirect_with_params(redirect_uri, &params)
}

/// `303 See Other` to `redirect_uri` with `params` added to its query component
/// (RFC 6749 section 3.1.2: keep the existing query).
fn redirect_with_params(redirect_uri: &str, params: &[(&str, String)]) -> Response {
    let mut serializer = url::form_urlencoded::Serializer::new(String::new());
    for (name, value) in params {
        serializer.append_pair(name, value);
    }
    let query = serializer.finish();
    let separator = if !redirect_uri.contains('?') {
        "?"
    } else if redirect_uri.ends_with('?') || redirect_uri.ends_with('&') {
        ""
    } else {
        "&"
    };
    match HeaderValue::try_from(format!("{redirect_uri}{separator}{query}")) {
        Ok(location) => (
            StatusCode::SEE_OTHER,
            [
                (header::LOCATION, location),
                (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
                (
                    header::REFERRER_POLICY,
                    HeaderValue::from_static("no-referrer"),
                ),
            ],
        )
            .into_response(),
        Err(_) => error_page(
            StatusCode::INTERNAL_SERVER_ERROR,
            "The redirect URI cannot be used in a Location header.",
        ),
    }
}

// ---------------------------------------------------------------------------------------------
// Token endpoint
// ---------------------------------------------------------------------------------------------

/// Response options altered by [`TokenBehavior`].
struct TokenShape {
    token_type: String,
    include_expires_in: bool,
}

async fn token(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    let params = parse_params(&body);
    let authorization = headers
        .get(header::AUTHORIZATION)
        .map(|value| String::from_utf8_lossy(value.as_bytes()).into_owned());
    let behavior = {
        let mut state = shared.lock();
        state.token_requests += 1;
        state.last_token_params = Some(params.clone());
        state.last_token_authorization_header = authorization;
        state.token_behavior.clone()
    };

    let mut shape = TokenShape {
        token_type: "Bearer".to_owned(),
        include_expires_in: true,
    };
    match behavior {
        TokenBehavior::Normal => {}
        TokenBehavior::InvalidGrant => {
            return token_error(
                StatusCode::BAD_REQUEST,
                "invalid_grant",
                "The grant is invalid (TokenBehavior::InvalidGrant).",
            )
        }
        TokenBehavior::ServerError => {
            return plain_response(StatusCode::INTERNAL_SERVER_ERROR, "internal server error\n")
        }
        TokenBehavior::NotJson => return not_json_response(),
        TokenBehavior::Slow(delay) => tokio::time::sleep(delay).await,
        TokenBehavior::TokenTypeCase(token_type) => shape.token_type = token_type,
        TokenBehavior::OmitExpiresIn => shape.include_expires_in = false,
        TokenBehavior::HugeBody => return huge_body_response(),
    }

    if !is_form_content_type(&headers) {
        return token_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "The request body must be application/x-www-form-urlencoded.",
        );
    }
    if let Some(name) = duplicate_param(&params) {
        return token_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            &format!("The {name} parameter was given more than once."),
        );
    }
    let client = match authenticate_client(&shared, &headers, &params) {
        Ok(client) => client,
        Err(response) => return response,
    };
    match get_param(&params, "grant_type") {
        None => token_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "The grant_type parameter is missing.",
        ),
        Some("authorization_code") => authorization_code_grant(&shared, client, &params, &shape),
        Some("refresh_token") => refresh_token_grant(&shared, client, &params, &shape),
        Some(_) => token_error(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            "Only authorization_code and refresh_token are supported.",
        ),
    }
}

/// Authenticates the client of a token request by its registered method (RFC 6749
/// section 2.3). On failure returns the error response to send.
// Only on the error path of a rare request; boxing would buy nothing.
#[allow(clippy::result_large_err)]
fn authenticate_client<'a>(
    shared: &'a Shared,
    headers: &HeaderMap,
    params: &[(String, String)],
) -> Result<&'a DevClient, Response> {
    let basic = match headers.get(header::AUTHORIZATION) {
        None => None,
        Some(value) => match parse_basic_credentials(value) {
            Some(credentials) => Some(credentials),
            None => {
                return Err(invalid_client(
                    true,
                    "The Authorization header is not valid HTTP Basic client authentication.",
                ))
            }
        },
    };
    let body_id = get_param(params, "client_id");
    let body_secret = get_param(params, "client_secret");

    if basic.is_some() && body_secret.is_some() {
        return Err(token_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "More than one client authentication method was used.",
        ));
    }
    let client_id = match (&basic, body_id) {
        (Some((basic_id, _)), Some(body_id)) if basic_id != body_id => {
            return Err(invalid_client(
                true,
                "The client_id parameter does not match the authenticated client.",
            ))
        }
        (Some((basic_id, _)), _) => basic_id.as_str(),
        (None, Some(body_id)) => body_id,
        (None, None) => return Err(invalid_client(false, "Client authentication is required.")),
    };
    let Some(client) = shared.clients.get(client_id) else {
        return Err(invalid_client(basic.is_some(), "Unknown client."));
    };
    let challenge = basic.is_some() || client.auth == DevClientAuth::ClientSecretBasic;
    let authenticated = match client.auth {
        DevClientAuth::ClientSecretBasic => match &basic {
            Some((_, secret)) => secret_matches(client.secret.as_deref(), secret),
            None => false,
        },
        DevClientAuth::ClientSecretPost => match (&basic, body_secret) {
            (None, Some(secret)) => secret_matches(client.secret.as_deref(), secret),
            _ => false,
        },
        DevClientAuth::None => basic.is_none() && body_secret.is_none(),
    };
    if authenticated {
        Ok(client)
    } else {
        tracing::debug!(client_id = %client.id, "dev provider: client authentication failed");
        Err(invalid_client(challenge, "Client authentication failed."))
    }
}

fn secret_matches(expected: Option<&str>, given: &str) -> bool {
    match expected {
        Some(expected) => bool::from(expected.as_bytes().ct_eq(given.as_bytes())),
        None => false,
    }
}

/// Parses `Basic base64(urlencode(id) ":" urlencode(secret))` (RFC 6749 section 2.3.1).
fn parse_basic_credentials(value: &HeaderValue) -> Option<(String, String)> {
    let value = value.to_str().ok()?.trim();
    let (scheme, encoded) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = STANDARD.decode(encoded.trim()).ok()?;
    let decoded = String::from_utf8(decoded).ok()?;
    let (id, secret) = decoded.split_once(':')?;
    Some((form_urldecode(id)?, form_urldecode(secret)?))
}

fn authorization_code_grant(
    shared: &Shared,
    client: &DevClient,
    params: &[(String, String)],
    shape: &TokenShape,
) -> Response {
    let bad_request = |error, description| token_error(StatusCode::BAD_REQUEST, error, description);
    let Some(code) = get_param(params, "code") else {
        return bad_request("invalid_request", "The code parameter is missing.");
    };
    let now = Instant::now();
    let mut state = shared.lock();
    state.prune(now, shared.code_lifetime);
    let Some(grant) = state.codes.get_mut(code) else {
        return bad_request("invalid_grant", "Unknown authorization code.");
    };
    if grant.client_id != client.id {
        return bad_request(
            "invalid_grant",
            "The authorization code was issued to another client.",
        );
    }
    if grant.used {
        let grant_id = grant.grant_id.clone();
        state.revoke_grant(&grant_id);
        tracing::debug!(client_id = %client.id, "dev provider: authorization code replayed; tokens revoked");
        return bad_request(
            "invalid_grant",
            "The authorization code was already used; the tokens issued for it are revoked.",
        );
    }
    // Any redemption attempt by the client burns the code.
    grant.used = true;
    if now.saturating_duration_since(grant.created) >= shared.code_lifetime {
        return bad_request("invalid_grant", "The authorization code has expired.");
    }
    match get_param(params, "redirect_uri") {
        Some(uri) if uri == grant.redirect_uri => {}
        None if !grant.redirect_uri_in_request => {}
        Some(_) => {
            return bad_request(
                "invalid_grant",
                "redirect_uri does not match the authorization request.",
            )
        }
        None => {
            return bad_request(
                "invalid_request",
                "The redirect_uri parameter is required because the authorization request had one.",
            )
        }
    }
    let Some(verifier) = get_param(params, "code_verifier") else {
        return bad_request("invalid_grant", "code_verifier is required (PKCE).");
    };
    if !is_valid_verifier(verifier) {
        return bad_request("invalid_grant", "code_verifier is malformed.");
    }
    let computed = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
    if !bool::from(computed.as_bytes().ct_eq(grant.code_challenge.as_bytes())) {
        return bad_request(
            "invalid_grant",
            "code_verifier does not match the code_challenge.",
        );
    }

    let tokens_grant = RefreshTokenEntry {
        client_id: grant.client_id.clone(),
        username: grant.username.clone(),
        scope: grant.scope.clone(),
        grant_id: grant.grant_id.clone(),
    };
    state.codes_redeemed += 1;
    tracing::debug!(client_id = %client.id, username = %tokens_grant.username, "dev provider: authorization code redeemed");
    let scope = tokens_grant.scope.clone();
    issue_tokens(shared, &mut state, tokens_grant, scope, now, shape)
}

fn refresh_token_grant(
    shared: &Shared,
    client: &DevClient,
    params: &[(String, String)],
    shape: &TokenShape,
) -> Response {
    let bad_request = |error, description| token_error(StatusCode::BAD_REQUEST, error, description);
    let Some(refresh_token) = get_param(params, "refresh_token") else {
        return bad_request("invalid_request", "The refresh_token parameter is missing.");
    };
    let now = Instant::now();
    let mut state = shared.lock();
    state.prune(now, shared.code_lifetime);
    let Some(entry) = state.refresh_tokens.get(refresh_token) else {
        return bad_request(
            "invalid_grant",
            "Unknown, revoked or already rotated refresh token.",
        );
    };
    if entry.client_id != client.id {
        return bad_request(
            "invalid_grant",
            "The refresh token was issued to another client.",
        );
    }
    let access_scope = match get_param(params, "scope") {
        None => entry.scope.clone(),
        Some(requested) => {
            let granted: HashSet<&str> = entry
                .scope
                .as_deref()
                .map(|s| s.split(' ').collect())
                .unwrap_or_default();
            if !is_valid_scope(requested) || !requested.split(' ').all(|s| granted.contains(s)) {
                return bad_request(
                    "invalid_scope",
                    "The requested scope exceeds the originally granted scope.",
                );
            }
            Some(requested.to_owned())
        }
    };
    // Rotation: the presented refresh token is invalid from now on.
    let Some(entry) = state.refresh_tokens.remove(refresh_token) else {
        return bad_request("invalid_grant", "Unknown refresh token.");
    };
    tracing::debug!(client_id = %client.id, username = %entry.username, "dev provider: refresh token rotated");
    // A narrower access token scope does not narrow what the new refresh token may ask for
    // later (RFC 6749 section 6): it keeps the original grant's scope.
    issue_tokens(shared, &mut state, entry, access_scope, now, shape)
}

/// Issues an access token (with `access_scope`) and a refresh token for `grant`, and
/// returns the token response.
fn issue_tokens(
    shared: &Shared,
    state: &mut ServerState,
    grant: RefreshTokenEntry,
    access_scope: Option<String>,
    now: Instant,
    shape: &TokenShape,
) -> Response {
    let access_token = random_token();
    let refresh_token = random_token();
    state.access_tokens.insert(
        access_token.clone(),
        AccessTokenEntry {
            username: grant.username.clone(),
            grant_id: grant.grant_id.clone(),
            created: now,
            lifetime: shared.access_token_lifetime,
        },
    );
    state.refresh_tokens.insert(refresh_token.clone(), grant);
    state.issued_access_tokens.push(access_token.clone());
    state.issued_refresh_tokens.push(refresh_token.clone());

    let mut body = Map::new();
    body.insert("access_token".into(), Value::String(access_token));
    body.insert("token_type".into(), Value::String(shape.token_type.clone()));
    if shape.include_expires_in {
        body.insert(
            "expires_in".into(),
            Value::from(ceil_secs(shared.access_token_lifetime)),
        );
    }
    body.insert("refresh_token".into(), Value::String(refresh_token));
    if let Some(scope) = access_scope {
        body.insert("scope".into(), Value::String(scope));
    }
    token_json(StatusCode::OK, &Value::Object(body))
}

/// Whole seconds, rounded up, so that a sub-second lifetime is not announced as `0`.
fn ceil_secs(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

fn token_error(status: StatusCode, error: &str, description: &str) -> Response {
    token_json(
        status,
        &json!({ "error": error, "error_description": description }),
    )
}

fn invalid_client(basic_challenge: bool, description: &str) -> Response {
    let mut response = token_error(StatusCode::UNAUTHORIZED, "invalid_client", description);
    if basic_challenge {
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"dev-provider\", charset=\"UTF-8\""),
        );
    }
    response
}

/// A JSON response with the `Cache-Control: no-store` and `Pragma: no-cache` headers that
/// RFC 6749 section 5.1 requires for token responses.
fn token_json(status: StatusCode, body: &Value) -> Response {
    let mut response = json_response(status, body);
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    response
}

fn huge_body_response() -> Response {
    let padding = "A".repeat(HUGE_BODY_PADDING);
    let body = format!(
        "{{\"access_token\":\"huge-body-not-a-real-token\",\"token_type\":\"Bearer\",\
         \"expires_in\":3600,\"padding\":\"{padding}\"}}"
    );
    (
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        body,
    )
        .into_response()
}

// ---------------------------------------------------------------------------------------------
// Userinfo endpoint
// ---------------------------------------------------------------------------------------------

async fn userinfo(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    let now = Instant::now();
    let mut state = shared.lock();
    state.userinfo_requests += 1;
    match state.userinfo_behavior {
        UserinfoBehavior::Normal => {}
        UserinfoBehavior::ServerError => {
            return plain_response(StatusCode::INTERNAL_SERVER_ERROR, "internal server error\n")
        }
        UserinfoBehavior::NotJson => return not_json_response(),
    }
    let Some(token) = bearer_token(&headers) else {
        // RFC 6750 section 3.1: no error code when the request has no credentials.
        return bearer_challenge(None);
    };
    state.prune(now, shared.code_lifetime);
    let Some(entry) = state.access_tokens.get(token) else {
        return bearer_challenge(Some("The access token is invalid, expired or revoked."));
    };
    let username = entry.username.clone();
    drop(state);

    let name = capitalise(&username);
    let body = match shared.user_shape {
        UserShape::Standard => json!({
            "sub": username,
            "name": name,
            "preferred_username": username,
            "email": format!("{username}@example.test"),
        }),
        UserShape::GitHub => json!({
            "id": github_id(&username),
            "login": username,
            "name": name,
        }),
    };
    let mut response = json_response(StatusCode::OK, &body);
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?.trim();
    let (scheme, token) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    Some(token.trim())
}

fn bearer_challenge(invalid_token: Option<&str>) -> Response {
    let (challenge, body) = match invalid_token {
        None => (
            format!("Bearer realm=\"{REALM}\""),
            json!({ "error": "unauthorized", "error_description": "A bearer access token is required." }),
        ),
        Some(description) => (
            format!("Bearer realm=\"{REALM}\", error=\"invalid_token\", error_description=\"{description}\""),
            json!({ "error": "invalid_token", "error_description": description }),
        ),
    };
    let mut response = json_response(StatusCode::UNAUTHORIZED, &body);
    if let Ok(value) = HeaderValue::try_from(challenge) {
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, value);
    }
    response
}

/// A stable, positive numeric id below 2^53 (exact in JSON numbers) derived from the username.
fn github_id(username: &str) -> u64 {
    let digest = Sha256::digest(username.as_bytes());
    let mut bytes = [0u8; 8];
    bytes[2..].copy_from_slice(&digest[..6]);
    u64::from_be_bytes(bytes) + 1
}

fn capitalise(s: &str) -> String {
    let mut chars = s.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

// ---------------------------------------------------------------------------------------------
// Parameters and validation helpers
// ---------------------------------------------------------------------------------------------

fn parse_params(input: &[u8]) -> Vec<(String, String)> {
    url::form_urlencoded::parse(input).into_owned().collect()
}

/// The value of a parameter. Parameters without a value count as omitted (RFC 6749
/// section 3.1); with duplicates (rejected elsewhere), the first value.
fn get_param<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(key, value)| key == name && !value.is_empty())
        .map(|(_, value)| value.as_str())
}

fn count_param(params: &[(String, String)], name: &str) -> usize {
    params
        .iter()
        .filter(|(key, value)| key == name && !value.is_empty())
        .count()
}

/// The name of the first parameter given more than once (RFC 6749 section 3.1).
fn duplicate_param(params: &[(String, String)]) -> Option<&str> {
    let mut seen = HashSet::new();
    params
        .iter()
        .filter(|(_, value)| !value.is_empty())
        .find(|(key, _)| !seen.insert(key.as_str()))
        .map(|(key, _)| key.as_str())
}

/// `application/x-www-form-urlencoded` decoding of one component (`+` is a space).
fn form_urldecode(s: &str) -> Option<String> {
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

fn is_form_content_type(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split(';').next())
        .is_some_and(|mime| {
            mime.trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        })
}

fn is_base64url_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-' || b == b'_'
}

/// An `S256` challenge is the unpadded base64url encoding of 32 bytes: 43 characters.
fn is_s256_challenge(challenge: &str) -> bool {
    challenge.len() == 43
        && challenge.bytes().all(is_base64url_char)
        && URL_SAFE_NO_PAD
            .decode(challenge)
            .is_ok_and(|bytes| bytes.len() == 32)
}

/// `code-verifier = 43*128unreserved` (RFC 7636 section 4.1).
fn is_valid_verifier(verifier: &str) -> bool {
    (43..=128).contains(&verifier.len())
        && verifier
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'))
}

/// `scope = scope-token *( SP scope-token )`, `scope-token = 1*NQCHAR` (RFC 6749 section 3.3).
fn is_valid_scope(scope: &str) -> bool {
    scope.split(' ').all(|token| {
        !token.is_empty()
            && token
                .bytes()
                .all(|b| b == 0x21 || (0x23..=0x5B).contains(&b) || (0x5D..=0x7E).contains(&b))
    })
}

/// 256 random bits from the OS, base64url without padding.
fn random_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

// ---------------------------------------------------------------------------------------------
// Responses and HTML
// ---------------------------------------------------------------------------------------------

fn json_response(status: StatusCode, body: &Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

fn plain_response(status: StatusCode, body: &'static str) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        body,
    )
        .into_response()
}

fn not_json_response() -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        "<!doctype html><html><head><title>Welcome</title></head>\
         <body><h1>Welcome!</h1><p>This is not the JSON you are looking for.</p></body></html>",
    )
        .into_response()
}

fn html_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
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

fn html_response(status: StatusCode, title: &str, body: &str) -> Response {
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

fn error_page(status: StatusCode, message: &str) -> Response {
    let body = format!(
        "<h1>Authorization request rejected</h1><p class=\"error\">{}</p>\
         <p>The development provider did not redirect back to the application because the \
         request could not be verified.</p>",
        html_escape(message)
    );
    html_response(status, "Authorization request rejected", &body)
}

fn login_page(
    request: &AuthorizationRequest,
    pending_id: &str,
    username: &str,
    problem: Option<&str>,
) -> Response {
    let scope = match &request.scope {
        Some(scope) => format!(
            "<p>Requested scope: <code>{}</code></p>",
            html_escape(scope)
        ),
        None => String::new(),
    };
    let problem_html = match problem {
        Some(problem) => format!(
            "<p class=\"error\" role=\"alert\">{}</p>",
            html_escape(problem)
        ),
        None => String::new(),
    };
    let body = format!(
        "<h1>Development provider — sign in as any user</h1>\
         <p>The application <code>{client}</code> asks you to sign in. \
         No password is needed: type any username.</p>{scope}{problem_html}\
         <form method=\"post\" action=\"/authorize\">\
         <input type=\"hidden\" name=\"pending\" value=\"{pending}\">\
         <label for=\"username\">Username</label>\
         <input type=\"text\" id=\"username\" name=\"username\" value=\"{username}\" \
         autocomplete=\"username\" autocapitalize=\"none\" spellcheck=\"false\" \
         maxlength=\"{MAX_USERNAME_CHARS}\" required autofocus>\
         <div class=\"actions\">\
         <button type=\"submit\" name=\"action\" value=\"login\" class=\"primary\">Sign in</button>\
         <button type=\"submit\" name=\"action\" value=\"cancel\" class=\"secondary\" \
         formnovalidate>Cancel</button>\
         </div></form>",
        client = html_escape(&request.client_id),
        pending = html_escape(pending_id),
        username = html_escape(username),
    );
    let status = if problem.is_some() {
        StatusCode::BAD_REQUEST
    } else {
        StatusCode::OK
    };
    html_response(status, "Sign in — development provider", &body)
}

#[cfg(test)]
mod tests {
    use super::*;

    const CALLBACK: &str = "http://127.0.0.1:9/callback";
    const SECRET: &str = "s3cr:t+/&% é";

    fn http() -> reqwest::Client {
        reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("reqwest client")
    }

    fn pkce() -> (String, String) {
        let verifier = random_token();
        let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
        (verifier, challenge)
    }

    fn encode(params: &[(&str, &str)]) -> String {
        let mut serializer = url::form_urlencoded::Serializer::new(String::new());
        for (name, value) in params {
            serializer.append_pair(name, value);
        }
        serializer.finish()
    }

    /// RFC 6749 section 2.3.1 Basic credentials.
    fn basic(id: &str, secret: &str) -> String {
        let enc = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
        format!(
            "Basic {}",
            STANDARD.encode(format!("{}:{}", enc(id), enc(secret)))
        )
    }

    async fn provider(builder: DevProviderBuilder) -> DevProvider {
        builder
            .with_client(DevClient::confidential("conf", SECRET, CALLBACK))
            .with_client(
                DevClient::confidential("post", "post-secret", CALLBACK)
                    .with_auth(DevClientAuth::ClientSecretPost),
            )
            .with_client(
                DevClient::public("pub", "http://localhost:9/cb?app=1").with_redirect_uri(CALLBACK),
            )
            .start()
            .await
            .expect("start dev provider")
    }

    async fn auto_provider() -> DevProvider {
        provider(DevProvider::builder().with_auto_login("alice")).await
    }

    fn authorize_url(p: &DevProvider, params: &[(&str, &str)]) -> String {
        format!("{}?{}", p.authorization_endpoint(), encode(params))
    }

    fn valid_authorize<'a>(client_id: &'a str, challenge: &'a str) -> Vec<(&'a str, &'a str)> {
        vec![
            ("response_type", "code"),
            ("client_id", client_id),
            ("redirect_uri", CALLBACK),
            ("scope", "read:user email"),
            ("state", "st&te=1 ?"),
            ("code_challenge", challenge),
            ("code_challenge_method", "S256"),
        ]
    }

    /// The `Location` of a `303` response.
    fn location(response: &reqwest::Response) -> String {
        assert_eq!(response.status(), reqwest::StatusCode::SEE_OTHER);
        response
            .headers()
            .get(reqwest::header::LOCATION)
            .expect("Location")
            .to_str()
            .expect("ascii Location")
            .to_owned()
    }

    fn query_of(location: &str) -> HashMap<String, String> {
        let url = url::Url::parse(location).expect("absolute Location");
        url.query_pairs().into_owned().collect()
    }

    async fn get_code(p: &DevProvider, client_id: &str, challenge: &str) -> String {
        let response = http()
            .get(authorize_url(p, &valid_authorize(client_id, challenge)))
            .send()
            .await
            .expect("authorize");
        let location = location(&response);
        assert!(location.starts_with(CALLBACK), "{location}");
        let query = query_of(&location);
        assert_eq!(query.get("state").map(String::as_str), Some("st&te=1 ?"));
        assert_eq!(query.get("iss").map(String::as_str), Some(p.issuer()));
        query.get("code").expect("code").clone()
    }

    async fn post_token(
        p: &DevProvider,
        params: &[(&str, &str)],
        authorization: Option<&str>,
    ) -> reqwest::Response {
        let mut request = http()
            .post(p.token_endpoint())
            .header(
                reqwest::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .body(encode(params));
        if let Some(authorization) = authorization {
            request = request.header(reqwest::header::AUTHORIZATION, authorization);
        }
        request.send().await.expect("token request")
    }

    async fn exchange_basic(p: &DevProvider, code: &str, verifier: &str) -> reqwest::Response {
        post_token(
            p,
            &[
                ("grant_type", "authorization_code"),
                ("code", code),
                ("redirect_uri", CALLBACK),
                ("code_verifier", verifier),
            ],
            Some(&basic("conf", SECRET)),
        )
        .await
    }

    async fn json_of(response: reqwest::Response) -> (reqwest::StatusCode, Value) {
        let status = response.status();
        let body = response.json::<Value>().await.expect("JSON body");
        (status, body)
    }

    async fn error_of(response: reqwest::Response) -> (reqwest::StatusCode, String) {
        let (status, body) = json_of(response).await;
        (
            status,
            body["error"].as_str().expect("error field").to_owned(),
        )
    }

    async fn userinfo_with(p: &DevProvider, path: &str, token: &str) -> reqwest::Response {
        http()
            .get(format!("{}{path}", p.base_url()))
            .bearer_auth(token)
            .send()
            .await
            .expect("userinfo")
    }

    async fn full_login(p: &DevProvider) -> Value {
        let (verifier, challenge) = pkce();
        let code = get_code(p, "conf", &challenge).await;
        let (status, body) = json_of(exchange_basic(p, &code, &verifier).await).await;
        assert_eq!(status, 200, "{body}");
        body
    }

    #[tokio::test]
    async fn confidential_basic_happy_path() {
        let p = auto_provider().await;
        let (verifier, challenge) = pkce();
        let code = get_code(&p, "conf", &challenge).await;
        let response = exchange_basic(&p, &code, &verifier).await;
        assert_eq!(
            response
                .headers()
                .get(reqwest::header::CACHE_CONTROL)
                .unwrap(),
            "no-store"
        );
        let (status, body) = json_of(response).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["token_type"], "Bearer");
        assert_eq!(body["expires_in"], 3600);
        assert_eq!(body["scope"], "read:user email");
        let access = body["access_token"].as_str().unwrap();
        assert_eq!(p.issued_access_tokens(), vec![access.to_owned()]);
        assert_eq!(
            p.issued_refresh_tokens(),
            vec![body["refresh_token"].as_str().unwrap().to_owned()]
        );
        assert_eq!(p.codes_redeemed(), 1);
        assert_eq!(p.token_requests(), 1);
        assert_eq!(
            p.last_token_authorization_header(),
            Some(basic("conf", SECRET))
        );
        let params = p.last_token_params().unwrap();
        assert!(params.contains(&("code_verifier".to_owned(), verifier.clone())));
        let authorize = p.last_authorize_params().unwrap();
        assert!(authorize.contains(&("client_id".to_owned(), "conf".to_owned())));

        let (status, user) = json_of(userinfo_with(&p, "/userinfo", access).await).await;
        assert_eq!(status, 200);
        assert_eq!(
            user,
            json!({"sub": "alice", "name": "Alice", "preferred_username": "alice",
                   "email": "alice@example.test"})
        );
        assert_eq!(p.userinfo_requests(), 1);
    }

    #[tokio::test]
    async fn confidential_post_happy_path_and_wrong_method() {
        let p = auto_provider().await;
        let (verifier, challenge) = pkce();
        let code = get_code(&p, "post", &challenge).await;
        let form = [
            ("grant_type", "authorization_code"),
            ("code", code.as_str()),
            ("redirect_uri", CALLBACK),
            ("code_verifier", verifier.as_str()),
            ("client_id", "post"),
            ("client_secret", "post-secret"),
        ];
        // Basic is not this client's registered method.
        let response = post_token(&p, &form[..4], Some(&basic("post", "post-secret"))).await;
        assert_eq!(
            error_of(response).await,
            (reqwest::StatusCode::UNAUTHORIZED, "invalid_client".into())
        );
        // Both methods at once.
        let response = post_token(&p, &form, Some(&basic("post", "post-secret"))).await;
        assert_eq!(
            error_of(response).await,
            (reqwest::StatusCode::BAD_REQUEST, "invalid_request".into())
        );
        // Failed client authentication does not burn the code.
        let (status, body) = json_of(post_token(&p, &form, None).await).await;
        assert_eq!(status, 200, "{body}");
        assert!(body["access_token"].is_string());
    }

    #[tokio::test]
    async fn public_client_happy_path_with_query_in_redirect_uri() {
        let p = auto_provider().await;
        let (verifier, challenge) = pkce();
        let redirect = "http://localhost:9/cb?app=1";
        let response = http()
            .get(authorize_url(
                &p,
                &[
                    ("response_type", "code"),
                    ("client_id", "pub"),
                    ("redirect_uri", redirect),
                    ("code_challenge", &challenge),
                    ("code_challenge_method", "S256"),
                ],
            ))
            .send()
            .await
            .unwrap();
        let location = location(&response);
        assert!(
            location.starts_with("http://localhost:9/cb?app=1&code="),
            "{location}"
        );
        let query = query_of(&location);
        assert_eq!(query["app"], "1");
        assert!(!query.contains_key("state"));
        let code = query["code"].clone();
        assert!(URL_SAFE_NO_PAD.decode(&code).unwrap().len() >= 16);

        let mut form = vec![
            ("grant_type", "authorization_code"),
            ("code", code.as_str()),
            ("redirect_uri", redirect),
            ("code_verifier", verifier.as_str()),
            ("client_id", "pub"),
            ("client_secret", "anything"),
        ];
        // A public client must not send a secret.
        let response = post_token(&p, &form, None).await;
        assert_eq!(error_of(response).await.1, "invalid_client");
        form.pop();
        let (status, body) = json_of(post_token(&p, &form, None).await).await;
        assert_eq!(status, 200, "{body}");
        assert!(body.get("scope").is_none());
    }

    #[tokio::test]
    async fn code_replay_is_rejected_and_revokes_tokens() {
        let p = auto_provider().await;
        let (verifier, challenge) = pkce();
        let code = get_code(&p, "conf", &challenge).await;
        let (status, body) = json_of(exchange_basic(&p, &code, &verifier).await).await;
        assert_eq!(status, 200);
        let access = body["access_token"].as_str().unwrap().to_owned();
        let refresh = body["refresh_token"].as_str().unwrap().to_owned();
        assert_eq!(userinfo_with(&p, "/userinfo", &access).await.status(), 200);

        let replay = exchange_basic(&p, &code, &verifier).await;
        assert_eq!(
            error_of(replay).await,
            (reqwest::StatusCode::BAD_REQUEST, "invalid_grant".into())
        );
        assert_eq!(p.codes_redeemed(), 1);
        assert_eq!(userinfo_with(&p, "/userinfo", &access).await.status(), 401);
        let response = post_token(
            &p,
            &[("grant_type", "refresh_token"), ("refresh_token", &refresh)],
            Some(&basic("conf", SECRET)),
        )
        .await;
        assert_eq!(error_of(response).await.1, "invalid_grant");
    }

    #[tokio::test]
    async fn wrong_verifier_is_rejected_and_burns_the_code() {
        let p = auto_provider().await;
        let (verifier, challenge) = pkce();
        let (other, _) = pkce();
        let code = get_code(&p, "conf", &challenge).await;
        let response = exchange_basic(&p, &code, &other).await;
        assert_eq!(error_of(response).await.1, "invalid_grant");
        let response = exchange_basic(&p, &code, &verifier).await;
        assert_eq!(error_of(response).await.1, "invalid_grant");
        // Missing and malformed verifiers.
        let code = get_code(&p, "conf", &challenge).await;
        let response = post_token(
            &p,
            &[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("redirect_uri", CALLBACK),
            ],
            Some(&basic("conf", SECRET)),
        )
        .await;
        assert_eq!(error_of(response).await.1, "invalid_grant");
        let code = get_code(&p, "conf", &challenge).await;
        assert_eq!(
            error_of(exchange_basic(&p, &code, "short").await).await.1,
            "invalid_grant"
        );
        assert_eq!(p.codes_redeemed(), 0);
    }

    #[tokio::test]
    async fn wrong_redirect_uri_at_token_is_rejected() {
        let p = auto_provider().await;
        let (verifier, challenge) = pkce();
        let code = get_code(&p, "conf", &challenge).await;
        let response = post_token(
            &p,
            &[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("redirect_uri", "http://127.0.0.1:9/callback/"),
                ("code_verifier", &verifier),
            ],
            Some(&basic("conf", SECRET)),
        )
        .await;
        assert_eq!(error_of(response).await.1, "invalid_grant");

        let code = get_code(&p, "conf", &challenge).await;
        let response = post_token(
            &p,
            &[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("code_verifier", &verifier),
            ],
            Some(&basic("conf", SECRET)),
        )
        .await;
        assert_eq!(error_of(response).await.1, "invalid_request");
    }

    #[tokio::test]
    async fn code_of_another_client_is_rejected() {
        let p = auto_provider().await;
        let (verifier, challenge) = pkce();
        let code = get_code(&p, "post", &challenge).await;
        let response = exchange_basic(&p, &code, &verifier).await;
        assert_eq!(error_of(response).await.1, "invalid_grant");
    }

    #[tokio::test]
    async fn bad_client_credentials_get_401() {
        let p = auto_provider().await;
        let (verifier, challenge) = pkce();
        let code = get_code(&p, "conf", &challenge).await;
        let form = [
            ("grant_type", "authorization_code"),
            ("code", code.as_str()),
            ("redirect_uri", CALLBACK),
            ("code_verifier", verifier.as_str()),
        ];
        let response = post_token(&p, &form, Some(&basic("conf", "wrong"))).await;
        assert_eq!(response.status(), 401);
        let challenge_header = response
            .headers()
            .get(reqwest::header::WWW_AUTHENTICATE)
            .unwrap();
        assert!(challenge_header.to_str().unwrap().starts_with("Basic "));
        assert_eq!(error_of(response).await.1, "invalid_client");
        // Secret sent without form-urlencoding.
        let raw = format!("Basic {}", STANDARD.encode(format!("conf:{SECRET}")));
        assert_eq!(post_token(&p, &form, Some(&raw)).await.status(), 401);
        for header in [
            "Basic !!!not base64",
            "Basic",
            "Bearer abc",
            "Basic Y29uZg==",
            "Basic JQ==",
        ] {
            let response = post_token(&p, &form, Some(header)).await;
            assert_eq!(
                error_of(response).await,
                (reqwest::StatusCode::UNAUTHORIZED, "invalid_client".into()),
                "{header}"
            );
        }
        assert_eq!(
            post_token(&p, &form, Some(&basic("nobody", "x")))
                .await
                .status(),
            401
        );
        assert_eq!(post_token(&p, &form, None).await.status(), 401);
        let mut with_id = form.to_vec();
        with_id.push(("client_id", "post"));
        assert_eq!(
            post_token(&p, &with_id, Some(&basic("conf", SECRET)))
                .await
                .status(),
            401
        );
        // None of this burnt the code.
        assert_eq!(
            json_of(exchange_basic(&p, &code, &verifier).await).await.0,
            200
        );
    }

    #[tokio::test]
    async fn untrusted_client_or_redirect_uri_gets_a_page_not_a_redirect() {
        let p = auto_provider().await;
        let (_, challenge) = pkce();
        let cases: Vec<Vec<(&str, &str)>> = vec![
            {
                let mut params = valid_authorize("conf", &challenge);
                params[2] = ("redirect_uri", "http://evil.example/callback");
                params
            },
            {
                let mut params = valid_authorize("conf", &challenge);
                params[2] = ("redirect_uri", "http://127.0.0.1:9/callback?x=1");
                params
            },
            {
                let mut params = valid_authorize("conf", &challenge);
                params[1] = ("client_id", "<script>unknown</script>");
                params
            },
            valid_authorize("conf", &challenge)
                .into_iter()
                .filter(|(name, _)| *name != "client_id")
                .collect(),
            {
                let mut params = valid_authorize("conf", &challenge);
                params.push(("redirect_uri", CALLBACK));
                params
            },
            // "pub" has two redirect URIs, so it must name one.
            valid_authorize("pub", &challenge)
                .into_iter()
                .filter(|(name, _)| *name != "redirect_uri")
                .collect(),
        ];
        for params in cases {
            let response = http().get(authorize_url(&p, &params)).send().await.unwrap();
            assert_eq!(response.status(), 400, "{params:?}");
            assert!(response.headers().get(reqwest::header::LOCATION).is_none());
            let body = response.text().await.unwrap();
            assert!(body.contains("Authorization request rejected"));
            assert!(!body.contains("<script>"), "{body}");
        }
        assert_eq!(p.authorize_requests(), 6);
    }

    #[tokio::test]
    async fn redirect_uri_may_be_omitted_for_a_single_registered_one() {
        let p = auto_provider().await;
        let (verifier, challenge) = pkce();
        let params: Vec<_> = valid_authorize("conf", &challenge)
            .into_iter()
            .filter(|(name, _)| *name != "redirect_uri")
            .collect();
        let response = http().get(authorize_url(&p, &params)).send().await.unwrap();
        let code = query_of(&location(&response))["code"].clone();
        let response = post_token(
            &p,
            &[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("code_verifier", &verifier),
            ],
            Some(&basic("conf", SECRET)),
        )
        .await;
        assert_eq!(response.status(), 200);
    }

    async fn authorize_error(p: &DevProvider, params: &[(&str, &str)]) -> HashMap<String, String> {
        let response = http().get(authorize_url(p, params)).send().await.unwrap();
        let location = location(&response);
        assert!(location.starts_with(CALLBACK), "{location}");
        let query = query_of(&location);
        assert!(!query.contains_key("code"), "{location}");
        query
    }

    #[tokio::test]
    async fn invalid_authorization_requests_are_redirected_with_errors() {
        let p = auto_provider().await;
        let (_, challenge) = pkce();
        let with = |name: &'static str, value: Option<&'static str>| {
            let mut params: Vec<(&str, String)> = valid_authorize("conf", &challenge)
                .into_iter()
                .filter(|(n, _)| *n != name)
                .map(|(n, v)| (n, v.to_owned()))
                .collect();
            if let Some(value) = value {
                params.push((name, value.to_owned()));
            }
            params
        };
        let cases = [
            (
                with("code_challenge_method", Some("plain")),
                "invalid_request",
            ),
            (with("code_challenge_method", None), "invalid_request"),
            (with("code_challenge", None), "invalid_request"),
            (with("code_challenge", Some("too-short")), "invalid_request"),
            (
                with("response_type", Some("token")),
                "unsupported_response_type",
            ),
            (with("response_type", None), "invalid_request"),
            (with("scope", Some("a  b")), "invalid_scope"),
            (
                with("response_type", Some("code"))
                    .into_iter()
                    .chain([("response_type", "code".to_owned())])
                    .collect(),
                "invalid_request",
            ),
        ];
        for (params, expected) in cases {
            let params: Vec<(&str, &str)> = params.iter().map(|(n, v)| (*n, v.as_str())).collect();
            let query = authorize_error(&p, &params).await;
            assert_eq!(query["error"], expected, "{params:?}");
            assert_eq!(query["state"], "st&te=1 ?");
            assert_eq!(query["iss"], p.issuer());
        }
        assert!(p.issued_access_tokens().is_empty());
    }

    #[tokio::test]
    async fn login_form_sign_in_and_cancel() {
        let p = provider(DevProvider::builder()).await;
        let (verifier, challenge) = pkce();
        let mut params = valid_authorize("conf", &challenge);
        params[3] = ("scope", "<b>&x'");
        let form_page = |p: &DevProvider| {
            let url = authorize_url(p, &params);
            async move {
                let response = http().get(url).send().await.unwrap();
                assert_eq!(response.status(), 200);
                let body = response.text().await.unwrap();
                assert!(body.contains("Development provider — sign in as any user"));
                assert!(body.contains("name=\"username\""));
                assert!(body.contains("&lt;b&gt;&amp;x&#39;"), "{body}");
                assert!(!body.contains("<b>"));
                assert!(!body.contains("st&amp;te"), "state must stay server-side");
                let start = body.find("name=\"pending\" value=\"").unwrap() + 22;
                let end = start + body[start..].find('"').unwrap();
                body[start..end].to_owned()
            }
        };
        let submit = |p: &DevProvider, form: Vec<(&'static str, String)>| {
            let url = p.authorization_endpoint();
            async move {
                let form: Vec<(&str, &str)> = form.iter().map(|(n, v)| (*n, v.as_str())).collect();
                http()
                    .post(url)
                    .header(
                        reqwest::header::CONTENT_TYPE,
                        "application/x-www-form-urlencoded",
                    )
                    .body(encode(&form))
                    .send()
                    .await
                    .unwrap()
            }
        };

        // Cancel → access_denied.
        let pending = form_page(&p).await;
        let response = submit(
            &p,
            vec![("pending", pending.clone()), ("action", "cancel".into())],
        )
        .await;
        let query = query_of(&location(&response));
        assert_eq!(query["error"], "access_denied");
        assert_eq!(query["state"], "st&te=1 ?");
        // The pending request is single-use.
        let response = submit(
            &p,
            vec![
                ("pending", pending),
                ("action", "login".into()),
                ("username", "bob".into()),
            ],
        )
        .await;
        assert_eq!(response.status(), 400);

        // Invalid username → the form again, then a valid one → code.
        let pending = form_page(&p).await;
        let response = submit(
            &p,
            vec![
                ("pending", pending.clone()),
                ("action", "login".into()),
                ("username", "<x>".into()),
            ],
        )
        .await;
        assert_eq!(response.status(), 400);
        let body = response.text().await.unwrap();
        assert!(body.contains("&lt;x&gt;") && !body.contains("<x>"));
        let response = submit(
            &p,
            vec![
                ("pending", pending),
                ("action", "login".into()),
                ("username", " bob ".into()),
            ],
        )
        .await;
        let query = query_of(&location(&response));
        assert_eq!(query["state"], "st&te=1 ?");
        assert_eq!(query["iss"], p.issuer());
        let (status, body) = json_of(exchange_basic(&p, &query["code"], &verifier).await).await;
        assert_eq!(status, 200);
        let access = body["access_token"].as_str().unwrap();
        let (_, user) = json_of(userinfo_with(&p, "/userinfo", access).await).await;
        assert_eq!(user["sub"], "bob");

        // Auto-login can be switched on at runtime.
        p.set_auto_login(Some("carol".into()));
        let (verifier, challenge) = pkce();
        let code = get_code(&p, "conf", &challenge).await;
        let (_, body) = json_of(exchange_basic(&p, &code, &verifier).await).await;
        let (_, user) =
            json_of(userinfo_with(&p, "/userinfo", body["access_token"].as_str().unwrap()).await)
                .await;
        assert_eq!(user["preferred_username"], "carol");
    }

    #[tokio::test]
    async fn refresh_tokens_rotate() {
        let p = auto_provider().await;
        let first = full_login(&p).await;
        let old = first["refresh_token"].as_str().unwrap();
        let refresh = |token: String, scope: Option<&'static str>| {
            let p = p.clone();
            async move {
                let mut form = vec![
                    ("grant_type", "refresh_token"),
                    ("refresh_token", token.as_str()),
                ];
                if let Some(scope) = scope {
                    form.push(("scope", scope));
                }
                post_token(&p, &form, Some(&basic("conf", SECRET))).await
            }
        };
        let (status, second) = json_of(refresh(old.to_owned(), None).await).await;
        assert_eq!(status, 200, "{second}");
        let new = second["refresh_token"].as_str().unwrap();
        assert_ne!(new, old);
        assert_eq!(second["scope"], "read:user email");
        assert_eq!(
            userinfo_with(&p, "/userinfo", second["access_token"].as_str().unwrap())
                .await
                .status(),
            200
        );
        // The old refresh token is dead.
        assert_eq!(
            error_of(refresh(old.to_owned(), None).await).await.1,
            "invalid_grant"
        );
        // Narrowing works, widening does not.
        assert_eq!(
            error_of(refresh(new.to_owned(), Some("admin")).await)
                .await
                .1,
            "invalid_scope"
        );
        let (status, third) = json_of(refresh(new.to_owned(), Some("email")).await).await;
        assert_eq!(status, 200);
        assert_eq!(third["scope"], "email");
        let (status, fourth) =
            json_of(refresh(third["refresh_token"].as_str().unwrap().to_owned(), None).await).await;
        assert_eq!(status, 200);
        assert_eq!(fourth["scope"], "read:user email");
        assert_eq!(p.issued_refresh_tokens().len(), 4);
        // Another client cannot use it.
        let response = post_token(
            &p,
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", fourth["refresh_token"].as_str().unwrap()),
                ("client_id", "post"),
                ("client_secret", "post-secret"),
            ],
            None,
        )
        .await;
        assert_eq!(error_of(response).await.1, "invalid_grant");
    }

    #[tokio::test]
    async fn grant_type_errors() {
        let p = auto_provider().await;
        let auth = basic("conf", SECRET);
        let response = post_token(&p, &[("grant_type", "password")], Some(&auth)).await;
        assert_eq!(error_of(response).await.1, "unsupported_grant_type");
        let response = post_token(&p, &[("code", "x")], Some(&auth)).await;
        assert_eq!(error_of(response).await.1, "invalid_request");
        let response = post_token(
            &p,
            &[("grant_type", "authorization_code"), ("code", "nope")],
            Some(&auth),
        )
        .await;
        assert_eq!(error_of(response).await.1, "invalid_grant");
        let response = http()
            .post(p.token_endpoint())
            .header(reqwest::header::AUTHORIZATION, &auth)
            .json(&json!({"grant_type": "authorization_code"}))
            .send()
            .await
            .unwrap();
        assert_eq!(error_of(response).await.1, "invalid_request");
        assert_eq!(p.token_requests(), 4);
    }

    #[tokio::test]
    async fn codes_and_access_tokens_expire() {
        let p = provider(
            DevProvider::builder()
                .with_auto_login("alice")
                .with_code_lifetime(Duration::from_millis(50))
                .with_access_token_lifetime(Duration::from_millis(300)),
        )
        .await;
        let (verifier, challenge) = pkce();
        let code = get_code(&p, "conf", &challenge).await;
        tokio::time::sleep(Duration::from_millis(80)).await;
        assert_eq!(
            error_of(exchange_basic(&p, &code, &verifier).await).await.1,
            "invalid_grant"
        );

        let body = full_login(&p).await;
        assert_eq!(body["expires_in"], 1);
        let access = body["access_token"].as_str().unwrap();
        assert_eq!(userinfo_with(&p, "/userinfo", access).await.status(), 200);
        tokio::time::sleep(Duration::from_millis(350)).await;
        let response = userinfo_with(&p, "/userinfo", access).await;
        assert_eq!(response.status(), 401);
        let challenge = response
            .headers()
            .get(reqwest::header::WWW_AUTHENTICATE)
            .unwrap();
        assert!(challenge
            .to_str()
            .unwrap()
            .contains("error=\"invalid_token\""));
    }

    #[tokio::test]
    async fn userinfo_shapes_and_errors() {
        let p = auto_provider().await;
        let response = http().get(p.userinfo_endpoint()).send().await.unwrap();
        assert_eq!(response.status(), 401);
        let challenge = response
            .headers()
            .get(reqwest::header::WWW_AUTHENTICATE)
            .unwrap();
        assert_eq!(challenge, "Bearer realm=\"dev-provider\"");
        let response = userinfo_with(&p, "/userinfo", "not-a-token").await;
        assert_eq!(response.status(), 401);
        assert!(response.headers()[reqwest::header::WWW_AUTHENTICATE]
            .to_str()
            .unwrap()
            .contains("error=\"invalid_token\""));
        let body = full_login(&p).await;
        let access = body["access_token"].as_str().unwrap();
        p.revoke_access_tokens();
        assert_eq!(userinfo_with(&p, "/userinfo", access).await.status(), 401);

        let gh = provider(
            DevProvider::builder()
                .with_user_shape(UserShape::GitHub)
                .with_auto_login("octo-cat"),
        )
        .await;
        let body = full_login(&gh).await;
        let access = body["access_token"].as_str().unwrap();
        for path in ["/user", "/userinfo"] {
            let (status, user) = json_of(userinfo_with(&gh, path, access).await).await;
            assert_eq!(status, 200);
            assert_eq!(user["login"], "octo-cat");
            assert_eq!(user["name"], "Octo-cat");
            assert!(user.get("sub").is_none());
            assert_eq!(user["id"].as_u64(), Some(github_id("octo-cat")));
        }
        assert_eq!(github_id("octo-cat"), github_id("octo-cat"));
        assert_ne!(github_id("octo-cat"), github_id("octo-dog"));
        assert!(github_id("x") < 1 << 53);
    }

    #[tokio::test]
    async fn token_behaviors() {
        let p = auto_provider().await;
        let auth = basic("conf", SECRET);
        let refresh_form = |token: &str| {
            vec![
                ("grant_type".to_owned(), "refresh_token".to_owned()),
                ("refresh_token".to_owned(), token.to_owned()),
            ]
        };
        let send = |form: Vec<(String, String)>| {
            let p = p.clone();
            let auth = auth.clone();
            async move {
                let form: Vec<(&str, &str)> =
                    form.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
                post_token(&p, &form, Some(&auth)).await
            }
        };
        let mut refresh = full_login(&p).await["refresh_token"]
            .as_str()
            .unwrap()
            .to_owned();

        p.set_token_behavior(TokenBehavior::InvalidGrant);
        assert_eq!(
            error_of(send(refresh_form(&refresh)).await).await,
            (reqwest::StatusCode::BAD_REQUEST, "invalid_grant".into())
        );

        p.set_token_behavior(TokenBehavior::ServerError);
        let response = send(refresh_form(&refresh)).await;
        assert_eq!(response.status(), 500);
        assert!(response.json::<Value>().await.is_err());

        p.set_token_behavior(TokenBehavior::NotJson);
        let response = send(refresh_form(&refresh)).await;
        assert_eq!(response.status(), 200);
        assert!(response.headers()[reqwest::header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/html"));
        assert!(response.json::<Value>().await.is_err());

        p.set_token_behavior(TokenBehavior::HugeBody);
        let response = send(refresh_form(&refresh)).await;
        assert_eq!(response.status(), 200);
        let bytes = response.bytes().await.unwrap();
        assert!(bytes.len() >= 5 * 1024 * 1024);
        assert!(serde_json::from_slice::<Value>(&bytes).is_ok());

        // None of the above consumed the refresh token.
        p.set_token_behavior(TokenBehavior::Slow(Duration::from_millis(200)));
        let started = Instant::now();
        let (status, body) = json_of(send(refresh_form(&refresh)).await).await;
        assert!(started.elapsed() >= Duration::from_millis(200));
        assert_eq!(status, 200, "{body}");
        refresh = body["refresh_token"].as_str().unwrap().to_owned();

        p.set_token_behavior(TokenBehavior::TokenTypeCase("bEaReR".into()));
        let (_, body) = json_of(send(refresh_form(&refresh)).await).await;
        assert_eq!(body["token_type"], "bEaReR");
        refresh = body["refresh_token"].as_str().unwrap().to_owned();

        p.set_token_behavior(TokenBehavior::OmitExpiresIn);
        let (status, body) = json_of(send(refresh_form(&refresh)).await).await;
        assert_eq!(status, 200);
        assert!(body.get("expires_in").is_none());
        assert!(body["access_token"].is_string());

        p.set_token_behavior(TokenBehavior::Normal);
        assert_eq!(p.token_requests(), 8);
    }

    #[tokio::test]
    async fn authorize_behaviors() {
        let p = auto_provider().await;
        let (_, challenge) = pkce();
        let params = valid_authorize("conf", &challenge);

        p.set_authorize_behavior(AuthorizeBehavior::Error {
            error: "access_denied".into(),
            description: Some("nope".into()),
        });
        let query = authorize_error(&p, &params).await;
        assert_eq!(query["error"], "access_denied");
        assert_eq!(query["error_description"], "nope");
        assert_eq!(query["state"], "st&te=1 ?");
        assert_eq!(query["iss"], p.issuer());

        p.set_authorize_behavior(AuthorizeBehavior::WrongIss);
        let response = http().get(authorize_url(&p, &params)).send().await.unwrap();
        let query = query_of(&location(&response));
        assert!(query.contains_key("code"));
        assert_eq!(query["iss"], WRONG_ISSUER);
        assert_ne!(query["iss"], p.issuer());

        p.set_authorize_behavior(AuthorizeBehavior::OmitIss);
        let response = http().get(authorize_url(&p, &params)).send().await.unwrap();
        let query = query_of(&location(&response));
        assert!(query.contains_key("code"));
        assert!(!query.contains_key("iss"));
    }

    #[tokio::test]
    async fn userinfo_behaviors() {
        let p = auto_provider().await;
        let body = full_login(&p).await;
        let access = body["access_token"].as_str().unwrap();
        p.set_userinfo_behavior(UserinfoBehavior::ServerError);
        assert_eq!(userinfo_with(&p, "/userinfo", access).await.status(), 500);
        p.set_userinfo_behavior(UserinfoBehavior::NotJson);
        let response = userinfo_with(&p, "/userinfo", access).await;
        assert_eq!(response.status(), 200);
        assert!(response.json::<Value>().await.is_err());
        p.set_userinfo_behavior(UserinfoBehavior::Normal);
        assert_eq!(userinfo_with(&p, "/userinfo", access).await.status(), 200);
        assert_eq!(p.userinfo_requests(), 3);
    }

    #[tokio::test]
    async fn metadata_builder_errors_and_shutdown() {
        let p = auto_provider().await;
        assert!(p.base_url().starts_with("http://127.0.0.1:"));
        assert!(!p.base_url().ends_with('/'));
        assert_eq!(p.issuer(), p.base_url());
        let (status, meta) = json_of(
            http()
                .get(format!(
                    "{}/.well-known/oauth-authorization-server",
                    p.base_url()
                ))
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(status, 200);
        assert_eq!(meta["issuer"], p.issuer());
        assert_eq!(meta["token_endpoint"], p.token_endpoint());
        assert_eq!(meta["code_challenge_methods_supported"], json!(["S256"]));

        let bad = DevProvider::builder()
            .with_client(DevClient::public("a", "http://x.example/cb#frag"))
            .start()
            .await;
        assert_eq!(bad.unwrap_err().kind(), std::io::ErrorKind::InvalidInput);
        let bad = DevProvider::builder()
            .with_client(DevClient::public("a", "/relative"))
            .start()
            .await;
        assert_eq!(bad.unwrap_err().kind(), std::io::ErrorKind::InvalidInput);
        let bad = DevProvider::builder()
            .with_client(DevClient::public("a", CALLBACK))
            .with_client(DevClient::public("a", CALLBACK))
            .start()
            .await;
        assert_eq!(bad.unwrap_err().kind(), std::io::ErrorKind::InvalidInput);

        let debug = format!("{:?}", DevClient::confidential("id", "hunter2", CALLBACK));
        assert!(!debug.contains("hunter2"));

        let url = p.authorization_endpoint();
        let clone = p.clone();
        drop(clone);
        assert!(http().get(&url).send().await.is_ok());
        p.shutdown();
        let mut stopped = false;
        for _ in 0..50 {
            if http().get(&url).send().await.is_err() {
                stopped = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(stopped, "server still answering after shutdown()");
        assert_eq!(p.authorize_requests(), 1);
    }

    #[test]
    fn helpers() {
        assert_eq!(form_urldecode("a+b%2Bc%3A%25"), Some("a b+c:%".into()));
        assert_eq!(form_urldecode("%"), None);
        assert_eq!(form_urldecode("%zz"), None);
        assert_eq!(form_urldecode("%ff"), None);
        assert!(is_valid_scope("openid read:user"));
        assert!(!is_valid_scope(""));
        assert!(!is_valid_scope("a\"b"));
        assert!(!is_valid_scope(" a"));
        assert_eq!(capitalise("élodie"), "Élodie");
        assert_eq!(ceil_secs(Duration::from_millis(1500)), 2);
        assert_eq!(ceil_secs(Duration::from_secs(3600)), 3600);
        let params = parse_params(b"a=1&b=&b=&a=2");
        assert_eq!(duplicate_param(&params), Some("a"));
        assert_eq!(get_param(&params, "b"), None);
        assert!(random_token().len() >= 43);
    }
}
