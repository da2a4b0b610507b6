//! Tests of the OAuth 2.0 provider through real HTTP.

use super::userinfo::github_id;
use super::*;

pub(super) const CALLBACK: &str = "http://127.0.0.1:9/callback";
pub(super) const SECRET: &str = "s3cr:t+/&% é";

pub(super) fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("reqwest client")
}

pub(super) fn pkce() -> (String, String) {
    let verifier = random_token();
    let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
    (verifier, challenge)
}

pub(super) fn encode(params: &[(&str, &str)]) -> String {
    let mut serializer = url::form_urlencoded::Serializer::new(String::new());
    for (name, value) in params {
        serializer.append_pair(name, value);
    }
    serializer.finish()
}

/// RFC 6749 section 2.3.1 Basic credentials.
pub(super) fn basic(id: &str, secret: &str) -> String {
    let enc = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
    format!(
        "Basic {}",
        STANDARD.encode(format!("{}:{}", enc(id), enc(secret)))
    )
}

pub(super) async fn provider(builder: DevProviderBuilder) -> DevProvider {
    builder
        .with_client(DevClient::confidential("conf", SECRET, CALLBACK))
        .with_client(
            DevClient::confidential("post", "post-secret", CALLBACK)
                .with_auth(DevClientAuth::ClientSecretPost),
        )
        .with_client(
            DevClient::public("pub", "http://localhost:9/cb?app=1").with_redirect_uri(CALLBACK),
        )
        .start()
        .await
        .expect("start dev provider")
}

async fn auto_provider() -> DevProvider {
    provider(DevProvider::builder().with_auto_login("alice")).await
}

fn authorize_url(p: &DevProvider, params: &[(&str, &str)]) -> String {
    format!("{}?{}", p.authorization_endpoint(), encode(params))
}

fn valid_authorize<'a>(client_id: &'a str, challenge: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("response_type", "code"),
        ("client_id", client_id),
        ("redirect_uri", CALLBACK),
        ("scope", "read:user email"),
        ("state", "st&te=1 ?"),
        ("code_challenge", challenge),
        ("code_challenge_method", "S256"),
    ]
}

/// The `Location` of a `303` response.
pub(super) fn location(response: &reqwest::Response) -> String {
    assert_eq!(response.status(), reqwest::StatusCode::SEE_OTHER);
    response
        .headers()
        .get(reqwest::header::LOCATION)
        .expect("Location")
        .to_str()
        .expect("ascii Location")
        .to_owned()
}

pub(super) fn query_of(location: &str) -> HashMap<String, String> {
    let url = url::Url::parse(location).expect("absolute Location");
    url.query_pairs().into_owned().collect()
}

async fn get_code(p: &DevProvider, client_id: &str, challenge: &str) -> String {
    let response = http()
        .get(authorize_url(p, &valid_authorize(client_id, challenge)))
        .send()
        .await
        .expect("authorize");
    let location = location(&response);
    assert!(location.starts_with(CALLBACK), "{location}");
    let query = query_of(&location);
    assert_eq!(query.get("state").map(String::as_str), Some("st&te=1 ?"));
    assert_eq!(query.get("iss").map(String::as_str), Some(p.issuer()));
    query.get("code").expect("code").clone()
}

pub(super) async fn post_token(
    p: &DevProvider,
    params: &[(&str, &str)],
    authorization: Option<&str>,
) -> reqwest::Response {
    let mut request = http()
        .post(p.token_endpoint())
        .header(
            reqwest::header::CONTENT_TYPE,
            "application/x-www-form-urlencoded",
        )
        // As every OAuth 2.0 client library sends it (`oauth2` does).
        .header(reqwest::header::ACCEPT, "application/json")
        .body(encode(params));
    if let Some(authorization) = authorization {
        request = request.header(reqwest::header::AUTHORIZATION, authorization);
    }
    request.send().await.expect("token request")
}

async fn exchange_basic(p: &DevProvider, code: &str, verifier: &str) -> reqwest::Response {
    post_token(
        p,
        &[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", CALLBACK),
            ("code_verifier", verifier),
        ],
        Some(&basic("conf", SECRET)),
    )
    .await
}

pub(super) async fn json_of(response: reqwest::Response) -> (reqwest::StatusCode, Value) {
    let status = response.status();
    let body = response.json::<Value>().await.expect("JSON body");
    (status, body)
}

pub(super) async fn error_of(response: reqwest::Response) -> (reqwest::StatusCode, String) {
    let (status, body) = json_of(response).await;
    (
        status,
        body["error"].as_str().expect("error field").to_owned(),
    )
}

pub(super) async fn userinfo_with(p: &DevProvider, path: &str, token: &str) -> reqwest::Response {
    http()
        .get(format!("{}{path}", p.base_url()))
        .bearer_auth(token)
        .send()
        .await
        .expect("userinfo")
}

async fn full_login(p: &DevProvider) -> Value {
    let (verifier, challenge) = pkce();
    let code = get_code(p, "conf", &challenge).await;
    let (status, body) = json_of(exchange_basic(p, &code, &verifier).await).await;
    assert_eq!(status, 200, "{body}");
    body
}

