//! The bridge from a namespace to a Cloudflare Queue, without I/O: bridge
//! rules, the queue message a routed message becomes, and the policy of the
//! SQLite outbox between them (its bound, batches, backoff and ids).
//!
//! The embedding keeps one [`Outbox`] per namespace and drives it:
//!
//! 1. Rebuild it with [`Outbox::restore`] from the `(seq, bytes)` of the
//!    stored outbox rows and the stored high-water mark.
//! 2. For each routed message, call [`Outbox::admit`] and carry out the
//!    returned [`Admission`] in the same event: delete the evicted rows and
//!    insert the new ones, before anything that event sends.
//! 3. When [`Outbox::next_batch`] returns a batch, read its rows, send them
//!    to the queue, then report [`Outbox::batch_sent`] (delete the rows and
//!    store the high-water mark) or [`Outbox::batch_failed`] (keep them and
//!    wake at [`Outbox::next_deadline`]).
//!
//! Time is an argument everywhere, in milliseconds since the Unix epoch.

use std::collections::{BTreeSet, VecDeque};
use std::fmt::Write;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use serde::{Deserialize, Serialize};

use crate::message::Message;
use crate::topic;

/// Largest queue message body the outbox accepts, in bytes. Cloudflare
/// Queues accept messages up to 128 KB including about 100 bytes of
/// metadata (Queues limits page, 2025); this keeps 2 KiB of margin.
pub const MAX_MESSAGE_BYTES: usize = 126 * 1024;

/// Largest `sendBatch` call: 100 messages.
pub const MAX_BATCH_MESSAGES: usize = 100;

/// Largest `sendBatch` call in bytes (256 KB), less a margin for the
/// per-message metadata counted by [`MESSAGE_OVERHEAD_BYTES`].
pub const MAX_BATCH_BYTES: usize = 250 * 1024;

/// Metadata the queue adds to each message, counted against a batch.
pub const MESSAGE_OVERHEAD_BYTES: usize = 100;

/// Maximum length of a rule name.
const MAX_RULE_NAME_LEN: usize = 64;

/// Maximum length of a webhook URL.
const MAX_URL_LEN: usize = 2048;

/// Destination of the messages of a rule, where the queue consumer
/// delivers them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Destination {
    /// POST each message as JSON to this `http://` or `https://` URL.
    Webhook(String),
    /// Write each message to the R2 bucket under `bridge/<folder>/`.
    R2(String),
}

/// A bridge rule: messages whose topic matches `filter` go to `destination`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// Name of the rule, unique in its namespace: 1 to 64 letters, digits,
    /// `-` or `_`.
    pub name: String,
    /// An MQTT topic filter; `#` and `+` do not match `$` topics.
    pub filter: String,
    /// Webhook URL, for a webhook destination.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook: Option<String>,
    /// Folder under `bridge/` in the R2 bucket, for an R2 destination.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub r2: Option<String>,
}

impl Rule {
    /// Returns the destination of a rule that [`validate_rules`] accepted.
    pub fn destination(&self) -> Option<Destination> {
        match (&self.webhook, &self.r2) {
            (Some(url), None) => Some(Destination::Webhook(url.clone())),
            (None, Some(folder)) => Some(Destination::R2(folder.clone())),
            _ => None,
        }
    }

    /// Reports whether a message on `topic_name` goes through this rule.
    pub fn matches(&self, topic_name: &str) -> bool {
        topic::matches(&self.filter, topic_name)
    }
}

