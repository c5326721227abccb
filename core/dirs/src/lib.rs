//! The user's home and XDG base directories, read one way everywhere: `HOME` counts when it is
//! set and not empty (as every karapace command has always read it, the default store
//! included), an `XDG_*_HOME` variable only when it holds an absolute path (the XDG rule: a
//! relative one is ignored).
//!
//! The default store is not here: it is `~/.local/share/karapace` whatever `XDG_DATA_HOME`
//! says, as the standard tool has it (docs/cli.md).

use std::ffi::OsString;
use std::path::PathBuf;

/// `$HOME`, when set and not empty.
pub fn home() -> Option<PathBuf> {
    home_from(std::env::var_os("HOME"))
}

fn home_from(home: Option<OsString>) -> Option<PathBuf> {
    home.filter(|h| !h.is_empty()).map(PathBuf::from)
}

/// `$XDG_DATA_HOME`, else `~/.local/share`.
pub fn data_home() -> Option<PathBuf> {
    xdg_or_home("XDG_DATA_HOME", ".local/share")
}

/// `$XDG_CACHE_HOME`, else `~/.cache`.
pub fn cache_home() -> Option<PathBuf> {
    xdg_or_home("XDG_CACHE_HOME", ".cache")
}

/// karapace's own cache: `karapace` in [`cache_home`].
pub fn karapace_cache() -> Option<PathBuf> {
    cache_home().map(|c| c.join("karapace"))
}

fn xdg_or_home(var: &str, under_home: &str) -> Option<PathBuf> {
    resolve(std::env::var_os(var), std::env::var_os("HOME"), under_home)
}

fn resolve(xdg: Option<OsString>, home: Option<OsString>, under_home: &str) -> Option<PathBuf> {
    xdg.map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| home_from(home).map(|h| h.join(under_home)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(xdg: Option<&str>, home: Option<&str>) -> Option<PathBuf> {
        resolve(xdg.map(Into::into), home.map(Into::into), ".cache")
    }

    #[test]
    fn an_absolute_xdg_variable_wins_and_anything_else_falls_back_to_home() {
        assert_eq!(r(Some("/x"), Some("/h")), Some(PathBuf::from("/x")));
        assert_eq!(r(Some("rel"), Some("/h")), Some(PathBuf::from("/h/.cache")));
        assert_eq!(r(Some(""), Some("/h")), Some(PathBuf::from("/h/.cache")));
        assert_eq!(r(None, Some("/h")), Some(PathBuf::from("/h/.cache")));
    }

    #[test]
    fn an_empty_home_is_no_home() {
        assert_eq!(r(None, Some("")), None);
        assert_eq!(r(None, None), None);
        assert_eq!(home_from(Some("".into())), None);
        assert_eq!(home_from(Some("/h".into())), Some(PathBuf::from("/h")));
    }
}
