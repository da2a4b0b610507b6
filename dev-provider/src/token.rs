//! The token endpoint: client authentication and the `authorization_code` and
//! `refresh_token` grants.

use super::oidc::{self, IdTokenPlan};
use super::*;

/// Response options altered by [`TokenBehavior`].
struct TokenShape {
    token_type: String,
    include_expires_in: bool,
}

/// A successful grant: the token response body, and the ID token to sign and add to it.
struct Issued {
    body: Map<String, Value>,
    id_token: Option<IdTokenPlan>,
}

pub(super) async fn token(state: State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    // GitHub answers `application/x-www-form-urlencoded` unless the client asks for JSON with
    // `Accept: application/json`; so does the GitHub shape, so that a client that forgets the
    // header fails here as it would there.
    let as_form = state.user_shape == UserShape::GitHub && !accepts_json(&headers);
    let response = token_endpoint(state, headers, body).await;
    if as_form {
        json_to_form_response(response).await
    } else {
        response
    }
}

async fn token_endpoint(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let params = parse_params(&body);
    let authorization = headers
        .get(header::AUTHORIZATION)
        .map(|value| String::from_utf8_lossy(value.as_bytes()).into_owned());
    let behavior = {
        let mut state = shared.lock();
        state.token_requests += 1;
        match get_param(&params, "grant_type") {
            Some("authorization_code") => state.authorization_code_requests += 1,
            Some("refresh_token") => state.refresh_requests += 1,
            _ => {}
        }
        state.last_token_params = Some(params.clone());
        state.last_token_authorization_header = authorization;
        state.token_behavior.clone()
    };

    let mut shape = TokenShape {
        token_type: "Bearer".to_owned(),
        include_expires_in: true,
    };
    let answer_delay = match &behavior {
        TokenBehavior::SlowAnswer(delay) => Some(*delay),
        _ => None,
    };
    match behavior {
        TokenBehavior::Normal => {}
        TokenBehavior::InvalidGrant => {
            return token_error(
                StatusCode::BAD_REQUEST,
                "invalid_grant",
                "The grant is invalid (TokenBehavior::InvalidGrant).",
            )
        }
        TokenBehavior::ServerError => {
            return plain_response(StatusCode::INTERNAL_SERVER_ERROR, "internal server error\n")
        }
        TokenBehavior::NotJson => return not_json_response(),
        TokenBehavior::Slow(delay) => tokio::time::sleep(delay).await,
        TokenBehavior::SlowAnswer(_) => {}
        TokenBehavior::TokenTypeCase(token_type) => shape.token_type = token_type,
        TokenBehavior::OmitExpiresIn => shape.include_expires_in = false,
        TokenBehavior::HugeBody => return huge_body_response(),
    }

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
    let issued = match get_param(&params, "grant_type") {
        None => {
            return token_error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "The grant_type parameter is missing.",
            )
        }
        Some("authorization_code") => authorization_code_grant(&shared, client, &params, &shape),
        Some("refresh_token") => refresh_token_grant(&shared, client, &params, &shape),
        Some(_) => {
            return token_error(
                StatusCode::BAD_REQUEST,
                "unsupported_grant_type",
                "Only authorization_code and refresh_token are supported.",
            )
        }
    };
    let response = match issued {
        Ok(issued) => token_response(issued),
        Err(response) => response,
    };
    if let Some(delay) = answer_delay {
        tokio::time::sleep(delay).await;
    }
    response
}

/// Signs the ID token (the state lock is released by now) and sends the token response.
fn token_response(issued: Issued) -> Response {
    let Issued { mut body, id_token } = issued;
    if let Some(plan) = id_token {
        match plan.sign() {
            Ok(id_token) => {
                body.insert("id_token".into(), Value::String(id_token));
            }
            Err(error) => {
                tracing::error!(%error, "dev provider: could not sign an ID token");
                return token_error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "server_error",
                    "The ID token could not be signed.",
                );
            }
        }
    }
    token_json(StatusCode::OK, &Value::Object(body))
}

