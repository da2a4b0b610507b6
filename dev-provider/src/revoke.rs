//! The revocation endpoint (RFC 7009).

use super::*;

/// `POST /revoke`: authenticates the client as the token endpoint does, then revokes `token`
/// if it is one of the client's access or refresh tokens (a refresh token takes the access
/// tokens of its grant along). Answers `200` for every authenticated request, known token or
/// not (RFC 7009 section 2.2).
pub(super) async fn revoke(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let params = parse_params(&body);
    shared.lock().revocation_requests += 1;
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
    let Some(token) = get_param(&params, "token") else {
        return token_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "The token parameter is missing.",
        );
    };
    // RFC 7009 section 2.1: the hint only orders the look-up; an unknown hint is ignored.
    let access_first = get_param(&params, "token_type_hint") == Some("access_token");

    let mut state = shared.lock();
    state.revoked_tokens.push(token.to_owned());
    type Revoke = fn(&mut ServerState, &str, &str) -> bool;
    let order: [Revoke; 2] = if access_first {
        [revoke_access_token, revoke_refresh_token]
    } else {
        [revoke_refresh_token, revoke_access_token]
    };
    let revoked = order
        .iter()
        .any(|revoke| revoke(&mut state, &client.id, token));
    drop(state);
    tracing::debug!(client_id = %client.id, revoked, "dev provider: revocation request");
    let mut response = StatusCode::OK.into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// Revokes `token` if it is a live refresh token of `client_id`, with every access token of
/// its grant (RFC 7009 section 2.1).
fn revoke_refresh_token(state: &mut ServerState, client_id: &str, token: &str) -> bool {
    let grant_id = match state.refresh_tokens.get(token) {
        Some(entry) if entry.client_id == client_id => entry.grant_id.clone(),
        _ => return false,
    };
    state.refresh_tokens.remove(token);
    state.access_tokens.retain(|_, t| t.grant_id != grant_id);
    true
}

/// Revokes `token` if it is a live access token of `client_id`.
fn revoke_access_token(state: &mut ServerState, client_id: &str, token: &str) -> bool {
    match state.access_tokens.get(token) {
        Some(entry) if entry.client_id == client_id => {
            state.access_tokens.remove(token);
            true
        }
        _ => false,
    }
}
