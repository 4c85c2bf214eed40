//! The rows the core asks its embedding to keep.
//!
//! Storage is a table of rows keyed by `(kind, owner, name)` with an opaque
//! value that only the core reads. The Durable Object keeps them in SQLite;
//! tests keep them in a map. `kind` groups rows (sessions, subscriptions,
//! retained messages, queued messages); `owner` is the client id, or empty
//! for rows that belong to the namespace; `name` tells rows of one owner apart.

use bytes::Bytes;

/// The key of a stored row.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RowKey {
    /// The row kind, one of the constants in [`kind`].
    pub kind: &'static str,
    /// The client id that owns the row, or empty for namespace rows.
    pub owner: String,
    /// Tells rows of one kind and owner apart.
    pub name: String,
}

/// A stored row, as read back at start-up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    /// The row kind, as in [`RowKey::kind`].
    pub kind: String,
    /// The owner, as in [`RowKey::owner`].
    pub owner: String,
    /// The name, as in [`RowKey::name`].
    pub name: String,
    /// The value as written by [`StoreOp::Put`].
    pub value: Bytes,
}

/// One storage write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreOp {
    /// Insert or replace one row.
    Put {
        /// The row to write.
        key: RowKey,
        /// Opaque bytes: at most the maximum packet size plus a few bytes.
        value: Bytes,
    },
    /// Delete one row if it exists.
    Delete {
        /// The row to delete.
        key: RowKey,
    },
    /// Delete every row of `kind` that belongs to `owner`.
    DeleteOwner {
        /// The row kind.
        kind: &'static str,
        /// The client id whose rows go.
        owner: String,
    },
}

/// Row kinds. Every kind but [`RETAINED`] is owned by one client id.
pub mod kind {
    /// One row per session (name empty): expiry, disconnect time and the
    /// topic ACL, JSON.
    pub const SESSION: &str = "session";
    /// One row per subscription, named by its filter: options, JSON.
    pub const SUBSCRIPTION: &str = "subscription";
    /// One row per queued or in-flight outgoing message, named by its
    /// sequence number: state, packet id, expiry and an MQTT 5.0 PUBLISH.
    pub const MESSAGE: &str = "message";
    /// One row per QoS 2 message received and not yet released by PUBREL,
    /// named by its packet id; the value is empty.
    pub const INCOMING_QOS2: &str = "incoming_qos2";
    /// The will message of the session (name empty): delay, due time and an
    /// MQTT 5.0 PUBLISH.
    pub const WILL: &str = "will";
    /// One row per retained message, owner empty, named by its topic:
    /// expiry and an MQTT 5.0 PUBLISH.
    pub const RETAINED: &str = "retained";

    /// Every kind owned by a session, deleted together when it ends.
    pub const SESSION_KINDS: [&str; 5] = [SESSION, SUBSCRIPTION, MESSAGE, INCOMING_QOS2, WILL];
}

impl RowKey {
    /// Builds the key of a row.
    pub fn new(kind: &'static str, owner: impl Into<String>, name: impl Into<String>) -> Self {
        RowKey {
            kind,
            owner: owner.into(),
            name: name.into(),
        }
    }
}
