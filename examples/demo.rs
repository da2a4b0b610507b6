//! The demo app: `cargo run --example demo`.
//!
//! With no environment it starts the embedded development provider and signs you in with
//! any user name. With `OAUTH_ISSUER` alone it uses a real OpenID Connect provider through
//! discovery; with `OAUTH_AUTH_URL` (and friends, see below) a plain OAuth 2.0 provider.
//!
//! | variable | meaning |
//! |---|---|
//! | `OAUTH_ISSUER` | OpenID Connect issuer: discovery (without `OAUTH_AUTH_URL`), or the `iss` checked (with it) |
//! | `OAUTH_AUTH_URL` | authorization endpoint (selects a plain OAuth 2.0 provider) |
//! | `OAUTH_TOKEN_URL` | token endpoint |
//! | `OAUTH_USERINFO_URL` | userinfo endpoint (who the user is) |
//! | `OAUTH_SUBJECT_FIELD` | userinfo field naming the user, default `sub` (`id` for GitHub) |
//! | `OAUTH_CLIENT_ID` | client id |
//! | `OAUTH_CLIENT_SECRET` | client secret; absent = public client (PKCE only) |
//! | `OAUTH_CLIENT_AUTH` | `basic` (default) or `post` |
//! | `OAUTH_ISSUER` | issuer, to check the `iss` callback parameter (RFC 9207) |
//! | `OAUTH_REDIRECT_URL` | default `http://127.0.0.1:3000/auth/callback` |
//! | `OAUTH_SCOPES` | space-separated scopes |
//! | `APP_ADDR` | where the app listens, default `127.0.0.1:3000` |
//! | `DEV_PROVIDER_ADDR` | where the embedded provider listens, default `127.0.0.1:0` (any port); loopback addresses only (it signs in anyone who types a name) |
//! | `DEV_PROVIDER_SHAPE` | `standard` (default: OpenID Connect-like userinfo, subject `sub`) or `github` (no OpenID Connect: the user from `/user` with a numeric `id`, scope `read:user`, as GitHub) |
//! | `COOKIE_KEY` | base64 of at least 64 random bytes; random at start-up when absent |
//! | `REDIS_URL` | keep sessions in Redis or Valkey (`redis://127.0.0.1:6379/0`) instead of memory |
//!
//! Several instances share their sessions when they have the same `REDIS_URL` and
//! `COOKIE_KEY`, e.g. `COOKIE_KEY=$(head -c 64 /dev/urandom | base64 -w0)` and then
//! `APP_ADDR=127.0.0.1:3000 cargo run --example demo` beside `APP_ADDR=127.0.0.1:3001 ...`.

use std::env;
use std::net::SocketAddr;

use axum::http::StatusCode;
use axum::response::{Html, IntoResponse};
use axum::routing::get;
use axum::{Json, Router};
use base64::Engine;
use tower_oauth2_login::{
    AccessToken, AuthUser, ClientAuth, LoginLayer, LoginLayerBuilder, RedisStore,
};
use tower_oauth2_login_dev_provider::{DevClient, DevProvider, UserShape};
use tracing_subscriber::EnvFilter;

type Error = Box<dyn std::error::Error + Send + Sync>;

