//! The messages a namespace routed, for the HTTP transports. SSE streams
//! receive each one as it arrives and long polls read them after a cursor.
//! Unnamed readers get the last messages kept in memory. Named sessions
//! (see [`Sessions`]) get the messages stored for them.
//!
//! Positions of unnamed readers are `{instance}-{sequence}`: `instance` is
//! the time the object built its broker, so a position from before a
//! restart or hibernation is recognised as stale.

use std::collections::{HashMap, VecDeque};

use broker::Message;
use futures_channel::{mpsc, oneshot};

use super::feed_sessions::Sessions;
use crate::http_message::MessageJson;

/// Maximum payload bytes the feed keeps, so that large messages cannot
/// exhaust the object's memory (128 MB per isolate, Cloudflare Workers
/// limits, 2026).
const MAX_RECENT_BYTES: usize = 8 * 1024 * 1024;

/// The byte chunks of one SSE response body.
pub type SseSender = mpsc::UnboundedSender<Result<Vec<u8>, worker::Error>>;

/// One open SSE stream.
///
/// NOTE: the channel is unbounded, so a client that reads slower than the
/// namespace publishes makes the object buffer its backlog in memory.
struct SseListener {
    filters: Vec<String>,
    sender: SseSender,
}

/// Recent messages, SSE listeners and waiting long polls of one namespace,
/// and its named sessions.
pub struct Feed {
    /// The stored sessions of readers that name one.
    pub sessions: Sessions,
    instance: u64,
    capacity: usize,
    next_sequence: u64,
    recent: VecDeque<(u64, Message)>,
    recent_bytes: usize,
    listeners: HashMap<u64, SseListener>,
    next_listener: u64,
    waiters: Vec<oneshot::Sender<()>>,
}

/// The resume point of a reader, parsed from a cursor or `Last-Event-ID`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resume {
    /// Only messages that arrive from now on.
    Now,
    /// Messages after this sequence number of the current instance.
    After(u64),
    /// The position belongs to another instance: messages may be lost.
    Stale,
}

impl Feed {
    /// Creates a feed that keeps at most `capacity` recent messages in
    /// memory, around the stored `sessions`.
    pub fn new(instance: u64, capacity: usize, sessions: Sessions) -> Feed {
        Feed {
            sessions,
            instance,
            capacity,
            next_sequence: 1,
            recent: VecDeque::new(),
            recent_bytes: 0,
            listeners: HashMap::new(),
            next_listener: 1,
            waiters: Vec::new(),
        }
    }

    /// Parses a cursor or `Last-Event-ID`; `None` (or empty) means now.
    pub fn resume_from(&self, position: Option<&str>) -> Resume {
        let Some(position) = position.filter(|p| !p.is_empty()) else {
            return Resume::Now;
        };
        let parsed = position.split_once('-').and_then(|(instance, sequence)| {
            Some((instance.parse::<u64>().ok()?, sequence.parse::<u64>().ok()?))
        });
        match parsed {
            Some((instance, sequence))
                if instance == self.instance && sequence < self.next_sequence =>
            {
                Resume::After(sequence)
            }
            _ => Resume::Stale,
        }
    }

    /// Adds a routed message, sends it to every SSE stream whose filters
    /// match, wakes every long poll and stores it for the matching sessions.
    pub fn push(&mut self, message: Message, now_ms: u64) {
        self.sessions.route(&message, now_ms);
        let sequence = self.next_sequence;
        self.next_sequence += 1;
        let mut closed = Vec::new();
        for (&id, listener) in &self.listeners {
            if matches_any(&listener.filters, &message.topic) {
                let event = sse_event(Some(&self.event_id(sequence)), &message, now_ms);
                if listener.sender.unbounded_send(Ok(event)).is_err() {
                    closed.push(id);
                }
            }
        }
        for id in closed {
            self.listeners.remove(&id);
        }
        if self.capacity > 0 {
            self.recent_bytes += message.payload.len();
            self.recent.push_back((sequence, message));
        }
        while self.recent.len() > self.capacity || self.recent_bytes > MAX_RECENT_BYTES {
            let Some((_, oldest)) = self.recent.pop_front() else {
                break;
            };
            self.recent_bytes = self.recent_bytes.saturating_sub(oldest.payload.len());
        }
        for waiter in self.waiters.drain(..) {
            let _ = waiter.send(());
        }
    }

    /// Returns the kept messages after `after` that match `filters` (at most
    /// `limit`), the sequence number of the last message read, and whether
    /// messages between `after` and the oldest kept one were dropped.
    pub fn read_after(
        &self,
        after: u64,
        filters: &[String],
        limit: usize,
    ) -> (Vec<Message>, u64, bool) {
        let gap = self
            .recent
            .front()
            .is_some_and(|(oldest, _)| *oldest > after + 1);
        let mut last = after;
        let mut messages = Vec::new();
        for (sequence, message) in self.recent.iter().filter(|(sequence, _)| *sequence > after) {
            if messages.len() >= limit {
                break;
            }
            last = *sequence;
            if matches_any(filters, &message.topic) {
                messages.push(message.clone());
            }
        }
        (messages, last, gap)
    }

