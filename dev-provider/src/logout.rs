//! Logout: OpenID Connect RP-Initiated Logout 1.0 (`/end_session`) and Back-Channel
//! Logout 1.0 (logout tokens the provider posts to a client).

use super::keys::{self, Signing};
use super::misbehave::{apply_logout_token_misbehavior, BACKCHANNEL_LOGOUT_EVENT};
use super::*;

/// How long a logout token is valid.
const LOGOUT_TOKEN_LIFETIME: u64 = 2 * 60;
/// The total timeout of a back-channel logout request.
const BACKCHANNEL_TIMEOUT: Duration = Duration::from_secs(10);

/// `GET /end_session`.
pub(super) async fn end_session_get(
    State(shared): State<Arc<Shared>>,
    RawQuery(query): RawQuery,
) -> Response {
    end_session(
        &shared,
        parse_params(query.as_deref().unwrap_or_default().as_bytes()),
    )
}

/// `POST /end_session` (form-serialized parameters).
pub(super) async fn end_session_post(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    end_session(&shared, parse_params(&body))
}

fn end_session(shared: &Shared, params: Vec<(String, String)>) -> Response {
    {
        let mut state = shared.lock();
        state.end_session_requests += 1;
        state.last_end_session_params = Some(params.clone());
    }
    if let Some(name) = duplicate_param(&params) {
        return logout_error_page(&format!("The {name} parameter was given more than once."));
    }
    let hint = match get_param(&params, "id_token_hint") {
        None => None,
        Some(token) => match verify_id_token_hint(shared, token) {
            Ok(claims) => Some(claims),
            Err(problem) => {
                tracing::debug!(problem, "dev provider: rejected id_token_hint");
                return logout_error_page(&format!("The id_token_hint is not valid: {problem}."));
            }
        },
    };
    let audiences: Vec<&str> = match hint.as_ref().and_then(|claims| claims.get("aud")) {
        Some(Value::String(aud)) => vec![aud.as_str()],
        Some(Value::Array(auds)) => auds.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    let client = match get_param(&params, "client_id") {
        Some(client_id) => {
            let Some(client) = shared.clients.get(client_id) else {
                return logout_error_page("The client_id is unknown.");
            };
            if hint.is_some() && !audiences.contains(&client_id) {
                return logout_error_page("The id_token_hint was not issued to this client_id.");
            }
            Some(client)
        }
        None => {
            let azp = hint
                .as_ref()
                .and_then(|claims| claims.get("azp"))
                .and_then(Value::as_str);
            azp.or(audiences.first().copied())
                .and_then(|client_id| shared.clients.get(client_id))
        }
    };

    if let Some(claims) = &hint {
        let subject = claims.get("sub").and_then(Value::as_str);
        let sid = claims.get("sid").and_then(Value::as_str);
        let ended = shared.lock().end_sessions(subject, sid);
        tracing::debug!(ended, "dev provider: RP-initiated logout");
    }

    let state = get_param(&params, "state");
    match get_param(&params, "post_logout_redirect_uri") {
        Some(uri)
            if client.is_some_and(|client| {
                client.post_logout_redirect_uris.iter().any(|r| r == uri)
            }) =>
        {
            let params: Vec<(&str, String)> = state
                .map(|state| ("state", state.to_owned()))
                .into_iter()
                .collect();
            redirect_with_params(uri, &params)
        }
        Some(uri) => signed_out_page(Some(uri)),
        None => signed_out_page(None),
    }
}

/// Checks that `token` is an ID token this provider signed (any rotation key) with its issuer.
/// Expired tokens are accepted (OpenID Connect RP-Initiated Logout 1.0 section 2).
fn verify_id_token_hint(shared: &Shared, token: &str) -> Result<Map<String, Value>, &'static str> {
    let claims = keys::verify_own_jwt(token)?;
    if claims.get("iss").and_then(Value::as_str) != Some(shared.issuer.as_str()) {
        return Err("it was not issued by this provider");
    }
    Ok(claims)
}

fn signed_out_page(refused_redirect: Option<&str>) -> Response {
    let note = match refused_redirect {
        Some(uri) => format!(
            "<p class=\"error\">The return address <code>{}</code> is not registered for the \
             application, so you were not sent back to it.</p>",
            html_escape(uri)
        ),
        None => String::new(),
    };
    let body = format!(
        "<h1>You are signed out</h1><p>You are signed out of the development provider.</p>{note}"
    );
    html_response(StatusCode::OK, "Signed out — development provider", &body)
}

fn logout_error_page(message: &str) -> Response {
    let body = format!(
        "<h1>Logout request rejected</h1><p class=\"error\">{}</p>",
        html_escape(message)
    );
    html_response(StatusCode::BAD_REQUEST, "Logout request rejected", &body)
}