#[tokio::test]
async fn confidential_basic_happy_path() {
    let p = auto_provider().await;
    let (verifier, challenge) = pkce();
    let code = get_code(&p, "conf", &challenge).await;
    let response = exchange_basic(&p, &code, &verifier).await;
    assert_eq!(
        response
            .headers()
            .get(reqwest::header::CACHE_CONTROL)
            .unwrap(),
        "no-store"
    );
    let (status, body) = json_of(response).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 3600);
    assert_eq!(body["scope"], "read:user email");
    let access = body["access_token"].as_str().unwrap();
    assert_eq!(p.issued_access_tokens(), vec![access.to_owned()]);
    assert_eq!(
        p.issued_refresh_tokens(),
        vec![body["refresh_token"].as_str().unwrap().to_owned()]
    );
    assert_eq!(p.codes_redeemed(), 1);
    assert_eq!(p.token_requests(), 1);
    assert_eq!(
        p.last_token_authorization_header(),
        Some(basic("conf", SECRET))
    );
    let params = p.last_token_params().unwrap();
    assert!(params.contains(&("code_verifier".to_owned(), verifier.clone())));
    let authorize = p.last_authorize_params().unwrap();
    assert!(authorize.contains(&("client_id".to_owned(), "conf".to_owned())));

    let (status, user) = json_of(userinfo_with(&p, "/userinfo", access).await).await;
    assert_eq!(status, 200);
    assert_eq!(
        user,
        json!({"sub": "alice", "name": "Alice", "preferred_username": "alice",
               "email": "alice@example.test"})
    );
    assert_eq!(p.userinfo_requests(), 1);
}

#[tokio::test]
async fn confidential_post_happy_path_and_wrong_method() {
    let p = auto_provider().await;
    let (verifier, challenge) = pkce();
    let code = get_code(&p, "post", &challenge).await;
    let form = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", CALLBACK),
        ("code_verifier", verifier.as_str()),
        ("client_id", "post"),
        ("client_secret", "post-secret"),
    ];
    // Basic is not this client's registered method.
    let response = post_token(&p, &form[..4], Some(&basic("post", "post-secret"))).await;
    assert_eq!(
        error_of(response).await,
        (reqwest::StatusCode::UNAUTHORIZED, "invalid_client".into())
    );
    // Both methods at once.
    let response = post_token(&p, &form, Some(&basic("post", "post-secret"))).await;
    assert_eq!(
        error_of(response).await,
        (reqwest::StatusCode::BAD_REQUEST, "invalid_request".into())
    );
    // Failed client authentication does not burn the code.
    let (status, body) = json_of(post_token(&p, &form, None).await).await;
    assert_eq!(status, 200, "{body}");
    assert!(body["access_token"].is_string());
}

#[tokio::test]
async fn public_client_happy_path_with_query_in_redirect_uri() {
    let p = auto_provider().await;
    let (verifier, challenge) = pkce();
    let redirect = "http://localhost:9/cb?app=1";
    let response = http()
        .get(authorize_url(
            &p,
            &[
                ("response_type", "code"),
                ("client_id", "pub"),
                ("redirect_uri", redirect),
                ("code_challenge", &challenge),
                ("code_challenge_method", "S256"),
            ],
        ))
        .send()
        .await
        .unwrap();
    let location = location(&response);
    assert!(
        location.starts_with("http://localhost:9/cb?app=1&code="),
        "{location}"
    );
    let query = query_of(&location);
    assert_eq!(query["app"], "1");
    assert!(!query.contains_key("state"));
    let code = query["code"].clone();
    assert!(URL_SAFE_NO_PAD.decode(&code).unwrap().len() >= 16);

    let mut form = vec![
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", redirect),
        ("code_verifier", verifier.as_str()),
        ("client_id", "pub"),
        ("client_secret", "anything"),
    ];
    // A public client must not send a secret.
    let response = post_token(&p, &form, None).await;
    assert_eq!(error_of(response).await.1, "invalid_client");
    form.pop();
    let (status, body) = json_of(post_token(&p, &form, None).await).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.get("scope").is_none());
}

#[tokio::test]
async fn code_replay_is_rejected_and_revokes_tokens() {
    let p = auto_provider().await;
    let (verifier, challenge) = pkce();
    let code = get_code(&p, "conf", &challenge).await;
    let (status, body) = json_of(exchange_basic(&p, &code, &verifier).await).await;
    assert_eq!(status, 200);
    let access = body["access_token"].as_str().unwrap().to_owned();
    let refresh = body["refresh_token"].as_str().unwrap().to_owned();
    assert_eq!(userinfo_with(&p, "/userinfo", &access).await.status(), 200);

    let replay = exchange_basic(&p, &code, &verifier).await;
    assert_eq!(
        error_of(replay).await,
        (reqwest::StatusCode::BAD_REQUEST, "invalid_grant".into())
    );
    assert_eq!(p.codes_redeemed(), 1);
    assert_eq!(userinfo_with(&p, "/userinfo", &access).await.status(), 401);
    let response = post_token(
        &p,
        &[("grant_type", "refresh_token"), ("refresh_token", &refresh)],
        Some(&basic("conf", SECRET)),
    )
    .await;
    assert_eq!(error_of(response).await.1, "invalid_grant");
}

