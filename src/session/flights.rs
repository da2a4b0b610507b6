//! Refreshes in flight, by session: the state that makes "one refresh per session at a
//! time" hold in this process (the store's refresh lock makes it hold across instances).
//! The refresh itself is a step of the flow; this is only what it leaves behind.

use std::sync::Arc;

use dashmap::DashMap;
use tokio::sync::watch;

use super::{Session, SessionKey};

/// What became of a session whose access token needed a refresh.
pub(crate) enum Refreshed {
    /// The session to serve the request with (refreshed, or still good enough).
    Session(Arc<Session>),
    /// The provider refused the refresh token (revoked, expired) or its answer failed the
    /// checks: the session has ended.
    Ended,
    /// The provider could not be asked (timeout, 5xx, store failure) and the token has
    /// expired: the request cannot be served now, but the session lives on.
    Unavailable,
}

/// Refreshes in flight, by session: the first request of a session starts the refresh in
/// a task of its own, and every request of the session that needs it (the first included)
/// waits for that task's outcome.
#[derive(Default)]
pub(crate) struct Flights {
    /// The outcome of each running refresh, `None` until it lands. Its sender is held by
    /// the refresh (the running refresh), which removes the entry when it ends, however it ends.
    pub(crate) running: DashMap<SessionKey, watch::Receiver<Option<Refreshed>>>,
    /// Refreshed sessions the store could not save. The provider may have rotated the
    /// refresh token away, so these hold the only live tokens: later requests use them and
    /// try the save again, rather than refresh with the stored, spent refresh token.
    pub(crate) unsaved: DashMap<SessionKey, Arc<Session>>,
}

impl Flights {
    /// Forgets what is kept of the session `key` (it has ended).
    pub(crate) fn forget(&self, key: &SessionKey) {
        self.unsaved.remove(key);
    }

    /// How many refreshes are running, for the tests.
    #[cfg(test)]
    pub(crate) fn running(&self) -> usize {
        self.running.len()
    }
}

impl Clone for Refreshed {
    fn clone(&self) -> Self {
        match self {
            Refreshed::Session(s) => Refreshed::Session(Arc::clone(s)),
            Refreshed::Ended => Refreshed::Ended,
            Refreshed::Unavailable => Refreshed::Unavailable,
        }
    }
}
