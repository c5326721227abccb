//! Name grammars.
//!
//! Package names end up as single arguments of a package manager run by a
//! resolver plugin, and each plugin owns its manager's grammar (a Gentoo atom
//! is `=app-editors/vim-9.1`, a Debian name may carry `:amd64`). The manifest
//! therefore only refuses what is unsafe as one argv element whatever the
//! manager: empty, too long, a leading '-' (an option), whitespace, control
//! characters (NUL included) or invisible formatting characters (bidi overrides). [`validate_package_name`] is that rule.
//!
//! [`validate_portable_package_name`] is the older intersection of apt, dnf,
//! zypper, pacman and apk (no pin or operator characters such as '=', ':',
//! '/', no quotes or shell metacharacters). GUI app names, which also name
//! exported desktop entries, keep it, and the plugin host applies it before
//! calling a plugin built against interface 1.0 (which was promised it).

use crate::error::NameError;

/// Longest accepted package or app name, in bytes.
pub const MAX_PACKAGE_NAME_LEN: usize = 128;
/// Longest accepted environment name, in bytes.
pub const MAX_ENV_NAME_LEN: usize = 64;

const PACKAGE_ALLOWED: &str = "ASCII letters, digits and . + - _ @";
const ARGV_ALLOWED: &str =
    "any character except whitespace, control characters and invisible formatting characters";
const ENV_ALLOWED: &str = "ASCII letters, digits, '_' and '-'";

/// Up to `max` of `candidates` close to `query` ("did you mean"), closest first.
/// Jaro-Winkler favours shared prefixes; Damerau-Levenshtein catches typos and transpositions in
/// short words ("wbe" → "web", "sytem" → "system").
pub fn similar(query: &str, candidates: &[&str], max: usize) -> Vec<String> {
    let mut scored: Vec<(f64, &str)> = candidates
        .iter()
        .map(|c| {
            let score = strsim::jaro_winkler(query, c)
                .max(strsim::normalized_damerau_levenshtein(query, c));
            (score, *c)
        })
        .filter(|(score, _)| *score >= 0.6)
        .collect();
    scored.sort_by(|a, b| b.0.total_cmp(&a.0).then_with(|| a.1.cmp(b.1)));
    scored.dedup_by(|a, b| a.1 == b.1);
    scored
        .into_iter()
        .take(max)
        .map(|(_, s)| s.to_owned())
        .collect()
}

/// Checks a `[system] packages` name: safe as one argv element, the rest is
/// the resolver plugin's grammar. Refuses an empty name, more than
/// [`MAX_PACKAGE_NAME_LEN`] bytes, a leading `-`, whitespace and control
/// characters.
pub fn validate_package_name(name: &str) -> Result<(), NameError> {
    if name.is_empty() {
        return Err(NameError::Empty);
    }
    if name.len() > MAX_PACKAGE_NAME_LEN {
        return Err(NameError::TooLong {
            len: name.len(),
            max: MAX_PACKAGE_NAME_LEN,
        });
    }
    if name.starts_with('-') {
        return Err(NameError::LeadingDash);
    }
    check_chars(name, ARGV_ALLOWED, |c| {
        !c.is_whitespace() && !c.is_control() && !is_invisible_format(c)
    })
}

