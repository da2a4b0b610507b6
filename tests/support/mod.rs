#![allow(dead_code)]

pub mod app;
pub mod oidc_provider;
pub mod redis;
