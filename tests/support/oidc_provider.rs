//! panva's `oidc-provider` (npm) as a real, independent OpenID Provider for interop tests.
//!
//! The provider lives in `tests/oidc-provider/` (`server.mjs`, pinned in `package.json` /
//! `package-lock.json`). Its `node_modules` must be installed first — `scripts/test.sh` does it,
//! or by hand: `npm ci --prefix tests/oidc-provider`. A missing install is a test failure,
//! never a skip.
//!
//! Every [`OidcProvider`] is its own `node` process on a free loopback port, killed when the
//! value is dropped. Registered clients (all `authorization_code` + `refresh_token`, response
//! type `code`, PKCE S256 required, refresh tokens always issued):
//!
//! | client id                | secret                   | token endpoint auth     |
//! |--------------------------|--------------------------|-------------------------|
//! | [`CONFIDENTIAL_CLIENT_ID`] | [`CONFIDENTIAL_CLIENT_SECRET`] | `client_secret_basic` |
//! | [`POST_CLIENT_ID`]       | [`POST_CLIENT_SECRET`]   | `client_secret_post`    |
//! | [`PUBLIC_CLIENT_ID`]     | none                     | `none`                  |
//!
//! Users: any login name works (any non-empty password). `sub` is the login name, `name` the
//! login name capitalised, `preferred_username` the login name, `email` `<login>@example.com`
//! (scopes `openid`, `profile`, `email`). Consent is granted automatically; the login form is
//! always shown for a new provider session.
//!
//! [`complete_login`] plays the user: given the authorization URL the app redirected to, it fills
//! in the provider's login form and returns the redirect back to the app. The provider's output
//! is kept and printed when a test panics while an [`OidcProvider`] is alive; set
//! `OIDC_PROVIDER_LOG=1` to see its stderr live.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use url::Url;

/// `client_secret_basic` client.
pub const CONFIDENTIAL_CLIENT_ID: &str = "rp-confidential";
/// Secret of [`CONFIDENTIAL_CLIENT_ID`].
pub const CONFIDENTIAL_CLIENT_SECRET: &str = "rp-confidential-secret";
/// `client_secret_post` client.
pub const POST_CLIENT_ID: &str = "rp-post";
/// Secret of [`POST_CLIENT_ID`].
pub const POST_CLIENT_SECRET: &str = "rp-post-secret";
/// Public client (`token_endpoint_auth_method: none`).
pub const PUBLIC_CLIENT_ID: &str = "rp-public";

/// Password typed into the provider's login form (the development login accepts any).
pub const LOGIN_PASSWORD: &str = "any-password";

/// How long [`OidcProvider::start`] waits for the `READY` line.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);
/// Redirect / form hops [`complete_login`] follows before giving up.
const MAX_LOGIN_STEPS: usize = 20;
/// Lines of the provider's output kept for failure messages.
const LOG_LINES_KEPT: usize = 2000;

/// Options for [`OidcProvider::start_with`].
#[derive(Debug, Clone, Default)]
pub struct OidcProviderOptions {
    /// Registered as `redirect_uris` of every client. At least one is required.
    pub redirect_uris: Vec<String>,
    /// Registered as `post_logout_redirect_uris` of every client.
    pub post_logout_redirect_uris: Vec<String>,
    /// Access token lifetime in whole seconds (the provider's default: 3600).
    pub access_token_ttl: Option<Duration>,
    /// The loopback address to listen on (and so the issuer's host); `127.0.0.1` when unset.
    /// The browser tests use `127.0.0.2`, another site than an app on `127.0.0.1`.
    pub host: Option<String>,
}

impl OidcProviderOptions {
    pub fn new(redirect_uris: &[String]) -> Self {
        Self {
            redirect_uris: redirect_uris.to_vec(),
            ..Self::default()
        }
    }

    pub fn post_logout_redirect_uris(mut self, uris: &[String]) -> Self {
        self.post_logout_redirect_uris = uris.to_vec();
        self
    }

