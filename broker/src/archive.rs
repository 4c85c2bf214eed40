//! The policy of the R2 archive, with no I/O. It contains the object key
//! layout, the NDJSON record of a message, the audit settings and filters,
//! the flush, retry and retention rules, and the broker calls behind
//! retained import and the scheduled upkeep.
//!
//! The embedding (the Durable Object and the ingress Worker) does the R2
//! and SQLite work. Keys:
//!
//! - `retained/<namespace>/<topic, percent-encoded>`: one NDJSON record,
//!   the retained message of that topic.
//! - `audit/<namespace>/<YYYY>/<MM>/<DD>/<HH>/<first-seq>-<last-seq>.ndjson`:
//!   audited messages of one UTC hour, one record a line, in sequence order.
//!   Sequences are zero-padded to 20 digits, so keys sort in sequence order.
//! - `namespaces/<namespace>`: an empty marker, written once per namespace,
//!   because a Worker cannot list its Durable Objects.

use std::collections::BTreeMap;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use bytes::Bytes;
use codec::{PacketId, Properties, PropertyValues, Publish, QoS};
use serde::{Deserialize, Serialize};

use crate::external::ExternalPublishError;
use crate::message::Message;
use crate::topic;
use crate::Broker;

/// Longest R2 object key, in bytes (R2 documents 1024).
pub const MAX_KEY_LEN: usize = 1024;

/// Prefix of the namespace markers.
pub const NAMESPACE_MARKER_PREFIX: &str = "namespaces/";

const HOUR_MS: u64 = 60 * 60 * 1000;

/// Maximum delay between two retries of a failed R2 write.
const MAX_RETRY_DELAY_MS: u64 = 5 * 60 * 1000;

/// Returns the prefix of every retained object of a namespace.
pub fn retained_prefix(namespace: &str) -> String {
    format!("retained/{namespace}/")
}

/// Returns the key of the retained object of `topic`, or `None` when it
/// would exceed [`MAX_KEY_LEN`].
pub fn retained_key(namespace: &str, topic_name: &str) -> Option<String> {
    let key = format!("{}{}", retained_prefix(namespace), encode_topic(topic_name));
    (key.len() <= MAX_KEY_LEN).then_some(key)
}

/// Percent-encodes every byte of a topic except letters, digits, `/`, `-`,
/// `_`, `.` and `~`, so that any topic makes a valid key and `/` keeps its
/// levels readable.
fn encode_topic(topic_name: &str) -> String {
    let mut out = String::with_capacity(topic_name.len());
    for byte in topic_name.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'/' | b'-' | b'_' | b'.' | b'~' => {
                out.push(char::from(byte))
            }
            other => out.push_str(&format!("%{other:02X}")),
        }
    }
    out
}

/// Returns the prefix of every audit object of a namespace.
pub fn audit_prefix(namespace: &str) -> String {
    format!("audit/{namespace}/")
}

/// Returns the prefix of the audit objects of the UTC hour of `time_ms`.
/// Every key of that hour or later sorts after it, so it is the
/// `startAfter` of a listing that begins at that hour.
pub fn audit_hour_prefix(namespace: &str, time_ms: u64) -> String {
    let (year, month, day, hour) = utc_hour(time_ms);
    format!(
        "{}{year:04}/{month:02}/{day:02}/{hour:02}/",
        audit_prefix(namespace)
    )
}

/// Returns the key of the audit object that contains sequences `first` to
/// `last`, accepted in the hour of `time_ms`.
pub fn audit_key(namespace: &str, time_ms: u64, first: u64, last: u64) -> String {
    format!(
        "{}{first:020}-{last:020}.ndjson",
        audit_hour_prefix(namespace, time_ms)
    )
}

/// The parts of an audit object key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuditObjectKey {
    /// Start of the UTC hour its records belong to, in milliseconds since
    /// the Unix epoch.
    pub hour_start_ms: u64,
    /// Sequence of its first record.
    pub first_seq: u64,
    /// Sequence of its last record.
    pub last_seq: u64,
}

