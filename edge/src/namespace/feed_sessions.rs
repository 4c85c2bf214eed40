//! Named sessions of the HTTP transports. An SSE stream or long poll that
//! passes `session=<name>` reads a stored session, as an MQTT client reads
//! its persistent session. The session keeps its filters and every matching
//! message across hibernation and restarts. Each message gets a sequence
//! number that only grows in the namespace, and stays stored until a later
//! `Last-Event-ID` or `cursor` acknowledges it, the session drops it to stay
//! within its bounds, or the session expires.
//!
//! This module does no I/O of its own: it reads and writes through a
//! [`SessionStore`], which the Durable Object backs with SQLite and the
//! tests with memory.

use std::collections::{BTreeMap, VecDeque};

use auth::Acl;
use broker::Message;
use bytes::BytesMut;
use futures_channel::oneshot;

use super::feed::{matches_any, sse_event, SseSender};

/// Sequence numbers reserved with one storage write. After a restart the
/// numbering continues above the reserved block, so a number is never
/// handed out twice.
const SEQUENCE_BLOCK: u64 = 1000;

/// Maximum length of a session name, in bytes.
const MAX_SESSION_NAME_LEN: usize = 128;

/// A session: the token subject that uses it (empty for anonymous
/// requests) and its name. Two subjects never share a session.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct SessionKey {
    /// The token subject, or empty.
    pub owner: String,
    /// The `session` query parameter.
    pub name: String,
}

/// The stored state of one session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRecord {
    /// The owner and name of the session.
    pub key: SessionKey,
    /// The filters of the latest request that used the session.
    pub filters: Vec<String>,
    /// The ACL of the latest request's token; `None` for anonymous requests.
    pub acl: Option<Acl>,
    /// Every message up to this sequence number is acknowledged and deleted.
    pub acknowledged: u64,
    /// The newest sequence number the session dropped before it was
    /// acknowledged, to stay within its bounds; 0 if none.
    pub dropped_through: u64,
    /// When the session expires unless a request uses it again, in
    /// milliseconds since the Unix epoch.
    pub expires_at_ms: u64,
}

/// One storage write, carried out by [`SessionStore::write`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FeedWrite {
    /// Stores the highest sequence number handed out before the next write.
    ReserveSequences { through: u64 },
    /// Inserts or replaces a session.
    PutSession(SessionRecord),
    /// Deletes a session and its messages.
    DeleteSession(SessionKey),
    /// Stores one message of a session, in the form of
    /// [`Message::encode_stored`].
    InsertMessage {
        key: SessionKey,
        sequence: u64,
        size: usize,
        message: Vec<u8>,
    },
    /// Deletes the messages of a session up to and including `sequence`.
    DeleteMessagesThrough { key: SessionKey, sequence: u64 },
}

/// Durable storage of the sessions. Errors are messages for the log.
pub trait SessionStore {
    /// Reads every session and the reserved sequence numbers (0 if none).
    fn load(&self) -> Result<(Vec<SessionRecord>, u64), String>;
    /// Reads the sequence number and size of every stored message of a
    /// session, oldest first.
    fn load_queue(&self, key: &SessionKey) -> Result<Vec<(u64, usize)>, String>;
    /// Reads at most `limit` messages of a session after `after`, oldest
    /// first.
    fn read(
        &self,
        key: &SessionKey,
        after: u64,
        limit: usize,
    ) -> Result<Vec<(u64, Message)>, String>;
    /// Carries out one write.
    fn write(&self, write: FeedWrite) -> Result<(), String>;
}

/// Bounds of every session, from the HTTP settings.
#[derive(Debug, Clone, Copy)]
pub struct SessionLimits {
    /// Messages one session keeps; beyond it the oldest is dropped.
    pub max_messages: usize,
    /// Bytes (topic and payload) one session keeps.
    pub max_bytes: usize,
    /// Milliseconds a session outlives the last request that used it.
    pub expiry_ms: u64,
    /// Sessions one namespace keeps.
    pub max_sessions: usize,
}

