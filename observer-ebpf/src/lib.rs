#![no_std]
//! Empty library target: lets `observer` declare this crate as a build
//! dependency so cargo rebuilds the agent when the kernel programs change.
