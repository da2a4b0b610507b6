//! Errors, one type per surface: configuration (at build time), the login flow (each with
//! the response the browser or API client gets), and the session store.

use std::fmt;

use bytes::Bytes;
use http::{header, HeaderValue, Response, StatusCode};

use crate::page;

/// A configuration mistake found by [`LoginLayerBuilder::build`](crate::LoginLayerBuilder::build).
///
/// Every check that can be made before the first request is made there, so a bad
/// configuration stops the application at start-up rather than failing a user's login.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A required setting was not given.
    #[error("missing required setting: {0}")]
    Missing(&'static str),
    /// A URL setting could not be parsed or has the wrong form.
    #[error("invalid {field}: {reason}")]
    InvalidUrl {
        /// Which setting.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// A path setting does not start with `/` or collides with another path of the layer.
    #[error("invalid path {field}: {reason}")]
    InvalidPath {
        /// Which setting.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
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
    #[error("OpenID Connect discovery failed: {0}")]
    Discovery(String),
    /// The provider does not support what the configuration asks for, or the layer does
    /// not support it.
    #[error("unsupported: {0}")]
    Unsupported(String),
    /// The HTTP client for the provider could not be built.
    #[error("could not build the HTTP client for the provider: {0}")]
    HttpClient(String),
}

/// A failure of the session store.
///
/// The layer fails closed on it: a request whose session cannot be loaded is answered
/// with `503 Service Unavailable`, never passed through as anonymous.
#[derive(Debug, thiserror::Error)]
#[error("session store error: {message}")]
pub struct StoreError {
    message: String,
}

impl StoreError {
    /// A store error with a message. The message must not contain a session id or token.
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
        }
    }
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
    BadCallback(&'static str),
    /// No pending login matches the `state` (missing, unknown, tampered or expired).
    UnknownState,
    /// The `iss` parameter (RFC 9207) is missing or names another issuer.
    IssuerMismatch,
    /// The token endpoint refused the code (`invalid_grant` and similar client errors).
    CodeRejected(String),
    /// The provider failed: 5xx, non-JSON, timeout, an unusable token response.
    Provider5xx(&'static str),
    /// The user's identity could not be fetched or has no subject.
    Identity(&'static str),
    /// The ID token failed verification (OpenID Connect).
    IdToken(&'static str),
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
            FlowError::Provider { .. } => StatusCode::BAD_REQUEST,
            FlowError::BadCallback(_) | FlowError::UnknownState | FlowError::IssuerMismatch => {
                StatusCode::BAD_REQUEST
            }
            FlowError::CodeRejected(_) => StatusCode::BAD_REQUEST,
            FlowError::Provider5xx(_) | FlowError::Identity(_) | FlowError::IdToken(_) => {
                StatusCode::BAD_GATEWAY
            }
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
            FlowError::Provider5xx(_) => "provider_error",
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
                let title = if code == "access_denied" {
                    "Sign-in was cancelled"
                } else {
                    "The provider refused the sign-in"
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
            FlowError::Provider5xx(what) => (
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

    /// The response: an HTML page with a way to start again for browsers, JSON otherwise.
    pub(crate) fn response(&self, wants_json: bool, retry_href: Option<&str>) -> Response<Bytes> {
        let (title, text) = self.explain();
        let mut res = if wants_json {
            page::json(
                self.status(),
                &serde_json::json!({ "error": self.code(), "error_description": text }),
            )
        } else {
            page::html(self.status(), title, &text, retry_href)
        };
        if self.status() == StatusCode::SERVICE_UNAVAILABLE {
            res.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
        }
        if let FlowError::MethodNotAllowed(allowed) = self {
            res.headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static(allowed));
        }
        res
    }
}

impl fmt::Display for FlowError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}
