//! What an environment shares of the host: the policy files' rules for bind mounts, devices and
//! desktop integration ([`policy`]) and the caller's variables a workload may see ([`env`]).
//! The helper never parses TOML or reads the caller's environment: these rules are lowered here to
//! the plain bind mounts, devices and variables of a `RunSpec`, which the helper checks again.

pub mod env;
pub mod policy;
