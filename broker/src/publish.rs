//! PUBLISH in both directions: checks on received messages, routing to
//! subscribers, in-flight windows, queues and acknowledgements.

use std::collections::BTreeMap;

use bytes::BytesMut;
use codec::{Packet, PacketId, PubAck, PubComp, PubRec, PubRel, Publish, QoS, ReasonCode};

use crate::lifecycle::Ending;
use crate::message::Message;
use crate::metrics::DropReason;
use crate::problem;
use crate::session::{self, Inflight, InflightState};
use crate::store::{kind, RowKey, StoreOp};
use crate::topic::{self, ParsedFilter};
use crate::{Broker, ConnId};

/// One session that receives a routed message, and how.
#[derive(Clone)]
struct Target {
    client_id: String,
    qos: QoS,
    retain_as_published: bool,
    identifiers: Vec<u32>,
}

impl Broker {
    pub(crate) fn handle_publish(&mut self, conn: ConnId, mut publish: Publish, now_ms: u64) {
        let Some(client_id) = self.client_id_of(conn) else {
            return;
        };
        let alias = publish.properties.topic_alias;
        if let Err(reason) = self.resolve_topic_alias(conn, &mut publish) {
            log::debug!("connection {conn}: invalid topic alias, closing with {reason:?}");
            let maximum = self.config.topic_alias_maximum;
            let detail = problem::topic_alias_problem(reason, alias, maximum);
            self.end_connection_explained(conn, Ending::ServerClose(reason), Some(detail), now_ms);
            return;
        }
        if let Err(reason) = self.check_publish(&publish) {
            log::debug!("connection {conn}: PUBLISH rejected with {reason:?}");
            let detail = problem::publish_problem(reason, &publish, &self.config);
            self.end_connection_explained(conn, Ending::ServerClose(reason), Some(detail), now_ms);
            return;
        }

        let incoming_qos2 = self.sessions.get(&client_id).map(|s| &s.incoming_qos2);
        let pkid = publish.pkid;
        if let (QoS::ExactlyOnce, Some(id)) = (publish.qos, pkid) {
            let pending = incoming_qos2.map_or(0, |set| set.len());
            if incoming_qos2.is_some_and(|set| set.contains(&id.get())) {
                // A resent QoS 2 PUBLISH before PUBREL: acknowledge again
                // but do not deliver twice (MQTT-4.3.3-10).
                self.send(conn, &Packet::PubRec(PubRec::new(id)));
                return;
            }
            if pending >= usize::from(self.config.receive_maximum) {
                // The client sent more than Receive Maximum unacknowledged
                // QoS 2 messages (MQTT-3.3.4-7).
                log::debug!("connection {conn}: more than Receive Maximum QoS 2 messages");
                let reason = ReasonCode::ReceiveMaximumExceeded;
                self.end_connection(conn, Ending::ServerClose(reason), now_ms);
                return;
            }
        }

        // A message outside the session's ACL, or under $SYS, is acknowledged
        // with Not Authorized (0x87) in 5.0 and dropped silently before: it
        // reaches no subscriber and is not retained.
        let authorized = self.may_publish(&client_id, &publish.topic);
        if !authorized {
            log::debug!("connection {conn}: PUBLISH to a topic the client may not use, dropped");
        }
        let reason = match authorized {
            true => ReasonCode::Success,
            false => ReasonCode::NotAuthorized,
        };
        let denial = (!authorized).then(|| problem::publish_denial(&publish.topic));
        let qos = publish.qos;
        if authorized {
            self.metrics.count_received(qos, publish.payload.len());
            let message = Message::from_publish(publish, now_ms);
            self.route(Some(&client_id), message, now_ms);
        }

        match (qos, pkid) {
            (QoS::AtLeastOnce, Some(id)) => {
                let ack = PubAck {
                    reason,
                    properties: problem::with_reason_string(denial),
                    ..PubAck::new(id)
                };
                self.send(conn, &Packet::PubAck(ack));
            }
            (QoS::ExactlyOnce, Some(id)) => {
                if authorized {
                    self.store(StoreOp::Put {
                        key: RowKey::new(kind::INCOMING_QOS2, client_id.as_str(), id.to_string()),
                        value: Default::default(),
                    });
                    if let Some(session) = self.sessions.get_mut(&client_id) {
                        session.incoming_qos2.insert(id.get());
                    }
                }
                let rec = PubRec {
                    reason,
                    properties: problem::with_reason_string(denial),
                    ..PubRec::new(id)
                };
                self.send(conn, &Packet::PubRec(rec));
            }
            _ => {}
        }
    }