#[tokio::test]
async fn wrong_verifier_is_rejected_and_burns_the_code() {
    let p = auto_provider().await;
    let (verifier, challenge) = pkce();
    let (other, _) = pkce();
    let code = get_code(&p, "conf", &challenge).await;
    let response = exchange_basic(&p, &code, &other).await;
    assert_eq!(error_of(response).await.1, "invalid_grant");
    let response = exchange_basic(&p, &code, &verifier).await;
    assert_eq!(error_of(response).await.1, "invalid_grant");
    // Missing and malformed verifiers.
    let code = get_code(&p, "conf", &challenge).await;
    let response = post_token(
        &p,
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", CALLBACK),
        ],
        Some(&basic("conf", SECRET)),
    )
    .await;
    assert_eq!(error_of(response).await.1, "invalid_grant");
    let code = get_code(&p, "conf", &challenge).await;
    assert_eq!(
        error_of(exchange_basic(&p, &code, "short").await).await.1,
        "invalid_grant"
    );
    assert_eq!(p.codes_redeemed(), 0);
}

#[tokio::test]
async fn wrong_redirect_uri_at_token_is_rejected() {
    let p = auto_provider().await;
    let (verifier, challenge) = pkce();
    let code = get_code(&p, "conf", &challenge).await;
    let response = post_token(
        &p,
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", "http://127.0.0.1:9/callback/"),
            ("code_verifier", &verifier),
        ],
        Some(&basic("conf", SECRET)),
    )
    .await;
    assert_eq!(error_of(response).await.1, "invalid_grant");

    let code = get_code(&p, "conf", &challenge).await;
    let response = post_token(
        &p,
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("code_verifier", &verifier),
        ],
        Some(&basic("conf", SECRET)),
    )
    .await;
    assert_eq!(error_of(response).await.1, "invalid_request");
}

#[tokio::test]
async fn code_of_another_client_is_rejected() {
    let p = auto_provider().await;
    let (verifier, challenge) = pkce();
    let code = get_code(&p, "post", &challenge).await;
    let response = exchange_basic(&p, &code, &verifier).await;
    assert_eq!(error_of(response).await.1, "invalid_grant");
}

#[tokio::test]
async fn bad_client_credentials_get_401() {
    let p = auto_provider().await;
    let (verifier, challenge) = pkce();
    let code = get_code(&p, "conf", &challenge).await;
    let form = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", CALLBACK),
        ("code_verifier", verifier.as_str()),
    ];
    let response = post_token(&p, &form, Some(&basic("conf", "wrong"))).await;
    assert_eq!(response.status(), 401);
    let challenge_header = response
        .headers()
        .get(reqwest::header::WWW_AUTHENTICATE)
        .unwrap();
    assert!(challenge_header.to_str().unwrap().starts_with("Basic "));
    assert_eq!(error_of(response).await.1, "invalid_client");
    // Secret sent without form-urlencoding.
    let raw = format!("Basic {}", STANDARD.encode(format!("conf:{SECRET}")));
    assert_eq!(post_token(&p, &form, Some(&raw)).await.status(), 401);
    for header in [
        "Basic !!!not base64",
        "Basic",
        "Bearer abc",
        "Basic Y29uZg==",
        "Basic JQ==",
    ] {
        let response = post_token(&p, &form, Some(header)).await;
        assert_eq!(
            error_of(response).await,
            (reqwest::StatusCode::UNAUTHORIZED, "invalid_client".into()),
            "{header}"
        );
    }
    assert_eq!(
        post_token(&p, &form, Some(&basic("nobody", "x")))
            .await
            .status(),
        401
    );
    assert_eq!(post_token(&p, &form, None).await.status(), 401);
    let mut with_id = form.to_vec();
    with_id.push(("client_id", "post"));
    assert_eq!(
        post_token(&p, &with_id, Some(&basic("conf", SECRET)))
            .await
            .status(),
        401
    );
    // None of this burnt the code.
    assert_eq!(
        json_of(exchange_basic(&p, &code, &verifier).await).await.0,
        200
    );
}