/// Checks a list of rules: names valid and unique, filters valid, exactly
/// one destination each. The error names the first invalid rule.
pub fn validate_rules(rules: &[Rule]) -> Result<(), String> {
    let mut names = BTreeSet::new();
    for rule in rules {
        let name = &rule.name;
        if !valid_name(name) {
            return Err(format!(
                "invalid rule name {name:?}: use 1 to {MAX_RULE_NAME_LEN} letters, digits, '-' or '_'"
            ));
        }
        if !names.insert(name.as_str()) {
            return Err(format!("duplicate rule name {name:?}"));
        }
        if !topic::valid_topic_filter(&rule.filter) {
            return Err(format!(
                "rule {name:?}: invalid topic filter {:?}",
                rule.filter
            ));
        }
        match (&rule.webhook, &rule.r2) {
            (Some(url), None) => {
                check_url(url).map_err(|error| format!("rule {name:?}: {error}"))?
            }
            (None, Some(folder)) => {
                check_folder(folder).map_err(|error| format!("rule {name:?}: {error}"))?
            }
            _ => {
                return Err(format!(
                    "rule {name:?}: set exactly one destination, webhook or r2"
                ))
            }
        }
    }
    Ok(())
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_RULE_NAME_LEN
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn check_url(url: &str) -> Result<(), String> {
    let scheme_ok = url.starts_with("https://") || url.starts_with("http://");
    let host_present = url
        .split_once("://")
        .is_some_and(|(_, rest)| !rest.is_empty() && !rest.starts_with('/'));
    if !scheme_ok || !host_present || url.len() > MAX_URL_LEN {
        return Err(format!(
            "invalid webhook URL {url:?}: expected http:// or https:// and a host, \
             at most {MAX_URL_LEN} characters"
        ));
    }
    if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!(
            "invalid webhook URL {url:?}: it contains whitespace"
        ));
    }
    Ok(())
}

fn check_folder(folder: &str) -> Result<(), String> {
    let valid = !folder.is_empty()
        && folder.len() <= MAX_RULE_NAME_LEN
        && folder
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    match valid {
        true => Ok(()),
        false => Err(format!(
            "invalid r2 folder {folder:?}: use 1 to {MAX_RULE_NAME_LEN} letters, digits, '-' or '_'"
        )),
    }
}

/// Settings of the bridge, from the `BRIDGE` table of `[vars]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BridgeSettings {
    /// Rules of every namespace. A namespace adds its own through the admin
    /// API.
    pub rules: Vec<Rule>,
    /// Rows the outbox of one namespace keeps at most.
    pub outbox_max_messages: usize,
    /// Bytes of queue message bodies the outbox of one namespace keeps at
    /// most.
    pub outbox_max_bytes: usize,
    /// Messages per `sendBatch` call, 1 to 100.
    pub batch_max_messages: usize,
    /// First wait after the queue rejects a batch, in milliseconds; it
    /// doubles with each further failure.
    pub send_retry_base_ms: u64,
    /// Maximum wait between attempts to send a batch, in milliseconds.
    pub send_retry_max_ms: u64,
    /// First delay before the consumer retries a failed delivery, in
    /// seconds; it doubles with each attempt. 0 retries at once.
    pub delivery_retry_base_secs: u32,
    /// Maximum delay between delivery attempts, in seconds (Queues allow at
    /// most 12 hours).
    pub delivery_retry_max_secs: u32,
    /// Delivery attempts before a message is dead-lettered. Set it to the
    /// consumer's `max_retries` plus one.
    pub delivery_max_attempts: u32,
    /// Name of the dead-letter queue, so the consumer can distinguish its
    /// batches from those of the bridge queue.
    pub dead_letter_queue: String,
}

impl Default for BridgeSettings {
    fn default() -> Self {
        BridgeSettings {
            rules: Vec::new(),
            outbox_max_messages: 10_000,
            outbox_max_bytes: 32 * 1024 * 1024,
            batch_max_messages: MAX_BATCH_MESSAGES,
            send_retry_base_ms: 1_000,
            send_retry_max_ms: 5 * 60 * 1000,
            delivery_retry_base_secs: 5,
            delivery_retry_max_secs: 60 * 60,
            delivery_max_attempts: 6,
            dead_letter_queue: "mqtt-edge-bridge-dead-letters".into(),
        }
    }
}

impl BridgeSettings {
    /// Parses the `BRIDGE` variable's JSON value and checks every entry.
    pub fn from_json(value: serde_json::Value) -> Result<BridgeSettings, String> {
        let settings: BridgeSettings = serde_json::from_value(value).map_err(|e| e.to_string())?;
        settings.validate()?;
        Ok(settings)
    }

