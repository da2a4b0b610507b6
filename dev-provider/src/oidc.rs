//! OpenID Connect: discovery and RFC 8414 metadata, the JWKS, and ID tokens.

use super::keys::{self, Signing};
use super::misbehave::{apply_id_token_behavior, apply_refresh_id_token_behavior};
use super::*;

/// The longest ID token lifetime; shorter access token lifetimes shorten it too.
const MAX_ID_TOKEN_LIFETIME: u64 = 10 * 60;

/// The scopes announced in the discovery document.
const SCOPES_SUPPORTED: [&str; 3] = ["openid", "profile", "email"];

/// The claims announced in the discovery document.
const CLAIMS_SUPPORTED: [&str; 12] = [
    "iss",
    "sub",
    "aud",
    "exp",
    "iat",
    "auth_time",
    "nonce",
    "sid",
    "azp",
    "name",
    "preferred_username",
    "email",
];

/// `GET /.well-known/oauth-authorization-server` (RFC 8414).
pub(super) async fn oauth_metadata(State(shared): State<Arc<Shared>>) -> Response {
    json_response(StatusCode::OK, &metadata(&shared, false))
}

/// `GET /.well-known/openid-configuration` (OpenID Connect Discovery 1.0).
pub(super) async fn openid_configuration(State(shared): State<Arc<Shared>>) -> Response {
    json_response(StatusCode::OK, &metadata(&shared, true))
}

fn metadata(shared: &Shared, openid: bool) -> Value {
    let base = &shared.issuer;
    let issuer = shared
        .lock()
        .discovery_issuer
        .clone()
        .unwrap_or_else(|| base.clone());
    let mut body = json!({
        "issuer": issuer,
        "authorization_endpoint": format!("{base}/authorize"),
        "token_endpoint": format!("{base}/token"),
        "userinfo_endpoint": format!("{base}/userinfo"),
        "jwks_uri": format!("{base}/jwks"),
        "revocation_endpoint": format!("{base}/revoke"),
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": ["authorization_code", "refresh_token"],
        "code_challenge_methods_supported": ["S256"],
        "token_endpoint_auth_methods_supported":
            ["client_secret_basic", "client_secret_post", "none"],
        "revocation_endpoint_auth_methods_supported":
            ["client_secret_basic", "client_secret_post", "none"],
        "scopes_supported": SCOPES_SUPPORTED,
        "authorization_response_iss_parameter_supported": true,
    });
    if openid {
        if let Value::Object(members) = &mut body {
            let extra = json!({
                "end_session_endpoint": format!("{base}/end_session"),
                "subject_types_supported": ["public"],
                "id_token_signing_alg_values_supported": ["RS256"],
                "claims_supported": CLAIMS_SUPPORTED,
                "backchannel_logout_supported": true,
                "backchannel_logout_session_supported": true,
            });
            if let Value::Object(extra) = extra {
                members.extend(extra);
            }
        }
    }
    body
}

/// The indexes of the rotation keys `/jwks` serves now.
pub(super) fn jwks_key_indexes(state: &ServerState) -> Vec<usize> {
    match state.id_token_behavior {
        IdTokenBehavior::NoKidSingleKey => vec![state.active_key],
        IdTokenBehavior::NoKidMultipleKeys => (0..keys::ROTATION_KEY_COUNT).collect(),
        _ if state.published_keys.is_empty() => vec![state.active_key],
        _ => state.published_keys.clone(),
    }
}

/// `GET /jwks`: the published public keys, or `503` after `set_jwks_available(false)`.
pub(super) async fn jwks(State(shared): State<Arc<Shared>>) -> Response {
    let indexes = {
        let mut state = shared.lock();
        state.jwks_requests += 1;
        if state.jwks_unavailable {
            return plain_response(StatusCode::SERVICE_UNAVAILABLE, "JWKS unavailable\n");
        }
        jwks_key_indexes(&state)
    };
    let ring = match keys::key_ring() {
        Ok(ring) => ring,
        Err(error) => {
            tracing::error!(%error, "dev provider: signing keys unavailable");
            return plain_response(StatusCode::INTERNAL_SERVER_ERROR, "keys unavailable\n");
        }
    };
    let mut jwks = Vec::with_capacity(indexes.len());
    for index in indexes {
        match ring.rotation_key(index) {
            Ok(key) => jwks.push(key.jwk().clone()),
            Err(_) => {
                return plain_response(StatusCode::INTERNAL_SERVER_ERROR, "keys unavailable\n")
            }
        }
    }
    json_response(StatusCode::OK, &json!({ "keys": jwks }))
}

