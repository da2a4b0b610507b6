//! The README's first command: the demo starts with no environment, on the embedded
//! provider, and a person can sign in through the provider's form and see their name.
//!
//! Runs the example binary that `cargo test` builds beside the tests.

use crate::support;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use reqwest::StatusCode;
use support::app::Browser;

struct Demo(std::process::Child);

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn demo_binary() -> std::path::PathBuf {
    // target/<profile>/deps/external-<hash> → target/<profile>/examples/demo
    let exe = std::env::current_exe().unwrap();
    let profile_dir = exe.parent().unwrap().parent().unwrap();
    let path = profile_dir.join("examples").join("demo");
    assert!(
        path.exists(),
        "{} is missing: plain `cargo test` builds it (`cargo test --test external` alone does \
         not; `cargo build --example demo` does)",
        path.display()
    );
    path
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// Starts the demo on `port` with `env` (and nothing else); returns it, the banner it
/// printed, and a handle that yields its logs once it is gone.
fn spawn_demo(port: u16, env: &[(&str, &str)]) -> (Demo, String, std::thread::JoinHandle<String>) {
    let mut command = Command::new(demo_binary());
    command
        .env_clear()
        .env("APP_ADDR", format!("127.0.0.1:{port}"))
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        command.env(k, v);
    }
    let mut child = command.spawn().unwrap();
    let stdout = child.stdout.take().unwrap();
    let stderr = child.stderr.take().unwrap();
    let demo = Demo(child);
    let logs = std::thread::spawn(move || {
        BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
            .collect::<Vec<_>>()
            .join("\n")
    });
    let mut lines = BufReader::new(stdout).lines().map_while(Result::ok);
    let banner: Vec<String> = lines
        .by_ref()
        .take_while(|l| !l.contains("to sign in"))
        .collect();
    // Keep reading so the demo never writes into a closed pipe.
    std::thread::spawn(move || lines.for_each(drop));
    (demo, banner.join("\n"), logs)
}

