//! The layer against programs outside this process: panva's `oidc-provider` on Node.js (as a
//! plain OAuth 2.0 provider and as an OpenID Connect provider), a private `redis-server` per
//! test for `RedisStore`, and the demo binary as the README starts it.
//!
//! One binary for what needs more than cargo: `bash scripts/test.sh` installs Node.js, the
//! provider's npm packages and redis-server; the demo binary is built by a plain `cargo test`
//! (`cargo build --examples` first when running `cargo test --test external` alone). What
//! needs nothing outside the process is in `tests/layer/`, the browser tests in
//! `tests/browser/`.
//!
//! The tests share this process and run on parallel threads: each starts its own provider,
//! redis-server or demo on free loopback ports, and none sets environment variables of this
//! process (the children get theirs through `Command::env`).

#[path = "../support/mod.rs"]
mod support;

mod demo;
mod interop_oidc;
mod interop_oidc_provider;
mod redis_store;