#[tokio::main]
async fn main() -> Result<(), Error> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| EnvFilter::new("info,tower_oauth2_login=debug")),
        )
        .init();

    let app_addr: SocketAddr = env::var("APP_ADDR")
        .unwrap_or_else(|_| "127.0.0.1:3000".into())
        .parse()?;
    let redirect_url = env::var("OAUTH_REDIRECT_URL")
        .unwrap_or_else(|_| format!("http://{app_addr}/auth/callback"));

    // Kept alive for as long as the app runs.
    let mut dev_provider = None;
    let mut github_style = false;
    let builder = if env::var_os("OAUTH_AUTH_URL").is_some() {
        real_provider()?
    } else if let Ok(issuer) = env::var("OAUTH_ISSUER") {
        client_from_env(LoginLayer::builder())?
            .with_redirect_url(&redirect_url)
            .with_scopes(scopes_from_env(&["openid", "profile", "email"]))
            .discover(issuer)
            .await?
    } else {
        let secret = random_secret();
        let addr: SocketAddr = env::var("DEV_PROVIDER_ADDR")
            .unwrap_or_else(|_| "127.0.0.1:0".into())
            .parse()?;
        let shape = match env::var("DEV_PROVIDER_SHAPE").as_deref() {
            Err(_) | Ok("standard") => UserShape::Standard,
            Ok("github") => UserShape::GitHub,
            Ok(other) => {
                return Err(format!(
                    "DEV_PROVIDER_SHAPE must be `standard` or `github`, not {other:?}"
                )
                .into())
            }
        };
        // The app's own URLs the provider must know: where to return after sign-out,
        // and where to send back-channel logout tokens.
        let app_origin = url::Url::parse(&redirect_url)?
            .origin()
            .ascii_serialization();
        // No opt-in beyond loopback here: the layer talks plain http to loopback providers
        // only, so a demo provider elsewhere could never be used, only reached by others.
        let provider = DevProvider::builder()
            .with_addr(addr)
            .with_user_shape(shape)
            .with_client(
                DevClient::confidential("demo", &secret, &redirect_url)
                    .with_post_logout_redirect_uri(format!("{app_origin}/auth/logout-callback"))
                    .with_backchannel_logout_uri(format!("{app_origin}/auth/backchannel-logout")),
            )
            .start()
            .await
            .map_err(|e| -> Error {
                if addr.ip().to_canonical().is_loopback() {
                    return e.into();
                }
                format!(
                    "DEV_PROVIDER_ADDR={addr}: {e}\n(the demo keeps it on loopback: its \
                     layer talks plain http to loopback providers only; for a provider on \
                     another machine, use a real one over https with OAUTH_ISSUER)"
                )
                .into()
            })?;
        let builder = LoginLayer::builder()
            .with_client_id("demo")
            .with_client_secret(secret);
        let builder = match shape {
            // GitHub's way (see examples/github.rs): no OpenID Connect, the user from
            // `GET /user`, named by its numeric `id`. The embedded provider names its
            // issuer in the callback (RFC 9207); GitHub does not, so examples/github.rs
            // sets none.
            UserShape::GitHub => builder
                .with_authorization_endpoint(provider.authorization_endpoint())
                .with_token_endpoint(provider.token_endpoint())
                .with_issuer(provider.issuer())
                .with_userinfo_endpoint(format!("{}/user", provider.base_url()))
                .with_subject_field("id")
                .with_scopes(["read:user"]),
            // OpenID Connect through discovery, as with a real provider.
            UserShape::Standard => {
                builder
                    .with_redirect_url(&redirect_url)
                    .with_scopes(["openid", "profile", "email"])
                    .discover(provider.issuer())
                    .await?
            }
        };
        dev_provider = Some(provider);
        github_style = shape == UserShape::GitHub;
        builder
    };

    let mut builder = builder
        .with_redirect_url(&redirect_url)
        .with_logout_path("/logout")
        .with_post_logout_redirect("/logged-out")
        .with_public_path("/")
        .with_public_path("/healthz")
        .with_public_path("/logged-out");
    if let Ok(key) = env::var("COOKIE_KEY") {
        builder =
            builder.with_cookie_key(base64::engine::general_purpose::STANDARD.decode(key.trim())?);
    }
    let sessions = match env::var("REDIS_URL") {
        Ok(url) => {
            // Fails fast, with the reason, when Redis cannot be reached.
            let store = RedisStore::connect(&url).await?;
            if env::var_os("COOKIE_KEY").is_none() {
                tracing::warn!(
                    "REDIS_URL without COOKIE_KEY: a login started on one instance cannot \
                     finish on another; give every instance the same COOKIE_KEY"
                );
            }
            builder = builder.with_store(store);
            "Redis (shared by every instance with the same REDIS_URL and COOKIE_KEY)"
        }
        Err(_) => "in memory (this process only)",
    };
    let login = builder.build()?;
    let userinfo_url = login.userinfo_endpoint().map(str::to_string);

    let app = Router::new()
        .route("/", get(home))
        .route("/protected", get(protected))
        .route("/me", get(me))
        .route(
            "/userinfo",
            get(move |token: AccessToken| userinfo(token, userinfo_url.clone())),
        )
        .route("/logged-out", get(logged_out))
        .route("/healthz", get(|| async { "ok" }))
        .fallback(fallback)
        .layer(login);

    let listener = tokio::net::TcpListener::bind(app_addr).await?;
    let app_addr = listener.local_addr()?;
    println!();
    println!("  Demo app:  http://{app_addr}/");
    match &dev_provider {
        Some(p) => println!(
            "  Provider:  the embedded development provider at {}{} — sign in with any user name",
            p.base_url(),
            if github_style { " (GitHub-style)" } else { "" }
        ),
        None => println!(
            "  Provider:  {}",
            env::var("OAUTH_ISSUER")
                .or_else(|_| env::var("OAUTH_AUTH_URL"))
                .unwrap_or_default()
        ),
    }
    println!("  Sessions:  {sessions}");
    println!("  Open http://{app_addr}/protected to sign in.");
    println!();
    axum::serve(listener, app).await?;
    drop(dev_provider);
    Ok(())
}

fn need(name: &str) -> Result<String, Error> {
    env::var(name).map_err(|_| format!("{name} must be set").into())
}

/// The client id, secret and authentication method from the environment.
fn client_from_env(builder: LoginLayerBuilder) -> Result<LoginLayerBuilder, Error> {
    let mut builder = builder.with_client_id(need("OAUTH_CLIENT_ID")?);
    if let Ok(secret) = env::var("OAUTH_CLIENT_SECRET") {
        builder = builder.with_client_secret(secret);
        if env::var("OAUTH_CLIENT_AUTH").as_deref() == Ok("post") {
            builder = builder.with_client_auth(ClientAuth::ClientSecretPost);
        }
    }
    Ok(builder)
}

