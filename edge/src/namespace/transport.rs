//! The fallback transports: Server-Sent Events and long polling.
//!
//! A reader that passes `session=<name>` reads a stored session (see
//! [`Sessions`](super::feed_sessions::Sessions)): its `Last-Event-ID` or
//! `cursor` is a sequence number that stays valid across hibernation and
//! restarts. A reader without a session reads the namespace's in-memory
//! [`Feed`](super::feed::Feed), which resumes only while the object stays in
//! memory and still keeps the messages after the position.

use std::time::Duration;

use futures_channel::mpsc;
use futures_util::future::{select, Either};
use serde_json::json;
use worker::{Date, Delay, Request, Response, Result};

use super::feed::{sse_event, Resume, SseSender};
use super::feed_sessions::{valid_session_name, GapReason, OpenError, SessionKey};
use super::http::{json_error, query_pairs, query_value, Access};
use super::{Loaded, Namespace};
use crate::http_message::MessageJson;
use crate::http_settings::Transport;

/// Most filters one SSE stream or long poll may name.
const MAX_FILTERS: usize = 16;

/// Most messages one long poll returns.
const MAX_POLL_MESSAGES: usize = 100;

/// Milliseconds an SSE client waits before reconnecting (the `retry` field).
const SSE_RETRY_MS: u64 = 3000;

/// The last event of a stream whose token has expired; a client reconnects
/// with a fresh token.
const TOKEN_EXPIRED_EVENT: &[u8] = b"event: error\ndata: {\"error\":\"token expired\"}\n\n";

impl Namespace {
    pub(super) fn open_sse(
        &self,
        req: &Request,
        namespace: &str,
        access: &Access,
    ) -> Result<Response> {
        let settings = self.http_settings();
        if !settings.offers(namespace, Transport::Sse) {
            return json_error(404, format!("namespace {namespace:?} does not offer SSE"));
        }
        let filters = match read_filters(req, access)? {
            Ok(filters) => filters,
            Err(response) => return Ok(response),
        };
        let session = match read_session(req, access)? {
            Ok(session) => session,
            Err(response) => return Ok(response),
        };
        let last_event_id = req.headers().get("Last-Event-ID")?;

        let (sender, receiver) = mpsc::unbounded::<Result<Vec<u8>>>();
        let now = Date::now().as_millis();
        // A stream lasts until the first heartbeat past its maximum.
        let hold_secs = settings
            .sse_max_stream_secs
            .saturating_add(settings.sse_heartbeat_secs);
        let opened = {
            let mut guard = self.loaded.borrow_mut();
            let Some(loaded) = guard.as_mut() else {
                return json_error(500, "broker unavailable");
            };
            let mut first = format!("retry: {SSE_RETRY_MS}\n: connected\n\n").into_bytes();
            let opening = OpenStream {
                filters,
                access,
                position: last_event_id.as_deref(),
                now,
            };
            let events = match &session {
                Some(key) => session_events(loaded, key, opening, hold_secs.saturating_mul(1000)),
                None => Ok(unnamed_events(loaded, opening, sender.clone())),
            };
            match events {
                Ok(events) => first.extend(events),
                Err(error) => return open_error(error),
            }
            let _ = sender.unbounded_send(Ok(first));
            if let Some(key) = &session {
                loaded.feed.sessions.add_listener(key, sender.clone());
            }
            loaded.feed.listener_count()
        };
        log_info(namespace, session.as_ref(), opened);
        // A stream ends when its token does, like an MQTT connection.
        let token_left = access
            .ends_at_ms()
            .map(|at| Duration::from_millis(at.saturating_sub(now)));
        spawn_heartbeat(
            sender,
            settings.sse_heartbeat_secs,
            settings.sse_max_stream_secs,
            token_left,
        );

        let mut response = Response::from_stream(receiver)?;
        let headers = response.headers_mut();
        headers.set("Content-Type", "text/event-stream")?;
        headers.set("Cache-Control", "no-cache")?;
        Ok(response)
    }

