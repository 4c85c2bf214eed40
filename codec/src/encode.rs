//! The encoder: computes the remaining length, then writes the fixed header
//! and the body in one pass into a buffer reserved to the exact size.
//!
//! The encoder trusts its input. Strings and binary fields longer than 65535
//! bytes, a remaining length above 268435455, a PUBLISH whose `pkid` does not
//! match its QoS and AUTH before MQTT 5.0 are caller bugs that debug builds
//! catch with assertions.

use bytes::{BufMut, BytesMut};

use crate::decode::kind;
use crate::packet::*;
use crate::properties::{put_properties, Properties};
use crate::reason::ReasonCode;
use crate::wire::{binary_len, put_binary, put_var_int, var_int_len, VARIABLE_BYTE_INTEGER_MAX};

/// See [`crate::encode`].
pub(crate) fn encode(packet: &Packet, version: ProtocolVersion, out: &mut BytesMut) {
    let v5 = version.is_v5();
    // PUBLISH, SUBSCRIBE and CONNECT, the packets clients send most, skip the
    // general path's three matches on the packet type.
    let remaining_length = match packet {
        Packet::Publish(publish) => return encode_publish(publish, v5, out),
        Packet::Subscribe(subscribe) => {
            let first_byte = kind::SUBSCRIBE << 4 | 0b0010;
            put_fixed_header(out, first_byte, subscribe_len(subscribe, v5));
            return write_subscribe(subscribe, v5, out);
        }
        Packet::Connect(connect) => {
            put_fixed_header(out, kind::CONNECT << 4, connect_len(connect));
            return write_connect(connect, out);
        }
        _ => body_len(packet, version),
    };
    put_fixed_header(out, first_byte(packet), remaining_length);
    write_body(packet, version, out);
}

/// Reserves room for the whole packet, then appends the first byte and the
/// Remaining Length.
#[inline]
fn put_fixed_header(out: &mut BytesMut, first_byte: u8, remaining_length: usize) {
    debug_assert!(remaining_length <= VARIABLE_BYTE_INTEGER_MAX as usize);
    out.reserve(1 + var_int_len(remaining_length) + remaining_length);
    out.put_u8(first_byte);
    put_var_int(out, remaining_length);
}

impl Packet {
    /// The number of bytes [`crate::encode`] writes for this packet, fixed
    /// header included; compare it with the peer's Maximum Packet Size.
    pub fn encoded_len(&self, version: ProtocolVersion) -> usize {
        let remaining_length = body_len(self, version);
        1 + var_int_len(remaining_length) + remaining_length
    }
}

fn first_byte(packet: &Packet) -> u8 {
    let (packet_type, flags) = match packet {
        Packet::Connect(_) => (kind::CONNECT, 0),
        Packet::ConnAck(_) => (kind::CONNACK, 0),
        Packet::Publish(publish) => return publish_first_byte(publish),
        Packet::PubAck(_) => (kind::PUBACK, 0),
        Packet::PubRec(_) => (kind::PUBREC, 0),
        Packet::PubRel(_) => (kind::PUBREL, 0b0010),
        Packet::PubComp(_) => (kind::PUBCOMP, 0),
        Packet::Subscribe(_) => (kind::SUBSCRIBE, 0b0010),
        Packet::SubAck(_) => (kind::SUBACK, 0),
        Packet::Unsubscribe(_) => (kind::UNSUBSCRIBE, 0b0010),
        Packet::UnsubAck(_) => (kind::UNSUBACK, 0),
        Packet::PingReq => (kind::PINGREQ, 0),
        Packet::PingResp => (kind::PINGRESP, 0),
        Packet::Disconnect(_) => (kind::DISCONNECT, 0),
        Packet::Auth(_) => (kind::AUTH, 0),
    };
    packet_type << 4 | flags
}

#[inline]
fn publish_first_byte(publish: &Publish) -> u8 {
    let flags = u8::from(publish.dup) << 3 | (publish.qos as u8) << 1 | u8::from(publish.retain);
    kind::PUBLISH << 4 | flags
}