    /// Replaces a Topic Alias with its topic, or records a new alias
    /// (section 3.3.2.3.4 of 5.0). Aliases are never forwarded.
    fn resolve_topic_alias(
        &mut self,
        conn: ConnId,
        publish: &mut Publish,
    ) -> Result<(), ReasonCode> {
        let alias = publish.properties.values_mut();
        let Some(alias) = alias.and_then(|values| values.topic_alias.take()) else {
            return Ok(());
        };
        // Alias 0 or above the maximum the broker sent is an error
        // (MQTT-3.3.2-8, MQTT-3.3.2-9).
        if alias == 0 || alias > self.config.topic_alias_maximum {
            return Err(ReasonCode::TopicAliasInvalid);
        }
        let Some(connected) = self
            .connections
            .get_mut(&conn)
            .and_then(|c| c.session.as_mut())
        else {
            return Err(ReasonCode::ProtocolError);
        };
        if publish.topic.is_empty() {
            let topic = connected
                .topic_aliases
                .get(&alias)
                .ok_or(ReasonCode::ProtocolError)?;
            publish.topic = topic.clone();
        } else {
            connected.topic_aliases.insert(alias, publish.topic.clone());
        }
        Ok(())
    }

    fn check_publish(&self, publish: &Publish) -> Result<(), ReasonCode> {
        if !topic::valid_topic_name(&publish.topic) {
            return Err(ReasonCode::TopicNameInvalid);
        }
        if publish.qos > self.config.max_qos {
            return Err(ReasonCode::QoSNotSupported);
        }
        if publish.retain && !self.config.retain_available {
            return Err(ReasonCode::RetainNotSupported);
        }
        if !publish.properties.subscription_identifiers.is_empty() {
            // Only the server adds Subscription Identifiers (MQTT-3.3.4-6).
            return Err(ReasonCode::ProtocolError);
        }
        Ok(())
    }

    /// Stores a retained message if it is one, then delivers it to every
    /// matching subscription. `origin` is the publishing client, for No
    /// Local.
    pub(crate) fn route(&mut self, origin: Option<&str>, message: Message, now_ms: u64) {
        self.observe(&message);
        if message.retain && self.config.retain_available {
            let op = self.retained.set(&message);
            self.store(op);
        }
        for target in self.match_targets(origin, &message.topic) {
            let mut delivery = message.clone();
            delivery.qos = message.qos.min(target.qos);
            // Without Retain As Published the flag is cleared when
            // forwarding (MQTT-3.3.1-12); 3.1.1 always clears it.
            delivery.retain = message.retain && target.retain_as_published;
            if !target.identifiers.is_empty() {
                delivery.properties.subscription_identifiers = target.identifiers;
            } else if let Some(values) = delivery.properties.values_mut() {
                values.subscription_identifiers.clear();
            }
            self.deliver(&target.client_id, delivery, now_ms);
        }
    }

