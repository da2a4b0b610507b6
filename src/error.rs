//! Errors, one type per surface: configuration (at build time), the login flow (each with
//! the response the browser or API client gets), and the session store.

use std::error::Error as StdError;
use std::fmt;

use http::StatusCode;

/// A configuration mistake found by [`LoginLayerBuilder::build`](crate::LoginLayerBuilder::build).
///
/// Every check that can be made before the first request is made there, so a bad
/// configuration stops the application at start-up rather than failing a user's login.
///
/// # Example
///
/// ```
/// use tower_oauth2_login::{ConfigError, LoginLayer};
///
/// let err = LoginLayer::builder()
///     .with_client_id("my-app")
///     .with_redirect_url("https://app.example/auth/callback")
///     .build()
///     .unwrap_err();
/// match err {
///     ConfigError::Missing { settings } => {
///         assert_eq!(
///             settings,
///             ["authorization endpoint", "token endpoint", "userinfo endpoint"]
///         );
///     }
///     other => panic!("another mistake: {other}"),
/// }
///
/// // Plain http is refused off loopback: tokens would cross the network in clear text.
/// let err = LoginLayer::builder()
///     .with_client_id("my-app")
///     .with_authorization_endpoint("http://idp.example/authorize")
///     .with_token_endpoint("https://idp.example/token")
///     .with_userinfo_endpoint("https://idp.example/userinfo")
///     .with_redirect_url("https://app.example/auth/callback")
///     .build()
///     .unwrap_err();
/// assert!(matches!(err, ConfigError::InvalidUrl { field: "authorization endpoint", .. }));
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// Required settings were not given: all of them, so that one run of the
    /// application tells everything that is missing.
    #[error("missing required settings: {}", settings.join(", "))]
    Missing {
        /// The missing settings, in the order of the builder's groups (e.g.
        /// `"client id"`, `"redirect URL"`).
        settings: Vec<&'static str>,
    },
    /// An explicit setting contradicts what discovery found (e.g. another issuer).
    #[error("{field} differs from the discovered one")]
    Conflict {
        /// Which setting.
        field: &'static str,
    },
    /// A URL setting could not be parsed.
    #[error("invalid {field}: not a URL")]
    UnparsableUrl {
        /// Which setting.
        field: &'static str,
        /// What the URL parser said.
        #[source]
        source: url::ParseError,
    },
    /// A URL setting has the wrong form (scheme, fragment, credentials).
    #[error("invalid {field}: {reason}")]
    InvalidUrl {
        /// Which setting.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// A path setting does not start with `/`, collides with another path of the layer, or
    /// (the post-logout redirect) is not a same-origin path.
    #[error("invalid path {field}: {reason}")]
    InvalidPath {
        /// Which setting.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// An extra authorization parameter names one the layer sets itself (`state`,
    /// `nonce`, `redirect_uri`, ...): letting it through would undo a protection.
    #[error("authorization parameter {name} is set by the layer itself")]
    ReservedAuthorizationParam {
        /// The parameter's name.
        name: String,
    },
    /// A client authentication method needs a client secret, and none was given.
    #[error("client authentication {0} needs a client secret")]
    SecretRequired(&'static str),
    /// The cookie key is too short.
    #[error("the cookie key must be at least 64 bytes of random data (got {0})")]
    CookieKeyTooShort(usize),
    /// A duration setting is out of range.
    #[error("invalid {field}: {reason}")]
    InvalidDuration {
        /// Which setting.
        field: &'static str,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// Discovery failed: the document could not be fetched or read, its `issuer` is not
    /// the configured one, or its keys could not be fetched.
    #[error("OpenID Connect discovery failed")]
    Discovery(#[from] DiscoveryError),
    /// The provider does not support what the configuration asks for, or the layer does
    /// not support it.
    #[error("unsupported: {0}")]
    Unsupported(String),
    /// The HTTP client for the provider could not be built.
    #[error("could not build the HTTP client for the provider")]
    HttpClient(#[source] Box<dyn StdError + Send + Sync>),
}

/// Why OpenID Connect discovery failed ([`ConfigError::Discovery`]).
///
/// # Example
///
/// Telling a provider that is down (worth a retry at start-up) from a wrong issuer (a
/// configuration to fix):
///
/// ```no_run
/// use tower_oauth2_login::{ConfigError, DiscoveryError, LoginLayer};
///
/// # async fn run() -> Result<(), ConfigError> {
/// let builder = match LoginLayer::builder().discover("https://accounts.example").await {
///     Ok(builder) => builder,
///     Err(ConfigError::Discovery(DiscoveryError::Request { url, source })) => {
///         eprintln!("{url} is unreachable ({source}); retrying later");
///         return Ok(());
///     }
///     Err(ConfigError::Discovery(DiscoveryError::IssuerMismatch { discovered, .. })) => {
///         panic!("configure the issuer as the provider names itself: {discovered}");
///     }
///     Err(other) => return Err(other),
/// };
/// # let _ = builder; Ok(()) }
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DiscoveryError {
    /// The issuer is not a URL.
    #[error("the issuer is not a valid URL")]
    InvalidIssuer(#[source] url::ParseError),
    /// The discovery document or the key set (JWKS) could not be fetched: the connection
    /// was refused, the name did not resolve, TLS failed, no answer in time, an answer too
    /// large, a 5xx. The source says which.
    #[error("could not fetch {url}")]
    Request {
        /// What was fetched: the discovery document or the key set.
        url: String,
        /// Why it failed.
        #[source]
        source: Box<dyn StdError + Send + Sync>,
    },
    /// The provider answered with an unexpected status or content type.
    #[error("{url} answered {status}: {reason}")]
    Status {
        /// What was fetched.
        url: String,
        /// The HTTP status.
        status: http::StatusCode,
        /// What was unexpected (the status, or the content type).
        reason: String,
    },
    /// The document or the key set is not valid JSON of the expected shape.
    #[error("{url} is not a valid discovery document or key set")]
    InvalidDocument {
        /// What was fetched.
        url: String,
        /// What the parser said.
        #[source]
        source: Box<dyn StdError + Send + Sync>,
    },
    /// The document names another issuer than the one configured: the issuer must be
    /// exactly the provider's own identifier (a trailing `/`, `http` for `https`, or
    /// `localhost` for `127.0.0.1` make another one).
    #[error("the provider says its issuer is {discovered}, you configured {configured}")]
    IssuerMismatch {
        /// The issuer given to `discover`.
        configured: String,
        /// The `issuer` of the provider's document.
        discovered: String,
    },
    /// The provider does not support the authorization code flow (`response_type=code`).
    #[error("the provider does not support response_type=code")]
    CodeFlowUnsupported,
}

/// A failure of the session store.
///
/// The layer fails closed on it: a request whose session cannot be loaded is answered
/// with `503 Service Unavailable`, never passed through as anonymous.
///
/// # Example
///
/// What a custom store returns when its database fails: a message of its own words (never
/// a key or a token) and the client's error as the source.
///
/// ```
/// use std::error::Error as _;
/// use tower_oauth2_login::StoreError;
///
/// let io = std::io::Error::new(std::io::ErrorKind::TimedOut, "read timed out");
/// let err = StoreError::with_source("loading a session", io);
/// assert_eq!(err.to_string(), "session store error: loading a session");
/// assert_eq!(err.source().map(|e| e.to_string()).as_deref(), Some("read timed out"));
/// ```
#[derive(Debug, thiserror::Error)]
#[error("session store error: {message}")]
pub struct StoreError {
    message: String,
    #[source]
    source: Option<Box<dyn StdError + Send + Sync>>,
}

impl StoreError {
    /// A store error with a message. The message must not contain a session id or token.
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            source: None,
        }
    }

    /// A store error with a message and the error of the store's client that caused it,
    /// which [`Error::source`](std::error::Error::source) returns. Neither may contain a
    /// session id or token: loggers print the whole chain.
    pub fn with_source(
        message: impl Into<String>,
        source: impl Into<Box<dyn StdError + Send + Sync>>,
    ) -> Self {
        Self {
            message: message.into(),
            source: Some(source.into()),
        }
    }
}

/// Why the identity provider's answer could not be used: it did not come, came too late or
/// too large, or is not one the layer can use. Every message is the layer's own words: a
/// provider body, which may hold tokens, is never part of one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum ProviderError {
    /// No answer within the configured timeout.
    #[error("the provider did not answer in time")]
    Timeout,
    /// The answer is larger than the configured limit.
    #[error("the provider's answer is too large")]
    TooLarge,
    /// The provider answered with a 5xx status.
    #[error("the provider answered with a server error")]
    ServerError(StatusCode),
    /// No connection, or the request failed on the way.
    #[error("the provider could not be reached")]
    Unreachable,
    /// The answer is not JSON, or not of the expected shape.
    #[error("the provider's answer is not valid")]
    InvalidAnswer,
    /// The token endpoint refused this client (`invalid_client`, `unauthorized_client`,
    /// `unsupported_grant_type`, ...): the application's registration or configuration is
    /// wrong, the provider answered as it should.
    #[error("the provider refused this application")]
    ClientRefused,
    /// The token endpoint answered with an error code outside RFC 6749 5.2
    /// (`server_error`, `temporarily_unavailable`, or one of its own).
    #[error("the provider answered with an error")]
    ErrorAnswer,
    /// The token is not a bearer token (RFC 6750), the only kind the layer can use.
    #[error("the provider issued a token of an unknown type")]
    UnknownTokenType,
    /// The access token is the empty string.
    #[error("the provider issued an empty token")]
    EmptyToken,
    /// An ID token may be good, but the keys to verify it cannot be fetched now (the JWKS
    /// endpoint is down during a key rotation, or a fetch is already running).
    #[error("the provider's signing keys could not be fetched")]
    KeysUnavailable,
}

impl ProviderError {
    /// RFC 9110: 504 when the provider did not answer in time (15.6.5), 503 when the keys
    /// cannot be had now and a later try may work (15.6.4), 500 when the provider refused
    /// this application's own configuration (15.6.1), 502 for an answer that is a failure
    /// or cannot be used (15.6.3).
    pub(crate) fn status(self) -> StatusCode {
        match self {
            ProviderError::Timeout => StatusCode::GATEWAY_TIMEOUT,
            ProviderError::KeysUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            ProviderError::ClientRefused => StatusCode::INTERNAL_SERVER_ERROR,
            ProviderError::TooLarge
            | ProviderError::ServerError(_)
            | ProviderError::Unreachable
            | ProviderError::InvalidAnswer
            | ProviderError::ErrorAnswer
            | ProviderError::UnknownTokenType
            | ProviderError::EmptyToken => StatusCode::BAD_GATEWAY,
        }
    }
}

/// Why the user's identity could not be had from the userinfo endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum IdentityError {
    /// The request failed (timeout, too large, unreachable).
    #[error(transparent)]
    Fetch(ProviderError),
    /// No userinfo endpoint, and no ID token to say who the user is (the configuration
    /// check at build time makes this unreachable).
    #[error("no userinfo endpoint is configured")]
    NoEndpoint,
    /// The endpoint refused the access token, which had expired: the sign-in took longer
    /// than the token lives.
    #[error("the sign-in took longer than the provider's access token lasts")]
    TokenOutlived,
    /// The endpoint answered with a status other than 200.
    #[error("the provider refused to say who you are")]
    Refused(StatusCode),
    /// The answer is not a JSON object.
    #[error("the provider's answer is not a JSON object")]
    NotJson,
    /// The answer has no usable subject.
    #[error("the provider's answer names no user")]
    NoSubject,
    /// The answer's `sub` is not the ID token's (OIDC Core 5.3.2).
    #[error("the provider's user information is about another user")]
    AnotherUser,
}

impl IdentityError {
    fn status(self) -> StatusCode {
        match self {
            IdentityError::Fetch(e) => e.status(),
            IdentityError::NoEndpoint => StatusCode::INTERNAL_SERVER_ERROR,
            IdentityError::TokenOutlived
            | IdentityError::Refused(_)
            | IdentityError::NotJson
            | IdentityError::NoSubject
            | IdentityError::AnotherUser => StatusCode::BAD_GATEWAY,
        }
    }
}

/// Why an ID token was refused. What the person is told: enough to know it was the
/// provider's answer, nothing of its content.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum IdTokenError {
    /// The token response has no `id_token`.
    #[error("the provider sent no ID token")]
    Missing,
    /// The pending login has no nonce to check (it was started while OpenID Connect was
    /// off): the browser's login, not the provider's answer, is at fault.
    #[error("the sign-in was started without a nonce")]
    LoginWithoutNonce,
    /// Not a compact JWS in canonical base64url, or not a JWT.
    #[error("the ID token is malformed")]
    Malformed,
    /// The signature does not verify with the provider's keys and an allowed algorithm.
    #[error("the ID token's signature is not valid")]
    Signature,
    /// `iss` is not the configured issuer.
    #[error("the ID token comes from another issuer")]
    Issuer,
    /// `aud` or `azp` name another party.
    #[error("the ID token was issued to another party")]
    Audience,
    /// `exp` has passed or `iat` is out of range.
    #[error("the ID token has expired or was issued at the wrong time")]
    Expired,
    /// The nonce is not this sign-in's.
    #[error("the ID token does not belong to this sign-in")]
    Nonce,
    /// `sub` is empty or too long.
    #[error("the ID token names no user")]
    NoSubject,
    /// Any other claim check failed.
    #[error("the ID token is not valid")]
    Invalid,
}

impl IdTokenError {
    fn status(self) -> StatusCode {
        match self {
            IdTokenError::LoginWithoutNonce => StatusCode::BAD_REQUEST,
            _ => StatusCode::BAD_GATEWAY,
        }
    }
}

/// What is wrong with a callback request itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum CallbackError {
    /// A parameter appears twice (RFC 6749 3.1).
    #[error("a parameter is repeated")]
    RepeatedParameter,
    /// A parameter is longer than the layer accepts.
    #[error("a parameter is too long")]
    ParameterTooLong,
    /// No `state`.
    #[error("the state parameter is missing")]
    MissingState,
    /// No `code`, or an empty one.
    #[error("the code parameter is missing")]
    MissingCode,
}

