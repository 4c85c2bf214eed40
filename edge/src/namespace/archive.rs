//! The Durable Object's side of the R2 archive.
//!
//! In the event that changes them, retained changes go to the
//! `retained_mirror_pending` table and audited messages to `audit_buffer`,
//! both SQLite. At the end of the event, after every send, a pass writes
//! them to R2: each pending retained change at once, and the audit buffer
//! at the time [`ArchiveSettings::flush_due_at`] returns. A failed pass retries from
//! the alarm with a growing delay. Each namespace also writes its marker
//! `namespaces/<name>` once, for the scheduled upkeep.

use broker::archive::{
    self, ArchiveSettings, AuditPolicy, BufferStats, MessageRecord, ReplayTarget, UpkeepReport,
};
use broker::store::kind;
use broker::{Message, StoreOp};
use bytes::{Bytes, BytesMut};
use codec::PacketId;
use serde_json::json;
use worker::{Bucket, Date, Env, Method, Request, Response, Result, SqlStorage, SqlStorageValue};

use super::http::{json_error, query_pairs, query_value};
use super::Namespace;
use crate::{logging, r2};

const CREATE_TABLES: [&str; 3] = [
    // One row per retained topic changed and not yet written to R2; an
    // empty value is a clear. `version` distinguishes a newer change of the
    // same topic from the one a pass is writing.
    "CREATE TABLE IF NOT EXISTS retained_mirror_pending (
        topic TEXT PRIMARY KEY,
        value BLOB NOT NULL,
        version INTEGER NOT NULL
    ) WITHOUT ROWID",
    // Audited messages not yet written to R2, in the stored message form.
    "CREATE TABLE IF NOT EXISTS audit_buffer (
        seq INTEGER PRIMARY KEY,
        time_ms INTEGER NOT NULL,
        size INTEGER NOT NULL,
        value BLOB NOT NULL
    )",
    // `next_seq`, `registered` and the admin API's `audit_policy` (JSON).
    "CREATE TABLE IF NOT EXISTS archive_state (
        name TEXT PRIMARY KEY,
        value TEXT NOT NULL
    ) WITHOUT ROWID",
];

/// Pending retained changes one query reads.
const MIRROR_ROWS_PER_QUERY: i64 = 100;

/// Objects one R2 `delete` call removes at most (R2's own maximum).
const DELETE_BATCH: usize = 1000;

/// Archive paths a namespace serves under `/admin/`.
const ARCHIVE_PATHS: [&str; 5] = [
    "retained/import",
    "audit",
    "audit/flush",
    "audit/replay",
    "upkeep",
];

/// Reports whether `/admin/{rest}` is an archive route of the namespace.
pub(super) fn is_archive_path(rest: &str) -> bool {
    ARCHIVE_PATHS.contains(&rest)
}

/// The archive state of a loaded namespace.
pub(super) struct Archive {
    settings: ArchiveSettings,
    /// The admin API's policy, replacing the settings' one.
    admin_policy: Option<AuditPolicy>,
    policy: AuditPolicy,
    /// Whether the R2 binding exists; without it nothing is recorded.
    available: bool,
    mirror_version: i64,
    /// Pending retained changes, as last counted.
    mirror_pending: u64,
    buffer: BufferStats,
    next_seq: u64,
    /// Failed passes in a row, and when the next may start.
    failures: u32,
    retry_at: Option<u64>,
    registered: bool,
    /// A pass is running; another event must not start a second.
    busy: bool,
    flush_requested: bool,
    /// Messages recorded for audit since the object was loaded.
    audited: u64,
    /// Failed passes since the object was loaded.
    write_failures: u64,
}

