//! The Durable Object that owns one namespace.
//!
//! It accepts sockets through the WebSocket Hibernation API, so the runtime
//! may evict it from memory between events. Every event therefore starts by
//! making sure a [`Broker`] exists, rebuilding it from SQLite rows and the
//! socket attachments when the object was just constructed.
//!
//! Requests that are not WebSocket upgrades (HTTP publish, retained reads,
//! SSE, long polling and admin requests) go to the submodules:
//! - `http`: HTTP publish and retained reads, and the access decision.
//! - `transport`: SSE and long polling.
//! - `feed`: the feed of routed messages these transports read.
//! - `feed_sessions`: named SSE and long-poll sessions, stored like
//!   persistent MQTT sessions; `feed_store` keeps them in SQLite.
//! - `admin_api`: metrics, client list and disconnect.
//! - `archive`: the retained mirror and audit log in R2, and the upkeep.
//! - `bridge`: the outbox of the bridge to Cloudflare Queues and its flush.

mod admin_api;
mod archive;
mod bridge;
mod feed;
mod feed_sessions;
mod feed_store;
mod http;
mod transport;

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;

use broker::{Broker, ConnId, Output};
use serde::{Deserialize, Serialize};
use worker::{
    durable_object, js_sys, Date, DurableObject, Env, Request, Response, Result, ScheduledTime,
    State, WebSocket, WebSocketIncomingMessage, WebSocketPair,
};

use crate::http_message::TokenBucket;
use crate::http_settings::{self, HttpSettings};
use crate::{auth_env, logging, settings, storage, NAMESPACE_HEADER};

/// Subprotocols a client may offer, best first. MQTT over WebSocket requires
/// `mqtt`; some 3.1 clients still offer `mqttv3.1`.
const SUBPROTOCOLS: [&str; 2] = ["mqtt", "mqttv3.1"];

/// How long the first MQTT event that writes to storage waits for others
/// before its writes run; see [`Namespace::with_broker_grouped`]. A zero
/// timeout still lets the runtime deliver the messages that have already
/// arrived.
const GROUP_COMMIT_WAIT: std::time::Duration = std::time::Duration::ZERO;

/// WebSocket close code sent when the broker ends a connection.
const CLOSE_NORMAL: u16 = 1000;

/// Per-socket state kept across hibernation.
#[derive(Serialize, Deserialize)]
struct Attachment {
    /// The broker's connection id, as a string because JavaScript numbers
    /// cannot carry every `u64`.
    conn: String,
    namespace: String,
    /// The broker's own connection record.
    #[serde(with = "serde_bytes")]
    record: Vec<u8>,
}

/// The alarm time as far as this instance has read or set it.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Alarm {
    /// Not read since the object was constructed.
    Unknown,
    /// Set to fire at this time (milliseconds since the Unix epoch), or unset.
    Known(Option<u64>),
}

/// A namespace: a topic tree with its sessions, subscriptions and retained
/// messages.
#[durable_object]
pub struct Namespace {
    state: State,
    env: Env,
    loaded: RefCell<Option<Loaded>>,
    /// Shared with the bridge's background flush, which sets the alarm
    /// after a failed send.
    alarm: Rc<Cell<Alarm>>,
    /// The bridge to Cloudflare Queues, shared with its background flush.
    bridge: bridge::SharedBridge,
}

/// The broker and the open sockets, present while the object is in memory.
struct Loaded {
    broker: Broker,
    namespace: String,
    sockets: HashMap<ConnId, WebSocket>,
    /// Settings of the HTTP API.
    http: HttpSettings,
    /// Recent routed messages and open SSE streams.
    feed: feed::Feed,
    /// The rate limit of HTTP publishes to this namespace. It restarts full
    /// when the object is evicted from memory.
    publish_bucket: TokenBucket,
    /// Storage writes that failed since the broker was built, so that an
    /// HTTP publish can report a failed write instead of accepting.
    storage_failures: u64,
    /// Outputs of MQTT packets held for the next group commit; see
    /// [`Namespace::with_broker_grouped`].
    held: Vec<Output>,
    /// The SQL run on the broker's rows since the broker was built.
    storage: storage::Counters,
    /// WebSocket messages received since the broker was built. Cloudflare
    /// bills 20 of them as one request.
    websocket_messages: u64,
    /// The retained mirror and audit buffer waiting for R2.
    archive: archive::Archive,
}