/// Whether a grant with `scope` gets ID tokens: an OpenID Connect request and the standard
/// user shape.
pub(super) fn wants_id_token(shared: &Shared, scope: Option<&str>) -> bool {
    shared.user_shape == UserShape::Standard
        && scope.is_some_and(|scope| scope.split(' ').any(|token| token == "openid"))
}

/// An ID token to sign once the state lock is released (RSA signing takes a while).
pub(super) struct IdTokenPlan {
    claims: Map<String, Value>,
    signing: Signing,
    active_key: usize,
    client_secret: Vec<u8>,
}

impl IdTokenPlan {
    /// Signs the token.
    pub(super) fn sign(&self) -> Result<String, String> {
        let ring = keys::key_ring()?;
        let active = ring.rotation_key(self.active_key)?;
        keys::sign_jwt(
            Some("JWT"),
            &self.claims,
            self.signing,
            active,
            ring,
            &self.client_secret,
        )
    }
}

/// The claims of a correct ID token for `login` and `client`.
fn id_token_claims(shared: &Shared, client: &DevClient, login: &LoginRef) -> Map<String, Value> {
    let now = unix_now();
    let lifetime = id_token_lifetime(shared);
    let username = &login.username;
    let claims = json!({
        "iss": shared.issuer,
        "sub": username,
        "aud": client.id,
        "azp": client.id,
        "exp": now + lifetime,
        "iat": now,
        "auth_time": login.auth_time,
        "sid": login.sid,
        "name": capitalise(username),
        "preferred_username": username,
        "email": format!("{username}@example.test"),
    });
    match claims {
        Value::Object(claims) => claims,
        _ => Map::new(),
    }
}

/// The ID token lifetime in seconds: the access token lifetime, at most ten minutes.
fn id_token_lifetime(shared: &Shared) -> u64 {
    ceil_secs(shared.access_token_lifetime).min(MAX_ID_TOKEN_LIFETIME)
}

/// The ID token of an `authorization_code` grant, as the ID token behaviour says.
pub(super) fn plan_code_id_token(
    shared: &Shared,
    state: &ServerState,
    client: &DevClient,
    login: &LoginRef,
    nonce: Option<&str>,
) -> IdTokenPlan {
    let mut claims = id_token_claims(shared, client, login);
    if let Some(nonce) = nonce {
        claims.insert("nonce".into(), json!(nonce));
    }
    let signing = apply_id_token_behavior(
        state.id_token_behavior,
        &mut claims,
        unix_now(),
        id_token_lifetime(shared),
    );
    IdTokenPlan {
        claims,
        signing,
        active_key: state.active_key,
        client_secret: client_secret_bytes(client),
    }
}

/// The ID token of a `refresh_token` grant, as the refresh ID token behaviour says; `None`
/// for no ID token.
pub(super) fn plan_refresh_id_token(
    shared: &Shared,
    state: &ServerState,
    client: &DevClient,
    login: &LoginRef,
) -> Option<IdTokenPlan> {
    let mut claims = id_token_claims(shared, client, login);
    if !apply_refresh_id_token_behavior(&state.refresh_id_token_behavior, &mut claims) {
        return None;
    }
    Some(IdTokenPlan {
        claims,
        signing: Signing::Rs256,
        active_key: state.active_key,
        client_secret: client_secret_bytes(client),
    })
}

/// The HS256 key of a client: its secret, empty for a public client.
pub(super) fn client_secret_bytes(client: &DevClient) -> Vec<u8> {
    client
        .secret
        .as_deref()
        .unwrap_or_default()
        .as_bytes()
        .to_vec()
}
