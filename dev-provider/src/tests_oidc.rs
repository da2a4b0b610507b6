//! Tests of the OpenID Connect parts (discovery, JWKS, ID tokens and their misbehaviours,
//! key rotation, revocation, logout) through real HTTP.

use std::str::FromStr as _;

use openidconnect::core::{
    CoreHmacKey, CoreIdToken, CoreIdTokenVerifier, CoreJsonWebKeySet, CoreJwsSigningAlgorithm,
};
use openidconnect::{
    ClientId, ClientSecret, IssuerUrl, Nonce, PrivateSigningKey as _, ProviderMetadataWithLogout,
};

use super::keys::{decode_jwt, verify_own_jwt};
use super::misbehave::{BACKCHANNEL_LOGOUT_EVENT, OTHER_EVENT, SOMEONE_ELSE};
use super::tests::{
    basic, encode, error_of, http, json_of, location, pkce, post_token, query_of, userinfo_with,
    CALLBACK, SECRET,
};
use super::*;

const LOGGED_OUT: &str = "http://127.0.0.1:9/logged-out?from=op";
const NONCE: &str = "n-0S6_WzA2Mj";

/// A provider with auto-login as `alice`, a confidential client `conf` (post-logout redirect
/// URI, back-channel logout URI `backchannel`) and a public client `pub`.
async fn oidc_provider(backchannel: Option<&str>) -> DevProvider {
    let mut conf =
        DevClient::confidential("conf", SECRET, CALLBACK).with_post_logout_redirect_uri(LOGGED_OUT);
    if let Some(uri) = backchannel {
        conf = conf.with_backchannel_logout_uri(uri);
    }
    DevProvider::builder()
        .with_auto_login("alice")
        .with_client(conf)
        .with_client(DevClient::public("pub", CALLBACK))
        .start()
        .await
        .expect("start dev provider")
}

/// Signs in (auto-login) through `/authorize` and `/token` and returns the token response.
async fn login(p: &DevProvider, scope: &str, nonce: Option<&str>) -> Value {
    let (verifier, challenge) = pkce();
    let mut params = vec![
        ("response_type", "code"),
        ("client_id", "conf"),
        ("redirect_uri", CALLBACK),
        ("scope", scope),
        ("state", "xyz"),
        ("code_challenge", challenge.as_str()),
        ("code_challenge_method", "S256"),
    ];
    if let Some(nonce) = nonce {
        params.push(("nonce", nonce));
    }
    let response = http()
        .get(format!(
            "{}?{}",
            p.authorization_endpoint(),
            encode(&params)
        ))
        .send()
        .await
        .unwrap();
    let code = query_of(&location(&response))["code"].clone();
    let response = post_token(
        p,
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", CALLBACK),
            ("code_verifier", &verifier),
        ],
        Some(&basic("conf", SECRET)),
    )
    .await;
    let (status, body) = json_of(response).await;
    assert_eq!(status, 200, "{body}");
    body
}

async fn refresh(p: &DevProvider, refresh_token: &str) -> Value {
    let response = post_token(
        p,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token),
        ],
        Some(&basic("conf", SECRET)),
    )
    .await;
    let (status, body) = json_of(response).await;
    assert_eq!(status, 200, "{body}");
    body
}

fn id_token_of(body: &Value) -> String {
    body["id_token"].as_str().expect("id_token").to_owned()
}

/// The header and claims of a JWT, unverified.
fn parts(token: &str) -> (Map<String, Value>, Map<String, Value>, Vec<u8>) {
    let jwt = decode_jwt(token).expect("compact JWS");
    (jwt.header, jwt.claims, jwt.signature)
}

async fn get_json(url: &str) -> (reqwest::StatusCode, Value) {
    json_of(http().get(url).send().await.unwrap()).await
}

async fn fetch_jwks(p: &DevProvider) -> CoreJsonWebKeySet {
    let (status, body) = get_json(&p.jwks_uri()).await;
    assert_eq!(status, 200);
    serde_json::from_value(body).expect("a JWKS openidconnect can read")
}

fn kids_of(jwks: &Value) -> Vec<String> {
    jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|key| key["kid"].as_str().unwrap().to_owned())
        .collect()
}

/// Verifies `token` with openidconnect's verifier, as an independent relying party would.
fn verify_with_openidconnect(
    p: &DevProvider,
    jwks: CoreJsonWebKeySet,
    token: &str,
    nonce: Option<&str>,
) -> Result<(), String> {
    let verifier = CoreIdTokenVerifier::new_confidential_client(
        ClientId::new("conf".into()),
        ClientSecret::new(SECRET.into()),
        IssuerUrl::new(p.issuer().into()).unwrap(),
        jwks,
    );
    let id_token = CoreIdToken::from_str(token).map_err(|e| e.to_string())?;
    let result = match nonce {
        Some(nonce) => id_token
            .claims(&verifier, &Nonce::new(nonce.into()))
            .map(|_| ()),
        None => id_token
            .claims(&verifier, |_: Option<&Nonce>| Ok(()))
            .map(|_| ()),
    };
    result.map_err(|e| e.to_string())
}