/// The length of a Property Length field and the properties after it.
fn properties_field_len(properties: &Properties) -> usize {
    let length = properties.encoded_len();
    var_int_len(length) + length
}

fn write_properties(out: &mut BytesMut, properties: &Properties) {
    put_properties(out, properties, properties.encoded_len());
}

/// The shape of an MQTT 5.0 packet whose reason code and properties may be
/// left out when they carry nothing.
#[derive(PartialEq, Eq)]
enum Tail {
    /// Neither reason code nor properties.
    Empty,
    /// The reason code only.
    Reason,
    /// The reason code and the properties.
    Full,
}

fn tail(reason: ReasonCode, properties: &Properties) -> Tail {
    match (reason, properties.is_empty()) {
        (ReasonCode::Success, true) => Tail::Empty,
        (_, true) => Tail::Reason,
        _ => Tail::Full,
    }
}

fn tail_len(reason: ReasonCode, properties: &Properties) -> usize {
    match tail(reason, properties) {
        Tail::Empty => 0,
        Tail::Reason => 1,
        Tail::Full => 1 + properties_field_len(properties),
    }
}

fn write_tail(out: &mut BytesMut, reason: ReasonCode, properties: &Properties) {
    let shape = tail(reason, properties);
    if shape == Tail::Empty {
        return;
    }
    out.put_u8(reason.code());
    if shape == Tail::Full {
        write_properties(out, properties);
    }
}

fn protocol_name(version: ProtocolVersion) -> &'static [u8] {
    match version {
        ProtocolVersion::V3_1 => b"MQIsdp",
        ProtocolVersion::V3_1_1 | ProtocolVersion::V5 => b"MQTT",
    }
}

fn body_len(packet: &Packet, version: ProtocolVersion) -> usize {
    let v5 = version.is_v5();
    let properties_len = |properties: &Properties| {
        if v5 {
            properties_field_len(properties)
        } else {
            0
        }
    };
    match packet {
        Packet::Connect(connect) => connect_len(connect),
        Packet::ConnAck(connack) => 2 + properties_len(&connack.properties),
        Packet::Publish(publish) => {
            let properties_len = if v5 {
                publish.properties.encoded_len()
            } else {
                0
            };
            publish_len(publish, v5, properties_len)
        }
        Packet::PubAck(PubAck {
            reason, properties, ..
        })
        | Packet::PubRec(PubRec {
            reason, properties, ..
        })
        | Packet::PubRel(PubRel {
            reason, properties, ..
        })
        | Packet::PubComp(PubComp {
            reason, properties, ..
        }) => 2 + if v5 { tail_len(*reason, properties) } else { 0 },
        Packet::Subscribe(subscribe) => subscribe_len(subscribe, v5),
        Packet::SubAck(suback) => 2 + properties_len(&suback.properties) + suback.reasons.len(),
        Packet::Unsubscribe(unsubscribe) => {
            let filters: usize = unsubscribe
                .filters
                .iter()
                .map(|filter| binary_len(filter.as_bytes()))
                .sum();
            2 + properties_len(&unsubscribe.properties) + filters
        }
        Packet::UnsubAck(unsuback) if v5 => {
            2 + properties_field_len(&unsuback.properties) + unsuback.reasons.len()
        }
        Packet::UnsubAck(_) => 2,
        Packet::PingReq | Packet::PingResp => 0,
        Packet::Disconnect(disconnect) if v5 => tail_len(disconnect.reason, &disconnect.properties),
        Packet::Disconnect(_) => 0,
        Packet::Auth(auth) => match tail(auth.reason, &auth.properties) {
            Tail::Empty => 0,
            Tail::Reason | Tail::Full => 1 + properties_field_len(&auth.properties),
        },
    }
}