    /// Rounded up to whole seconds, at least 1.
    pub fn access_token_ttl(mut self, ttl: Duration) -> Self {
        self.access_token_ttl = Some(ttl);
        self
    }

    /// Listens on `host` (an address such as `127.0.0.2`) instead of `127.0.0.1`.
    pub fn host(mut self, host: &str) -> Self {
        self.host = Some(host.to_owned());
        self
    }
}

/// A running `oidc-provider`; the `node` process is killed on drop.
pub struct OidcProvider {
    child: Child,
    // Held open so that the provider (started with EXIT_ON_STDIN_CLOSE=1) exits by itself should
    // this test process die without running Drop.
    stdin: Option<ChildStdin>,
    issuer: String,
    log: Arc<Mutex<VecDeque<String>>>,
    /// Print the provider's output when dropped during a panic (off when the panic message
    /// already carries it).
    logs_on_panic: bool,
}

impl OidcProvider {
    /// Starts a provider whose clients all have `redirect_uris` registered.
    pub async fn start(redirect_uris: &[String]) -> OidcProvider {
        Self::start_with(OidcProviderOptions::new(redirect_uris)).await
    }

    /// Starts a provider with the given options. Panics (never skips) if the provider is not
    /// installed, cannot be started, or does not report `READY` within 30 seconds.
    pub async fn start_with(options: OidcProviderOptions) -> OidcProvider {
        assert!(
            !options.redirect_uris.is_empty(),
            "OidcProvider needs at least one redirect URI"
        );
        let dir = provider_dir();
        if !dir.join("node_modules").join("oidc-provider").is_dir() {
            panic!(
                "the test OpenID Provider is not installed: {} has no node_modules/oidc-provider.\n\
                 Run `npm ci --prefix tests/oidc-provider` (or `bash scripts/test.sh`, which does it) \
                 from the repository root.",
                dir.display()
            );
        }

        let mut command = Command::new("node");
        command
            .arg("server.mjs")
            .current_dir(&dir)
            .env("PORT", "0")
            .env("HOST", options.host.as_deref().unwrap_or("127.0.0.1"))
            .env_remove("ISSUER")
            .env("REDIRECT_URIS", options.redirect_uris.join(","))
            .env("EXIT_ON_STDIN_CLOSE", "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if options.post_logout_redirect_uris.is_empty() {
            command.env_remove("POST_LOGOUT_REDIRECT_URIS");
        } else {
            command.env(
                "POST_LOGOUT_REDIRECT_URIS",
                options.post_logout_redirect_uris.join(","),
            );
        }
        match options.access_token_ttl {
            Some(ttl) => {
                let secs = ttl.as_secs() + u64::from(ttl.subsec_nanos() > 0);
                command.env("ACCESS_TOKEN_TTL", secs.max(1).to_string());
            }
            None => {
                command.env_remove("ACCESS_TOKEN_TTL");
            }
        }

        let mut child = command.spawn().unwrap_or_else(|e| {
            panic!(
                "cannot start `node server.mjs` in {}: {e} (is Node.js 20+ on PATH?)",
                dir.display()
            )
        });
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().expect("piped stdout");
        let stderr = child.stderr.take().expect("piped stderr");

        let log = Arc::new(Mutex::new(VecDeque::new()));
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel::<String>();

        // Plain threads, not tasks: they must keep draining the pipes whatever runtime the
        // test uses, and for as long as the child lives.
        {
            let log = Arc::clone(&log);
            std::thread::spawn(move || {
                let mut ready_tx = Some(ready_tx);
                for line in BufReader::new(stdout).lines() {
                    let Ok(line) = line else { break };
                    if let Some(issuer) = line.strip_prefix("READY ") {
                        if let Some(tx) = ready_tx.take() {
                            let _ = tx.send(issuer.trim().to_owned());
                        }
                    }
                    push_log(&log, format!("[stdout] {line}"));
                }
            });
        }
        {
            let log = Arc::clone(&log);
            std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines() {
                    let Ok(line) = line else { break };
                    if std::env::var_os("OIDC_PROVIDER_LOG").is_some() {
                        eprintln!("[oidc-provider] {line}");
                    }
                    push_log(&log, format!("[stderr] {line}"));
                }
            });
        }

        let mut provider = OidcProvider {
            child,
            stdin,
            issuer: String::new(),
            log,
            logs_on_panic: true,
        };
        match tokio::time::timeout(STARTUP_TIMEOUT, ready_rx).await {
            Ok(Ok(issuer)) => {
                provider.issuer = issuer;
                provider
            }
            Ok(Err(_)) => {
                provider.logs_on_panic = false;
                // stdout closed without READY: the process exited.
                let status = provider.child.wait().ok();
                // Give the stderr reader a moment to collect the last lines.
                tokio::time::sleep(Duration::from_millis(100)).await;
                panic!(
                    "oidc-provider exited before it was ready (status {status:?}).\n{}",
                    provider.logs()
                );
            }
            Err(_) => {
                provider.logs_on_panic = false;
                panic!(
                    "oidc-provider did not print READY within {STARTUP_TIMEOUT:?}.\n{}",
                    provider.logs()
                )
            }
        }
    }

    /// The issuer identifier, e.g. `http://127.0.0.1:41234` (no trailing slash).
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// `{issuer}/.well-known/openid-configuration`
    pub fn discovery_url(&self) -> String {
        self.endpoint("/.well-known/openid-configuration")
    }

    /// `{issuer}/auth`
    pub fn authorization_endpoint(&self) -> String {
        self.endpoint("/auth")
    }

    /// `{issuer}/token`
    pub fn token_endpoint(&self) -> String {
        self.endpoint("/token")
    }

    /// `{issuer}/me`
    pub fn userinfo_endpoint(&self) -> String {
        self.endpoint("/me")
    }

    /// `{issuer}/jwks`
    pub fn jwks_uri(&self) -> String {
        self.endpoint("/jwks")
    }

    /// `{issuer}/session/end`
    pub fn end_session_endpoint(&self) -> String {
        self.endpoint("/session/end")
    }

    /// `{issuer}/token/revocation`
    pub fn revocation_endpoint(&self) -> String {
        self.endpoint("/token/revocation")
    }

    /// Everything the provider printed so far (stdout and stderr, marked), for failure messages.
    /// Set `OIDC_PROVIDER_LOG=1` to also see its stderr live.
    pub fn logs(&self) -> String {
        let log = self.log.lock().unwrap_or_else(|e| e.into_inner());
        let mut out = String::from("--- oidc-provider output ---\n");
        for line in log.iter() {
            out.push_str(line);
            out.push('\n');
        }
        out.push_str("--- end of oidc-provider output ---");
        out
    }

    fn endpoint(&self, path: &str) -> String {
        format!("{}{}", self.issuer.trim_end_matches('/'), path)
    }
}

