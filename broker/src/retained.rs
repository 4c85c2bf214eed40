//! Retained messages: the last retained message of each topic.

use std::collections::BTreeMap;
use std::ops::Bound;

use bytes::{Bytes, BytesMut};

use crate::message::Message;
use crate::store::{kind, RowKey, StoreOp};
use crate::topic;

/// The retained messages of the namespace, by topic.
#[derive(Debug, Default)]
pub struct Retained {
    messages: BTreeMap<String, Message>,
}

impl Retained {
    /// Number of retained messages, expired ones included until they are
    /// dropped.
    pub fn len(&self) -> usize {
        self.messages.len()
    }

    /// Replaces the retained message of the message's topic, or removes it
    /// when the payload is empty (MQTT-3.3.1-6, MQTT-3.3.1-7). Returns the
    /// storage write.
    pub fn set(&mut self, message: &Message) -> StoreOp {
        let topic = message.topic.to_string();
        let key = RowKey::new(kind::RETAINED, "", topic.clone());
        if message.payload.is_empty() {
            self.messages.remove(&topic);
            return StoreOp::Delete { key };
        }
        let value = encode(message);
        self.messages.insert(topic, message.clone());
        StoreOp::Put { key, value }
    }

    /// Removes every message past its expiry and returns the storage
    /// deletes.
    pub fn remove_expired(&mut self, now_ms: u64) -> Vec<StoreOp> {
        let expired: Vec<String> = self
            .messages
            .iter()
            .filter(|(_, message)| message.is_expired(now_ms))
            .map(|(topic, _)| topic.clone())
            .collect();
        expired
            .into_iter()
            .map(|topic| {
                self.messages.remove(&topic);
                StoreOp::Delete {
                    key: RowKey::new(kind::RETAINED, "", topic),
                }
            })
            .collect()
    }

    /// Adds a message read back from storage.
    pub fn insert_restored(&mut self, message: Message) {
        self.messages.insert(message.topic.to_string(), message);
    }

    /// Returns the unexpired retained messages whose topic matches `filter`.
    /// A filter without wildcards is one lookup; others scan every retained
    /// message.
    pub fn matching(&self, filter: &str, now_ms: u64) -> Vec<Message> {
        if !filter.contains(['+', '#']) {
            return self
                .messages
                .get(filter)
                .filter(|message| !message.is_expired(now_ms))
                .cloned()
                .into_iter()
                .collect();
        }
        self.messages
            .values()
            .filter(|message| !message.is_expired(now_ms))
            .filter(|message| topic::matches(filter, &message.topic))
            .cloned()
            .collect()
    }

    /// Returns at most `limit` unexpired messages matching `filter` whose
    /// topics sort after `after`, in topic order.
    pub fn page(
        &self,
        filter: &str,
        after: Option<&str>,
        limit: usize,
        now_ms: u64,
    ) -> Vec<Message> {
        let start = match after {
            Some(after) => Bound::Excluded(after.to_string()),
            None => Bound::Unbounded,
        };
        self.messages
            .range((start, Bound::Unbounded))
            .map(|(_, message)| message)
            .filter(|message| !message.is_expired(now_ms))
            .filter(|message| topic::matches(filter, &message.topic))
            .take(limit)
            .cloned()
            .collect()
    }
}

/// Encodes a retained message row.
fn encode(message: &Message) -> Bytes {
    let mut out = BytesMut::new();
    message.encode_stored(&mut out);
    out.freeze()
}

/// Decodes a retained message row; `None` if it is damaged.
pub fn decode(mut value: Bytes) -> Option<Message> {
    Message::decode_stored(&mut value)
}