impl Archive {
    /// Creates the tables if needed and reads the archive state.
    pub(super) fn load(
        sql: &SqlStorage,
        env: &Env,
        namespace: &str,
    ) -> std::result::Result<Archive, String> {
        let settings = r2::load_settings(env)?;
        let failed = |error: worker::Error| format!("archive tables: {error}");
        for statement in CREATE_TABLES {
            sql.exec(statement, None).map_err(failed)?;
        }

        let admin_policy = match read_state(sql, "audit_policy").map_err(failed)? {
            Some(text) => serde_json::from_str(&text).ok(),
            None => None,
        };

        let stored_next = read_state(sql, "next_seq")
            .map_err(failed)?
            .and_then(|text| text.parse::<u64>().ok())
            .unwrap_or(1);
        let max_buffered = integers(sql, "SELECT MAX(seq) FROM audit_buffer", vec![])
            .map_err(failed)?
            .first()
            .and_then(|row| row.first().copied())
            .unwrap_or(0);
        let mirror_version = integers(
            sql,
            "SELECT MAX(version) FROM retained_mirror_pending",
            vec![],
        )
        .map_err(failed)?
        .first()
        .and_then(|row| row.first().copied())
        .unwrap_or(0);
        let mut archive = Archive {
            policy: settings.policy_for(namespace, admin_policy.as_ref()),
            settings,
            admin_policy,
            available: env.bucket(r2::STORE_BINDING).is_ok(),
            mirror_version,
            mirror_pending: 0,
            buffer: BufferStats::default(),
            next_seq: stored_next.max(max_buffered as u64 + 1),
            failures: 0,
            retry_at: None,
            registered: read_state(sql, "registered").map_err(failed)?.is_some(),
            busy: false,
            flush_requested: false,
            audited: 0,
            write_failures: 0,
        };
        archive.recount(sql, true);
        Ok(archive)
    }

    /// Recomputes the policy once the namespace learns its name.
    pub(super) fn set_namespace(&mut self, namespace: &str) {
        self.policy = self
            .settings
            .policy_for(namespace, self.admin_policy.as_ref());
    }

    /// Reports whether the broker must feed routed messages to the audit.
    pub(super) fn observes_routed(&self) -> bool {
        self.available && self.policy.enabled
    }

    /// Records the retained changes among an event's storage writes and
    /// buffers its audited messages, in the same event as the writes.
    pub(super) fn note_event(
        &mut self,
        sql: &SqlStorage,
        ops: &[StoreOp],
        routed: &[Message],
        now_ms: u64,
    ) {
        for op in ops {
            self.note_store(sql, op);
        }
        for message in routed {
            self.note_routed(sql, message, now_ms);
        }
    }

    /// Records a retained change.
    fn note_store(&mut self, sql: &SqlStorage, op: &StoreOp) {
        let (topic, value) = match op {
            StoreOp::Put { key, value } if key.kind == kind::RETAINED => {
                (&key.name, value.to_vec())
            }
            StoreOp::Delete { key } if key.kind == kind::RETAINED => (&key.name, Vec::new()),
            _ => return,
        };
        if !self.available || !self.settings.mirror_retained {
            return;
        }
        self.mirror_version += 1;
        let result = sql.exec(
            "INSERT OR REPLACE INTO retained_mirror_pending (topic, value, version) VALUES (?, ?, ?)",
            vec![topic.as_str().into(), value.into(), self.mirror_version.into()],
        );
        match result {
            Ok(_) => self.mirror_pending += 1,
            Err(error) => logging::error(
                None,
                &format!("recording a retained change for R2 failed: {error}"),
            ),
        }
    }

    /// Buffers a routed message if the audit policy records its topic.
    fn note_routed(&mut self, sql: &SqlStorage, message: &Message, now_ms: u64) {
        if !self.available || !self.policy.records(&message.topic) {
            return;
        }
        let mut value = BytesMut::new();
        message.encode_stored(&mut value);
        let size = message.size() as u64;
        let result = sql.exec(
            "INSERT INTO audit_buffer (seq, time_ms, size, value) VALUES (?, ?, ?, ?)",
            vec![
                (self.next_seq as i64).into(),
                (now_ms as i64).into(),
                (size as i64).into(),
                value.to_vec().into(),
            ],
        );
        match result {
            Ok(_) => {
                self.next_seq += 1;
                self.audited += 1;
                self.buffer.add(size, now_ms);
            }
            Err(error) => logging::error(
                None,
                &format!("buffering an audited message failed: {error}"),
            ),
        }
    }

