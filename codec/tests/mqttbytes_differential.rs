//! Differential test against mqttbytes 0.6 (its `v4` module for 3.1.1 and
//! `v5` for 5.0). For bytes that both decoders accept, every field must
//! agree. The bytes come from this codec's encoder over generated packets,
//! and from the same bytes with one byte changed.
//!
//! Where the two differ by design, the comparison maps one form to the other:
//! - mqttbytes uses pkid 0 for QoS 0 PUBLISH; this codec uses `None`.
//! - mqttbytes represents absent properties as `None`, and a CONNECT without
//!   user name and password as `login: None`.
//! - mqttbytes reads the password as a UTF-8 `String`. MQTT defines it as
//!   binary data, which this codec keeps as `Bytes`.
//! - mqttbytes maps SUBACK QoS codes to its own enum; this codec to reason
//!   codes.
//! - mqttbytes accepts packets this codec rejects (wildcards in topic names,
//!   reserved flag bits, unknown properties, ...), so a mutated packet that
//!   only mqttbytes accepts is not compared. The reverse also happens:
//!   mqttbytes 0.6 rejects a 5.0 DISCONNECT with no body, which the
//!   specification allows, and has no AUTH packet and no MQTT 3.1.
//! - mqttbytes 0.6 can panic on some malformed input; such a panic counts as
//!   a rejection here.

mod common;

use std::panic::{catch_unwind, AssertUnwindSafe};

use codec::*;
use common::generate::any_packet;
use common::*;
use mqttbytes::{v4, v5};
use proptest::prelude::*;

use ProtocolVersion::{V3_1_1, V5};

type Check = Result<(), TestCaseError>;

/// Unwraps mqttbytes' optional properties. When they are `None`, checks that
/// this codec decoded no properties either and returns from the calling
/// function, so properties must be compared last.
macro_rules! their_properties {
    ($ours:expr, $theirs:expr) => {
        match &$theirs {
            Some(properties) => properties.clone(),
            None => {
                prop_assert!($ours.is_empty(), "only this codec has properties");
                return Ok(());
            }
        }
    };
}

fn users(properties: &[(ByteString, ByteString)]) -> Vec<(String, String)> {
    properties
        .iter()
        .map(|(name, value)| (name.to_string(), value.to_string()))
        .collect()
}

fn text(value: &Option<ByteString>) -> Option<String> {
    value.as_ref().map(|value| value.to_string())
}

fn qos_code(qos: mqttbytes::QoS) -> u8 {
    qos as u8
}

/// Decodes with mqttbytes v4; a panic counts as a rejection.
fn theirs_v4(bytes: &[u8]) -> Option<v4::Packet> {
    let mut buf = BytesMut::from(bytes);
    catch_unwind(AssertUnwindSafe(|| v4::read(&mut buf, usize::MAX).ok())).unwrap_or(None)
}

fn theirs_v5(bytes: &[u8]) -> Option<v5::Packet> {
    let mut buf = BytesMut::from(bytes);
    catch_unwind(AssertUnwindSafe(|| v5::read(&mut buf, usize::MAX).ok())).unwrap_or(None)
}