impl DevProvider {
    /// Mints a back-channel logout token for `client_id` about `subject` and/or the provider
    /// session `sid`, with `misbehavior` built in, without sending it.
    ///
    /// A correct token ([`LogoutTokenMisbehavior::Normal`]) is a JWS signed with RS256 by the
    /// active key (header `kid`, `typ: logout+jwt`) with the claims `iss`, `aud` (the client
    /// id), `iat`, `exp` (two minutes later), `jti`, `events` (with the
    /// `http://schemas.openid.net/event/backchannel-logout` member) and `sub` and/or `sid`, and
    /// no `nonce`.
    ///
    /// Fails if the client is not registered, or if both `subject` and `sid` are `None` (unless
    /// the misbehaviour is [`LogoutTokenMisbehavior::NoSubNoSid`]).
    pub fn mint_logout_token(
        &self,
        client_id: &str,
        subject: Option<&str>,
        sid: Option<&str>,
        misbehavior: LogoutTokenMisbehavior,
    ) -> Result<String, String> {
        let shared = &self.inner.shared;
        let Some(client) = shared.clients.get(client_id) else {
            return Err(format!("client {client_id:?} is not registered"));
        };
        if subject.is_none() && sid.is_none() && misbehavior != LogoutTokenMisbehavior::NoSubNoSid {
            return Err("a logout token needs a subject or a sid".to_owned());
        }
        let now = unix_now();
        let mut claims = Map::new();
        claims.insert("iss".into(), json!(shared.issuer));
        claims.insert("aud".into(), json!(client.id));
        claims.insert("iat".into(), json!(now));
        claims.insert("exp".into(), json!(now + LOGOUT_TOKEN_LIFETIME));
        claims.insert("jti".into(), json!(random_token()));
        claims.insert("events".into(), json!({ BACKCHANNEL_LOGOUT_EVENT: {} }));
        if let Some(subject) = subject {
            claims.insert("sub".into(), json!(subject));
        }
        if let Some(sid) = sid {
            claims.insert("sid".into(), json!(sid));
        }
        let signing: Signing = apply_logout_token_misbehavior(misbehavior, &mut claims, now);
        let active_key = self.state().active_key;
        let ring = keys::key_ring()?;
        keys::sign_jwt(
            Some("logout+jwt"),
            &claims,
            signing,
            ring.rotation_key(active_key)?,
            ring,
            &oidc::client_secret_bytes(client),
        )
    }

    /// Sends a correct back-channel logout token about `subject` and/or the provider session
    /// `sid` to the back-channel logout URI of `client_id` (`POST`, form parameter
    /// `logout_token`), ends the matching provider sessions, and returns the HTTP status of
    /// the answer. See [`DevProvider::mint_logout_token`] for the token.
    ///
    /// Fails if the client is not registered or has no back-channel logout URI, if both
    /// `subject` and `sid` are `None`, or if the request fails (connection, 10 s timeout).
    pub async fn backchannel_logout(
        &self,
        client_id: &str,
        subject: Option<&str>,
        sid: Option<&str>,
    ) -> Result<u16, String> {
        self.backchannel_logout_with(client_id, subject, sid, LogoutTokenMisbehavior::Normal)
            .await
    }

    /// Like [`DevProvider::backchannel_logout`], with a defect built into the logout token.
    /// Only a [`LogoutTokenMisbehavior::Normal`] token ends provider sessions.
    pub async fn backchannel_logout_with(
        &self,
        client_id: &str,
        subject: Option<&str>,
        sid: Option<&str>,
        misbehavior: LogoutTokenMisbehavior,
    ) -> Result<u16, String> {
        let uri = self
            .inner
            .shared
            .clients
            .get(client_id)
            .ok_or_else(|| format!("client {client_id:?} is not registered"))?
            .backchannel_logout_uri
            .clone()
            .ok_or_else(|| format!("client {client_id:?} has no back-channel logout URI"))?;
        let token = self.mint_logout_token(client_id, subject, sid, misbehavior)?;
        let body = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("logout_token", &token)
            .finish();
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(BACKCHANNEL_TIMEOUT)
            .build()
            .map_err(|e| format!("HTTP client: {e}"))?;
        let response = client
            .post(&uri)
            .header(
                reqwest::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .body(body)
            .send()
            .await
            .map_err(|e| format!("back-channel logout request to {uri} failed: {e}"))?;
        let status = response.status().as_u16();
        if misbehavior == LogoutTokenMisbehavior::Normal {
            self.state().end_sessions(subject, sid);
        }
        tracing::debug!(
            client_id,
            status,
            ?misbehavior,
            "dev provider: back-channel logout sent"
        );
        Ok(status)
    }
}