    /// Lists the sessions a message goes to: one delivery per session for its
    /// ordinary subscriptions, at the highest QoS among them with every
    /// Subscription Identifier, and one per shared subscription group.
    fn match_targets(&mut self, origin: Option<&str>, topic_name: &str) -> Vec<Target> {
        let mut targets: BTreeMap<String, Target> = BTreeMap::new();
        let mut groups: BTreeMap<(String, String), Vec<Target>> = BTreeMap::new();
        for (client_id, filter) in self.subscription_tree.matches(topic_name) {
            let subscription = self
                .sessions
                .get(&client_id)
                .and_then(|session| session.subscriptions.get(&filter));
            let Some(subscription) = subscription else {
                continue;
            };
            let target = Target {
                client_id: client_id.clone(),
                qos: subscription.qos,
                retain_as_published: subscription.retain_as_published,
                identifiers: subscription.identifier.into_iter().collect(),
            };
            match topic::parse_filter(&filter) {
                ParsedFilter::Plain(_) => {
                    if subscription.no_local && origin == Some(client_id.as_str()) {
                        continue;
                    }
                    match targets.get_mut(&client_id) {
                        Some(merged) => {
                            merged.qos = merged.qos.max(target.qos);
                            merged.retain_as_published |= target.retain_as_published;
                            merged.identifiers.extend(target.identifiers);
                        }
                        None => {
                            targets.insert(client_id, target);
                        }
                    }
                }
                ParsedFilter::Shared(shared) => {
                    let group = (shared.group.to_string(), shared.filter.to_string());
                    groups.entry(group).or_default().push(target);
                }
                ParsedFilter::Invalid => {}
            }
        }

        let mut chosen = Vec::new();
        for (_, members) in groups {
            // Prefer members that are online; rotate among them.
            let online: Vec<Target> = members
                .iter()
                .filter(|t| {
                    self.sessions
                        .get(&t.client_id)
                        .is_some_and(|s| s.conn.is_some())
                })
                .cloned()
                .collect();
            let candidates = if online.is_empty() { members } else { online };
            let index = self.shared_cursor % candidates.len().max(1);
            if let Some(target) = candidates.into_iter().nth(index) {
                chosen.push(target);
            }
        }
        self.shared_cursor = self.shared_cursor.wrapping_add(1);
        targets.into_values().chain(chosen).collect()
    }

    /// Delivers one message to one session: sent at once when the session is
    /// online and its in-flight window has room, queued otherwise.
    pub(crate) fn deliver(&mut self, client_id: &str, message: Message, now_ms: u64) {
        let Some(session) = self.sessions.get(client_id) else {
            return;
        };
        // Retained and `$SYS` messages, and messages for subscriptions made
        // under an earlier token, can match a filter the ACL does not cover.
        if !session.may_receive(&message.topic) {
            return;
        }
        let Some(conn) = session.conn else {
            if message.qos != QoS::AtMostOnce || self.config.queue_qos0 {
                self.enqueue(client_id, message);
            }
            return;
        };
        if message.qos == QoS::AtMostOnce {
            self.send_publish(conn, &message, None, false, now_ms);
            return;
        }
        let window_full = session.inflight.len() >= self.inflight_limit(conn);
        if window_full || !session.queue.is_empty() {
            // Behind queued messages, to keep the order.
            self.enqueue(client_id, message);
            self.drain_queue(client_id, now_ms);
            return;
        }
        let sequence = self
            .sessions
            .get_mut(client_id)
            .map_or(0, |s| s.take_sequence());
        self.start_inflight(client_id, conn, sequence, message, false, now_ms);
    }

    /// Most QoS 1 and 2 messages in flight to a connection: the broker's
    /// limit and the client's Receive Maximum (MQTT-3.3.4-9).
    fn inflight_limit(&self, conn: ConnId) -> usize {
        let client_limit = self
            .connections
            .get(&conn)
            .and_then(|c| c.session.as_ref())
            .map_or(u16::MAX, |connected| connected.receive_maximum);
        usize::from(self.config.max_inflight.min(client_limit))
    }