    /// The time of the next R2 work the alarm must start: a retry, or the
    /// flush of a non-empty audit buffer. Work due now runs at the end of
    /// the event and needs no alarm.
    pub(super) fn deadline(&self) -> Option<u64> {
        // A running pass sets the alarm itself once it ends; an alarm set
        // now would fire while it awaits R2 and find nothing to do.
        if !self.available || self.busy {
            return None;
        }
        let flush = self.settings.flush_due_at(&self.buffer);
        let pending = self.mirror_pending > 0 || !self.registered || flush.is_some();
        match self.retry_at {
            Some(at) if pending => Some(at),
            _ => flush,
        }
    }

    /// Reports whether a pass has work at `now_ms` and may start.
    fn due(&self, now_ms: u64) -> bool {
        let waiting = self.retry_at.is_some_and(|at| at > now_ms);
        let flush = self.flush_requested
            || self
                .settings
                .flush_due_at(&self.buffer)
                .is_some_and(|at| at <= now_ms);
        self.available
            && !self.busy
            && !waiting
            && (self.mirror_pending > 0 || !self.registered || flush)
    }

    /// Counts the pending rows again after a pass, and the audit buffer
    /// when `buffer` is set: counting reads (and bills) every buffered row,
    /// so only a pass that flushed or failed does it.
    fn recount(&mut self, sql: &SqlStorage, buffer: bool) {
        let pending = integers(sql, "SELECT COUNT(*) FROM retained_mirror_pending", vec![]);
        let buffer = match buffer {
            true => integers(
                sql,
                "SELECT COUNT(*), COALESCE(SUM(size), 0), COALESCE(MIN(time_ms), -1) FROM audit_buffer",
                vec![],
            )
            .map(Some),
            false => Ok(None),
        };
        match (pending, buffer) {
            (Ok(pending), Ok(buffer)) => {
                self.mirror_pending = pending
                    .first()
                    .and_then(|row| row.first())
                    .copied()
                    .unwrap_or(0) as u64;
                let Some(buffer) = buffer else {
                    return;
                };
                let row = buffer.first().cloned().unwrap_or_default();
                let value = |index: usize| row.get(index).copied().unwrap_or(0);
                self.buffer = BufferStats {
                    messages: value(0) as u64,
                    bytes: value(1) as u64,
                    oldest_ms: u64::try_from(value(2)).ok(),
                };
            }
            (Err(error), _) | (_, Err(error)) => {
                logging::error(None, &format!("counting archive rows failed: {error}"))
            }
        }
    }

    /// Renders the archive's metrics as Prometheus text, labelled `namespace`.
    pub(super) fn prometheus(&self, escaped_namespace: &str) -> String {
        let ns = escaped_namespace;
        let samples = [
            (
                "mqtt_retained_mirror_pending",
                "gauge",
                "Retained changes not yet written to R2.",
                self.mirror_pending,
            ),
            (
                "mqtt_audit_buffered_messages",
                "gauge",
                "Audited messages not yet written to R2.",
                self.buffer.messages,
            ),
            (
                "mqtt_audit_messages_total",
                "counter",
                "Messages recorded for the audit log.",
                self.audited,
            ),
            (
                "mqtt_r2_write_failures_total",
                "counter",
                "Failed passes of R2 writes.",
                self.write_failures,
            ),
        ];
        samples
            .iter()
            .map(|(name, kind, help, value)| {
                format!("# HELP {name} {help}\n# TYPE {name} {kind}\n{name}{{namespace=\"{ns}\"}} {value}\n")
            })
            .collect()
    }
}

impl Namespace {
    /// Writes pending retained changes, a due audit flush and the namespace
    /// marker to R2. It runs after the event's outputs are carried out, so
    /// MQTT sends never wait for R2. A failure sets a retry time for the
    /// alarm.
    pub(super) async fn run_archive(&self) {
        // An event that arrives while a pass awaits R2 records its rows but
        // leaves them to this pass, so it runs again until nothing is due.
        while self.run_archive_pass().await {}
    }