/// Authenticates the client of a token request by its registered method (RFC 6749
/// section 2.3). On failure returns the error response to send.
// Only on the error path of a rare request; boxing would buy nothing.
#[allow(clippy::result_large_err)]
pub(super) fn authenticate_client<'a>(
    shared: &'a Shared,
    headers: &HeaderMap,
    params: &[(String, String)],
) -> Result<&'a DevClient, Response> {
    let basic = match headers.get(header::AUTHORIZATION) {
        None => None,
        Some(value) => match parse_basic_credentials(value) {
            Some(credentials) => Some(credentials),
            None => {
                return Err(invalid_client(
                    true,
                    "The Authorization header is not valid HTTP Basic client authentication.",
                ))
            }
        },
    };
    let body_id = get_param(params, "client_id");
    let body_secret = get_param(params, "client_secret");

    if basic.is_some() && body_secret.is_some() {
        return Err(token_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "More than one client authentication method was used.",
        ));
    }
    let client_id = match (&basic, body_id) {
        (Some((basic_id, _)), Some(body_id)) if basic_id != body_id => {
            return Err(invalid_client(
                true,
                "The client_id parameter does not match the authenticated client.",
            ))
        }
        (Some((basic_id, _)), _) => basic_id.as_str(),
        (None, Some(body_id)) => body_id,
        (None, None) => return Err(invalid_client(false, "Client authentication is required.")),
    };
    let Some(client) = shared.clients.get(client_id) else {
        return Err(invalid_client(basic.is_some(), "Unknown client."));
    };
    let challenge = basic.is_some() || client.auth == DevClientAuth::ClientSecretBasic;
    let authenticated = match client.auth {
        DevClientAuth::ClientSecretBasic => match &basic {
            Some((_, secret)) => secret_matches(client.secret.as_deref(), secret),
            None => false,
        },
        DevClientAuth::ClientSecretPost => match (&basic, body_secret) {
            (None, Some(secret)) => secret_matches(client.secret.as_deref(), secret),
            _ => false,
        },
        DevClientAuth::None => basic.is_none() && body_secret.is_none(),
    };
    if authenticated {
        Ok(client)
    } else {
        tracing::debug!(client_id = %client.id, "dev provider: client authentication failed");
        Err(invalid_client(challenge, "Client authentication failed."))
    }
}

fn secret_matches(expected: Option<&str>, given: &str) -> bool {
    match expected {
        Some(expected) => bool::from(expected.as_bytes().ct_eq(given.as_bytes())),
        None => false,
    }
}

/// Parses `Basic base64(urlencode(id) ":" urlencode(secret))` (RFC 6749 section 2.3.1).
fn parse_basic_credentials(value: &HeaderValue) -> Option<(String, String)> {
    let value = value.to_str().ok()?.trim();
    let (scheme, encoded) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = STANDARD.decode(encoded.trim()).ok()?;
    let decoded = String::from_utf8(decoded).ok()?;
    let (id, secret) = decoded.split_once(':')?;
    Some((form_urldecode(id)?, form_urldecode(secret)?))
}

