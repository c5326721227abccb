//! The client against a real registry (Debian's `docker-registry` on 127.0.0.1), against
//! `skopeo`, and against scripted stubs where a registry has to misbehave.

mod support;

mod attacks;
mod auth_basic;
mod auth_bearer;
mod interop;
mod retries;
mod roundtrip;
mod tls;