fn scopes_from_env(default: &[&str]) -> Vec<String> {
    match env::var("OAUTH_SCOPES") {
        Ok(scopes) => scopes.split_whitespace().map(str::to_string).collect(),
        Err(_) => default.iter().map(|s| s.to_string()).collect(),
    }
}

/// A plain OAuth 2.0 provider from explicit endpoints.
fn real_provider() -> Result<LoginLayerBuilder, Error> {
    let mut builder = client_from_env(LoginLayer::builder())?
        .with_authorization_endpoint(need("OAUTH_AUTH_URL")?)
        .with_token_endpoint(need("OAUTH_TOKEN_URL")?)
        .with_userinfo_endpoint(need("OAUTH_USERINFO_URL")?)
        .with_scopes(scopes_from_env(&[]));
    if let Ok(field) = env::var("OAUTH_SUBJECT_FIELD") {
        builder = builder.with_subject_field(field);
    }
    if let Ok(issuer) = env::var("OAUTH_ISSUER") {
        builder = builder.with_issuer(issuer);
    }
    Ok(builder)
}

fn random_secret() -> String {
    use rand::RngCore;
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn page(title: &str, body: &str) -> Html<String> {
    Html(format!(
        "<!doctype html><html lang=en><head><meta charset=utf-8><title>{title}</title>\
         <style>body{{font-family:system-ui,sans-serif;max-width:40rem;margin:3rem auto;padding:0 1rem}}</style>\
         </head><body><h1>{title}</h1>{body}\
         <p><a href=\"/\">Home</a> · <a href=\"/protected\">Protected</a> · <a href=\"/me\">/me</a> · <a href=\"/userinfo\">/userinfo</a> · <a href=\"/logout\">Sign out</a></p>\
         </body></html>"
    ))
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn display_name(user: &AuthUser) -> String {
    user.claim::<String>("name")
        .or_else(|| user.claim::<String>("login"))
        .unwrap_or_else(|| user.subject().to_string())
}

async fn home(user: Option<AuthUser>) -> Html<String> {
    match user {
        Some(user) => page(
            "Home",
            &format!(
                "<p id=\"who\">Signed in as <b>{}</b> (subject <code>{}</code>).</p>",
                escape(&display_name(&user)),
                escape(user.subject())
            ),
        ),
        None => page(
            "Home",
            "<p id=\"who\">Not signed in. <a id=\"signin\" href=\"/auth/login?return_to=%2Fprotected\">Sign in</a></p>",
        ),
    }
}

async fn protected(user: AuthUser) -> Html<String> {
    page(
        "Protected",
        &format!(
            "<p id=\"welcome\">Welcome, <b>{}</b>.</p><p>Your subject is <code id=\"subject\">{}</code>.</p>",
            escape(&display_name(&user)),
            escape(user.subject())
        ),
    )
}

async fn me(user: AuthUser) -> impl IntoResponse {
    Json(serde_json::json!({
        "subject": user.subject(),
        "claims": user.claims(),
        "scopes": user.scopes(),
    }))
}

/// Calls the provider's userinfo endpoint with the user's access token, which the layer
/// keeps fresh: a long-lived session keeps working here.
async fn userinfo(token: AccessToken, url: Option<String>) -> impl IntoResponse {
    let Some(url) = url else {
        return (
            StatusCode::NOT_FOUND,
            Json(serde_json::json!({"error": "no userinfo endpoint"})),
        );
    };
    let answer = reqwest::Client::new()
        .get(url)
        .bearer_auth(token.secret())
        .timeout(std::time::Duration::from_secs(10))
        .send()
        .await;
    match answer {
        Ok(res) if res.status().is_success() => match res.json::<serde_json::Value>().await {
            Ok(json) => (StatusCode::OK, Json(json)),
            Err(_) => (
                StatusCode::BAD_GATEWAY,
                Json(serde_json::json!({"error": "userinfo is not JSON"})),
            ),
        },
        Ok(res) => (
            StatusCode::BAD_GATEWAY,
            Json(serde_json::json!({"error": "userinfo refused", "status": res.status().as_u16()})),
        ),
        Err(_) => (
            StatusCode::BAD_GATEWAY,
            Json(serde_json::json!({"error": "userinfo unreachable"})),
        ),
    }
}

async fn logged_out() -> Html<String> {
    page("Signed out", "<p id=\"bye\">You are signed out.</p>")
}

async fn fallback(user: AuthUser, uri: axum::http::Uri) -> impl IntoResponse {
    (
        StatusCode::NOT_FOUND,
        page(
            "Not found",
            &format!(
                "<p>Nothing at <code>{}</code>, {}.</p>",
                escape(uri.path()),
                escape(&display_name(&user))
            ),
        ),
    )
}