    /// Returns the sequence number of the newest message.
    pub fn newest(&self) -> u64 {
        self.next_sequence - 1
    }

    /// Formats the SSE `id` of a sequence number.
    pub fn event_id(&self, sequence: u64) -> String {
        format!("{}-{sequence}", self.instance)
    }

    /// Registers an SSE stream.
    pub fn add_listener(&mut self, filters: Vec<String>, sender: SseSender) {
        let id = self.next_listener;
        self.next_listener += 1;
        self.listeners.insert(id, SseListener { filters, sender });
    }

    /// Returns a receiver that completes when the next message arrives.
    pub fn wait(&mut self) -> oneshot::Receiver<()> {
        let (sender, receiver) = oneshot::channel();
        self.waiters.push(sender);
        receiver
    }

    /// Number of open SSE streams, named sessions included.
    pub fn listener_count(&self) -> usize {
        let unnamed = self
            .listeners
            .values()
            .filter(|listener| !listener.sender.is_closed())
            .count();
        unnamed + self.sessions.listener_count()
    }
}

/// Reports whether any filter matches the topic.
pub fn matches_any(filters: &[String], topic: &str) -> bool {
    filters
        .iter()
        .any(|filter| codec::topic::matches(filter, topic))
}

/// Formats one SSE event: `event: message`, the id if any, and the message
/// as one line of JSON.
pub fn sse_event(id: Option<&str>, message: &Message, now_ms: u64) -> Vec<u8> {
    let json = serde_json::to_string(&MessageJson::new(message, now_ms)).unwrap_or_default();
    let mut event = String::from("event: message\n");
    if let Some(id) = id {
        event.push_str(&format!("id: {id}\n"));
    }
    event.push_str(&format!("data: {json}\n\n"));
    event.into_bytes()
}

#[cfg(test)]
mod tests {
    use super::super::feed_sessions::tests::MemoryStore;
    use super::super::feed_sessions::SessionLimits;
    use super::*;

    /// Creates a feed with no named sessions.
    fn unnamed_feed(instance: u64, capacity: usize) -> Feed {
        let limits = SessionLimits {
            max_messages: 10,
            max_bytes: 1000,
            expiry_ms: 1000,
            max_sessions: 10,
        };
        let sessions = Sessions::load(Box::new(MemoryStore::default()), limits, 0);
        Feed::new(instance, capacity, sessions.expect("memory never fails"))
    }

    fn message(topic: &str) -> Message {
        Message {
            topic: topic.into(),
            payload: bytes::Bytes::from_static(b"x"),
            qos: codec::QoS::AtMostOnce,
            retain: false,
            properties: Default::default(),
            expires_at_ms: None,
        }
    }

    #[test]
    fn read_after_filters_and_reports_gaps() {
        let mut feed = unnamed_feed(7, 2);
        for topic in ["a/1", "b/1", "a/2"] {
            feed.push(message(topic), 0);
        }
        let filters = vec!["a/#".to_string()];
        let (messages, last, gap) = feed.read_after(1, &filters, 10);
        assert_eq!(messages.len(), 1);
        assert_eq!(&*messages[0].topic, "a/2");
        assert_eq!(last, 3);
        assert!(!gap);

        // The first message is no longer kept (capacity 2).
        let (_, _, gap) = feed.read_after(0, &filters, 10);
        assert!(gap);
    }

    #[test]
    fn positions_resume_only_in_the_same_instance() {
        let mut feed = unnamed_feed(7, 10);
        feed.push(message("a"), 0);
        assert_eq!(feed.resume_from(None), Resume::Now);
        assert_eq!(feed.resume_from(Some("7-1")), Resume::After(1));
        assert_eq!(feed.resume_from(Some("6-1")), Resume::Stale);
        assert_eq!(feed.resume_from(Some("7-9")), Resume::Stale);
        assert_eq!(feed.resume_from(Some("garbage")), Resume::Stale);
    }

    #[test]
    fn sse_listener_receives_matching_messages() {
        let mut feed = unnamed_feed(1, 10);
        let (sender, mut receiver) = mpsc::unbounded();
        feed.add_listener(vec!["a/+".to_string()], sender);
        feed.push(message("b/1"), 0);
        feed.push(message("a/1"), 0);
        let event = receiver
            .try_recv()
            .ok()
            .and_then(Result::ok)
            .unwrap_or_default();
        let text = String::from_utf8_lossy(&event).into_owned();
        assert!(text.contains("id: 1-2"), "{text}");
        assert!(text.contains(r#""topic":"a/1""#), "{text}");
        assert!(
            receiver.try_recv().is_err(),
            "a non-matching message was sent"
        );
    }
}
