//! The token endpoint's answer: which access tokens the layer can use, and what a failed
//! request means for the person waiting.

use oauth2::basic::BasicErrorResponseType;
use oauth2::{RequestTokenError, TokenResponse as _};

use crate::error::{FlowError, ProviderError};
use crate::provider::http_client::BackchannelError;
use crate::provider::TokenResponse;

/// The access token of a token response, if the layer can use it: RFC 6749 7.1 and
/// RFC 6750, the layer only knows how to use bearer tokens, and an empty one is no token.
pub(crate) fn usable_access_token(token: &TokenResponse) -> Result<&str, FlowError> {
    if !token.token_type().as_ref().eq_ignore_ascii_case("bearer") {
        return Err(FlowError::ProviderFailed(ProviderError::UnknownTokenType));
    }
    let access_token = token.access_token().secret();
    if access_token.is_empty() {
        return Err(FlowError::ProviderFailed(ProviderError::EmptyToken));
    }
    Ok(access_token)
}

/// Keeps an `error` code to the RFC 6749 character set, so a hostile value cannot make
/// the page say something else.
pub(crate) fn sanitize_error_code(code: &str) -> String {
    let clean: String = code
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '-' || *c == '.')
        .take(64)
        .collect();
    if clean.is_empty() {
        "unknown_error".to_string()
    } else {
        clean
    }
}

/// Maps a failed exchange to what the person is told. The raw provider answer is never
/// shown or logged: a malformed success response may hold tokens.
pub(crate) fn token_error(
    e: RequestTokenError<BackchannelError, oauth2::basic::BasicErrorResponse>,
) -> FlowError {
    match e {
        RequestTokenError::ServerResponse(err) => {
            let code = err.error().as_ref().to_string();
            match err.error() {
                BasicErrorResponseType::InvalidGrant
                | BasicErrorResponseType::InvalidRequest
                | BasicErrorResponseType::InvalidScope => {
                    tracing::warn!(error = %code, "the token endpoint refused the code");
                    FlowError::CodeRejected(sanitize_error_code(&code))
                }
                // A configuration mistake, not a passing failure: logged at `error`, with
                // the settings to check, since nobody can sign in until it is fixed.
                BasicErrorResponseType::InvalidClient => {
                    tracing::error!(
                        error = %code,
                        "the token endpoint refused this client's credentials: check the \
                         client id (with_client_id), the client secret (with_client_secret) \
                         and the client authentication method (with_client_auth) against \
                         the client's registration at the provider"
                    );
                    FlowError::ProviderFailed(ProviderError::ClientRefused)
                }
                BasicErrorResponseType::UnauthorizedClient
                | BasicErrorResponseType::UnsupportedGrantType => {
                    tracing::error!(
                        error = %code,
                        "the token endpoint does not allow this client the authorization \
                         code grant: check the grant types of the client's registration at \
                         the provider (authorization_code, and refresh_token for refresh)"
                    );
                    FlowError::ProviderFailed(ProviderError::ClientRefused)
                }
                // A code outside RFC 6749 5.2 (`server_error`, `temporarily_unavailable`,
                // a provider's own): the provider failing, not this client refused.
                BasicErrorResponseType::Extension(_) => {
                    FlowError::ProviderFailed(ProviderError::ErrorAnswer)
                }
            }
        }
        RequestTokenError::Request(BackchannelError::Timeout) => {
            tracing::warn!("the token endpoint did not answer in time");
            FlowError::ProviderFailed(ProviderError::Timeout)
        }
        RequestTokenError::Request(BackchannelError::TooLarge) => {
            tracing::warn!("the token endpoint's answer is too large");
            FlowError::ProviderFailed(ProviderError::TooLarge)
        }
        RequestTokenError::Request(BackchannelError::ServerError(status)) => {
            tracing::warn!(%status, "the token endpoint failed");
            FlowError::ProviderFailed(ProviderError::ServerError(status))
        }
        RequestTokenError::Request(e) => {
            tracing::warn!(error = %e, "the token endpoint could not be reached");
            FlowError::ProviderFailed(ProviderError::Unreachable)
        }
        RequestTokenError::Parse(_, _) => {
            tracing::warn!("the token endpoint's answer could not be parsed");
            FlowError::ProviderFailed(ProviderError::InvalidAnswer)
        }
        RequestTokenError::Other(_) => {
            tracing::warn!("the token endpoint's answer is not usable");
            FlowError::ProviderFailed(ProviderError::InvalidAnswer)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_codes_are_sanitized() {
        assert_eq!(sanitize_error_code("access_denied"), "access_denied");
        assert_eq!(sanitize_error_code("<script>"), "script");
        assert_eq!(sanitize_error_code("<>"), "unknown_error");
    }
}
