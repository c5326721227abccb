//! Manifest v1, lock v2 and the env_id identity contract.
