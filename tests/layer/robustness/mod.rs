//! Robustness: faults injected at the provider and in the session store, limits on what
//! is read, and properties of the whole layer over arbitrary callback requests and cookies.
//! (The parsers' own property tests are unit tests: `src/fuzzing/props.rs`.)

use crate::support;

mod fault_proxy;
mod faults;
mod layer_props;
mod limits;
