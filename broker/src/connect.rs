//! CONNECT: checks, CONNACK, session takeover and resumption.

use codec::{
    ConnAck, Connect, DecodeError, Disconnect, Packet, Properties, PropertyValues, ProtocolVersion,
    QoS, ReasonCode, V3Response,
};

use crate::connection::Connected;
use crate::lifecycle::Ending;
use crate::problem;
use crate::session::{self, Session, Will, NEVER_EXPIRES};
use crate::store::{kind, RowKey, StoreOp};
use crate::{topic, Broker, ConnId};

impl Broker {
    pub(crate) fn handle_connect(&mut self, conn: ConnId, connect: Connect, now_ms: u64) {
        let version = connect.protocol;
        if let Err(reason) = self.check_connect(&connect) {
            log::debug!("connection {conn}: CONNECT rejected with {reason:?}");
            let detail = problem::connect_problem(reason, &connect, &self.config);
            self.reject_connect_explained(conn, &connect, reason, Some(detail), now_ms);
            return;
        }
        let admitted = match self.authenticate(conn, &connect, now_ms) {
            Ok(admitted) => admitted,
            Err(reason) => {
                self.reject_connect_explained(conn, &connect, reason, None, now_ms);
                return;
            }
        };

        // With a token the client id is the token's `sub`, so a client that
        // sent an empty id is assigned `sub` rather than a generated id.
        let assigned_client_id = connect.client_id.is_empty();
        let client_id = match admitted.client_id.is_empty() {
            true => self.generate_client_id(conn, now_ms),
            false => admitted.client_id,
        };
        if self.connection_limit_reached(&client_id) {
            // 3.1.1 has no Quota exceeded; the CONNACK carries 0x03 Server
            // unavailable instead.
            log::debug!("connection {conn}: CONNECT rejected, namespace at max_connections");
            let detail = "the namespace has reached its maximum number of connections";
            let reason = ReasonCode::QuotaExceeded;
            self.reject_connect_explained(conn, &connect, reason, Some(detail.into()), now_ms);
            return;
        }
        let resume = !connect.clean_start;
        if let Some(old_conn) = self
            .sessions
            .get(&client_id)
            .and_then(|session| session.conn)
        {
            self.take_over(old_conn, resume, now_ms);
        }

        let session_present = self.open_session(&client_id, resume, now_ms);
        let expiry_interval = self.granted_session_expiry(&connect);
        let keep_alive = self.granted_keep_alive(&connect);
        let will = connect.will.map(|will| Will {
            delay: will.properties.will_delay_interval.unwrap_or(0),
            publish: codec::Publish {
                dup: false,
                qos: will.qos,
                retain: will.retain,
                topic: will.topic,
                pkid: (will.qos != QoS::AtMostOnce).then_some(codec::PacketId::MIN),
                payload: will.payload,
                properties: Properties::from(PropertyValues {
                    will_delay_interval: None,
                    ..will.properties.into_values()
                }),
            },
            due_at_ms: None,
        });
        self.attach_session(conn, &client_id, expiry_interval, will, admitted.acl);

        let properties = &connect.properties;
        let connected = Connected {
            client_id: client_id.clone(),
            version,
            keep_alive,
            receive_maximum: properties.receive_maximum.unwrap_or(u16::MAX),
            maximum_packet_size: properties.maximum_packet_size,
            request_problem_information: properties.request_problem_information != Some(0),
            topic_aliases: Default::default(),
            token_expires_ms: admitted.token_expires_ms,
        };
        if let Some(connection) = self.connections.get_mut(&conn) {
            connection.session = Some(connected);
        }

        let mut connack = ConnAck {
            session_present,
            reason: ReasonCode::Success,
            properties: Properties::default(),
        };
        if version.is_v5() {
            connack.properties = self.connack_properties(connect.keep_alive, keep_alive);
            let requested_expiry = connect.properties.session_expiry_interval.unwrap_or(0);
            connack.properties.session_expiry_interval =
                (expiry_interval != requested_expiry).then_some(expiry_interval);
            if assigned_client_id {
                connack.properties.assigned_client_identifier = Some(client_id.clone().into());
            }
        }
        self.send(conn, &Packet::ConnAck(connack));

        if session_present {
            self.resend_inflight(&client_id, now_ms);
        }
        self.drain_queue(&client_id, now_ms);
        self.publish_connected(&client_id, version, connect.clean_start, now_ms);
    }

