//! The session settings: where sessions live, how long they last, and the cookie key.

use std::sync::Arc;
use std::time::Duration;

use tower_cookies::Key;

use super::LoginLayerBuilder;
use crate::error::ConfigError;
use crate::session::{MemoryStore, SessionStore};

/// The session settings as given.
pub(super) struct SessionSettings {
    store: Option<Arc<dyn SessionStore>>,
    cookie_key: Option<Vec<u8>>,
    idle_timeout: Duration,
    absolute_lifetime: Duration,
    pending_lifetime: Duration,
    refresh_skew: Duration,
}

impl Default for SessionSettings {
    fn default() -> Self {
        Self {
            store: None,
            cookie_key: None,
            idle_timeout: Duration::from_secs(8 * 60 * 60),
            absolute_lifetime: Duration::from_secs(7 * 24 * 60 * 60),
            pending_lifetime: Duration::from_secs(10 * 60),
            refresh_skew: Duration::from_secs(60),
        }
    }
}

/// The checked session settings.
pub(super) struct Sessions {
    pub(super) store: Arc<dyn SessionStore>,
    pub(super) key: Key,
    pub(super) idle_timeout: Duration,
    pub(super) absolute_lifetime: Duration,
    pub(super) pending_lifetime: Duration,
    pub(super) refresh_skew: Duration,
}

impl SessionSettings {
    /// Checks the lifetimes and the key; the default store is a [`MemoryStore`].
    pub(super) fn build(self) -> Result<Sessions, ConfigError> {
        if self.idle_timeout.is_zero() || self.absolute_lifetime.is_zero() {
            return Err(ConfigError::InvalidDuration {
                field: "session lifetime",
                reason: "must be more than zero",
            });
        }
        if self.pending_lifetime < Duration::from_secs(30) {
            return Err(ConfigError::InvalidDuration {
                field: "login timeout",
                reason: "must be at least 30 seconds",
            });
        }
        let key = match self.cookie_key {
            Some(bytes) => Key::try_from(bytes.as_slice())
                .map_err(|_| ConfigError::CookieKeyTooShort(bytes.len()))?,
            None => {
                tracing::warn!(
                    "no cookie key configured: using a random one; logins in progress \
                     during a restart will have to start again, and several instances \
                     will not understand each other's cookies"
                );
                Key::generate()
            }
        };
        Ok(Sessions {
            store: self.store.unwrap_or_else(|| Arc::new(MemoryStore::new())),
            key,
            idle_timeout: self.idle_timeout,
            absolute_lifetime: self.absolute_lifetime,
            pending_lifetime: self.pending_lifetime,
            refresh_skew: self.refresh_skew,
        })
    }
}

/// # Sessions
///
/// A session lives on the server (in a [`MemoryStore`] unless you give another store);
/// the browser holds only its random id. It ends after the idle timeout without use, or
/// after its absolute lifetime however much it is used.
///
/// ```
/// use std::time::Duration;
/// use tower_oauth2_login::MemoryStore;
///
/// let key = [7u8; 64]; // in production: 64 random bytes from your secret store
/// let builder = tower_oauth2_login::LoginLayer::builder()
///     .with_store(MemoryStore::new())
///     .with_cookie_key(key)
///     .with_idle_timeout(Duration::from_secs(30 * 60))
///     .with_absolute_lifetime(Duration::from_secs(12 * 60 * 60))
///     .with_login_timeout(Duration::from_secs(5 * 60))
///     .with_refresh_skew(Duration::from_secs(30));
/// # let _ = builder;
/// ```
impl LoginLayerBuilder {
    /// Where sessions are kept. Default: a [`MemoryStore`].
    pub fn with_store(mut self, store: impl SessionStore) -> Self {
        self.session.store = Some(Arc::new(store));
        self
    }

    /// The key that seals the pending-login cookies: at least 64 random bytes. Without
    /// it a random key is made at start-up (with a warning), and logins in progress
    /// during a restart must start again. Several instances must share one key.
    pub fn with_cookie_key(mut self, key: impl AsRef<[u8]>) -> Self {
        self.session.cookie_key = Some(key.as_ref().to_vec());
        self
    }

    /// How long a session lasts without being used. Default 8 hours.
    pub fn with_idle_timeout(mut self, timeout: Duration) -> Self {
        self.session.idle_timeout = timeout;
        self
    }

    /// How long a session lasts at most, however much it is used. Default 7 days.
    pub fn with_absolute_lifetime(mut self, lifetime: Duration) -> Self {
        self.session.absolute_lifetime = lifetime;
        self
    }

    /// How long a user may take at the provider to sign in. Default 10 minutes; at
    /// least 30 seconds.
    pub fn with_login_timeout(mut self, lifetime: Duration) -> Self {
        self.session.pending_lifetime = lifetime;
        self
    }

    /// How long before its expiry the access token is refreshed (with the refresh token,
    /// on the next request of the session). Default 60 s; never more than a quarter of the
    /// token's lifetime.
    pub fn with_refresh_skew(mut self, skew: Duration) -> Self {
        self.session.refresh_skew = skew;
        self
    }
}