#[tokio::test]
async fn untrusted_client_or_redirect_uri_gets_a_page_not_a_redirect() {
    let p = auto_provider().await;
    let (_, challenge) = pkce();
    let cases: Vec<Vec<(&str, &str)>> = vec![
        {
            let mut params = valid_authorize("conf", &challenge);
            params[2] = ("redirect_uri", "http://evil.example/callback");
            params
        },
        {
            let mut params = valid_authorize("conf", &challenge);
            params[2] = ("redirect_uri", "http://127.0.0.1:9/callback?x=1");
            params
        },
        {
            let mut params = valid_authorize("conf", &challenge);
            params[1] = ("client_id", "<script>unknown</script>");
            params
        },
        valid_authorize("conf", &challenge)
            .into_iter()
            .filter(|(name, _)| *name != "client_id")
            .collect(),
        {
            let mut params = valid_authorize("conf", &challenge);
            params.push(("redirect_uri", CALLBACK));
            params
        },
        // "pub" has two redirect URIs, so it must name one.
        valid_authorize("pub", &challenge)
            .into_iter()
            .filter(|(name, _)| *name != "redirect_uri")
            .collect(),
    ];
    for params in cases {
        let response = http().get(authorize_url(&p, &params)).send().await.unwrap();
        assert_eq!(response.status(), 400, "{params:?}");
        assert!(response.headers().get(reqwest::header::LOCATION).is_none());
        let body = response.text().await.unwrap();
        assert!(body.contains("Authorization request rejected"));
        assert!(!body.contains("<script>"), "{body}");
    }
    assert_eq!(p.authorize_requests(), 6);
}

#[tokio::test]
async fn redirect_uri_may_be_omitted_for_a_single_registered_one() {
    let p = auto_provider().await;
    let (verifier, challenge) = pkce();
    let params: Vec<_> = valid_authorize("conf", &challenge)
        .into_iter()
        .filter(|(name, _)| *name != "redirect_uri")
        .collect();
    let response = http().get(authorize_url(&p, &params)).send().await.unwrap();
    let code = query_of(&location(&response))["code"].clone();
    let response = post_token(
        &p,
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("code_verifier", &verifier),
        ],
        Some(&basic("conf", SECRET)),
    )
    .await;
    assert_eq!(response.status(), 200);
}

async fn authorize_error(p: &DevProvider, params: &[(&str, &str)]) -> HashMap<String, String> {
    let response = http().get(authorize_url(p, params)).send().await.unwrap();
    let location = location(&response);
    assert!(location.starts_with(CALLBACK), "{location}");
    let query = query_of(&location);
    assert!(!query.contains_key("code"), "{location}");
    query
}

#[tokio::test]
async fn invalid_authorization_requests_are_redirected_with_errors() {
    let p = auto_provider().await;
    let (_, challenge) = pkce();
    let with = |name: &'static str, value: Option<&'static str>| {
        let mut params: Vec<(&str, String)> = valid_authorize("conf", &challenge)
            .into_iter()
            .filter(|(n, _)| *n != name)
            .map(|(n, v)| (n, v.to_owned()))
            .collect();
        if let Some(value) = value {
            params.push((name, value.to_owned()));
        }
        params
    };
    let cases = [
        (
            with("code_challenge_method", Some("plain")),
            "invalid_request",
        ),
        (with("code_challenge_method", None), "invalid_request"),
        (with("code_challenge", None), "invalid_request"),
        (with("code_challenge", Some("too-short")), "invalid_request"),
        (
            with("response_type", Some("token")),
            "unsupported_response_type",
        ),
        (with("response_type", None), "invalid_request"),
        (with("scope", Some("a  b")), "invalid_scope"),
        (
            with("response_type", Some("code"))
                .into_iter()
                .chain([("response_type", "code".to_owned())])
                .collect(),
            "invalid_request",
        ),
    ];
    for (params, expected) in cases {
        let params: Vec<(&str, &str)> = params.iter().map(|(n, v)| (*n, v.as_str())).collect();
        let query = authorize_error(&p, &params).await;
        assert_eq!(query["error"], expected, "{params:?}");
        assert_eq!(query["state"], "st&te=1 ?");
        assert_eq!(query["iss"], p.issuer());
    }
    assert!(p.issued_access_tokens().is_empty());
}