fn compare_v4(ours: &Packet, theirs: &v4::Packet) -> Check {
    match (ours, theirs) {
        (Packet::Connect(a), v4::Packet::Connect(b)) => {
            prop_assert_eq!(b.protocol, mqttbytes::Protocol::V4);
            prop_assert_eq!(a.keep_alive, b.keep_alive);
            prop_assert_eq!(&a.client_id[..], b.client_id.as_str());
            prop_assert_eq!(a.clean_start, b.clean_session);
            prop_assert_eq!(a.will.is_some(), b.last_will.is_some());
            if let (Some(will), Some(last_will)) = (&a.will, &b.last_will) {
                prop_assert_eq!(&will.topic[..], last_will.topic.as_str());
                prop_assert_eq!(&will.payload, &last_will.message);
                prop_assert_eq!(will.qos as u8, qos_code(last_will.qos));
                prop_assert_eq!(will.retain, last_will.retain);
            }
            let username = a.username.as_deref().unwrap_or_default();
            let password = a.password.as_deref().unwrap_or_default();
            let (their_username, their_password) = match &b.login {
                Some(login) => (login.username.as_str(), login.password.as_bytes()),
                None => ("", &b""[..]),
            };
            prop_assert_eq!(username, their_username);
            prop_assert_eq!(password, their_password);
        }
        (Packet::ConnAck(a), v4::Packet::ConnAck(b)) => {
            prop_assert_eq!(a.session_present, b.session_present);
            prop_assert_eq!(a.reason.to_v3_connack(), b.code as u8);
        }
        (Packet::Publish(a), v4::Packet::Publish(b)) => {
            prop_assert_eq!(a.dup, b.dup);
            prop_assert_eq!(a.qos as u8, qos_code(b.qos));
            prop_assert_eq!(a.retain, b.retain);
            prop_assert_eq!(&a.topic[..], b.topic.as_str());
            prop_assert_eq!(a.pkid.map_or(0, |pkid| pkid.get()), b.pkid);
            prop_assert_eq!(&a.payload, &b.payload);
        }
        (Packet::PubAck(a), v4::Packet::PubAck(b)) => prop_assert_eq!(a.pkid.get(), b.pkid),
        (Packet::PubRec(a), v4::Packet::PubRec(b)) => prop_assert_eq!(a.pkid.get(), b.pkid),
        (Packet::PubRel(a), v4::Packet::PubRel(b)) => prop_assert_eq!(a.pkid.get(), b.pkid),
        (Packet::PubComp(a), v4::Packet::PubComp(b)) => prop_assert_eq!(a.pkid.get(), b.pkid),
        (Packet::Subscribe(a), v4::Packet::Subscribe(b)) => {
            prop_assert_eq!(a.pkid.get(), b.pkid);
            let ours: Vec<_> = a
                .filters
                .iter()
                .map(|filter| (filter.filter.to_string(), filter.qos as u8))
                .collect();
            let theirs: Vec<_> = b
                .filters
                .iter()
                .map(|filter| (filter.path.clone(), qos_code(filter.qos)))
                .collect();
            prop_assert_eq!(ours, theirs);
        }
        (Packet::SubAck(a), v4::Packet::SubAck(b)) => {
            prop_assert_eq!(a.pkid.get(), b.pkid);
            let ours: Vec<u8> = a
                .reasons
                .iter()
                .map(|reason| reason.to_v3_suback())
                .collect();
            let theirs: Vec<u8> = b
                .return_codes
                .iter()
                .map(|code| match code {
                    v4::SubscribeReasonCode::Success(qos) => qos_code(*qos),
                    v4::SubscribeReasonCode::Failure => 0x80,
                })
                .collect();
            prop_assert_eq!(ours, theirs);
        }
        (Packet::Unsubscribe(a), v4::Packet::Unsubscribe(b)) => {
            prop_assert_eq!(a.pkid.get(), b.pkid);
            let ours: Vec<String> = a.filters.iter().map(|filter| filter.to_string()).collect();
            prop_assert_eq!(ours, b.topics.clone());
        }
        (Packet::UnsubAck(a), v4::Packet::UnsubAck(b)) => prop_assert_eq!(a.pkid.get(), b.pkid),
        (Packet::PingReq, v4::Packet::PingReq)
        | (Packet::PingResp, v4::Packet::PingResp)
        | (Packet::Disconnect(_), v4::Packet::Disconnect) => {}
        (ours, theirs) => prop_assert!(false, "different packets: {ours:?} / {theirs:?}"),
    }
    Ok(())
}