// The error is the response to send; boxing it would buy nothing.
#[allow(clippy::result_large_err)]
fn authorization_code_grant(
    shared: &Shared,
    client: &DevClient,
    params: &[(String, String)],
    shape: &TokenShape,
) -> Result<Issued, Response> {
    let bad_request =
        |error, description| Err(token_error(StatusCode::BAD_REQUEST, error, description));
    let Some(code) = get_param(params, "code") else {
        return bad_request("invalid_request", "The code parameter is missing.");
    };
    let now = Instant::now();
    let mut state = shared.lock();
    state.prune(now, shared.code_lifetime);
    let Some(grant) = state.codes.get_mut(code) else {
        return bad_request("invalid_grant", "Unknown authorization code.");
    };
    if grant.client_id != client.id {
        return bad_request(
            "invalid_grant",
            "The authorization code was issued to another client.",
        );
    }
    if grant.used {
        let grant_id = grant.grant_id.clone();
        state.revoke_grant(&grant_id);
        tracing::debug!(client_id = %client.id, "dev provider: authorization code replayed; tokens revoked");
        return bad_request(
            "invalid_grant",
            "The authorization code was already used; the tokens issued for it are revoked.",
        );
    }
    // Any redemption attempt by the client burns the code.
    grant.used = true;
    if now.saturating_duration_since(grant.created) >= shared.code_lifetime {
        return bad_request("invalid_grant", "The authorization code has expired.");
    }
    match get_param(params, "redirect_uri") {
        Some(uri) if uri == grant.redirect_uri => {}
        None if !grant.redirect_uri_in_request => {}
        Some(_) => {
            return bad_request(
                "invalid_grant",
                "redirect_uri does not match the authorization request.",
            )
        }
        None => {
            return bad_request(
                "invalid_request",
                "The redirect_uri parameter is required because the authorization request had one.",
            )
        }
    }
    let Some(verifier) = get_param(params, "code_verifier") else {
        return bad_request("invalid_grant", "code_verifier is required (PKCE).");
    };
    if !is_valid_verifier(verifier) {
        return bad_request("invalid_grant", "code_verifier is malformed.");
    }
    let computed = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
    if !bool::from(computed.as_bytes().ct_eq(grant.code_challenge.as_bytes())) {
        return bad_request(
            "invalid_grant",
            "code_verifier does not match the code_challenge.",
        );
    }

    let tokens_grant = RefreshTokenEntry {
        client_id: grant.client_id.clone(),
        login: grant.login.clone(),
        scope: grant.scope.clone(),
        grant_id: grant.grant_id.clone(),
    };
    let nonce = grant.nonce.clone();
    state.codes_redeemed += 1;
    tracing::debug!(client_id = %client.id, username = %tokens_grant.login.username, "dev provider: authorization code redeemed");
    let id_token = oidc::wants_id_token(shared, tokens_grant.scope.as_deref()).then(|| {
        oidc::plan_code_id_token(
            shared,
            &state,
            client,
            &tokens_grant.login,
            nonce.as_deref(),
        )
    });
    let scope = tokens_grant.scope.clone();
    let body = issue_tokens(shared, &mut state, tokens_grant, scope, now, shape);
    Ok(Issued { body, id_token })
}

// The error is the response to send; boxing it would buy nothing.
#[allow(clippy::result_large_err)]
fn refresh_token_grant(
    shared: &Shared,
    client: &DevClient,
    params: &[(String, String)],
    shape: &TokenShape,
) -> Result<Issued, Response> {
    let bad_request =
        |error, description| Err(token_error(StatusCode::BAD_REQUEST, error, description));
    let Some(refresh_token) = get_param(params, "refresh_token") else {
        return bad_request("invalid_request", "The refresh_token parameter is missing.");
    };
    let now = Instant::now();
    let mut state = shared.lock();
    state.prune(now, shared.code_lifetime);
    let Some(entry) = state.refresh_tokens.get(refresh_token) else {
        if let Some(grant_id) = state.spent_refresh_tokens.get(refresh_token).cloned() {
            state.refresh_token_reuses += 1;
            if shared.refresh_reuse_detection {
                state.revoke_grant(&grant_id);
                tracing::debug!(client_id = %client.id, "dev provider: rotated refresh token reused; grant revoked");
                return bad_request(
                    "invalid_grant",
                    "The refresh token was already rotated; the tokens of its grant are revoked.",
                );
            }
        }
        return bad_request(
            "invalid_grant",
            "Unknown, revoked or already rotated refresh token.",
        );
    };
    if entry.client_id != client.id {
        return bad_request(
            "invalid_grant",
            "The refresh token was issued to another client.",
        );
    }
    let access_scope = match get_param(params, "scope") {
        None => entry.scope.clone(),
        Some(requested) => {
            let granted: HashSet<&str> = entry
                .scope
                .as_deref()
                .map(|s| s.split(' ').collect())
                .unwrap_or_default();
            if !is_valid_scope(requested) || !requested.split(' ').all(|s| granted.contains(s)) {
                return bad_request(
                    "invalid_scope",
                    "The requested scope exceeds the originally granted scope.",
                );
            }
            Some(requested.to_owned())
        }
    };
    // Rotation: the presented refresh token is invalid from now on.
    let Some(entry) = state.refresh_tokens.remove(refresh_token) else {
        return bad_request("invalid_grant", "Unknown refresh token.");
    };
    state
        .spent_refresh_tokens
        .insert(refresh_token.to_owned(), entry.grant_id.clone());
    tracing::debug!(client_id = %client.id, username = %entry.login.username, "dev provider: refresh token rotated");
    let id_token = if oidc::wants_id_token(shared, entry.scope.as_deref()) {
        oidc::plan_refresh_id_token(shared, &state, client, &entry.login)
    } else {
        None
    };
    // A narrower access token scope does not narrow what the new refresh token may ask for
    // later (RFC 6749 section 6): it keeps the original grant's scope.
    let body = issue_tokens(shared, &mut state, entry, access_scope, now, shape);
    Ok(Issued { body, id_token })
}