/// Characters that change how text around them is shown, or show as nothing, without being
/// whitespace or controls: Unicode format characters (category Cf: bidirectional overrides and
/// isolates U+202A–U+202E and U+2066–U+2069, zero-width characters, the soft hyphen, the byte
/// order mark, tag characters), variation selectors, the combining grapheme joiner, and the
/// blank fillers (Hangul fillers, the blank Braille pattern, Khmer inherent vowels). In a name shown
/// to a user (a lock's package list, a `diff`, a plugin's variant) they make one name look like
/// another (`"vim\u{202e}lanimret"`), so names and other shown strings refuse them.
pub fn is_invisible_format(c: char) -> bool {
    matches!(
        c,
        '\u{00AD}'
            | '\u{034F}'
            | '\u{061C}'
            | '\u{115F}'
            | '\u{1160}'
            | '\u{17B4}'
            | '\u{17B5}'
            | '\u{180B}'..='\u{180F}'
            | '\u{200B}'..='\u{200F}'
            | '\u{202A}'..='\u{202E}'
            | '\u{2060}'..='\u{2064}'
            | '\u{2066}'..='\u{206F}'
            | '\u{2800}'
            | '\u{3164}'
            | '\u{FE00}'..='\u{FE0F}'
            | '\u{FEFF}'
            | '\u{FFA0}'
            | '\u{FFF9}'..='\u{FFFB}'
            | '\u{110BD}'
            | '\u{110CD}'
            | '\u{13430}'..='\u{1343F}'
            | '\u{1BCA0}'..='\u{1BCA3}'
            | '\u{1D173}'..='\u{1D17A}'
            | '\u{E0001}'
            | '\u{E0020}'..='\u{E007F}'
            | '\u{E0100}'..='\u{E01EF}'
    )
}

/// Checks a name against the cross-manager grammar
/// `[A-Za-z0-9][A-Za-z0-9.+_@-]{0,127}` (GUI app names; names sent to a
/// plugin built against interface 1.0).
pub fn validate_portable_package_name(name: &str) -> Result<(), NameError> {
    let first = name.chars().next().ok_or(NameError::Empty)?;
    if name.len() > MAX_PACKAGE_NAME_LEN {
        return Err(NameError::TooLong {
            len: name.len(),
            max: MAX_PACKAGE_NAME_LEN,
        });
    }
    if first == '-' {
        return Err(NameError::LeadingDash);
    }
    if !first.is_ascii_alphanumeric() {
        return Err(NameError::InvalidFirstChar { ch: first });
    }
    check_chars(name, PACKAGE_ALLOWED, |c| {
        c.is_ascii_alphanumeric() || matches!(c, '.' | '+' | '-' | '_' | '@')
    })
}

/// Checks an environment name: `[A-Za-z0-9_-]{1,64}`.
pub fn validate_env_name(name: &str) -> Result<(), NameError> {
    if name.is_empty() {
        return Err(NameError::Empty);
    }
    if name.len() > MAX_ENV_NAME_LEN {
        return Err(NameError::TooLong {
            len: name.len(),
            max: MAX_ENV_NAME_LEN,
        });
    }
    check_chars(name, ENV_ALLOWED, |c| {
        c.is_ascii_alphanumeric() || matches!(c, '_' | '-')
    })
}