fn compare_v5(ours: &Packet, theirs: &v5::Packet) -> Check {
    match (ours, theirs) {
        (Packet::Connect(a), v5::Packet::Connect(b)) => compare_connect_v5(a, b)?,
        (Packet::ConnAck(a), v5::Packet::ConnAck(b)) => {
            prop_assert_eq!(a.session_present, b.session_present);
            prop_assert_eq!(a.reason.code(), b.code as u8);
            let p = &a.properties;
            let q = their_properties!(a.properties, b.properties);
            prop_assert_eq!(p.session_expiry_interval, q.session_expiry_interval);
            prop_assert_eq!(p.receive_maximum, q.receive_max);
            prop_assert_eq!(p.maximum_qos, q.max_qos);
            prop_assert_eq!(p.retain_available, q.retain_available);
            prop_assert_eq!(p.maximum_packet_size, q.max_packet_size);
            prop_assert_eq!(
                text(&p.assigned_client_identifier),
                q.assigned_client_identifier
            );
            prop_assert_eq!(p.topic_alias_maximum, q.topic_alias_max);
            prop_assert_eq!(text(&p.reason_string), q.reason_string);
            prop_assert_eq!(users(&p.user_properties), q.user_properties);
            let wildcard = p.wildcard_subscription_available;
            prop_assert_eq!(wildcard, q.wildcard_subscription_available);
            let identifiers = p.subscription_identifier_available;
            prop_assert_eq!(identifiers, q.subscription_identifiers_available);
            let shared = p.shared_subscription_available;
            prop_assert_eq!(shared, q.shared_subscription_available);
            prop_assert_eq!(p.server_keep_alive, q.server_keep_alive);
            prop_assert_eq!(text(&p.response_information), q.response_information);
            prop_assert_eq!(text(&p.server_reference), q.server_reference);
            prop_assert_eq!(text(&p.authentication_method), q.authentication_method);
            prop_assert_eq!(&p.authentication_data, &q.authentication_data);
        }
        (Packet::Publish(a), v5::Packet::Publish(b)) => {
            prop_assert_eq!(a.dup, b.dup);
            prop_assert_eq!(a.qos as u8, qos_code(b.qos));
            prop_assert_eq!(a.retain, b.retain);
            prop_assert_eq!(&a.topic[..], b.topic.as_str());
            prop_assert_eq!(a.pkid.map_or(0, |pkid| pkid.get()), b.pkid);
            prop_assert_eq!(&a.payload, &b.payload);
            let p = &a.properties;
            let q = their_properties!(a.properties, b.properties);
            prop_assert_eq!(p.payload_format_indicator, q.payload_format_indicator);
            prop_assert_eq!(p.message_expiry_interval, q.message_expiry_interval);
            prop_assert_eq!(p.topic_alias, q.topic_alias);
            prop_assert_eq!(text(&p.response_topic), q.response_topic);
            prop_assert_eq!(&p.correlation_data, &q.correlation_data);
            prop_assert_eq!(users(&p.user_properties), q.user_properties);
            let ids: Vec<usize> = p
                .subscription_identifiers
                .iter()
                .map(|id| *id as usize)
                .collect();
            prop_assert_eq!(ids, q.subscription_identifiers);
            prop_assert_eq!(text(&p.content_type), q.content_type);
        }
        (Packet::PubAck(a), v5::Packet::PubAck(b)) => {
            let q = their_properties!(a.properties, b.properties);
            compare_ack(a.pkid, a.reason, b.pkid, b.reason as u8)?;
            prop_assert_eq!(text(&a.properties.reason_string), q.reason_string);
            prop_assert_eq!(users(&a.properties.user_properties), q.user_properties);
        }
        (Packet::PubRec(a), v5::Packet::PubRec(b)) => {
            let q = their_properties!(a.properties, b.properties);
            compare_ack(a.pkid, a.reason, b.pkid, b.reason as u8)?;
            prop_assert_eq!(text(&a.properties.reason_string), q.reason_string);
            prop_assert_eq!(users(&a.properties.user_properties), q.user_properties);
        }
        (Packet::PubRel(a), v5::Packet::PubRel(b)) => {
            let q = their_properties!(a.properties, b.properties);
            compare_ack(a.pkid, a.reason, b.pkid, b.reason as u8)?;
            prop_assert_eq!(text(&a.properties.reason_string), q.reason_string);
            prop_assert_eq!(users(&a.properties.user_properties), q.user_properties);
        }
        (Packet::PubComp(a), v5::Packet::PubComp(b)) => {
            let q = their_properties!(a.properties, b.properties);
            compare_ack(a.pkid, a.reason, b.pkid, b.reason as u8)?;
            prop_assert_eq!(text(&a.properties.reason_string), q.reason_string);
            prop_assert_eq!(users(&a.properties.user_properties), q.user_properties);
        }
        (Packet::Subscribe(a), v5::Packet::Subscribe(b)) => {
            prop_assert_eq!(a.pkid.get(), b.pkid);
            prop_assert_eq!(a.filters.len(), b.filters.len());
            for (ours, theirs) in a.filters.iter().zip(&b.filters) {
                prop_assert_eq!(&ours.filter[..], theirs.path.as_str());
                prop_assert_eq!(ours.qos as u8, qos_code(theirs.qos));
                prop_assert_eq!(ours.no_local, theirs.nolocal);
                prop_assert_eq!(ours.retain_as_published, theirs.preserve_retain);
                let handling = theirs.retain_forward_rule.clone() as u8;
                prop_assert_eq!(ours.retain_handling as u8, handling);
            }
            let q = their_properties!(a.properties, b.properties);
            let id = a.properties.subscription_identifiers.first();
            prop_assert_eq!(id.map(|id| *id as usize), q.id);
            prop_assert_eq!(users(&a.properties.user_properties), q.user_properties);
        }
        (Packet::SubAck(a), v5::Packet::SubAck(b)) => {
            prop_assert_eq!(a.pkid.get(), b.pkid);
            let ours: Vec<u8> = a.reasons.iter().map(|reason| reason.code()).collect();
            let theirs: Vec<u8> = b.return_codes.iter().map(|code| *code as u8).collect();
            prop_assert_eq!(ours, theirs);
            let q = their_properties!(a.properties, b.properties);
            prop_assert_eq!(text(&a.properties.reason_string), q.reason_string);
            prop_assert_eq!(users(&a.properties.user_properties), q.user_properties);
        }
        (Packet::Unsubscribe(a), v5::Packet::Unsubscribe(b)) => {
            prop_assert_eq!(a.pkid.get(), b.pkid);
            let ours: Vec<String> = a.filters.iter().map(|filter| filter.to_string()).collect();
            prop_assert_eq!(ours, b.filters.clone());
            let q = their_properties!(a.properties, b.properties);
            prop_assert_eq!(users(&a.properties.user_properties), q.user_properties);
        }
        (Packet::UnsubAck(a), v5::Packet::UnsubAck(b)) => {
            prop_assert_eq!(a.pkid.get(), b.pkid);
            let ours: Vec<u8> = a.reasons.iter().map(|reason| reason.code()).collect();
            let theirs: Vec<u8> = b.reasons.iter().map(|reason| *reason as u8).collect();
            prop_assert_eq!(ours, theirs);
            let q = their_properties!(a.properties, b.properties);
            prop_assert_eq!(text(&a.properties.reason_string), q.reason_string);
            prop_assert_eq!(users(&a.properties.user_properties), q.user_properties);
        }
        (Packet::Disconnect(a), v5::Packet::Disconnect(b)) => {
            prop_assert_eq!(a.reason.code(), b.reason_code as u8);
            let p = &a.properties;
            let q = their_properties!(a.properties, b.properties);
            prop_assert_eq!(p.session_expiry_interval, q.session_expiry_interval);
            prop_assert_eq!(text(&p.reason_string), q.reason_string);
            prop_assert_eq!(users(&p.user_properties), q.user_properties);
            prop_assert_eq!(text(&p.server_reference), q.server_reference);
        }
        (Packet::PingReq, v5::Packet::PingReq) | (Packet::PingResp, v5::Packet::PingResp) => {}
        (ours, theirs) => prop_assert!(false, "different packets: {ours:?} / {theirs:?}"),
    }
    Ok(())
}

