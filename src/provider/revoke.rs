//! Token revocation (RFC 7009), sent at logout.

use base64::Engine;
use http::{header, StatusCode};
use oauth2::AuthType;

use crate::provider::http_client::BackchannelError;
use crate::provider::Provider;

/// The RFC 7009 request, written here rather than through `oauth2`: `oauth2` refuses
/// revocation endpoints that are not https, and this layer allows plain http on loopback
/// for every endpoint (development, tests).
pub(crate) async fn revoke(
    provider: &Provider,
    url: &url::Url,
    token: &str,
    hint: &str,
) -> Result<(), RevokeError> {
    let mut form = vec![("token", token), ("token_type_hint", hint)];
    let mut request = http::Request::builder()
        .method(http::Method::POST)
        .uri(url.as_str())
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .header(header::ACCEPT, "application/json");
    let client_id = provider.oauth.client_id().as_str();
    match (&provider.client_secret, provider.oauth.auth_type()) {
        (Some(secret), AuthType::BasicAuth) => {
            // RFC 6749 2.3.1: both parts form-urlencoded before Basic encoding.
            let enc =
                |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
            let basic = base64::engine::general_purpose::STANDARD.encode(format!(
                "{}:{}",
                enc(client_id),
                enc(secret.secret())
            ));
            request = request.header(header::AUTHORIZATION, format!("Basic {basic}"));
        }
        (Some(secret), _) => {
            form.push(("client_id", client_id));
            form.push(("client_secret", secret.secret()));
        }
        (None, _) => form.push(("client_id", client_id)),
    }
    let body = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(form)
        .finish();
    let request = request
        .body(body.into_bytes())
        .map_err(|_| RevokeError::Request)?;
    let response = provider.http.execute(request).await?;
    if response.status().is_success() {
        Ok(())
    } else {
        Err(RevokeError::Refused(response.status()))
    }
}

/// Why a revocation (RFC 7009) failed: only logged, the logout goes on without it.
#[derive(Debug, thiserror::Error)]
pub(crate) enum RevokeError {
    /// The request could not be built (the configured URL is not a valid URI).
    #[error("could not build the request")]
    Request,
    /// No answer, or a 5xx.
    #[error(transparent)]
    Backchannel(#[from] BackchannelError),
    /// The provider answered with a status other than 2xx (and not 5xx).
    #[error("the provider answered {0}")]
    Refused(StatusCode),
}