/// Parses an audit object key of `namespace`; `None` for any other key.
pub fn parse_audit_key(namespace: &str, key: &str) -> Option<AuditObjectKey> {
    let rest = key.strip_prefix(&audit_prefix(namespace))?;
    let parts: Vec<&str> = rest.split('/').collect();
    let [year, month, day, hour, name] = parts.as_slice() else {
        return None;
    };
    let (first, last) = name.strip_suffix(".ndjson")?.split_once('-')?;
    let days = days_from_civil(year.parse().ok()?, month.parse().ok()?, day.parse().ok()?)?;
    let hour: u64 = hour.parse().ok().filter(|&h| h < 24)?;
    Some(AuditObjectKey {
        hour_start_ms: days * 24 * HOUR_MS + hour * HOUR_MS,
        first_seq: first.parse().ok()?,
        last_seq: last.parse().ok()?,
    })
}

/// Returns the marker key of a namespace.
pub fn namespace_marker_key(namespace: &str) -> String {
    format!("{NAMESPACE_MARKER_PREFIX}{namespace}")
}

/// Returns the year, month, day and hour (UTC) of a time.
fn utc_hour(time_ms: u64) -> (u64, u64, u64, u64) {
    let hours = time_ms / HOUR_MS;
    let (year, month, day) = civil_from_days(hours / 24);
    (year, month, day, hours % 24)
}

/// Converts days since 1970-01-01 to a proleptic Gregorian date, after
/// Howard Hinnant's `civil_from_days` (chrono-compatible date algorithms).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let day_of_era = z - era * 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_index + 2) / 5 + 1;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    };
    let year = year_of_era + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

/// Converts a date back to days since 1970-01-01, the inverse of
/// [`civil_from_days`]. Returns `None` for an invalid or pre-1970 date.
fn days_from_civil(year: u64, month: u64, day: u64) -> Option<u64> {
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || year < 1970 {
        return None;
    }
    let year = if month <= 2 { year - 1 } else { year };
    let era = year / 400;
    let year_of_era = year - era * 400;
    let shifted_month = if month > 2 { month - 3 } else { month + 9 };
    let day_of_year = (153 * shifted_month + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    (era * 146_097 + day_of_era).checked_sub(719_468)
}

/// One message as a line of NDJSON: a retained object, a line of an audit
/// object, export and import. Binary fields are standard base64.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageRecord {
    /// Audit sequence number, increasing per namespace; absent on retained
    /// records.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seq: Option<u64>,
    /// When the broker accepted the message (audit records), in
    /// milliseconds since the Unix epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_ms: Option<u64>,
    /// The topic name.
    pub topic: String,
    /// The payload.
    pub payload_base64: String,
    /// The QoS it was published with.
    pub qos: u8,
    /// The RETAIN flag it was published with.
    #[serde(default)]
    pub retain: bool,
    /// When it expires, in milliseconds since the Unix epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at_ms: Option<u64>,
    /// Payload Format Indicator.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload_format_indicator: Option<u8>,
    /// Content Type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
    /// Response Topic.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_topic: Option<String>,
    /// Correlation Data.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlation_data_base64: Option<String>,
    /// User Properties, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub user_properties: Vec<(String, String)>,
}

impl MessageRecord {
    /// Builds the record of a message; `seq` and `time_ms` are for audit
    /// records.
    pub fn from_message(message: &Message, seq: Option<u64>, time_ms: Option<u64>) -> Self {
        let properties = &message.properties;
        MessageRecord {
            seq,
            time_ms,
            topic: message.topic.to_string(),
            payload_base64: BASE64.encode(&message.payload),
            qos: message.qos as u8,
            retain: message.retain,
            expires_at_ms: message.expires_at_ms,
            payload_format_indicator: properties.payload_format_indicator,
            content_type: properties.content_type.as_ref().map(|s| s.to_string()),
            response_topic: properties.response_topic.as_ref().map(|s| s.to_string()),
            correlation_data_base64: properties
                .correlation_data
                .as_ref()
                .map(|data| BASE64.encode(data)),
            user_properties: properties
                .user_properties
                .iter()
                .map(|(key, value)| (key.to_string(), value.to_string()))
                .collect(),
        }
    }