/// What went wrong in a login, logout or session lookup, and so which response is sent.
///
/// The messages are written for the person at the browser and never carry a token, code,
/// secret or session id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum FlowError {
    /// The provider redirected back with an `error` parameter.
    Provider {
        /// The `error` code, e.g. `access_denied`.
        code: String,
        /// The provider's `error_description`, shown escaped.
        description: Option<String>,
    },
    /// The callback request itself is malformed (missing code, repeated parameter, ...).
    BadCallback(CallbackError),
    /// No pending login matches the `state` (missing, unknown, tampered or expired).
    UnknownState,
    /// The `iss` parameter (RFC 9207) is missing or names another issuer.
    IssuerMismatch,
    /// The token endpoint refused the code (`invalid_grant` and similar client errors).
    CodeRejected(String),
    /// The provider's answer did not come or cannot be used: 5xx, non-JSON, timeout, an
    /// unusable token response, signing keys that cannot be fetched.
    ProviderFailed(ProviderError),
    /// The user's identity could not be fetched or has no subject.
    Identity(IdentityError),
    /// The ID token failed verification (OpenID Connect).
    IdToken(IdTokenError),
    /// The session store failed.
    Store,
    /// The access token expired and could not be refreshed just now.
    RefreshUnavailable,
    /// A cross-site request to a state-changing endpoint.
    CrossSite,
    /// A method the endpoint does not answer.
    MethodNotAllowed(&'static str),
}