/// Returns the remaining length of PUBLISH, given the length of its property
/// list.
#[inline]
fn publish_len(publish: &Publish, v5: bool, properties_len: usize) -> usize {
    let pkid_len = if publish.qos == QoS::AtMostOnce { 0 } else { 2 };
    let properties_field_len = if v5 {
        var_int_len(properties_len) + properties_len
    } else {
        0
    };
    binary_len(publish.topic.as_bytes()) + pkid_len + properties_field_len + publish.payload.len()
}

fn subscribe_len(subscribe: &Subscribe, v5: bool) -> usize {
    let filters: usize = subscribe
        .filters
        .iter()
        .map(|filter| binary_len(filter.filter.as_bytes()) + 1)
        .sum();
    let properties_len = if v5 {
        properties_field_len(&subscribe.properties)
    } else {
        0
    };
    2 + properties_len + filters
}

fn connect_len(connect: &Connect) -> usize {
    let version = connect.protocol;
    let v5 = version.is_v5();
    let mut length = binary_len(protocol_name(version)) + 1 + 1 + 2;
    if v5 {
        length += properties_field_len(&connect.properties);
    }
    length += binary_len(connect.client_id.as_bytes());
    if let Some(will) = &connect.will {
        if v5 {
            length += properties_field_len(&will.properties);
        }
        length += binary_len(will.topic.as_bytes()) + binary_len(&will.payload);
    }
    if let Some(username) = &connect.username {
        length += binary_len(username.as_bytes());
    }
    if let Some(password) = &connect.password {
        length += binary_len(password);
    }
    length
}

fn write_body(packet: &Packet, version: ProtocolVersion, out: &mut BytesMut) {
    let v5 = version.is_v5();
    match packet {
        Packet::Connect(connect) => write_connect(connect, out),
        Packet::ConnAck(connack) => write_connack(connack, version, out),
        Packet::Publish(publish) => {
            let properties_len = if v5 {
                publish.properties.encoded_len()
            } else {
                0
            };
            write_publish(publish, v5, properties_len, out)
        }
        Packet::PubAck(PubAck {
            pkid,
            reason,
            properties,
        })
        | Packet::PubRec(PubRec {
            pkid,
            reason,
            properties,
        })
        | Packet::PubRel(PubRel {
            pkid,
            reason,
            properties,
        })
        | Packet::PubComp(PubComp {
            pkid,
            reason,
            properties,
        }) => {
            out.put_u16(pkid.get());
            if v5 {
                write_tail(out, *reason, properties);
            }
        }
        Packet::Subscribe(subscribe) => write_subscribe(subscribe, v5, out),
        Packet::SubAck(suback) => {
            out.put_u16(suback.pkid.get());
            if v5 {
                write_properties(out, &suback.properties);
                out.extend(suback.reasons.iter().map(|reason| reason.code()));
            } else {
                out.extend(suback.reasons.iter().map(|reason| reason.to_v3_suback()));
            }
        }
        Packet::Unsubscribe(unsubscribe) => {
            out.put_u16(unsubscribe.pkid.get());
            if v5 {
                write_properties(out, &unsubscribe.properties);
            }
            for filter in &unsubscribe.filters {
                put_binary(out, filter.as_bytes());
            }
        }
        Packet::UnsubAck(unsuback) => {
            out.put_u16(unsuback.pkid.get());
            if v5 {
                write_properties(out, &unsuback.properties);
                out.extend(unsuback.reasons.iter().map(|reason| reason.code()));
            }
        }
        Packet::PingReq | Packet::PingResp => {}
        Packet::Disconnect(disconnect) => {
            if v5 {
                write_tail(out, disconnect.reason, &disconnect.properties);
            }
        }
        Packet::Auth(auth) => {
            debug_assert!(v5, "AUTH exists only in MQTT 5.0");
            if tail(auth.reason, &auth.properties) != Tail::Empty {
                out.put_u8(auth.reason.code());
                write_properties(out, &auth.properties);
            }
        }
    }
}