    /// Runs one pass if one is due; returns whether it succeeded.
    async fn run_archive_pass(&self) -> bool {
        let now = Date::now().as_millis();
        let namespace = {
            let mut guard = self.loaded.borrow_mut();
            let Some(loaded) = guard.as_mut() else {
                return false;
            };
            if loaded.namespace.is_empty() || !loaded.archive.due(now) {
                return false;
            }
            loaded.archive.busy = true;
            loaded.namespace.clone()
        };
        let result = self.archive_pass(&namespace).await;

        let sql = self.state.storage().sql();
        let mut guard = self.loaded.borrow_mut();
        let Some(loaded) = guard.as_mut() else {
            return false;
        };
        let archive = &mut loaded.archive;
        archive.busy = false;
        archive.recount(&sql, !matches!(result, Ok(false)));
        match result {
            Ok(_) => {
                archive.failures = 0;
                archive.retry_at = None;
                true
            }
            Err(message) => {
                // NOTE: only the delay policy of this path has tests; the
                // local R2 of `wrangler dev` cannot be made to fail.
                archive.failures = archive.failures.saturating_add(1);
                archive.write_failures += 1;
                let delay = archive.settings.retry_delay_ms(archive.failures);
                archive.retry_at = Some(Date::now().as_millis() + delay);
                logging::error(
                    Some(&namespace),
                    &format!("R2 write failed, retrying in {delay} ms: {message}"),
                );
                false
            }
        }
    }

    /// Runs the R2 writes of one pass; returns whether it flushed the audit
    /// buffer.
    async fn archive_pass(&self, namespace: &str) -> std::result::Result<bool, String> {
        let bucket = r2::bucket(&self.env)?;
        let sql = self.state.storage().sql();
        self.mirror_retained(&sql, &bucket, namespace).await?;
        let (flush, registered) = self.with_archive(|archive| {
            let now = Date::now().as_millis();
            let due = archive.flush_requested
                || archive
                    .settings
                    .flush_due_at(&archive.buffer)
                    .is_some_and(|at| at <= now);
            (due, archive.registered)
        });
        if flush {
            self.flush_audit(&sql, &bucket, namespace).await?;
        }
        if !registered {
            let key = archive::namespace_marker_key(namespace);
            bucket
                .put(&key, Vec::new())
                .execute()
                .await
                .map_err(|error| format!("writing {key} failed: {error}"))?;
            write_state(&sql, "registered", "1").map_err(|error| error.to_string())?;
            self.with_archive(|archive| archive.registered = true);
        }
        Ok(flush)
    }

    fn with_archive<T: Default>(&self, action: impl FnOnce(&mut Archive) -> T) -> T {
        self.loaded
            .borrow_mut()
            .as_mut()
            .map(|loaded| action(&mut loaded.archive))
            .unwrap_or_default()
    }

    /// Writes every pending retained change, oldest rows first. A row is
    /// deleted only if no newer change of its topic arrived meanwhile.
    async fn mirror_retained(
        &self,
        sql: &SqlStorage,
        bucket: &Bucket,
        namespace: &str,
    ) -> std::result::Result<(), String> {
        loop {
            let rows = mirror_rows(sql).map_err(|error| error.to_string())?;
            if rows.is_empty() {
                return Ok(());
            }
            for (topic, value, version) in rows {
                write_retained(bucket, namespace, &topic, value).await?;
                sql.exec(
                    "DELETE FROM retained_mirror_pending WHERE topic = ? AND version = ?",
                    vec![topic.into(), version.into()],
                )
                .map_err(|error| error.to_string())?;
            }
        }
    }