    /// Rebuilds the message; an error names the invalid field.
    pub fn to_message(&self) -> Result<Message, String> {
        let payload = BASE64
            .decode(&self.payload_base64)
            .map_err(|error| format!("invalid payload_base64: {error}"))?;
        let qos = QoS::from_u8(self.qos)
            .ok_or_else(|| format!("invalid qos {}: expected 0, 1 or 2", self.qos))?;
        let correlation_data = match &self.correlation_data_base64 {
            Some(text) => {
                Some(Bytes::from(BASE64.decode(text).map_err(|error| {
                    format!("invalid correlation_data_base64: {error}")
                })?))
            }
            None => None,
        };
        let properties = Properties::from(PropertyValues {
            payload_format_indicator: self.payload_format_indicator,
            content_type: self.content_type.as_deref().map(Into::into),
            response_topic: self.response_topic.as_deref().map(Into::into),
            correlation_data,
            user_properties: self
                .user_properties
                .iter()
                .map(|(key, value)| (key.as_str().into(), value.as_str().into()))
                .collect(),
            ..PropertyValues::default()
        });
        Ok(Message {
            topic: self.topic.as_str().into(),
            payload: Bytes::from(payload),
            qos,
            retain: self.retain,
            properties,
            expires_at_ms: self.expires_at_ms,
        })
    }

    /// Returns the record as one line of NDJSON, newline included.
    pub fn to_line(&self) -> String {
        // Serializing a struct of strings and numbers cannot fail.
        let mut line = serde_json::to_string(self).unwrap_or_default();
        line.push('\n');
        line
    }
}

/// Parses NDJSON records, skipping blank lines. An error names the line
/// (counted from 1) and what is wrong with it.
pub fn parse_ndjson(text: &str) -> Result<Vec<MessageRecord>, String> {
    let numbered = parse_ndjson_numbered(text)?;
    Ok(numbered.into_iter().map(|(_, record)| record).collect())
}

/// Parses NDJSON records like [`parse_ndjson`], and pairs each record with
/// its line number in `text`, counted from 1, so that later checks can
/// name the line too.
pub fn parse_ndjson_numbered(text: &str) -> Result<Vec<(usize, MessageRecord)>, String> {
    let mut records = Vec::new();
    for (index, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let line_number = index + 1;
        let record: MessageRecord = serde_json::from_str(line)
            .map_err(|error| format!("line {line_number}: invalid record: {error}"))?;
        records.push((line_number, record));
    }
    Ok(records)
}

/// Settings of the archive: the `AUDIT` table of `[vars]`. Every field has
/// a default.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ArchiveSettings {
    /// Whether retained messages are mirrored to R2.
    pub mirror_retained: bool,
    /// Whether every namespace records the messages matching `filters`.
    pub enabled: bool,
    /// Topic filters of the audited messages. `#` does not match `$` topics.
    pub filters: Vec<String>,
    /// Settings of particular namespaces, by name, replacing `enabled` and
    /// `filters`. The admin API sets a further override per namespace.
    pub namespaces: BTreeMap<String, AuditPolicy>,
    /// Buffered messages that trigger a flush to R2.
    pub flush_messages: u64,
    /// Buffered bytes (topic and payload) that trigger a flush.
    pub flush_bytes: u64,
    /// Seconds the oldest buffered message may wait for a flush.
    pub flush_interval_secs: u64,
    /// Seconds an audit object is kept after it was written; the scheduled
    /// upkeep deletes older ones.
    pub retention_secs: u64,
    /// Seconds before the first retry of a failed R2 write; each further
    /// failure doubles it, up to five minutes.
    pub retry_secs: u64,
}

