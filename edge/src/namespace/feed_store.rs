//! The named sessions of the HTTP transports in the object's SQLite
//! storage: one row per session, one per stored message, and the reserved
//! sequence numbers.

use auth::Acl;
use broker::Message;
use worker::{SqlStorage, SqlStorageValue};

use super::feed_sessions::{
    FeedWrite, SessionKey, SessionLimits, SessionRecord, SessionStore, Sessions,
};
use crate::http_settings::HttpSettings;

const CREATE_TABLES: [&str; 3] = [
    "CREATE TABLE IF NOT EXISTS http_sessions (
        owner TEXT NOT NULL,
        name TEXT NOT NULL,
        filters TEXT NOT NULL,
        acl TEXT,
        acknowledged INTEGER NOT NULL,
        dropped_through INTEGER NOT NULL,
        expires_at_ms INTEGER NOT NULL,
        PRIMARY KEY (owner, name)
    ) WITHOUT ROWID",
    "CREATE TABLE IF NOT EXISTS http_session_messages (
        owner TEXT NOT NULL,
        name TEXT NOT NULL,
        sequence INTEGER NOT NULL,
        size INTEGER NOT NULL,
        message BLOB NOT NULL,
        PRIMARY KEY (owner, name, sequence)
    ) WITHOUT ROWID",
    "CREATE TABLE IF NOT EXISTS http_sequence (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        reserved_through INTEGER NOT NULL
    )",
];

/// [`SessionStore`] on the object's SQLite storage.
pub struct SqlSessionStore {
    sql: SqlStorage,
}

/// Creates the tables if needed and reads the sessions of the namespace.
pub fn load_sessions(
    sql: &SqlStorage,
    settings: &HttpSettings,
    now_ms: u64,
) -> Result<Sessions, String> {
    for statement in CREATE_TABLES {
        sql.exec(statement, None)
            .map_err(|error| format!("creating the HTTP session tables failed: {error}"))?;
    }
    let limits = SessionLimits {
        max_messages: settings.session_max_messages,
        max_bytes: settings.session_max_bytes,
        expiry_ms: settings.session_expiry_secs.saturating_mul(1000),
        max_sessions: settings.max_sessions,
    };
    let store = SqlSessionStore { sql: sql.clone() };
    Sessions::load(Box::new(store), limits, now_ms)
}

impl SessionStore for SqlSessionStore {
    fn load(&self) -> Result<(Vec<SessionRecord>, u64), String> {
        let query = "SELECT owner, name, filters, acl, acknowledged, dropped_through, \
                     expires_at_ms FROM http_sessions";
        let mut records = Vec::new();
        for columns in self.exec(query, Vec::new())?.raw() {
            let columns = columns.map_err(|error| error.to_string())?;
            // A row that does not decode is skipped, as broker rows are, so
            // that it cannot keep the namespace from starting.
            match session_record(columns) {
                Ok(record) => records.push(record),
                Err(error) => log::error!("http_sessions: skipping a row: {error}"),
            }
        }
        let mut reserved_through = 0;
        let query = "SELECT reserved_through FROM http_sequence WHERE id = 1";
        for columns in self.exec(query, Vec::new())?.raw() {
            let columns = columns.map_err(|error| error.to_string())?;
            if let Some(value) = columns.into_iter().next() {
                reserved_through = integer(value)?;
            }
        }
        Ok((records, reserved_through))
    }

    fn load_queue(&self, key: &SessionKey) -> Result<Vec<(u64, usize)>, String> {
        let query = "SELECT sequence, size FROM http_session_messages \
                     WHERE owner = ? AND name = ? ORDER BY sequence";
        let mut entries = Vec::new();
        for columns in self.exec(query, key_values(key))?.raw() {
            let columns = columns.map_err(|error| error.to_string())?;
            let [sequence, size] = <[SqlStorageValue; 2]>::try_from(columns)
                .map_err(|_| "http_session_messages: unexpected columns".to_string())?;
            entries.push((integer(sequence)?, integer(size)? as usize));
        }
        Ok(entries)
    }

    fn read(
        &self,
        key: &SessionKey,
        after: u64,
        limit: usize,
    ) -> Result<Vec<(u64, Message)>, String> {
        let query = "SELECT sequence, message FROM http_session_messages \
                     WHERE owner = ? AND name = ? AND sequence > ? ORDER BY sequence LIMIT ?";
        let mut values = key_values(key);
        values.push(sql_integer(after));
        values.push(sql_integer(limit.min(i64::MAX as usize) as u64));
        let mut messages = Vec::new();
        for columns in self.exec(query, values)?.raw() {
            let columns = columns.map_err(|error| error.to_string())?;
            let [sequence, message] = <[SqlStorageValue; 2]>::try_from(columns)
                .map_err(|_| "http_session_messages: unexpected columns".to_string())?;
            let sequence = integer(sequence)?;
            let mut bytes = bytes::Bytes::from(blob(message)?);
            match Message::decode_stored(&mut bytes) {
                Some(message) => messages.push((sequence, message)),
                // A row that does not decode is skipped, as broker rows are.
                None => log::error!("http_session_messages: message {sequence} does not decode"),
            }
        }
        Ok(messages)
    }

