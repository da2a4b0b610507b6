//! # tower-oauth2-login
//!
//! One Tower [`Layer`](tower_layer::Layer) that logs browser users in with the OAuth 2.0
//! Authorization Code Grant and hands your handlers the signed-in user.
//!
//! - An unauthenticated page load is redirected to the provider with `response_type=code`,
//!   the exact registered `redirect_uri`, a 256-bit `state` bound to this browser, and a
//!   fresh PKCE S256 challenge. API calls get `401` instead.
//! - The layer answers the callback itself: it checks `state` (and `iss`, RFC 9207),
//!   turns provider errors into clear pages, and exchanges the code over the back channel
//!   (client secret by Basic or POST, or PKCE alone for a public client).
//! - Tokens stay on the server. The browser holds an opaque session cookie only
//!   (`HttpOnly`, `SameSite=Lax`, `Secure` and `__Host-` over https).
//! - Handlers take [`AuthUser`], `Option<AuthUser>` or [`AccessToken`]; the access token is
//!   refreshed before it expires, once per session however many requests arrive together.
//! - With [`LoginLayerBuilder::discover`] it is an OpenID Connect relying party: verified ID
//!   tokens (once, at login), nonce, JWKS rotation, userinfo, RP-initiated and back-channel
//!   logout.
//!
//! ## Quick start
//!
//! ```no_run
//! use axum::{routing::get, Router};
//! use tower_oauth2_login::{AuthUser, LoginLayer};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! // The layer reports what goes wrong through `tracing`: without a subscriber, nothing
//! // is printed.
//! tracing_subscriber::fmt::init();
//! let login = LoginLayer::builder()
//!     .with_client_id("my-client")
//!     .with_client_secret(std::env::var("CLIENT_SECRET")?)
//!     .with_authorization_endpoint("https://github.com/login/oauth/authorize")
//!     .with_token_endpoint("https://github.com/login/oauth/access_token")
//!     .with_userinfo_endpoint("https://api.github.com/user")
//!     .with_subject_field("id")
//!     .with_redirect_url("https://app.example/auth/callback")
//!     .with_scope("read:user")
//!     .with_cookie_key(std::env::var("COOKIE_KEY")?.as_bytes())
//!     .with_public_path("/")
//!     .build()?;
//!
//! let app = Router::new()
//!     .route("/", get(|user: Option<AuthUser>| async move {
//!         match user {
//!             Some(user) => format!("hello {}", user.subject()),
//!             None => "hello stranger: <a href=/auth/login>sign in</a>".into(),
//!         }
//!     }))
//!     .route("/me", get(|user: AuthUser| async move { user.subject().to_string() }))
//!     .layer(login);
//!
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
//! axum::serve(listener, app).await?;
//! # Ok(()) }
//! ```
//!
//! ## The way of a request
//!
//! | request | answer |
//! |---|---|
//! | the callback path (from the redirect URL) | state, iss, code exchange, new session, `303` back |
//! | `GET` the login path (`/auth/login?return_to=/x`) | `303` to the provider |
//! | `POST` the logout path | session deleted, cookie cleared, refresh token revoked, `303` to the provider's end-session endpoint or the post-logout page |
//! | `POST` the back-channel logout path | logout token verified, matching sessions deleted |
//! | valid session cookie | token refreshed if about to expire, [`AuthUser`] in the request extensions, then your handler |
//! | no session, public path | your handler (`Option<AuthUser>` is `None`) |
//! | no session, page load | `303` to the provider, back to this page after login |
//! | no session, API call | `401` with `WWW-Authenticate` and JSON |
//! | session store down | `503`: the layer fails closed |
//!
//! ## Session stores
//!
//! Sessions live on the server, behind [`SessionStore`]: a [`MemoryStore`] by default (one
//! instance), or `RedisStore` with the feature `redis` (Redis or Valkey, shared by several
//! instances, every call bounded by a timeout). See [`session`].

#![forbid(unsafe_code)]
#![warn(missing_docs)]

// The way of a request, top to bottom: each module uses only those below it (checked by
// scripts/check-layers.sh).
mod config; //         the builder: settings, validation, discovery
mod context; //        what the steps share, built once by the builder
mod error; //          the error types
mod extract; //        AuthUser, AccessToken: what handlers get
mod flow; //           login, callback, refresh, logout, back-channel logout
mod http; //           request classification, cookies, pages
mod provider; //       one provider: client, HTTP, tokens, userinfo, OpenID Connect
mod service; //        LoginLayer, LoginService: which step answers a request
pub mod session; //    sessions and the stores that keep them

// The benches' hooks into the callback (benches/callback.rs); not a public API.
#[doc(hidden)]
pub mod bench;

// Entry points for the fuzz targets and the property tests; not a public API, and not in
// any build but the tests' and cargo-fuzz's (`--cfg fuzzing`).
#[cfg(any(test, fuzzing))]
#[doc(hidden)]
pub mod fuzzing;

pub use config::LoginLayerBuilder;
pub use context::{Access, UnauthenticatedApi};
pub use error::{ConfigError, DiscoveryError, StoreError};
pub use extract::{AccessToken, AccessTokenRejection, AuthUser, TokenExpired, Unauthenticated};
pub use provider::ClientAuth;
pub use service::registration::Registration;
pub use service::require_login::{RequireLogin, RequireLoginLayer};
pub use service::{LoginLayer, LoginService, ResponseFuture};
pub use session::OnceKey;
pub use session::{MemoryStore, RefreshLock, Session, SessionKey, SessionMatch, SessionStore};
#[cfg(feature = "redis")]
pub use session::{RedisStore, RedisStoreBuilder};
