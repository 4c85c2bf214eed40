//! The end of connections and sessions: DISCONNECT, socket close, protocol
//! errors, wills, and the deadlines that [`Broker::handle_timeout`] runs.

use codec::{
    Disconnect, Packet, Properties, PropertyValues, ProtocolVersion, ReasonCode, ReasonKind,
};

use crate::message::Message;
use crate::session::{self, Will};
use crate::store::{kind, RowKey, StoreOp};
use crate::{Broker, ConnId, Output};

/// The cause of the end of a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// The client sent DISCONNECT; the will is published only when it asked
    /// for it with reason code 0x04.
    Disconnect { publish_will: bool },
    /// The socket closed without DISCONNECT: the will is published.
    SocketClosed,
    /// The broker closes the connection after a protocol error or a keep
    /// alive timeout, with this reason for MQTT 5.0: the will is published.
    ServerClose(ReasonCode),
    /// The CONNECT was refused or never came; there is no session.
    Rejected,
    /// A new connection took the client id; it has dealt with the will.
    TakenOver,
}

impl Broker {
    /// Ends a connection: sends the closing DISCONNECT, closes the socket
    /// and detaches its session. Does nothing for an unknown connection.
    pub(crate) fn end_connection(&mut self, conn: ConnId, ending: Ending, now_ms: u64) {
        self.end_connection_explained(conn, ending, None, now_ms);
    }

    /// Ends a connection like [`Broker::end_connection`], with
    /// `reason_string` on the DISCONNECT of a [`Ending::ServerClose`]. Without
    /// one the DISCONNECT describes its reason code.
    pub(crate) fn end_connection_explained(
        &mut self,
        conn: ConnId,
        ending: Ending,
        reason_string: Option<String>,
        now_ms: u64,
    ) {
        let Some(version) = self.connections.get(&conn).map(|c| c.version()) else {
            return;
        };
        if let (Ending::ServerClose(reason), Some(ProtocolVersion::V5)) = (ending, version) {
            // DISCONNECT carries only DISCONNECT reason codes (MQTT-3.14.2-1).
            // A decode error may map to a CONNACK-only code such as 0x84.
            let reason = match reason.allowed_in(ReasonKind::Disconnect) {
                true => reason,
                false => ReasonCode::ProtocolError,
            };
            let disconnect = Disconnect {
                reason,
                properties: Properties::from(PropertyValues {
                    reason_string: reason_string.map(Into::into),
                    ..PropertyValues::default()
                }),
            };
            self.send(conn, &Packet::Disconnect(disconnect));
        }
        let Some(connection) = self.connections.remove(&conn) else {
            return;
        };
        self.changed_records.remove(&conn);
        if ending != Ending::SocketClosed {
            self.outputs.push_back(Output::Close { conn });
        }

        let Some(connected) = connection.session else {
            return;
        };
        let publish_will = match ending {
            Ending::Disconnect { publish_will } => publish_will,
            Ending::SocketClosed | Ending::ServerClose(_) => true,
            Ending::Rejected | Ending::TakenOver => false,
        };
        self.detach_session(&connected.client_id, conn, publish_will, now_ms);
        self.publish_disconnected(&connected.client_id, ending, now_ms);
    }

    /// Marks a session offline after its connection ended, publishes or
    /// schedules its will, and ends the session if it expires at once.
    fn detach_session(&mut self, client_id: &str, conn: ConnId, publish_will: bool, now_ms: u64) {
        let Some(session) = self.sessions.get_mut(client_id) else {
            return;
        };
        // A late close of a connection that was taken over must not touch
        // the session of the new one.
        if session.conn != Some(conn) {
            return;
        }
        session.conn = None;
        session.disconnected_at_ms = Some(now_ms);
        let expiry_interval = session.expiry_interval;
        let will = session.will.take();
        let will_key = RowKey::new(kind::WILL, client_id, "");

        // The will waits for its delay only while the session lives. It is
        // sent when the delay passes or the session ends, whichever comes
        // first (section 3.1.3.2.2 of 5.0).
        let mut publish_now = None;
        match will {
            Some(mut will) if publish_will && will.delay > 0 && expiry_interval > 0 => {
                let delay_ms = u64::from(will.delay.min(expiry_interval)) * 1000;
                will.due_at_ms = Some(now_ms.saturating_add(delay_ms));
                let value = session::encode_will(&will);
                self.store(StoreOp::Put {
                    key: will_key,
                    value,
                });
                if let Some(session) = self.sessions.get_mut(client_id) {
                    session.will = Some(will);
                }
            }
            Some(will) => {
                self.store(StoreOp::Delete { key: will_key });
                publish_now = publish_will.then_some(will);
            }
            None => {}
        }

        if expiry_interval == 0 {
            self.end_session(client_id, now_ms);
        } else if let Some(session) = self.sessions.get(client_id) {
            let value = session::encode_session(session);
            self.store(StoreOp::Put {
                key: RowKey::new(kind::SESSION, client_id, ""),
                value,
            });
        }
        if let Some(will) = publish_now {
            self.publish_will(will, now_ms);
        }
    }