    fn write(&self, write: FeedWrite) -> Result<(), String> {
        match write {
            FeedWrite::ReserveSequences { through } => self.exec(
                "INSERT OR REPLACE INTO http_sequence (id, reserved_through) VALUES (1, ?)",
                vec![sql_integer(through)],
            )?,
            FeedWrite::PutSession(record) => {
                let filters = serde_json::to_string(&record.filters).unwrap_or_default();
                let acl = match &record.acl {
                    Some(acl) => serde_json::to_string(acl)
                        .map(SqlStorageValue::from)
                        .map_err(|error| error.to_string())?,
                    None => SqlStorageValue::Null,
                };
                let mut values = key_values(&record.key);
                values.extend([
                    filters.into(),
                    acl,
                    sql_integer(record.acknowledged),
                    sql_integer(record.dropped_through),
                    sql_integer(record.expires_at_ms),
                ]);
                self.exec(
                    "INSERT OR REPLACE INTO http_sessions (owner, name, filters, acl, \
                     acknowledged, dropped_through, expires_at_ms) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    values,
                )?
            }
            FeedWrite::DeleteSession(key) => {
                self.exec(
                    "DELETE FROM http_session_messages WHERE owner = ? AND name = ?",
                    key_values(&key),
                )?;
                self.exec(
                    "DELETE FROM http_sessions WHERE owner = ? AND name = ?",
                    key_values(&key),
                )?
            }
            FeedWrite::InsertMessage {
                key,
                sequence,
                size,
                message,
            } => {
                let mut values = key_values(&key);
                values.extend([
                    sql_integer(sequence),
                    sql_integer(size as u64),
                    message.into(),
                ]);
                self.exec(
                    "INSERT OR REPLACE INTO http_session_messages (owner, name, sequence, size, \
                     message) VALUES (?, ?, ?, ?, ?)",
                    values,
                )?
            }
            FeedWrite::DeleteMessagesThrough { key, sequence } => {
                let mut values = key_values(&key);
                values.push(sql_integer(sequence));
                self.exec(
                    "DELETE FROM http_session_messages \
                     WHERE owner = ? AND name = ? AND sequence <= ?",
                    values,
                )?
            }
        };
        Ok(())
    }
}

/// Decodes one row of `http_sessions`.
fn session_record(columns: Vec<SqlStorageValue>) -> Result<SessionRecord, String> {
    let [owner, name, filters, acl, acknowledged, dropped, expires] =
        <[SqlStorageValue; 7]>::try_from(columns).map_err(|_| "unexpected columns".to_string())?;
    let filters: Vec<String> = serde_json::from_str(&text(filters)?)
        .map_err(|error| format!("invalid filters: {error}"))?;
    let acl: Option<Acl> = match acl {
        SqlStorageValue::Null => None,
        other => Some(
            serde_json::from_str(&text(other)?).map_err(|error| format!("invalid ACL: {error}"))?,
        ),
    };
    Ok(SessionRecord {
        key: SessionKey {
            owner: text(owner)?,
            name: text(name)?,
        },
        filters,
        acl,
        acknowledged: integer(acknowledged)?,
        dropped_through: integer(dropped)?,
        expires_at_ms: integer(expires)?,
    })
}

impl SqlSessionStore {
    fn exec(&self, query: &str, values: Vec<SqlStorageValue>) -> Result<worker::SqlCursor, String> {
        self.sql
            .exec(query, values)
            .map_err(|error| error.to_string())
    }
}

fn key_values(key: &SessionKey) -> Vec<SqlStorageValue> {
    vec![key.owner.as_str().into(), key.name.as_str().into()]
}

/// Binds a count, sequence number or time. Every value stored here stays
/// far below 2^53, the largest integer JavaScript represents exactly.
fn sql_integer(value: u64) -> SqlStorageValue {
    SqlStorageValue::Integer(value.min(i64::MAX as u64) as i64)
}

fn text(value: SqlStorageValue) -> Result<String, String> {
    match value {
        SqlStorageValue::String(text) => Ok(text),
        other => Err(format!("HTTP session tables: expected TEXT, got {other:?}")),
    }
}

fn integer(value: SqlStorageValue) -> Result<u64, String> {
    match value {
        SqlStorageValue::Integer(number) => Ok(number.max(0) as u64),
        SqlStorageValue::Float(number) => Ok(number.max(0.0) as u64),
        other => Err(format!(
            "HTTP session tables: expected INTEGER, got {other:?}"
        )),
    }
}

fn blob(value: SqlStorageValue) -> Result<Vec<u8>, String> {
    match value {
        SqlStorageValue::Blob(bytes) => Ok(bytes),
        other => Err(format!(
            "http_session_messages: expected BLOB, got {other:?}"
        )),
    }
}
