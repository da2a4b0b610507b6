//! An embedded **development** OAuth 2.0 authorization server and OpenID Connect provider,
//! for `tower-oauth2-login`'s demo, tests, benches and load harnesses.
//!
//! # Development and tests only
//!
//! **This provider signs in anyone.** Whoever reaches it can sign in as any user name they
//! type, with no password. All state is in memory, it speaks plain HTTP, its signing keys are
//! published in its source code, and it records client secrets and request parameters for the
//! tests to inspect. Never deploy it, never expose it beyond loopback, and never make it a
//! dependency of a production build. It is not published (`publish = false`).
//!
//! [`DevProvider`] is a small but real authorization server that listens on loopback HTTP
//! (`axum` on a tokio `TcpListener`); it refuses any other address unless
//! [`DevProviderBuilder::allow_non_loopback_listen_address_insecure`] says otherwise, since it
//! signs in anyone who types a user name, and it logs a warning whenever it starts. It
//! implements the parts of the OAuth 2.0 Authorization Code Grant and of OpenID Connect that
//! `tower-oauth2-login` uses, and validates requests as strictly as RFC 6749 (OAuth 2.0),
//! RFC 7636 (PKCE, `S256` only) and RFC 9207 (the `iss` authorization response parameter) ask
//! an authorization server to:
//!
//! * `GET /authorize` validates the client and its exactly-registered redirect URI (an error
//!   there is shown as a page and never redirected), requires `response_type=code` and a PKCE
//!   `S256` challenge, then shows a "sign in as any user" form (or, with auto-login, signs in at
//!   once) and redirects back with `code`, `state` and `iss`. An OpenID Connect `nonce` is
//!   stored and echoed in the ID token.
//! * `POST /token` authenticates the client (`client_secret_basic`, `client_secret_post` or
//!   none for public clients) and serves the `authorization_code` grant (single-use, short-lived
//!   codes bound to the client, redirect URI and PKCE challenge; a replayed code revokes the
//!   tokens issued for it) and the `refresh_token` grant (with refresh-token rotation, and on
//!   request reuse detection: [`DevProviderBuilder::with_refresh_token_reuse_detection`]). When the
//!   granted scope contains `openid` (and the user shape is [`UserShape::Standard`]) the
//!   response carries an RS256-signed `id_token`, also after a refresh.
//! * `GET /userinfo` (also at `GET /user`, GitHub style) returns the signed-in user for a valid
//!   bearer access token, in a standard (OpenID Connect-like) or a GitHub-like JSON shape
//!   ([`UserShape`]; the GitHub shape's token endpoint also answers form-encoded unless asked
//!   for JSON, as GitHub's does).
//! * `GET /jwks` serves the public signing keys; the keys are embedded RSA keys, three of them
//!   for rotation ([`DevProvider::rotate_signing_key`]).
//! * `POST /revoke` revokes access and refresh tokens (RFC 7009).
//! * `GET|POST /end_session` is OpenID Connect RP-Initiated Logout 1.0, and
//!   [`DevProvider::backchannel_logout`] sends OpenID Connect Back-Channel Logout 1.0 logout
//!   tokens to a client.
//! * `GET /.well-known/openid-configuration` serves OpenID Connect Discovery metadata and
//!   `GET /.well-known/oauth-authorization-server` RFC 8414 metadata.
//!
//! It exists for two purposes: the demo application, so that someone can try the login flow
//! without a provider account, and the integration tests, which use the knobs
//! ([`TokenBehavior`], [`AuthorizeBehavior`], [`UserinfoBehavior`], [`IdTokenBehavior`],
//! [`RefreshIdTokenBehavior`], [`LogoutTokenMisbehavior`], key rotation, an unavailable JWKS, a
//! wrong discovery issuer) to make it misbehave the way the OpenID Foundation's relying party
//! conformance tests do, and the recording accessors (such as
//! [`DevProvider::last_token_params`]) to inspect what the client sent.
//!
//! # Example
//!
//! ```no_run
//! use tower_oauth2_login_dev_provider::{DevClient, DevProvider};
//!
//! # async fn run() -> std::io::Result<()> {
//! let provider = DevProvider::builder()
//!     .with_client(
//!         DevClient::confidential(
//!             "demo-app",
//!             "demo-secret",
//!             "http://127.0.0.1:3000/auth/callback",
//!         )
//!         .with_post_logout_redirect_uri("http://127.0.0.1:3000/")
//!         .with_backchannel_logout_uri("http://127.0.0.1:3000/auth/backchannel-logout"),
//!     )
//!     .start()
//!     .await?;
//!
//! // Configure the login layer with these endpoints and the client above, or let it
//! // discover them from `{issuer}/.well-known/openid-configuration`.
//! println!("issuer:                 {}", provider.issuer());
//! println!("authorization endpoint: {}", provider.authorization_endpoint());
//! println!("token endpoint:         {}", provider.token_endpoint());
//! println!("userinfo endpoint:      {}", provider.userinfo_endpoint());
//! println!("JWKS:                   {}", provider.jwks_uri());
//!
//! // The server keeps running until the last `DevProvider` handle is dropped
//! // or `shutdown()` is called.
//! # Ok(())
//! # }
//! ```

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod authorize;
mod handle;
// The embedded keys and a JWS signer, for the library's own tests and fuzz targets: test
// support, not an API.
#[doc(hidden)]
pub mod keys;
mod logout;
mod misbehave;
mod oidc;
mod revoke;
mod token;
mod userinfo;
mod util;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_listen;
#[cfg(test)]
mod tests_oidc;

