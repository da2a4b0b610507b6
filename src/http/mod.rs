//! The HTTP vocabulary of the layer, below the flow: what kind of request this is
//! ([`classify`]: a browser navigation or an API call, same-site or not), the cookies it
//! reads and sets ([`cookie`]: every one of them through one place), and the pages and
//! redirects it answers with ([`page`]).

pub(crate) mod classify;
pub(crate) mod cookie;
pub(crate) mod page;
