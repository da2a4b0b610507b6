//! What the browser signs in to, each with its provider on another site (`127.0.0.2`) than the
//! app (`127.0.0.1`):
//!
//! * [`EmbeddedApp`]: an app behind the real layer, in this process, with the embedded
//!   development provider showing its login form (not auto-login); its knobs and counters
//!   are at hand, and every request the app gets is recorded.
//! * [`OidcApp`]: the same app against panva's `oidc-provider` (a `node` process): as a plain
//!   OAuth 2.0 client of its `/auth`, `/token` and `/me`, with `iss` required (RFC 9207), or
//!   as an OpenID Connect relying party configured by discovery.
//! * [`Demo`]: the README's demo binary (`target/<profile>/examples/demo`), configured by its
//!   environment.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};

use axum::extract::Request;
use axum::middleware::Next;
use axum::response::{Html, IntoResponse};
use axum::routing::get;
use axum::{Json, Router};
use reqwest::StatusCode;
use tower_oauth2_login::{AuthUser, ClientAuth, LoginLayer, LoginLayerBuilder};
use tower_oauth2_login_dev_provider::DevProvider;

use crate::support::app::{start_with, Client, Options, TestApp};
use crate::support::oidc_provider::{
    OidcProvider, OidcProviderOptions, CONFIDENTIAL_CLIENT_ID, CONFIDENTIAL_CLIENT_SECRET,
    PUBLIC_CLIENT_ID,
};

/// The provider's host: another site than the app's `127.0.0.1` for the browser.
pub const PROVIDER_HOST: &str = "127.0.0.2";

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn page(title: &str, body: &str) -> Html<String> {
    Html(format!(
        "<!doctype html><html lang=en><head><meta charset=utf-8><title>{title}</title></head>\
         <body><h1>{title}</h1>{body}</body></html>"
    ))
}

/// The browser tests' pages, with ids to find things by.
pub fn routes() -> Router {
    Router::new()
        .route(
            "/",
            get(|user: Option<AuthUser>| async move {
                let who = match user {
                    Some(u) => format!("signed in as {}", escape(u.subject())),
                    None => "anonymous".to_owned(),
                };
                page("Home", &format!("<p id=\"who\">{who}</p>"))
            }),
        )
        .route(
            "/protected",
            get(|user: AuthUser, uri: axum::http::Uri| async move {
                let here = uri.path_and_query().map(|p| p.as_str()).unwrap_or("");
                page(
                    "Protected",
                    &format!(
                        "<p>Signed in as <span id=\"who\">{}</span>.</p>\
                         <p>This is <code id=\"where\">{}</code>.</p>\
                         <p><a id=\"next\" href=\"/protected?page=next\">Next page</a> \
                         <a id=\"signout-page\" href=\"/logout\">Sign out</a></p>",
                        escape(user.subject()),
                        escape(here)
                    ),
                )
            }),
        )
        .route(
            "/me",
            get(|user: AuthUser| async move {
                Json(serde_json::json!({"subject": user.subject(), "claims": user.claims()}))
            }),
        )
        .route(
            "/logged-out",
            get(|| async { page("Signed out", "<p id=\"bye\">You are signed out.</p>") }),
        )
        .fallback(|| async { (StatusCode::NOT_FOUND, "no page here").into_response() })
}

/// Every request's path and query, in order, as the app received them.
#[derive(Clone, Default)]
pub struct Requests(Arc<Mutex<Vec<String>>>);

impl Requests {
    pub fn all(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }

    /// The requests whose path is `path`.
    pub fn to(&self, path: &str) -> Vec<String> {
        self.all()
            .into_iter()
            .filter(|r| r == path || r.starts_with(&format!("{path}?")))
            .collect()
    }

    fn layer(&self, router: Router) -> Router {
        let requests = self.clone();
        router.layer(axum::middleware::from_fn(
            move |request: Request, next: Next| {
                let requests = requests.clone();
                async move {
                    if let Some(pq) = request.uri().path_and_query() {
                        requests.0.lock().unwrap().push(pq.as_str().to_owned());
                    }
                    next.run(request).await
                }
            },
        ))
    }
}

// ---------------------------------------------------------------------------------------------
// The embedded provider
// ---------------------------------------------------------------------------------------------

pub struct EmbeddedApp {
    pub app: TestApp,
    pub requests: Requests,
}

impl EmbeddedApp {
    /// The app with the embedded provider on [`PROVIDER_HOST`], showing its login form;
    /// `layer` adjusts the layer's configuration.
    pub async fn start(
        layer: impl FnOnce(LoginLayerBuilder) -> LoginLayerBuilder + Send + 'static,
    ) -> EmbeddedApp {
        let requests = Requests::default();
        let recorder = requests.clone();
        let app = start_with(Options {
            client: Client::Basic,
            provider: Box::new(|b| b.with_addr(SocketAddr::from(([127, 0, 0, 2], 0)))),
            layer: Box::new(layer),
            routes: None,
            app: Some(Box::new(move |login| recorder.layer(routes().layer(login)))),
            discover: false,
            ..Default::default()
        })
        .await;
        // start_with signs in at once as alice; the browser tests use the form.
        app.provider.set_auto_login(None);
        assert!(app.provider.base_url().starts_with("http://127.0.0.2:"));
        EmbeddedApp { app, requests }
    }

    pub fn provider(&self) -> &DevProvider {
        &self.app.provider
    }

    pub fn url(&self, path: &str) -> String {
        self.app.url(path)
    }
}

// ---------------------------------------------------------------------------------------------
// panva's oidc-provider
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Copy, Debug)]
pub enum OidcClient {
    /// `client_secret_basic`.
    Confidential,
    /// No secret: PKCE only.
    Public,
}