impl DurableObject for Namespace {
    fn new(state: State, env: Env) -> Self {
        Namespace {
            state,
            env,
            loaded: RefCell::new(None),
            alarm: Rc::new(Cell::new(Alarm::Unknown)),
            bridge: Rc::default(),
        }
    }

    async fn fetch(&self, req: Request) -> Result<Response> {
        // The ingress sends WebSocket upgrades on /mqtt paths and HTTP API
        // requests on their own paths.
        if !req.path().starts_with("/mqtt") {
            return self.handle_http(req).await;
        }
        let namespace = req.headers().get(NAMESPACE_HEADER)?.unwrap_or_default();
        let Some(subprotocol) = choose_subprotocol(&req)? else {
            return Response::error(
                "unsupported WebSocket subprotocol: offer \"mqtt\" in Sec-WebSocket-Protocol",
                400,
            );
        };
        let grant = match auth_env::forwarded_grant(&req)? {
            Ok(grant) => grant,
            Err(error) => {
                logging::error(
                    Some(&namespace),
                    &format!("grant header from the ingress does not decode: {error}"),
                );
                return Response::error("internal error: invalid grant from the ingress", 500);
            }
        };
        if let Err(message) = self.ensure_loaded(&namespace) {
            logging::error(Some(&namespace), &format!("cannot start: {message}"));
            return Response::error(format!("broker unavailable: {message}"), 500);
        }

        let pair = WebSocketPair::new()?;
        self.state.accept_web_socket(&pair.server);
        self.with_broker(|loaded, now| {
            let conn = loaded.broker.handle_open(now);
            loaded.broker.set_ingress_grant(conn, grant);
            save_attachment(&pair.server, conn, &loaded.namespace, &[]);
            loaded.sockets.insert(conn, pair.server.clone());
        });
        self.schedule_alarm().await;

        let mut response = Response::from_websocket(pair.client)?;
        if let Some(subprotocol) = subprotocol {
            response
                .headers_mut()
                .set("Sec-WebSocket-Protocol", subprotocol)?;
        }
        Ok(response)
    }

    async fn websocket_message(
        &self,
        ws: WebSocket,
        message: WebSocketIncomingMessage,
    ) -> Result<()> {
        let Some(attachment) = self.socket_attachment(&ws) else {
            return Ok(());
        };
        let conn = attachment.conn;
        match message {
            WebSocketIncomingMessage::Binary(data) => {
                let leads = self.with_broker_grouped(|loaded, now| {
                    loaded.websocket_messages += 1;
                    loaded.broker.handle_data(conn, &data, now);
                });
                if leads {
                    worker::Delay::from(GROUP_COMMIT_WAIT).await;
                    self.with_broker(|_, _| {});
                }
            }
            WebSocketIncomingMessage::String(_) => {
                // MQTT travels only in binary frames; a text frame ends the
                // connection as a protocol violation.
                self.with_broker(|loaded, now| {
                    loaded.broker.handle_closed(conn, now);
                    loaded.sockets.remove(&conn);
                });
                close_socket(&ws);
            }
        }
        self.schedule_alarm().await;
        Ok(())
    }

    async fn websocket_close(
        &self,
        ws: WebSocket,
        _code: usize,
        _reason: String,
        _clean: bool,
    ) -> Result<()> {
        self.socket_closed(&ws).await;
        close_socket(&ws);
        Ok(())
    }

    async fn websocket_error(&self, ws: WebSocket, error: worker::Error) -> Result<()> {
        logging::debug(None, &format!("socket error: {error}"));
        self.socket_closed(&ws).await;
        Ok(())
    }

    async fn alarm(&self) -> Result<Response> {
        self.alarm.set(Alarm::Known(None));
        if let Err(message) = self.ensure_loaded("") {
            logging::error(None, &format!("alarm: cannot start the broker: {message}"));
            return Response::ok("");
        }
        self.with_broker(|loaded, now| loaded.broker.handle_timeout(now));
        self.schedule_alarm().await;
        Response::ok("")
    }
}

