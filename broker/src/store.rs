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
    pub kind: &'static str,
    pub owner: String,
    pub name: String,
}

/// A stored row, as read back at start-up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    pub kind: String,
    pub owner: String,
    pub name: String,
    pub value: Bytes,
}

/// One storage write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreOp {
    /// Insert or replace one row.
    Put { key: RowKey, value: Bytes },
    /// Delete one row if it exists.
    Delete { key: RowKey },
    /// Delete every row of `kind` that belongs to `owner`.
    DeleteOwner { kind: &'static str, owner: String },
}
