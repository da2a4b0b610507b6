//! Sign in with GitHub:
//!
//! ```sh
//! GITHUB_CLIENT_ID=... GITHUB_CLIENT_SECRET=... cargo run --example github
//! ```
//!
//! Register an OAuth app first (GitHub: Settings → Developer settings → OAuth Apps) with the
//! authorization callback URL `http://127.0.0.1:3000/auth/callback`, then open
//! <http://127.0.0.1:3000/protected>.
//!
//! GitHub is plain OAuth 2.0, not OpenID Connect: there is no ID token and no discovery, the
//! user comes from `GET https://api.github.com/user` and is named by its numeric `id` (the
//! `login` can change; the `id` does not), and the callback carries no `iss` (so no issuer is
//! configured). Two things GitHub needs that the layer does on its own: its token endpoint
//! answers JSON only when asked with `Accept: application/json` (the `oauth2` crate sends it
//! on every token request), and its API refuses requests without a `User-Agent` (the layer
//! sends `tower-oauth2-login/<version>`). GitHub supports PKCE (S256), which the layer
//! always uses.
//!
//! `cargo run --example demo` with `DEV_PROVIDER_SHAPE=github` runs the same configuration
//! against the embedded development provider, no account needed; the browser tests sign in
//! through it.
//!
//! | variable | meaning |
//! |---|---|
//! | `GITHUB_CLIENT_ID` | the OAuth app's client id (required) |
//! | `GITHUB_CLIENT_SECRET` | the OAuth app's client secret (required) |
//! | `APP_ADDR` | where the app listens, default `127.0.0.1:3000` |
//! | `REDIRECT_URL` | the registered callback, default `http://<APP_ADDR>/auth/callback` |
//! | `COOKIE_KEY` | base64 of at least 64 random bytes; random at start-up when absent |

use std::env;
use std::net::SocketAddr;

use axum::response::Html;
use axum::routing::get;
use axum::Router;
use base64::Engine;
use tower_oauth2_login::{AuthUser, LoginLayer};
use tracing_subscriber::EnvFilter;

type Error = Box<dyn std::error::Error + Send + Sync>;

/// GitHub's OAuth 2.0 endpoints (<https://docs.github.com/en/apps/oauth-apps>).
const AUTHORIZE_URL: &str = "https://github.com/login/oauth/authorize";
const TOKEN_URL: &str = "https://github.com/login/oauth/access_token";
const USER_URL: &str = "https://api.github.com/user";

#[tokio::main]
async fn main() -> Result<(), Error> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| EnvFilter::new("info,tower_oauth2_login=debug")),
        )
        .init();

    let need = |name: &str| {
        env::var(name).map_err(|_| format!("{name} must be set (see examples/github.rs)"))
    };
    let client_id = need("GITHUB_CLIENT_ID")?;
    let client_secret = need("GITHUB_CLIENT_SECRET")?;
    let app_addr: SocketAddr = env::var("APP_ADDR")
        .unwrap_or_else(|_| "127.0.0.1:3000".into())
        .parse()?;
    let redirect_url =
        env::var("REDIRECT_URL").unwrap_or_else(|_| format!("http://{app_addr}/auth/callback"));

    let mut builder = LoginLayer::builder()
        .with_client_id(client_id)
        .with_client_secret(client_secret)
        .with_authorization_endpoint(AUTHORIZE_URL)
        .with_token_endpoint(TOKEN_URL)
        .with_userinfo_endpoint(USER_URL)
        .with_subject_field("id")
        .with_scopes(["read:user"])
        .with_redirect_url(&redirect_url)
        .with_logout_path("/logout")
        .with_post_logout_redirect("/")
        .with_public_path("/");
    if let Ok(key) = env::var("COOKIE_KEY") {
        builder =
            builder.with_cookie_key(base64::engine::general_purpose::STANDARD.decode(key.trim())?);
    }
    let login = builder.build()?;

    let app = Router::new()
        .route("/", get(home))
        .route("/protected", get(protected))
        .layer(login);

    let listener = tokio::net::TcpListener::bind(app_addr).await?;
    println!();
    println!("  GitHub sign-in example: http://{app_addr}/");
    println!("  Callback registered at GitHub must be: {redirect_url}");
    println!("  Open http://{app_addr}/protected to sign in with GitHub.");
    println!();
    axum::serve(listener, app).await?;
    Ok(())
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

async fn home(user: Option<AuthUser>) -> Html<String> {
    let body = match user {
        Some(user) => format!(
            "<p>Signed in as <b>{}</b>. <a href=\"/protected\">Protected page</a></p>\
             <form method=\"post\" action=\"/logout\"><button>Sign out</button></form>",
            escape(&user.claim::<String>("login").unwrap_or_default())
        ),
        None => "<p>Not signed in. <a href=\"/auth/login?return_to=%2Fprotected\">Sign in with GitHub</a></p>"
            .to_string(),
    };
    Html(format!(
        "<!doctype html><meta charset=utf-8><title>GitHub sign-in</title><h1>GitHub sign-in</h1>{body}"
    ))
}

async fn protected(user: AuthUser) -> Html<String> {
    // GitHub's user object: `id` (the subject), `login`, `name` (may be null), `avatar_url`, ...
    let login = user.claim::<String>("login").unwrap_or_default();
    let name = user
        .claim::<String>("name")
        .unwrap_or_else(|| login.clone());
    Html(format!(
        "<!doctype html><meta charset=utf-8><title>Protected</title><h1>Hello, {}</h1>\
         <p>GitHub login <code>{}</code>, id <code>{}</code>.</p><p><a href=\"/\">Home</a></p>",
        escape(&name),
        escape(&login),
        escape(user.subject())
    ))
}