#[tokio::test]
async fn discovery_documents() {
    let p = oidc_provider(None).await;
    let (status, doc) = get_json(&p.discovery_url()).await;
    assert_eq!(status, 200);
    let base = p.base_url();
    assert_eq!(doc["issuer"], p.issuer());
    assert_eq!(doc["authorization_endpoint"], p.authorization_endpoint());
    assert_eq!(doc["token_endpoint"], p.token_endpoint());
    assert_eq!(doc["userinfo_endpoint"], p.userinfo_endpoint());
    assert_eq!(doc["jwks_uri"], format!("{base}/jwks"));
    assert_eq!(doc["end_session_endpoint"], format!("{base}/end_session"));
    assert_eq!(doc["revocation_endpoint"], format!("{base}/revoke"));
    assert_eq!(doc["response_types_supported"], json!(["code"]));
    assert_eq!(doc["subject_types_supported"], json!(["public"]));
    assert_eq!(
        doc["id_token_signing_alg_values_supported"],
        json!(["RS256"])
    );
    assert_eq!(doc["code_challenge_methods_supported"], json!(["S256"]));
    assert_eq!(
        doc["token_endpoint_auth_methods_supported"],
        json!(["client_secret_basic", "client_secret_post", "none"])
    );
    assert_eq!(
        doc["grant_types_supported"],
        json!(["authorization_code", "refresh_token"])
    );
    assert!(doc["scopes_supported"]
        .as_array()
        .unwrap()
        .contains(&json!("openid")));
    for claim in ["sub", "sid", "nonce", "email", "preferred_username"] {
        assert!(
            doc["claims_supported"]
                .as_array()
                .unwrap()
                .contains(&json!(claim)),
            "{claim}"
        );
    }
    assert_eq!(doc["authorization_response_iss_parameter_supported"], true);
    assert_eq!(doc["backchannel_logout_supported"], true);
    assert_eq!(doc["backchannel_logout_session_supported"], true);

    // An independent parser accepts it.
    let metadata: ProviderMetadataWithLogout = serde_json::from_value(doc).unwrap();
    assert_eq!(metadata.issuer().as_str(), p.issuer());
    assert_eq!(
        metadata
            .additional_metadata()
            .end_session_endpoint
            .as_ref()
            .map(|url| url.as_str().to_owned()),
        Some(p.end_session_endpoint())
    );

    // RFC 8414 metadata is still served.
    let oauth_url = format!("{base}/.well-known/oauth-authorization-server");
    let (status, oauth) = get_json(&oauth_url).await;
    assert_eq!(status, 200);
    assert_eq!(oauth["issuer"], p.issuer());
    assert_eq!(oauth["jwks_uri"], p.jwks_uri());
    assert_eq!(oauth["revocation_endpoint"], p.revocation_endpoint());

    // The issuer mismatch case.
    p.set_discovery_issuer(Some("https://elsewhere.example".into()));
    assert_eq!(
        get_json(&p.discovery_url()).await.1["issuer"],
        "https://elsewhere.example"
    );
    assert_eq!(
        get_json(&oauth_url).await.1["issuer"],
        "https://elsewhere.example"
    );
    p.set_discovery_issuer(None);
    assert_eq!(get_json(&p.discovery_url()).await.1["issuer"], p.issuer());
}

#[tokio::test]
async fn id_token_verifies_with_openidconnect_and_carries_the_nonce() {
    let p = oidc_provider(None).await;
    let body = login(&p, "openid email", Some(NONCE)).await;
    let token = id_token_of(&body);
    let (header, claims, _) = parts(&token);
    assert_eq!(header["alg"], "RS256");
    assert_eq!(header["kid"], p.signing_key_id());
    assert_eq!(header["kid"], keys::KID_1);

    // The JWKS.
    let (_, raw_jwks) = get_json(&p.jwks_uri()).await;
    assert_eq!(kids_of(&raw_jwks), vec![keys::KID_1.to_owned()]);
    let key = &raw_jwks["keys"][0];
    assert_eq!(key["kty"], "RSA");
    assert_eq!(key["alg"], "RS256");
    assert_eq!(key["use"], "sig");
    assert_eq!(key["e"], "AQAB");
    assert!(key["n"].as_str().unwrap().len() >= 342);
    assert!(key.get("d").is_none());

    // An independent verifier accepts it, with the nonce, and not with another nonce.
    verify_with_openidconnect(&p, fetch_jwks(&p).await, &token, Some(NONCE)).unwrap();
    assert!(verify_with_openidconnect(&p, fetch_jwks(&p).await, &token, Some("other")).is_err());
    assert_eq!(p.jwks_requests(), 3);

    // The claims.
    let now = unix_now();
    assert_eq!(claims["iss"], p.issuer());
    assert_eq!(claims["sub"], "alice");
    assert_eq!(claims["aud"], "conf");
    assert_eq!(claims["azp"], "conf");
    assert_eq!(claims["nonce"], NONCE);
    assert_eq!(claims["name"], "Alice");
    assert_eq!(claims["preferred_username"], "alice");
    assert_eq!(claims["email"], "alice@example.test");
    let iat = claims["iat"].as_u64().unwrap();
    assert!(iat.abs_diff(now) <= 5);
    assert_eq!(claims["exp"].as_u64().unwrap(), iat + 600);
    assert!(claims["auth_time"].as_u64().unwrap() <= iat);
    let sid = claims["sid"].as_str().unwrap();
    assert_eq!(p.sessions_of("alice"), vec![sid.to_owned()]);
    assert!(p.is_session_active(sid));

    // Without a nonce in the request there is none in the token; the access token works.
    let body = login(&p, "openid", None).await;
    let (_, claims, _) = parts(&id_token_of(&body));
    assert!(claims.get("nonce").is_none());
    assert_ne!(claims["sid"], sid, "one provider session per sign-in");
    let access = body["access_token"].as_str().unwrap();
    let (_, user) = json_of(userinfo_with(&p, "/userinfo", access).await).await;
    assert_eq!(user["sub"], claims["sub"]);
    assert_eq!(p.authorization_code_requests(), 2);
}