    /// Removes a session and every row it owns. A delayed will still
    /// pending is published, because the session end cuts the delay short.
    pub(crate) fn end_session(&mut self, client_id: &str, now_ms: u64) {
        let Some(session) = self.sessions.remove(client_id) else {
            return;
        };
        for filter in session.subscriptions.keys() {
            self.subscription_tree.remove(client_id, filter);
        }
        for kind in kind::SESSION_KINDS {
            self.store(StoreOp::DeleteOwner {
                kind,
                owner: client_id.to_string(),
            });
        }
        if let Some(will) = session.will.filter(|will| will.due_at_ms.is_some()) {
            self.publish_will(will, now_ms);
        }
    }

    /// Publishes a will message as if its client had sent it.
    pub(crate) fn publish_will(&mut self, will: Will, now_ms: u64) {
        self.metrics
            .count_received(will.publish.qos, will.publish.payload.len());
        let message = Message::from_publish(will.publish, now_ms);
        self.route(None, message, now_ms);
    }

    pub(crate) fn handle_disconnect(&mut self, conn: ConnId, disconnect: Disconnect, now_ms: u64) {
        let Some(client_id) = self.client_id_of(conn) else {
            return;
        };
        if let Some(requested) = disconnect.properties.session_expiry_interval {
            let current = self
                .sessions
                .get(&client_id)
                .map_or(0, |s| s.expiry_interval);
            // A session that ends at disconnect cannot be extended by it
            // (section 3.14.2.2.2 of 5.0).
            if current == 0 && requested > 0 {
                let detail = "non-zero Session Expiry Interval on DISCONNECT after 0 on CONNECT";
                self.protocol_error(conn, detail, now_ms);
                return;
            }
            let granted = requested.min(self.config.session_expiry_maximum);
            if let Some(session) = self.sessions.get_mut(&client_id) {
                session.expiry_interval = granted;
            }
        }
        let publish_will = disconnect.reason == ReasonCode::DisconnectWithWillMessage;
        self.end_connection(conn, Ending::Disconnect { publish_will }, now_ms);
    }

    /// Closes connections past their deadline, publishes wills whose delay
    /// has passed and ends expired sessions.
    pub(crate) fn run_deadlines(&mut self, now_ms: u64) {
        let connect_timeout_ms = self.config.connect_timeout_ms;
        let late: Vec<(ConnId, bool, bool)> = self
            .connections
            .iter()
            .filter(|(_, c)| {
                c.deadline_ms(connect_timeout_ms)
                    .is_some_and(|at| at <= now_ms)
            })
            .map(|(&conn, c)| (conn, c.session.is_some(), c.token_expired(now_ms)))
            .collect();
        for (conn, connected, token_expired) in late {
            if token_expired {
                // Like EMQX's default, a connection lives no longer than
                // its token; the client reconnects with a fresh one.
                log::debug!("connection {conn}: token expired, closing");
                let ending = Ending::ServerClose(ReasonCode::NotAuthorized);
                let reason = Some("token expired".to_string());
                self.end_connection_explained(conn, ending, reason, now_ms);
                continue;
            }
            let ending = match connected {
                // Keep alive expiry counts as a network failure
                // (MQTT-3.1.2-22), so the will is published.
                true => Ending::ServerClose(ReasonCode::KeepAliveTimeout),
                false => Ending::Rejected,
            };
            log::debug!("connection {conn}: deadline passed, closing");
            self.end_connection(conn, ending, now_ms);
        }

        let due_wills: Vec<String> = self
            .sessions
            .values()
            .filter(|s| {
                s.will
                    .as_ref()
                    .and_then(|w| w.due_at_ms)
                    .is_some_and(|at| at <= now_ms)
            })
            .map(|s| s.client_id.clone())
            .collect();
        for client_id in due_wills {
            let will = self
                .sessions
                .get_mut(&client_id)
                .and_then(|s| s.will.take());
            if let Some(will) = will {
                self.store(StoreOp::Delete {
                    key: RowKey::new(kind::WILL, client_id, ""),
                });
                self.publish_will(will, now_ms);
            }
        }

        let expired: Vec<String> = self
            .sessions
            .values()
            .filter(|s| s.expires_at_ms().is_some_and(|at| at <= now_ms))
            .map(|s| s.client_id.clone())
            .collect();
        for client_id in expired {
            self.end_session(&client_id, now_ms);
        }
    }

    /// The earliest connection deadline, will delay or session expiry.
    pub(crate) fn earliest_deadline(&self) -> Option<u64> {
        let connect_timeout_ms = self.config.connect_timeout_ms;
        let connections = self
            .connections
            .values()
            .filter_map(|c| c.deadline_ms(connect_timeout_ms));
        let wills = self
            .sessions
            .values()
            .filter_map(|s| s.will.as_ref()?.due_at_ms);
        let sessions = self.sessions.values().filter_map(|s| s.expires_at_ms());
        connections.chain(wills).chain(sessions).min()
    }

    /// Treats a session whose socket vanished during hibernation as if its
    /// connection had been lost at `now_ms`.
    pub(crate) fn detach_vanished(&mut self, client_id: &str, now_ms: u64) {
        let placeholder = ConnId::MAX;
        if let Some(session) = self.sessions.get_mut(client_id) {
            session.conn = Some(placeholder);
        }
        self.detach_session(client_id, placeholder, true, now_ms);
        // NOTE: this runs inside `Broker::restore`, before the embedding can
        // call `set_namespace_name`, so the event's namespace is empty.
        self.publish_disconnected(client_id, Ending::SocketClosed, now_ms);
    }
}