#[tokio::test]
async fn demo_signs_a_person_in_through_the_form() {
    let port = free_port();
    let (demo, banner, logs) = spawn_demo(port, &[]);
    assert!(
        banner.contains(&format!("Demo app:  http://127.0.0.1:{port}/")),
        "{banner}"
    );
    assert!(banner.contains("sign in with any user name"), "{banner}");
    let base = format!("http://127.0.0.1:{port}");

    let browser = Browser::new();
    assert!(browser
        .get(&format!("{base}/"))
        .await
        .body
        .contains("Not signed in"));
    assert_eq!(browser.get(&format!("{base}/healthz")).await.body, "ok");
    assert_eq!(
        browser.get_json(&format!("{base}/me")).await.status,
        StatusCode::UNAUTHORIZED
    );

    // The protected page sends the browser to the provider's sign-in form.
    let start = browser.get(&format!("{base}/protected")).await;
    assert_eq!(start.status, StatusCode::SEE_OTHER);
    let authorize = start.location().unwrap().to_string();
    let form = browser.get(&authorize).await;
    assert_eq!(form.status, StatusCode::OK);
    assert!(form.body.contains("sign in as any user"), "{}", form.body);
    let pending = form
        .body
        .split("name=\"pending\" value=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .unwrap()
        .to_string();
    let form_action = url::Url::parse(&authorize)
        .unwrap()
        .join("/authorize")
        .unwrap();
    let posted = browser
        .http
        .post(form_action)
        .form(&[
            ("pending", pending.as_str()),
            ("username", "maria"),
            ("action", "login"),
        ])
        .send()
        .await
        .unwrap();
    assert!(posted.status().is_redirection());
    let callback = posted.headers()["location"].to_str().unwrap().to_string();

    let hops = browser.follow(&callback).await;
    let page = hops.last().unwrap();
    assert_eq!(page.url, format!("{base}/protected"));
    assert!(page.body.contains("Welcome, <b>Maria</b>"), "{}", page.body);
    assert!(page.body.contains("<code id=\"subject\">maria</code>"));

    let me = browser.get_json(&format!("{base}/me")).await;
    let me: serde_json::Value = serde_json::from_str(&me.body).unwrap();
    assert_eq!(me["subject"], "maria");

    // The demo speaks OpenID Connect with its provider: an ID token was verified.
    let issuer = authorize.split("/authorize").next().unwrap();
    assert_eq!(me["claims"]["iss"], issuer);

    // "Sign out" is a link to the layer's page, whose button POSTs: out here, then at the
    // provider, and back.
    let page = browser.get(&format!("{base}/logout")).await;
    assert_eq!(page.status, reqwest::StatusCode::OK);
    assert!(
        page.body
            .contains(r#"<form method="post" action="/logout">"#),
        "{}",
        page.body
    );
    let out = browser
        .request(
            reqwest::Method::POST,
            &format!("{base}/logout"),
            &[("origin", base.as_str())],
        )
        .await;
    let end_session = out.location().unwrap().to_string();
    assert!(
        end_session.starts_with(&format!("{issuer}/end_session?")),
        "{end_session}"
    );
    let hops = browser.follow(&end_session).await;
    assert_eq!(hops.last().unwrap().url, format!("{base}/logged-out"));
    assert!(browser
        .get(&format!("{base}/"))
        .await
        .body
        .contains("Not signed in"));

    drop(demo);
    let logs = logs.join().unwrap();
    assert!(logs.contains("login completed"), "logs: {logs:?}");
    assert!(!logs.contains(&pending), "no secret in the logs");
    assert!(!logs.contains(&callback), "the code is not logged");
}

#[tokio::test]
async fn demo_signs_in_through_discovery_against_a_real_provider() {
    use support::oidc_provider::{
        complete_login_with, provider_http_client, OidcProvider, CONFIDENTIAL_CLIENT_ID,
        CONFIDENTIAL_CLIENT_SECRET,
    };
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let provider = OidcProvider::start(&[format!("{base}/auth/callback")]).await;
    let (_demo, banner, _logs) = spawn_demo(
        port,
        &[
            ("OAUTH_ISSUER", provider.issuer()),
            ("OAUTH_CLIENT_ID", CONFIDENTIAL_CLIENT_ID),
            ("OAUTH_CLIENT_SECRET", CONFIDENTIAL_CLIENT_SECRET),
        ],
    );
    assert!(banner.contains(provider.issuer()), "{banner}");

    let browser = Browser::new();
    let start = browser.get(&format!("{base}/protected")).await;
    assert_eq!(start.status, StatusCode::SEE_OTHER, "{start:#?}");
    let auth = start.location().unwrap().to_string();
    assert!(
        auth.starts_with(&provider.authorization_endpoint()),
        "{auth}"
    );
    let callback = complete_login_with(&provider_http_client(), &auth, "carla").await;
    let hops = browser.follow(callback.as_str()).await;
    let page = hops.last().unwrap();
    assert!(page.body.contains("Welcome, <b>Carla</b>"), "{}", page.body);
    assert!(page.body.contains("<code id=\"subject\">carla</code>"));
}

/// The embedded provider signs in anyone who types a name: told to listen beyond loopback,
/// the demo never listens there, not even for a moment, and says why it does not start.
#[test]
fn demo_refuses_a_provider_beyond_loopback() {
    let child = Command::new(demo_binary())
        .env_clear()
        .env("APP_ADDR", format!("127.0.0.1:{}", free_port()))
        .env("DEV_PROVIDER_ADDR", "0.0.0.0:0")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut demo = Demo(child);
    // A demo that started would serve until killed: give it a while to exit instead.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let status = loop {
        if let Some(status) = demo.0.try_wait().unwrap() {
            break status;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the demo started with its provider on 0.0.0.0"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    assert!(!status.success());
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut demo.0.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(
        !stderr.contains("listening"),
        "the provider listened beyond loopback: {stderr}"
    );
    assert!(
        stderr.contains("DEV_PROVIDER_ADDR=0.0.0.0:0") && stderr.contains("loopback only"),
        "{stderr}"
    );
}
