//! The broker's rows in the Durable Object's SQLite storage.
//!
//! One table contains every row the core asks to keep, keyed by
//! `(kind, owner, name)`; the value is opaque to this layer.

use broker::{Row, StoreOp};
use worker::{SqlStorage, SqlStorageValue};

const CREATE_TABLE: &str = "CREATE TABLE IF NOT EXISTS broker_rows (
    kind TEXT NOT NULL,
    owner TEXT NOT NULL,
    name TEXT NOT NULL,
    value BLOB NOT NULL,
    PRIMARY KEY (kind, owner, name)
) WITHOUT ROWID";

/// The namespace's own name, one row at most. The object otherwise learns
/// its name from a request header or a socket attachment, and an alarm that
/// wakes it with no socket open brings neither.
const CREATE_NAME_TABLE: &str = "CREATE TABLE IF NOT EXISTS namespace_name (name TEXT NOT NULL)";

/// Creates the tables if this object has never stored anything.
pub fn create_schema(sql: &SqlStorage) -> worker::Result<()> {
    sql.exec(CREATE_TABLE, None)?;
    sql.exec(CREATE_NAME_TABLE, None)?;
    Ok(())
}

/// Reads the name saved by [`save_namespace_name`], if any.
pub fn load_namespace_name(sql: &SqlStorage) -> worker::Result<Option<String>> {
    let cursor = sql.exec("SELECT name FROM namespace_name LIMIT 1", None)?;
    for columns in cursor.raw() {
        if let Some(SqlStorageValue::String(name)) = columns?.into_iter().next() {
            return Ok(Some(name));
        }
    }
    Ok(None)
}

/// Saves the namespace's name, replacing any earlier one.
pub fn save_namespace_name(sql: &SqlStorage, name: &str) -> worker::Result<()> {
    sql.exec("DELETE FROM namespace_name", None)?;
    sql.exec(
        "INSERT INTO namespace_name (name) VALUES (?)",
        vec![name.into()],
    )?;
    Ok(())
}

/// Reads every stored row.
// TODO: load retained messages lazily; a namespace with many retained
// messages reads all of them on every wake from hibernation.
pub fn load_rows(sql: &SqlStorage) -> worker::Result<Vec<Row>> {
    let cursor = sql.exec("SELECT kind, owner, name, value FROM broker_rows", None)?;
    let mut rows = Vec::new();
    for columns in cursor.raw() {
        let columns = columns?;
        let [kind, owner, name, value] = <[SqlStorageValue; 4]>::try_from(columns)
            .map_err(|columns| format!("broker_rows: expected 4 columns, got {}", columns.len()))?;
        rows.push(Row {
            kind: text(kind)?,
            owner: text(owner)?,
            name: text(name)?,
            value: blob(value)?.into(),
        });
    }
    Ok(rows)
}

/// Applies one write.
pub fn apply(sql: &SqlStorage, op: StoreOp) -> worker::Result<()> {
    match op {
        StoreOp::Put { key, value } => sql.exec(
            "INSERT OR REPLACE INTO broker_rows (kind, owner, name, value) VALUES (?, ?, ?, ?)",
            vec![
                key.kind.into(),
                key.owner.into(),
                key.name.into(),
                value.to_vec().into(),
            ],
        )?,
        StoreOp::Delete { key } => sql.exec(
            "DELETE FROM broker_rows WHERE kind = ? AND owner = ? AND name = ?",
            vec![key.kind.into(), key.owner.into(), key.name.into()],
        )?,
        StoreOp::DeleteOwner { kind, owner } => sql.exec(
            "DELETE FROM broker_rows WHERE kind = ? AND owner = ?",
            vec![kind.into(), owner.into()],
        )?,
    };
    Ok(())
}

fn text(value: SqlStorageValue) -> worker::Result<String> {
    match value {
        SqlStorageValue::String(text) => Ok(text),
        other => Err(format!("broker_rows: expected TEXT, got {other:?}").into()),
    }
}

fn blob(value: SqlStorageValue) -> worker::Result<Vec<u8>> {
    match value {
        SqlStorageValue::Blob(bytes) => Ok(bytes),
        SqlStorageValue::String(text) => Ok(text.into_bytes()),
        other => Err(format!("broker_rows: expected BLOB, got {other:?}").into()),
    }
}
