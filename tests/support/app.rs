//! A test app behind the real `LoginLayer`, served over real HTTP on loopback, with the
//! embedded provider, and a "browser": an HTTP client with a cookie jar that records every
//! response the app sends it.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::response::{Html, IntoResponse};
use axum::routing::{get, post};
use axum::{Json, Router};
use reqwest::cookie::CookieStore;
use reqwest::header::{HeaderMap, ACCEPT, LOCATION};
use reqwest::{Method, StatusCode};
use tower_oauth2_login::{AccessToken, AuthUser, LoginLayer, LoginLayerBuilder};
use tower_oauth2_login_dev_provider::{DevClient, DevProvider, DevProviderBuilder};

pub const CLIENT_ID: &str = "test-client";
pub const CLIENT_SECRET: &str = "test-secret-that-must-never-leak";
pub const HTML: &str = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8";

/// How the client is registered and authenticates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Client {
    Basic,
    Post,
    Public,
}

pub struct TestApp {
    pub addr: SocketAddr,
    pub base: String,
    pub redirect_url: String,
    pub provider: DevProvider,
    pub layer: LoginLayer,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.server.abort();
        self.provider.shutdown();
    }
}

/// The routes every test app has.
pub fn routes() -> Router {
    Router::new()
        .route(
            "/",
            get(|user: Option<AuthUser>| async move {
                match user {
                    Some(u) => Html(format!("<p>home: signed in as {}</p>", u.subject())),
                    None => Html("<p>home: anonymous</p>".to_string()),
                }
            }),
        )
        .route(
            "/protected",
            get(|user: AuthUser, uri: axum::http::Uri| async move {
                Html(format!(
                    "<p>protected: {} at {}</p>",
                    user.subject(),
                    uri.path_and_query().map(|p| p.as_str()).unwrap_or("")
                ))
            }),
        )
        .route(
            "/me",
            get(|user: AuthUser| async move {
                Json(serde_json::json!({"subject": user.subject(), "claims": user.claims()}))
            }),
        )
        .route(
            "/token-check",
            get(|token: AccessToken| async move {
                // What a handler would do with the token: use it server-side. The page
                // only says whether there is one.
                format!(
                    "token present: {}, debug: {token:?}, display: {token}",
                    !token.secret().is_empty()
                )
            }),
        )
        .route(
            "/token-hash",
            get(|token: AccessToken| async move {
                // A fingerprint of the token the handler got, never the token itself.
                use sha2::Digest;
                let digest = sha2::Sha256::digest(token.secret().as_bytes());
                digest
                    .iter()
                    .map(|b| format!("{b:02x}"))
                    .collect::<String>()
            }),
        )
        .route("/echo", post(|| async { "posted" }))
        .route("/logged-out", get(|| async { "logged out" }))
        .fallback(|user: AuthUser| async move {
            (
                StatusCode::NOT_FOUND,
                format!("no page here, {}", user.subject()),
            )
                .into_response()
        })
}

pub struct Options {
    pub client: Client,
    /// Changes the client's registration at the provider (after `client`).
    pub dev_client: Box<dyn FnOnce(DevClient) -> DevClient + Send>,
    pub provider: Box<dyn FnOnce(DevProviderBuilder) -> DevProviderBuilder + Send>,
    pub layer: Box<dyn FnOnce(LoginLayerBuilder) -> LoginLayerBuilder + Send>,
    pub routes: Option<Router>,
    /// Wrap the router (e.g. `require_login` on a sub-router) given the built layer.
    pub app: Option<Box<dyn FnOnce(LoginLayer) -> Router + Send>>,
    /// Configure the layer by OpenID Connect discovery of the provider (before `layer`).
    pub discover: bool,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            client: Client::Basic,
            dev_client: Box::new(|c| c),
            provider: Box::new(|b| b),
            layer: Box::new(|b| b),
            routes: None,
            app: None,
            discover: false,
        }
    }
}

pub async fn start() -> TestApp {
    start_with(Options::default()).await
}

pub async fn start_with(options: Options) -> TestApp {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let base = format!("http://{addr}");
    let redirect_url = format!("{base}/auth/callback");

    let dev_client = match options.client {
        Client::Basic => DevClient::confidential(CLIENT_ID, CLIENT_SECRET, &redirect_url),
        Client::Post => DevClient::confidential(CLIENT_ID, CLIENT_SECRET, &redirect_url)
            .with_auth(tower_oauth2_login_dev_provider::DevClientAuth::ClientSecretPost),
        Client::Public => DevClient::public(CLIENT_ID, &redirect_url),
    }
    .with_post_logout_redirect_uri(format!("{base}/auth/logout-callback"))
    .with_backchannel_logout_uri(format!("{base}/auth/backchannel-logout"));
    let dev_client = (options.dev_client)(dev_client);
    let provider = (options.provider)(
        DevProvider::builder()
            .with_client(dev_client)
            .with_auto_login("alice"),
    )
    .start()
    .await
    .unwrap();

    let mut builder = LoginLayer::builder();
    builder = if options.discover {
        builder
            .discover(provider.issuer())
            .await
            .expect("discovery of the embedded provider")
    } else {
        builder
            .with_authorization_endpoint(provider.authorization_endpoint())
            .with_token_endpoint(provider.token_endpoint())
            .with_userinfo_endpoint(provider.userinfo_endpoint())
            .with_issuer(provider.issuer())
    };
    builder = builder
        .with_client_id(CLIENT_ID)
        .with_redirect_url(&redirect_url)
        .with_scopes(["openid", "profile"])
        .with_logout_path("/logout")
        .with_post_logout_redirect("/logged-out")
        .with_public_path("/")
        .with_public_path("/logged-out")
        .with_cookie_key([7u8; 64]);
    match options.client {
        Client::Basic => builder = builder.with_client_secret(CLIENT_SECRET),
        Client::Post => {
            builder = builder
                .with_client_secret(CLIENT_SECRET)
                .with_client_auth(tower_oauth2_login::ClientAuth::ClientSecretPost)
        }
        Client::Public => {}
    }
    let layer = (options.layer)(builder)
        .build()
        .expect("valid test configuration");

    let app = match options.app {
        Some(make) => make(layer.clone()),
        None => options.routes.unwrap_or_else(routes).layer(layer.clone()),
    };
    let server = tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    TestApp {
        addr,
        base,
        redirect_url,
        provider,
        layer,
        server,
    }
}