impl Default for ArchiveSettings {
    fn default() -> Self {
        ArchiveSettings {
            mirror_retained: true,
            enabled: false,
            filters: vec!["#".to_string()],
            namespaces: BTreeMap::new(),
            flush_messages: 1000,
            flush_bytes: 1024 * 1024,
            flush_interval_secs: 300,
            retention_secs: 30 * 24 * 60 * 60,
            retry_secs: 5,
        }
    }
}

impl ArchiveSettings {
    /// Parses the settings from JSON and checks every filter.
    pub fn from_json(value: serde_json::Value) -> Result<ArchiveSettings, String> {
        let settings: ArchiveSettings =
            serde_json::from_value(value).map_err(|error| error.to_string())?;
        check_filters(&settings.filters)?;
        for (name, policy) in &settings.namespaces {
            policy
                .check()
                .map_err(|error| format!("namespaces.{name}: {error}"))?;
        }
        if settings.flush_messages == 0 {
            return Err("flush_messages must be at least 1".to_string());
        }
        Ok(settings)
    }

    /// Returns the audit policy of a namespace: the admin override if any,
    /// else its entry in `namespaces`, else `enabled` and `filters`.
    pub fn policy_for(&self, namespace: &str, admin: Option<&AuditPolicy>) -> AuditPolicy {
        if let Some(policy) = admin.or_else(|| self.namespaces.get(namespace)) {
            return policy.clone();
        }
        AuditPolicy {
            enabled: self.enabled,
            filters: self.filters.clone(),
        }
    }

    /// Returns when a buffer must be flushed: at once when it contains
    /// `flush_messages` or `flush_bytes`, else `flush_interval_secs` after
    /// its oldest message. Returns `None` when it is empty.
    pub fn flush_due_at(&self, buffer: &BufferStats) -> Option<u64> {
        let oldest = buffer.oldest_ms?;
        if buffer.messages >= self.flush_messages || buffer.bytes >= self.flush_bytes {
            return Some(oldest);
        }
        Some(oldest.saturating_add(self.flush_interval_secs.saturating_mul(1000)))
    }

    /// Returns the delay before retry number `attempt` (1 for the first)
    /// of a failed R2 write.
    pub fn retry_delay_ms(&self, attempt: u32) -> u64 {
        let base = self.retry_secs.max(1).saturating_mul(1000);
        let factor = 1u64 << attempt.saturating_sub(1).min(16);
        base.saturating_mul(factor).min(MAX_RETRY_DELAY_MS)
    }

    /// Reports whether an audit object written at `uploaded_ms` is past its
    /// retention at `now_ms`.
    pub fn audit_object_expired(&self, uploaded_ms: u64, now_ms: u64) -> bool {
        uploaded_ms.saturating_add(self.retention_secs.saturating_mul(1000)) <= now_ms
    }
}

/// The audit policy of a namespace: whether it records messages, and on
/// which topics.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditPolicy {
    /// Whether the namespace records messages at all.
    pub enabled: bool,
    /// Topic filters of the recorded messages.
    #[serde(default = "all_topics")]
    pub filters: Vec<String>,
}

fn all_topics() -> Vec<String> {
    vec!["#".to_string()]
}

impl AuditPolicy {
    /// Checks every filter.
    pub fn check(&self) -> Result<(), String> {
        check_filters(&self.filters)
    }

    /// Reports whether a message on `topic_name` is audited.
    pub fn records(&self, topic_name: &str) -> bool {
        self.enabled
            && self
                .filters
                .iter()
                .any(|filter| topic::matches(filter, topic_name))
    }
}

