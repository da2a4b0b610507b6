//! The layer over real HTTP (or as a plain Tower service) against the embedded provider, all in
//! this process: the login flow, the layer's settings, refresh, return paths, back-channel
//! logout, the OpenID Connect conformance cases and robustness.
//!
//! One binary for what needs nothing but cargo: `cargo test --test layer` runs anywhere, and
//! the shared test support is compiled and linked once rather than once per file. Tests that
//! start programs of their own (redis-server, node, the demo) are in `tests/external/`, the
//! browser tests in `tests/browser/`.
//!
//! The tests share this process and run on parallel threads, so none may touch process-wide
//! state (environment variables, a global tracing subscriber, fixed ports, rlimits): each
//! starts its own provider and app on free loopback ports.

#[path = "../support/mod.rs"]
mod support;

mod backchannel;
mod conformance;
mod layer;
mod login_flow;
mod refresh;
mod return_to;
mod robustness;