    /// Writes the audit buffer, as buffered now, to R2: one object per UTC
    /// hour and per `flush_bytes` of messages.
    async fn flush_audit(
        &self,
        sql: &SqlStorage,
        bucket: &Bucket,
        namespace: &str,
    ) -> std::result::Result<(), String> {
        let (last_seq, flush_bytes, flush_messages) = self.with_archive(|archive| {
            (
                archive.next_seq.saturating_sub(1),
                archive.settings.flush_bytes,
                archive.settings.flush_messages,
            )
        });
        let failed = |error: worker::Error| error.to_string();
        loop {
            let sizes = integers(
                sql,
                "SELECT seq, size FROM audit_buffer WHERE seq <= ? ORDER BY seq LIMIT ?",
                vec![(last_seq as i64).into(), (flush_messages as i64).into()],
            )
            .map_err(failed)?;
            let Some(chunk_end) = chunk_end(&sizes, flush_bytes) else {
                break;
            };
            let rows = buffered_rows(sql, chunk_end).map_err(failed)?;
            let times: Vec<(u64, u64)> = rows.iter().map(|row| (row.0, row.1)).collect();
            for batch in archive::audit_batches(&times) {
                let batch = &rows[batch];
                let (first, time) = (batch[0].0, batch[0].1);
                let last = batch[batch.len() - 1].0;
                let body: String = batch
                    .iter()
                    .filter_map(|(seq, time, value)| {
                        let message = Message::decode_stored(&mut value.clone())?;
                        Some(
                            MessageRecord::from_message(&message, Some(*seq), Some(*time))
                                .to_line(),
                        )
                    })
                    .collect();
                let key = archive::audit_key(namespace, time, first, last);
                bucket
                    .put(&key, body)
                    .execute()
                    .await
                    .map_err(|error| format!("writing {key} failed: {error}"))?;
                sql.exec(
                    "DELETE FROM audit_buffer WHERE seq <= ?",
                    vec![(last as i64).into()],
                )
                .map_err(failed)?;
                write_state(sql, "next_seq", &(last_seq + 1).to_string()).map_err(failed)?;
            }
        }
        self.with_archive(|archive| archive.flush_requested = false);
        Ok(())
    }

    /// Serves the archive routes under `/admin/`.
    pub(super) async fn handle_archive_admin(
        &self,
        mut req: Request,
        method: Method,
        rest: &str,
        namespace: &str,
    ) -> Result<Response> {
        match (method, rest) {
            (Method::Post, "retained/import") => {
                let body = req.text().await?;
                self.import_retained(&body)
            }
            (Method::Get, "audit") => self.audit_status(namespace),
            (Method::Put, "audit") => {
                let body = req.text().await?;
                self.set_audit_policy(namespace, Some(&body))
            }
            (Method::Delete, "audit") => self.set_audit_policy(namespace, None),
            (Method::Post, "audit/flush") => {
                self.with_archive(|archive| archive.flush_requested = true);
                self.run_archive().await;
                self.audit_status(namespace)
            }
            (Method::Post, "audit/replay") => self.replay(&req, namespace).await,
            (Method::Post, "upkeep") => self.upkeep(namespace).await,
            (_, path) => json_error(
                405,
                format!("method not allowed on /admin/{path}; see docs/http.md"),
            ),
        }
    }

    /// Imports NDJSON retained records: every line is checked before any
    /// is set, and expired ones are skipped.
    fn import_retained(&self, body: &str) -> Result<Response> {
        let records = match archive::parse_ndjson_numbered(body) {
            Ok(records) => records,
            Err(message) => return json_error(400, message),
        };
        let record_count = records.len() as u64;
        let mut messages = Vec::with_capacity(records.len());
        for (line, record) in &records {
            match record.to_message() {
                Ok(message) => messages.push((*line, message)),
                Err(message) => return json_error(400, format!("line {line}: {message}")),
            }
        }
        let outcome = self.with_loaded(|loaded, now| {
            for (line, message) in &messages {
                let mut publish = message.to_publish(Some(PacketId::MIN), false, now);
                publish.retain = true;
                if let Err(error) = loaded.broker.check_replay(&publish) {
                    return Err(format!("line {line}: {error}"));
                }
            }
            let mut imported = 0u64;
            for (_, message) in messages {
                if let Ok(true) = loaded.broker.import_retained(message, now) {
                    imported += 1;
                }
            }
            Ok(imported)
        });
        match outcome {
            None => json_error(500, "broker unavailable"),
            Some(Err(message)) => json_error(400, message),
            Some(Ok(imported)) => Response::from_json(&json!({
                "imported": imported,
                "skipped": record_count - imported,
            })),
        }
    }