    /// Checks ranges and the rules.
    pub fn validate(&self) -> Result<(), String> {
        if !(1..=MAX_BATCH_MESSAGES).contains(&self.batch_max_messages) {
            return Err(format!(
                "batch_max_messages = {}: expected 1 to {MAX_BATCH_MESSAGES}",
                self.batch_max_messages
            ));
        }
        if self.outbox_max_messages == 0 || self.outbox_max_bytes < MAX_MESSAGE_BYTES {
            return Err(format!(
                "outbox_max_messages must be at least 1 and outbox_max_bytes at least \
                 {MAX_MESSAGE_BYTES} (one message)"
            ));
        }
        if self.send_retry_base_ms == 0 || self.send_retry_max_ms < self.send_retry_base_ms {
            return Err(
                "send_retry_base_ms must be at least 1 and at most send_retry_max_ms".into(),
            );
        }
        if self.delivery_retry_max_secs > 12 * 60 * 60 {
            return Err("delivery_retry_max_secs is at most 43200 (12 hours)".into());
        }
        if self.delivery_max_attempts == 0 {
            return Err("delivery_max_attempts must be at least 1".into());
        }
        validate_rules(&self.rules)
    }

    /// Returns the delay before delivery attempt `attempts + 1`, after
    /// `attempts` failed ones: the base delay doubled per earlier failure,
    /// capped at the maximum.
    pub fn delivery_retry_delay_secs(&self, attempts: u32) -> u32 {
        let doublings = attempts.saturating_sub(1).min(31);
        let delay = u64::from(self.delivery_retry_base_secs) << doublings;
        delay.min(u64::from(self.delivery_retry_max_secs)) as u32
    }
}

/// MQTT 5.0 properties of a bridged message.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BridgeProperties {
    /// Payload Format Indicator: 1 for UTF-8 text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload_format_indicator: Option<u8>,
    /// Content Type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
    /// Seconds the message had left when the broker accepted it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_expiry: Option<u64>,
    /// Response Topic.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_topic: Option<String>,
    /// Correlation Data in standard base64.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlation_data: Option<String>,
    /// User Properties as `[key, value]` pairs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub user_properties: Vec<(String, String)>,
}

/// A message as it travels through the queue. The webhook receives it
/// without `destination` ([`BridgeMessage::delivery_body`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BridgeMessage {
    /// `<namespace>:<seq>`, the same on every redelivery, so a consumer
    /// drops duplicates by it.
    pub id: String,
    /// The namespace the message was published in.
    pub namespace: String,
    /// The rule that matched.
    pub rule: String,
    /// Destination of the message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destination: Option<Destination>,
    /// The topic name.
    pub topic: String,
    /// The payload as text, when it is valid UTF-8.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload: Option<String>,
    /// The payload in standard base64, when it is not valid UTF-8.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload_base64: Option<String>,
    /// QoS of the publication.
    pub qos: u8,
    /// The RETAIN flag of the publication.
    pub retain: bool,
    /// MQTT 5.0 properties.
    #[serde(default)]
    pub properties: BridgeProperties,
    /// When the broker accepted the message, in milliseconds since the Unix
    /// epoch.
    pub time: u64,
}

impl BridgeMessage {
    /// Describes a routed message for one rule.
    pub fn new(id: String, namespace: &str, rule: &Rule, message: &Message, now_ms: u64) -> Self {
        let properties = &message.properties;
        let text = std::str::from_utf8(&message.payload).ok();
        BridgeMessage {
            id,
            namespace: namespace.to_string(),
            rule: rule.name.clone(),
            destination: rule.destination(),
            topic: message.topic.to_string(),
            payload: text.map(str::to_string),
            payload_base64: text.is_none().then(|| BASE64.encode(&message.payload)),
            qos: message.qos as u8,
            retain: message.retain,
            properties: BridgeProperties {
                payload_format_indicator: properties.payload_format_indicator,
                content_type: properties.content_type.as_ref().map(|v| v.to_string()),
                message_expiry: message
                    .expires_at_ms
                    .map(|at| at.saturating_sub(now_ms).div_ceil(1000)),
                response_topic: properties.response_topic.as_ref().map(|v| v.to_string()),
                correlation_data: properties
                    .correlation_data
                    .as_ref()
                    .map(|data| BASE64.encode(data)),
                user_properties: properties
                    .user_properties
                    .iter()
                    .map(|(key, value)| (key.to_string(), value.to_string()))
                    .collect(),
            },
            time: now_ms,
        }
    }

