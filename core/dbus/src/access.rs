//! Who may call: only processes of the uid the service runs as. A session bus normally admits only
//! its owner, but a bus configured otherwise (or root, which may connect to any bus) must not get
//! at the user's environments through us: the bus daemon says who the sender is
//! (`GetConnectionUnixUser`, which it learned from the socket's credentials, not from the peer),
//! and we compare.

use zbus::Connection;
use zbus::message::Header;

use crate::error::ManagerError;

/// The uid the bus daemon recorded for `sender`.
async fn caller_uid(conn: &Connection, sender: &str) -> Result<u32, ManagerError> {
    let reply = conn
        .call_method(
            Some("org.freedesktop.DBus"),
            "/org/freedesktop/DBus",
            Some("org.freedesktop.DBus"),
            "GetConnectionUnixUser",
            &(sender,),
        )
        .await?;
    Ok(reply.body().deserialize::<u32>()?)
}

/// Refuses (`org.freedesktop.DBus.Error.AccessDenied`) a call whose sender is not of `own_uid`,
/// or that has no sender at all (a peer-to-peer connection, which this service never offers).
pub async fn check(
    conn: &Connection,
    header: Option<&Header<'_>>,
    own_uid: u32,
) -> Result<(), ManagerError> {
    let Some(sender) = header.and_then(Header::sender) else {
        return Err(ManagerError::AccessDenied("the call has no sender".into()));
    };
    let uid = caller_uid(conn, sender.as_str()).await?;
    if uid == own_uid {
        Ok(())
    } else {
        tracing::warn!("refused a call from uid {uid} ({sender})");
        Err(ManagerError::AccessDenied(format!(
            "karapace-dbus serves only uid {own_uid}; the caller is uid {uid}"
        )))
    }
}
