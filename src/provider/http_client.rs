//! The HTTP client for server-to-server calls to the provider (token and userinfo
//! endpoints): no redirects, connect and total timeouts, bounded response bodies.

use std::time::Duration;

use http::{header, HeaderValue};

use crate::error::{ConfigError, ProviderError};

/// Why a call to the provider failed before an HTTP answer could be read.
#[derive(Debug, thiserror::Error)]
pub(crate) enum BackchannelError {
    #[error("the provider did not answer in time")]
    Timeout,
    /// No connection: refused, a name that does not resolve, a TLS failure; with the
    /// causes the HTTP client gave (they name no token or secret).
    #[error("the provider could not be reached: {0}")]
    Connect(String),
    #[error("the provider's answer is too large")]
    TooLarge,
    #[error("the provider failed with status {0}")]
    ServerError(http::StatusCode),
    #[error("the request to the provider failed")]
    Other,
}

impl BackchannelError {
    fn from_reqwest(e: &reqwest::Error) -> Self {
        if e.is_timeout() {
            BackchannelError::Timeout
        } else if e.is_connect() {
            BackchannelError::Connect(causes(e))
        } else {
            BackchannelError::Other
        }
    }
}

/// The causes under an HTTP client error, outermost first: "tcp connect error: Connection
/// refused", "dns error: failed to lookup address information", "invalid peer
/// certificate: UnknownIssuer". reqwest's own message is left out (it repeats the URL), and
/// so is a message that its source only repeats.
fn causes(e: &reqwest::Error) -> String {
    let mut text = String::new();
    let mut next = std::error::Error::source(e);
    while let Some(err) = next {
        let message = err.to_string();
        if !text.ends_with(&message) {
            if !text.is_empty() {
                text.push_str(": ");
            }
            text.push_str(&message);
        }
        next = err.source();
    }
    // Bounded: the text goes into logs and start-up errors.
    if text.len() > 300 {
        let mut end = 300;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
    text
}

/// The client, shared by all requests of one layer.
#[derive(Clone, Debug)]
pub(crate) struct Backchannel {
    client: reqwest::Client,
    max_body: usize,
}

impl Backchannel {
    pub(crate) fn new(
        connect_timeout: Duration,
        timeout: Duration,
        max_body: usize,
    ) -> Result<Self, ConfigError> {
        let client = reqwest::Client::builder()
            // Following redirects would let a compromised or misconfigured endpoint send
            // the code, the verifier or the client secret somewhere else (SSRF).
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(connect_timeout)
            .timeout(timeout)
            .user_agent(concat!("tower-oauth2-login/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| ConfigError::HttpClient(Box::new(e)))?;
        Ok(Self { client, max_body })
    }

    /// Sends a request built by `oauth2` and reads at most `max_body` bytes of the answer.
    pub(crate) async fn execute(
        &self,
        request: oauth2::HttpRequest,
    ) -> Result<oauth2::HttpResponse, BackchannelError> {
        let request = reqwest::Request::try_from(request).map_err(|_| BackchannelError::Other)?;
        let response = self
            .client
            .execute(request)
            .await
            .map_err(|e| BackchannelError::from_reqwest(&e))?;
        // A 5xx is the provider failing, not an OAuth error response: say so, rather than
        // let it be reported as an unparsable error body.
        if response.status().is_server_error() {
            return Err(BackchannelError::ServerError(response.status()));
        }
        self.read(response).await
    }

    /// A GET with a bearer token, for the userinfo endpoint.
    pub(crate) async fn get_with_bearer(
        &self,
        url: &str,
        token: &str,
    ) -> Result<oauth2::HttpResponse, BackchannelError> {
        let response = self
            .client
            .get(url)
            .bearer_auth(token)
            .header(header::ACCEPT, HeaderValue::from_static("application/json"))
            .send()
            .await
            .map_err(|e| BackchannelError::from_reqwest(&e))?;
        self.read(response).await
    }

    async fn read(
        &self,
        mut response: reqwest::Response,
    ) -> Result<oauth2::HttpResponse, BackchannelError> {
        if response
            .content_length()
            .is_some_and(|len| len > self.max_body as u64)
        {
            return Err(BackchannelError::TooLarge);
        }
        let mut builder = http::Response::builder().status(response.status());
        for (name, value) in response.headers() {
            builder = builder.header(name, value);
        }
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| BackchannelError::from_reqwest(&e))?
        {
            if body.len() + chunk.len() > self.max_body {
                return Err(BackchannelError::TooLarge);
            }
            body.extend_from_slice(&chunk);
        }
        builder.body(body).map_err(|_| BackchannelError::Other)
    }
}

/// Lets `oauth2` send its token requests through this client.
impl<'c> oauth2::AsyncHttpClient<'c> for Backchannel {
    type Error = BackchannelError;
    type Future = std::pin::Pin<
        Box<
            dyn std::future::Future<Output = Result<oauth2::HttpResponse, Self::Error>> + Send + 'c,
        >,
    >;

    fn call(&'c self, request: oauth2::HttpRequest) -> Self::Future {
        Box::pin(self.execute(request))
    }
}

impl From<BackchannelError> for ProviderError {
    fn from(e: BackchannelError) -> Self {
        match e {
            BackchannelError::Timeout => ProviderError::Timeout,
            BackchannelError::TooLarge => ProviderError::TooLarge,
            BackchannelError::ServerError(status) => ProviderError::ServerError(status),
            BackchannelError::Connect(_) | BackchannelError::Other => ProviderError::Unreachable,
        }
    }
}

#[cfg(test)]
mod tests {
    use http::StatusCode;

    use super::*;

    #[test]
    fn backchannel_failures_become_provider_errors() {
        for (from, to) in [
            (BackchannelError::Timeout, ProviderError::Timeout),
            (BackchannelError::TooLarge, ProviderError::TooLarge),
            (
                BackchannelError::Connect("refused".into()),
                ProviderError::Unreachable,
            ),
            (BackchannelError::Other, ProviderError::Unreachable),
            (
                BackchannelError::ServerError(StatusCode::INTERNAL_SERVER_ERROR),
                ProviderError::ServerError(StatusCode::INTERNAL_SERVER_ERROR),
            ),
        ] {
            assert_eq!(ProviderError::from(from), to);
        }
    }
}
