//! The broker's rows in the Durable Object's SQLite storage.
//!
//! One table contains every row the core asks to keep, keyed by
//! `(kind, owner, name)`; the value is opaque to this layer.

use broker::{Row, StoreOp};
use worker::{SqlCursor, SqlStorage, SqlStorageValue};

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
pub fn load_rows(sql: &SqlStorage, counters: &mut Counters) -> worker::Result<Vec<Row>> {
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
    // The cursor counts the rows it has stepped through, so only now that
    // it is exhausted.
    counters.count(&cursor);
    Ok(rows)
}

/// Counts of the SQL this module ran since the broker was built, from the
/// cursors' own `rowsRead` and `rowsWritten`, which Cloudflare bills.
#[derive(Debug, Clone, Default)]
pub struct Counters {
    /// Statements run on `broker_rows`.
    pub statements: u64,
    /// Rows read, as SQLite counts them (a lookup by primary key reads one).
    pub rows_read: u64,
    /// Rows written, as SQLite counts them (a delete of a missing row writes
    /// none).
    pub rows_written: u64,
    /// Batches with at least one write. The runtime commits each batch in
    /// one transaction, because a batch runs with no `await` in between.
    pub batches: u64,
    /// Writes left out because a later write of the same batch replaced
    /// them.
    pub coalesced: u64,
}

impl Counters {
    fn count(&mut self, cursor: &SqlCursor) {
        self.statements += 1;
        self.rows_read += cursor.rows_read() as u64;
        self.rows_written += cursor.rows_written() as u64;
    }

    /// Renders the counters in the Prometheus text format, each sample
    /// labelled with `namespace` (already escaped).
    pub fn to_prometheus(&self, namespace: &str) -> String {
        let counters = [
            (
                "mqtt_storage_statements_total",
                "SQL statements run on the broker's rows.",
                self.statements,
            ),
            (
                "mqtt_storage_rows_read_total",
                "SQLite rows read, as billed.",
                self.rows_read,
            ),
            (
                "mqtt_storage_rows_written_total",
                "SQLite rows written, as billed.",
                self.rows_written,
            ),
            (
                "mqtt_storage_batches_total",
                "Batches of writes, one transaction each.",
                self.batches,
            ),
            (
                "mqtt_storage_coalesced_total",
                "Writes left out because a later write of the same batch replaced them.",
                self.coalesced,
            ),
        ];
        let mut out = String::new();
        for (name, help, value) in counters {
            out.push_str(&format!(
                "# HELP {name} {help}\n# TYPE {name} counter\n{name}{{namespace=\"{namespace}\"}} {value}\n"
            ));
        }
        out
    }
}

/// Applies a batch of writes in order, leaving out those that a later write
/// of the batch replaces, and counts them. Returns how many writes failed,
/// after passing each error to `on_error`.
pub fn apply_batch(
    sql: &SqlStorage,
    ops: Vec<StoreOp>,
    counters: &mut Counters,
    mut on_error: impl FnMut(worker::Error),
) -> u64 {
    if ops.is_empty() {
        return 0;
    }
    let total = ops.len();
    let ops = broker::store::coalesce(ops);
    counters.coalesced += (total - ops.len()) as u64;
    counters.batches += 1;
    let mut failures = 0;
    for op in ops {
        match apply(sql, op) {
            Ok(cursor) => counters.count(&cursor),
            Err(error) => {
                failures += 1;
                on_error(error);
            }
        }
    }
    failures
}

/// Applies one write.
fn apply(sql: &SqlStorage, op: StoreOp) -> worker::Result<SqlCursor> {
    match op {
        StoreOp::Put { key, value } => sql.exec(
            "INSERT OR REPLACE INTO broker_rows (kind, owner, name, value) VALUES (?, ?, ?, ?)",
            vec![
                key.kind.into(),
                key.owner.into(),
                key.name.into(),
                value.to_vec().into(),
            ],
        ),
        StoreOp::Delete { key } => sql.exec(
            "DELETE FROM broker_rows WHERE kind = ? AND owner = ? AND name = ?",
            vec![key.kind.into(), key.owner.into(), key.name.into()],
        ),
        StoreOp::DeleteOwner { kind, owner } => sql.exec(
            "DELETE FROM broker_rows WHERE kind = ? AND owner = ?",
            vec![kind.into(), owner.into()],
        ),
    }
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