#[tokio::test]
async fn nonce_survives_the_login_form_and_exp_follows_short_access_tokens() {
    let p = DevProvider::builder()
        .with_client(DevClient::confidential("conf", SECRET, CALLBACK))
        .with_access_token_lifetime(Duration::from_secs(90))
        .start()
        .await
        .unwrap();
    let (verifier, challenge) = pkce();
    let params = [
        ("response_type", "code"),
        ("client_id", "conf"),
        ("scope", "openid"),
        ("nonce", NONCE),
        ("code_challenge", challenge.as_str()),
        ("code_challenge_method", "S256"),
    ];
    let page = http()
        .get(format!(
            "{}?{}",
            p.authorization_endpoint(),
            encode(&params)
        ))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!page.contains(NONCE), "the nonce stays server-side");
    let start = page.find("name=\"pending\" value=\"").unwrap() + 22;
    let end = start + page[start..].find('"').unwrap();
    let pending = &page[start..end];
    let response = http()
        .post(p.authorization_endpoint())
        .header(
            reqwest::header::CONTENT_TYPE,
            "application/x-www-form-urlencoded",
        )
        .body(encode(&[
            ("pending", pending),
            ("action", "login"),
            ("username", "bob"),
        ]))
        .send()
        .await
        .unwrap();
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
    let (status, body) = json_of(response).await;
    assert_eq!(status, 200, "{body}");
    let (_, claims, _) = parts(&id_token_of(&body));
    assert_eq!(claims["nonce"], NONCE);
    assert_eq!(claims["sub"], "bob");
    assert_eq!(
        claims["exp"].as_u64().unwrap() - claims["iat"].as_u64().unwrap(),
        90
    );
}

#[tokio::test]
async fn no_id_token_without_openid_or_in_the_github_shape() {
    let p = oidc_provider(None).await;
    let body = login(&p, "email profile", Some(NONCE)).await;
    assert!(body.get("id_token").is_none());
    let body = refresh(&p, body["refresh_token"].as_str().unwrap()).await;
    assert!(body.get("id_token").is_none());

    let gh = DevProvider::builder()
        .with_auto_login("octo")
        .with_user_shape(UserShape::GitHub)
        .with_client(DevClient::confidential("conf", SECRET, CALLBACK))
        .start()
        .await
        .unwrap();
    let body = login(&gh, "openid", Some(NONCE)).await;
    assert!(body.get("id_token").is_none());
    let body = refresh(&gh, body["refresh_token"].as_str().unwrap()).await;
    assert!(body.get("id_token").is_none());
}

/// What an ID token behaviour must produce, and whether openidconnect must accept it.
fn check_id_token_behavior(
    behavior: IdTokenBehavior,
    token: &str,
    raw_jwks: &Value,
    active_kid: &str,
) -> bool {
    let (header, claims, signature) = parts(token);
    let now = unix_now();
    let kids = kids_of(raw_jwks);
    let mut accepted = false;
    match behavior {
        IdTokenBehavior::Normal => {
            assert_eq!(header["kid"], active_kid);
            assert_eq!(claims["nonce"], NONCE);
            assert_eq!(kids, vec![active_kid.to_owned()]);
            accepted = true;
        }
        IdTokenBehavior::WrongIss => assert_eq!(claims["iss"], WRONG_ISSUER),
        IdTokenBehavior::MissingSub => assert!(claims.get("sub").is_none()),
        IdTokenBehavior::WrongAud => {
            assert_eq!(claims["aud"], SOMEONE_ELSE);
            assert!(claims.get("azp").is_none());
        }
        IdTokenBehavior::MissingAud => {
            assert!(claims.get("aud").is_none());
            assert!(claims.get("azp").is_none());
        }
        IdTokenBehavior::ExtraAudNoAzp => {
            assert_eq!(claims["aud"], json!(["conf", SOMEONE_ELSE]));
            assert!(claims.get("azp").is_none());
        }
        IdTokenBehavior::AzpMismatch => {
            assert_eq!(claims["aud"], "conf");
            assert_eq!(claims["azp"], SOMEONE_ELSE);
        }
        IdTokenBehavior::MissingIat => assert!(claims.get("iat").is_none()),
        IdTokenBehavior::Expired => {
            let exp = claims["exp"].as_u64().unwrap();
            assert!(exp <= now - 595 && exp >= now - 605, "{exp} {now}");
            assert!(claims["iat"].as_u64().unwrap() < exp);
        }
        IdTokenBehavior::IatInFuture => {
            let iat = claims["iat"].as_u64().unwrap();
            assert!(iat >= now + 3595, "{iat} {now}");
            assert!(claims["exp"].as_u64().unwrap() > iat);
        }
        IdTokenBehavior::NoKidSingleKey => {
            assert!(header.get("kid").is_none());
            assert_eq!(header["alg"], "RS256");
            assert_eq!(kids, vec![active_kid.to_owned()]);
            accepted = true;
        }
        IdTokenBehavior::NoKidMultipleKeys => {
            assert!(header.get("kid").is_none());
            assert_eq!(kids.len(), 3);
            // Trying every key finds the right one.
            verify_own_jwt(token).unwrap();
        }
        IdTokenBehavior::AlgNone => {
            assert_eq!(header["alg"], "none");
            assert!(signature.is_empty());
            assert!(token.ends_with('.'));
        }
        IdTokenBehavior::BadRs256Signature => {
            assert_eq!(header["alg"], "RS256");
            assert_eq!(header["kid"], active_kid);
            assert_eq!(signature.len(), 256);
            assert!(verify_own_jwt(token).is_err());
        }
        IdTokenBehavior::Hs256 => {
            assert_eq!(header["alg"], "HS256");
            let (signing_input, _) = token.rsplit_once('.').unwrap();
            let mac = CoreHmacKey::new(SECRET)
                .sign(
                    &CoreJwsSigningAlgorithm::HmacSha256,
                    signing_input.as_bytes(),
                )
                .unwrap();
            assert_eq!(signature, mac);
        }
        IdTokenBehavior::Es256BadSignature => {
            assert_eq!(header["alg"], "ES256");
            assert_eq!(signature.len(), 64);
        }
        IdTokenBehavior::WrongNonce => {
            assert!(claims["nonce"].is_string());
            assert_ne!(claims["nonce"], NONCE);
        }
        IdTokenBehavior::MissingNonce => assert!(claims.get("nonce").is_none()),
        IdTokenBehavior::UnknownKid => {
            assert_eq!(header["kid"], keys::UNPUBLISHED_KID);
            assert!(!kids.contains(&keys::UNPUBLISHED_KID.to_owned()));
            assert!(verify_own_jwt(token).is_err());
        }
    }
    // Every variant but the one under test is as normal.
    if !matches!(
        behavior,
        IdTokenBehavior::WrongIss
            | IdTokenBehavior::AlgNone
            | IdTokenBehavior::Hs256
            | IdTokenBehavior::Es256BadSignature
    ) {
        assert_eq!(header["alg"], "RS256", "{behavior:?}");
    }
    if behavior != IdTokenBehavior::MissingSub {
        assert_eq!(claims["sub"], "alice", "{behavior:?}");
    }
    accepted
}