    /// Queues a message for a session, or drops it when the queue is full.
    /// The newest message is the one dropped, so the queue keeps its order.
    fn enqueue(&mut self, client_id: &str, message: Message) {
        let Some(session) = self.sessions.get_mut(client_id) else {
            return;
        };
        let full = session.queue.len() >= self.config.max_queued_messages
            || session.queued_bytes + message.size() > self.config.max_queued_bytes;
        if full {
            log::debug!("session {client_id}: queue full, message dropped");
            self.dropped_messages += 1;
            self.metrics.count_drop(DropReason::QueueFull);
            return;
        }
        let sequence = session.take_sequence();
        let value = session::encode_queued(&message);
        session.push_queue(sequence, message);
        let key = RowKey::new(kind::MESSAGE, client_id, sequence_name(sequence));
        self.store(StoreOp::Put { key, value });
    }

    /// Gives a message a packet id, stores it as in flight and sends it.
    /// `queued` tells whether the message has a queue row to replace.
    ///
    /// Only sessions that outlive their connection store in-flight messages:
    /// a session that ends with its connection never resends them, and
    /// skipping the rows saves two row writes per delivery.
    fn start_inflight(
        &mut self,
        client_id: &str,
        conn: ConnId,
        sequence: u64,
        message: Message,
        queued: bool,
        now_ms: u64,
    ) {
        let key = RowKey::new(kind::MESSAGE, client_id, sequence_name(sequence));
        let stored = self
            .sessions
            .get(client_id)
            .is_some_and(|session| session.expiry_interval > 0);
        let Some(pkid) = self
            .sessions
            .get_mut(client_id)
            .and_then(|s| s.take_packet_id())
        else {
            // Every packet id is in flight, which the in-flight limit (at
            // most 65 535) prevents.
            self.dropped_messages += 1;
            self.metrics.count_drop(DropReason::NoPacketId);
            if queued {
                self.store(StoreOp::Delete { key });
            }
            return;
        };
        let Some(bytes) = self.encode_publish_for(conn, &message, Some(pkid), false, now_ms) else {
            // Too big for the client: dropped as if sent (MQTT-3.1.2-25).
            self.dropped_messages += 1;
            self.metrics.count_drop(DropReason::PacketTooLarge);
            if queued {
                self.store(StoreOp::Delete { key });
            }
            return;
        };
        let (message_qos, payload_len) = (message.qos, message.payload.len());
        let inflight = Inflight {
            pkid,
            state: InflightState::Published,
            message: Some(message),
            stored,
        };
        if stored {
            let value = session::encode_inflight(&inflight);
            self.store(StoreOp::Put { key, value });
        } else if queued {
            self.store(StoreOp::Delete { key });
        }
        if let Some(session) = self.sessions.get_mut(client_id) {
            session.inflight.insert(sequence, inflight);
        }
        self.metrics.count_sent(message_qos, payload_len);
        self.send_bytes(conn, bytes);
    }

    /// Sends queued messages while the in-flight window has room, dropping
    /// those that expired on the way (MQTT-3.3.2-5).
    pub(crate) fn drain_queue(&mut self, client_id: &str, now_ms: u64) {
        loop {
            let Some(session) = self.sessions.get(client_id) else {
                return;
            };
            let Some(conn) = session.conn else {
                return;
            };
            if session.inflight.len() >= self.inflight_limit(conn) {
                return;
            }
            let Some((sequence, message)) =
                self.sessions.get_mut(client_id).and_then(|s| s.pop_queue())
            else {
                return;
            };
            // The session's ACL may have changed since the message was queued.
            let allowed = self
                .sessions
                .get(client_id)
                .is_some_and(|s| s.may_receive(&message.topic));
            if !allowed {
                let key = RowKey::new(kind::MESSAGE, client_id, sequence_name(sequence));
                self.store(StoreOp::Delete { key });
                continue;
            }
            if message.is_expired(now_ms) || message.qos == QoS::AtMostOnce {
                let key = RowKey::new(kind::MESSAGE, client_id, sequence_name(sequence));
                self.store(StoreOp::Delete { key });
                match message.is_expired(now_ms) {
                    true => self.metrics.count_drop(DropReason::Expired),
                    false => self.send_publish(conn, &message, None, false, now_ms),
                }
                continue;
            }
            self.start_inflight(client_id, conn, sequence, message, true, now_ms);
        }
    }