impl FlowError {
    pub(crate) fn status(&self) -> StatusCode {
        match self {
            FlowError::Provider { code, .. } if code == "access_denied" => StatusCode::FORBIDDEN,
            // RFC 6749 4.1.2.1: the two codes by which the authorization server says it
            // failed, not that the request was wrong.
            FlowError::Provider { code, .. } if code == "server_error" => StatusCode::BAD_GATEWAY,
            FlowError::Provider { code, .. } if code == "temporarily_unavailable" => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            FlowError::Provider { .. } => StatusCode::BAD_REQUEST,
            FlowError::BadCallback(_) | FlowError::UnknownState | FlowError::IssuerMismatch => {
                StatusCode::BAD_REQUEST
            }
            FlowError::CodeRejected(_) => StatusCode::BAD_REQUEST,
            FlowError::ProviderFailed(e) => e.status(),
            FlowError::Identity(e) => e.status(),
            FlowError::IdToken(e) => e.status(),
            FlowError::Store | FlowError::RefreshUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            FlowError::CrossSite => StatusCode::FORBIDDEN,
            FlowError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
        }
    }

    /// A short machine-readable code for JSON clients and logs.
    pub(crate) fn code(&self) -> &str {
        match self {
            FlowError::Provider { code, .. } => code,
            FlowError::BadCallback(_) => "invalid_callback",
            FlowError::UnknownState => "invalid_state",
            FlowError::IssuerMismatch => "invalid_issuer",
            FlowError::CodeRejected(_) => "code_rejected",
            FlowError::ProviderFailed(_) => "provider_error",
            FlowError::Identity(_) => "identity_error",
            FlowError::IdToken(_) => "invalid_id_token",
            FlowError::Store => "session_store_unavailable",
            FlowError::RefreshUnavailable => "provider_unavailable",
            FlowError::CrossSite => "cross_site_request",
            FlowError::MethodNotAllowed(_) => "method_not_allowed",
        }
    }