async fn run_id_token_behaviors(behaviors: &[IdTokenBehavior]) {
    let p = oidc_provider(None).await;
    for &behavior in behaviors {
        p.set_id_token_behavior(behavior);
        let body = login(&p, "openid", Some(NONCE)).await;
        // The rest of the response is unaffected.
        assert!(body["access_token"].is_string());
        let token = id_token_of(&body);
        let (_, raw_jwks) = get_json(&p.jwks_uri()).await;
        let accepted = check_id_token_behavior(behavior, &token, &raw_jwks, &p.signing_key_id());
        let verdict = verify_with_openidconnect(&p, fetch_jwks(&p).await, &token, Some(NONCE));
        // openidconnect checks no `iat` by default, and `azp` only with several audiences:
        // there the relying party must check itself.
        if !matches!(
            behavior,
            IdTokenBehavior::IatInFuture | IdTokenBehavior::AzpMismatch
        ) {
            assert_eq!(verdict.is_ok(), accepted, "{behavior:?}: {verdict:?}");
        }
    }
}

#[tokio::test]
async fn id_token_behaviors_claims() {
    run_id_token_behaviors(&[
        IdTokenBehavior::Normal,
        IdTokenBehavior::WrongIss,
        IdTokenBehavior::MissingSub,
        IdTokenBehavior::WrongAud,
        IdTokenBehavior::MissingAud,
        IdTokenBehavior::ExtraAudNoAzp,
        IdTokenBehavior::AzpMismatch,
        IdTokenBehavior::WrongNonce,
        IdTokenBehavior::MissingNonce,
    ])
    .await;
}

#[tokio::test]
async fn id_token_behaviors_times_and_keys() {
    run_id_token_behaviors(&[
        IdTokenBehavior::MissingIat,
        IdTokenBehavior::Expired,
        IdTokenBehavior::IatInFuture,
        IdTokenBehavior::NoKidSingleKey,
        IdTokenBehavior::NoKidMultipleKeys,
        IdTokenBehavior::UnknownKid,
    ])
    .await;
}

#[tokio::test]
async fn id_token_behaviors_signatures() {
    run_id_token_behaviors(&[
        IdTokenBehavior::AlgNone,
        IdTokenBehavior::BadRs256Signature,
        IdTokenBehavior::Hs256,
        IdTokenBehavior::Es256BadSignature,
        IdTokenBehavior::Normal,
    ])
    .await;
}

#[tokio::test]
async fn key_rotation_and_jwks_faults() {
    let p = oidc_provider(None).await;
    let before = id_token_of(&login(&p, "openid", None).await);
    let old_jwks = fetch_jwks(&p).await;
    assert_eq!(p.published_key_ids(), vec![keys::KID_1]);

    // Rotation keeping the old key: both verify against a fresh JWKS.
    p.rotate_signing_key(true);
    assert_eq!(p.signing_key_id(), keys::KID_2);
    assert_eq!(p.published_key_ids(), vec![keys::KID_1, keys::KID_2]);
    let during = id_token_of(&login(&p, "openid", None).await);
    assert_eq!(parts(&during).0["kid"], keys::KID_2);
    let (_, raw) = get_json(&p.jwks_uri()).await;
    assert_eq!(kids_of(&raw), vec![keys::KID_1, keys::KID_2]);
    verify_with_openidconnect(&p, fetch_jwks(&p).await, &before, None).unwrap();
    verify_with_openidconnect(&p, fetch_jwks(&p).await, &during, None).unwrap();
    // A relying party with the old JWKS cannot verify the new token (and must re-fetch).
    assert!(verify_with_openidconnect(&p, old_jwks, &during, None).is_err());

    // Rotation dropping the old keys.
    p.rotate_signing_key(false);
    assert_eq!(p.signing_key_id(), keys::KID_3);
    let (_, raw) = get_json(&p.jwks_uri()).await;
    assert_eq!(kids_of(&raw), vec![keys::KID_3]);
    assert!(verify_with_openidconnect(&p, fetch_jwks(&p).await, &before, None).is_err());
    // After the third key comes the first again.
    p.rotate_signing_key(false);
    assert_eq!(p.signing_key_id(), keys::KID_1);

    // The JWKS can fail.
    let count = p.jwks_requests();
    p.set_jwks_available(false);
    let response = http().get(p.jwks_uri()).send().await.unwrap();
    assert_eq!(response.status(), 503);
    p.set_jwks_available(true);
    assert_eq!(http().get(p.jwks_uri()).send().await.unwrap().status(), 200);
    assert_eq!(p.jwks_requests(), count + 2);
}

