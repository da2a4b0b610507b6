//! The steps of the login flow, one module each: [`login`] (a pending login and the
//! redirect to the provider), [`callback`] (the provider's answer, the code exchange, the
//! new session), [`refresh`] (a fresh access token), [`logout`] (RP-initiated logout and
//! its return) and [`backchannel_logout`] (the provider's logout token).
//!
//! The steps never call each other. What more than one of them needs is a leaf of its own:
//! [`pending`] (the pending-login cookie), [`return_to`] (where a login goes back to) and
//! [`deny`] (how a refused request is answered).

pub(crate) mod backchannel_logout;
pub(crate) mod callback;
pub(crate) mod deny;
pub(crate) mod login;
pub(crate) mod logout;
pub(crate) mod pending;
pub(crate) mod refresh;
pub(crate) mod return_to;