    fn audit_status(&self, namespace: &str) -> Result<Response> {
        let status = self.with_archive(|archive| {
            Some(json!({
                "namespace": namespace,
                "policy": archive.policy,
                "admin_override": archive.admin_policy.is_some(),
                "r2_available": archive.available,
                "buffered_messages": archive.buffer.messages,
                "buffered_bytes": archive.buffer.bytes,
                "retained_mirror_pending": archive.mirror_pending,
                "next_seq": archive.next_seq,
            }))
        });
        Response::from_json(&status.unwrap_or_default())
    }

    /// Stores (or with `None` removes) the admin API's audit policy.
    fn set_audit_policy(&self, namespace: &str, body: Option<&str>) -> Result<Response> {
        let policy = match body.map(serde_json::from_str::<AuditPolicy>) {
            None => None,
            Some(Ok(policy)) => Some(policy),
            Some(Err(error)) => {
                return json_error(400, format!("invalid audit policy: {error}; send {{\"enabled\": true, \"filters\": [\"#\"]}}"))
            }
        };
        if let Some(Err(message)) = policy.as_ref().map(AuditPolicy::check) {
            return json_error(400, message);
        }
        let sql = self.state.storage().sql();
        let stored = match &policy {
            Some(policy) => write_state(&sql, "audit_policy", &json!(policy).to_string()),
            None => sql
                .exec(
                    "DELETE FROM archive_state WHERE name = 'audit_policy'",
                    None,
                )
                .map(|_| ()),
        };
        if let Err(error) = stored {
            return json_error(500, format!("storing the audit policy failed: {error}"));
        }
        if let Some(loaded) = self.loaded.borrow_mut().as_mut() {
            loaded.archive.admin_policy = policy;
            loaded.archive.set_namespace(namespace);
            if loaded.archive.observes_routed() {
                loaded.broker.set_observe_routed(true);
            }
        }
        self.audit_status(namespace)
    }

    /// Publishes the audit records of a time range again, in order, to one
    /// topic (`?topic=`) or under a prefix (`?prefix=`), not retained and
    /// without their expiry.
    async fn replay(&self, req: &Request, namespace: &str) -> Result<Response> {
        let pairs = query_pairs(req)?;
        let target = match (query_value(&pairs, "topic"), query_value(&pairs, "prefix")) {
            (Some(topic), None) => ReplayTarget::Topic(topic.to_string()),
            (None, Some(prefix)) if !prefix.is_empty() => ReplayTarget::Prefix(prefix.to_string()),
            _ => {
                return json_error(
                    400,
                    "replay needs exactly one of ?topic=<topic> or ?prefix=<prefix>",
                )
            }
        };
        let (from, to) = match crate::r2_api::time_range(req)? {
            Ok(range) => range,
            Err(message) => return json_error(400, message),
        };
        let records = match r2::bucket(&self.env) {
            Ok(bucket) => r2::read_audit_range(&bucket, namespace, from, to).await,
            Err(message) => Err(message),
        };
        let records = match records {
            Ok(records) => records,
            Err(message) => return json_error(502, message),
        };
        let mut publishes = Vec::with_capacity(records.len());
        for record in &records {
            let mut message = match record.to_message() {
                Ok(message) => message,
                Err(message) => {
                    return json_error(502, format!("audit record {:?}: {message}", record.seq))
                }
            };
            message.expires_at_ms = None;
            message.retain = false;
            message.topic = target.topic_for(&record.topic).into();
            // The codec needs a packet id to encode QoS 1 and 2; the broker
            // assigns its own on delivery.
            publishes.push(message.to_publish(Some(PacketId::MIN), false, 0));
        }
        let outcome = self.with_loaded(|loaded, now| {
            if let Some(error) = publishes
                .iter()
                .find_map(|p| loaded.broker.check_replay(p).err())
            {
                return Err(error.to_string());
            }
            let count = publishes.len();
            for publish in publishes {
                // Checked above; nothing in between changes the outcome.
                let _ = loaded.broker.publish_external(publish, now);
            }
            Ok(count)
        });
        match outcome {
            None => json_error(500, "broker unavailable"),
            Some(Err(message)) => json_error(400, message),
            Some(Ok(count)) => Response::from_json(&json!({ "replayed": count })),
        }
    }