fn check_filters(filters: &[String]) -> Result<(), String> {
    match filters
        .iter()
        .find(|filter| !topic::valid_topic_filter(filter))
    {
        Some(filter) => Err(format!("invalid topic filter {filter:?}")),
        None => Ok(()),
    }
}

/// The size and age of an audit buffer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BufferStats {
    /// Buffered messages.
    pub messages: u64,
    /// Buffered bytes, topic and payload.
    pub bytes: u64,
    /// When the oldest buffered message was accepted.
    pub oldest_ms: Option<u64>,
}

impl BufferStats {
    /// Counts one more buffered message.
    pub fn add(&mut self, size: u64, time_ms: u64) {
        self.messages += 1;
        self.bytes += size;
        self.oldest_ms.get_or_insert(time_ms);
    }
}

/// Splits buffered records, given as `(seq, time_ms)` in sequence order,
/// into the index ranges that go to one audit object each: one per UTC
/// hour, so that a time range is found from the keys alone.
pub fn audit_batches(records: &[(u64, u64)]) -> Vec<std::ops::Range<usize>> {
    let mut batches = Vec::new();
    let mut start = 0;
    for index in 1..=records.len() {
        let hour_changes = records
            .get(index)
            .is_none_or(|&(_, time)| time / HOUR_MS != records[start].1 / HOUR_MS);
        if hour_changes {
            batches.push(start..index);
            start = index;
        }
    }
    batches
}

/// The destination of replayed messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplayTarget {
    /// Every message to this one topic.
    Topic(String),
    /// Each message to `<prefix>/<its topic>`.
    Prefix(String),
}

impl ReplayTarget {
    /// Returns the topic a message recorded on `original` is replayed to.
    pub fn topic_for(&self, original: &str) -> String {
        match self {
            ReplayTarget::Topic(name) => name.clone(),
            ReplayTarget::Prefix(prefix) => format!("{}/{original}", prefix.trim_end_matches('/')),
        }
    }
}

/// The counts of what one run of the scheduled upkeep removed from a
/// namespace.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpkeepReport {
    /// Sessions past their expiry.
    pub expired_sessions: u64,
    /// Retained messages past their Message Expiry Interval.
    pub expired_retained: u64,
    /// Audit objects past their retention.
    pub audit_objects_deleted: u64,
}

impl Broker {
    /// Sets a retained message from an import without delivering it to
    /// anyone: subscribers receive it when they next subscribe, as with a
    /// retained message that was always there. The checks are those of
    /// [`Broker::publish_external`]. Returns `Ok(false)` for an expired
    /// message, which is skipped.
    pub fn import_retained(
        &mut self,
        mut message: Message,
        now_ms: u64,
    ) -> Result<bool, ExternalPublishError> {
        message.retain = true;
        self.check_external(&message.to_publish(Some(PacketId::MIN), false, now_ms))?;
        if message.payload.is_empty() || message.is_expired(now_ms) {
            return Ok(false);
        }
        let op = self.retained.set(&message);
        self.store(op);
        Ok(true)
    }

    /// Checks a message for a replay as [`Broker::publish_external`] does.
    pub fn check_replay(&self, publish: &Publish) -> Result<(), ExternalPublishError> {
        self.check_external(publish)
    }

    /// Ends sessions past their expiry and removes retained messages past
    /// their Message Expiry Interval, with their storage writes, and counts
    /// both in the metrics. The alarm normally ends sessions on time; this
    /// catches any that a lost alarm left behind.
    pub fn run_upkeep(&mut self, now_ms: u64) -> UpkeepReport {
        let sessions_before = self.sessions.len();
        self.handle_timeout(now_ms);
        let expired_sessions = sessions_before.saturating_sub(self.sessions.len()) as u64;
        let ops = self.retained.remove_expired(now_ms);
        let expired_retained = ops.len() as u64;
        for op in ops {
            self.store(op);
        }
        self.metrics.upkeep_runs += 1;
        self.metrics.upkeep_expired_sessions += expired_sessions;
        self.metrics.upkeep_expired_retained += expired_retained;
        UpkeepReport {
            expired_sessions,
            expired_retained,
            audit_objects_deleted: 0,
        }
    }