/// Issues an access token (with `access_scope`) and, unless its client takes none, a
/// refresh token for `grant`, and returns the token response body.
fn issue_tokens(
    shared: &Shared,
    state: &mut ServerState,
    grant: RefreshTokenEntry,
    access_scope: Option<String>,
    now: Instant,
    shape: &TokenShape,
) -> Map<String, Value> {
    let access_token = random_token();
    let refresh_token = shared
        .clients
        .get(&grant.client_id)
        .is_none_or(|c| c.issues_refresh_tokens)
        .then(random_token);
    state.access_tokens.insert(
        access_token.clone(),
        AccessTokenEntry {
            client_id: grant.client_id.clone(),
            username: grant.login.username.clone(),
            grant_id: grant.grant_id.clone(),
            created: now,
            lifetime: shared.access_token_lifetime,
        },
    );
    state.issued_access_tokens.push(access_token.clone());
    if let Some(refresh_token) = &refresh_token {
        state.refresh_tokens.insert(refresh_token.clone(), grant);
        state.issued_refresh_tokens.push(refresh_token.clone());
    }

    let mut body = Map::new();
    body.insert("access_token".into(), Value::String(access_token));
    body.insert("token_type".into(), Value::String(shape.token_type.clone()));
    if shape.include_expires_in {
        body.insert(
            "expires_in".into(),
            Value::from(ceil_secs(shared.access_token_lifetime)),
        );
    }
    if let Some(refresh_token) = refresh_token {
        body.insert("refresh_token".into(), Value::String(refresh_token));
    }
    if let Some(scope) = access_scope {
        body.insert("scope".into(), Value::String(scope));
    }
    body
}

/// Whole seconds, rounded up, so that a sub-second lifetime is not announced as `0`.
pub(super) fn ceil_secs(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

pub(super) fn token_error(status: StatusCode, error: &str, description: &str) -> Response {
    token_json(
        status,
        &json!({ "error": error, "error_description": description }),
    )
}

fn invalid_client(basic_challenge: bool, description: &str) -> Response {
    let mut response = token_error(StatusCode::UNAUTHORIZED, "invalid_client", description);
    if basic_challenge {
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"dev-provider\", charset=\"UTF-8\""),
        );
    }
    response
}

/// A JSON response with the `Cache-Control: no-store` and `Pragma: no-cache` headers that
/// RFC 6749 section 5.1 requires for token responses.
fn token_json(status: StatusCode, body: &Value) -> Response {
    let mut response = json_response(status, body);
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    response
}

fn huge_body_response() -> Response {
    let padding = "A".repeat(HUGE_BODY_PADDING);
    let body = format!(
        "{{\"access_token\":\"huge-body-not-a-real-token\",\"token_type\":\"Bearer\",\
         \"expires_in\":3600,\"padding\":\"{padding}\"}}"
    );
    (
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        body,
    )
        .into_response()
}