    pub(super) async fn long_poll(
        &self,
        req: &Request,
        namespace: &str,
        access: &Access,
    ) -> Result<Response> {
        let settings = self.http_settings();
        if !settings.offers(namespace, Transport::Poll) {
            return json_error(
                404,
                format!("namespace {namespace:?} does not offer long polling"),
            );
        }
        let filters = match read_filters(req, access)? {
            Ok(filters) => filters,
            Err(response) => return Ok(response),
        };
        let session = match read_session(req, access)? {
            Ok(session) => session,
            Err(response) => return Ok(response),
        };
        let pairs = query_pairs(req)?;
        let max_wait = settings.poll_max_wait_secs;
        let wait_secs = match query_value(&pairs, "wait").map(str::parse::<u64>) {
            None => max_wait,
            Some(Ok(secs)) => secs.min(max_wait),
            Some(Err(_)) => {
                return json_error(400, format!("invalid wait: use 0 to {max_wait} seconds"))
            }
        };
        let poll = Poll {
            filters,
            access,
            cursor: query_value(&pairs, "cursor"),
            wait_secs,
        };
        match session {
            Some(key) => self.poll_session(&key, poll).await,
            None => self.poll_unnamed(poll).await,
        }
    }

    /// Serves a long poll without a session from the in-memory feed.
    async fn poll_unnamed(&self, poll: Poll<'_>) -> Result<Response> {
        let deadline = Date::now()
            .as_millis()
            .saturating_add(poll.wait_secs.saturating_mul(1000));
        let (mut after, mut gap) = {
            let guard = self.loaded.borrow();
            let Some(loaded) = guard.as_ref() else {
                return json_error(500, "broker unavailable");
            };
            match loaded.feed.resume_from(poll.cursor) {
                Resume::Now => (loaded.feed.newest(), None),
                Resume::After(after) => (after, None),
                Resume::Stale => (0, Some(GapReason::UnknownPosition)),
            }
        };
        loop {
            let (messages, cursor, waiter) = {
                let mut guard = self.loaded.borrow_mut();
                let Some(loaded) = guard.as_mut() else {
                    return json_error(500, "broker unavailable");
                };
                let (messages, last, missed) =
                    loaded
                        .feed
                        .read_after(after, &poll.filters, MAX_POLL_MESSAGES);
                if missed {
                    gap = gap.or(Some(GapReason::NotKept));
                }
                after = last;
                let cursor = loaded.feed.event_id(after);
                let waiter = messages.is_empty().then(|| loaded.feed.wait());
                (messages, cursor, waiter)
            };
            let now = Date::now().as_millis();
            let Some(waiter) = waiter.filter(|_| now < deadline) else {
                return poll_response(&messages, cursor, gap, now);
            };
            let timeout = Delay::from(Duration::from_millis(deadline - now));
            if let Either::Right(_) = select(waiter, timeout).await {
                // Timed out: one last read returns whatever came.
                continue;
            }
        }
    }

    /// Serves a long poll of a named session from its stored messages. The
    /// cursor acknowledges every message up to it.
    async fn poll_session(&self, key: &SessionKey, poll: Poll<'_>) -> Result<Response> {
        let now = Date::now().as_millis();
        let deadline = now.saturating_add(poll.wait_secs.saturating_mul(1000));
        let opened = {
            let mut guard = self.loaded.borrow_mut();
            let Some(loaded) = guard.as_mut() else {
                return json_error(500, "broker unavailable");
            };
            loaded.feed.sessions.open(
                key,
                poll.filters.clone(),
                poll.access.acl().cloned(),
                poll.cursor,
                poll.wait_secs.saturating_mul(1000),
                now,
            )
        };
        let opened = match opened {
            Ok(opened) => opened,
            Err(error) => return open_error(error),
        };
        let mut after = opened.start;
        loop {
            let (messages, read_any, waiter) = {
                let mut guard = self.loaded.borrow_mut();
                let Some(loaded) = guard.as_mut() else {
                    return json_error(500, "broker unavailable");
                };
                let now = Date::now().as_millis();
                let stored = loaded.feed.sessions.read(key, after, MAX_POLL_MESSAGES);
                let read_any = !stored.is_empty();
                let waiter = match stored.last() {
                    Some((last, _)) => {
                        after = *last;
                        None
                    }
                    None => loaded.feed.sessions.wait(key),
                };
                let messages: Vec<broker::Message> = stored
                    .into_iter()
                    .map(|(_, message)| message)
                    .filter(|message| deliverable(message, poll.access, now))
                    .collect();
                (messages, read_any, waiter)
            };
            let now = Date::now().as_millis();
            if !messages.is_empty() {
                return poll_response(&messages, after.to_string(), opened.gap, now);
            }
            if read_any {
                // Every message read was expired or denied: read on.
                continue;
            }
            // Without a waiter the session is gone, so nothing can arrive.
            let Some(waiter) = waiter.filter(|_| now < deadline) else {
                return poll_response(&messages, after.to_string(), opened.gap, now);
            };
            let timeout = Delay::from(Duration::from_millis(deadline - now));
            if let Either::Right(_) = select(waiter, timeout).await {
                // Timed out: one last read returns whatever came.
                continue;
            }
        }
    }
}