fn compare_ack(pkid: PacketId, reason: ReasonCode, their_pkid: u16, their_reason: u8) -> Check {
    prop_assert_eq!(pkid.get(), their_pkid);
    prop_assert_eq!(reason.code(), their_reason);
    Ok(())
}

fn compare_connect_v5(a: &Connect, b: &v5::Connect) -> Check {
    prop_assert_eq!(b.protocol, mqttbytes::Protocol::V5);
    prop_assert_eq!(a.keep_alive, b.keep_alive);
    prop_assert_eq!(&a.client_id[..], b.client_id.as_str());
    prop_assert_eq!(a.clean_start, b.clean_session);

    let username = a.username.as_deref().unwrap_or_default();
    let password = a.password.as_deref().unwrap_or_default();
    let (their_username, their_password) = match &b.login {
        Some(login) => (login.username.as_str(), login.password.as_bytes()),
        None => ("", &b""[..]),
    };
    prop_assert_eq!(username, their_username);
    prop_assert_eq!(password, their_password);

    prop_assert_eq!(a.will.is_some(), b.last_will.is_some());
    if let (Some(will), Some(last_will)) = (&a.will, &b.last_will) {
        compare_will_v5(will, last_will)?;
    }

    let p = &a.properties;
    let q = their_properties!(a.properties, b.properties);
    prop_assert_eq!(p.session_expiry_interval, q.session_expiry_interval);
    prop_assert_eq!(p.receive_maximum, q.receive_maximum);
    prop_assert_eq!(p.maximum_packet_size, q.max_packet_size);
    prop_assert_eq!(p.topic_alias_maximum, q.topic_alias_max);
    prop_assert_eq!(p.request_response_information, q.request_response_info);
    prop_assert_eq!(p.request_problem_information, q.request_problem_info);
    prop_assert_eq!(users(&p.user_properties), q.user_properties);
    prop_assert_eq!(text(&p.authentication_method), q.authentication_method);
    prop_assert_eq!(&p.authentication_data, &q.authentication_data);
    Ok(())
}

