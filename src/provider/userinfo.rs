//! Who the user is, for providers without ID tokens: the userinfo endpoint, called once
//! at login with the new access token.

use http::StatusCode;
use serde_json::{Map, Value};

use crate::error::{FlowError, IdentityError};
use crate::provider::http_client::BackchannelError;
use crate::provider::Provider;
use crate::session::now_secs;

/// The user as the provider describes them.
pub(crate) struct Identity {
    pub(crate) subject: String,
    pub(crate) claims: Map<String, Value>,
    /// The provider's session id, from a verified ID token.
    pub(crate) sid: Option<String>,
}

/// The access token a userinfo call presents, and when it expires (from `expires_in`,
/// counted from the token request).
#[derive(Clone, Copy)]
pub(crate) struct Bearer<'a> {
    pub(crate) token: &'a str,
    pub(crate) expires_at: Option<u64>,
}

/// Fetches the userinfo JSON and reads the subject from the configured field.
pub(crate) async fn fetch(provider: &Provider, bearer: Bearer<'_>) -> Result<Identity, FlowError> {
    let url = provider
        .userinfo_url
        .as_ref()
        .ok_or(FlowError::Identity(IdentityError::NoEndpoint))?;
    let response = provider
        .http
        .get_with_bearer(url.as_str(), bearer.token)
        .await
        .map_err(|e: BackchannelError| FlowError::Identity(IdentityError::Fetch(e.into())))?;
    let expired = bearer.expires_at.is_some_and(|at| now_secs() >= at);
    if response.status() == StatusCode::UNAUTHORIZED && expired {
        // Not the provider's fault: the token lived less long than the sign-in took (its
        // answers were slow, or the token lives seconds). A new attempt gets a new token.
        tracing::warn!("userinfo refused the access token, which had expired: the sign-in took longer than the token lives");
        return Err(FlowError::Identity(IdentityError::TokenOutlived));
    }
    if response.status() != StatusCode::OK {
        tracing::warn!(status = %response.status(), "userinfo endpoint refused the request");
        return Err(FlowError::Identity(IdentityError::Refused(
            response.status(),
        )));
    }
    parse(response.body(), &provider.subject_field)
}

/// Parses a userinfo body: a JSON object whose `subject_field` is a non-empty string or
/// an integer.
pub(crate) fn parse(body: &[u8], subject_field: &str) -> Result<Identity, FlowError> {
    let claims: Map<String, Value> =
        serde_json::from_slice(body).map_err(|_| FlowError::Identity(IdentityError::NotJson))?;
    let subject = match claims.get(subject_field) {
        Some(Value::String(s)) if !s.is_empty() && s.len() <= 255 => s.clone(),
        Some(Value::Number(n)) if n.is_u64() || n.is_i64() => n.to_string(),
        _ => return Err(FlowError::Identity(IdentityError::NoSubject)),
    };
    Ok(Identity {
        subject,
        claims,
        sid: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subject_from_string_or_integer() {
        assert_eq!(
            parse(br#"{"sub":"alice"}"#, "sub").unwrap().subject,
            "alice"
        );
        let gh = parse(br#"{"id":583231,"login":"octocat"}"#, "id").unwrap();
        assert_eq!(gh.subject, "583231");
        assert_eq!(gh.claims["login"], "octocat");
    }

    #[test]
    fn refuses_answers_without_a_usable_subject() {
        for body in [
            &br#"{"name":"x"}"#[..],
            br#"{"sub":""}"#,
            br#"{"sub":null}"#,
            br#"{"sub":1.5}"#,
            br#"{"sub":["a"]}"#,
            br#"[]"#,
            b"<html>",
            b"",
        ] {
            assert!(
                parse(body, "sub").is_err(),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
        let long = format!(r#"{{"sub":"{}"}}"#, "a".repeat(256));
        assert!(parse(long.as_bytes(), "sub").is_err());
    }
}