fn write_connect(connect: &Connect, out: &mut BytesMut) {
    let version = connect.protocol;
    let v5 = version.is_v5();
    put_binary(out, protocol_name(version));
    out.put_u8(version.level());

    let mut flags = u8::from(connect.username.is_some()) << 7
        | u8::from(connect.password.is_some()) << 6
        | u8::from(connect.clean_start) << 1;
    if let Some(will) = &connect.will {
        flags |= u8::from(will.retain) << 5 | (will.qos as u8) << 3 | 0b100;
    }
    out.put_u8(flags);
    out.put_u16(connect.keep_alive);
    if v5 {
        write_properties(out, &connect.properties);
    }

    put_binary(out, connect.client_id.as_bytes());
    if let Some(will) = &connect.will {
        if v5 {
            write_properties(out, &will.properties);
        }
        put_binary(out, will.topic.as_bytes());
        put_binary(out, &will.payload);
    }
    if let Some(username) = &connect.username {
        put_binary(out, username.as_bytes());
    }
    if let Some(password) = &connect.password {
        put_binary(out, password);
    }
}

fn write_connack(connack: &ConnAck, version: ProtocolVersion, out: &mut BytesMut) {
    // MQTT 3.1 has no Session Present flag.
    let session_present = connack.session_present && version != ProtocolVersion::V3_1;
    out.put_u8(u8::from(session_present));
    if version.is_v5() {
        out.put_u8(connack.reason.code());
        write_properties(out, &connack.properties);
    } else {
        out.put_u8(connack.reason.to_v3_connack());
    }
}

/// Appends PUBLISH. Below 128 bytes of remaining length, the fixed header
/// and the topic length take one write instead of four.
fn encode_publish(publish: &Publish, v5: bool, out: &mut BytesMut) {
    let properties_len = if v5 {
        publish.properties.encoded_len()
    } else {
        0
    };
    let remaining_length = publish_len(publish, v5, properties_len);
    let first_byte = publish_first_byte(publish);
    let topic = publish.topic.as_bytes();
    match (u8::try_from(remaining_length), u8::try_from(topic.len())) {
        // The topic is part of the remaining length, so it is shorter too.
        (Ok(length @ 0..=127), Ok(topic_len)) => {
            out.reserve(2 + remaining_length);
            out.put_slice(&[first_byte, length, 0, topic_len]);
            out.put_slice(topic);
        }
        _ => {
            put_fixed_header(out, first_byte, remaining_length);
            put_binary(out, topic);
        }
    }
    write_publish_after_topic(publish, v5, properties_len, out);
}

/// Appends the body of PUBLISH, given the length of its property list.
#[inline]
fn write_publish(publish: &Publish, v5: bool, properties_len: usize, out: &mut BytesMut) {
    put_binary(out, publish.topic.as_bytes());
    write_publish_after_topic(publish, v5, properties_len, out);
}

/// Appends the packet identifier, the properties and the payload of PUBLISH.
#[inline]
fn write_publish_after_topic(
    publish: &Publish,
    v5: bool,
    properties_len: usize,
    out: &mut BytesMut,
) {
    if publish.qos != QoS::AtMostOnce {
        debug_assert!(publish.pkid.is_some(), "PUBLISH with QoS > 0 needs a pkid");
        out.put_u16(publish.pkid.map_or(0, |pkid| pkid.get()));
    }
    if v5 {
        put_properties(out, &publish.properties, properties_len);
    }
    out.put_slice(&publish.payload);
}

fn write_subscribe(subscribe: &Subscribe, v5: bool, out: &mut BytesMut) {
    out.put_u16(subscribe.pkid.get());
    if v5 {
        write_properties(out, &subscribe.properties);
    }
    for filter in &subscribe.filters {
        put_binary(out, filter.filter.as_bytes());
        let mut options = filter.qos as u8;
        if v5 {
            options |= u8::from(filter.no_local) << 2
                | u8::from(filter.retain_as_published) << 3
                | (filter.retain_handling as u8) << 4;
        }
        out.put_u8(options);
    }
}