pub use self::handle::DevProvider;
pub use self::misbehave::{IdTokenBehavior, LogoutTokenMisbehavior, RefreshIdTokenBehavior};

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

use self::authorize::{authorize_get, authorize_post, redirect_with_params};
use self::handle::Handle;
use self::token::{authenticate_client, ceil_secs, token, token_error};
use self::userinfo::{capitalise, userinfo};
use self::util::*;

/// How long a rendered login form stays usable.
const PENDING_LIFETIME: Duration = Duration::from_secs(10 * 60);
/// How long a code is remembered after it expired, so that a late replay still revokes the
/// tokens issued for it (RFC 6749 section 10.5).
const CODE_GRACE: Duration = Duration::from_secs(10 * 60);
/// The `iss` value sent with [`AuthorizeBehavior::WrongIss`], and the issuer of the tokens
/// that claim to come from another provider ([`IdTokenBehavior::WrongIss`] and the like).
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
    post_logout_redirect_uris: Vec<String>,
    backchannel_logout_uri: Option<String>,
    issues_refresh_tokens: bool,
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
            post_logout_redirect_uris: Vec::new(),
            backchannel_logout_uri: None,
            issues_refresh_tokens: true,
        }
    }

    /// A public client (no secret, [`DevClientAuth::None`]) with one registered redirect URI.
    pub fn public(id: impl Into<String>, redirect_uri: impl Into<String>) -> Self {
        Self {
            id: id.into(),
            secret: None,
            redirect_uris: vec![redirect_uri.into()],
            auth: DevClientAuth::None,
            post_logout_redirect_uris: Vec::new(),
            backchannel_logout_uri: None,
            issues_refresh_tokens: true,
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

    /// Registers a post-logout redirect URI for RP-initiated logout (`/end_session`). May be
    /// called several times. Compared by exact string match, like redirect URIs.
    pub fn with_post_logout_redirect_uri(mut self, uri: impl Into<String>) -> Self {
        self.post_logout_redirect_uris.push(uri.into());
        self
    }

    /// Registers the client's OpenID Connect Back-Channel Logout URI, the address that
    /// [`DevProvider::backchannel_logout`] posts logout tokens to.
    pub fn with_backchannel_logout_uri(mut self, uri: impl Into<String>) -> Self {
        self.backchannel_logout_uri = Some(uri.into());
        self
    }

    /// Issues this client no refresh token (as GitHub OAuth apps without expiring user
    /// tokens, or a provider that grants `offline_access` only on request): its sessions
    /// end with their access token.
    pub fn without_refresh_tokens(mut self) -> Self {
        self.issues_refresh_tokens = false;
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

    /// The registered post-logout redirect URIs.
    pub fn post_logout_redirect_uris(&self) -> &[String] {
        &self.post_logout_redirect_uris
    }

    /// The registered back-channel logout URI, if any.
    pub fn backchannel_logout_uri(&self) -> Option<&str> {
        self.backchannel_logout_uri.as_deref()
    }
}

impl fmt::Debug for DevClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DevClient")
            .field("id", &self.id)
            .field("secret", &self.secret.as_ref().map(|_| "<redacted>"))
            .field("redirect_uris", &self.redirect_uris)
            .field("auth", &self.auth)
            .field("post_logout_redirect_uris", &self.post_logout_redirect_uris)
            .field("backchannel_logout_uri", &self.backchannel_logout_uri)
            .field("issues_refresh_tokens", &self.issues_refresh_tokens)
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
    /// from the username, so it is stable across runs. As GitHub's, the token endpoint then
    /// answers `application/x-www-form-urlencoded` unless the request has
    /// `Accept: application/json`.
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
    /// Behave normally (the tokens' lifetimes start), then sleep for the duration before
    /// answering: tokens that reach the client older than they were issued, as from a
    /// provider slowed down under load.
    SlowAnswer(Duration),
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
    /// Validate the access token and return the user, but with another subject than the ID
    /// token's: `sub` is `"someone-else"` (in the GitHub shape, `id` is the one of
    /// `someone-else`); the other claims are the user's. A relying party must reject the
    /// userinfo response (OpenID Connect Core section 5.3.2).
    OtherSub,
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
    refresh_reuse_detection: bool,
    allow_non_loopback: bool,
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
            refresh_reuse_detection: false,
            allow_non_loopback: false,
        }
    }
}