#[tokio::test]
async fn refresh_id_token_behaviors() {
    let p = oidc_provider(None).await;
    let first = login(&p, "openid email", Some(NONCE)).await;
    let (_, original, _) = parts(&id_token_of(&first));
    let mut refresh_token = first["refresh_token"].as_str().unwrap().to_owned();
    let behaviors = [
        RefreshIdTokenBehavior::Normal,
        RefreshIdTokenBehavior::OtherIss,
        RefreshIdTokenBehavior::OtherSub,
        RefreshIdTokenBehavior::OtherAud,
        RefreshIdTokenBehavior::WithNonce("other-nonce".into()),
        RefreshIdTokenBehavior::OmitIdToken,
    ];
    for behavior in behaviors {
        p.set_refresh_id_token_behavior(behavior.clone());
        let body = refresh(&p, &refresh_token).await;
        refresh_token = body["refresh_token"].as_str().unwrap().to_owned();
        if behavior == RefreshIdTokenBehavior::OmitIdToken {
            assert!(body.get("id_token").is_none());
            continue;
        }
        let token = id_token_of(&body);
        let (header, claims, _) = parts(&token);
        assert_eq!(header["kid"], p.signing_key_id());
        verify_own_jwt(&token).unwrap();
        let same = |name: &str| claims.get(name) == original.get(name);
        assert!(
            same("sid") && same("auth_time") && same("azp"),
            "{behavior:?}"
        );
        match &behavior {
            RefreshIdTokenBehavior::Normal => {
                assert!(same("iss") && same("sub") && same("aud"));
                assert!(claims.get("nonce").is_none());
                let jwks = fetch_jwks(&p).await;
                verify_with_openidconnect(&p, jwks, &token, None).unwrap();
            }
            RefreshIdTokenBehavior::OtherIss => assert_eq!(claims["iss"], WRONG_ISSUER),
            RefreshIdTokenBehavior::OtherSub => assert_eq!(claims["sub"], SOMEONE_ELSE),
            RefreshIdTokenBehavior::OtherAud => assert_eq!(claims["aud"], SOMEONE_ELSE),
            RefreshIdTokenBehavior::WithNonce(nonce) => assert_eq!(claims["nonce"], *nonce),
            RefreshIdTokenBehavior::OmitIdToken => unreachable!(),
        }
    }
    assert_eq!(p.refresh_requests(), 6);
    assert_eq!(p.authorization_code_requests(), 1);

    // Counted on arrival, whatever the outcome or token behaviour.
    p.set_token_behavior(TokenBehavior::ServerError);
    let _ = post_token(
        &p,
        &[("grant_type", "refresh_token"), ("refresh_token", "x")],
        None,
    )
    .await;
    let _ = post_token(&p, &[("grant_type", "authorization_code")], None).await;
    assert_eq!(p.refresh_requests(), 7);
    assert_eq!(p.authorization_code_requests(), 2);
}

#[tokio::test]
async fn userinfo_other_sub() {
    let p = oidc_provider(None).await;
    let body = login(&p, "openid", None).await;
    let access = body["access_token"].as_str().unwrap();
    p.set_userinfo_behavior(UserinfoBehavior::OtherSub);
    let (status, user) = json_of(userinfo_with(&p, "/userinfo", access).await).await;
    assert_eq!(status, 200);
    assert_eq!(user["sub"], SOMEONE_ELSE);
    assert_eq!(user["preferred_username"], "alice");
    assert_eq!(
        userinfo_with(&p, "/userinfo", "bad").await.status(),
        401,
        "the token is still checked"
    );
    p.set_userinfo_behavior(UserinfoBehavior::Normal);
    let (_, user) = json_of(userinfo_with(&p, "/userinfo", access).await).await;
    assert_eq!(user["sub"], "alice");
}

async fn post_revoke(
    p: &DevProvider,
    form: &[(&str, &str)],
    auth: Option<&str>,
) -> reqwest::Response {
    let mut request = http()
        .post(p.revocation_endpoint())
        .header(
            reqwest::header::CONTENT_TYPE,
            "application/x-www-form-urlencoded",
        )
        .body(encode(form));
    if let Some(auth) = auth {
        request = request.header(reqwest::header::AUTHORIZATION, auth);
    }
    request.send().await.unwrap()
}