/// The request parts that open an SSE stream.
struct OpenStream<'a> {
    filters: Vec<String>,
    access: &'a Access,
    /// The `Last-Event-ID` header.
    position: Option<&'a str>,
    now: u64,
}

/// The request parts of a long poll.
struct Poll<'a> {
    filters: Vec<String>,
    access: &'a Access,
    cursor: Option<&'a str>,
    wait_secs: u64,
}

/// Opens a named session for an SSE stream and returns its first events.
/// They are a gap if messages may be missing, the retained messages if the
/// session is new, then the stored messages after the position, each with
/// its sequence number as `id`.
fn session_events(
    loaded: &mut Loaded,
    key: &SessionKey,
    opening: OpenStream<'_>,
    hold_ms: u64,
) -> std::result::Result<Vec<u8>, OpenError> {
    let OpenStream {
        filters,
        access,
        position,
        now,
    } = opening;
    let acl = access.acl().cloned();
    let opened = loaded
        .feed
        .sessions
        .open(key, filters.clone(), acl, position, hold_ms, now)?;
    let mut events = Vec::new();
    if let Some(reason) = opened.gap {
        events.extend(gap_event(reason));
    }
    if opened.created {
        for message in retained_for(loaded, &filters, access, now) {
            events.extend(sse_event(None, &message, now));
        }
    }
    // A session stores at most `session_max_messages`, so this read is bounded.
    for (sequence, message) in loaded.feed.sessions.read(key, opened.start, usize::MAX) {
        if deliverable(&message, access, now) {
            events.extend(sse_event(Some(&sequence.to_string()), &message, now));
        }
    }
    Ok(events)
}

/// Registers an SSE stream without a session and returns its first events:
/// the messages after `Last-Event-ID` that the feed still keeps, or else a
/// gap (for a position it cannot resume) and the retained messages.
fn unnamed_events(loaded: &mut Loaded, opening: OpenStream<'_>, sender: SseSender) -> Vec<u8> {
    let OpenStream {
        filters,
        access,
        position,
        now,
    } = opening;
    let mut events = Vec::new();
    match loaded.feed.resume_from(position) {
        Resume::After(after) => {
            let (messages, _, gap) = loaded.feed.read_after(after, &filters, usize::MAX);
            if gap {
                events.extend(gap_event(GapReason::NotKept));
            }
            // Replayed messages carry no id: the next live event sets it,
            // and its number is above all of them.
            for message in messages {
                events.extend(sse_event(None, &message, now));
            }
        }
        resume => {
            if resume == Resume::Stale {
                events.extend(gap_event(GapReason::UnknownPosition));
            }
            for message in retained_for(loaded, &filters, access, now) {
                events.extend(sse_event(None, &message, now));
            }
        }
    }
    loaded.feed.add_listener(filters, sender);
    events
}

/// Sends a heartbeat comment every `heartbeat_secs`, and ends the stream at
/// the first heartbeat past `max_stream_secs`, or when `token_left` has
/// passed.
fn spawn_heartbeat(
    sender: SseSender,
    heartbeat_secs: u64,
    max_stream_secs: u64,
    token_left: Option<Duration>,
) {
    let heartbeat = Duration::from_secs(heartbeat_secs.max(1));
    let max_stream = Duration::from_secs(max_stream_secs.max(1));
    worker::wasm_bindgen_futures::spawn_local(async move {
        let mut streamed = Duration::ZERO;
        loop {
            let mut wait = heartbeat;
            let mut token_ended = false;
            if let Some(left) = token_left {
                if streamed + wait >= left {
                    wait = left.saturating_sub(streamed);
                    token_ended = true;
                }
            }
            Delay::from(wait).await;
            streamed += wait;
            if token_ended {
                let _ = sender.unbounded_send(Ok(TOKEN_EXPIRED_EVENT.to_vec()));
                sender.close_channel();
                return;
            }
            if streamed >= max_stream {
                // Closing the channel ends the response for every sender,
                // including the feed's listener.
                sender.close_channel();
                return;
            }
            if sender
                .unbounded_send(Ok(b": heartbeat\n\n".to_vec()))
                .is_err()
            {
                return;
            }
        }
    });
}