#[tokio::test]
async fn login_form_sign_in_and_cancel() {
    let p = provider(DevProvider::builder()).await;
    let (verifier, challenge) = pkce();
    let mut params = valid_authorize("conf", &challenge);
    params[3] = ("scope", "<b>&x'");
    let form_page = |p: &DevProvider| {
        let url = authorize_url(p, &params);
        async move {
            let response = http().get(url).send().await.unwrap();
            assert_eq!(response.status(), 200);
            let body = response.text().await.unwrap();
            assert!(body.contains("Development provider — sign in as any user"));
            assert!(body.contains("name=\"username\""));
            assert!(body.contains("&lt;b&gt;&amp;x&#39;"), "{body}");
            assert!(!body.contains("<b>"));
            assert!(!body.contains("st&amp;te"), "state must stay server-side");
            let start = body.find("name=\"pending\" value=\"").unwrap() + 22;
            let end = start + body[start..].find('"').unwrap();
            body[start..end].to_owned()
        }
    };
    let submit = |p: &DevProvider, form: Vec<(&'static str, String)>| {
        let url = p.authorization_endpoint();
        async move {
            let form: Vec<(&str, &str)> = form.iter().map(|(n, v)| (*n, v.as_str())).collect();
            http()
                .post(url)
                .header(
                    reqwest::header::CONTENT_TYPE,
                    "application/x-www-form-urlencoded",
                )
                .body(encode(&form))
                .send()
                .await
                .unwrap()
        }
    };

    // Cancel → access_denied.
    let pending = form_page(&p).await;
    let response = submit(
        &p,
        vec![("pending", pending.clone()), ("action", "cancel".into())],
    )
    .await;
    let query = query_of(&location(&response));
    assert_eq!(query["error"], "access_denied");
    assert_eq!(query["state"], "st&te=1 ?");
    // The pending request is single-use.
    let response = submit(
        &p,
        vec![
            ("pending", pending),
            ("action", "login".into()),
            ("username", "bob".into()),
        ],
    )
    .await;
    assert_eq!(response.status(), 400);

    // Invalid username → the form again, then a valid one → code.
    let pending = form_page(&p).await;
    let response = submit(
        &p,
        vec![
            ("pending", pending.clone()),
            ("action", "login".into()),
            ("username", "<x>".into()),
        ],
    )
    .await;
    assert_eq!(response.status(), 400);
    let body = response.text().await.unwrap();
    assert!(body.contains("&lt;x&gt;") && !body.contains("<x>"));
    let response = submit(
        &p,
        vec![
            ("pending", pending),
            ("action", "login".into()),
            ("username", " bob ".into()),
        ],
    )
    .await;
    let query = query_of(&location(&response));
    assert_eq!(query["state"], "st&te=1 ?");
    assert_eq!(query["iss"], p.issuer());
    let (status, body) = json_of(exchange_basic(&p, &query["code"], &verifier).await).await;
    assert_eq!(status, 200);
    let access = body["access_token"].as_str().unwrap();
    let (_, user) = json_of(userinfo_with(&p, "/userinfo", access).await).await;
    assert_eq!(user["sub"], "bob");

    // Auto-login can be switched on at runtime.
    p.set_auto_login(Some("carol".into()));
    let (verifier, challenge) = pkce();
    let code = get_code(&p, "conf", &challenge).await;
    let (_, body) = json_of(exchange_basic(&p, &code, &verifier).await).await;
    let (_, user) =
        json_of(userinfo_with(&p, "/userinfo", body["access_token"].as_str().unwrap()).await).await;
    assert_eq!(user["preferred_username"], "carol");
}

#[tokio::test]
async fn refresh_tokens_rotate() {
    let p = auto_provider().await;
    let first = full_login(&p).await;
    let old = first["refresh_token"].as_str().unwrap();
    let refresh = |token: String, scope: Option<&'static str>| {
        let p = p.clone();
        async move {
            let mut form = vec![
                ("grant_type", "refresh_token"),
                ("refresh_token", token.as_str()),
            ];
            if let Some(scope) = scope {
                form.push(("scope", scope));
            }
            post_token(&p, &form, Some(&basic("conf", SECRET))).await
        }
    };
    let (status, second) = json_of(refresh(old.to_owned(), None).await).await;
    assert_eq!(status, 200, "{second}");
    let new = second["refresh_token"].as_str().unwrap();
    assert_ne!(new, old);
    assert_eq!(second["scope"], "read:user email");
    assert_eq!(
        userinfo_with(&p, "/userinfo", second["access_token"].as_str().unwrap())
            .await
            .status(),
        200
    );
    // The old refresh token is dead.
    assert_eq!(
        error_of(refresh(old.to_owned(), None).await).await.1,
        "invalid_grant"
    );
    // Narrowing works, widening does not.
    assert_eq!(
        error_of(refresh(new.to_owned(), Some("admin")).await)
            .await
            .1,
        "invalid_scope"
    );
    let (status, third) = json_of(refresh(new.to_owned(), Some("email")).await).await;
    assert_eq!(status, 200);
    assert_eq!(third["scope"], "email");
    let (status, fourth) =
        json_of(refresh(third["refresh_token"].as_str().unwrap().to_owned(), None).await).await;
    assert_eq!(status, 200);
    assert_eq!(fourth["scope"], "read:user email");
    assert_eq!(p.issued_refresh_tokens().len(), 4);
    // Another client cannot use it.
    let response = post_token(
        &p,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", fourth["refresh_token"].as_str().unwrap()),
            ("client_id", "post"),
            ("client_secret", "post-secret"),
        ],
        None,
    )
    .await;
    assert_eq!(error_of(response).await.1, "invalid_grant");
}

#[tokio::test]
async fn grant_type_errors() {
    let p = auto_provider().await;
    let auth = basic("conf", SECRET);
    let response = post_token(&p, &[("grant_type", "password")], Some(&auth)).await;
    assert_eq!(error_of(response).await.1, "unsupported_grant_type");
    let response = post_token(&p, &[("code", "x")], Some(&auth)).await;
    assert_eq!(error_of(response).await.1, "invalid_request");
    let response = post_token(
        &p,
        &[("grant_type", "authorization_code"), ("code", "nope")],
        Some(&auth),
    )
    .await;
    assert_eq!(error_of(response).await.1, "invalid_grant");
    let response = http()
        .post(p.token_endpoint())
        .header(reqwest::header::AUTHORIZATION, &auth)
        .json(&json!({"grant_type": "authorization_code"}))
        .send()
        .await
        .unwrap();
    assert_eq!(error_of(response).await.1, "invalid_request");
    assert_eq!(p.token_requests(), 4);
}