impl DevProviderBuilder {
    /// The address to listen on. Defaults to `127.0.0.1:0` (a free loopback port).
    ///
    /// A loopback address (`127.0.0.0/8`, `::1`) only: [`start`](Self::start) refuses any
    /// other, `0.0.0.0` and `::` included, unless
    /// [`allow_non_loopback_listen_address_insecure`](Self::allow_non_loopback_listen_address_insecure)
    /// says otherwise.
    pub fn with_addr(mut self, addr: SocketAddr) -> Self {
        self.addr = addr;
        self
    }

    /// Lets [`with_addr`](Self::with_addr) name an address beyond loopback (another
    /// machine's container network, a LAN for a demo). **Insecure**: the provider signs in
    /// anyone who types a user name, so whoever can reach the address can sign in to every
    /// app that trusts it, as anyone. Never for production; off by default.
    pub fn allow_non_loopback_listen_address_insecure(mut self, allow: bool) -> Self {
        self.allow_non_loopback = allow;
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

    /// Refresh-token reuse detection (RFC 9700 section 4.14.2): a refresh token presented
    /// again after it was rotated away revokes every token of its grant, as a provider does
    /// that takes the reuse for a theft. Off by default: without it a spent refresh token is
    /// refused (`invalid_grant`) and the grant lives on.
    /// [`DevProvider::refresh_token_reuses`] counts the reuses either way.
    pub fn with_refresh_token_reuse_detection(mut self) -> Self {
        self.refresh_reuse_detection = true;
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
    /// registered redirect, post-logout redirect or back-channel logout URI is not an absolute
    /// URI or has a fragment (RFC 6749 section 3.1.2), or the address is not a loopback one
    /// (see [`with_addr`](Self::with_addr)), and with the bind error if the address cannot
    /// be bound. Logs a warning whenever it starts: this provider is for development only.
    pub async fn start(self) -> std::io::Result<DevProvider> {
        // `to_canonical` so that an IPv4-mapped loopback address (`::ffff:127.0.0.1`) is
        // loopback too, and a mapped `0.0.0.0` is not.
        let loopback = self.addr.ip().to_canonical().is_loopback();
        if !loopback && !self.allow_non_loopback {
            return Err(invalid_input(format!(
                "the development provider listens on loopback only (127.0.0.0/8 or [::1]), \
                 not on {}: it signs in anyone who types a user name. Use a loopback \
                 address, or call allow_non_loopback_listen_address_insecure(true) to \
                 accept that anyone who can reach the address can sign in",
                self.addr
            )));
        }
        let mut clients = HashMap::new();
        for client in self.clients {
            let uris = client
                .redirect_uris
                .iter()
                .chain(&client.post_logout_redirect_uris)
                .chain(&client.backchannel_logout_uri);
            for uri in uris {
                let valid = url::Url::parse(uri).is_ok_and(|u| u.fragment().is_none());
                if !valid || uri.contains('#') {
                    return Err(invalid_input(format!(
                        "client {:?}: redirect or logout URI {uri:?} must be an absolute URI \
                         without a fragment",
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

        // Parse the embedded signing keys now (once per process), so that a broken key fails
        // here rather than in the first token request.
        keys::key_ring().map_err(std::io::Error::other)?;

        let listener = tokio::net::TcpListener::bind(self.addr).await?;
        let local_addr = listener.local_addr()?;
        let base_url = format!("http://{local_addr}");

        let shared = Arc::new(Shared {
            issuer: base_url.clone(),
            clients,
            user_shape: self.user_shape,
            access_token_lifetime: self.access_token_lifetime,
            code_lifetime: self.code_lifetime,
            refresh_reuse_detection: self.refresh_reuse_detection,
            state: Mutex::new(ServerState {
                auto_login: self.auto_login,
                published_keys: vec![0],
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
        if loopback {
            tracing::warn!(
                %local_addr,
                "development OAuth provider listening: it signs in anyone who types a user \
                 name; for development and tests only, never for production"
            );
        } else {
            tracing::warn!(
                %local_addr,
                "development OAuth provider listening BEYOND LOOPBACK (opted in): anyone who \
                 can reach this address can sign in as anyone; never for production"
            );
        }

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
// Server state
// ---------------------------------------------------------------------------------------------

struct Shared {
    issuer: String,
    clients: HashMap<String, DevClient>,
    user_shape: UserShape,
    access_token_lifetime: Duration,
    code_lifetime: Duration,
    refresh_reuse_detection: bool,
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
    id_token_behavior: IdTokenBehavior,
    refresh_id_token_behavior: RefreshIdTokenBehavior,
    auto_login: Option<String>,
    /// `Some`: the issuer the discovery documents announce instead of the real one.
    discovery_issuer: Option<String>,
    /// `true` after `set_jwks_available(false)`: `/jwks` answers 503.
    jwks_unavailable: bool,

    /// Index of the rotation key that signs (see `keys::KeyRing::rotation_key`).
    active_key: usize,
    /// Indexes of the rotation keys `/jwks` publishes, in order.
    published_keys: Vec<usize>,

    pending: HashMap<String, PendingAuthorization>,
    codes: HashMap<String, CodeGrant>,
    access_tokens: HashMap<String, AccessTokenEntry>,
    refresh_tokens: HashMap<String, RefreshTokenEntry>,
    /// Refresh tokens rotated away, with the grant they belonged to, to detect a reuse.
    spent_refresh_tokens: HashMap<String, String>,
    /// How many times a rotated refresh token was presented again.
    refresh_token_reuses: usize,
    /// Provider login sessions, in creation order.
    sessions: Vec<LoginSession>,

    issued_access_tokens: Vec<String>,
    issued_refresh_tokens: Vec<String>,
    revoked_tokens: Vec<String>,
    authorize_requests: usize,
    token_requests: usize,
    authorization_code_requests: usize,
    refresh_requests: usize,
    userinfo_requests: usize,
    codes_redeemed: usize,
    jwks_requests: usize,
    revocation_requests: usize,
    end_session_requests: usize,
    last_authorize_params: Option<Vec<(String, String)>>,
    last_token_params: Option<Vec<(String, String)>>,
    last_token_authorization_header: Option<String>,
    last_end_session_params: Option<Vec<(String, String)>>,
    /// When expired entries were last dropped (see `ServerState::prune`).
    last_prune: Option<Instant>,
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
    /// The OpenID Connect `nonce`, echoed in the ID token.
    nonce: Option<String>,
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
    nonce: Option<String>,
    login: LoginRef,
    grant_id: String,
    created: Instant,
    used: bool,
}

/// Who signed in, and in which provider login session: what every token of a grant is about.
#[derive(Clone)]
struct LoginRef {
    username: String,
    /// The provider session id (`sid` claim).
    sid: String,
    /// When the user signed in (`auth_time` claim), in seconds since the Unix epoch.
    auth_time: u64,
}

/// A provider-side login session. The provider sets no cookie, so a session only names a
/// sign-in (its `sid`) and records whether it was ended by logout.
struct LoginSession {
    sid: String,
    username: String,
    active: bool,
}

struct AccessTokenEntry {
    client_id: String,
    username: String,
    grant_id: String,
    created: Instant,
    lifetime: Duration,
}

/// A refresh token; also describes the grant when issuing a token pair.
struct RefreshTokenEntry {
    client_id: String,
    login: LoginRef,
    scope: Option<String>,
    grant_id: String,
}

impl ServerState {
    fn prune(&mut self, now: Instant, code_lifetime: Duration) {
        // Each pass scans every code, form and access token: at most one a second, so that
        // a long load test does not make every request slower (expiry itself is checked
        // where each is used).
        if self
            .last_prune
            .is_some_and(|t| now.saturating_duration_since(t) < Duration::from_secs(1))
        {
            return;
        }
        self.last_prune = Some(now);
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

    /// Signs `username` in (a new provider login session) and issues a code for `request`.
    fn issue_code(
        &mut self,
        request: &AuthorizationRequest,
        username: String,
        now: Instant,
    ) -> String {
        let sid = random_token();
        self.sessions.push(LoginSession {
            sid: sid.clone(),
            username: username.clone(),
            active: true,
        });
        let code = random_token();
        self.codes.insert(
            code.clone(),
            CodeGrant {
                client_id: request.client_id.clone(),
                redirect_uri: request.redirect_uri.clone(),
                redirect_uri_in_request: request.redirect_uri_in_request,
                code_challenge: request.code_challenge.clone(),
                scope: request.scope.clone(),
                nonce: request.nonce.clone(),
                login: LoginRef {
                    username,
                    sid,
                    auth_time: unix_now(),
                },
                grant_id: random_token(),
                created: now,
                used: false,
            },
        );
        code
    }

    /// Ends the login session `sid`, or with no `sid` every session of `username`. Returns how
    /// many active sessions were ended.
    fn end_sessions(&mut self, username: Option<&str>, sid: Option<&str>) -> usize {
        let mut ended = 0;
        for session in &mut self.sessions {
            let matches = match (sid, username) {
                (Some(sid), Some(username)) => session.sid == sid && session.username == username,
                (Some(sid), None) => session.sid == sid,
                (None, Some(username)) => session.username == username,
                (None, None) => false,
            };
            if matches && session.active {
                session.active = false;
                ended += 1;
            }
        }
        ended
    }
}

/// Seconds since the Unix epoch (0 if the clock is before it).
fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

// ---------------------------------------------------------------------------------------------
// Routing
// ---------------------------------------------------------------------------------------------

fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/", get(index))
        .route(
            "/.well-known/oauth-authorization-server",
            get(oidc::oauth_metadata),
        )
        .route(
            "/.well-known/openid-configuration",
            get(oidc::openid_configuration),
        )
        .route("/jwks", get(oidc::jwks))
        .route("/authorize", get(authorize_get).post(authorize_post))
        .route("/token", post(token))
        .route("/revoke", post(revoke::revoke))
        .route("/userinfo", get(userinfo))
        .route("/user", get(userinfo))
        .route(
            "/end_session",
            get(logout::end_session_get).post(logout::end_session_post),
        )
        .with_state(shared)
}

async fn index(State(shared): State<Arc<Shared>>) -> Response {
    let issuer = html_escape(&shared.issuer);
    let body = format!(
        "<h1>Development OpenID Connect provider</h1>\
         <p>This is an embedded authorization server for development and tests. \
         Anyone can sign in as any user. Do not use it in production.</p>\
         <ul>\
         <li>Issuer: <code>{issuer}</code></li>\
         <li>Authorization endpoint: <code>{issuer}/authorize</code></li>\
         <li>Token endpoint: <code>{issuer}/token</code></li>\
         <li>Userinfo endpoint: <code>{issuer}/userinfo</code></li>\
         <li>JWKS: <code>{issuer}/jwks</code></li>\
         <li>Revocation endpoint: <code>{issuer}/revoke</code></li>\
         <li>End session endpoint: <code>{issuer}/end_session</code></li>\
         <li>Discovery: <code>{issuer}/.well-known/openid-configuration</code></li>\
         <li>Metadata: <code>{issuer}/.well-known/oauth-authorization-server</code></li>\
         </ul>"
    );
    html_response(StatusCode::OK, "Development OpenID Connect provider", &body)
}
