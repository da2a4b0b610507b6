//! The authorization endpoint and its "sign in as any user" form.

use super::*;

enum AuthorizeFailure {
    /// The client or redirect URI cannot be trusted: show a page, never redirect
    /// (RFC 6749 section 4.1.2.1).
    Page(String),
    /// Redirect the error back to the client.
    Redirect {
        redirect_uri: String,
        state: Option<String>,
        error: &'static str,
        description: String,
    },
}

pub(super) async fn authorize_get(
    State(shared): State<Arc<Shared>>,
    RawQuery(query): RawQuery,
) -> Response {
    let params = parse_params(query.as_deref().unwrap_or_default().as_bytes());
    let now = Instant::now();
    let (behavior, auto_login) = {
        let mut state = shared.lock();
        state.prune(now, shared.code_lifetime);
        state.authorize_requests += 1;
        state.last_authorize_params = Some(params.clone());
        (state.authorize_behavior.clone(), state.auto_login.clone())
    };

    let request = match validate_authorization_request(&shared, &params) {
        Ok(request) => request,
        Err(AuthorizeFailure::Page(message)) => {
            tracing::debug!(%message, "dev provider: rejected authorization request (no redirect)");
            return error_page(StatusCode::BAD_REQUEST, &message);
        }
        Err(AuthorizeFailure::Redirect {
            redirect_uri,
            state,
            error,
            description,
        }) => {
            tracing::debug!(error, %description, "dev provider: authorization error redirect");
            return error_redirect(
                &shared,
                &behavior,
                &redirect_uri,
                state.as_deref(),
                error,
                Some(&description),
            );
        }
    };
    tracing::debug!(client_id = %request.client_id, "dev provider: valid authorization request");

    if let AuthorizeBehavior::Error { error, description } = &behavior {
        return error_redirect(
            &shared,
            &behavior,
            &request.redirect_uri,
            request.state.as_deref(),
            error,
            description.as_deref(),
        );
    }

    if let Some(username) = auto_login {
        tracing::debug!(%username, "dev provider: auto-login");
        let code = shared.lock().issue_code(&request, username, now);
        return code_redirect(&shared, &behavior, &request, &code);
    }

    let pending_id = random_token();
    let page = login_page(&request, &pending_id, "", None);
    shared.lock().pending.insert(
        pending_id,
        PendingAuthorization {
            request,
            created: now,
        },
    );
    page
}