/// Reports whether a stored message may still go to this reader: not
/// expired, and allowed by the reader's token.
fn deliverable(message: &broker::Message, access: &Access, now: u64) -> bool {
    !message.is_expired(now) && access.may_receive(&message.topic)
}

/// Formats an SSE `gap` event.
fn gap_event(reason: GapReason) -> Vec<u8> {
    let data = json!({ "reason": reason.name() });
    format!("event: gap\ndata: {data}\n\n").into_bytes()
}

/// Builds the JSON response of a long poll.
fn poll_response(
    messages: &[broker::Message],
    cursor: String,
    gap: Option<GapReason>,
    now: u64,
) -> Result<Response> {
    let messages: Vec<MessageJson> = messages
        .iter()
        .map(|message| MessageJson::new(message, now))
        .collect();
    let mut body = json!({ "messages": messages, "cursor": cursor, "gap": gap.is_some() });
    if let Some(reason) = gap {
        body["gap_reason"] = reason.name().into();
    }
    Response::from_json(&body)
}

fn open_error(error: OpenError) -> Result<Response> {
    let status = match error {
        OpenError::InvalidCursor(_) => 400,
        OpenError::TooManySessions(_) => 503,
    };
    json_error(status, error.to_string())
}

/// Reads the `session` parameter; `None` without one. The session belongs
/// to the token's subject, or to anonymous requests.
fn read_session(
    req: &Request,
    access: &Access,
) -> Result<std::result::Result<Option<SessionKey>, Response>> {
    let pairs = query_pairs(req)?;
    let Some(name) = query_value(&pairs, "session") else {
        return Ok(Ok(None));
    };
    if !valid_session_name(name) {
        let message = "invalid session: use 1 to 128 letters, digits, '-', '_' or '.'";
        return Ok(Err(json_error(400, message)?));
    }
    Ok(Ok(Some(SessionKey {
        owner: access.subject().to_string(),
        name: name.to_string(),
    })))
}

/// Reads and checks the `filter` parameters.
fn read_filters(
    req: &Request,
    access: &Access,
) -> Result<std::result::Result<Vec<String>, Response>> {
    let filters: Vec<String> = query_pairs(req)?
        .into_iter()
        .filter(|(name, _)| name == "filter")
        .map(|(_, value)| value)
        .collect();
    if filters.is_empty() || filters.len() > MAX_FILTERS {
        let message =
            format!("give 1 to {MAX_FILTERS} filter parameters, such as ?filter=sensors/%23");
        return Ok(Err(json_error(400, message)?));
    }
    for filter in &filters {
        if !codec::topic::valid_topic_filter(filter) || filter.starts_with("$share/") {
            return Ok(Err(json_error(400, format!("invalid filter {filter:?}"))?));
        }
        if !access.may_subscribe(filter) {
            return Ok(Err(json_error(
                403,
                format!("the token does not allow subscribing to {filter:?}"),
            )?));
        }
    }
    Ok(Ok(filters))
}

/// Collects the retained messages matching any filter, each topic once.
fn retained_for(
    loaded: &Loaded,
    filters: &[String],
    access: &Access,
    now: u64,
) -> Vec<broker::Message> {
    let mut seen = std::collections::BTreeSet::new();
    let mut messages = Vec::new();
    for filter in filters {
        for message in loaded.broker.retained_matching(filter, now) {
            if seen.insert(message.topic.to_string()) && access.may_receive(&message.topic) {
                messages.push(message);
            }
        }
    }
    messages
}

fn log_info(namespace: &str, session: Option<&SessionKey>, streams: usize) {
    let mut fields = json!({
        "namespace": namespace,
        "message": "sse stream opened",
        "sse_streams": streams,
    });
    if let Some(key) = session {
        fields["session"] = key.name.as_str().into();
    }
    crate::logging::info(&fields);
}