impl Drop for OidcProvider {
    fn drop(&mut self) {
        if self.logs_on_panic && std::thread::panicking() {
            // Printed on the test's thread, so the test harness shows it with the failure.
            eprintln!("{}", self.logs());
        }
        drop(self.stdin.take());
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn provider_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("oidc-provider")
}

fn push_log(log: &Mutex<VecDeque<String>>, line: String) {
    let mut log = log.lock().unwrap_or_else(|e| e.into_inner());
    if log.len() == LOG_LINES_KEPT {
        log.pop_front();
    }
    log.push_back(line);
}

/// A client for talking to the provider as a browser would: its own cookie jar, no automatic
/// redirects. Use one with [`complete_login_with`] to keep a provider session (SSO, logout).
pub fn provider_http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .cookie_store(true)
        .timeout(Duration::from_secs(30))
        .build()
        .expect("build reqwest client")
}

/// Given an authorization URL the app redirected to, drives the provider's login form (and the
/// consent form, should one appear) as user `username` with a fresh client of its own (cookie
/// jar, no redirects followed), and returns the final redirect `Location` that points back to the
/// `redirect_uri` of the authorization request — with `code`, `state` and `iss`, or with `error`
/// if the provider refused the request. Panics on anything else.
pub async fn complete_login(authorization_url: &str, username: &str) -> Url {
    complete_login_with(&provider_http_client(), authorization_url, username).await
}

