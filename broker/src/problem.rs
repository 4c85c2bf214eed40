//! Reason Strings on the packets the broker sends with an error reason code,
//! and the rules that decide when one may go: Request Problem Information
//! and the client's Maximum Packet Size.

use codec::{
    Connect, Packet, Properties, PropertyValues, ProtocolVersion, Publish, ReasonCode,
    SubscribeFilter,
};

use crate::{topic, Config};

/// The limits a client sets on the Reason Strings the broker sends it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ProblemLimits {
    /// The CONNECT's Request Problem Information: when false, only CONNACK
    /// and DISCONNECT may carry a Reason String (MQTT-3.1.2-29).
    pub request_problem_information: bool,
    /// The client's Maximum Packet Size, if it set one.
    pub maximum_packet_size: Option<u32>,
}

/// Sets, keeps or removes the Reason String of a packet the broker is about
/// to send. A packet with an error reason code (0x80 or above) gets
/// `describe` of its code when it has no Reason String yet. The Reason String
/// is removed when the packet has no error code, and when the client set
/// Request Problem Information to 0 and the packet is not CONNACK or
/// DISCONNECT. It is also removed when it would make the packet exceed the
/// client's Maximum Packet Size (MQTT-3.2.2-19, MQTT-3.4.2-2, MQTT-3.14.2-3
/// and the same rule for every other acknowledgement). Before MQTT 5.0
/// packets have no properties, so the packet is left as it is.
pub(crate) fn explain(packet: &mut Packet, version: ProtocolVersion, limits: ProblemLimits) {
    if !version.is_v5() {
        return;
    }
    let always_allowed = matches!(packet, Packet::ConnAck(_) | Packet::Disconnect(_));
    let Some((reason, properties)) = error_and_properties(packet) else {
        return;
    };
    let allowed = reason.is_some() && (always_allowed || limits.request_problem_information);
    if !allowed {
        properties.reason_string = None;
        return;
    }
    if properties.reason_string.is_none() {
        if let Some(reason) = reason {
            properties.reason_string = Some(describe(reason).into());
        }
    }
    // A UTF-8 string property contains at most 65535 bytes.
    let too_long = properties
        .reason_string
        .as_ref()
        .is_some_and(|text| text.len() > usize::from(u16::MAX));
    let limit = limits
        .maximum_packet_size
        .map_or(usize::MAX, |max| max as usize);
    if too_long || packet.encoded_len(version) > limit {
        if let Some((_, properties)) = error_and_properties(packet) {
            properties.reason_string = None;
        }
    }
}

/// Returns the first error reason code of a packet the broker sends, if it
/// has one, and the packet's properties. `None` for packets with no reason
/// code.
fn error_and_properties(packet: &mut Packet) -> Option<(Option<ReasonCode>, &mut Properties)> {
    let first_error = |reasons: &[ReasonCode]| reasons.iter().copied().find(|r| r.is_error());
    let (reason, properties) = match packet {
        Packet::ConnAck(ack) => (Some(ack.reason), &mut ack.properties),
        Packet::PubAck(ack) => (Some(ack.reason), &mut ack.properties),
        Packet::PubRec(ack) => (Some(ack.reason), &mut ack.properties),
        Packet::PubRel(ack) => (Some(ack.reason), &mut ack.properties),
        Packet::PubComp(ack) => (Some(ack.reason), &mut ack.properties),
        Packet::Disconnect(disconnect) => (Some(disconnect.reason), &mut disconnect.properties),
        Packet::SubAck(ack) => (first_error(&ack.reasons), &mut ack.properties),
        Packet::UnsubAck(ack) => (first_error(&ack.reasons), &mut ack.properties),
        _ => return None,
    };
    Some((reason.filter(|r| r.is_error()), properties))
}

/// Wraps an optional Reason String in otherwise empty properties.
pub(crate) fn with_reason_string(reason_string: Option<String>) -> Properties {
    Properties::from(PropertyValues {
        reason_string: reason_string.map(Into::into),
        ..PropertyValues::default()
    })
}