/// The reason a reader may have missed messages. Clients see its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GapReason {
    /// The session reached its bounds and dropped messages after the cursor.
    MessagesDropped,
    /// The cursor is older than the session's acknowledged position: the
    /// messages up to that position are deleted.
    CursorTooOld,
    /// A cursor came for a session that is not stored: it expired or never
    /// existed. A new session starts.
    SessionExpired,
    /// An unnamed stream's position is older than the messages kept in memory.
    NotKept,
    /// An unnamed stream's position came from an earlier instance of the
    /// object, or is malformed.
    UnknownPosition,
}

impl GapReason {
    /// Returns the name in the SSE `gap` event and the poll's `gap_reason`.
    pub fn name(self) -> &'static str {
        match self {
            GapReason::MessagesDropped => "messages_dropped",
            GapReason::CursorTooOld => "cursor_too_old",
            GapReason::SessionExpired => "session_expired",
            GapReason::NotKept => "not_kept",
            GapReason::UnknownPosition => "unknown_position",
        }
    }
}

/// The outcome of opening a session for a reader.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Opened {
    /// The session was created by this request: an SSE stream starts with
    /// the retained messages, as a new MQTT subscription does.
    pub created: bool,
    /// The reader gets the stored messages after this sequence number.
    pub start: u64,
    /// Set when messages may be missing between the cursor and `start`.
    pub gap: Option<GapReason>,
}

/// The reason a session could not be opened. Each maps to one HTTP status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OpenError {
    /// The cursor is not a sequence number this namespace handed out (400).
    InvalidCursor(String),
    /// The namespace keeps its maximum number of sessions (503).
    TooManySessions(usize),
}

impl std::fmt::Display for OpenError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OpenError::InvalidCursor(cursor) => write!(
                f,
                "invalid cursor {cursor:?}: pass the id or cursor this session returned"
            ),
            OpenError::TooManySessions(max) => write!(
                f,
                "this namespace keeps {max} HTTP sessions, its maximum; reuse a session name \
                 or wait for unused sessions to expire"
            ),
        }
    }
}

/// One session in memory.
struct Session {
    record: SessionRecord,
    /// Sequence number and size of each stored message, oldest first;
    /// `None` until a message is routed to the session.
    queue: Option<VecDeque<(u64, usize)>>,
    queued_bytes: usize,
    listeners: Vec<SseSender>,
    waiters: Vec<oneshot::Sender<()>>,
}

impl Session {
    fn new(record: SessionRecord) -> Session {
        Session {
            record,
            queue: None,
            queued_bytes: 0,
            listeners: Vec::new(),
            waiters: Vec::new(),
        }
    }

    fn has_listeners(&self) -> bool {
        self.listeners.iter().any(|sender| !sender.is_closed())
    }

    fn is_expired(&self, now_ms: u64) -> bool {
        self.record.expires_at_ms <= now_ms && !self.has_listeners()
    }

    fn may_receive(&self, topic: &str) -> bool {
        self.record
            .acl
            .as_ref()
            .is_none_or(|acl| acl.may_receive(topic))
    }
}

/// The named sessions of one namespace.
pub struct Sessions {
    store: Box<dyn SessionStore>,
    limits: SessionLimits,
    sessions: BTreeMap<SessionKey, Session>,
    next_sequence: u64,
    reserved_through: u64,
}

impl Sessions {
    /// Reads the sessions from `store` and deletes those that expired.
    pub fn load(
        store: Box<dyn SessionStore>,
        limits: SessionLimits,
        now_ms: u64,
    ) -> Result<Sessions, String> {
        let (records, reserved_through) = store.load()?;
        let mut sessions = Sessions {
            store,
            limits,
            sessions: BTreeMap::new(),
            next_sequence: reserved_through + 1,
            reserved_through,
        };
        for record in records {
            if record.expires_at_ms <= now_ms {
                sessions.apply(FeedWrite::DeleteSession(record.key));
                continue;
            }
            sessions
                .sessions
                .insert(record.key.clone(), Session::new(record));
        }
        Ok(sessions)
    }

    /// Returns the newest sequence number handed out, or reserved before a
    /// restart.
    pub fn newest(&self) -> u64 {
        self.next_sequence - 1
    }