fn compare_will_v5(will: &LastWill, last_will: &v5::LastWill) -> Check {
    prop_assert_eq!(&will.topic[..], last_will.topic.as_str());
    prop_assert_eq!(&will.payload, &last_will.message);
    prop_assert_eq!(will.qos as u8, qos_code(last_will.qos));
    prop_assert_eq!(will.retain, last_will.retain);
    let p = &will.properties;
    let q = their_properties!(will.properties, last_will.properties);
    prop_assert_eq!(p.will_delay_interval, q.delay_interval);
    prop_assert_eq!(p.payload_format_indicator, q.payload_format_indicator);
    prop_assert_eq!(p.message_expiry_interval, q.message_expiry_interval);
    prop_assert_eq!(text(&p.content_type), q.content_type);
    prop_assert_eq!(text(&p.response_topic), q.response_topic);
    prop_assert_eq!(&p.correlation_data, &q.correlation_data);
    prop_assert_eq!(users(&p.user_properties), q.user_properties);
    Ok(())
}

/// Decodes `bytes` with both decoders and compares the fields where both
/// accept. Returns whether both accepted.
fn differential(bytes: &[u8], version: ProtocolVersion) -> Result<bool, TestCaseError> {
    let mut buf = BytesMut::from(bytes);
    let Ok(Some(ours)) = decode(&mut buf, Some(version), NO_LIMIT) else {
        return Ok(false);
    };
    if version == V5 {
        let Some(theirs) = theirs_v5(bytes) else {
            return Ok(false);
        };
        compare_v5(&ours, &theirs)?;
    } else {
        let Some(theirs) = theirs_v4(bytes) else {
            return Ok(false);
        };
        compare_v4(&ours, &theirs)?;
    }
    Ok(true)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn same_fields_as_mqttbytes_v4(packet in any_packet(V3_1_1)) {
        let bytes = encode_vec(&packet, V3_1_1);
        differential(&bytes, V3_1_1)?;
    }

    #[test]
    fn same_fields_as_mqttbytes_v5(packet in any_packet(V5)) {
        let bytes = encode_vec(&packet, V5);
        differential(&bytes, V5)?;
    }

    #[test]
    fn same_fields_as_mqttbytes_v4_after_mutation(
        packet in any_packet(V3_1_1),
        position in any::<prop::sample::Index>(),
        byte in any::<u8>(),
    ) {
        let mut bytes = encode_vec(&packet, V3_1_1);
        let index = position.index(bytes.len());
        bytes[index] = byte;
        differential(&bytes, V3_1_1)?;
    }

    #[test]
    fn same_fields_as_mqttbytes_v5_after_mutation(
        packet in any_packet(V5),
        position in any::<prop::sample::Index>(),
        byte in any::<u8>(),
    ) {
        let mut bytes = encode_vec(&packet, V5);
        let index = position.index(bytes.len());
        bytes[index] = byte;
        differential(&bytes, V5)?;
    }
}