fn check_chars(
    name: &str,
    allowed: &'static str,
    ok: impl Fn(char) -> bool,
) -> Result<(), NameError> {
    match name.chars().enumerate().find(|&(_, c)| !ok(c)) {
        Some((index, ch)) => Err(NameError::InvalidChar { ch, index, allowed }),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_real_package_names() {
        for n in [
            "curl",
            "build-essential",
            "libstdc++6",
            "g++",
            "python3.11",
            "lib32-mesa",
            "gtk+3.0",
            "perl-Test-Simple",
            "qt6-base_dev",
            "node@20",
            "7zip",
            "a",
        ] {
            assert_eq!(validate_portable_package_name(n), Ok(()), "{n}");
            assert_eq!(validate_package_name(n), Ok(()), "{n}");
        }
        assert_eq!(validate_portable_package_name(&"a".repeat(128)), Ok(()));
    }

    #[test]
    fn names_that_look_like_other_names_are_refused() {
        for name in [
            "vim\u{202e}mit",
            "curl\u{200b}",
            "\u{feff}bash",
            "jq\u{2066}x",
        ] {
            assert!(validate_package_name(name).is_err(), "{name:?}");
        }
        // Other non-ASCII letters are the plugin's business.
        assert_eq!(validate_package_name("paquet-é"), Ok(()));
    }

    #[test]
    fn rejects_option_like_and_hostile_names() {
        assert_eq!(
            validate_portable_package_name("-rf"),
            Err(NameError::LeadingDash)
        );
        assert_eq!(
            validate_portable_package_name("--allow-unauthenticated"),
            Err(NameError::LeadingDash)
        );
        assert_eq!(validate_portable_package_name(""), Err(NameError::Empty));
        assert_eq!(
            validate_portable_package_name(".hidden"),
            Err(NameError::InvalidFirstChar { ch: '.' })
        );
        assert_eq!(
            validate_portable_package_name("_x"),
            Err(NameError::InvalidFirstChar { ch: '_' })
        );
        assert_eq!(
            validate_portable_package_name(&"a".repeat(129)),
            Err(NameError::TooLong { len: 129, max: 128 })
        );
        for (name, ch, index) in [
            ("curl=7.88", '=', 4),
            ("curl bash", ' ', 4),
            ("curl\0", '\0', 4),
            ("a;rm", ';', 1),
            ("a|b", '|', 1),
            ("a$(x)", '$', 1),
            ("a`x`", '`', 1),
            ("a>b", '>', 1),
            ("a<b", '<', 1),
            ("libc6:i386", ':', 5),
            ("a/b", '/', 1),
            ("a\"b", '"', 1),
            ("a'b", '\'', 1),
            ("a*", '*', 1),
            ("a\nb", '\n', 1),
            ("a\tb", '\t', 1),
            ("café", 'é', 3),
        ] {
            assert_eq!(
                validate_portable_package_name(name),
                Err(NameError::InvalidChar {
                    ch,
                    index,
                    allowed: PACKAGE_ALLOWED
                }),
                "{name:?}"
            );
        }
        assert_eq!(
            validate_portable_package_name("ßtraße"),
            Err(NameError::InvalidFirstChar { ch: 'ß' })
        );
    }

    #[test]
    fn package_names_are_the_plugins_grammar_within_the_argv_rules() {
        for n in [
            "app-editors/vim",
            "=app-editors/vim-9.1.0366",
            ">=dev-lang/python-3.12",
            "libc6:i386",
            "curl=7.88",
            "node@20",
            "café",
        ] {
            assert_eq!(validate_package_name(n), Ok(()), "{n}");
        }
        assert_eq!(validate_package_name(""), Err(NameError::Empty));
        assert_eq!(validate_package_name("-rf"), Err(NameError::LeadingDash));
        assert_eq!(
            validate_package_name(&"a".repeat(129)),
            Err(NameError::TooLong { len: 129, max: 128 })
        );
        for (name, ch, index) in [
            ("curl bash", ' ', 4),
            ("curl\0", '\0', 4),
            ("a\nb", '\n', 1),
            ("a\tb", '\t', 1),
            ("a\u{1b}[2J", '\u{1b}', 1),
            ("a\u{a0}b", '\u{a0}', 1),
        ] {
            assert_eq!(
                validate_package_name(name),
                Err(NameError::InvalidChar {
                    ch,
                    index,
                    allowed: ARGV_ALLOWED
                }),
                "{name:?}"
            );
        }
    }

    #[test]
    fn env_names() {
        for n in ["dev", "my_env-2", "A", "-leading-dash-ok", &"x".repeat(64)] {
            assert_eq!(validate_env_name(n), Ok(()), "{n}");
        }
        assert_eq!(validate_env_name(""), Err(NameError::Empty));
        assert_eq!(
            validate_env_name(&"x".repeat(65)),
            Err(NameError::TooLong { len: 65, max: 64 })
        );
        for bad in ["a.b", "a b", "a/b", "é", "a\0", "a@b"] {
            assert!(
                matches!(validate_env_name(bad), Err(NameError::InvalidChar { .. })),
                "{bad:?}"
            );
        }
    }
}