    /// Serializes the message as a webhook or the R2 sink receives it:
    /// without its destination.
    pub fn delivery_body(&self) -> String {
        let mut body = self.clone();
        body.destination = None;
        serde_json::to_string(&body).unwrap_or_default()
    }
}

/// Formats the deterministic id of outbox row `seq` in `namespace`.
pub fn message_id(namespace: &str, seq: u64) -> String {
    format!("{namespace}:{seq}")
}

/// Parses the sequence number from an id made by [`message_id`].
pub fn seq_of_id(id: &str) -> Option<u64> {
    id.rsplit_once(':')?.1.parse().ok()
}

/// A row to insert into the outbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxRow {
    /// The row's key; the id of the queue message is made from it.
    pub seq: u64,
    /// The queue message body: a [`BridgeMessage`] as JSON.
    pub body: String,
}

/// Rows to write for one routed message, in one event.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Admission {
    /// Rows to delete first, to make room (the oldest waiting ones).
    pub evicted: Vec<u64>,
    /// Rows to insert, one per matching rule.
    pub inserted: Vec<OutboxRow>,
}

/// The rows of one `sendBatch` call, oldest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    /// Sequence numbers of the rows, ascending.
    pub seqs: Vec<u64>,
}

/// Reason a message did not reach the outbox, or left it unsent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BridgeDrop {
    /// The outbox was at its bound; the oldest waiting row made room.
    OutboxFull,
    /// The queue message would exceed [`MAX_MESSAGE_BYTES`].
    TooLarge,
}

impl BridgeDrop {
    /// Returns the label value used in metrics.
    pub fn label(self) -> &'static str {
        match self {
            BridgeDrop::OutboxFull => "outbox_full",
            BridgeDrop::TooLarge => "too_large",
        }
    }
}

/// Counters of the bridge since the outbox was rebuilt.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct BridgeMetrics {
    /// Rows written to the outbox.
    pub queued: u64,
    /// Messages the queue accepted.
    pub sent: u64,
    /// `sendBatch` calls that failed.
    pub send_failures: u64,
    /// Messages dropped because the outbox was full.
    pub dropped_outbox_full: u64,
    /// Messages dropped because they were too large for a queue message.
    pub dropped_too_large: u64,
}

/// Bounds and timing of an outbox, from [`BridgeSettings`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutboxLimits {
    /// Rows at most.
    pub max_messages: usize,
    /// Bytes of bodies at most.
    pub max_bytes: usize,
    /// Rows per batch at most.
    pub batch_max_messages: usize,
    /// First backoff after a failed send, in milliseconds.
    pub retry_base_ms: u64,
    /// Maximum backoff, in milliseconds.
    pub retry_max_ms: u64,
}

impl From<&BridgeSettings> for OutboxLimits {
    fn from(settings: &BridgeSettings) -> Self {
        OutboxLimits {
            max_messages: settings.outbox_max_messages,
            max_bytes: settings.outbox_max_bytes,
            batch_max_messages: settings.batch_max_messages,
            retry_base_ms: settings.send_retry_base_ms,
            retry_max_ms: settings.send_retry_max_ms,
        }
    }
}

/// The outbox of one namespace: which rows wait, which batch is in flight,
/// and when to try again after a failure.
#[derive(Debug, Clone)]
pub struct Outbox {
    limits: OutboxLimits,
    /// `(seq, bytes)` of every row, oldest first.
    rows: VecDeque<(u64, usize)>,
    bytes: usize,
    next_seq: u64,
    /// Rows at the front of `rows` that the batch in flight contains.
    in_flight: Option<usize>,
    /// Failed sends in a row.
    failures: u32,
    retry_at: Option<u64>,
    metrics: BridgeMetrics,
}

impl Outbox {
    /// Rebuilds the outbox from the `(seq, bytes)` of its stored rows, in
    /// any order, and the highest sequence number ever removed from it.
    pub fn restore(limits: OutboxLimits, mut rows: Vec<(u64, usize)>, high_water: u64) -> Self {
        rows.sort_unstable();
        let max_seq = rows.last().map_or(0, |&(seq, _)| seq);
        Outbox {
            limits,
            bytes: rows.iter().map(|&(_, bytes)| bytes).sum(),
            rows: rows.into(),
            next_seq: max_seq.max(high_water) + 1,
            in_flight: None,
            failures: 0,
            retry_at: None,
            metrics: BridgeMetrics::default(),
        }
    }