fn validate_authorization_request(
    shared: &Shared,
    params: &[(String, String)],
) -> Result<AuthorizationRequest, AuthorizeFailure> {
    use AuthorizeFailure::Page;

    if count_param(params, "client_id") > 1 {
        return Err(Page(
            "The client_id parameter was given more than once.".into(),
        ));
    }
    let Some(client_id) = get_param(params, "client_id") else {
        return Err(Page("The client_id parameter is missing.".into()));
    };
    let Some(client) = shared.clients.get(client_id) else {
        return Err(Page(format!("Unknown client_id {client_id:?}.")));
    };
    if count_param(params, "redirect_uri") > 1 {
        return Err(Page(
            "The redirect_uri parameter was given more than once.".into(),
        ));
    }
    let (redirect_uri, redirect_uri_in_request) = match get_param(params, "redirect_uri") {
        Some(uri) if client.redirect_uris.iter().any(|r| r == uri) => (uri.to_owned(), true),
        Some(uri) => {
            return Err(Page(format!(
                "The redirect_uri {uri:?} is not registered for client {client_id:?}."
            )))
        }
        None => match client.redirect_uris.as_slice() {
            [only] => (only.clone(), false),
            _ => {
                return Err(Page(
                    "The redirect_uri parameter is missing (required: the client has several \
                     registered redirect URIs)."
                        .into(),
                ))
            }
        },
    };

    // From here on, errors are redirected back to the client.
    let state = if count_param(params, "state") > 1 {
        None
    } else {
        get_param(params, "state").map(str::to_owned)
    };
    let fail = |error: &'static str, description: &str| {
        Err(AuthorizeFailure::Redirect {
            redirect_uri: redirect_uri.clone(),
            state: state.clone(),
            error,
            description: description.to_owned(),
        })
    };

    if let Some(name) = duplicate_param(params) {
        return fail(
            "invalid_request",
            &format!("The {name} parameter was given more than once."),
        );
    }
    match get_param(params, "response_type") {
        None => return fail("invalid_request", "The response_type parameter is missing."),
        Some("code") => {}
        Some(_) => {
            return fail(
                "unsupported_response_type",
                "Only response_type=code is supported.",
            )
        }
    }
    let Some(code_challenge) = get_param(params, "code_challenge") else {
        return fail("invalid_request", "code_challenge is required (PKCE).");
    };
    match get_param(params, "code_challenge_method") {
        Some("S256") => {}
        None => {
            return fail(
                "invalid_request",
                "code_challenge_method is required and must be S256.",
            )
        }
        Some(_) => {
            return fail(
                "invalid_request",
                "Transform algorithm not supported: code_challenge_method must be S256.",
            )
        }
    }
    if !is_s256_challenge(code_challenge) {
        return fail(
            "invalid_request",
            "code_challenge must be the 43-character base64url SHA-256 of the verifier.",
        );
    }
    let scope = get_param(params, "scope");
    if let Some(scope) = scope {
        if !is_valid_scope(scope) {
            return fail("invalid_scope", "The scope parameter is malformed.");
        }
    }

    Ok(AuthorizationRequest {
        client_id: client.id.clone(),
        redirect_uri,
        redirect_uri_in_request,
        state,
        scope: scope.map(str::to_owned),
        code_challenge: code_challenge.to_owned(),
        nonce: get_param(params, "nonce").map(str::to_owned),
    })
}

pub(super) async fn authorize_post(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    let params = parse_params(&body);
    let Some(pending_id) = get_param(&params, "pending") else {
        return error_page(
            StatusCode::BAD_REQUEST,
            "The login form was submitted without its request id.",
        );
    };
    let now = Instant::now();
    let mut state = shared.lock();
    state.prune(now, shared.code_lifetime);
    let pending = state
        .pending
        .remove(pending_id)
        .filter(|p| now.saturating_duration_since(p.created) < PENDING_LIFETIME);
    let Some(pending) = pending else {
        return error_page(
            StatusCode::BAD_REQUEST,
            "This login request is unknown, expired or was already answered. \
             Start again from the application.",
        );
    };
    let behavior = state.authorize_behavior.clone();
    let request = pending.request;

    if get_param(&params, "action") == Some("cancel") {
        drop(state);
        tracing::debug!(client_id = %request.client_id, "dev provider: user cancelled");
        return error_redirect(
            &shared,
            &behavior,
            &request.redirect_uri,
            request.state.as_deref(),
            "access_denied",
            Some("The user cancelled the sign-in."),
        );
    }
    if let AuthorizeBehavior::Error { error, description } = &behavior {
        drop(state);
        return error_redirect(
            &shared,
            &behavior,
            &request.redirect_uri,
            request.state.as_deref(),
            error,
            description.as_deref(),
        );
    }

    let username = get_param(&params, "username").unwrap_or_default().trim();
    if let Err(problem) = validate_username(username) {
        let page = login_page(&request, pending_id, username, Some(problem));
        state.pending.insert(
            pending_id.to_owned(),
            PendingAuthorization {
                request,
                created: now,
            },
        );
        return page;
    }
    let code = state.issue_code(&request, username.to_owned(), now);
    drop(state);
    tracing::debug!(%username, client_id = %request.client_id, "dev provider: user signed in");
    code_redirect(&shared, &behavior, &request, &code)
}

fn validate_username(username: &str) -> Result<(), &'static str> {
    let count = username.chars().count();
    if count == 0 {
        return Err("Enter a username.");
    }
    if count > MAX_USERNAME_CHARS {
        return Err("The username is too long (at most 64 characters).");
    }
    if !username
        .chars()
        .all(|c| c.is_alphanumeric() || matches!(c, '.' | '_' | '-'))
    {
        return Err("Use letters, digits, '.', '_' and '-' only.");
    }
    Ok(())
}