/// Builds the Reason String of a PUBACK or PUBREC 0x87 for a PUBLISH the
/// client may not send.
pub(crate) fn publish_denial(topic_name: &str) -> String {
    match topic::is_system_topic(topic_name) {
        true => "PUBLISH to $SYS topics is not allowed".to_string(),
        false => format!("not authorized to publish to {topic_name}"),
    }
}

/// Builds the Reason String of the DISCONNECT for a Topic Alias that
/// `resolve_topic_alias` rejected with `reason`.
pub(crate) fn topic_alias_problem(reason: ReasonCode, alias: Option<u16>, maximum: u16) -> String {
    let alias = alias.unwrap_or(0);
    match reason {
        ReasonCode::TopicAliasInvalid if alias == 0 => {
            "topic alias 0 is invalid (MQTT-3.3.2-8)".to_string()
        }
        ReasonCode::TopicAliasInvalid => {
            format!("topic alias {alias} exceeds the Topic Alias Maximum {maximum} (MQTT-3.3.2-9)")
        }
        _ => format!("topic alias {alias} is not set, so the topic name must not be empty"),
    }
}

/// Builds the Reason String of the CONNACK for a CONNECT that
/// `check_connect` rejected with `reason`.
pub(crate) fn connect_problem(reason: ReasonCode, connect: &Connect, config: &Config) -> String {
    let will = connect.will.as_ref();
    match (reason, will) {
        (ReasonCode::TopicNameInvalid, Some(will)) => {
            format!("will topic {} is invalid", will.topic)
        }
        (ReasonCode::QoSNotSupported, Some(will)) => format!(
            "will QoS {} exceeds the Maximum QoS {} (MQTT-3.2.2-12)",
            will.qos as u8, config.max_qos as u8
        ),
        (ReasonCode::RetainNotSupported, Some(_)) => {
            "retained wills are not supported because Retain Available is 0".to_string()
        }
        _ => describe(reason).to_string(),
    }
}

/// Builds the Reason String of the DISCONNECT for a PUBLISH that
/// `check_publish` rejected with `reason`.
pub(crate) fn publish_problem(reason: ReasonCode, publish: &Publish, config: &Config) -> String {
    match reason {
        ReasonCode::TopicNameInvalid => format!("topic name {} is invalid", publish.topic),
        ReasonCode::QoSNotSupported => format!(
            "QoS {} exceeds the Maximum QoS {} (MQTT-3.2.2-11)",
            publish.qos as u8, config.max_qos as u8
        ),
        ReasonCode::RetainNotSupported => {
            "RETAIN set although Retain Available is 0 (MQTT-3.2.2-14)".to_string()
        }
        ReasonCode::ProtocolError if !publish.properties.subscription_identifiers.is_empty() => {
            "PUBLISH from a client must not contain a Subscription Identifier (MQTT-3.3.4-6)"
                .to_string()
        }
        _ => describe(reason).to_string(),
    }
}

/// Builds the Reason String of a SUBACK: one clause per rejected filter, in
/// order. `None` when every filter was granted.
pub(crate) fn suback_reason_string(
    filters: &[SubscribeFilter],
    reasons: &[ReasonCode],
) -> Option<String> {
    let clauses: Vec<String> = filters
        .iter()
        .zip(reasons)
        .filter(|(_, reason)| reason.is_error())
        .map(|(requested, &reason)| (&requested.filter, reason))
        .map(|(filter, reason)| match reason {
            ReasonCode::TopicFilterInvalid => format!("topic filter {filter} is invalid"),
            ReasonCode::NotAuthorized => format!("not authorized to subscribe to {filter}"),
            _ => format!("{} for {filter}", describe(reason)),
        })
        .collect();
    (!clauses.is_empty()).then(|| clauses.join("; "))
}

