//! `ENV_ID` argument resolution: full `env_id`, `short_id`, a unique prefix of either, or a name.
//!
//! Exact matches win over prefixes, in the order `env_id`, `short_id`, name. A miss suggests up to five
//! close candidates.

use crate::error::CoreError;

/// What identifies one environment on the command line.
pub trait Identified {
    fn env_id(&self) -> &str;
    fn short_id(&self) -> &str;
    fn name(&self) -> Option<&str>;
}

/// Returns the index in `envs` of the environment that `query` designates.
pub fn resolve<T: Identified>(envs: &[T], query: &str) -> Result<usize, CoreError> {
    let exact = |f: &dyn Fn(&T) -> bool| envs.iter().position(f);
    if let Some(i) = exact(&|e| e.env_id() == query)
        .or_else(|| exact(&|e| e.short_id() == query))
        .or_else(|| exact(&|e| e.name() == Some(query)))
    {
        return Ok(i);
    }
    // short_id is a prefix of env_id, so a prefix of either is a prefix of env_id. Prefixes are
    // only meaningful for hex strings: a name is never matched by prefix.
    let is_hex = !query.is_empty()
        && query
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase());
    if is_hex {
        let matches: Vec<usize> = envs
            .iter()
            .enumerate()
            .filter(|(_, e)| e.env_id().starts_with(query))
            .map(|(i, _)| i)
            .collect();
        match matches.len() {
            0 => {}
            1 => return Ok(matches[0]),
            count => {
                return Err(CoreError::Ambiguous {
                    prefix: query.to_owned(),
                    count,
                });
            }
        }
    }
    Err(CoreError::NoMatch {
        query: query.to_owned(),
        suggestions: suggestions(envs, query),
    })
}

/// Up to five names or short ids close to `query`, closest first.
fn suggestions<T: Identified>(envs: &[T], query: &str) -> Vec<String> {
    let candidates: Vec<&str> = envs
        .iter()
        .flat_map(|e| e.name().into_iter().chain(std::iter::once(e.short_id())))
        .collect();
    karapace_schema::similar(query, &candidates, 5)
}

#[cfg(test)]
mod tests {
    use super::*;

    struct E(&'static str, Option<&'static str>);
    impl Identified for E {
        fn env_id(&self) -> &str {
            self.0
        }
        fn short_id(&self) -> &str {
            &self.0[..12]
        }
        fn name(&self) -> Option<&str> {
            self.1
        }
    }

    const A: &str = "aaaa11112222333344445555666677778888999900001111222233334444aaaa";
    const B: &str = "aaab11112222333344445555666677778888999900001111222233334444bbbb";
    const C: &str = "cafe11112222333344445555666677778888999900001111222233334444cccc";

    fn envs() -> Vec<E> {
        vec![E(A, Some("web")), E(B, Some("worker")), E(C, Some("aaab"))]
    }

    #[test]
    fn exact_beats_prefix_in_spec_order() {
        let e = envs();
        assert_eq!(resolve(&e, A).unwrap(), 0);
        assert_eq!(resolve(&e, &B[..12]).unwrap(), 1);
        assert_eq!(resolve(&e, "worker").unwrap(), 1);
        // "aaab" is a name of C and a prefix of B: the exact name wins.
        assert_eq!(resolve(&e, "aaab").unwrap(), 2);
        assert_eq!(resolve(&e, "caf").unwrap(), 2);
    }

    #[test]
    fn ambiguous_prefix() {
        let err = resolve(&envs(), "aaa").unwrap_err();
        assert_eq!(
            err.to_string(),
            "ambiguous env_id prefix 'aaa': matches 2 environments"
        );
        assert_eq!(err.exit_code(), 1);
    }

    #[test]
    fn miss_suggests_close_names() {
        let err = resolve(&envs(), "wrker").unwrap_err();
        assert_eq!(err.to_string(), "no environment matching 'wrker'");
        let CoreError::NoMatch { suggestions, .. } = err else {
            panic!("not NoMatch")
        };
        assert_eq!(suggestions.first().map(String::as_str), Some("worker"));
        assert!(suggestions.len() <= 5);
        assert!(resolve(&Vec::<E>::new(), "x").is_err());
        assert!(resolve(&envs(), "").is_err());
    }
}
