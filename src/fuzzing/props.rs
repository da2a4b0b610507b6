//! Property tests (`proptest`) for every parser and check that sees attacker-controlled
//! bytes. Each property calls the same entry point as the matching fuzz target, which
//! panics when the invariant breaks, or states its invariant here against a model.

use proptest::prelude::*;
use serde_json::{json, Map, Value};

use super::*;
use crate::http::cookie::CookieConfig;

fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        // Failures are reported with their minimal input; nothing is written to disk.
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

// ---------------------------------------------------------------------------------------
// Generators
// ---------------------------------------------------------------------------------------

/// Pieces of open-redirect payloads, from the usual lists: scheme-relative, backslashes,
/// tabs and newlines, percent- and double-encoding, userinfo tricks, unicode look-alikes.
const REDIRECT_PIECES: &[&str] = &[
    "/",
    "//",
    "///",
    "\\",
    "/\\",
    "\\/",
    "%2f",
    "%2F",
    "%5c",
    "%5C",
    "%252f",
    "%252F",
    "%255c",
    "%25252f",
    "%25",
    "%",
    "\t",
    "\n",
    "\r",
    " ",
    "%09",
    "%0a",
    "%0D",
    "%20",
    "%00",
    "\u{0}",
    "\u{7f}",
    "\u{b}",
    "\u{c}",
    "@",
    "%40",
    "user:pass@",
    "evil.example",
    "evil.example:443",
    "https:",
    "http:",
    "HTTPS:",
    "javascript:",
    "data:",
    ":",
    ".",
    "..",
    "%2e",
    "%2E%2E",
    "?",
    "#",
    "&",
    "=",
    "+",
    "a",
    "page",
    "\u{3000}",
    "%E3%80%80",
    "\u{FEFF}",
    "%EF%BB%BF",
    "\u{FF0F}",
    "\u{FF3C}",
    "%EF%BC%8F",
    "\u{2215}",
    "\u{2044}",
    "\u{200B}",
    "\u{202E}",
    "\u{85}",
    "\u{A0}",
    "%C0%AF",
    "%C1%9C",
    "é",
    "%C3%A9",
];

fn redirect_payload() -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(REDIRECT_PIECES), 1..8)
        .prop_map(|pieces| pieces.concat())
}

fn param_name() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(&["code", "state", "error", "error_description", "iss"][..])
            .prop_map(str::to_string),
        "[a-z_]{0,6}",
    ]
}

fn param_value() -> impl Strategy<Value = String> {
    prop_oneof![
        "[A-Za-z0-9_.~-]{0,64}",
        any::<String>(),
        (0usize..3).prop_map(|k| "x".repeat(4094 + k)),
    ]
}

/// Queries as a provider or an attacker would write them: known and unknown parameters,
/// repeated or not, encoded or raw.
fn callback_query() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::collection::vec((param_name(), param_value(), any::<bool>()), 0..8).prop_map(
            |pairs| {
                pairs
                    .into_iter()
                    .map(|(n, v, encode)| {
                        if encode {
                            url::form_urlencoded::Serializer::new(String::new())
                                .append_pair(&n, &v)
                                .finish()
                        } else {
                            format!("{n}={v}")
                        }
                    })
                    .collect::<Vec<_>>()
                    .join("&")
            }
        ),
        any::<String>(),
        "[a-z=&%0-9;+]{0,80}",
    ]
}