    /// Checks the CONNECT request against what the broker supports.
    fn check_connect(&self, connect: &Connect) -> Result<(), ReasonCode> {
        // MQTT 3.1 requires a client id. MQTT 3.1.1 accepts an empty one only
        // with Clean Session 1 and rejects it with return code 0x02
        // otherwise. MQTT 5.0 lets the server assign one in every case.
        let client_id_required = match connect.protocol {
            ProtocolVersion::V3_1 => true,
            ProtocolVersion::V3_1_1 => !connect.clean_start,
            ProtocolVersion::V5 => false,
        };
        if connect.client_id.is_empty() && client_id_required {
            return Err(ReasonCode::ClientIdentifierNotValid);
        }
        if connect.properties.authentication_method.is_some() {
            return Err(ReasonCode::BadAuthenticationMethod);
        }
        if let Some(will) = &connect.will {
            if !topic::valid_topic_name(&will.topic) {
                return Err(ReasonCode::TopicNameInvalid);
            }
            if will.qos > self.config.max_qos {
                return Err(ReasonCode::QoSNotSupported);
            }
            if will.retain && !self.config.retain_available {
                return Err(ReasonCode::RetainNotSupported);
            }
        }
        Ok(())
    }

    /// Sends a CONNACK that refuses the connection, then closes it
    /// (MQTT-3.2.2-7 of 5.0; 3.1.1 section 3.2.2.3).
    fn reject_connect(
        &mut self,
        conn: ConnId,
        version: ProtocolVersion,
        reason: ReasonCode,
        now_ms: u64,
    ) {
        let connack = ConnAck {
            session_present: false,
            reason,
            properties: Properties::default(),
        };
        self.send_as(conn, version, &Packet::ConnAck(connack));
        self.end_connection(conn, Ending::Rejected, now_ms);
    }

    /// Rejects a CONNECT like [`Broker::reject_connect`], with `detail`, or
    /// a description of `reason`, as the CONNACK's Reason String when it fits
    /// the client's Maximum Packet Size. [`Broker::reject_connect`] sends
    /// none because it does not know that size.
    fn reject_connect_explained(
        &mut self,
        conn: ConnId,
        connect: &Connect,
        reason: ReasonCode,
        detail: Option<String>,
        now_ms: u64,
    ) {
        let mut connack = Packet::ConnAck(ConnAck {
            session_present: false,
            reason,
            properties: problem::with_reason_string(detail),
        });
        // CONNACK may carry a Reason String whatever the value of Request
        // Problem Information (MQTT-3.1.2-29).
        let limits = problem::ProblemLimits {
            request_problem_information: true,
            maximum_packet_size: connect.properties.maximum_packet_size,
        };
        problem::explain(&mut connack, connect.protocol, limits);
        self.send_as(conn, connect.protocol, &connack);
        self.end_connection(conn, Ending::Rejected, now_ms);
    }

    /// Handles a packet that does not decode. Before CONNECT is accepted,
    /// [`DecodeError::v3_response`] decides whether a 3.1.1 CONNACK goes
    /// first (an unknown protocol level, a rejected client id). After it,
    /// MQTT 5.0 clients get a DISCONNECT with the reason code of the error.
    pub(crate) fn handle_decode_error(
        &mut self,
        conn: ConnId,
        version: Option<ProtocolVersion>,
        error: &DecodeError,
        now_ms: u64,
    ) {
        if version.is_some() {
            // The Display form names the fault and its rule, and quotes no
            // payload.
            let ending = Ending::ServerClose(error.reason_code());
            self.end_connection_explained(conn, ending, Some(error.to_string()), now_ms);
            return;
        }
        match error.v3_response() {
            V3Response::ConnAckThenClose { return_code } => {
                let reason = ReasonCode::from_v3_connack(return_code)
                    .unwrap_or(ReasonCode::UnsupportedProtocolVersion);
                self.reject_connect(conn, ProtocolVersion::V3_1_1, reason, now_ms);
            }
            V3Response::Close => self.end_connection(conn, Ending::Rejected, now_ms),
        }
    }

    /// Ends the connection that uses the client id of a new CONNECT:
    /// DISCONNECT 0x8E for MQTT 5.0, then close (MQTT-3.1.4-3). Its will is
    /// published unless the session continues and the will is delayed, since
    /// a new connection to the session cancels a delayed will.
    fn take_over(&mut self, old_conn: ConnId, resume: bool, now_ms: u64) {
        let mut pending_will = None;
        let mut session_continues = false;
        if let Some(client_id) = self.client_id_of(old_conn) {
            if let Some(session) = self.sessions.get_mut(&client_id) {
                // A session that expires at disconnect ends with the old
                // connection, so the new one cannot continue it.
                session_continues = resume && session.expiry_interval > 0;
                pending_will = session.will.take();
                if pending_will.is_some() {
                    let key = RowKey::new(kind::WILL, client_id.as_str(), "");
                    self.store(StoreOp::Delete { key });
                }
            }
        }
        let reason = ReasonCode::SessionTakenOver;
        if self.connections.get(&old_conn).and_then(|c| c.version()) == Some(ProtocolVersion::V5) {
            self.send(
                old_conn,
                &Packet::Disconnect(Disconnect {
                    reason,
                    ..Default::default()
                }),
            );
        }
        self.end_connection(old_conn, Ending::TakenOver, now_ms);

        if let Some(will) = pending_will {
            if !(session_continues && will.delay > 0) {
                self.publish_will(will, now_ms);
            }
        }
    }