#[tokio::test]
async fn revocation() {
    let p = oidc_provider(None).await;
    let auth = basic("conf", SECRET);
    let body = login(&p, "openid", None).await;
    let access = body["access_token"].as_str().unwrap();
    let refresh_token = body["refresh_token"].as_str().unwrap();

    // Client authentication is required.
    let response = post_revoke(
        &p,
        &[("token", refresh_token)],
        Some(&basic("conf", "wrong")),
    )
    .await;
    assert_eq!(
        error_of(response).await,
        (reqwest::StatusCode::UNAUTHORIZED, "invalid_client".into())
    );
    assert_eq!(
        post_revoke(&p, &[("token", refresh_token)], None)
            .await
            .status(),
        401
    );
    // Another client cannot revoke it (200, but nothing happens).
    let response = post_revoke(&p, &[("token", refresh_token), ("client_id", "pub")], None).await;
    assert_eq!(response.status(), 200);
    assert_eq!(userinfo_with(&p, "/userinfo", access).await.status(), 200);
    // Missing token.
    let response = post_revoke(&p, &[("token_type_hint", "access_token")], Some(&auth)).await;
    assert_eq!(error_of(response).await.1, "invalid_request");

    // Revoking the refresh token takes its access token along.
    let response = post_revoke(
        &p,
        &[
            ("token", refresh_token),
            ("token_type_hint", "refresh_token"),
        ],
        Some(&auth),
    )
    .await;
    assert_eq!(response.status(), 200);
    assert_eq!(userinfo_with(&p, "/userinfo", access).await.status(), 401);
    let response = post_token(
        &p,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token),
        ],
        Some(&auth),
    )
    .await;
    assert_eq!(error_of(response).await.1, "invalid_grant");

    // An access token alone; the refresh token survives.
    let body = login(&p, "openid", None).await;
    let access = body["access_token"].as_str().unwrap();
    let response = post_revoke(
        &p,
        &[("token", access), ("token_type_hint", "access_token")],
        Some(&auth),
    )
    .await;
    assert_eq!(response.status(), 200);
    assert_eq!(userinfo_with(&p, "/userinfo", access).await.status(), 401);
    refresh(&p, body["refresh_token"].as_str().unwrap()).await;

    // Unknown tokens get 200 too.
    let response = post_revoke(&p, &[("token", "unknown")], Some(&auth)).await;
    assert_eq!(response.status(), 200);

    assert_eq!(p.revocation_requests(), 7);
    assert_eq!(
        p.revoked_tokens(),
        vec![
            refresh_token.to_owned(),
            refresh_token.to_owned(),
            access.to_owned(),
            "unknown".to_owned()
        ]
    );
}

async fn end_session(p: &DevProvider, params: &[(&str, &str)]) -> reqwest::Response {
    http()
        .get(format!("{}?{}", p.end_session_endpoint(), encode(params)))
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn rp_initiated_logout() {
    let p = oidc_provider(None).await;
    let id_token = id_token_of(&login(&p, "openid", None).await);
    let sid = parts(&id_token).1["sid"].as_str().unwrap().to_owned();
    assert!(p.is_session_active(&sid));

    // A registered post_logout_redirect_uri with state: 303 there, with state.
    let response = end_session(
        &p,
        &[
            ("id_token_hint", &id_token),
            ("post_logout_redirect_uri", LOGGED_OUT),
            ("state", "af0i&fj"),
        ],
    )
    .await;
    let target = location(&response);
    assert!(target.starts_with(LOGGED_OUT), "{target}");
    let query = query_of(&target);
    assert_eq!(query["state"], "af0i&fj");
    assert_eq!(query["from"], "op");
    assert!(!p.is_session_active(&sid));
    assert_eq!(p.end_session_requests(), 1);
    let recorded = p.last_end_session_params().unwrap();
    assert!(recorded.contains(&("state".to_owned(), "af0i&fj".to_owned())));

    // Without state, by client_id alone, as a POST form: 303 without state.
    let response = http()
        .post(p.end_session_endpoint())
        .header(
            reqwest::header::CONTENT_TYPE,
            "application/x-www-form-urlencoded",
        )
        .body(encode(&[
            ("client_id", "conf"),
            ("post_logout_redirect_uri", LOGGED_OUT),
        ]))
        .send()
        .await
        .unwrap();
    assert_eq!(location(&response), LOGGED_OUT);

    // An unregistered post_logout_redirect_uri is refused: a page, no redirect.
    let id_token = id_token_of(&login(&p, "openid", None).await);
    let sid = parts(&id_token).1["sid"].as_str().unwrap().to_owned();
    for uri in ["http://evil.example/", "http://127.0.0.1:9/logged-out"] {
        let response = end_session(
            &p,
            &[
                ("id_token_hint", &id_token),
                ("post_logout_redirect_uri", uri),
                ("state", "s"),
            ],
        )
        .await;
        assert_eq!(response.status(), 200);
        assert!(response.headers().get(reqwest::header::LOCATION).is_none());
        let page = response.text().await.unwrap();
        assert!(page.contains("You are signed out"));
        assert!(page.contains("not registered"));
    }
    assert!(!p.is_session_active(&sid));
    // The public client has no post-logout redirect URI registered.
    let response = end_session(
        &p,
        &[
            ("client_id", "pub"),
            ("post_logout_redirect_uri", LOGGED_OUT),
        ],
    )
    .await;
    assert_eq!(response.status(), 200);
    assert!(response.headers().get(reqwest::header::LOCATION).is_none());
    // No parameters at all: the page.
    let response = end_session(&p, &[]).await;
    assert_eq!(response.status(), 200);
    assert!(response
        .text()
        .await
        .unwrap()
        .contains("You are signed out"));

    // An expired ID token is a fine hint.
    p.set_id_token_behavior(IdTokenBehavior::Expired);
    let expired = id_token_of(&login(&p, "openid", None).await);
    let response = end_session(
        &p,
        &[
            ("id_token_hint", &expired),
            ("post_logout_redirect_uri", LOGGED_OUT),
        ],
    )
    .await;
    assert_eq!(location(&response), LOGGED_OUT);

    // Hints this provider did not issue, or for another client, are rejected.
    p.set_id_token_behavior(IdTokenBehavior::Normal);
    let good = id_token_of(&login(&p, "openid", None).await);
    let mut bad_hints = vec!["not-a-jwt".to_owned()];
    for behavior in [
        IdTokenBehavior::AlgNone,
        IdTokenBehavior::BadRs256Signature,
        IdTokenBehavior::UnknownKid,
        IdTokenBehavior::WrongIss,
        IdTokenBehavior::Hs256,
    ] {
        p.set_id_token_behavior(behavior);
        bad_hints.push(id_token_of(&login(&p, "openid", None).await));
    }
    for hint in &bad_hints {
        let response = end_session(
            &p,
            &[
                ("id_token_hint", hint),
                ("post_logout_redirect_uri", LOGGED_OUT),
            ],
        )
        .await;
        assert_eq!(response.status(), 400, "{hint}");
        assert!(response.headers().get(reqwest::header::LOCATION).is_none());
    }
    let response = end_session(&p, &[("id_token_hint", &good), ("client_id", "pub")]).await;
    assert_eq!(response.status(), 400);
    let sid = parts(&good).1["sid"].as_str().unwrap().to_owned();
    assert!(
        p.is_session_active(&sid),
        "rejected requests end no session"
    );
}

/// A relying party's back-channel logout endpoint: records `(content type, body)` and
/// answers `status`.
async fn backchannel_receiver(status: StatusCode) -> (String, Arc<Mutex<Vec<(String, String)>>>) {
    type Seen = Arc<Mutex<Vec<(String, String)>>>;
    let seen: Seen = Arc::default();
    let app = Router::new()
        .route(
            "/backchannel-logout",
            post(
                move |State(seen): State<Seen>, headers: HeaderMap, body: Bytes| async move {
                    let content_type = headers
                        .get(header::CONTENT_TYPE)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or_default()
                        .to_owned();
                    seen.lock()
                        .unwrap()
                        .push((content_type, String::from_utf8_lossy(&body).into_owned()));
                    status
                },
            ),
        )
        .with_state(Arc::clone(&seen));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}/backchannel-logout"), seen)
}