    /// Counts audit objects the upkeep deleted, for the metrics.
    pub fn record_audit_objects_deleted(&mut self, count: u64) {
        self.metrics.upkeep_audit_objects_deleted += count;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2026-12-04T19:30:00Z.
    const EVENING: u64 = 1_796_412_600_000;

    #[test]
    fn retained_key_encodes_topic() {
        assert_eq!(
            retained_key("site-1", "a/b c/%").as_deref(),
            Some("retained/site-1/a/b%20c/%25")
        );
        assert_eq!(retained_key("n", "é").as_deref(), Some("retained/n/%C3%A9"));
        assert_eq!(retained_key("n", &"x".repeat(2000)), None);
    }

    #[test]
    fn audit_key_round_trips() {
        let key = audit_key("site-1", EVENING, 7, 42);
        assert_eq!(
            key,
            "audit/site-1/2026/12/04/19/00000000000000000007-00000000000000000042.ndjson"
        );
        let parsed = parse_audit_key("site-1", &key).unwrap();
        assert_eq!(parsed.hour_start_ms, EVENING - 30 * 60 * 1000);
        assert_eq!(parsed.first_seq, 7);
        assert_eq!(parsed.last_seq, 42);
        assert_eq!(parse_audit_key("other", &key), None);
        assert_eq!(
            parse_audit_key("site-1", "audit/site-1/2026/13/04/19/1-2.ndjson"),
            None
        );
    }

    #[test]
    fn audit_keys_sort_by_time_then_sequence() {
        let early = audit_key("n", EVENING, 9, 10);
        let later_same_hour = audit_key("n", EVENING + 60_000, 11, 12);
        let next_day = audit_key("n", EVENING + 24 * HOUR_MS, 100, 200);
        assert!(early < later_same_hour);
        assert!(later_same_hour < next_day);
        assert!(audit_hour_prefix("n", EVENING) < early);
    }

    #[test]
    fn civil_dates_cover_leap_years() {
        for days in [0, 59, 60, 365, 11_016, 20_791, 47_541] {
            let (year, month, day) = civil_from_days(days);
            assert_eq!(days_from_civil(year, month, day), Some(days));
        }
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
    }

    #[test]
    fn record_round_trips_message() {
        let message = Message {
            topic: "a/b".into(),
            payload: Bytes::from_static(b"\x00\xffdata"),
            qos: QoS::AtLeastOnce,
            retain: true,
            properties: Properties::from(PropertyValues {
                content_type: Some("bin".into()),
                correlation_data: Some(Bytes::from_static(b"id")),
                user_properties: vec![("k".into(), "v".into())],
                ..PropertyValues::default()
            }),
            expires_at_ms: Some(99),
        };
        let record = MessageRecord::from_message(&message, Some(3), Some(5));
        let line = record.to_line();
        assert!(line.ends_with('\n'));
        let parsed = parse_ndjson(&format!("\n{line}\n")).unwrap();
        assert_eq!(parsed, vec![record]);
        assert_eq!(parsed[0].to_message().unwrap(), message);
    }

    #[test]
    fn bad_ndjson_names_line() {
        let error = parse_ndjson("{\"topic\":\"a\",\"payload_base64\":\"\",\"qos\":0}\nnot json")
            .unwrap_err();
        assert!(error.starts_with("line 2: invalid record"), "{error}");
        let numbered =
            parse_ndjson_numbered("\n\n{\"topic\":\"a\",\"payload_base64\":\"\",\"qos\":0}")
                .unwrap();
        assert_eq!(numbered.len(), 1);
        assert_eq!(numbered[0].0, 3);
        let record = parse_ndjson(r#"{"topic":"a","payload_base64":"!","qos":0}"#).unwrap();
        assert!(record[0]
            .to_message()
            .unwrap_err()
            .contains("payload_base64"));
        let record = parse_ndjson(r#"{"topic":"a","payload_base64":"","qos":3}"#).unwrap();
        assert!(record[0]
            .to_message()
            .unwrap_err()
            .contains("invalid qos 3"));
    }

    #[test]
    fn settings_reject_unknown_and_invalid() {
        let unknown = serde_json::json!({ "flush_message": 3 });
        assert!(ArchiveSettings::from_json(unknown).is_err());
        let filter = serde_json::json!({ "filters": ["a/#/b"] });
        assert!(ArchiveSettings::from_json(filter)
            .unwrap_err()
            .contains("a/#/b"));
        let nested =
            serde_json::json!({ "namespaces": { "x": { "enabled": true, "filters": ["+x"] } } });
        assert!(ArchiveSettings::from_json(nested)
            .unwrap_err()
            .starts_with("namespaces.x"));
    }

    #[test]
    fn policy_prefers_admin_then_namespace_entry() {
        let settings = ArchiveSettings::from_json(serde_json::json!({
            "enabled": true,
            "filters": ["a/#"],
            "namespaces": { "quiet": { "enabled": false } },
        }))
        .unwrap();
        assert!(settings.policy_for("any", None).records("a/1"));
        assert!(!settings.policy_for("any", None).records("b/1"));
        assert!(!settings.policy_for("any", None).records("$SYS/x"));
        assert!(!settings.policy_for("quiet", None).records("a/1"));
        let admin = AuditPolicy {
            enabled: true,
            filters: vec!["b/+".into()],
        };
        assert!(settings.policy_for("quiet", Some(&admin)).records("b/1"));
    }

    #[test]
    fn flush_due_by_count_bytes_or_age() {
        let settings = ArchiveSettings {
            flush_messages: 3,
            flush_bytes: 100,
            flush_interval_secs: 10,
            ..ArchiveSettings::default()
        };
        let mut buffer = BufferStats::default();
        assert_eq!(settings.flush_due_at(&buffer), None);
        buffer.add(10, 1_000);
        assert_eq!(settings.flush_due_at(&buffer), Some(11_000));
        buffer.add(10, 2_000);
        buffer.add(10, 3_000);
        assert_eq!(settings.flush_due_at(&buffer), Some(1_000));
        let mut large = BufferStats::default();
        large.add(150, 5_000);
        assert_eq!(settings.flush_due_at(&large), Some(5_000));
    }

    #[test]
    fn retry_delay_doubles_up_to_cap() {
        let settings = ArchiveSettings::default();
        assert_eq!(settings.retry_delay_ms(1), 5_000);
        assert_eq!(settings.retry_delay_ms(2), 10_000);
        assert_eq!(settings.retry_delay_ms(40), MAX_RETRY_DELAY_MS);
    }

    #[test]
    fn retention_counts_from_upload() {
        let settings = ArchiveSettings {
            retention_secs: 60,
            ..ArchiveSettings::default()
        };
        assert!(!settings.audit_object_expired(1_000, 60_999));
        assert!(settings.audit_object_expired(1_000, 61_000));
    }

    #[test]
    fn batches_split_at_hour_boundaries() {
        let hour = EVENING - EVENING % HOUR_MS;
        let records = [(1, hour - 1), (2, hour), (3, hour + 5), (4, hour + HOUR_MS)];
        assert_eq!(audit_batches(&records), vec![0..1, 1..3, 3..4]);
        assert!(audit_batches(&[]).is_empty());
    }

    #[test]
    fn replay_target_maps_topics() {
        assert_eq!(ReplayTarget::Topic("t".into()).topic_for("a/b"), "t");
        assert_eq!(
            ReplayTarget::Prefix("replay/".into()).topic_for("a/b"),
            "replay/a/b"
        );
    }
}