    /// Ends the previous session unless the client resumes it. Returns
    /// Session Present: true only when a stored session is resumed
    /// (MQTT-3.2.2-2, MQTT-3.2.2-3).
    fn open_session(&mut self, client_id: &str, resume: bool, now_ms: u64) -> bool {
        if !self.sessions.contains_key(client_id) {
            return false;
        }
        if resume {
            // A new connection cancels a delayed will (MQTT-3.1.3-9).
            let cancelled = self.sessions.get_mut(client_id).and_then(|s| s.will.take());
            if cancelled.is_some() {
                self.store(StoreOp::Delete {
                    key: RowKey::new(kind::WILL, client_id, ""),
                });
            }
            return true;
        }
        self.end_session(client_id, now_ms);
        false
    }

    /// Binds the session to the connection, creating it if needed, and
    /// stores the session with the connection's ACL, and its will.
    fn attach_session(
        &mut self,
        conn: ConnId,
        client_id: &str,
        expiry_interval: u32,
        will: Option<Will>,
        acl: Option<auth::Acl>,
    ) {
        let session = self
            .sessions
            .entry(client_id.to_string())
            .or_insert_with(|| Session::new(client_id.to_string(), expiry_interval));
        session.conn = Some(conn);
        session.expiry_interval = expiry_interval;
        session.disconnected_at_ms = None;
        session.will = will;
        session.acl = acl;

        let value = session::encode_session(session);
        let will_value = session.will.as_ref().map(session::encode_will);
        self.store(StoreOp::Put {
            key: RowKey::new(kind::SESSION, client_id, ""),
            value,
        });
        if let Some(value) = will_value {
            self.store(StoreOp::Put {
                key: RowKey::new(kind::WILL, client_id, ""),
                value,
            });
        }
    }

    /// Computes the session expiry interval the broker grants. Before 5.0,
    /// Clean Session 0 requests a session that never expires. In 5.0 the
    /// Session Expiry Interval property carries the request.
    fn granted_session_expiry(&self, connect: &Connect) -> u32 {
        let requested = match connect.protocol {
            ProtocolVersion::V5 => connect.properties.session_expiry_interval.unwrap_or(0),
            _ if connect.clean_start => 0,
            _ => NEVER_EXPIRES,
        };
        requested.min(self.config.session_expiry_maximum)
    }

    /// Computes the keep alive in force. Only MQTT 5.0 can receive another
    /// value than the requested one, through Server Keep Alive.
    fn granted_keep_alive(&self, connect: &Connect) -> u16 {
        let requested = connect.keep_alive;
        if !connect.protocol.is_v5() {
            return requested;
        }
        if self.config.server_keep_alive > 0 {
            return self.config.server_keep_alive;
        }
        let max = self.config.max_keep_alive;
        if max > 0 && (requested == 0 || requested > max) {
            return max;
        }
        requested
    }

    /// Builds the CONNACK properties that state what this broker supports.
    fn connack_properties(&self, requested_keep_alive: u16, keep_alive: u16) -> Properties {
        let config = &self.config;
        let max_packet_size = u32::try_from(config.max_packet_size).unwrap_or(u32::MAX);
        Properties::from(PropertyValues {
            receive_maximum: Some(config.receive_maximum),
            maximum_qos: (config.max_qos != QoS::ExactlyOnce).then_some(config.max_qos as u8),
            retain_available: Some(u8::from(config.retain_available)),
            maximum_packet_size: Some(max_packet_size),
            topic_alias_maximum: Some(config.topic_alias_maximum),
            wildcard_subscription_available: Some(1),
            subscription_identifier_available: Some(1),
            shared_subscription_available: Some(1),
            server_keep_alive: (keep_alive != requested_keep_alive).then_some(keep_alive),
            ..PropertyValues::default()
        })
    }

    /// Generates a client id for a client that sent an empty one, unique
    /// among the sessions of the namespace.
    fn generate_client_id(&self, conn: ConnId, now_ms: u64) -> String {
        let mut suffix = 0u32;
        loop {
            let candidate = format!("auto-{now_ms:x}-{conn:x}-{suffix}");
            if !self.sessions.contains_key(&candidate) {
                return candidate;
            }
            suffix += 1;
        }
    }

    pub(crate) fn client_id_of(&self, conn: ConnId) -> Option<String> {
        let connection = self.connections.get(&conn)?;
        connection
            .session
            .as_ref()
            .map(|connected| connected.client_id.clone())
    }
}