    /// The title and explanation shown to the person.
    pub(crate) fn explain(&self) -> (&'static str, String) {
        match self {
            FlowError::Provider { code, description } => {
                let title = match code.as_str() {
                    "access_denied" => "Sign-in was cancelled",
                    "server_error" | "temporarily_unavailable" => {
                        "The identity provider is not answering properly"
                    }
                    _ => "The provider refused the sign-in",
                };
                let mut text = format!("The identity provider answered: {code}.");
                if let Some(d) = description {
                    text.push(' ');
                    text.push_str(d);
                }
                (title, text)
            }
            FlowError::BadCallback(what) => (
                "Invalid sign-in response",
                format!("The response from the identity provider is not valid: {what}."),
            ),
            FlowError::UnknownState => (
                "Sign-in expired or not started here",
                "This sign-in response does not belong to a sign-in started in this browser, \
                 or it took too long. Start again."
                    .to_string(),
            ),
            FlowError::IssuerMismatch => (
                "Invalid sign-in response",
                "The response does not come from the expected identity provider.".to_string(),
            ),
            FlowError::CodeRejected(code) => (
                "Sign-in could not be completed",
                format!(
                    "The identity provider refused to complete the sign-in ({code}). Start again."
                ),
            ),
            // Not a passing failure: waiting will not help, and the person should know.
            FlowError::ProviderFailed(ProviderError::ClientRefused) => (
                "This application is not set up correctly at the provider",
                "The identity provider refused this application's own credentials, so \
                 nobody can sign in until the site's administrators fix its registration. \
                 Trying again will not help."
                    .to_string(),
            ),
            FlowError::ProviderFailed(what) => (
                "The identity provider is not answering properly",
                format!("Sign-in could not be completed: {what}. Try again in a moment."),
            ),
            FlowError::Identity(what) => (
                "Your identity could not be read",
                format!("Sign-in could not be completed: {what}. Try again in a moment."),
            ),
            FlowError::IdToken(what) => (
                "Sign-in could not be verified",
                format!("The identity provider's answer failed verification: {what}."),
            ),
            FlowError::Store => (
                "Sessions are unavailable",
                "Your session could not be read or stored right now. Try again in a moment."
                    .to_string(),
            ),
            FlowError::RefreshUnavailable => (
                "The identity provider is not answering",
                "Your session needs the identity provider, which is not answering right now. \
                 You are still signed in: try again in a moment."
                    .to_string(),
            ),
            FlowError::CrossSite => (
                "Request refused",
                "This request came from another site and was refused.".to_string(),
            ),
            FlowError::MethodNotAllowed(allowed) => (
                "Method not allowed",
                format!("This address only answers {allowed}."),
            ),
        }
    }
}