/// [`complete_login`] with a caller-supplied client (see [`provider_http_client`]): a second call
/// with the same client finds the provider session and skips the login form.
pub async fn complete_login_with(
    client: &reqwest::Client,
    authorization_url: &str,
    username: &str,
) -> Url {
    let start = Url::parse(authorization_url)
        .unwrap_or_else(|e| panic!("not an absolute URL: {authorization_url:?}: {e}"));
    let redirect_uri = start
        .query_pairs()
        .find(|(k, _)| k == "redirect_uri")
        .map(|(_, v)| {
            Url::parse(&v).unwrap_or_else(|e| panic!("redirect_uri {v:?} is not a URL: {e}"))
        });
    let is_final = |location: &Url| match &redirect_uri {
        Some(r) => {
            location.scheme() == r.scheme()
                && location.host_str() == r.host_str()
                && location.port_or_known_default() == r.port_or_known_default()
                && location.path() == r.path()
        }
        // Without a redirect_uri parameter: the first redirect that leaves the provider.
        None => location.origin() != start.origin(),
    };

    let mut trail = vec![format!("GET {start}")];
    let mut response = send(client, client.get(start.clone()), &trail).await;
    for _ in 0..MAX_LOGIN_STEPS {
        let url = response.url().clone();
        let status = response.status();
        if status.is_redirection() {
            let location = response
                .headers()
                .get(reqwest::header::LOCATION)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_else(|| panic!("{status} without Location from {url}; {trail:?}"));
            let next = url
                .join(location)
                .unwrap_or_else(|e| panic!("bad Location {location:?} from {url}: {e}"));
            if is_final(&next) {
                return next;
            }
            trail.push(format!("{status} -> GET {next}"));
            response = send(client, client.get(next), &trail).await;
            continue;
        }

        let body = response.text().await.unwrap_or_default();
        if !status.is_success() {
            panic!("provider answered {status} at {url}:\n{body}\nsteps: {trail:#?}");
        }
        // Submit the page's first form as a person (or its script) would: the login form with
        // `username`, anything else (consent, the "end the other session" auto-submit page
        // shown when `prompt=login` switches users) with its own fields.
        let form = Form::parse(&body)
            .unwrap_or_else(|| panic!("no form in the page at {url}:\n{body}\nsteps: {trail:#?}"));
        let action = url
            .join(&form.action)
            .unwrap_or_else(|e| panic!("bad form action {:?} at {url}: {e}", form.action));
        let mut fields = form.fields;
        let is_login = fields.iter().any(|(name, _)| name == "login");
        if is_login {
            fields.retain(|(name, _)| name != "login" && name != "password");
            fields.push(("login".into(), username.into()));
            fields.push(("password".into(), LOGIN_PASSWORD.into()));
        }
        let what = if is_login {
            format!("login as {username}")
        } else {
            format!("{fields:?}")
        };
        trail.push(format!("{status} -> POST {action} ({what})"));
        response = send(client, client.post(action).form(&fields), &trail).await;
    }
    panic!("login did not finish within {MAX_LOGIN_STEPS} steps: {trail:#?}");
}