/// Guards against a differential test that compares nothing: most valid
/// 3.1.1 and 5.0 packets must be accepted by both decoders.
#[test]
fn both_decoders_accept_common_packets() {
    let v4_packets: [&[u8]; 5] = [
        b"\x10\x0d\x00\x04MQTT\x04\x02\x00\x3c\x00\x01a",
        b"\x3b\x07\x00\x01t\x00\x0ahi",
        b"\x82\x0e\x00\x01\x00\x03a/#\x01\x00\x03+/b\x02",
        b"\x90\x05\x00\x01\x00\x02\x80",
        b"\x40\x02\x00\x01",
    ];
    for bytes in v4_packets {
        let accepted = differential(bytes, V3_1_1).unwrap();
        assert!(accepted, "{bytes:?}");
    }
    let v5_packets: [&[u8]; 5] = [
        b"\x10\x0e\x00\x04MQTT\x05\x02\x00\x3c\x00\x00\x01a",
        b"\x34\x0d\x00\x01t\x00\x0b\x05\x01\x01\x23\x00\x05hi",
        b"\x82\x0b\x00\x01\x02\x0b\x07\x00\x03a/#\x2d",
        b"\x20\x08\x00\x00\x05\x22\x00\x0a\x24\x01",
        b"\xe0\x06\x04\x04\x1f\x00\x01x",
    ];
    for bytes in v5_packets {
        let accepted = differential(bytes, V5).unwrap();
        assert!(accepted, "{bytes:?}");
    }
}

/// Guards against generated packets that mqttbytes mostly rejects, which
/// would leave the property tests above comparing little.
#[test]
fn most_generated_packets_are_compared() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;

    for version in [V3_1_1, V5] {
        let mut runner = TestRunner::deterministic();
        let strategy = any_packet(version);
        let total = 500;
        let mut compared = 0;
        for _ in 0..total {
            let packet = strategy.new_tree(&mut runner).unwrap().current();
            let bytes = encode_vec(&packet, version);
            if differential(&bytes, version).unwrap() {
                compared += 1;
            }
        }
        println!("{version:?}: {compared} of {total} packets compared");
        assert!(
            compared * 2 > total,
            "{version:?}: only {compared} of {total} compared"
        );
    }
}
