//! The D-Bus errors of `org.karapace.Manager1`: one name per kind of failure a client can act on,
//! chosen from the engine's error *type* (never from its message), with the engine's readable
//! message as the error's text.
//!
//! Every D-Bus error reply is a failure to a client that only checks for one, so clients written
//! for `org.freedesktop.DBus.Error.Failed` keep working; `org.karapace.Error.Failed` is our name
//! for whatever has no more precise one.

use std::fmt::Write as _;

use karapace::error::CoreError;
use karapace_store::StoreError;
use zbus::message::{Header, Message};
use zbus::names::ErrorName;

/// A failed call: its name says what kind of failure (docs/dbus.md lists them), the text is the
/// readable message.
#[derive(Debug, thiserror::Error)]
pub enum ManagerError {
    /// `org.freedesktop.DBus.Error.AccessDenied`: the caller is not of the service's uid. The
    /// standard name for "not you", so generic tools show it as such.
    #[error("{0}")]
    AccessDenied(String),
    /// No environment matches the identifier.
    #[error("{0}")]
    NotFound(String),
    /// A prefix matches more than one environment (the standard tool would take the first).
    #[error("{0}")]
    Ambiguous(String),
    /// The manifest (or its lock) cannot be read or is invalid.
    #[error("{0}")]
    InvalidManifest(String),
    /// An argument was refused before anything ran: too long, control characters, a relative or
    /// `..` manifest path, not a regular file, an invalid environment name.
    #[error("{0}")]
    InvalidArgument(String),
    /// The name is taken by another environment.
    #[error("{0}")]
    AlreadyExists(String),
    /// The environment's state does not allow it (e.g. destroying a running one).
    #[error("{0}")]
    InvalidState(String),
    /// The same job is already running, too many jobs run, or the store or environment is in use.
    #[error("{0}")]
    Busy(String),
    /// The store is missing, locked by an incompatible version, corrupt or unsafe.
    #[error("{0}")]
    StoreError(String),
    /// A feature this build does not provide yet.
    #[error("{0}")]
    Unavailable(String),
    /// Anything else (I/O, images, plugins, the helper).
    #[error("{0}")]
    Failed(String),
    /// The bus failed us (e.g. while asking who the caller is): reported as `Failed`.
    #[error("{0}")]
    Bus(#[from] zbus::Error),
}

impl ManagerError {
    /// The D-Bus error name.
    pub fn error_name(&self) -> &'static str {
        match self {
            ManagerError::AccessDenied(_) => "org.freedesktop.DBus.Error.AccessDenied",
            ManagerError::NotFound(_) => "org.karapace.Error.NotFound",
            ManagerError::Ambiguous(_) => "org.karapace.Error.Ambiguous",
            ManagerError::InvalidManifest(_) => "org.karapace.Error.InvalidManifest",
            ManagerError::InvalidArgument(_) => "org.karapace.Error.InvalidArgument",
            ManagerError::AlreadyExists(_) => "org.karapace.Error.AlreadyExists",
            ManagerError::InvalidState(_) => "org.karapace.Error.InvalidState",
            ManagerError::Busy(_) => "org.karapace.Error.Busy",
            ManagerError::StoreError(_) => "org.karapace.Error.StoreError",
            ManagerError::Unavailable(_) => "org.karapace.Error.Unavailable",
            ManagerError::Failed(_) | ManagerError::Bus(_) => "org.karapace.Error.Failed",
        }
    }
}

/// By hand rather than derived: the derive names its bus-error variant
/// `org.freedesktop.zbus.Error` and cannot give one variant a name outside the prefix.
impl zbus::DBusError for ManagerError {
    fn create_reply(&self, call: &Header<'_>) -> zbus::Result<Message> {
        Message::error(call, self.name())?.build(&(self.to_string(),))
    }

    fn name(&self) -> ErrorName<'_> {
        ErrorName::from_static_str_unchecked(self.error_name())
    }

    fn description(&self) -> Option<&str> {
        match self {
            ManagerError::Bus(_) => None,
            ManagerError::AccessDenied(m)
            | ManagerError::NotFound(m)
            | ManagerError::Ambiguous(m)
            | ManagerError::InvalidManifest(m)
            | ManagerError::InvalidArgument(m)
            | ManagerError::AlreadyExists(m)
            | ManagerError::InvalidState(m)
            | ManagerError::Busy(m)
            | ManagerError::StoreError(m)
            | ManagerError::Unavailable(m)
            | ManagerError::Failed(m) => Some(m),
        }
    }
}