    /// Runs the broker's upkeep and deletes the audit objects past their
    /// retention; returns the [`UpkeepReport`].
    async fn upkeep(&self, namespace: &str) -> Result<Response> {
        let Some(mut report) = self.with_loaded(|loaded, now| loaded.broker.run_upkeep(now)) else {
            return json_error(500, "broker unavailable");
        };
        let settings = self.with_archive(|archive| Some(archive.settings.clone()));
        let deleted = match (settings, r2::bucket(&self.env)) {
            (Some(settings), Ok(bucket)) => {
                delete_expired_audit(&bucket, namespace, &settings).await
            }
            (_, Err(message)) => Err(message),
            (None, _) => Ok(0),
        };
        match deleted {
            Ok(count) => report.audit_objects_deleted = count,
            Err(message) => logging::error(Some(namespace), &format!("upkeep: {message}")),
        }
        if let Some(loaded) = self.loaded.borrow_mut().as_mut() {
            loaded
                .broker
                .record_audit_objects_deleted(report.audit_objects_deleted);
        }
        if report != UpkeepReport::default() {
            logging::info(&json!({
                "message": "namespace upkeep removed expired state",
                "namespace": namespace,
                "expired_sessions": report.expired_sessions,
                "expired_retained": report.expired_retained,
                "audit_objects_deleted": report.audit_objects_deleted,
            }));
        }
        Response::from_json(&report)
    }
}

/// Writes or deletes the retained object of one topic.
async fn write_retained(
    bucket: &Bucket,
    namespace: &str,
    topic: &str,
    value: Vec<u8>,
) -> std::result::Result<(), String> {
    let Some(key) = archive::retained_key(namespace, topic) else {
        logging::info_message(
            Some(namespace),
            &format!(
                "a retained topic of {} bytes is too long for an R2 key; not mirrored",
                topic.len()
            ),
        );
        return Ok(());
    };
    if value.is_empty() {
        return bucket
            .delete(&key)
            .await
            .map_err(|error| format!("deleting {key} failed: {error}"));
    }
    let Some(message) = Message::decode_stored(&mut Bytes::from(value)) else {
        logging::error(
            Some(namespace),
            "a pending retained row does not decode; skipped",
        );
        return Ok(());
    };
    let line = MessageRecord::from_message(&message, None, None).to_line();
    bucket
        .put(&key, line)
        .execute()
        .await
        .map(|_| ())
        .map_err(|error| format!("writing {key} failed: {error}"))
}

/// Deletes the namespace's audit objects past their retention. Only hours
/// that started a retention ago can hold such objects, so the listing
/// stops at the first later hour.
async fn delete_expired_audit(
    bucket: &Bucket,
    namespace: &str,
    settings: &ArchiveSettings,
) -> std::result::Result<u64, String> {
    let now = Date::now().as_millis();
    let prefix = archive::audit_prefix(namespace);
    let objects = r2::list(bucket, &prefix, None, |key| {
        archive::parse_audit_key(namespace, key)
            .is_none_or(|parsed| settings.audit_object_expired(parsed.hour_start_ms, now))
    })
    .await?;
    let expired: Vec<String> = objects
        .iter()
        .filter(|object| settings.audit_object_expired(object.uploaded().as_millis(), now))
        .map(|object| object.key())
        .collect();
    for chunk in expired.chunks(DELETE_BATCH) {
        bucket
            .delete_multiple(chunk.to_vec())
            .await
            .map_err(|error| format!("deleting audit objects failed: {error}"))?;
    }
    Ok(expired.len() as u64)
}

/// Returns the last sequence of the next chunk: rows up to `flush_bytes`
/// (at least one row); `None` when there are none.
fn chunk_end(sizes: &[Vec<i64>], flush_bytes: u64) -> Option<u64> {
    let mut total = 0u64;
    let mut end = None;
    for row in sizes {
        let (seq, size) = (row.first().copied()?, row.get(1).copied()?);
        if end.is_some() && total + size as u64 > flush_bytes {
            break;
        }
        total += size as u64;
        end = Some(seq as u64);
    }
    end
}