    /// Opens a session for an SSE stream or long poll, creating it if
    /// needed. `cursor` is the `Last-Event-ID` or `cursor`: it acknowledges
    /// every message up to it. The request's filters and ACL replace the
    /// stored ones, and the session expires `hold_ms` (the longest the
    /// request may last) plus the expiry after now.
    pub fn open(
        &mut self,
        key: &SessionKey,
        filters: Vec<String>,
        acl: Option<Acl>,
        cursor: Option<&str>,
        hold_ms: u64,
        now_ms: u64,
    ) -> Result<Opened, OpenError> {
        let cursor = match cursor.filter(|cursor| !cursor.is_empty()) {
            None => None,
            Some(text) => match text.parse::<u64>() {
                Ok(sequence) if sequence <= self.newest() || !self.sessions.contains_key(key) => {
                    Some(sequence)
                }
                _ => return Err(OpenError::InvalidCursor(text.to_string())),
            },
        };
        if self.sessions.get(key).is_some_and(|s| s.is_expired(now_ms)) {
            self.delete(key);
        }
        let expires_at_ms = now_ms
            .saturating_add(hold_ms)
            .saturating_add(self.limits.expiry_ms);

        let Some(session) = self.sessions.get_mut(key) else {
            if self.sessions.len() >= self.limits.max_sessions {
                return Err(OpenError::TooManySessions(self.limits.max_sessions));
            }
            let record = SessionRecord {
                key: key.clone(),
                filters,
                acl,
                acknowledged: self.next_sequence - 1,
                dropped_through: 0,
                expires_at_ms,
            };
            let start = record.acknowledged;
            self.apply(FeedWrite::PutSession(record.clone()));
            self.sessions.insert(key.clone(), Session::new(record));
            return Ok(Opened {
                created: true,
                start,
                gap: cursor.map(|_| GapReason::SessionExpired),
            });
        };

        let acknowledged = session.record.acknowledged;
        let (start, mut gap) = match cursor {
            None => (acknowledged, None),
            Some(cursor) if cursor < acknowledged => (acknowledged, Some(GapReason::CursorTooOld)),
            Some(cursor) => (cursor, None),
        };
        if session.record.dropped_through > start {
            gap = gap.or(Some(GapReason::MessagesDropped));
        }
        let mut writes = Vec::new();
        if start > acknowledged {
            session.record.acknowledged = start;
            if let Some(queue) = session.queue.as_mut() {
                while queue
                    .front()
                    .is_some_and(|(sequence, _)| *sequence <= start)
                {
                    if let Some((_, size)) = queue.pop_front() {
                        session.queued_bytes = session.queued_bytes.saturating_sub(size);
                    }
                }
            }
            writes.push(FeedWrite::DeleteMessagesThrough {
                key: key.clone(),
                sequence: start,
            });
        }
        session.record.filters = filters;
        session.record.acl = acl;
        session.record.expires_at_ms = expires_at_ms;
        writes.push(FeedWrite::PutSession(session.record.clone()));
        for write in writes {
            self.apply(write);
        }
        Ok(Opened {
            created: false,
            start,
            gap,
        })
    }

    /// Reads at most `limit` stored messages of a session after `after`.
    /// A failed read is logged and returns nothing.
    pub fn read(&self, key: &SessionKey, after: u64, limit: usize) -> Vec<(u64, Message)> {
        self.store.read(key, after, limit).unwrap_or_else(|error| {
            log::error!(session = key.name.as_str(); "reading session messages failed: {error}");
            Vec::new()
        })
    }

    /// Stores a routed message for every session whose filters match, and
    /// sends it to their open SSE streams. Sessions that expired are
    /// deleted instead.
    pub fn route(&mut self, message: &Message, now_ms: u64) {
        let matching: Vec<SessionKey> = self
            .sessions
            .iter()
            .filter(|(_, session)| matches_any(&session.record.filters, &message.topic))
            .filter(|(_, session)| session.may_receive(&message.topic))
            .map(|(key, _)| key.clone())
            .collect();
        for key in matching {
            if self
                .sessions
                .get(&key)
                .is_some_and(|s| s.is_expired(now_ms))
            {
                self.delete(&key);
                continue;
            }
            let sequence = self.allocate();
            self.store_message(&key, sequence, message);
            if let Some(session) = self.sessions.get_mut(&key) {
                let event = sse_event(Some(&sequence.to_string()), message, now_ms);
                session
                    .listeners
                    .retain(|sender| sender.unbounded_send(Ok(event.clone())).is_ok());
                for waiter in session.waiters.drain(..) {
                    let _ = waiter.send(());
                }
            }
        }
    }