impl From<CoreError> for ManagerError {
    fn from(e: CoreError) -> Self {
        let message = message(&e);
        kind(&e)(message)
    }
}

/// The constructor of the error name for `e`, by type.
fn kind(e: &CoreError) -> fn(String) -> ManagerError {
    use ManagerError as M;
    match e {
        CoreError::Hinted { error, .. } => kind(error),
        CoreError::NoMatch { .. } => M::NotFound,
        CoreError::Ambiguous { .. } => M::Ambiguous,
        CoreError::Manifest(_) | CoreError::Lock(_) | CoreError::PackageName { .. } => {
            M::InvalidManifest
        }
        CoreError::Usage(_) | CoreError::InvalidName { .. } => M::InvalidArgument,
        CoreError::State(_) => M::InvalidState,
        CoreError::Unavailable { .. } => M::Unavailable,
        CoreError::Store(s) => store_kind(s),
        CoreError::Image(_)
        | CoreError::Plugin(_)
        | CoreError::Helper(_)
        | CoreError::Io { .. }
        | CoreError::HostSharing(_)
        | CoreError::Host(_)
        | CoreError::Encode { .. }
        | CoreError::Damaged(_)
        | CoreError::Build(_)
        | CoreError::Session(_)
        | CoreError::OciRuntime(_)
        | CoreError::PluginBuild(_)
        | CoreError::Refused(_)
        | CoreError::Remote(_)
        | CoreError::CannotExecute { .. } => M::Failed,
    }
}

fn store_kind(e: &StoreError) -> fn(String) -> ManagerError {
    use ManagerError as M;
    match e {
        StoreError::UnknownEnv(_) => M::NotFound,
        StoreError::InvalidName { .. } | StoreError::Invalid(_) => M::InvalidArgument,
        StoreError::DuplicateName(_) | StoreError::EnvExists(_) => M::AlreadyExists,
        StoreError::EnvBusy { .. } | StoreError::Lock(_) => M::Busy,
        StoreError::NoStore(_)
        | StoreError::Version { .. }
        | StoreError::Integrity { .. }
        | StoreError::CorruptMetadata(_)
        | StoreError::UnknownLayer(_)
        | StoreError::UnknownSnapshot(_)
        | StoreError::UnsafeArchive { .. }
        | StoreError::Insecure(_)
        | StoreError::NoSpace { .. } => M::StoreError,
        StoreError::Io { .. } => M::Failed,
    }
}

/// The engine's message, with the "did you mean" list the CLI prints for a miss.
fn message(e: &CoreError) -> String {
    let mut text = e.to_string();
    if let CoreError::NoMatch { suggestions, .. } = e
        && !suggestions.is_empty()
    {
        let _ = write!(text, " (did you mean: {}?)", suggestions.join(", "));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use zbus::DBusError;

    fn name(e: CoreError) -> String {
        ManagerError::from(e).name().to_string()
    }

    #[test]
    fn names_follow_the_engine_error_type() {
        assert_eq!(
            name(CoreError::NoMatch {
                query: "x".into(),
                suggestions: vec!["y".into()]
            }),
            "org.karapace.Error.NotFound"
        );
        assert_eq!(
            name(CoreError::Ambiguous {
                prefix: "a".into(),
                count: 2
            }),
            "org.karapace.Error.Ambiguous"
        );
        assert_eq!(
            name(CoreError::Store(StoreError::EnvBusy {
                env_id: "e".into(),
                sessions: 1
            })),
            "org.karapace.Error.Busy"
        );
        assert_eq!(
            name(CoreError::Store(StoreError::DuplicateName("n".into()))),
            "org.karapace.Error.AlreadyExists"
        );
        assert_eq!(
            name(CoreError::Store(StoreError::Version {
                found: 9,
                expected: 1
            })),
            "org.karapace.Error.StoreError"
        );
        assert_eq!(
            name(CoreError::State("it is running".into()).with_hint("stop it")),
            "org.karapace.Error.InvalidState"
        );
        assert_eq!(
            name(CoreError::Build("boom".into())),
            "org.karapace.Error.Failed"
        );
    }

    #[test]
    fn a_miss_carries_the_suggestions_and_access_denied_is_the_standard_name() {
        let e = ManagerError::from(CoreError::NoMatch {
            query: "wrker".into(),
            suggestions: vec!["worker".into()],
        });
        assert_eq!(
            e.description(),
            Some("no environment matching 'wrker' (did you mean: worker?)")
        );
        assert_eq!(
            ManagerError::AccessDenied("no".into()).name().as_str(),
            "org.freedesktop.DBus.Error.AccessDenied"
        );
    }
}