/// Describes an error reason code in one short sentence, for packets whose
/// sender gave no more specific Reason String.
pub(crate) fn describe(reason: ReasonCode) -> &'static str {
    match reason {
        ReasonCode::MalformedPacket => "malformed packet",
        ReasonCode::ProtocolError => "protocol error",
        ReasonCode::ImplementationSpecificError => "implementation specific error",
        ReasonCode::UnsupportedProtocolVersion => "unsupported protocol version",
        ReasonCode::ClientIdentifierNotValid => "client identifier not valid",
        ReasonCode::BadUserNameOrPassword => "bad user name or password",
        ReasonCode::NotAuthorized => "not authorized",
        ReasonCode::ServerUnavailable => "server unavailable",
        ReasonCode::ServerBusy => "server busy",
        ReasonCode::Banned => "client banned",
        ReasonCode::ServerShuttingDown => "server shutting down",
        ReasonCode::BadAuthenticationMethod => {
            "extended authentication is not supported, so CONNECT must not set an \
             Authentication Method"
        }
        ReasonCode::KeepAliveTimeout => {
            "no packet within one and a half keep alive periods (MQTT-3.1.2-22)"
        }
        ReasonCode::SessionTakenOver => {
            "another connection used this client identifier (MQTT-3.1.4-3)"
        }
        ReasonCode::TopicFilterInvalid => "topic filter invalid",
        ReasonCode::TopicNameInvalid => "topic name invalid",
        ReasonCode::PacketIdentifierInUse => "packet identifier in use",
        ReasonCode::PacketIdentifierNotFound => "packet identifier not found",
        ReasonCode::ReceiveMaximumExceeded => {
            "more unacknowledged QoS 2 messages than the broker's Receive Maximum (MQTT-3.3.4-7)"
        }
        ReasonCode::TopicAliasInvalid => "topic alias invalid",
        ReasonCode::PacketTooLarge => "packet exceeds the maximum packet size",
        ReasonCode::MessageRateTooHigh => "message rate too high",
        ReasonCode::QuotaExceeded => "quota exceeded",
        ReasonCode::AdministrativeAction => "disconnected by an administrator",
        ReasonCode::PayloadFormatInvalid => "payload format invalid",
        ReasonCode::RetainNotSupported => "retained messages are not supported",
        ReasonCode::QoSNotSupported => "QoS not supported",
        ReasonCode::SharedSubscriptionsNotSupported => "shared subscriptions are not supported",
        ReasonCode::ConnectionRateExceeded => "connection rate exceeded",
        ReasonCode::SubscriptionIdentifiersNotSupported => {
            "subscription identifiers are not supported"
        }
        ReasonCode::WildcardSubscriptionsNotSupported => "wildcard subscriptions are not supported",
        _ => "unspecified error",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use codec::{PacketId, PubAck};

    fn limits(request_problem_information: bool, max: Option<u32>) -> ProblemLimits {
        ProblemLimits {
            request_problem_information,
            maximum_packet_size: max,
        }
    }

    fn not_authorized_puback() -> Packet {
        Packet::PubAck(PubAck {
            reason: ReasonCode::NotAuthorized,
            ..PubAck::new(PacketId::MIN)
        })
    }

    fn reason_string(packet: &Packet) -> Option<String> {
        match packet {
            Packet::PubAck(ack) => ack.properties.reason_string.as_ref().map(|s| s.to_string()),
            _ => None,
        }
    }

    #[test]
    fn error_puback_gets_default_description() {
        let mut packet = not_authorized_puback();
        explain(&mut packet, ProtocolVersion::V5, limits(true, None));
        assert_eq!(reason_string(&packet).as_deref(), Some("not authorized"));
    }

    #[test]
    fn success_puback_loses_reason_string() {
        let mut packet = Packet::PubAck(PubAck::new(PacketId::MIN));
        if let Packet::PubAck(ack) = &mut packet {
            ack.properties.reason_string = Some("fine".into());
        }
        explain(&mut packet, ProtocolVersion::V5, limits(true, None));
        assert_eq!(reason_string(&packet), None);
    }

    #[test]
    fn oversized_reason_string_left_out() {
        let mut packet = not_authorized_puback();
        explain(&mut packet, ProtocolVersion::V5, limits(true, Some(20)));
        assert_eq!(reason_string(&packet), None);
        assert!(packet.encoded_len(ProtocolVersion::V5) <= 20);
    }

    #[test]
    fn string_over_65535_bytes_left_out() {
        let mut packet = not_authorized_puback();
        if let Packet::PubAck(ack) = &mut packet {
            ack.properties.reason_string = Some("x".repeat(70_000).into());
        }
        explain(&mut packet, ProtocolVersion::V5, limits(true, None));
        assert_eq!(reason_string(&packet), None);
    }
}