/// An attachment and the connection id it names.
struct SocketRef {
    conn: ConnId,
}

impl Namespace {
    /// Builds the broker if this instance has none yet. `namespace` is the
    /// name from the ingress, or empty when the event carries none; the name
    /// stored in a socket attachment is used then.
    fn ensure_loaded(&self, namespace: &str) -> std::result::Result<(), String> {
        if let Some(loaded) = self.loaded.borrow_mut().as_mut() {
            // An alarm can build the broker before any request names the
            // namespace, and CONNECT compares a token's namespace with it.
            if loaded.namespace.is_empty() && !namespace.is_empty() {
                loaded.namespace = namespace.to_string();
                loaded.broker.set_namespace_name(namespace);
                loaded.archive.set_namespace(namespace);
                self.save_name(namespace);
            }
            return Ok(());
        }
        logging::install();
        let config = settings::load(&self.env)?;
        let http = http_settings::load(&self.env)?;
        let bridge_settings = crate::bridge::load_settings(&self.env)?;
        let sql = self.state.storage().sql();
        storage::create_schema(&sql).map_err(|error| format!("creating tables failed: {error}"))?;
        http::create_idempotency_table(&sql)
            .map_err(|error| format!("creating tables failed: {error}"))?;
        let mut storage_counters = storage::Counters::default();
        let rows = storage::load_rows(&sql, &mut storage_counters)
            .map_err(|error| format!("reading rows failed: {error}"))?;

        let mut name = namespace.to_string();
        let mut sockets = HashMap::new();
        let mut connections = Vec::new();
        for ws in self.state.get_websockets() {
            let attachment = ws.deserialize_attachment::<Attachment>().ok().flatten();
            let Some((conn, attachment)) =
                attachment.and_then(|a| a.conn.parse::<ConnId>().ok().map(|conn| (conn, a)))
            else {
                close_socket(&ws);
                continue;
            };
            if name.is_empty() {
                name = attachment.namespace;
            }
            connections.push((conn, attachment.record.into()));
            sockets.insert(conn, ws);
        }
        let stored_name = storage::load_namespace_name(&sql).unwrap_or_else(|error| {
            logging::error(None, &format!("reading the namespace name failed: {error}"));
            None
        });
        if name.is_empty() {
            name = stored_name.clone().unwrap_or_default();
        } else if stored_name.as_deref() != Some(name.as_str()) {
            self.save_name(&name);
        }

        let bridge = bridge::Bridge::load(&bridge_settings, &sql)?;
        let bridge_rules = bridge.has_rules();
        *self.bridge.borrow_mut() = Some(bridge);

        let archive = archive::Archive::load(&sql, &self.env, &name)?;

        let now = Date::now().as_millis();
        let mut broker = Broker::restore(config, rows, connections, now);
        broker.set_namespace_name(&name);
        broker.set_authentication(auth_env::broker_authentication(&self.env));
        broker.set_observe_routed(
            !http.transports.is_empty()
                || !http.namespace_transports.is_empty()
                || bridge_rules
                || archive.observes_routed(),
        );
        logging::info(&serde_json::json!({
            "message": "broker started",
            "namespace": name,
            "open_sockets": sockets.len(),
        }));
        let sessions = feed_store::load_sessions(&sql, &http, now)?;
        let feed = feed::Feed::new(now, http.recent_messages, sessions);
        let publish_bucket = TokenBucket::new(http.publish_rate_per_sec, http.publish_burst, now);
        let mut loaded = Loaded {
            broker,
            namespace: name,
            sockets,
            http,
            feed,
            publish_bucket,
            storage_failures: 0,
            held: Vec::new(),
            storage: storage_counters,
            websocket_messages: 0,
            archive,
        };
        // Restoring can close connections whose records are unreadable.
        self.carry_out(&mut loaded);
        *self.loaded.borrow_mut() = Some(loaded);
        Ok(())
    }

