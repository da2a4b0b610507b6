//! The userinfo endpoint (also served at `/user`, GitHub style).

use super::*;

pub(super) async fn userinfo(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    let now = Instant::now();
    let mut state = shared.lock();
    state.userinfo_requests += 1;
    let other_sub = match state.userinfo_behavior {
        UserinfoBehavior::Normal => false,
        UserinfoBehavior::OtherSub => true,
        UserinfoBehavior::ServerError => {
            return plain_response(StatusCode::INTERNAL_SERVER_ERROR, "internal server error\n")
        }
        UserinfoBehavior::NotJson => return not_json_response(),
    };
    let Some(token) = bearer_token(&headers) else {
        // RFC 6750 section 3.1: no error code when the request has no credentials.
        return bearer_challenge(None);
    };
    state.prune(now, shared.code_lifetime);
    let live = state
        .access_tokens
        .get(token)
        .filter(|t| now.saturating_duration_since(t.created) < t.lifetime);
    let Some(entry) = live else {
        return bearer_challenge(Some("The access token is invalid, expired or revoked."));
    };
    let username = entry.username.clone();
    drop(state);

    let name = capitalise(&username);
    let subject = if other_sub {
        misbehave::SOMEONE_ELSE
    } else {
        username.as_str()
    };
    let body = match shared.user_shape {
        UserShape::Standard => json!({
            "sub": subject,
            "name": name,
            "preferred_username": username,
            "email": format!("{username}@example.test"),
        }),
        UserShape::GitHub => json!({
            "id": github_id(subject),
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

pub(super) fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?.trim();
    let (scheme, token) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    Some(token.trim())
}

pub(super) fn bearer_challenge(invalid_token: Option<&str>) -> Response {
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
pub(super) fn github_id(username: &str) -> u64 {
    let digest = Sha256::digest(username.as_bytes());
    let mut bytes = [0u8; 8];
    bytes[2..].copy_from_slice(&digest[..6]);
    u64::from_be_bytes(bytes) + 1
}

pub(super) fn capitalise(s: &str) -> String {
    let mut chars = s.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}