    /// Sends again, in their original order, the messages the client has not
    /// acknowledged: PUBLISH with DUP set and the same packet id, or PUBREL
    /// (MQTT-4.4.0-1).
    pub(crate) fn resend_inflight(&mut self, client_id: &str, now_ms: u64) {
        let Some(session) = self.sessions.get(client_id) else {
            return;
        };
        let Some(conn) = session.conn else {
            return;
        };
        let pending: Vec<(u64, Inflight)> = session
            .inflight
            .iter()
            .map(|(&sequence, inflight)| (sequence, inflight.clone()))
            .collect();
        for (sequence, inflight) in pending {
            match (inflight.state, inflight.message) {
                (InflightState::Published, Some(message)) => {
                    if self.drop_unreceivable(client_id, sequence, &message.topic) {
                        continue;
                    }
                    self.send_publish(conn, &message, Some(inflight.pkid), true, now_ms);
                }
                _ => self.send(conn, &Packet::PubRel(PubRel::new(inflight.pkid))),
            }
        }
    }

    /// Drops an in-flight message that the session's ACL, replaced by a new
    /// connection's token, no longer lets it receive. Returns whether it did.
    fn drop_unreceivable(&mut self, client_id: &str, sequence: u64, topic_name: &str) -> bool {
        let Some(session) = self.sessions.get_mut(client_id) else {
            return false;
        };
        if session.may_receive(topic_name) {
            return false;
        }
        let stored = session
            .inflight
            .remove(&sequence)
            .is_some_and(|entry| entry.stored);
        if stored {
            let key = RowKey::new(kind::MESSAGE, client_id, sequence_name(sequence));
            self.store(StoreOp::Delete { key });
        }
        true
    }

    /// Encodes a PUBLISH for a connection; `None` when it exceeds the
    /// client's Maximum Packet Size.
    fn encode_publish_for(
        &self,
        conn: ConnId,
        message: &Message,
        pkid: Option<PacketId>,
        dup: bool,
        now_ms: u64,
    ) -> Option<bytes::Bytes> {
        let connected = self.connections.get(&conn)?.session.as_ref()?;
        let publish = message.to_publish(pkid, dup, now_ms);
        let mut bytes = BytesMut::new();
        codec::encode(&Packet::Publish(publish), connected.version, &mut bytes);
        let limit = connected
            .maximum_packet_size
            .map_or(usize::MAX, |max| max as usize);
        (bytes.len() <= limit).then(|| bytes.freeze())
    }

    fn send_publish(
        &mut self,
        conn: ConnId,
        message: &Message,
        pkid: Option<PacketId>,
        dup: bool,
        now_ms: u64,
    ) {
        match self.encode_publish_for(conn, message, pkid, dup, now_ms) {
            Some(bytes) => {
                self.metrics.count_sent(message.qos, message.payload.len());
                self.send_bytes(conn, bytes);
            }
            None => {
                self.dropped_messages += 1;
                self.metrics.count_drop(DropReason::PacketTooLarge);
            }
        }
    }

    pub(crate) fn handle_puback(&mut self, conn: ConnId, pkid: PacketId, now_ms: u64) {
        self.complete_inflight(conn, pkid, InflightState::Published, now_ms);
    }

    pub(crate) fn handle_pubcomp(&mut self, conn: ConnId, pkid: PacketId, now_ms: u64) {
        self.complete_inflight(conn, pkid, InflightState::Released, now_ms);
    }