    /// Replaces the bounds and timing (after a settings change).
    pub fn set_limits(&mut self, limits: OutboxLimits) {
        self.limits = limits;
    }

    /// Turns a routed message into outbox rows, one per matching rule, and
    /// makes room by evicting the oldest rows that are not in flight. A
    /// message too large for a queue message is dropped and counted.
    pub fn admit(
        &mut self,
        rules: &[Rule],
        namespace: &str,
        message: &Message,
        now_ms: u64,
    ) -> Admission {
        let mut admission = Admission::default();
        for rule in rules.iter().filter(|rule| rule.matches(&message.topic)) {
            let seq = self.next_seq;
            let bridged =
                BridgeMessage::new(message_id(namespace, seq), namespace, rule, message, now_ms);
            let body = serde_json::to_string(&bridged).unwrap_or_default();
            if body.len() > MAX_MESSAGE_BYTES {
                self.metrics.dropped_too_large += 1;
                continue;
            }
            if !self.make_room(body.len(), &mut admission.evicted) {
                self.metrics.dropped_outbox_full += 1;
                continue;
            }
            self.next_seq += 1;
            self.rows.push_back((seq, body.len()));
            self.bytes += body.len();
            self.metrics.queued += 1;
            admission.inserted.push(OutboxRow { seq, body });
        }
        admission
    }

    /// Evicts the oldest rows outside the batch in flight until one of
    /// `bytes` fits. Returns false, evicting nothing more, when it cannot.
    fn make_room(&mut self, bytes: usize, evicted: &mut Vec<u64>) -> bool {
        let protected = self.in_flight.unwrap_or(0);
        loop {
            let fits = self.rows.len() < self.limits.max_messages
                && self.bytes + bytes <= self.limits.max_bytes;
            if fits {
                return true;
            }
            let Some((seq, size)) = self.rows.remove(protected) else {
                return false;
            };
            self.bytes -= size;
            self.metrics.dropped_outbox_full += 1;
            evicted.push(seq);
        }
    }

    /// Starts the next batch: the oldest rows, within the batch limits.
    /// Returns `None` while a batch is in flight, while backing off after a
    /// failure, or when the outbox is empty.
    pub fn next_batch(&mut self, now_ms: u64) -> Option<Batch> {
        if self.in_flight.is_some() || self.retry_at.is_some_and(|at| now_ms < at) {
            return None;
        }
        let mut seqs = Vec::new();
        let mut total = 0;
        for &(seq, bytes) in &self.rows {
            let size = bytes + MESSAGE_OVERHEAD_BYTES;
            let full =
                seqs.len() == self.limits.batch_max_messages || total + size > MAX_BATCH_BYTES;
            if full {
                break;
            }
            seqs.push(seq);
            total += size;
        }
        if seqs.is_empty() {
            return None;
        }
        self.in_flight = Some(seqs.len());
        Some(Batch { seqs })
    }

    /// Records that the queue accepted the batch in flight. Returns the
    /// high-water mark to store with the deletion of its rows.
    pub fn batch_sent(&mut self, batch: &Batch) -> u64 {
        let count = self.in_flight.take().unwrap_or(0);
        for _ in 0..count {
            if let Some((_, bytes)) = self.rows.pop_front() {
                self.bytes -= bytes;
            }
        }
        self.metrics.sent += batch.seqs.len() as u64;
        self.failures = 0;
        self.retry_at = None;
        batch.seqs.last().copied().unwrap_or(0)
    }

    /// Records that the queue rejected the batch in flight; its rows stay.
    /// Returns when to try again: the base backoff doubled per failure in a
    /// row, capped at the maximum.
    pub fn batch_failed(&mut self, now_ms: u64) -> u64 {
        self.in_flight = None;
        self.failures = self.failures.saturating_add(1);
        self.metrics.send_failures += 1;
        let doublings = (self.failures - 1).min(32);
        let backoff = self
            .limits
            .retry_base_ms
            .saturating_mul(1 << doublings)
            .min(self.limits.retry_max_ms);
        let at = now_ms.saturating_add(backoff);
        self.retry_at = Some(at);
        at
    }