pub struct OidcApp {
    pub base: String,
    /// Kept running for the app; prints its output when a test fails.
    _provider: OidcProvider,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for OidcApp {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl OidcApp {
    /// The app against oidc-provider on [`PROVIDER_HOST`] as `client`, a plain OAuth 2.0
    /// client of its endpoints; `layer` adjusts the layer's configuration.
    pub async fn start(
        client: OidcClient,
        layer: impl FnOnce(LoginLayerBuilder) -> LoginLayerBuilder,
    ) -> OidcApp {
        Self::start_as(client, false, layer).await
    }

    /// The app as an OpenID Connect relying party of oidc-provider on [`PROVIDER_HOST`],
    /// configured by discovery (ID tokens, RP-initiated logout back to
    /// `/auth/logout-callback`, revocation).
    pub async fn start_discovered(client: OidcClient) -> OidcApp {
        Self::start_as(client, true, |l| l).await
    }

    async fn start_as(
        client: OidcClient,
        discovery: bool,
        layer: impl FnOnce(LoginLayerBuilder) -> LoginLayerBuilder,
    ) -> OidcApp {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let redirect = format!("{base}/auth/callback");
        let provider = OidcProvider::start_with(
            OidcProviderOptions::new(std::slice::from_ref(&redirect))
                .post_logout_redirect_uris(&[format!("{base}/auth/logout-callback")])
                .host(PROVIDER_HOST),
        )
        .await;
        assert!(provider.issuer().starts_with("http://127.0.0.2:"));
        let builder = LoginLayer::builder();
        let builder = if discovery {
            builder.with_scopes(["openid", "profile", "email"])
        } else {
            builder
                .with_authorization_endpoint(provider.authorization_endpoint())
                .with_token_endpoint(provider.token_endpoint())
                .with_userinfo_endpoint(provider.userinfo_endpoint())
                .with_issuer(provider.issuer())
                // The provider advertises authorization_response_iss_parameter_supported.
                .with_iss_parameter_required(true)
                // Its userinfo endpoint needs the openid scope on the access token.
                .with_scopes(["openid", "profile"])
        };
        let builder = builder
            .with_redirect_url(&redirect)
            .with_logout_path("/logout")
            .with_post_logout_redirect("/logged-out")
            .with_public_path("/")
            .with_public_path("/logged-out")
            .with_cookie_key([9u8; 64]);
        let builder = match client {
            OidcClient::Confidential => builder
                .with_client_id(CONFIDENTIAL_CLIENT_ID)
                .with_client_secret(CONFIDENTIAL_CLIENT_SECRET)
                .with_client_auth(ClientAuth::ClientSecretBasic),
            OidcClient::Public => builder.with_client_id(PUBLIC_CLIENT_ID),
        };
        let builder = if discovery {
            builder
                .discover(provider.issuer())
                .await
                .expect("discovery")
        } else {
            builder
        };
        let login = layer(builder).build().expect("valid configuration");
        let app = routes().layer(login);
        let server = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        OidcApp {
            base,
            _provider: provider,
            server,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }
}

// ---------------------------------------------------------------------------------------------
// The demo binary
// ---------------------------------------------------------------------------------------------

/// The demo example, running as a process of its own; killed on drop.
pub struct Demo {
    child: std::process::Child,
    pub base: String,
    /// The banner it printed.
    pub banner: String,
    logs: Arc<Mutex<Vec<String>>>,
}

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!(
                "--- demo output ---\n{}\n--- end of demo output ---",
                self.logs()
            );
        }
    }
}

impl Demo {
    /// Starts `target/<profile>/examples/demo` on a free port of 127.0.0.1 with `env` (and
    /// nothing else of this process's environment) and waits for its banner.
    pub fn start(env: &[(&str, &str)]) -> Demo {
        let exe = std::env::current_exe().unwrap();
        // target/<profile>/deps/browser-<hash> -> target/<profile>/examples/demo
        let path = exe
            .parent()
            .and_then(Path::parent)
            .expect("target/<profile>")
            .join("examples")
            .join("demo");
        assert!(
            path.exists(),
            "{} is missing: plain `cargo test` builds it (`cargo test --test browser` alone \
             does not; `cargo build --example demo` does)",
            path.display()
        );
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut command = Command::new(&path);
        command
            .env_clear()
            .env("APP_ADDR", format!("127.0.0.1:{port}"))
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (name, value) in env {
            command.env(name, value);
        }
        let mut child = command.spawn().unwrap();
        let stdout = child.stdout.take().unwrap();
        let stderr = child.stderr.take().unwrap();
        let logs = Arc::new(Mutex::new(Vec::new()));
        {
            let logs = Arc::clone(&logs);
            std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                    logs.lock().unwrap().push(line);
                }
            });
        }
        let (banner_tx, banner_rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut banner = Vec::new();
            let mut sent = false;
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if !sent {
                    banner.push(line.clone());
                    if line.contains("to sign in") {
                        let _ = banner_tx.send(banner.join("\n"));
                        sent = true;
                    }
                }
            }
        });
        let mut demo = Demo {
            child,
            base: format!("http://127.0.0.1:{port}"),
            banner: String::new(),
            logs,
        };
        match banner_rx.recv_timeout(std::time::Duration::from_secs(30)) {
            Ok(banner) => demo.banner = banner,
            Err(_) => panic!(
                "the demo did not print its banner; its output:\n{}",
                demo.logs()
            ),
        }
        demo
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// What the demo wrote to stderr (its logs).
    pub fn logs(&self) -> String {
        self.logs.lock().unwrap().join("\n")
    }
}