impl fmt::Display for FlowError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

#[cfg(test)]
mod tests {
    use http::{header, HeaderValue};

    use super::*;

    fn json_of(e: &FlowError) -> (StatusCode, serde_json::Value, Option<HeaderValue>) {
        let res = e.response(true, None);
        let body = serde_json::from_slice(res.body()).unwrap();
        (
            res.status(),
            body,
            res.headers().get(header::RETRY_AFTER).cloned(),
        )
    }

    fn provider(code: &str) -> FlowError {
        FlowError::Provider {
            code: code.into(),
            description: None,
        }
    }

    #[test]
    fn each_failure_has_the_status_that_fits_and_a_stable_code() {
        use FlowError as F;
        let cases = [
            (
                F::ProviderFailed(ProviderError::Timeout),
                504,
                "provider_error",
            ),
            (
                F::ProviderFailed(ProviderError::KeysUnavailable),
                503,
                "provider_error",
            ),
            (
                F::ProviderFailed(ProviderError::ClientRefused),
                500,
                "provider_error",
            ),
            (
                F::ProviderFailed(ProviderError::ErrorAnswer),
                502,
                "provider_error",
            ),
            (
                F::ProviderFailed(ProviderError::ServerError(StatusCode::SERVICE_UNAVAILABLE)),
                502,
                "provider_error",
            ),
            (
                F::ProviderFailed(ProviderError::Unreachable),
                502,
                "provider_error",
            ),
            (
                F::ProviderFailed(ProviderError::TooLarge),
                502,
                "provider_error",
            ),
            (
                F::ProviderFailed(ProviderError::InvalidAnswer),
                502,
                "provider_error",
            ),
            (
                F::ProviderFailed(ProviderError::UnknownTokenType),
                502,
                "provider_error",
            ),
            (
                F::ProviderFailed(ProviderError::EmptyToken),
                502,
                "provider_error",
            ),
            (
                F::Identity(IdentityError::Fetch(ProviderError::Timeout)),
                504,
                "identity_error",
            ),
            (
                F::Identity(IdentityError::NoEndpoint),
                500,
                "identity_error",
            ),
            (
                F::Identity(IdentityError::Refused(StatusCode::FORBIDDEN)),
                502,
                "identity_error",
            ),
            (
                F::Identity(IdentityError::TokenOutlived),
                502,
                "identity_error",
            ),
            (F::IdToken(IdTokenError::Signature), 502, "invalid_id_token"),
            (
                F::IdToken(IdTokenError::LoginWithoutNonce),
                400,
                "invalid_id_token",
            ),
            (
                F::BadCallback(CallbackError::MissingCode),
                400,
                "invalid_callback",
            ),
            (F::Store, 503, "session_store_unavailable"),
            (provider("access_denied"), 403, "access_denied"),
            (provider("server_error"), 502, "server_error"),
            (
                provider("temporarily_unavailable"),
                503,
                "temporarily_unavailable",
            ),
            (provider("invalid_scope"), 400, "invalid_scope"),
            (
                F::CodeRejected("invalid_grant".into()),
                400,
                "code_rejected",
            ),
            (F::UnknownState, 400, "invalid_state"),
            (F::IssuerMismatch, 400, "invalid_issuer"),
            (F::CrossSite, 403, "cross_site_request"),
            (F::MethodNotAllowed("GET"), 405, "method_not_allowed"),
            (F::RefreshUnavailable, 503, "provider_unavailable"),
        ];
        for (e, status, code) in cases {
            let (got, body, retry) = json_of(&e);
            assert_eq!(got.as_u16(), status, "{e:?}");
            assert_eq!(body["error"], code, "{e:?}");
            assert_eq!(retry.is_some(), status == 503, "{e:?}: Retry-After");
        }
    }

