//! SUBSCRIBE and UNSUBSCRIBE, and the retained messages a new subscription
//! receives.

use codec::{
    Packet, Properties, PropertyValues, ProtocolVersion, QoS, ReasonCode, RetainHandling, SubAck,
    Subscribe, UnsubAck, Unsubscribe,
};

use crate::problem;
use crate::session::{self, Subscription};
use crate::store::{kind, RowKey, StoreOp};
use crate::topic::{self, ParsedFilter};
use crate::{Broker, ConnId};

impl Broker {
    pub(crate) fn handle_subscribe(&mut self, conn: ConnId, subscribe: Subscribe, now_ms: u64) {
        let Some(client_id) = self.client_id_of(conn) else {
            return;
        };
        let is_v5 =
            self.connections.get(&conn).and_then(|c| c.version()) == Some(ProtocolVersion::V5);
        let identifier = subscribe
            .properties
            .subscription_identifiers
            .first()
            .copied();
        let shared_no_local = subscribe.filters.iter().any(|requested| {
            requested.no_local
                && matches!(
                    topic::parse_filter(&requested.filter),
                    ParsedFilter::Shared(_)
                )
        });
        if shared_no_local {
            // No Local on a shared subscription is a protocol error
            // (MQTT-3.8.3-4).
            let detail = "No Local on a shared subscription (MQTT-3.8.3-4)";
            self.protocol_error(conn, detail, now_ms);
            return;
        }

        let mut reasons = Vec::with_capacity(subscribe.filters.len());
        let mut retained_for = Vec::new();
        for requested in &subscribe.filters {
            let parsed = topic::parse_filter(&requested.filter);
            if parsed == ParsedFilter::Invalid {
                // 3.1.1 has one failure code, 0x80.
                reasons.push(match is_v5 {
                    true => ReasonCode::TopicFilterInvalid,
                    false => ReasonCode::UnspecifiedError,
                });
                continue;
            }
            // A filter is granted only if the ACL covers every topic it can
            // match, so a wildcard cannot widen the allowed set.
            if !self.may_subscribe(&client_id, &requested.filter) {
                log::debug!("connection {conn}: SUBSCRIBE to a filter the ACL does not cover");
                reasons.push(match is_v5 {
                    true => ReasonCode::NotAuthorized,
                    false => ReasonCode::UnspecifiedError,
                });
                continue;
            }
            if self.subscription_limit_reached(&client_id, &requested.filter) {
                log::debug!("connection {conn}: SUBSCRIBE beyond max_subscriptions_per_client");
                reasons.push(match is_v5 {
                    true => ReasonCode::QuotaExceeded,
                    false => ReasonCode::UnspecifiedError,
                });
                continue;
            }
            let subscription = Subscription {
                qos: requested.qos.min(self.config.max_qos),
                no_local: requested.no_local,
                retain_as_published: requested.retain_as_published,
                identifier,
            };
            let filter = requested.filter.to_string();
            let existed = self.add_subscription(&client_id, &filter, subscription);
            reasons.push(granted_reason(subscription.qos));

            // Retained messages go to ordinary subscriptions as Retain
            // Handling requests (MQTT-3.3.1-9 to MQTT-3.3.1-11), and never to
            // shared ones (section 4.8.2 of 5.0).
            let send_retained = match requested.retain_handling {
                RetainHandling::SendAtSubscribe => true,
                RetainHandling::SendIfNew => !existed,
                RetainHandling::DoNotSend => false,
            };
            if let (true, ParsedFilter::Plain(plain)) = (send_retained, parsed) {
                retained_for.push((plain.to_string(), subscription));
            }
        }

        let reason_string = problem::suback_reason_string(&subscribe.filters, &reasons);
        let suback = SubAck {
            pkid: subscribe.pkid,
            reasons,
            properties: Properties::from(PropertyValues {
                reason_string: reason_string.map(Into::into),
                ..PropertyValues::default()
            }),
        };
        self.send(conn, &Packet::SubAck(suback));
        for (filter, subscription) in retained_for {
            self.send_retained(&client_id, &filter, subscription, now_ms);
        }
    }

    /// Adds or replaces a subscription (MQTT-3.8.4-3) and stores it. Returns
    /// whether it existed before.
    fn add_subscription(
        &mut self,
        client_id: &str,
        filter: &str,
        subscription: Subscription,
    ) -> bool {
        let Some(session) = self.sessions.get_mut(client_id) else {
            return false;
        };
        let existed = session
            .subscriptions
            .insert(filter.to_string(), subscription)
            .is_some();
        self.subscription_tree.insert(client_id, filter);
        let value = session::encode_subscription(&subscription);
        self.store(StoreOp::Put {
            key: RowKey::new(kind::SUBSCRIPTION, client_id, filter),
            value,
        });
        existed
    }

    /// Delivers the retained messages matching a new subscription, with the
    /// RETAIN flag set and their own topic (MQTT-3.3.1-8 of 3.1.1).
    fn send_retained(
        &mut self,
        client_id: &str,
        filter: &str,
        subscription: Subscription,
        now_ms: u64,
    ) {
        for mut message in self.retained.matching(filter, now_ms) {
            message.qos = message.qos.min(subscription.qos);
            message.retain = true;
            message.properties.subscription_identifiers =
                subscription.identifier.into_iter().collect();
            self.deliver(client_id, message, now_ms);
        }
    }

    pub(crate) fn handle_unsubscribe(&mut self, conn: ConnId, unsubscribe: Unsubscribe) {
        let Some(client_id) = self.client_id_of(conn) else {
            return;
        };
        let is_v5 =
            self.connections.get(&conn).and_then(|c| c.version()) == Some(ProtocolVersion::V5);
        let mut reasons = Vec::with_capacity(unsubscribe.filters.len());
        for filter in &unsubscribe.filters {
            let removed = self
                .sessions
                .get_mut(&client_id)
                .is_some_and(|session| session.subscriptions.remove(&**filter).is_some());
            self.subscription_tree.remove(&client_id, filter);
            if removed {
                let key = RowKey::new(kind::SUBSCRIPTION, client_id.as_str(), filter.to_string());
                self.store(StoreOp::Delete { key });
            }
            reasons.push(match removed {
                true => ReasonCode::Success,
                false => ReasonCode::NoSubscriptionExisted,
            });
        }
        // UNSUBACK has no reason codes before 5.0.
        if !is_v5 {
            reasons.clear();
        }
        let unsuback = UnsubAck {
            pkid: unsubscribe.pkid,
            reasons,
            properties: Default::default(),
        };
        self.send(conn, &Packet::UnsubAck(unsuback));
    }
}

/// Returns the SUBACK reason code that grants a QoS.
fn granted_reason(qos: QoS) -> ReasonCode {
    match qos {
        QoS::AtMostOnce => ReasonCode::Success,
        QoS::AtLeastOnce => ReasonCode::GrantedQoS1,
        QoS::ExactlyOnce => ReasonCode::GrantedQoS2,
    }
}