/// The logout token of the last back-channel request.
fn last_logout_token(seen: &Mutex<Vec<(String, String)>>) -> String {
    let seen = seen.lock().unwrap();
    let (content_type, body) = seen.last().expect("a back-channel request");
    assert_eq!(content_type, "application/x-www-form-urlencoded");
    let params = parse_params(body.as_bytes());
    assert_eq!(params.len(), 1);
    get_param(&params, "logout_token").unwrap().to_owned()
}

#[tokio::test]
async fn backchannel_logout() {
    let (uri, seen) = backchannel_receiver(StatusCode::OK).await;
    let p = oidc_provider(Some(&uri)).await;
    login(&p, "openid", None).await;
    let sid = p.sessions_of("alice").pop().unwrap();
    assert!(p.is_session_active(&sid));

    let status = p
        .backchannel_logout("conf", Some("alice"), Some(&sid))
        .await
        .unwrap();
    assert_eq!(status, 200);
    assert!(!p.is_session_active(&sid));
    let token = last_logout_token(&seen);
    let (header, claims, _) = parts(&token);
    assert_eq!(header["alg"], "RS256");
    assert_eq!(header["kid"], p.signing_key_id());
    assert_eq!(header["typ"], "logout+jwt");
    assert_eq!(verify_own_jwt(&token).unwrap(), claims);
    assert_eq!(claims["iss"], p.issuer());
    assert_eq!(claims["aud"], "conf");
    assert_eq!(claims["sub"], "alice");
    assert_eq!(claims["sid"], sid.as_str());
    let iat = claims["iat"].as_u64().unwrap();
    assert!(iat.abs_diff(unix_now()) <= 5);
    assert_eq!(claims["exp"].as_u64().unwrap(), iat + 120);
    assert!(claims["jti"].as_str().unwrap().len() >= 22);
    assert_eq!(claims["events"], json!({ BACKCHANNEL_LOGOUT_EVENT: {} }));
    assert!(claims.get("nonce").is_none());
    assert_eq!(claims.len(), 8);

    // sid alone, sub alone; fresh jti each time.
    p.backchannel_logout("conf", None, Some(&sid))
        .await
        .unwrap();
    let (_, claims2, _) = parts(&last_logout_token(&seen));
    assert!(claims2.get("sub").is_none());
    assert_ne!(claims2["jti"], claims["jti"]);
    p.backchannel_logout("conf", Some("alice"), None)
        .await
        .unwrap();
    let (_, claims3, _) = parts(&last_logout_token(&seen));
    assert!(claims3.get("sid").is_none());
    assert_eq!(claims3["sub"], "alice");

    // Errors.
    assert!(p.backchannel_logout("conf", None, None).await.is_err());
    assert!(p
        .backchannel_logout("pub", Some("alice"), None)
        .await
        .is_err());
    assert!(p
        .backchannel_logout("nobody", Some("alice"), None)
        .await
        .is_err());
    assert!(p
        .mint_logout_token("nobody", Some("a"), None, LogoutTokenMisbehavior::Normal)
        .is_err());
    assert_eq!(seen.lock().unwrap().len(), 3);

    // The receiver's status is reported.
    let (failing, _) = backchannel_receiver(StatusCode::NOT_IMPLEMENTED).await;
    let p2 = oidc_provider(Some(&failing)).await;
    assert_eq!(
        p2.backchannel_logout("conf", Some("alice"), None)
            .await
            .unwrap(),
        501
    );
    // An unreachable receiver is an error.
    let p3 = oidc_provider(Some("http://127.0.0.1:9/backchannel-logout")).await;
    assert!(p3
        .backchannel_logout("conf", Some("alice"), None)
        .await
        .is_err());
}