    #[test]
    fn the_person_is_told_what_failed_in_the_layers_words() {
        let (_, body, _) = json_of(&FlowError::ProviderFailed(ProviderError::ServerError(
            StatusCode::BAD_GATEWAY,
        )));
        assert_eq!(
            body["error_description"],
            "Sign-in could not be completed: the provider answered with a server error. \
             Try again in a moment."
        );
        let (_, body, _) = json_of(&FlowError::IdToken(IdTokenError::Nonce));
        assert_eq!(
            body["error_description"],
            "The identity provider's answer failed verification: the ID token does not \
             belong to this sign-in."
        );
        let (_, body, _) = json_of(&FlowError::Identity(IdentityError::Fetch(
            ProviderError::TooLarge,
        )));
        assert_eq!(
            body["error_description"],
            "Sign-in could not be completed: the provider's answer is too large. Try again \
             in a moment."
        );
    }

    #[test]
    fn config_and_store_errors_keep_their_cause() {
        use std::error::Error as _;
        let e = ConfigError::Discovery(DiscoveryError::InvalidIssuer(
            url::Url::parse("not a url").unwrap_err(),
        ));
        let cause = e.source().expect("the discovery error");
        assert!(cause.source().is_some(), "the URL parse error");
        let e = ConfigError::UnparsableUrl {
            field: "issuer",
            source: url::ParseError::RelativeUrlWithoutBase,
        };
        assert!(e.source().is_some());
        let e = StoreError::with_source("redis load: no answer", std::io::Error::other("x"));
        assert_eq!(e.source().unwrap().to_string(), "x");
        assert!(StoreError::new("down").source().is_none());
    }
}