#[tokio::test]
async fn codes_and_access_tokens_expire() {
    let p = provider(
        DevProvider::builder()
            .with_auto_login("alice")
            .with_code_lifetime(Duration::from_millis(50))
            .with_access_token_lifetime(Duration::from_millis(300)),
    )
    .await;
    let (verifier, challenge) = pkce();
    let code = get_code(&p, "conf", &challenge).await;
    tokio::time::sleep(Duration::from_millis(80)).await;
    assert_eq!(
        error_of(exchange_basic(&p, &code, &verifier).await).await.1,
        "invalid_grant"
    );

    let body = full_login(&p).await;
    assert_eq!(body["expires_in"], 1);
    let access = body["access_token"].as_str().unwrap();
    assert_eq!(userinfo_with(&p, "/userinfo", access).await.status(), 200);
    tokio::time::sleep(Duration::from_millis(350)).await;
    let response = userinfo_with(&p, "/userinfo", access).await;
    assert_eq!(response.status(), 401);
    let challenge = response
        .headers()
        .get(reqwest::header::WWW_AUTHENTICATE)
        .unwrap();
    assert!(challenge
        .to_str()
        .unwrap()
        .contains("error=\"invalid_token\""));
}

#[tokio::test]
async fn userinfo_shapes_and_errors() {
    let p = auto_provider().await;
    let response = http().get(p.userinfo_endpoint()).send().await.unwrap();
    assert_eq!(response.status(), 401);
    let challenge = response
        .headers()
        .get(reqwest::header::WWW_AUTHENTICATE)
        .unwrap();
    assert_eq!(challenge, "Bearer realm=\"dev-provider\"");
    let response = userinfo_with(&p, "/userinfo", "not-a-token").await;
    assert_eq!(response.status(), 401);
    assert!(response.headers()[reqwest::header::WWW_AUTHENTICATE]
        .to_str()
        .unwrap()
        .contains("error=\"invalid_token\""));
    let body = full_login(&p).await;
    let access = body["access_token"].as_str().unwrap();
    p.revoke_access_tokens();
    assert_eq!(userinfo_with(&p, "/userinfo", access).await.status(), 401);

    let gh = provider(
        DevProvider::builder()
            .with_user_shape(UserShape::GitHub)
            .with_auto_login("octo-cat"),
    )
    .await;
    let body = full_login(&gh).await;
    let access = body["access_token"].as_str().unwrap();
    for path in ["/user", "/userinfo"] {
        let (status, user) = json_of(userinfo_with(&gh, path, access).await).await;
        assert_eq!(status, 200);
        assert_eq!(user["login"], "octo-cat");
        assert_eq!(user["name"], "Octo-cat");
        assert!(user.get("sub").is_none());
        assert_eq!(user["id"].as_u64(), Some(github_id("octo-cat")));
    }
    assert_eq!(github_id("octo-cat"), github_id("octo-cat"));
    assert_ne!(github_id("octo-cat"), github_id("octo-dog"));
    assert!(github_id("x") < 1 << 53);
}

#[tokio::test]
async fn github_shape_answers_form_encoded_unless_json_is_asked_for() {
    let gh = provider(
        DevProvider::builder()
            .with_user_shape(UserShape::GitHub)
            .with_auto_login("octo-cat"),
    )
    .await;
    let (verifier, challenge) = pkce();
    let code = get_code(&gh, "conf", &challenge).await;
    let response = http()
        .post(gh.token_endpoint())
        .header(reqwest::header::AUTHORIZATION, basic("conf", SECRET))
        .header(reqwest::header::ACCEPT, "*/*")
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", code.as_str()),
            ("redirect_uri", CALLBACK),
            ("code_verifier", verifier.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()[reqwest::header::CONTENT_TYPE],
        "application/x-www-form-urlencoded"
    );
    let body = response.text().await.unwrap();
    let fields: HashMap<String, String> = url::form_urlencoded::parse(body.as_bytes())
        .into_owned()
        .collect();
    assert!(!fields["access_token"].is_empty(), "{body}");
    assert_eq!(fields["token_type"], "Bearer");
    assert_eq!(fields["expires_in"], "3600");
    assert!(serde_json::from_str::<Value>(&body).is_err());

    // Errors too; and with `Accept: application/json` the answer is JSON.
    let response = post_token(&gh, &[("grant_type", "password")], None).await;
    assert_eq!(
        response.headers()[reqwest::header::CONTENT_TYPE],
        "application/json"
    );
    let response = http()
        .post(gh.token_endpoint())
        .form(&[("grant_type", "password")])
        .send()
        .await
        .unwrap();
    let body = response.text().await.unwrap();
    assert!(body.contains("error="), "{body}");
}