    /// Registers an SSE stream that receives the session's new messages.
    pub fn add_listener(&mut self, key: &SessionKey, sender: SseSender) {
        if let Some(session) = self.sessions.get_mut(key) {
            session.listeners.push(sender);
        }
    }

    /// Returns a receiver that completes when the session's next message
    /// arrives, or fails when the session is deleted; `None` if there is
    /// no such session.
    pub fn wait(&mut self, key: &SessionKey) -> Option<oneshot::Receiver<()>> {
        let session = self.sessions.get_mut(key)?;
        let (sender, receiver) = oneshot::channel();
        session.waiters.push(sender);
        Some(receiver)
    }

    /// Number of open SSE streams of every session.
    pub fn listener_count(&self) -> usize {
        self.sessions
            .values()
            .flat_map(|session| &session.listeners)
            .filter(|sender| !sender.is_closed())
            .count()
    }

    /// Adds a message to a session's queue, dropping the oldest messages
    /// beyond the bounds.
    fn store_message(&mut self, key: &SessionKey, sequence: u64, message: &Message) {
        self.ensure_queue(key);
        let limits = self.limits;
        let Some(session) = self.sessions.get_mut(key) else {
            return;
        };
        let size = message.size();

        let mut writes = Vec::new();
        // The newest dropped message, and the newest one deleted from storage.
        let mut dropped = None;
        let mut deleted = None;
        if size > limits.max_bytes {
            dropped = Some(sequence);
        } else {
            let mut encoded = BytesMut::new();
            message.encode_stored(&mut encoded);
            writes.push(FeedWrite::InsertMessage {
                key: key.clone(),
                sequence,
                size,
                message: encoded.to_vec(),
            });
            let queue = session.queue.get_or_insert_with(VecDeque::new);
            queue.push_back((sequence, size));
            session.queued_bytes += size;
            while queue.len() > limits.max_messages || session.queued_bytes > limits.max_bytes {
                let Some((oldest, oldest_size)) = queue.pop_front() else {
                    break;
                };
                session.queued_bytes = session.queued_bytes.saturating_sub(oldest_size);
                dropped = Some(oldest);
                deleted = Some(oldest);
            }
        }

        if let Some(through) = deleted {
            writes.push(FeedWrite::DeleteMessagesThrough {
                key: key.clone(),
                sequence: through,
            });
        }
        if let Some(through) = dropped {
            session.record.dropped_through = session.record.dropped_through.max(through);
            writes.push(FeedWrite::PutSession(session.record.clone()));
        }
        for write in writes {
            self.apply(write);
        }
    }

    /// Reads a session's queue from the store the first time a message is
    /// routed to it since the object was built.
    fn ensure_queue(&mut self, key: &SessionKey) {
        if self.sessions.get(key).is_none_or(|s| s.queue.is_some()) {
            return;
        }
        let entries = self.store.load_queue(key).unwrap_or_else(|error| {
            log::error!(session = key.name.as_str(); "reading a session queue failed: {error}");
            Vec::new()
        });
        if let Some(session) = self.sessions.get_mut(key) {
            session.queued_bytes = entries.iter().map(|(_, size)| size).sum();
            session.queue = Some(entries.into_iter().collect());
        }
    }

    fn allocate(&mut self) -> u64 {
        let sequence = self.next_sequence;
        self.next_sequence += 1;
        if sequence > self.reserved_through {
            self.reserved_through = sequence + SEQUENCE_BLOCK - 1;
            self.apply(FeedWrite::ReserveSequences {
                through: self.reserved_through,
            });
        }
        sequence
    }

    fn delete(&mut self, key: &SessionKey) {
        // Dropping the waiters' senders ends the long polls waiting on it.
        self.sessions.remove(key);
        self.apply(FeedWrite::DeleteSession(key.clone()));
    }

    // NOTE: a failed write is only logged. An HTTP publish routed to the
    // session is still accepted, and the session may lack the message.
    fn apply(&self, write: FeedWrite) {
        if let Err(error) = self.store.write(write) {
            log::error!("storing an HTTP session failed: {error}");
        }
    }
}

/// Reports whether `name` is a valid session name: 1 to 128 letters,
/// digits, `-`, `_` or `.`.
pub fn valid_session_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_SESSION_NAME_LEN
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