    /// Saves the namespace's name for wakes that carry no request.
    fn save_name(&self, name: &str) {
        let sql = self.state.storage().sql();
        if let Err(error) = storage::save_namespace_name(&sql, name) {
            logging::error(
                Some(name),
                &format!("saving the namespace name failed: {error}"),
            );
        }
    }

    /// Runs `event` on the broker, then carries out everything it output.
    /// Does nothing if the broker could not be built.
    fn with_broker(&self, event: impl FnOnce(&mut Loaded, u64)) {
        let mut guard = self.loaded.borrow_mut();
        let Some(loaded) = guard.as_mut() else {
            return;
        };
        event(loaded, Date::now().as_millis());
        self.carry_out(loaded);
    }

    /// Runs `event` like [`Namespace::with_broker`], but defers its outputs
    /// when they write to storage or when earlier outputs are deferred, so that
    /// the writes of the events that arrive meanwhile share one transaction
    /// and one commit. Returns whether this event started the hold: its
    /// handler then waits [`GROUP_COMMIT_WAIT`] and carries out everything
    /// held. Any other event that carries out outputs does so too.
    ///
    /// Nothing held has left the object, so no acknowledgement is released
    /// before its write: a lost hold costs the client a resend, not a message.
    fn with_broker_grouped(&self, event: impl FnOnce(&mut Loaded, u64)) -> bool {
        let mut guard = self.loaded.borrow_mut();
        let Some(loaded) = guard.as_mut() else {
            return false;
        };
        event(loaded, Date::now().as_millis());
        let starts_hold = loaded.held.is_empty();
        loaded
            .held
            .extend(std::iter::from_fn(|| loaded.broker.poll_output()));
        let writes = loaded
            .held
            .iter()
            .any(|output| matches!(output, Output::Store(_)));
        if starts_hold && !writes {
            self.carry_out(loaded);
            return false;
        }
        starts_hold
    }

    /// Carries out the held outputs and then the broker's new ones: first
    /// every storage write, as one batch, then attachments, sends and
    /// closes in order. Sends that follow a write in the same event leave
    /// only once the runtime has committed it (the output gate).
    fn carry_out(&self, loaded: &mut Loaded) {
        // The bridge's outbox rows are written before any send of this
        // event, so the output gate delays a PUBACK until they are durable.
        let routed: Vec<broker::Message> =
            std::iter::from_fn(|| loaded.broker.poll_routed()).collect();
        self.bridge_routed(&loaded.namespace, &routed);
        let mut outputs = std::mem::take(&mut loaded.held);
        outputs.extend(std::iter::from_fn(|| loaded.broker.poll_output()));
        let mut ops = Vec::new();
        let mut others = Vec::with_capacity(outputs.len());
        for output in outputs {
            match output {
                Output::Store(op) => ops.push(op),
                other => others.push(other),
            }
        }
        let sql = self.state.storage().sql();
        // In the same event as the writes, before any send.
        loaded
            .archive
            .note_event(&sql, &ops, &routed, Date::now().as_millis());
        let namespace = &loaded.namespace;
        // TODO: stop acknowledging when a write fails instead of only logging it.
        loaded.storage_failures += storage::apply_batch(&sql, ops, &mut loaded.storage, |error| {
            logging::error(Some(namespace), &format!("storage write failed: {error}"));
        });
        for output in others {
            match output {
                Output::Store(_) => {}
                Output::Send { conn, bytes } => {
                    if let Some(ws) = loaded.sockets.get(&conn) {
                        if let Err(error) = ws.send_with_bytes(&bytes) {
                            logging::debug(
                                Some(namespace),
                                &format!("send to connection {conn} failed: {error}"),
                            );
                        }
                    }
                }
                Output::SaveConnection { conn, record } => {
                    if let Some(ws) = loaded.sockets.get(&conn) {
                        save_attachment(ws, conn, &loaded.namespace, &record);
                    }
                }
                Output::Close { conn } => {
                    if let Some(ws) = loaded.sockets.remove(&conn) {
                        close_socket(&ws);
                    }
                }
            }
        }
        let now = Date::now().as_millis();
        for message in routed {
            loaded.feed.push(message, now);
        }
    }