/// RP-initiated logout as the user of `client` (the client that logged in, see
/// [`complete_login_with`]): opens `end_session_url` (the app's redirect to the provider's
/// `/session/end`, with `id_token_hint` / `client_id`, `post_logout_redirect_uri`, `state`),
/// answers "Yes, sign me out" and returns the redirect `Location` that leaves the provider — the
/// `post_logout_redirect_uri` with `state` — or, without one, the provider's own
/// "signed out" page URL.
pub async fn complete_logout_with(client: &reqwest::Client, end_session_url: &str) -> Url {
    let start = Url::parse(end_session_url)
        .unwrap_or_else(|e| panic!("not an absolute URL: {end_session_url:?}: {e}"));
    let mut trail = vec![format!("GET {start}")];
    let mut response = send(client, client.get(start.clone()), &trail).await;
    for _ in 0..MAX_LOGIN_STEPS {
        let url = response.url().clone();
        let status = response.status();
        if status.is_redirection() {
            let location = response
                .headers()
                .get(reqwest::header::LOCATION)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_else(|| panic!("{status} without Location from {url}; {trail:?}"));
            let next = url
                .join(location)
                .unwrap_or_else(|e| panic!("bad Location {location:?} from {url}: {e}"));
            if next.origin() != start.origin() {
                return next;
            }
            trail.push(format!("{status} -> GET {next}"));
            response = send(client, client.get(next), &trail).await;
            continue;
        }
        let body = response.text().await.unwrap_or_default();
        if !status.is_success() {
            panic!("provider answered {status} at {url}:\n{body}\nsteps: {trail:#?}");
        }
        let Some(form) = Form::parse(&body) else {
            // The provider's own "Sign-out Success" page: no post_logout_redirect_uri.
            return url;
        };
        let action = url
            .join(&form.action)
            .unwrap_or_else(|e| panic!("bad form action {:?} at {url}: {e}", form.action));
        let mut fields = form.fields;
        // The logout page's "Yes, sign me out" button sits outside the form (form="...").
        if body.contains("op.logoutForm") && !fields.iter().any(|(name, _)| name == "logout") {
            fields.push(("logout".into(), "yes".into()));
        }
        trail.push(format!("{status} -> POST {action} ({fields:?})"));
        response = send(client, client.post(action).form(&fields), &trail).await;
    }
    panic!("logout did not finish within {MAX_LOGIN_STEPS} steps: {trail:#?}");
}

async fn send(
    client: &reqwest::Client,
    request: reqwest::RequestBuilder,
    trail: &[String],
) -> reqwest::Response {
    let request = request.build().expect("build request");
    client
        .execute(request)
        .await
        .unwrap_or_else(|e| panic!("request to the provider failed: {e}; steps: {trail:#?}"))
}

/// The first `<form>` of a page: enough HTML parsing for oidc-provider's own pages.
struct Form {
    action: String,
    /// `(name, value)` of every named `<input>`, in document order.
    fields: Vec<(String, String)>,
}

impl Form {
    fn parse(html: &str) -> Option<Form> {
        let start = html.find("<form")?;
        let end = html[start..]
            .find("</form>")
            .map_or(html.len(), |e| start + e);
        let form = &html[start..end];
        let open_tag = &form[..form.find('>')?];
        let action = attribute(open_tag, "action")?;
        let fields = form
            .match_indices("<input")
            .filter_map(|(i, _)| {
                let tag = &form[i..i + form[i..].find('>')?];
                Some((
                    attribute(tag, "name")?,
                    attribute(tag, "value").unwrap_or_default(),
                ))
            })
            .collect();
        Some(Form { action, fields })
    }
}

/// The value of the double-quoted attribute `name` in the tag text `tag`, entities undone.
fn attribute(tag: &str, name: &str) -> Option<String> {
    let needle = format!(" {name}=\"");
    let start = tag.find(&needle)? + needle.len();
    let end = start + tag[start..].find('"')?;
    Some(unescape_html(&tag[start..end]))
}

fn unescape_html(s: &str) -> String {
    s.replace("&quot;", "\"")
        .replace("&#34;", "\"")
        .replace("&#39;", "'")
        .replace("&#x27;", "'")
        .replace("&#x2F;", "/")
        .replace("&#47;", "/")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}