/// JSON values of any shape, a few levels deep.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        ".{0,20}".prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::from),
            prop::collection::btree_map("[a-z_]{0,8}", inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A JSON object with the given fields, each one of its interesting values or absent.
fn object(fields: Vec<(&'static str, Option<Value>)>, extra: Map<String, Value>) -> Value {
    let mut map = extra;
    for (name, value) in fields {
        match value {
            Some(v) => {
                map.insert(name.to_string(), v);
            }
            None => {
                map.remove(name);
            }
        }
    }
    Value::Object(map)
}

fn extra_fields() -> impl Strategy<Value = Map<String, Value>> {
    prop::collection::btree_map("[a-z_]{1,10}", json_value(), 0..4)
        .prop_map(|m| m.into_iter().collect())
}

fn one_of(values: Vec<Option<Value>>) -> impl Strategy<Value = Option<Value>> {
    prop::sample::select(values)
}

// ---------------------------------------------------------------------------------------
// The callback query and the callback request
// ---------------------------------------------------------------------------------------

proptest! {
    #![proptest_config(config(1000))]

    #[test]
    fn callback_query_is_parsed_exactly_or_refused(query in callback_query()) {
        super::callback_query(&query);
    }
}

proptest! {
    #![proptest_config(config(512))]

    /// Any query with any cookies: a 4xx page, no session, no network.
    #[test]
    fn callback_request_without_a_sealed_login_is_refused(
        query in callback_query(),
        cookies in prop::collection::vec(
            (prop_oneof![
                Just(inner().cookies.session_name.clone()),
                "[A-Za-z0-9_-]{11}".prop_map(|h| format!("{}{h}", inner().cookies.pending_prefix)),
                "[ -~]{0,4}".prop_map(|h| format!("{}{h}", inner().cookies.pending_prefix)),
                "oauth2_pending_[A-Za-z0-9_-]{11}",
                "[a-z]{1,6}",
            ],
            prop_oneof!["[A-Za-z0-9+/=_-]{0,400}", ".{0,40}"]),
            0..8,
        ),
    ) {
        let header = cookies
            .iter()
            .map(|(n, v)| format!("{n}={v}"))
            .collect::<Vec<_>>()
            .join("; ");
        callback_request(&query, header.as_bytes());
    }

    /// A state of this browser with a pending cookie of another browser (or of another
    /// state of this one) under its name, or with no cookie: refused.
    #[test]
    fn pending_cookies_swapped_between_users_are_refused(
        state_a in "[A-Za-z0-9_-]{43}",
        state_b in "[A-Za-z0-9_-]{43}",
    ) {
        prop_assume!(state_a != state_b);
        let (name_a, value_a) = seal_pending(&state_a, "/a", now_secs());
        let (name_b, value_b) = seal_pending(&state_b, "/b", now_secs());
        // Each opens for its own state.
        prop_assert_eq!(open_pending(&format!("{name_a}={value_a}"), &state_a), Some("/a".into()));
        // B's sealed value renamed to A's cookie: the seal is bound to the name.
        prop_assert_eq!(open_pending(&format!("{name_a}={value_b}"), &state_a), None);
        // B's cookie with A's state: no cookie of A's name.
        prop_assert_eq!(open_pending(&format!("{name_b}={value_b}"), &state_a), None);
        // A's cookie for B's state.
        prop_assert_eq!(open_pending(&format!("{name_a}={value_a}"), &state_b), None);
        // The callback of A with B's cookie renamed: refused as a whole request too.
        let query = format!("code=c&state={state_a}&iss={}", url::form_urlencoded::byte_serialize(ISSUER.as_bytes()).collect::<String>());
        callback_request(&query, format!("{name_a}={value_b}; {name_b}={value_b}").as_bytes());
    }

    /// A sealed pending cookie, tampered (a character changed), truncated, extended, or
    /// sealed with another key: refused.
    #[test]
    fn tampered_pending_cookies_are_refused(
        state in "[A-Za-z0-9_-]{43}",
        return_to in "/([a-z]{1,10}(/[a-z]{1,8}){0,3})?",
        position in any::<prop::sample::Index>(),
        replacement in prop::sample::select(
            &['A', 'B', 'a', 'z', '0', '9', '+', '/', '=', '-', '_', '%', '.'][..]),
        cut in any::<prop::sample::Index>(),
        suffix in "[A-Za-z0-9+/=]{1,8}",
    ) {
        let (name, value) = seal_pending(&state, &return_to, now_secs());
        prop_assert_eq!(open_pending(&format!("{name}={value}"), &state), Some(return_to.clone()));
        let mut chars: Vec<char> = value.chars().collect();
        let i = position.index(chars.len());
        if chars[i] != replacement {
            chars[i] = replacement;
            let changed: String = chars.into_iter().collect();
            prop_assert_eq!(open_pending(&format!("{name}={changed}"), &state), None);
        }
        let truncated = &value[..cut.index(value.len())];
        prop_assert_eq!(open_pending(&format!("{name}={truncated}"), &state), None);
        prop_assert_eq!(open_pending(&format!("{name}={value}{suffix}"), &state), None);
        // Another key: same name, same content, other seal.
        let other = CookieConfig::new(
            true,
            "/auth/callback",
            "/auth/logout-callback",
            tower_cookies::Key::from(&[43u8; 64]),
            Duration::from_secs(600),
            Duration::from_secs(3600),
        );
        let json = serde_json::to_string(&PendingLogin {
            state: state.clone(),
            verifier: "v".repeat(43),
            return_to: "/elsewhere".into(),
            created_at: now_secs(),
            nonce: None,
        }).unwrap();
        let foreign = other.pending_cookie(&state, json);
        let pair = foreign.to_str().unwrap().split(';').next().unwrap().to_string();
        let prefix = format!("{name}=");
        prop_assert!(pair.starts_with(&prefix));
        prop_assert_eq!(open_pending(&pair, &state), None);
    }

    /// Expired pending logins are refused, fresh ones accepted (also through arbitrary
    /// plaintexts, as if the key had sealed them).
    #[test]
    fn pending_logins_are_accepted_only_while_fresh(
        state in "[A-Za-z0-9_-]{1,60}",
        age in 0u64..2000,
    ) {
        let (name, value) = seal_pending(&state, "/x", now_secs().saturating_sub(age));
        let opened = open_pending(&format!("{name}={value}"), &state);
        // The layer's lifetime is 10 minutes; a second of slack for the clock tick.
        if age <= 599 {
            prop_assert_eq!(opened, Some("/x".into()));
        } else if age >= 602 {
            prop_assert_eq!(opened, None);
        }
    }

    #[test]
    fn forged_pending_cookie_values_never_open(
        state in ".{0,50}",
        value in prop_oneof![any::<Vec<u8>>(), "[A-Za-z0-9+/=]{0,300}".prop_map(String::into_bytes)],
    ) {
        forged_pending(&state, &value);
    }

    #[test]
    fn any_pending_plaintext_is_checked_after_the_seal(json in prop_oneof![
        (".{0,50}", ".{0,30}", any::<u64>(), proptest::option::of(".{0,10}")).prop_map(
            |(s, r, t, n)| serde_json::to_vec(&json!({"s": s, "v": "v", "r": r, "t": t, "n": n})).unwrap()),
        json_value().prop_map(|v| serde_json::to_vec(&v).unwrap()),
    ]) {
        pending_json(&json);
    }
}

// ---------------------------------------------------------------------------------------
// return_to
// ---------------------------------------------------------------------------------------

proptest! {
    #![proptest_config(config(1000))]

    #[test]
    fn accepted_return_paths_stay_on_the_origin(path in prop_oneof![
        redirect_payload(),
        redirect_payload().prop_map(|p| format!("/{p}")),
        any::<String>(),
        "/[ -~]{0,40}",
    ]) {
        return_to(&path);
    }
}

#[test]
fn open_redirect_corpus_is_refused() {
    for bad in [
        "//evil.example",
        "//evil.example/%2f..",
        "/\\evil.example",
        "\\\\evil.example",
        "\\/evil.example",
        "/\t/evil.example",
        "/\n/evil.example",
        "/\r\n/evil.example",
        "\t//evil.example",
        " //evil.example",
        "/%09/evil.example",
        "/%2f/evil.example",
        "/%2F%2Fevil.example",
        "%2f%2fevil.example",
        "/%5cevil.example",
        "/%5C%5Cevil.example",
        "/%252f%252fevil.example",
        "/%25252F%25252Fevil.example",
        "/%2525252F%2525252Fevil.example",
        "https://evil.example",
        "https:evil.example",
        "https:/evil.example",
        "HTTPS://evil.example",
        "javascript:alert(1)",
        "jAvAsCrIpT:alert(1)",
        "data:text/html,x",
        "//user:pass@evil.example",
        "/\\user@evil.example",
        "@evil.example",
        "evil.example",
        ".evil.example",
        "/\u{3000}/evil.example",
        "/\u{FEFF}/evil.example",
        "/%E3%80%80/evil.example",
        "\u{FF0F}\u{FF0F}evil.example",
        "/\u{0}/evil.example",
        "/%00/evil.example",
        "/\u{85}/evil.example",
        "/\u{A0}/evil.example",
        "/%C0%AF/evil.example",
        "/.//evil.example",
        "/..//evil.example",
        "/%2e%2e//evil.example",
        "/%2E./%2e//evil.example",
        "/a/../..//evil.example",
        "/%2e%2e%2f%2fevil.example",
        "/..;//evil.example",
        "",
    ] {
        assert_eq!(safe_return_to(bad), None, "{bad:?}");
        return_to(bad);
    }
    for (good, resolved) in [
        ("/", "/"),
        ("/protected?x=1", "/protected?x=1"),
        ("/a/b/../c", "/a/c"),
        ("/a/%2E%2e/c", "/c"),
        ("/caf%C3%A9", "/caf%C3%A9"),
        ("/café", "/caf%C3%A9"),
        ("/search?q=a+b&r=%2F", "/search?q=a+b&r=%2F"),
        ("/x#y", "/x#y"),
        ("/@user", "/@user"),
        ("/a:b", "/a:b"),
    ] {
        assert_eq!(safe_return_to(good).as_deref(), Some(resolved), "{good:?}");
        return_to(good);
    }
}

#[test]
fn the_browser_model_reads_paths_like_a_browser() {
    assert!(browser_keeps_on_origin("/a"));
    assert!(browser_keeps_on_origin("/"));
    for leaving in [
        "//x",
        "/\\x",
        "\\\\x",
        " //x",
        "/\t/x",
        "\u{1}//x",
        "https://x",
        "x",
    ] {
        assert!(!browser_keeps_on_origin(leaving), "{leaving:?}");
    }
}

// ---------------------------------------------------------------------------------------
// The session cookie
// ---------------------------------------------------------------------------------------

proptest! {
    #![proptest_config(config(1000))]

    #[test]
    fn any_cookie_header_is_read_safely(header in prop_oneof![
        any::<Vec<u8>>(),
        prop::collection::vec(
            (prop_oneof![
                Just(inner().cookies.session_name.clone()),
                Just(inner().cookies.index_name.clone()),
                "[a-z_ ]{0,16}",
             ],
             prop_oneof![
                "[A-Za-z0-9_-]{43}",
                "[ -~]{0,60}",
                "\"[A-Za-z0-9_-]{43}\"",
                "([A-Za-z0-9_-]{9,12}\\.[0-9]{0,21}\\|?){0,14}",
             ]),
            0..6,
        ).prop_map(|pairs| pairs.iter().map(|(n, v)| format!("{n}={v}"))
            .collect::<Vec<_>>().join(";").into_bytes()),
    ]) {
        session_cookie(&header);
    }

    /// A real session id is found among any other cookies; the same id with a character
    /// changed, cut or extended is not a session id or is another one.
    #[test]
    fn session_ids_are_found_and_tampering_changes_the_key(
        before in prop::collection::vec(("[a-z]{1,8}", "[ -:<-~]{0,20}"), 0..4),
        after in prop::collection::vec(("[a-z]{1,8}", "[ -:<-~]{0,20}"), 0..4),
        position in any::<prop::sample::Index>(),
        replacement in "[A-Za-z0-9_=;. -]",
    ) {
        let id = SessionId::generate();
        let mut pairs: Vec<String> = before.iter().map(|(n, v)| format!("{n}={v}")).collect();
        pairs.push(format!("oauth2_session={}", id.as_str()));
        pairs.extend(after.iter().map(|(n, v)| format!("{n}={v}")));
        let mut headers = HeaderMap::new();
        headers.insert(header::COOKIE, HeaderValue::from_str(&pairs.join("; ")).unwrap());
        let found: Vec<&str> = cookie::find(&headers, "oauth2_session").collect();
        prop_assert_eq!(found, vec![id.as_str()]);

        let mut chars: Vec<char> = id.as_str().chars().collect();
        let i = position.index(chars.len());
        let r = replacement.chars().next().unwrap();
        if chars[i] != r {
            chars[i] = r;
            let tampered: String = chars.into_iter().collect();
            if let Some(other) = SessionId::parse(&tampered) {
                prop_assert!(other.key() != id.key());
            }
        }
        prop_assert!(SessionId::parse(&id.as_str()[1..]).is_none());
        let longer = format!("{}A", id.as_str());
        prop_assert!(SessionId::parse(&longer).is_none());
    }
}

// ---------------------------------------------------------------------------------------
// Provider JSON: token, userinfo, discovery, JWKS
// ---------------------------------------------------------------------------------------

fn token_body() -> impl Strategy<Value = Vec<u8>> {
    let fields = (
        one_of(vec![
            Some(json!("an-access-token")),
            Some(json!("")),
            Some(json!(5)),
            Some(Value::Null),
            Some(json!(["a"])),
            None,
        ]),
        one_of(vec![
            Some(json!("Bearer")),
            Some(json!("bearer")),
            Some(json!("BEARER")),
            Some(json!("bEaReR")),
            Some(json!("MAC")),
            Some(json!("DPoP")),
            Some(json!("")),
            Some(json!(1)),
            None,
        ]),
        one_of(vec![
            Some(json!(3600)),
            Some(json!(0)),
            Some(json!(-1)),
            Some(json!(u64::MAX)),
            Some(json!(1e300)),
            Some(json!(1.5)),
            Some(json!("3600")),
            Some(Value::Null),
            None,
        ]),
        one_of(vec![
            Some(json!("a-refresh-token")),
            Some(json!("")),
            Some(json!(7)),
            None,
        ]),
        one_of(vec![
            Some(json!("openid profile")),
            Some(json!("")),
            Some(json!(["openid"])),
            Some(json!("  a  b ")),
            None,
        ]),
        one_of(vec![Some(json!("x.y.z")), Some(json!(1)), None]),
        extra_fields(),
    );
    prop_oneof![
        4 => fields.prop_map(|(at, tt, exp, rt, scope, idt, extra)| {
            serde_json::to_vec(&object(
                vec![
                    ("access_token", at),
                    ("token_type", tt),
                    ("expires_in", exp),
                    ("refresh_token", rt),
                    ("scope", scope),
                    ("id_token", idt),
                ],
                extra,
            ))
            .unwrap()
        }),
        1 => json_value().prop_map(|v| serde_json::to_vec(&v).unwrap()),
        1 => any::<Vec<u8>>(),
    ]
}

proptest! {
    #![proptest_config(config(1000))]

    #[test]
    fn token_responses_are_accepted_only_when_usable(
        status in prop::sample::select(&[200u16, 201, 204, 302, 400, 401, 404, 429, 500, 503][..]),
        body in token_body(),
    ) {
        token_response(status, &body);
    }

    #[test]
    fn userinfo_answers_name_a_user_or_are_refused(body in prop_oneof![
        3 => (
            one_of(vec![
                Some(json!("alice")), Some(json!("")), Some(json!("x".repeat(255))),
                Some(json!("x".repeat(256))), Some(json!(42)), Some(json!(-7)),
                Some(json!(u64::MAX)), Some(json!(1.5)), Some(json!(true)), Some(Value::Null),
                Some(json!(["alice"])), Some(json!({"id": 1})), None,
            ]),
            one_of(vec![Some(json!(583231)), Some(json!("octocat")), Some(json!(0.5)), None]),
            extra_fields(),
        ).prop_map(|(sub, id, extra)| serde_json::to_vec(
            &object(vec![("sub", sub), ("id", id)], extra)).unwrap()),
        1 => json_value().prop_map(|v| serde_json::to_vec(&v).unwrap()),
        1 => any::<Vec<u8>>(),
    ]) {
        userinfo(&body);
    }
}

fn endpoint() -> impl Strategy<Value = Option<Value>> {
    one_of(vec![
        Some(json!("https://issuer.example/endpoint")),
        Some(json!("http://issuer.example/endpoint")),
        Some(json!("http://127.0.0.1:8080/endpoint")),
        Some(json!("http://localhost/endpoint")),
        Some(json!("https://u:p@issuer.example/x")),
        Some(json!("javascript:alert(1)")),
        Some(json!("/relative")),
        Some(json!("")),
        Some(json!("https://issuer.example/x#frag")),
        Some(json!(12)),
        None,
    ])
}

proptest! {
    #![proptest_config(config(300))]

    #[test]
    fn discovery_documents_configure_a_safe_layer_or_are_refused(
        issuer in one_of(vec![
            Some(json!(ISSUER)), Some(json!(format!("{ISSUER}/"))), Some(json!("https://evil.example")),
            Some(json!("HTTPS://ISSUER.EXAMPLE")), Some(json!(1)), None,
        ]),
        authorization in endpoint(),
        token in endpoint(),
        userinfo in endpoint(),
        jwks_uri in endpoint(),
        response_types in one_of(vec![
            Some(json!(["code"])), Some(json!(["code id_token"])), Some(json!(["token"])),
            Some(json!([])), Some(json!("code")), None,
        ]),
        extra in extra_fields(),
        jwks in prop_oneof![
            Just(json!({"keys": []})),
            Just(json!({"keys": [dev_jwk(0)]})),
            json_value(),
        ],
    ) {
        let document = object(
            vec![
                ("issuer", issuer),
                ("authorization_endpoint", authorization),
                ("token_endpoint", token),
                ("userinfo_endpoint", userinfo),
                ("jwks_uri", jwks_uri),
                ("response_types_supported", response_types),
                ("subject_types_supported", Some(json!(["public"]))),
                ("id_token_signing_alg_values_supported", Some(json!(["RS256"]))),
            ],
            extra,
        );
        discovery(
            &serde_json::to_vec(&document).unwrap(),
            &serde_json::to_vec(&jwks).unwrap(),
        );
    }

    #[test]
    fn a_jwks_verifies_a_token_only_with_its_key(keys in prop::collection::vec(
        prop_oneof![
            Just(dev_jwk(0)),
            Just(dev_jwk(1)),
            Just(dev_jwk(2)),
            // The right key's modulus under another kid, or no kid.
            Just({ let mut k = dev_jwk(0); k["kid"] = json!("other"); k }),
            Just({ let mut k = dev_jwk(0); k.as_object_mut().unwrap().remove("kid"); k }),
            // A changed modulus or exponent under the right kid.
            Just({ let mut k = dev_jwk(0); k["n"] = dev_jwk(1)["n"].clone(); k }),
            Just({ let mut k = dev_jwk(0); k["e"] = json!("AQAA"); k }),
            Just({ let mut k = dev_jwk(0); k["e"] = json!("Aw"); k }),
            Just({ let mut k = dev_jwk(0); k["n"] = json!("AA"); k }),
            Just({ let mut k = dev_jwk(0); k["n"] = json!(""); k }),
            Just({ let mut k = dev_jwk(0); k["alg"] = json!("HS256"); k }),
            Just({ let mut k = dev_jwk(0); k["use"] = json!("enc"); k }),
            Just(json!({"kty": "oct", "kid": "dev-rsa-1", "k": "c2VjcmV0"})),
            Just(json!({"kty": "EC", "kid": "dev-rsa-1", "crv": "P-256", "x": "AA", "y": "AA"})),
            Just(json!({"kty": "OKP", "kid": "dev-rsa-1", "crv": "Ed25519", "x": "AA"})),
            json_value(),
        ],
        0..4,
    )) {
        let set = serde_json::to_vec(&json!({ "keys": keys })).unwrap();
        super::jwks(&set);
    }
}

// ---------------------------------------------------------------------------------------
// ID tokens and logout tokens
// ---------------------------------------------------------------------------------------

/// One way an ID token claim can be, and whether a relying party may accept it.
#[derive(Clone, Debug)]
struct Claim {
    value: Option<Value>,
    ok: bool,
}

fn claim(options: Vec<(Option<Value>, bool)>) -> impl Strategy<Value = Claim> {
    prop::sample::select(options).prop_map(|(value, ok)| Claim { value, ok })
}

fn id_token_case() -> impl Strategy<Value = (Vec<(&'static str, Claim)>, Map<String, Value>, bool)>
{
    let now = now_secs();
    (
        claim(vec![
            (Some(json!(ISSUER)), true),
            (Some(json!(format!("{ISSUER}/"))), false),
            (Some(json!("https://evil.example")), false),
            (Some(json!(1)), false),
            (None, false),
        ]),
        claim(vec![
            (Some(json!("alice")), true),
            (Some(json!("x".repeat(255))), true),
            (Some(json!("x".repeat(256))), false),
            (Some(json!("")), false),
            (Some(json!(5)), false),
            (None, false),
        ]),
        // aud and azp together decide: (aud, azp).
        prop::sample::select(vec![
            (Some(json!(CLIENT_ID)), None, true),
            (Some(json!([CLIENT_ID])), None, true),
            (Some(json!(CLIENT_ID)), Some(json!(CLIENT_ID)), true),
            (Some(json!(CLIENT_ID)), Some(json!("someone-else")), false),
            (Some(json!([CLIENT_ID, "someone-else"])), None, false),
            (
                Some(json!([CLIENT_ID, "someone-else"])),
                Some(json!(CLIENT_ID)),
                false,
            ),
            (Some(json!("someone-else")), None, false),
            (Some(json!([])), None, false),
            (None, None, false),
        ]),
        claim(vec![
            (Some(json!(now)), true),
            (Some(json!(now - 30)), true),
            (Some(json!(now + 30)), true),
            (Some(json!(now + 200)), false),
            (Some(json!(now - 2000)), false),
            (Some(json!("now")), false),
            (None, false),
        ]),
        claim(vec![
            (Some(json!(now + 300)), true),
            (Some(json!(now - 20)), true),
            (Some(json!(now - 200)), false),
            (Some(json!(-1)), false),
            (Some(json!(1.5e300)), false),
            (None, false),
        ]),
        claim(vec![
            (Some(json!(NONCE)), true),
            (Some(json!(format!("{NONCE}x"))), false),
            (Some(json!("")), false),
            (Some(json!(1)), false),
            (None, false),
        ]),
        extra_fields(),
        any::<bool>(),
    )
        .prop_map(
            |(iss, sub, (aud, azp, aud_ok), iat, exp, nonce, extra, kid)| {
                let claims = vec![
                    ("iss", iss),
                    ("sub", sub),
                    (
                        "aud",
                        Claim {
                            value: aud,
                            ok: aud_ok,
                        },
                    ),
                    (
                        "azp",
                        Claim {
                            value: azp,
                            ok: true,
                        },
                    ),
                    ("iat", iat),
                    ("exp", exp),
                    ("nonce", nonce),
                ];
                // Extra claims of any value, under names no standard claim has (a standard
                // claim of the wrong type makes the token malformed, which is refused).
                let extra = extra
                    .into_iter()
                    .map(|(k, v)| (format!("x_{k}"), v))
                    .collect();
                (claims, extra, kid)
            },
        )
}

proptest! {
    #![proptest_config(config(256))]

    /// Correctly signed ID tokens with each claim right or wrong: accepted exactly when
    /// every claim is right.
    #[test]
    fn id_tokens_are_accepted_exactly_when_every_claim_is_right(
        (claims, extra, with_kid) in id_token_case(),
    ) {
        let mut map = extra;
        for (name, c) in &claims {
            if let Some(v) = &c.value {
                map.insert(name.to_string(), v.clone());
            }
        }
        let expected = claims.iter().all(|(_, c)| c.ok);
        let raw = sign_id_token(&map, with_kid);
        let got = verify_id_token(&raw);
        prop_assert_eq!(got.is_ok(), expected, "{:?}: {:?}", claims, got);
    }

    /// A good token with one character changed, cut, or its parts swapped: refused.
    #[test]
    fn tampered_id_tokens_are_refused(
        position in any::<prop::sample::Index>(),
        replacement in "[A-Za-z0-9_.=-]",
        cut in any::<prop::sample::Index>(),
    ) {
        let raw = sign_id_token(&good_claims(), true);
        prop_assert!(verify_id_token(&raw).is_ok());
        let mut chars: Vec<char> = raw.chars().collect();
        let i = position.index(chars.len());
        let r = replacement.chars().next().unwrap();
        if chars[i] != r {
            chars[i] = r;
            let tampered: String = chars.into_iter().collect();
            prop_assert!(verify_id_token(&tampered).is_err(), "{}", tampered);
        }
        prop_assert!(verify_id_token(&raw[..cut.index(raw.len())]).is_err());
        let parts: Vec<&str> = raw.split('.').collect();
        let swapped = format!("{}.{}.{}", parts[1], parts[0], parts[2]);
        prop_assert!(verify_id_token(&swapped).is_err());
    }

    /// Anything that looks like a JWS but was not signed by the key: refused.
    #[test]
    fn forged_id_tokens_are_refused(
        header in prop_oneof![
            Just(json!({"alg": "none"})),
            Just(json!({"alg": "HS256"})),
            Just(json!({"alg": "RS256", "kid": "dev-rsa-1"})),
            Just(json!({"alg": "RS256", "kid": "unknown"})),
            Just(json!({"alg": "RS256", "crit": ["exp"]})),
            Just(json!({"alg": "ES256", "kid": "dev-rsa-1"})),
            json_value(),
        ],
        signature in prop_oneof![Just(Vec::new()), any::<Vec<u8>>(), Just(vec![0u8; 256])],
    ) {
        let encode = |v: &[u8]| URL_SAFE_NO_PAD.encode(v);
        let raw = format!(
            "{}.{}.{}",
            encode(&serde_json::to_vec(&header).unwrap()),
            encode(&serde_json::to_vec(&good_claims()).unwrap()),
            encode(&signature),
        );
        super::id_token(&raw);
    }

    #[test]
    fn any_string_is_refused_as_an_id_token(raw in prop_oneof![
        any::<String>(),
        "[A-Za-z0-9_-]{0,40}\\.[A-Za-z0-9_-]{0,40}\\.[A-Za-z0-9_-]{0,40}",
    ]) {
        super::id_token(&raw);
        super::logout_token(&raw);
    }
}

fn logout_claims_case() -> impl Strategy<Value = (Vec<(&'static str, Claim)>, Option<&'static str>)>
{
    let now = now_secs();
    let event = json!({"http://schemas.openid.net/event/backchannel-logout": {}});
    (
        claim(vec![
            (Some(json!(ISSUER)), true),
            (Some(json!("https://evil.example")), false),
            (None, false),
        ]),
        claim(vec![
            (Some(json!(CLIENT_ID)), true),
            (Some(json!([CLIENT_ID])), true),
            (Some(json!([CLIENT_ID, "other"])), false),
            (Some(json!("other")), false),
            (None, false),
        ]),
        claim(vec![
            (Some(json!(now)), true),
            (Some(json!(now + 200)), false),
            (Some(json!(now - 2000)), false),
            (None, false),
        ]),
        claim(vec![
            (Some(json!(now + 120)), true),
            (None, true),
            (Some(json!(now - 200)), false),
            (Some(json!("x")), false),
        ]),
        claim(vec![
            (Some(json!("jti-1")), true),
            (Some(json!("")), false),
            (None, false),
        ]),
        claim(vec![
            (Some(event.clone()), true),
            (
                Some(json!({"http://schemas.openid.net/event/other": {}})),
                false,
            ),
            (
                Some(json!({"http://schemas.openid.net/event/backchannel-logout": "x"})),
                false,
            ),
            (None, false),
        ]),
        claim(vec![(None, true), (Some(json!("n")), false)]),
        // sub and sid: at least one.
        prop::sample::select(vec![
            (Some(json!("alice")), Some(json!("sid-1")), true),
            (Some(json!("alice")), None, true),
            (None, Some(json!("sid-1")), true),
            (None, None, false),
        ]),
        prop::sample::select(vec![None, Some("logout+jwt"), Some("JWT"), Some("at+jwt")]),
    )
        .prop_map(
            |(iss, aud, iat, exp, jti, events, nonce, (sub, sid, who_ok), typ)| {
                let typ_ok = typ != Some("at+jwt");
                (
                    vec![
                        ("iss", iss),
                        ("aud", aud),
                        ("iat", iat),
                        ("exp", exp),
                        ("jti", jti),
                        ("events", events),
                        ("nonce", nonce),
                        (
                            "sub",
                            Claim {
                                value: sub,
                                ok: who_ok,
                            },
                        ),
                        (
                            "sid",
                            Claim {
                                value: sid,
                                ok: true,
                            },
                        ),
                        // Not a claim: the header's typ, which must be a JWT or a logout token.
                        (
                            "typ",
                            Claim {
                                value: None,
                                ok: typ_ok,
                            },
                        ),
                    ],
                    typ,
                )
            },
        )
}

proptest! {
    #![proptest_config(config(256))]

    /// Correctly signed logout tokens with each claim right or wrong: accepted exactly
    /// when every claim is right, and then naming the sub and sid they carry.
    #[test]
    fn logout_tokens_are_accepted_exactly_when_every_claim_is_right(
        (claims, typ) in logout_claims_case(),
    ) {
        use tower_oauth2_login_dev_provider::keys::{key_ring, sign_jwt, Signing};
        let mut map = Map::new();
        for (name, c) in &claims {
            if let Some(v) = &c.value {
                map.insert(name.to_string(), v.clone());
            }
        }
        let expected = claims.iter().all(|(_, c)| c.ok);
        let ring = key_ring().unwrap();
        let raw = sign_jwt(typ, &map, Signing::Rs256, ring.rotation_key(0).unwrap(), ring, b"").unwrap();
        let got = verify_logout_token(&raw);
        prop_assert_eq!(got.is_ok(), expected, "{:?} {:?}: {:?}", claims, typ, got);
        if let Ok((sub, sid)) = got {
            prop_assert_eq!(sub.as_deref(), map.get("sub").and_then(Value::as_str));
            prop_assert_eq!(sid.as_deref(), map.get("sid").and_then(Value::as_str));
        }
    }
}

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;

/// What each fuzz target does with its input (as in `fuzz/fuzz_targets/`).
fn run_target(target: &str, data: &[u8]) {
    let text = |d: &[u8]| String::from_utf8_lossy(d).into_owned();
    match target {
        "callback_query" => super::callback_query(&text(data)),
        "callback_request" => {
            let (q, c) = split2(data);
            callback_request(&text(q), c)
        }
        "return_to" => return_to(&text(data)),
        "session_cookie" => session_cookie(data),
        "stored_session" => stored_session(data),
        "pending_cookie" => {
            let (state, value) = split2(data);
            forged_pending(&text(state), value);
            pending_json(data);
        }
        "userinfo" => userinfo(data),
        "token_response" => token_response(200, &data[1..]),
        "discovery" => {
            let (d, j) = split2(data);
            discovery(d, j)
        }
        "jwks" => super::jwks(data),
        "id_token" => super::id_token(&text(data)),
        "logout_token" => super::logout_token(&text(data)),
        other => panic!("unknown target {other}"),
    }
}

proptest! {
    #![proptest_config(config(256))]

    /// A stored record with bytes changed, cut or spliced: read or refused, never a panic,
    /// and it opens only for its own session id, to its own tokens.
    #[test]
    fn a_stored_session_edited_opens_for_nobody_else(
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..4),
        cut in any::<prop::sample::Index>(),
        cut_it in any::<bool>(),
        id in prop_oneof![Just(STORED_SESSION_ID.to_string()), "[A-Za-z0-9_-]{43}"],
    ) {
        let mut record = stored_session_seed().into_bytes();
        for (at, byte) in edits {
            let i = at.index(record.len());
            record[i] = byte;
        }
        if cut_it {
            record.truncate(cut.index(record.len() + 1));
        }
        let mut data = id.into_bytes();
        data.push(b'\n');
        data.extend_from_slice(&record);
        stored_session(&data);
    }
}

#[test]
fn the_fuzz_seeds_pass_their_targets() {
    for (target, data) in seeds() {
        run_target(target, &data);
    }
}

/// Writes the seeds of the fuzz targets to `$FUZZ_SEEDS_DIR/<target>/` (run by
/// `scripts/fuzz.sh`). Each seed also passes its target's checks.
#[test]
#[ignore = "run by scripts/fuzz.sh"]
fn write_fuzz_seeds() {
    let dir = std::env::var("FUZZ_SEEDS_DIR").expect("FUZZ_SEEDS_DIR");
    for (i, (target, data)) in seeds().into_iter().enumerate() {
        let path = std::path::Path::new(&dir).join(target);
        std::fs::create_dir_all(&path).unwrap();
        std::fs::write(path.join(format!("seed-{i}")), data).unwrap();
    }
}

/// Found by `tampered_id_tokens_are_refused`: the last character of an RS256
/// signature carries four unused bits, and openidconnect's parser ignored them, so 16
/// spellings of one signature passed. Only the canonical one does now.
#[test]
fn only_the_canonical_spelling_of_a_signature_is_accepted() {
    let raw = sign_id_token(&good_claims(), true);
    let alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let head = &raw[..raw.len() - 1];
    let accepted: Vec<char> = alphabet
        .chars()
        .filter(|c| verify_id_token(&format!("{head}{c}")).is_ok())
        .collect();
    assert_eq!(accepted, raw.chars().last().into_iter().collect::<Vec<_>>());
}