#[cfg(test)]
pub(super) mod tests {
    use std::cell::RefCell;
    use std::rc::Rc;

    use futures_channel::mpsc;

    use super::*;

    /// Storage in memory, shared between the instances a test builds to
    /// stand for the object before and after a restart.
    #[derive(Default)]
    struct Memory {
        sessions: BTreeMap<SessionKey, SessionRecord>,
        messages: BTreeMap<(SessionKey, u64), (usize, Vec<u8>)>,
        reserved_through: u64,
    }

    #[derive(Clone, Default)]
    pub(in crate::namespace) struct MemoryStore(Rc<RefCell<Memory>>);

    impl SessionStore for MemoryStore {
        fn load(&self) -> Result<(Vec<SessionRecord>, u64), String> {
            let memory = self.0.borrow();
            let records = memory.sessions.values().cloned().collect();
            Ok((records, memory.reserved_through))
        }

        fn load_queue(&self, key: &SessionKey) -> Result<Vec<(u64, usize)>, String> {
            let memory = self.0.borrow();
            let entries = memory
                .messages
                .iter()
                .filter(|((owner, _), _)| owner == key)
                .map(|((_, sequence), (size, _))| (*sequence, *size))
                .collect();
            Ok(entries)
        }

        fn read(
            &self,
            key: &SessionKey,
            after: u64,
            limit: usize,
        ) -> Result<Vec<(u64, Message)>, String> {
            let memory = self.0.borrow();
            let messages = memory
                .messages
                .iter()
                .filter(|((owner, sequence), _)| owner == key && *sequence > after)
                .take(limit)
                .map(|((_, sequence), (_, bytes))| {
                    let mut bytes = bytes::Bytes::from(bytes.clone());
                    let message = Message::decode_stored(&mut bytes).ok_or("undecodable")?;
                    Ok((*sequence, message))
                })
                .collect::<Result<Vec<_>, String>>()?;
            Ok(messages)
        }

        fn write(&self, write: FeedWrite) -> Result<(), String> {
            let mut memory = self.0.borrow_mut();
            match write {
                FeedWrite::ReserveSequences { through } => memory.reserved_through = through,
                FeedWrite::PutSession(record) => {
                    memory.sessions.insert(record.key.clone(), record);
                }
                FeedWrite::DeleteSession(key) => {
                    memory.sessions.remove(&key);
                    memory.messages.retain(|(owner, _), _| *owner != key);
                }
                FeedWrite::InsertMessage {
                    key,
                    sequence,
                    size,
                    message,
                } => {
                    memory.messages.insert((key, sequence), (size, message));
                }
                FeedWrite::DeleteMessagesThrough { key, sequence } => {
                    memory
                        .messages
                        .retain(|(owner, stored), _| *owner != key || *stored > sequence);
                }
            }
            Ok(())
        }
    }

    const LIMITS: SessionLimits = SessionLimits {
        max_messages: 3,
        max_bytes: 1000,
        expiry_ms: 60_000,
        max_sessions: 2,
    };

    fn key(name: &str) -> SessionKey {
        SessionKey {
            owner: String::new(),
            name: name.into(),
        }
    }

    fn message(topic: &str, payload: &'static [u8]) -> Message {
        Message {
            topic: topic.into(),
            payload: bytes::Bytes::from_static(payload),
            qos: codec::QoS::AtMostOnce,
            retain: false,
            properties: Default::default(),
            expires_at_ms: None,
        }
    }

    fn filters(filter: &str) -> Vec<String> {
        vec![filter.to_string()]
    }

    fn payloads(messages: &[(u64, Message)]) -> Vec<String> {
        messages
            .iter()
            .map(|(_, message)| String::from_utf8_lossy(&message.payload).into_owned())
            .collect()
    }

    fn open(
        sessions: &mut Sessions,
        name: &str,
        cursor: Option<&str>,
        now_ms: u64,
    ) -> Result<Opened, OpenError> {
        sessions.open(&key(name), filters("a/#"), None, cursor, 0, now_ms)
    }