    /// Reads the connection id of a socket, building the broker first if
    /// needed. A socket without a readable attachment is closed.
    fn socket_attachment(&self, ws: &WebSocket) -> Option<SocketRef> {
        let attachment = ws.deserialize_attachment::<Attachment>().ok().flatten();
        let Some(attachment) = attachment else {
            close_socket(ws);
            return None;
        };
        let Ok(conn) = attachment.conn.parse::<ConnId>() else {
            close_socket(ws);
            return None;
        };
        if let Err(message) = self.ensure_loaded(&attachment.namespace) {
            logging::error(
                Some(&attachment.namespace),
                &format!("cannot start: {message}"),
            );
            close_socket(ws);
            return None;
        }
        Some(SocketRef { conn })
    }

    async fn socket_closed(&self, ws: &WebSocket) {
        let Some(socket) = self.socket_attachment(ws) else {
            return;
        };
        self.with_broker(|loaded, now| {
            loaded.sockets.remove(&socket.conn);
            loaded.broker.handle_closed(socket.conn, now);
        });
        self.schedule_alarm().await;
    }

    /// Moves the alarm earlier when a deadline is earlier than it. A later
    /// deadline waits for the current alarm, which reschedules it, so that a
    /// busy connection does not write an alarm on every packet. Each part
    /// of the object with deadlines adds its term to `deadlines`.
    async fn schedule_alarm(&self) {
        self.run_archive().await;
        let deadlines = [
            self.loaded
                .borrow()
                .as_ref()
                .and_then(|loaded| loaded.broker.next_timeout()),
            self.bridge
                .borrow()
                .as_ref()
                .and_then(|bridge| bridge.next_deadline()),
            self.loaded
                .borrow()
                .as_ref()
                .and_then(|loaded| loaded.archive.deadline()),
        ];
        let Some(next) = deadlines.into_iter().flatten().min() else {
            return;
        };
        move_alarm_earlier(&self.state.storage(), &self.alarm, next).await;
    }
}

/// Sets the alarm to `next` unless it is already set to fire at or before
/// it. `alarm` caches the alarm time so that most calls read nothing.
async fn move_alarm_earlier(storage: &worker::Storage, alarm: &Cell<Alarm>, next: u64) {
    let current = match alarm.get() {
        Alarm::Known(at) => at,
        Alarm::Unknown => match storage.get_alarm().await {
            Ok(at) => at.and_then(|at| u64::try_from(at).ok()),
            Err(error) => {
                logging::error(None, &format!("reading the alarm failed: {error}"));
                None
            }
        },
    };
    if current.is_some_and(|at| at <= next) {
        alarm.set(Alarm::Known(current));
        return;
    }
    let date = js_sys::Date::new(&js_sys::Number::from(next as f64));
    match storage.set_alarm(ScheduledTime::new(date)).await {
        Ok(()) => alarm.set(Alarm::Known(Some(next))),
        Err(error) => logging::error(None, &format!("setting the alarm failed: {error}")),
    }
}

/// Chooses the subprotocol for the 101 response: `Ok(Some(None))` when the
/// client offered none, `Ok(None)` when it offered only unsupported ones.
fn choose_subprotocol(req: &Request) -> Result<Option<Option<&'static str>>> {
    let Some(offered) = req.headers().get("Sec-WebSocket-Protocol")? else {
        return Ok(Some(None));
    };
    let offered: Vec<&str> = offered.split(',').map(str::trim).collect();
    let chosen = SUBPROTOCOLS
        .into_iter()
        .find(|name| offered.iter().any(|o| o.eq_ignore_ascii_case(name)));
    Ok(chosen.map(Some))
}

fn save_attachment(ws: &WebSocket, conn: ConnId, namespace: &str, record: &[u8]) {
    let attachment = Attachment {
        conn: conn.to_string(),
        namespace: namespace.to_string(),
        record: record.to_vec(),
    };
    if let Err(error) = ws.serialize_attachment(&attachment) {
        logging::error(
            Some(namespace),
            &format!("saving connection {conn} failed: {error}"),
        );
    }
}

fn close_socket(ws: &WebSocket) {
    // Closing a socket that is already closed fails; there is nothing to do then.
    let _ = ws.close(Some(CLOSE_NORMAL), Some(""));
}
