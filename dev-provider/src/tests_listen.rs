//! Where the development provider may listen: loopback only, unless told otherwise in so
//! many words (it signs in anyone who types a name), and a warning whenever it runs.

use std::io::ErrorKind;
use std::sync::{Arc, Mutex};

use super::*;

fn at(addr: &str) -> DevProviderBuilder {
    DevProvider::builder().with_addr(addr.parse().expect("a socket address"))
}

#[tokio::test]
async fn refuses_to_listen_beyond_loopback() {
    for addr in [
        "0.0.0.0:0",
        "[::]:0",
        "192.0.2.1:0",
        "10.0.0.1:0",
        "169.254.1.1:0",
        "[2001:db8::1]:0",
        "[fe80::1]:0",
        "[::ffff:0.0.0.0]:0",
        "[::ffff:192.0.2.1]:0",
    ] {
        let error = at(addr).start().await.expect_err(addr);
        assert_eq!(error.kind(), ErrorKind::InvalidInput, "{addr}: {error}");
        let message = error.to_string();
        assert!(
            message.contains("loopback")
                && message.contains("allow_non_loopback_listen_address_insecure"),
            "{addr}: the error says what to do: {message}"
        );
    }
}

#[tokio::test]
async fn listens_on_loopback() {
    for addr in ["127.0.0.1:0", "127.0.0.2:0", "127.255.255.254:0", "[::1]:0"] {
        let provider = at(addr).start().await.expect(addr);
        assert!(provider.local_addr().ip().is_loopback(), "{addr}");
        provider.shutdown();
    }
    // IPv4-mapped loopback is loopback too; whether the system binds it is its business.
    let mapped = at("[::ffff:127.0.0.1]:0").start().await;
    assert!(
        mapped
            .as_ref()
            .map_or_else(|e| e.kind() != ErrorKind::InvalidInput, |_| true),
        "{:?}",
        mapped.as_ref().err()
    );
}

/// With the opt-in, the address is no longer refused: the check is passed, and what is
/// left is the system's bind (an address of TEST-NET-1, RFC 5737, which no interface of
/// this machine has, so that the test never listens beyond loopback itself).
#[tokio::test]
async fn the_opt_in_allows_other_addresses() {
    let error = at("192.0.2.1:0")
        .allow_non_loopback_listen_address_insecure(true)
        .start()
        .await
        .expect_err("nothing here has a TEST-NET address");
    assert_ne!(error.kind(), ErrorKind::InvalidInput, "{error}");
    // Turned off again, the default holds.
    let error = at("192.0.2.1:0")
        .allow_non_loopback_listen_address_insecure(true)
        .allow_non_loopback_listen_address_insecure(false)
        .start()
        .await
        .expect_err("refused");
    assert_eq!(error.kind(), ErrorKind::InvalidInput);
}

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn warns_whenever_it_runs() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_max_level(tracing::Level::WARN)
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    // Other tests start providers on other threads with no subscriber at all, and the
    // interest of the warning's callsite is cached for the whole process: ask again now
    // that this thread has one.
    tracing::callsite::rebuild_interest_cache();
    let provider = at("127.0.0.1:0").start().await.expect("loopback");
    provider.shutdown();
    let logged = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    assert!(
        logged.contains("WARN") && logged.contains("development") && logged.contains("production"),
        "{logged:?}"
    );
}