#[tokio::test]
async fn backchannel_logout_misbehaviors() {
    let (uri, seen) = backchannel_receiver(StatusCode::BAD_REQUEST).await;
    let p = oidc_provider(Some(&uri)).await;
    login(&p, "openid", None).await;
    let sid = p.sessions_of("alice").pop().unwrap();
    let now = unix_now();
    let misbehaviors = [
        LogoutTokenMisbehavior::AlgNone,
        LogoutTokenMisbehavior::NoEvents,
        LogoutTokenMisbehavior::WrongEvent,
        LogoutTokenMisbehavior::WithNonce,
        LogoutTokenMisbehavior::WrongAud,
        LogoutTokenMisbehavior::WrongIss,
        LogoutTokenMisbehavior::Hs256,
        LogoutTokenMisbehavior::NoSubNoSid,
        LogoutTokenMisbehavior::Expired,
        LogoutTokenMisbehavior::BadSignature,
    ];
    for misbehavior in misbehaviors {
        let status = p
            .backchannel_logout_with("conf", Some("alice"), Some(&sid), misbehavior)
            .await
            .unwrap();
        assert_eq!(status, 400);
        let token = last_logout_token(&seen);
        let (header, claims, signature) = parts(&token);
        let rs256_valid = verify_own_jwt(&token).is_ok();
        match misbehavior {
            LogoutTokenMisbehavior::AlgNone => {
                assert_eq!(header["alg"], "none");
                assert!(signature.is_empty());
            }
            LogoutTokenMisbehavior::NoEvents => {
                assert!(claims.get("events").is_none());
                assert!(rs256_valid);
            }
            LogoutTokenMisbehavior::WrongEvent => {
                assert_eq!(claims["events"], json!({ OTHER_EVENT: {} }));
                assert!(rs256_valid);
            }
            LogoutTokenMisbehavior::WithNonce => {
                assert!(claims["nonce"].is_string());
                assert!(rs256_valid);
            }
            LogoutTokenMisbehavior::WrongAud => {
                assert_eq!(claims["aud"], SOMEONE_ELSE);
                assert!(rs256_valid);
            }
            LogoutTokenMisbehavior::WrongIss => {
                assert_eq!(claims["iss"], WRONG_ISSUER);
                assert!(rs256_valid);
            }
            LogoutTokenMisbehavior::Hs256 => {
                assert_eq!(header["alg"], "HS256");
                let (signing_input, _) = token.rsplit_once('.').unwrap();
                let mac = CoreHmacKey::new(SECRET)
                    .sign(
                        &CoreJwsSigningAlgorithm::HmacSha256,
                        signing_input.as_bytes(),
                    )
                    .unwrap();
                assert_eq!(signature, mac);
            }
            LogoutTokenMisbehavior::NoSubNoSid => {
                assert!(claims.get("sub").is_none() && claims.get("sid").is_none());
                assert!(rs256_valid);
            }
            LogoutTokenMisbehavior::Expired => {
                let exp = claims["exp"].as_u64().unwrap();
                assert!(exp + 595 <= now + 5 && exp + 605 >= now, "{exp} {now}");
                assert!(claims["iat"].as_u64().unwrap() < exp);
                assert!(rs256_valid);
            }
            LogoutTokenMisbehavior::BadSignature => {
                assert_eq!(header["alg"], "RS256");
                assert_eq!(header["kid"], p.signing_key_id());
                assert!(!rs256_valid);
            }
            LogoutTokenMisbehavior::Normal => unreachable!(),
        }
        // Everything else is as normal.
        if misbehavior != LogoutTokenMisbehavior::NoEvents
            && misbehavior != LogoutTokenMisbehavior::WrongEvent
        {
            assert_eq!(claims["events"], json!({ BACKCHANNEL_LOGOUT_EVENT: {} }));
        }
        if misbehavior != LogoutTokenMisbehavior::NoSubNoSid {
            assert_eq!(claims["sid"], sid.as_str());
        }
        if misbehavior != LogoutTokenMisbehavior::WithNonce {
            assert!(claims.get("nonce").is_none());
        }
    }
    assert!(
        p.is_session_active(&sid),
        "only correct tokens end sessions"
    );

    // Minting without sending.
    let token = p
        .mint_logout_token("conf", None, Some(&sid), LogoutTokenMisbehavior::Normal)
        .unwrap();
    assert_eq!(verify_own_jwt(&token).unwrap()["sid"], sid.as_str());
    assert!(p
        .mint_logout_token("conf", None, None, LogoutTokenMisbehavior::Normal)
        .is_err());
    let token = p
        .mint_logout_token("conf", None, None, LogoutTokenMisbehavior::NoSubNoSid)
        .unwrap();
    assert!(parts(&token).1.get("sub").is_none());
    assert_eq!(seen.lock().unwrap().len(), misbehaviors.len());
}

#[test]
fn embedded_keys_parse_and_differ() {
    let ring = keys::key_ring().unwrap();
    let moduli: HashSet<String> = ring
        .rotation_keys()
        .iter()
        .map(|key| key.jwk()["n"].to_string())
        .collect();
    assert_eq!(moduli.len(), keys::ROTATION_KEY_COUNT);
    assert!(decode_jwt("a.b").is_none());
    assert!(decode_jwt("e30.e30.!!").is_none());
    assert!(verify_own_jwt("e30.e30.").is_err());
}