/// One recorded response from the app, as the browser saw it.
#[derive(Clone, Debug)]
pub struct Seen {
    pub url: String,
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
}

impl Seen {
    pub fn location(&self) -> Option<&str> {
        self.headers.get(LOCATION).and_then(|v| v.to_str().ok())
    }

    pub fn set_cookies(&self) -> Vec<String> {
        self.headers
            .get_all(reqwest::header::SET_COOKIE)
            .iter()
            .map(|v| v.to_str().unwrap().to_string())
            .collect()
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// A browser: a cookie jar, no automatic redirects, and a transcript of all it received.
#[derive(Clone)]
pub struct Browser {
    pub http: reqwest::Client,
    pub jar: Arc<reqwest::cookie::Jar>,
    pub seen: Arc<Mutex<Vec<Seen>>>,
}

impl Default for Browser {
    fn default() -> Self {
        Self::new()
    }
}

impl Browser {
    pub fn new() -> Self {
        let jar = Arc::new(reqwest::cookie::Jar::default());
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .cookie_provider(Arc::clone(&jar))
            .build()
            .unwrap();
        Self {
            http,
            jar,
            seen: Arc::default(),
        }
    }

    /// A page load (`Accept: text/html`, `Sec-Fetch-Mode: navigate`).
    pub async fn get(&self, url: &str) -> Seen {
        self.request(
            Method::GET,
            url,
            &[(ACCEPT.as_str(), HTML), ("sec-fetch-mode", "navigate")],
        )
        .await
    }

    /// A fetch from JavaScript asking for JSON.
    pub async fn get_json(&self, url: &str) -> Seen {
        self.request(Method::GET, url, &[(ACCEPT.as_str(), "application/json")])
            .await
    }

    pub async fn request(&self, method: Method, url: &str, headers: &[(&str, &str)]) -> Seen {
        let mut req = self.http.request(method, url);
        for (n, v) in headers {
            req = req.header(*n, *v);
        }
        let res = req.send().await.unwrap();
        let seen = Seen {
            url: url.to_string(),
            status: res.status(),
            headers: res.headers().clone(),
            body: res.text().await.unwrap(),
        };
        self.seen.lock().unwrap().push(seen.clone());
        seen
    }

    /// Follows redirects like a browser, returning every hop.
    pub async fn follow(&self, url: &str) -> Vec<Seen> {
        let mut hops = Vec::new();
        let mut url = url.to_string();
        for _ in 0..10 {
            let seen = self.get(&url).await;
            let next = seen.location().map(|l| resolve(&url, l));
            hops.push(seen);
            match next {
                Some(next) => url = next,
                None => return hops,
            }
        }
        panic!("redirect loop: {hops:#?}");
    }

    /// The cookies the jar would send to `url`.
    pub fn cookies_for(&self, url: &str) -> String {
        self.jar
            .cookies(&url.parse().unwrap())
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default()
    }

    /// The value of the cookie `name` the jar would send to `url`.
    pub fn cookie(&self, url: &str, name: &str) -> Option<String> {
        self.cookies_for(url).split("; ").find_map(|pair| {
            let (n, v) = pair.split_once('=')?;
            (n == name).then(|| v.to_string())
        })
    }

    pub fn transcript(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

pub fn resolve(base: &str, location: &str) -> String {
    url::Url::parse(base)
        .unwrap()
        .join(location)
        .unwrap()
        .to_string()
}

/// The query parameter `name` of `url`.
pub fn param(url: &str, name: &str) -> Option<String> {
    url::Url::parse(url)
        .unwrap()
        .query_pairs()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.into_owned())
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// Starts a login by loading `path`; returns the authorization URL the app sent the
    /// browser to.
    pub async fn start_login(&self, browser: &Browser, path: &str) -> String {
        let res = browser.get(&self.url(path)).await;
        assert_eq!(res.status, StatusCode::SEE_OTHER, "{res:#?}");
        let location = res.location().expect("a Location").to_string();
        assert!(
            location.starts_with(&self.provider.authorization_endpoint()),
            "{location}"
        );
        location
    }

    /// Has the (auto-login) provider answer an authorization URL; returns the callback
    /// URL it redirects to.
    pub async fn authorize(&self, browser: &Browser, authorization_url: &str) -> String {
        let res = browser.get(authorization_url).await;
        assert!(res.status.is_redirection(), "{res:#?}");
        let location = res.location().unwrap().to_string();
        assert!(location.starts_with(&self.redirect_url), "{location}");
        location
    }

    /// A whole login that starts at `path`; returns the callback's answer.
    pub async fn login(&self, browser: &Browser, path: &str) -> Seen {
        let auth = self.start_login(browser, path).await;
        let callback = self.authorize(browser, &auth).await;
        browser.get(&callback).await
    }
}

/// The fingerprint `/token-hash` answers for `token`.
pub fn token_hash(token: &str) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(token.as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}