#[tokio::test]
async fn token_behaviors() {
    let p = auto_provider().await;
    let auth = basic("conf", SECRET);
    let refresh_form = |token: &str| {
        vec![
            ("grant_type".to_owned(), "refresh_token".to_owned()),
            ("refresh_token".to_owned(), token.to_owned()),
        ]
    };
    let send = |form: Vec<(String, String)>| {
        let p = p.clone();
        let auth = auth.clone();
        async move {
            let form: Vec<(&str, &str)> =
                form.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
            post_token(&p, &form, Some(&auth)).await
        }
    };
    let mut refresh = full_login(&p).await["refresh_token"]
        .as_str()
        .unwrap()
        .to_owned();

    p.set_token_behavior(TokenBehavior::InvalidGrant);
    assert_eq!(
        error_of(send(refresh_form(&refresh)).await).await,
        (reqwest::StatusCode::BAD_REQUEST, "invalid_grant".into())
    );

    p.set_token_behavior(TokenBehavior::ServerError);
    let response = send(refresh_form(&refresh)).await;
    assert_eq!(response.status(), 500);
    assert!(response.json::<Value>().await.is_err());

    p.set_token_behavior(TokenBehavior::NotJson);
    let response = send(refresh_form(&refresh)).await;
    assert_eq!(response.status(), 200);
    assert!(response.headers()[reqwest::header::CONTENT_TYPE]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    assert!(response.json::<Value>().await.is_err());

    p.set_token_behavior(TokenBehavior::HugeBody);
    let response = send(refresh_form(&refresh)).await;
    assert_eq!(response.status(), 200);
    let bytes = response.bytes().await.unwrap();
    assert!(bytes.len() >= 5 * 1024 * 1024);
    assert!(serde_json::from_slice::<Value>(&bytes).is_ok());

    // None of the above consumed the refresh token.
    p.set_token_behavior(TokenBehavior::Slow(Duration::from_millis(200)));
    let started = Instant::now();
    let (status, body) = json_of(send(refresh_form(&refresh)).await).await;
    assert!(started.elapsed() >= Duration::from_millis(200));
    assert_eq!(status, 200, "{body}");
    refresh = body["refresh_token"].as_str().unwrap().to_owned();

    p.set_token_behavior(TokenBehavior::TokenTypeCase("bEaReR".into()));
    let (_, body) = json_of(send(refresh_form(&refresh)).await).await;
    assert_eq!(body["token_type"], "bEaReR");
    refresh = body["refresh_token"].as_str().unwrap().to_owned();

    p.set_token_behavior(TokenBehavior::OmitExpiresIn);
    let (status, body) = json_of(send(refresh_form(&refresh)).await).await;
    assert_eq!(status, 200);
    assert!(body.get("expires_in").is_none());
    assert!(body["access_token"].is_string());

    p.set_token_behavior(TokenBehavior::Normal);
    assert_eq!(p.token_requests(), 8);
}

#[tokio::test]
async fn authorize_behaviors() {
    let p = auto_provider().await;
    let (_, challenge) = pkce();
    let params = valid_authorize("conf", &challenge);

    p.set_authorize_behavior(AuthorizeBehavior::Error {
        error: "access_denied".into(),
        description: Some("nope".into()),
    });
    let query = authorize_error(&p, &params).await;
    assert_eq!(query["error"], "access_denied");
    assert_eq!(query["error_description"], "nope");
    assert_eq!(query["state"], "st&te=1 ?");
    assert_eq!(query["iss"], p.issuer());

    p.set_authorize_behavior(AuthorizeBehavior::WrongIss);
    let response = http().get(authorize_url(&p, &params)).send().await.unwrap();
    let query = query_of(&location(&response));
    assert!(query.contains_key("code"));
    assert_eq!(query["iss"], WRONG_ISSUER);
    assert_ne!(query["iss"], p.issuer());

    p.set_authorize_behavior(AuthorizeBehavior::OmitIss);
    let response = http().get(authorize_url(&p, &params)).send().await.unwrap();
    let query = query_of(&location(&response));
    assert!(query.contains_key("code"));
    assert!(!query.contains_key("iss"));
}

#[tokio::test]
async fn userinfo_behaviors() {
    let p = auto_provider().await;
    let body = full_login(&p).await;
    let access = body["access_token"].as_str().unwrap();
    p.set_userinfo_behavior(UserinfoBehavior::ServerError);
    assert_eq!(userinfo_with(&p, "/userinfo", access).await.status(), 500);
    p.set_userinfo_behavior(UserinfoBehavior::NotJson);
    let response = userinfo_with(&p, "/userinfo", access).await;
    assert_eq!(response.status(), 200);
    assert!(response.json::<Value>().await.is_err());
    p.set_userinfo_behavior(UserinfoBehavior::Normal);
    assert_eq!(userinfo_with(&p, "/userinfo", access).await.status(), 200);
    assert_eq!(p.userinfo_requests(), 3);
}

#[tokio::test]
async fn metadata_builder_errors_and_shutdown() {
    let p = auto_provider().await;
    assert!(p.base_url().starts_with("http://127.0.0.1:"));
    assert!(!p.base_url().ends_with('/'));
    assert_eq!(p.issuer(), p.base_url());
    let (status, meta) = json_of(
        http()
            .get(format!(
                "{}/.well-known/oauth-authorization-server",
                p.base_url()
            ))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(meta["issuer"], p.issuer());
    assert_eq!(meta["token_endpoint"], p.token_endpoint());
    assert_eq!(meta["code_challenge_methods_supported"], json!(["S256"]));

    let bad = DevProvider::builder()
        .with_client(DevClient::public("a", "http://x.example/cb#frag"))
        .start()
        .await;
    assert_eq!(bad.unwrap_err().kind(), std::io::ErrorKind::InvalidInput);
    let bad = DevProvider::builder()
        .with_client(DevClient::public("a", "/relative"))
        .start()
        .await;
    assert_eq!(bad.unwrap_err().kind(), std::io::ErrorKind::InvalidInput);
    let bad = DevProvider::builder()
        .with_client(DevClient::public("a", CALLBACK))
        .with_client(DevClient::public("a", CALLBACK))
        .start()
        .await;
    assert_eq!(bad.unwrap_err().kind(), std::io::ErrorKind::InvalidInput);

    let debug = format!("{:?}", DevClient::confidential("id", "hunter2", CALLBACK));
    assert!(!debug.contains("hunter2"));

    let url = p.authorization_endpoint();
    let clone = p.clone();
    drop(clone);
    assert!(http().get(&url).send().await.is_ok());
    p.shutdown();
    let mut stopped = false;
    for _ in 0..50 {
        if http().get(&url).send().await.is_err() {
            stopped = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(stopped, "server still answering after shutdown()");
    assert_eq!(p.authorize_requests(), 1);
}

#[test]
fn helpers() {
    assert_eq!(form_urldecode("a+b%2Bc%3A%25"), Some("a b+c:%".into()));
    assert_eq!(form_urldecode("%"), None);
    assert_eq!(form_urldecode("%zz"), None);
    assert_eq!(form_urldecode("%ff"), None);
    assert!(is_valid_scope("openid read:user"));
    assert!(!is_valid_scope(""));
    assert!(!is_valid_scope("a\"b"));
    assert!(!is_valid_scope(" a"));
    assert_eq!(capitalise("élodie"), "Élodie");
    assert_eq!(ceil_secs(Duration::from_millis(1500)), 2);
    assert_eq!(ceil_secs(Duration::from_secs(3600)), 3600);
    let params = parse_params(b"a=1&b=&b=&a=2");
    assert_eq!(duplicate_param(&params), Some("a"));
    assert_eq!(get_param(&params, "b"), None);
    assert!(random_token().len() >= 43);
}

#[tokio::test]
async fn a_reused_refresh_token_revokes_its_grant_with_reuse_detection() {
    for detection in [false, true] {
        let mut builder = DevProvider::builder().with_auto_login("alice");
        if detection {
            builder = builder.with_refresh_token_reuse_detection();
        }
        let p = provider(builder).await;
        let first = full_login(&p).await;
        let old = first["refresh_token"].as_str().unwrap().to_owned();
        let refresh = |token: String| {
            let p = p.clone();
            async move {
                post_token(
                    &p,
                    &[("grant_type", "refresh_token"), ("refresh_token", &token)],
                    Some(&basic("conf", SECRET)),
                )
                .await
            }
        };
        let (status, second) = json_of(refresh(old.clone()).await).await;
        assert_eq!(status, 200, "{second}");
        let new = second["refresh_token"].as_str().unwrap().to_owned();
        let access = second["access_token"].as_str().unwrap().to_owned();
        assert_eq!(p.refresh_token_reuses(), 0);

        assert_eq!(error_of(refresh(old).await).await.1, "invalid_grant");
        assert_eq!(p.refresh_token_reuses(), 1);
        // With detection the whole grant is gone, the tokens of the rotation included.
        let userinfo = userinfo_with(&p, "/userinfo", &access).await.status();
        let (status, _) = json_of(refresh(new).await).await;
        if detection {
            assert_eq!(userinfo, 401);
            assert_eq!(status, 400);
        } else {
            assert_eq!(userinfo, 200);
            assert_eq!(status, 200);
        }
    }
}

#[tokio::test]
async fn a_client_without_refresh_tokens_gets_none() {
    let p = DevProvider::builder()
        .with_auto_login("alice")
        .with_client(DevClient::confidential("conf", SECRET, CALLBACK).without_refresh_tokens())
        .start()
        .await
        .unwrap();
    let body = full_login(&p).await;
    assert!(body["access_token"].is_string());
    assert!(body.get("refresh_token").is_none(), "{body}");
    assert!(p.issued_refresh_tokens().is_empty());
}