    /// Returns when the outbox has a send to retry, for the object's alarm.
    pub fn next_deadline(&self) -> Option<u64> {
        match self.rows.is_empty() || self.in_flight.is_some() {
            true => None,
            false => self.retry_at,
        }
    }

    /// Reports whether [`Outbox::next_batch`] would start a batch now.
    pub fn has_work(&self, now_ms: u64) -> bool {
        !self.rows.is_empty()
            && self.in_flight.is_none()
            && self.retry_at.is_none_or(|at| at <= now_ms)
    }

    /// Rows waiting or in flight.
    pub fn depth(&self) -> usize {
        self.rows.len()
    }

    /// Bytes of the bodies of the rows waiting or in flight.
    pub fn depth_bytes(&self) -> usize {
        self.bytes
    }

    /// The counters.
    pub fn metrics(&self) -> &BridgeMetrics {
        &self.metrics
    }

    /// Renders the bridge counters and the outbox depth in the Prometheus
    /// text format, each sample labelled with `namespace`.
    pub fn to_prometheus(&self, namespace: &str) -> String {
        let ns = crate::metrics::escape_label(namespace);
        let metrics = &self.metrics;
        let mut out = String::new();
        let samples = [
            (
                "mqtt_bridge_outbox_messages",
                "gauge",
                "Messages in the bridge outbox.",
                self.rows.len() as u64,
            ),
            (
                "mqtt_bridge_outbox_bytes",
                "gauge",
                "Bytes of the messages in the bridge outbox.",
                self.bytes as u64,
            ),
            (
                "mqtt_bridge_messages_queued_total",
                "counter",
                "Messages written to the bridge outbox.",
                metrics.queued,
            ),
            (
                "mqtt_bridge_messages_sent_total",
                "counter",
                "Bridge messages the queue accepted.",
                metrics.sent,
            ),
            (
                "mqtt_bridge_send_failures_total",
                "counter",
                "Batches the queue rejected.",
                metrics.send_failures,
            ),
        ];
        for (name, kind, help, value) in samples {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            let _ = writeln!(out, "{name}{{namespace=\"{ns}\"}} {value}");
        }
        let drops = [
            (BridgeDrop::OutboxFull.label(), metrics.dropped_outbox_full),
            (BridgeDrop::TooLarge.label(), metrics.dropped_too_large),
        ];
        crate::metrics::write_counter_by_reason(
            &mut out,
            "mqtt_bridge_messages_dropped_total",
            "Bridge messages dropped, by reason.",
            &ns,
            &drops,
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use codec::{Properties, QoS};

    use super::*;

    fn rule(name: &str, filter: &str) -> Rule {
        Rule {
            name: name.into(),
            filter: filter.into(),
            webhook: Some("http://127.0.0.1:9/hook".into()),
            r2: None,
        }
    }

    fn message(topic: &str, payload: &'static [u8]) -> Message {
        Message {
            topic: topic.into(),
            payload: Bytes::from_static(payload),
            qos: QoS::AtLeastOnce,
            retain: false,
            properties: Properties::default(),
            expires_at_ms: None,
        }
    }

    fn limits(max_messages: usize, max_bytes: usize) -> OutboxLimits {
        OutboxLimits {
            max_messages,
            max_bytes,
            batch_max_messages: 100,
            retry_base_ms: 1_000,
            retry_max_ms: 8_000,
        }
    }

    #[test]
    fn rules_match_topic_filters() {
        let rules = [rule("all", "#"), rule("sensors", "sensors/+/temp")];
        let mut outbox = Outbox::restore(limits(100, 1 << 20), Vec::new(), 0);
        let admitted = outbox.admit(&rules, "ns", &message("sensors/a/temp", b"1"), 5);
        assert_eq!(admitted.inserted.len(), 2);
        let admitted = outbox.admit(&rules, "ns", &message("other", b"1"), 5);
        assert_eq!(admitted.inserted.len(), 1);
        let admitted = outbox.admit(&rules, "ns", &message("$SYS/broker/uptime", b"1"), 5);
        assert!(admitted.inserted.is_empty(), "# must not match $ topics");
    }

    #[test]
    fn ids_are_namespace_and_sequence() {
        let rules = [rule("r", "#")];
        let mut outbox = Outbox::restore(limits(100, 1 << 20), vec![(7, 10), (3, 10)], 9);
        let admitted = outbox.admit(&rules, "site-1", &message("a", b"x"), 5);
        let body: BridgeMessage = serde_json::from_str(&admitted.inserted[0].body).unwrap();
        assert_eq!(admitted.inserted[0].seq, 10);
        assert_eq!(body.id, "site-1:10");
        assert_eq!(seq_of_id(&body.id), Some(10));
    }

    #[test]
    fn restored_sequence_never_reuses_ids() {
        let outbox = Outbox::restore(limits(100, 1 << 20), vec![(4, 1)], 2);
        assert_eq!(outbox.next_seq, 5);
        let outbox = Outbox::restore(limits(100, 1 << 20), Vec::new(), 41);
        assert_eq!(outbox.next_seq, 42);
    }

    #[test]
    fn message_json_has_text_or_base64_payload() {
        let rule = rule("r", "#");
        let mut with_props = message("t", b"\xff\x00");
        with_props.properties.content_type = Some("bin".into());
        with_props.properties.user_properties = vec![("k".into(), "v".into())];
        with_props.expires_at_ms = Some(10_500);
        let binary = BridgeMessage::new("n:1".into(), "n", &rule, &with_props, 1_000);
        assert_eq!(binary.payload, None);
        assert_eq!(binary.payload_base64.as_deref(), Some("/wA="));
        assert_eq!(binary.properties.message_expiry, Some(10));
        let text = BridgeMessage::new("n:2".into(), "n", &rule, &message("t", b"hi"), 1_000);
        assert_eq!(text.payload.as_deref(), Some("hi"));
        assert_eq!(text.payload_base64, None);

        let body: serde_json::Value = serde_json::from_str(&binary.delivery_body()).unwrap();
        assert!(body.get("destination").is_none());
        assert_eq!(body["properties"]["content_type"], "bin");
        assert_eq!(body["properties"]["user_properties"][0][1], "v");
        assert_eq!(body["qos"], 1);
    }

    #[test]
    fn full_outbox_evicts_oldest_and_counts() {
        let rules = [rule("r", "#")];
        let mut outbox = Outbox::restore(limits(2, 1 << 20), Vec::new(), 0);
        for _ in 0..3 {
            outbox.admit(&rules, "n", &message("a", b"x"), 0);
        }
        let admitted = outbox.admit(&rules, "n", &message("a", b"x"), 0);
        assert_eq!(admitted.evicted, vec![2]);
        assert_eq!(outbox.depth(), 2);
        assert_eq!(outbox.metrics().dropped_outbox_full, 2);
        let text = outbox.to_prometheus("n\"1");
        assert!(text.contains("# TYPE mqtt_bridge_messages_dropped_total counter\n"));
        assert!(text.contains(
            "mqtt_bridge_messages_dropped_total{namespace=\"n\\\"1\",reason=\"outbox_full\"} 2\n"
        ));
        let batch = outbox.next_batch(0).unwrap();
        assert_eq!(batch.seqs, vec![3, 4]);
    }

    #[test]
    fn full_outbox_keeps_batch_in_flight() {
        let rules = [rule("r", "#")];
        let mut outbox = Outbox::restore(limits(2, 1 << 20), Vec::new(), 0);
        outbox.admit(&rules, "n", &message("a", b"x"), 0);
        outbox.admit(&rules, "n", &message("a", b"x"), 0);
        let batch = outbox.next_batch(0).unwrap();
        let admitted = outbox.admit(&rules, "n", &message("a", b"x"), 0);
        assert!(admitted.inserted.is_empty());
        assert!(admitted.evicted.is_empty());
        assert_eq!(outbox.metrics().dropped_outbox_full, 1);
        assert_eq!(outbox.batch_sent(&batch), 2);
        assert_eq!(outbox.depth(), 0);
        assert_eq!(outbox.depth_bytes(), 0);
    }

    #[test]
    fn oversized_message_is_dropped() {
        static BIG: [u8; MAX_MESSAGE_BYTES] = [b'a'; MAX_MESSAGE_BYTES];
        let mut outbox = Outbox::restore(limits(10, 1 << 24), Vec::new(), 0);
        let admitted = outbox.admit(&[rule("r", "#")], "n", &message("a", &BIG), 0);
        assert!(admitted.inserted.is_empty());
        assert_eq!(outbox.metrics().dropped_too_large, 1);
    }

    #[test]
    fn batches_respect_count_and_bytes() {
        let mut rows: Vec<(u64, usize)> = (1..=150).map(|seq| (seq, 10)).collect();
        let mut outbox = Outbox::restore(limits(1000, 1 << 24), rows.clone(), 0);
        let batch = outbox.next_batch(0).unwrap();
        assert_eq!(batch.seqs.len(), MAX_BATCH_MESSAGES);
        assert!(
            outbox.next_batch(0).is_none(),
            "one batch in flight at a time"
        );
        outbox.batch_sent(&batch);
        assert_eq!(outbox.next_batch(0).unwrap().seqs.len(), 50);

        rows = (1..=4).map(|seq| (seq, 100 * 1024)).collect();
        let mut outbox = Outbox::restore(limits(1000, 1 << 24), rows, 0);
        assert_eq!(outbox.next_batch(0).unwrap().seqs, vec![1, 2]);
    }

    #[test]
    fn failed_sends_back_off_exponentially() {
        let mut outbox = Outbox::restore(limits(10, 1 << 20), vec![(1, 10)], 0);
        let mut delays = Vec::new();
        let mut now = 0;
        for _ in 0..5 {
            outbox.next_batch(now).expect("a batch after the backoff");
            let at = outbox.batch_failed(now);
            assert_eq!(outbox.next_deadline(), Some(at));
            assert!(
                outbox.next_batch(at - 1).is_none(),
                "no send before the deadline"
            );
            delays.push(at - now);
            now = at;
        }
        assert_eq!(delays, vec![1_000, 2_000, 4_000, 8_000, 8_000]);
        let batch = outbox.next_batch(now).unwrap();
        outbox.batch_sent(&batch);
        assert_eq!(outbox.next_deadline(), None);
        assert_eq!(outbox.metrics().send_failures, 5);
        assert_eq!(outbox.metrics().sent, 1);
    }

    #[test]
    fn delivery_delays_double_up_to_the_cap() {
        let settings = BridgeSettings {
            delivery_retry_base_secs: 2,
            delivery_retry_max_secs: 10,
            ..BridgeSettings::default()
        };
        let delays: Vec<u32> = (1..=5)
            .map(|a| settings.delivery_retry_delay_secs(a))
            .collect();
        assert_eq!(delays, vec![2, 4, 8, 10, 10]);
    }

    #[test]
    fn settings_reject_invalid_rules() {
        let parse = |json: serde_json::Value| BridgeSettings::from_json(json);
        assert!(parse(serde_json::json!({})).is_ok());
        let ok = parse(serde_json::json!({"rules": [
            {"name": "a", "filter": "x/#", "webhook": "https://example.com/h"},
            {"name": "b", "filter": "y/+", "r2": "archive"}
        ]}))
        .unwrap();
        assert_eq!(
            ok.rules[1].destination(),
            Some(Destination::R2("archive".into()))
        );
        let cases = [
            serde_json::json!({"rules": [{"name": "a", "filter": "x/#"}]}),
            serde_json::json!({"rules": [{"name": "a", "filter": "x/#", "webhook": "ftp://h", }]}),
            serde_json::json!({"rules": [{"name": "a", "filter": "x/#/y", "r2": "f"}]}),
            serde_json::json!({"rules": [{"name": "a b", "filter": "x", "r2": "f"}]}),
            serde_json::json!({"rules": [{"name": "a", "filter": "x", "r2": "f"},
                                          {"name": "a", "filter": "y", "r2": "f"}]}),
            serde_json::json!({"rules": [{"name": "a", "filter": "x", "r2": "../f"}]}),
            serde_json::json!({"batch_max_messages": 101}),
            serde_json::json!({"unknown": 1}),
        ];
        for case in cases {
            assert!(parse(case.clone()).is_err(), "accepted {case}");
        }
    }
}