fn code_redirect(
    shared: &Shared,
    behavior: &AuthorizeBehavior,
    request: &AuthorizationRequest,
    code: &str,
) -> Response {
    let mut params = vec![("code", code.to_owned())];
    if let Some(state) = &request.state {
        params.push(("state", state.clone()));
    }
    if let Some(iss) = shared.iss_param(behavior) {
        params.push(("iss", iss));
    }
    redirect_with_params(&request.redirect_uri, &params)
}

fn error_redirect(
    shared: &Shared,
    behavior: &AuthorizeBehavior,
    redirect_uri: &str,
    state: Option<&str>,
    error: &str,
    description: Option<&str>,
) -> Response {
    let mut params = vec![("error", error.to_owned())];
    if let Some(description) = description {
        params.push(("error_description", description.to_owned()));
    }
    if let Some(state) = state {
        params.push(("state", state.to_owned()));
    }
    if let Some(iss) = shared.iss_param(behavior) {
        params.push(("iss", iss));
    }
    redirect_with_params(redirect_uri, &params)
}

/// `303 See Other` to `redirect_uri` with `params` added to its query component
/// (RFC 6749 section 3.1.2: keep the existing query).
pub(super) fn redirect_with_params(redirect_uri: &str, params: &[(&str, String)]) -> Response {
    let mut serializer = url::form_urlencoded::Serializer::new(String::new());
    for (name, value) in params {
        serializer.append_pair(name, value);
    }
    let query = serializer.finish();
    let separator = if query.is_empty() {
        ""
    } else if !redirect_uri.contains('?') {
        "?"
    } else if redirect_uri.ends_with('?') || redirect_uri.ends_with('&') {
        ""
    } else {
        "&"
    };
    match HeaderValue::try_from(format!("{redirect_uri}{separator}{query}")) {
        Ok(location) => (
            StatusCode::SEE_OTHER,
            [
                (header::LOCATION, location),
                (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
                (
                    header::REFERRER_POLICY,
                    HeaderValue::from_static("no-referrer"),
                ),
            ],
        )
            .into_response(),
        Err(_) => error_page(
            StatusCode::INTERNAL_SERVER_ERROR,
            "The redirect URI cannot be used in a Location header.",
        ),
    }
}

fn login_page(
    request: &AuthorizationRequest,
    pending_id: &str,
    username: &str,
    problem: Option<&str>,
) -> Response {
    let scope = match &request.scope {
        Some(scope) => format!(
            "<p>Requested scope: <code>{}</code></p>",
            html_escape(scope)
        ),
        None => String::new(),
    };
    let problem_html = match problem {
        Some(problem) => format!(
            "<p class=\"error\" role=\"alert\">{}</p>",
            html_escape(problem)
        ),
        None => String::new(),
    };
    let body = format!(
        "<h1>Development provider — sign in as any user</h1>\
         <p>The application <code>{client}</code> asks you to sign in. \
         No password is needed: type any username.</p>{scope}{problem_html}\
         <form method=\"post\" action=\"/authorize\">\
         <input type=\"hidden\" name=\"pending\" value=\"{pending}\">\
         <label for=\"username\">Username</label>\
         <input type=\"text\" id=\"username\" name=\"username\" value=\"{username}\" \
         autocomplete=\"username\" autocapitalize=\"none\" spellcheck=\"false\" \
         maxlength=\"{MAX_USERNAME_CHARS}\" required autofocus>\
         <div class=\"actions\">\
         <button type=\"submit\" name=\"action\" value=\"login\" class=\"primary\">Sign in</button>\
         <button type=\"submit\" name=\"action\" value=\"cancel\" class=\"secondary\" \
         formnovalidate>Cancel</button>\
         </div></form>",
        client = html_escape(&request.client_id),
        pending = html_escape(pending_id),
        username = html_escape(username),
    );
    let status = if problem.is_some() {
        StatusCode::BAD_REQUEST
    } else {
        StatusCode::OK
    };
    html_response(status, "Sign in — development provider", &body)
}