    /// Ends the flow of an in-flight message and fills the window from the
    /// queue. An acknowledgement for an unknown packet id is ignored.
    fn complete_inflight(
        &mut self,
        conn: ConnId,
        pkid: PacketId,
        expected: InflightState,
        now_ms: u64,
    ) {
        let Some(client_id) = self.client_id_of(conn) else {
            return;
        };
        let Some(session) = self.sessions.get_mut(&client_id) else {
            return;
        };
        let Some(sequence) = session.find_inflight(pkid) else {
            log::debug!("connection {conn}: acknowledgement for unknown packet id {pkid}");
            return;
        };
        if session.inflight.get(&sequence).map(|entry| entry.state) != Some(expected) {
            log::debug!("connection {conn}: acknowledgement out of order for packet id {pkid}");
            return;
        }
        let stored = session
            .inflight
            .remove(&sequence)
            .is_some_and(|entry| entry.stored);
        if stored {
            let key = RowKey::new(kind::MESSAGE, client_id.as_str(), sequence_name(sequence));
            self.store(StoreOp::Delete { key });
        }
        self.drain_queue(&client_id, now_ms);
    }

    /// PUBREC for an outgoing QoS 2 message: store the released state and
    /// send PUBREL. A PUBREC with an error code ends the flow (5.0).
    pub(crate) fn handle_pubrec(&mut self, conn: ConnId, rec: PubRec, now_ms: u64) {
        let Some(client_id) = self.client_id_of(conn) else {
            return;
        };
        let Some(session) = self.sessions.get_mut(&client_id) else {
            return;
        };
        let Some(sequence) = session.find_inflight(rec.pkid) else {
            let reason = ReasonCode::PacketIdentifierNotFound;
            let pkid = rec.pkid;
            let detail = format!("PUBREC for packet identifier {pkid}, which is not in flight");
            let rel = PubRel {
                reason,
                properties: problem::with_reason_string(Some(detail)),
                ..PubRel::new(rec.pkid)
            };
            self.send(conn, &Packet::PubRel(rel));
            return;
        };
        if rec.reason.is_error() {
            self.complete_inflight(conn, rec.pkid, InflightState::Published, now_ms);
            return;
        }
        let Some(entry) = session.inflight.get_mut(&sequence) else {
            return;
        };
        entry.state = InflightState::Released;
        entry.message = None;
        if entry.stored {
            let value = session::encode_inflight(entry);
            let key = RowKey::new(kind::MESSAGE, client_id.as_str(), sequence_name(sequence));
            self.store(StoreOp::Put { key, value });
        }
        self.send(conn, &Packet::PubRel(PubRel::new(rec.pkid)));
    }

    /// PUBREL for an incoming QoS 2 message: forget its packet id and send
    /// PUBCOMP, with 0x92 if the id was unknown (5.0).
    pub(crate) fn handle_pubrel(&mut self, conn: ConnId, pkid: PacketId) {
        let Some(client_id) = self.client_id_of(conn) else {
            return;
        };
        let known = self
            .sessions
            .get_mut(&client_id)
            .is_some_and(|session| session.incoming_qos2.remove(&pkid.get()));
        let reason = match known {
            true => {
                let key = RowKey::new(kind::INCOMING_QOS2, client_id, pkid.to_string());
                self.store(StoreOp::Delete { key });
                ReasonCode::Success
            }
            false => ReasonCode::PacketIdentifierNotFound,
        };
        let detail = (!known)
            .then(|| format!("PUBREL for packet identifier {pkid}, which is not awaiting release"));
        let comp = PubComp {
            reason,
            properties: problem::with_reason_string(detail),
            ..PubComp::new(pkid)
        };
        self.send(conn, &Packet::PubComp(comp));
    }
}

/// Formats the row name of a queued or in-flight message: its sequence
/// number, zero-padded so that names sort in sending order.
pub(crate) fn sequence_name(sequence: u64) -> String {
    format!("{sequence:020}")
}