/// Reads pending retained changes: topic, value and version.
fn mirror_rows(sql: &SqlStorage) -> Result<Vec<(String, Vec<u8>, i64)>> {
    let cursor = sql.exec(
        "SELECT topic, value, version FROM retained_mirror_pending ORDER BY version LIMIT ?",
        vec![MIRROR_ROWS_PER_QUERY.into()],
    )?;
    let mut rows = Vec::new();
    for columns in cursor.raw() {
        let mut columns = columns?.into_iter();
        let (Some(SqlStorageValue::String(topic)), Some(value), Some(version)) =
            (columns.next(), columns.next(), columns.next())
        else {
            return Err("retained_mirror_pending: unexpected columns".into());
        };
        rows.push((topic, blob(value), integer(&version)));
    }
    Ok(rows)
}

/// Reads buffered audit rows up to `last_seq`: sequence, time and value.
fn buffered_rows(sql: &SqlStorage, last_seq: u64) -> Result<Vec<(u64, u64, Bytes)>> {
    let cursor = sql.exec(
        "SELECT seq, time_ms, value FROM audit_buffer WHERE seq <= ? ORDER BY seq",
        vec![(last_seq as i64).into()],
    )?;
    let mut rows = Vec::new();
    for columns in cursor.raw() {
        let mut columns = columns?.into_iter();
        let (Some(seq), Some(time), Some(value)) = (columns.next(), columns.next(), columns.next())
        else {
            return Err("audit_buffer: unexpected columns".into());
        };
        rows.push((
            integer(&seq) as u64,
            integer(&time) as u64,
            Bytes::from(blob(value)),
        ));
    }
    Ok(rows)
}

/// Runs a query whose columns are all integers (NULL reads as 0).
fn integers(sql: &SqlStorage, query: &str, params: Vec<SqlStorageValue>) -> Result<Vec<Vec<i64>>> {
    let cursor = sql.exec(query, params)?;
    let mut rows = Vec::new();
    for columns in cursor.raw() {
        rows.push(columns?.iter().map(integer).collect());
    }
    Ok(rows)
}

fn integer(value: &SqlStorageValue) -> i64 {
    match value {
        SqlStorageValue::Integer(number) => *number,
        SqlStorageValue::Float(number) => *number as i64,
        _ => 0,
    }
}

fn blob(value: SqlStorageValue) -> Vec<u8> {
    match value {
        SqlStorageValue::Blob(bytes) => bytes,
        SqlStorageValue::String(text) => text.into_bytes(),
        _ => Vec::new(),
    }
}

fn read_state(sql: &SqlStorage, name: &str) -> Result<Option<String>> {
    let cursor = sql.exec(
        "SELECT value FROM archive_state WHERE name = ?",
        vec![name.into()],
    )?;
    for columns in cursor.raw() {
        if let Some(SqlStorageValue::String(value)) = columns?.into_iter().next() {
            return Ok(Some(value));
        }
    }
    Ok(None)
}

fn write_state(sql: &SqlStorage, name: &str, value: &str) -> Result<()> {
    sql.exec(
        "INSERT OR REPLACE INTO archive_state (name, value) VALUES (?, ?)",
        vec![name.into(), value.into()],
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunk_stops_at_flush_bytes() {
        let sizes = vec![vec![1, 40], vec![2, 40], vec![3, 40]];
        assert_eq!(chunk_end(&sizes, 100), Some(2));
        assert_eq!(chunk_end(&sizes, 120), Some(3));
    }

    #[test]
    fn chunk_takes_one_oversized_row() {
        assert_eq!(chunk_end(&[vec![7, 500], vec![8, 1]], 100), Some(7));
        assert_eq!(chunk_end(&[], 100), None);
    }

    #[test]
    fn archive_paths_are_recognised() {
        assert!(is_archive_path("audit"));
        assert!(is_archive_path("audit/replay"));
        assert!(is_archive_path("upkeep"));
        assert!(!is_archive_path("audit/range"));
        assert!(!is_archive_path("retained/export"));
    }
}
