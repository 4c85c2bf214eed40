//! The relay baseline: a Worker and a Durable Object that forward binary
//! WebSocket messages without parsing them. It measures what the runtime
//! itself allows, so that the broker's figures can be read as a ratio.
//!
//! A client connects to `/relay/<room>?recv=<group>` to receive, or to
//! `/relay/<room>?send=<group>` to send. Every binary message from a sender
//! goes to every receiver of its group, in the Durable Object named `room`.
//! Any other request gets 426, like the broker's `/mqtt` without an upgrade.

use std::cell::RefCell;
use std::collections::HashMap;

use worker::{
    durable_object, event, Context, DurableObject, Env, Request, Response, Result, State,
    WebSocket, WebSocketIncomingMessage, WebSocketPair,
};

/// Name of the Durable Object binding in `wrangler.toml`.
const RELAY_BINDING: &str = "RELAYS";

/// Tag prefix of a receiving socket; the group follows.
const RECEIVER_TAG: &str = "recv:";

/// Tag prefix of a sending socket; the group follows.
const SENDER_TAG: &str = "send:";

#[event(fetch)]
async fn fetch(req: Request, env: Env, _ctx: Context) -> Result<Response> {
    let path = req.path();
    let Some(room) = path.strip_prefix("/relay/").filter(|room| !room.is_empty()) else {
        return Response::error("send a WebSocket upgrade to /relay/<room>", 426);
    };
    if !is_upgrade(&req)? {
        return Response::error("send a WebSocket upgrade to /relay/<room>", 426);
    }
    let stub = env.durable_object(RELAY_BINDING)?.get_by_name(room)?;
    stub.fetch_with_request(req).await
}

/// One room: its sockets, grouped by tag.
#[durable_object]
pub struct Relay {
    state: State,
    /// Receivers per group tag, filled on first use and cleared whenever a
    /// socket opens or closes. Empty after a wake from hibernation.
    receivers: RefCell<HashMap<String, Vec<WebSocket>>>,
}

impl DurableObject for Relay {
    fn new(state: State, _env: Env) -> Self {
        Relay {
            state,
            receivers: RefCell::new(HashMap::new()),
        }
    }

    async fn fetch(&self, req: Request) -> Result<Response> {
        let url = req.url()?;
        let tag = url
            .query_pairs()
            .find_map(|(name, group)| match name.as_ref() {
                "recv" => Some(format!("{RECEIVER_TAG}{group}")),
                "send" => Some(format!("{SENDER_TAG}{group}")),
                _ => None,
            });
        let Some(tag) = tag else {
            return Response::error("missing query parameter: recv=<group> or send=<group>", 400);
        };

        let pair = WebSocketPair::new()?;
        self.state.accept_websocket_with_tags(&pair.server, &[&tag]);
        self.receivers.borrow_mut().clear();
        let mut response = Response::from_websocket(pair.client)?;
        if let Some(offered) = req.headers().get("Sec-WebSocket-Protocol")? {
            // Echo the first offer, so that MQTT clients can connect too.
            let first = offered
                .split(',')
                .next()
                .unwrap_or_default()
                .trim()
                .to_string();
            response
                .headers_mut()
                .set("Sec-WebSocket-Protocol", &first)?;
        }
        Ok(response)
    }

    async fn websocket_message(
        &self,
        ws: WebSocket,
        message: WebSocketIncomingMessage,
    ) -> Result<()> {
        let WebSocketIncomingMessage::Binary(data) = message else {
            return Ok(());
        };
        let Some(group) = self
            .state
            .get_tags(&ws)
            .into_iter()
            .find_map(|tag| tag.strip_prefix(SENDER_TAG).map(str::to_string))
        else {
            return Ok(());
        };

        let mut receivers = self.receivers.borrow_mut();
        let targets = receivers.entry(group).or_insert_with_key(|group| {
            self.state
                .get_websockets_with_tag(&format!("{RECEIVER_TAG}{group}"))
        });
        for target in targets.iter() {
            // A receiver that is closing fails the send; it leaves the group
            // when its close event clears the cache.
            let _ = target.send_with_bytes(&data);
        }
        Ok(())
    }

    async fn websocket_close(
        &self,
        ws: WebSocket,
        _code: usize,
        _reason: String,
        _clean: bool,
    ) -> Result<()> {
        self.receivers.borrow_mut().clear();
        let _ = ws.close(Some(1000), Some(""));
        Ok(())
    }

    async fn websocket_error(&self, _ws: WebSocket, _error: worker::Error) -> Result<()> {
        self.receivers.borrow_mut().clear();
        Ok(())
    }
}

fn is_upgrade(req: &Request) -> Result<bool> {
    let upgrade = req.headers().get("Upgrade")?;
    Ok(upgrade.is_some_and(|value| value.eq_ignore_ascii_case("websocket")))
}