    #[test]
    fn resume_after_restart_returns_missed_messages_once() {
        let store = MemoryStore::default();
        let mut before = Sessions::load(Box::new(store.clone()), LIMITS, 0).unwrap();
        let opened = open(&mut before, "s", None, 0).unwrap();
        assert!(opened.created);
        before.route(&message("a/1", b"1"), 1);
        before.route(&message("b/1", b"other"), 1);
        let seen = before.read(&key("s"), opened.start, 10);
        assert_eq!(payloads(&seen), ["1"]);
        let last_seen = seen[0].0.to_string();
        before.route(&message("a/2", b"2"), 2);
        before.route(&message("a/3", b"3"), 3);

        // A new instance on the same storage, as after eviction or restart.
        let mut after = Sessions::load(Box::new(store.clone()), LIMITS, 10).unwrap();
        let resumed = open(&mut after, "s", Some(&last_seen), 10).unwrap();
        assert_eq!(resumed.gap, None);
        assert!(!resumed.created);
        let missed = after.read(&key("s"), resumed.start, 10);
        assert_eq!(payloads(&missed), ["2", "3"]);

        // Acknowledging the last one leaves nothing to read again.
        let last = missed[1].0.to_string();
        let again = open(&mut after, "s", Some(&last), 11).unwrap();
        assert!(after.read(&key("s"), again.start, 10).is_empty());
        assert!(
            store.0.borrow().messages.is_empty(),
            "acknowledged messages are still stored"
        );
    }

    #[test]
    fn sequence_numbers_grow_across_restarts() {
        let store = MemoryStore::default();
        let mut first = Sessions::load(Box::new(store.clone()), LIMITS, 0).unwrap();
        open(&mut first, "s", None, 0).unwrap();
        first.route(&message("a/1", b"1"), 0);
        let before = first.read(&key("s"), 0, 10)[0].0;

        let mut second = Sessions::load(Box::new(store.clone()), LIMITS, 0).unwrap();
        assert!(second.newest() >= before);
        open(&mut second, "s", None, 0).unwrap();
        second.route(&message("a/2", b"2"), 0);
        let sequences: Vec<u64> = second
            .read(&key("s"), 0, 10)
            .iter()
            .map(|(sequence, _)| *sequence)
            .collect();
        assert_eq!(sequences.len(), 2);
        assert!(sequences[1] > sequences[0], "{sequences:?}");
        assert_eq!(
            store.0.borrow().reserved_through,
            sequences[1] + SEQUENCE_BLOCK - 1
        );
    }

    #[test]
    fn full_session_drops_oldest_and_reports_gap() {
        let store = MemoryStore::default();
        let mut sessions = Sessions::load(Box::new(store.clone()), LIMITS, 0).unwrap();
        let cursor = open(&mut sessions, "s", None, 0).unwrap().start.to_string();
        for payload in [b"1", b"2", b"3", b"4", b"5"] {
            sessions.route(&message("a/x", payload), 0);
        }

        let mut reloaded = Sessions::load(Box::new(store), LIMITS, 0).unwrap();
        let opened = open(&mut reloaded, "s", Some(&cursor), 0).unwrap();
        assert_eq!(opened.gap, Some(GapReason::MessagesDropped));
        let kept = reloaded.read(&key("s"), opened.start, 10);
        assert_eq!(payloads(&kept), ["3", "4", "5"]);

        // Once acknowledged past the drop, the gap is gone.
        let last = kept[2].0.to_string();
        let opened = open(&mut reloaded, "s", Some(&last), 0).unwrap();
        assert_eq!(opened.gap, None);
    }

    #[test]
    fn byte_bound_drops_oldest() {
        let limits = SessionLimits {
            max_bytes: 10,
            ..LIMITS
        };
        let mut sessions = Sessions::load(Box::new(MemoryStore::default()), limits, 0).unwrap();
        open(&mut sessions, "s", None, 0).unwrap();
        sessions.route(&message("a/1", b"1234"), 0);
        sessions.route(&message("a/2", b"5678"), 0);
        sessions.route(&message("a/3", b"far too large for the bound"), 0);
        let kept = sessions.read(&key("s"), 0, 10);
        assert_eq!(payloads(&kept), ["5678"]);
        let opened = open(&mut sessions, "s", None, 0).unwrap();
        assert_eq!(opened.gap, Some(GapReason::MessagesDropped));
    }

