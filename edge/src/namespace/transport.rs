//! The fallback transports: Server-Sent Events and long polling. Both read
//! the namespace's in-memory [`Feed`](super::feed::Feed) of routed messages.
//!
//! TODO: resume after hibernation or restart. An SSE stream or long poll
//! resumes without loss only while the object stays in memory and its feed
//! still keeps the messages after the given position. Otherwise the
//! response reports a `gap`. Lossless resume needs an SSE subscriber to be
//! a broker session with a stored queue.

use std::time::Duration;

use futures_channel::mpsc;
use futures_util::future::{select, Either};
use serde_json::json;
use worker::{Date, Delay, Request, Response, Result};

use super::feed::{sse_event, Resume};
use super::http::{json_error, query_pairs, query_value, Access};
use super::Namespace;
use crate::http_message::MessageJson;
use crate::http_settings::Transport;

/// Most filters one SSE stream or long poll may name.
const MAX_FILTERS: usize = 16;

/// Most messages one long poll returns.
const MAX_POLL_MESSAGES: usize = 100;

/// Milliseconds an SSE client waits before reconnecting (the `retry` field).
const SSE_RETRY_MS: u64 = 3000;

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
        let last_event_id = req.headers().get("Last-Event-ID")?;

        let (sender, receiver) = mpsc::unbounded::<Result<Vec<u8>>>();
        let now = Date::now().as_millis();
        let opened = {
            let mut guard = self.loaded.borrow_mut();
            let Some(loaded) = guard.as_mut() else {
                return json_error(500, "broker unavailable");
            };
            let mut first = format!("retry: {SSE_RETRY_MS}\n: connected\n\n").into_bytes();
            match loaded.feed.resume_from(last_event_id.as_deref()) {
                Resume::After(after) => {
                    let (messages, _, gap) = loaded.feed.read_after(after, &filters, usize::MAX);
                    if gap {
                        first.extend_from_slice(b"event: gap\ndata: {}\n\n");
                    }
                    // Replayed messages carry no id: the next live event
                    // sets it, and its number is above all of them.
                    for message in messages {
                        first.extend(sse_event(None, &message, now));
                    }
                }
                resume => {
                    if resume == Resume::Stale {
                        first.extend_from_slice(b"event: gap\ndata: {}\n\n");
                    }
                    for message in retained_for(loaded, &filters, access, now) {
                        first.extend(sse_event(None, &message, now));
                    }
                }
            }
            let _ = sender.unbounded_send(Ok(first));
            loaded.feed.add_listener(filters, sender.clone());
            loaded.feed.listener_count()
        };
        log_info(namespace, "sse stream opened", opened);

        let heartbeat = Duration::from_secs(settings.sse_heartbeat_secs.max(1));
        let max_stream = Duration::from_secs(settings.sse_max_stream_secs.max(1));
        worker::wasm_bindgen_futures::spawn_local(async move {
            let mut streamed = Duration::ZERO;
            loop {
                Delay::from(heartbeat).await;
                streamed += heartbeat;
                if streamed >= max_stream {
                    // Closing the channel ends the response for every
                    // sender, including the feed's listener.
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
        let pairs = query_pairs(req)?;
        let max_wait = settings.poll_max_wait_secs;
        let wait_secs = match query_value(&pairs, "wait").map(str::parse::<u64>) {
            None => max_wait,
            Some(Ok(secs)) => secs.min(max_wait),
            Some(Err(_)) => {
                return json_error(400, format!("invalid wait: use 0 to {max_wait} seconds"))
            }
        };
        let deadline = Date::now().as_millis().saturating_add(wait_secs * 1000);

        let (mut after, mut gap) = {
            let guard = self.loaded.borrow();
            let Some(loaded) = guard.as_ref() else {
                return json_error(500, "broker unavailable");
            };
            match loaded.feed.resume_from(query_value(&pairs, "cursor")) {
                Resume::Now => (loaded.feed.newest(), false),
                Resume::After(after) => (after, false),
                Resume::Stale => (0, true),
            }
        };
        loop {
            let (messages, cursor, waiter) = {
                let mut guard = self.loaded.borrow_mut();
                let Some(loaded) = guard.as_mut() else {
                    return json_error(500, "broker unavailable");
                };
                let (messages, last, missed) =
                    loaded.feed.read_after(after, &filters, MAX_POLL_MESSAGES);
                gap |= missed;
                after = last;
                let cursor = loaded.feed.event_id(after);
                let waiter = messages.is_empty().then(|| loaded.feed.wait());
                (messages, cursor, waiter)
            };
            let now = Date::now().as_millis();
            let Some(waiter) = waiter.filter(|_| now < deadline) else {
                let messages: Vec<MessageJson> = messages
                    .iter()
                    .map(|message| MessageJson::new(message, now))
                    .collect();
                return Response::from_json(
                    &json!({ "messages": messages, "cursor": cursor, "gap": gap }),
                );
            };
            let timeout = Delay::from(Duration::from_millis(deadline - now));
            if let Either::Right(_) = select(waiter, timeout).await {
                // Timed out: one last read returns whatever came.
                continue;
            }
        }
    }
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
    loaded: &super::Loaded,
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

fn log_info(namespace: &str, message: &str, streams: usize) {
    crate::logging::info(
        &json!({ "namespace": namespace, "message": message, "sse_streams": streams }),
    );
}
