//! The rows the core asks its embedding to keep.
//!
//! Storage is a table of rows keyed by `(kind, owner, name)` with an opaque
//! value that only the core reads. The Durable Object keeps them in SQLite;
//! tests keep them in a map. `kind` groups rows (sessions, subscriptions,
//! retained messages, queued messages); `owner` is the client id, or empty
//! for rows that belong to the namespace; `name` tells rows of one owner apart.

use std::collections::HashSet;

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

/// Drops the writes of a batch that a later write in the same batch makes
/// pointless: an op on a key followed by another op on that key, and any op
/// followed by a [`StoreOp::DeleteOwner`] that covers its key. The rest
/// keep their order. Applied in one transaction, the result leaves storage
/// in the same state as the whole batch, with fewer rows written. For
/// example, a message that is queued and sent on within one batch costs no
/// row when its session stores no in-flight rows.
pub fn coalesce(ops: Vec<StoreOp>) -> Vec<StoreOp> {
    let mut superseded = vec![false; ops.len()];
    let mut later_keys: HashSet<(&str, &str, &str)> = HashSet::new();
    let mut later_owners: HashSet<(&str, &str)> = HashSet::new();
    for (index, op) in ops.iter().enumerate().rev() {
        match op {
            StoreOp::Put { key, .. } | StoreOp::Delete { key } => {
                let id = (key.kind, key.owner.as_str(), key.name.as_str());
                let owner = (key.kind, key.owner.as_str());
                superseded[index] = later_keys.contains(&id) || later_owners.contains(&owner);
                later_keys.insert(id);
            }
            StoreOp::DeleteOwner { kind, owner } => {
                superseded[index] = later_owners.contains(&(*kind, owner.as_str()));
                later_owners.insert((kind, owner.as_str()));
            }
        }
    }
    ops.into_iter()
        .zip(superseded)
        .filter_map(|(op, superseded)| (!superseded).then_some(op))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(name: &str, value: &'static [u8]) -> StoreOp {
        StoreOp::Put {
            key: RowKey::new(kind::MESSAGE, "c1", name),
            value: Bytes::from_static(value),
        }
    }

    fn delete(name: &str) -> StoreOp {
        StoreOp::Delete {
            key: RowKey::new(kind::MESSAGE, "c1", name),
        }
    }

    #[test]
    fn coalesce_keeps_last_op_per_key() {
        let ops = vec![put("1", b"a"), put("2", b"b"), delete("1"), put("2", b"c")];
        assert_eq!(coalesce(ops), vec![delete("1"), put("2", b"c")]);
    }

    #[test]
    fn coalesce_keeps_put_after_delete() {
        let ops = vec![delete("1"), put("1", b"a")];
        assert_eq!(coalesce(ops), vec![put("1", b"a")]);
    }

    #[test]
    fn coalesce_drops_ops_before_delete_owner() {
        let wipe = StoreOp::DeleteOwner {
            kind: kind::MESSAGE,
            owner: "c1".into(),
        };
        let other_owner = StoreOp::Put {
            key: RowKey::new(kind::MESSAGE, "c2", "1"),
            value: Bytes::from_static(b"x"),
        };
        let other_kind = StoreOp::Put {
            key: RowKey::new(kind::SESSION, "c1", ""),
            value: Bytes::from_static(b"{}"),
        };
        let ops = vec![
            put("1", b"a"),
            other_owner.clone(),
            other_kind.clone(),
            wipe.clone(),
            put("2", b"b"),
        ];
        assert_eq!(
            coalesce(ops),
            vec![other_owner, other_kind, wipe, put("2", b"b")]
        );
    }

    #[test]
    fn coalesce_keeps_distinct_keys_in_order() {
        let ops = vec![put("1", b"a"), put("2", b"b"), delete("3")];
        assert_eq!(coalesce(ops.clone()), ops);
    }
}