    #[test]
    fn cursor_for_unknown_session_reports_expiry() {
        let store = MemoryStore::default();
        let mut sessions = Sessions::load(Box::new(store.clone()), LIMITS, 0).unwrap();
        open(&mut sessions, "s", None, 0).unwrap();
        sessions.route(&message("a/1", b"1"), 0);

        // Unused for longer than the expiry: the session is gone at load.
        let mut later = Sessions::load(Box::new(store.clone()), LIMITS, 60_001).unwrap();
        assert!(store.0.borrow().sessions.is_empty());
        assert!(store.0.borrow().messages.is_empty());
        let opened = open(&mut later, "s", Some("1"), 60_001).unwrap();
        assert!(opened.created);
        assert_eq!(opened.gap, Some(GapReason::SessionExpired));
    }

    #[test]
    fn expired_session_is_deleted_when_a_message_matches() {
        let store = MemoryStore::default();
        let mut sessions = Sessions::load(Box::new(store.clone()), LIMITS, 0).unwrap();
        open(&mut sessions, "s", None, 0).unwrap();
        sessions.route(&message("a/1", b"1"), 60_000);
        assert!(store.0.borrow().sessions.is_empty());
        assert!(store.0.borrow().messages.is_empty());
    }

    #[test]
    fn open_stream_keeps_session_past_expiry() {
        let mut sessions = Sessions::load(Box::new(MemoryStore::default()), LIMITS, 0).unwrap();
        open(&mut sessions, "s", None, 0).unwrap();
        let (sender, mut receiver) = mpsc::unbounded();
        sessions.add_listener(&key("s"), sender);
        sessions.route(&message("a/1", b"1"), 90_000);
        let event = receiver
            .try_recv()
            .ok()
            .and_then(Result::ok)
            .unwrap_or_default();
        let text = String::from_utf8_lossy(&event).into_owned();
        assert!(text.contains("id: 1\n"), "{text}");
        assert_eq!(sessions.listener_count(), 1);
    }

    #[test]
    fn old_and_invalid_cursors() {
        let mut sessions = Sessions::load(Box::new(MemoryStore::default()), LIMITS, 0).unwrap();
        open(&mut sessions, "s", None, 0).unwrap();
        sessions.route(&message("a/1", b"1"), 0);
        sessions.route(&message("a/2", b"2"), 0);
        open(&mut sessions, "s", Some("2"), 0).unwrap();

        let old = open(&mut sessions, "s", Some("1"), 0).unwrap();
        assert_eq!(old.gap, Some(GapReason::CursorTooOld));
        assert_eq!(old.start, 2);
        for bad in ["x", "-1", "1733331234567-4", "3"] {
            let error = open(&mut sessions, "s", Some(bad), 0).unwrap_err();
            assert_eq!(error, OpenError::InvalidCursor(bad.into()), "{bad}");
        }
    }

    #[test]
    fn session_count_is_bounded() {
        let mut sessions = Sessions::load(Box::new(MemoryStore::default()), LIMITS, 0).unwrap();
        open(&mut sessions, "a", None, 0).unwrap();
        open(&mut sessions, "b", None, 0).unwrap();
        assert_eq!(
            open(&mut sessions, "c", None, 0),
            Err(OpenError::TooManySessions(2))
        );
        // An existing session still opens.
        assert!(open(&mut sessions, "a", None, 0).is_ok());
    }

    #[test]
    fn owners_do_not_share_sessions() {
        let mut sessions = Sessions::load(Box::new(MemoryStore::default()), LIMITS, 0).unwrap();
        let alice = SessionKey {
            owner: "alice".into(),
            name: "s".into(),
        };
        sessions
            .open(&alice, filters("a/#"), None, None, 0, 0)
            .unwrap();
        sessions.route(&message("a/1", b"1"), 0);
        let anonymous = open(&mut sessions, "s", None, 0).unwrap();
        assert!(anonymous.created);
        assert!(sessions.read(&key("s"), 0, 10).is_empty());
        assert_eq!(sessions.read(&alice, 0, 10).len(), 1);
    }

    #[test]
    fn session_names_are_checked() {
        assert!(valid_session_name("dash-1_a.b"));
        assert!(!valid_session_name(""));
        assert!(!valid_session_name("a b"));
        assert!(!valid_session_name("a/b"));
        assert!(!valid_session_name(&"x".repeat(129)));
    }
}
