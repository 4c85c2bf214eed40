//! The streaming decoder: the fixed header first, then the packet body.
//!
//! The fixed header alone decides whether a packet is acceptable so far
//! (type, flags, size), so a bad or oversized packet is rejected before its
//! body is buffered. The body is then parsed with `nom` from a frozen slice of
//! the input buffer, and every string and payload shares that slice. The one
//! exception is the topic of a PUBLISH that fills the whole buffer, which is
//! copied because that costs less than making the buffer shared (see
//! [`publish`]). PUBLISH, the packet decoded most often, is read with plain
//! slice operations instead of `nom`.

use std::num::NonZeroU16;

use bytes::{Buf, Bytes, BytesMut};
use bytestring::ByteString;
use nom::number::complete::{be_u16, be_u8};

use crate::error::DecodeError;
use crate::packet::*;
use crate::properties::{read_properties, Properties, PropertyContext};
use crate::reason::{ReasonCode, ReasonKind};
use crate::scan::is_plain_ascii_topic;
use crate::topic::{split_shared, valid_topic_filter, SHARED_PREFIX};
use crate::wire::{
    binary, fail, into_error, length_prefixed, not_utf8, past_end, read_var_int,
    split_length_prefixed, split_u16, string, to_str, Res, VarInt, REMAINING_LENGTH_RULE,
};

/// Control packet types, the high nibble of the first byte.
pub(crate) mod kind {
    pub const CONNECT: u8 = 1;
    pub const CONNACK: u8 = 2;
    pub const PUBLISH: u8 = 3;
    pub const PUBACK: u8 = 4;
    pub const PUBREC: u8 = 5;
    pub const PUBREL: u8 = 6;
    pub const PUBCOMP: u8 = 7;
    pub const SUBSCRIBE: u8 = 8;
    pub const SUBACK: u8 = 9;
    pub const UNSUBSCRIBE: u8 = 10;
    pub const UNSUBACK: u8 = 11;
    pub const PINGREQ: u8 = 12;
    pub const PINGRESP: u8 = 13;
    pub const DISCONNECT: u8 = 14;
    pub const AUTH: u8 = 15;
}

/// See [`crate::decode`].
pub(crate) fn decode(
    buf: &mut BytesMut,
    version: Option<ProtocolVersion>,
    max_packet_size: usize,
) -> Result<Option<Packet>, DecodeError> {
    let Some(&first) = buf.first() else {
        return Ok(None);
    };
    let packet_type = first >> 4;
    let flags = first & 0x0F;
    check_type(packet_type, version)?;
    check_flags(packet_type, flags)?;

    let length_bytes = buf.get(1..).unwrap_or_default();
    let (remaining_length, length_len) = match read_var_int(length_bytes)? {
        VarInt::Complete(value, length) => (value as usize, length),
        VarInt::Incomplete => return Ok(None),
    };
    let header_len = 1 + length_len;
    // At most 5 + 268435455, far from overflowing.
    let size = header_len + remaining_length;
    if size > max_packet_size {
        return Err(DecodeError::PacketTooLarge {
            size,
            max: max_packet_size,
        });
    }
    if buf.len() < size {
        return Ok(None);
    }

    let (body, body_owned) = take_body(buf, header_len, remaining_length);
    let version = version.unwrap_or(ProtocolVersion::V5);
    if packet_type == kind::PUBLISH {
        return publish(body, body_owned, flags, version.is_v5());
    }
    decode_body(packet_type, flags, &body, version)
}

/// Removes the packet of `header_len + remaining_length` bytes from the
/// front of `buf` and returns its body, and whether the body is the only
/// handle to its memory.
///
/// When the packet fills `buf` to its capacity, the body takes over the whole
/// allocation. That leaves `buf` empty, with nothing it could still have
/// written to, and saves the allocation and the reference count updates that
/// splitting a shared buffer costs.
fn take_body(buf: &mut BytesMut, header_len: usize, remaining_length: usize) -> (Bytes, bool) {
    let size = header_len + remaining_length;
    if buf.len() == size && buf.capacity() == size {
        let mut body = std::mem::take(buf).freeze();
        body.advance(header_len);
        return (body, true);
    }
    buf.advance(header_len);
    (buf.split_to(remaining_length).freeze(), false)
}

/// Accepts only CONNECT before the version is known (MQTT-3.1.0-1), and
/// rejects the reserved type 0 and AUTH before MQTT 5.0.
fn check_type(packet_type: u8, version: Option<ProtocolVersion>) -> Result<(), DecodeError> {
    let Some(version) = version else {
        if packet_type == kind::CONNECT {
            return Ok(());
        }
        return Err(DecodeError::FirstPacketNotConnect);
    };
    if packet_type == 0 {
        return Err(DecodeError::Malformed {
            rule: "section 2.1.2",
            detail: "packet type 0 is reserved",
        });
    }
    if packet_type == kind::AUTH && !version.is_v5() {
        return Err(DecodeError::Malformed {
            rule: "section 2.1.2",
            detail: "packet type 15 is reserved before MQTT 5.0",
        });
    }
    Ok(())
}

/// Checks the four flag bits of the fixed header (MQTT-2.1.3-1), including
/// the QoS and DUP bits of PUBLISH.
fn check_flags(packet_type: u8, flags: u8) -> Result<(), DecodeError> {
    let (expected, rule) = match packet_type {
        kind::PUBLISH => return check_publish_flags(flags),
        kind::PUBREL => (0b0010, "MQTT-3.6.1-1"),
        kind::SUBSCRIBE => (0b0010, "MQTT-3.8.1-1"),
        kind::UNSUBSCRIBE => (0b0010, "MQTT-3.10.1-1"),
        kind::DISCONNECT => (0, "MQTT-3.14.1-1"),
        kind::AUTH => (0, "MQTT-3.15.1-1"),
        _ => (0, "MQTT-2.1.3-1"),
    };
    if flags != expected {
        return Err(DecodeError::Malformed {
            rule,
            detail: "reserved fixed header flags have the wrong value",
        });
    }
    Ok(())
}

fn check_publish_flags(flags: u8) -> Result<(), DecodeError> {
    let qos = (flags >> 1) & 0b11;
    if qos == 3 {
        return Err(DecodeError::Malformed {
            rule: "MQTT-3.3.1-4",
            detail: "PUBLISH has QoS 3",
        });
    }
    if qos == 0 && flags & 0b1000 != 0 {
        return Err(DecodeError::Malformed {
            rule: "MQTT-3.3.1-2",
            detail: "PUBLISH has DUP set with QoS 0",
        });
    }
    Ok(())
}

/// Decodes the body of every packet type but PUBLISH.
// Packet is about 1 KB, so the body decoders build it in its final place:
// every move of it costs a copy of the whole enum. Kept out of line so that
// the PUBLISH path does not carry this function's large stack frame.
#[inline(never)]
fn decode_body(
    packet_type: u8,
    flags: u8,
    body: &Bytes,
    version: ProtocolVersion,
) -> Result<Option<Packet>, DecodeError> {
    let input = body.as_ref();
    let v5 = version.is_v5();
    let packet = match packet_type {
        kind::CONNECT => Packet::Connect(parse_all(connect(body, input))?),
        kind::CONNACK => Packet::ConnAck(parse_all(connack(body, input, version))?),
        kind::PUBACK => {
            let (pkid, reason, properties) = parse_all(ack(
                body,
                input,
                v5,
                ReasonKind::PubAckOrPubRec,
                "MQTT-3.4.2-1",
            ))?;
            Packet::PubAck(PubAck {
                pkid,
                reason,
                properties,
            })
        }
        kind::PUBREC => {
            let (pkid, reason, properties) = parse_all(ack(
                body,
                input,
                v5,
                ReasonKind::PubAckOrPubRec,
                "MQTT-3.5.2-1",
            ))?;
            Packet::PubRec(PubRec {
                pkid,
                reason,
                properties,
            })
        }
        kind::PUBREL => {
            let (pkid, reason, properties) = parse_all(ack(
                body,
                input,
                v5,
                ReasonKind::PubRelOrPubComp,
                "MQTT-3.6.2-1",
            ))?;
            Packet::PubRel(PubRel {
                pkid,
                reason,
                properties,
            })
        }
        kind::PUBCOMP => {
            let (pkid, reason, properties) = parse_all(ack(
                body,
                input,
                v5,
                ReasonKind::PubRelOrPubComp,
                "MQTT-3.7.2-1",
            ))?;
            Packet::PubComp(PubComp {
                pkid,
                reason,
                properties,
            })
        }
        kind::SUBSCRIBE => Packet::Subscribe(parse_all(subscribe(body, input, v5))?),
        kind::SUBACK => Packet::SubAck(parse_all(suback(body, input, v5))?),
        kind::UNSUBSCRIBE => Packet::Unsubscribe(parse_all(unsubscribe(body, input, v5))?),
        kind::UNSUBACK => Packet::UnsubAck(parse_all(unsuback(body, input, v5))?),
        kind::PINGREQ => parse_all(Ok((input, Packet::PingReq)))?,
        kind::PINGRESP => parse_all(Ok((input, Packet::PingResp)))?,
        kind::PUBLISH => return publish(body.clone(), false, flags, v5),
        kind::DISCONNECT => Packet::Disconnect(parse_all(disconnect(body, input, v5))?),
        // check_type let type 15 through only for MQTT 5.0, where it is AUTH.
        _ => Packet::Auth(parse_all(auth(body, input))?),
    };
    Ok(Some(packet))
}

/// Finishes a body parse: the fields must use up the remaining length
/// exactly, because a packet with bytes left over is malformed.
fn parse_all<T>(result: Res<'_, T>) -> Result<T, DecodeError> {
    let (rest, value) = result.map_err(into_error)?;
    if !rest.is_empty() {
        return Err(DecodeError::Malformed {
            rule: REMAINING_LENGTH_RULE,
            detail: "bytes left over after the last field of the packet",
        });
    }
    Ok(value)
}

/// nom reader for a Packet Identifier, which may not be 0.
fn packet_id<'a>(input: &'a [u8], rule: &'static str) -> Res<'a, PacketId> {
    let (rest, value) = be_u16(input)?;
    match NonZeroU16::new(value) {
        Some(pkid) => Ok((rest, pkid)),
        None => fail(packet_id_zero(rule)),
    }
}

/// Returns the error for a Packet Identifier of 0, which `rule` forbids.
#[cold]
fn packet_id_zero(rule: &'static str) -> DecodeError {
    DecodeError::Malformed {
        rule,
        detail: "packet identifier is 0",
    }
}

/// Reads the properties of an MQTT 5.0 packet; earlier versions have none.
fn maybe_properties<'a>(
    body: &Bytes,
    input: &'a [u8],
    v5: bool,
    context: PropertyContext,
) -> Res<'a, Properties> {
    if v5 {
        read_properties(body, input, context)
    } else {
        Ok((input, Properties::default()))
    }
}

/// The flags byte of CONNECT.
struct ConnectFlags {
    username: bool,
    password: bool,
    will_retain: bool,
    will_qos: QoS,
    will: bool,
    clean_start: bool,
}

fn connect_flags(byte: u8, protocol: ProtocolVersion) -> Result<ConnectFlags, DecodeError> {
    if byte & 0b1 != 0 {
        return Err(DecodeError::Malformed {
            rule: "MQTT-3.1.2-3",
            detail: "reserved CONNECT flag is set",
        });
    }
    let flags = ConnectFlags {
        username: byte & 0b1000_0000 != 0,
        password: byte & 0b0100_0000 != 0,
        will_retain: byte & 0b0010_0000 != 0,
        will_qos: QoS::from_u8((byte >> 3) & 0b11).ok_or(DecodeError::Malformed {
            rule: "MQTT-3.1.2-12",
            detail: "Will QoS is 3",
        })?,
        will: byte & 0b0000_0100 != 0,
        clean_start: byte & 0b0000_0010 != 0,
    };
    if !flags.will && flags.will_qos != QoS::AtMostOnce {
        return Err(DecodeError::Malformed {
            rule: "MQTT-3.1.2-11",
            detail: "Will QoS is not 0 but the Will Flag is 0",
        });
    }
    if !flags.will && flags.will_retain {
        return Err(DecodeError::Malformed {
            rule: "MQTT-3.1.2-13",
            detail: "Will Retain is 1 but the Will Flag is 0",
        });
    }
    // MQTT 5.0 allows a password without a user name; 3.1.1 does not.
    if !protocol.is_v5() && flags.password && !flags.username {
        return Err(DecodeError::Malformed {
            rule: "MQTT-3.1.2-22 (3.1.1)",
            detail: "Password Flag is 1 but the User Name Flag is 0",
        });
    }
    Ok(flags)
}

fn connect<'a>(body: &Bytes, input: &'a [u8]) -> Res<'a, Connect> {
    let (input, name) = length_prefixed(input)?;
    let (input, level) = be_u8(input)?;
    let protocol = match (name, level) {
        (b"MQIsdp", 3) => ProtocolVersion::V3_1,
        (b"MQTT", 4) => ProtocolVersion::V3_1_1,
        (b"MQTT", 5) => ProtocolVersion::V5,
        _ => {
            return fail(DecodeError::UnsupportedProtocolVersion {
                name: String::from_utf8_lossy(name).into_owned(),
                level,
            })
        }
    };
    let v5 = protocol.is_v5();
    let (input, flags) = be_u8(input)?;
    let flags = connect_flags(flags, protocol).or_else(fail)?;
    let (input, keep_alive) = be_u16(input)?;
    let (input, properties) = maybe_properties(body, input, v5, PropertyContext::Connect)?;
    let (input, client_id) = string(body, input)?;
    check_client_id(&client_id, protocol, flags.clean_start).or_else(fail)?;

    let (input, will) = if flags.will {
        let (input, will) = last_will(body, input, &flags, v5)?;
        (input, Some(will))
    } else {
        (input, None)
    };
    let (input, username) = if flags.username {
        let (input, username) = string(body, input)?;
        (input, Some(username))
    } else {
        (input, None)
    };
    let (input, password) = if flags.password {
        let (input, password) = binary(body, input)?;
        (input, Some(password))
    } else {
        (input, None)
    };

    let connect = Connect {
        protocol,
        clean_start: flags.clean_start,
        keep_alive,
        client_id,
        will,
        username,
        password,
        properties,
    };
    Ok((input, connect))
}

/// Applies the client identifier rules that the codec can check alone.
fn check_client_id(
    client_id: &str,
    protocol: ProtocolVersion,
    clean_start: bool,
) -> Result<(), DecodeError> {
    match protocol {
        // MQTT 3.1 allows 1 to 23 characters and nothing else.
        ProtocolVersion::V3_1 if client_id.is_empty() || client_id.chars().count() > 23 => {
            Err(DecodeError::ClientIdentifierNotValid {
                rule: "section 3.1 (3.1)",
                detail: "MQTT 3.1 client identifier is not 1 to 23 characters long",
            })
        }
        ProtocolVersion::V3_1_1 if client_id.is_empty() && !clean_start => {
            Err(DecodeError::ClientIdentifierNotValid {
                rule: "MQTT-3.1.3-8 (3.1.1)",
                detail: "client identifier is empty but Clean Session is 0",
            })
        }
        _ => Ok(()),
    }
}

fn last_will<'a>(
    body: &Bytes,
    input: &'a [u8],
    flags: &ConnectFlags,
    v5: bool,
) -> Res<'a, LastWill> {
    let (input, properties) = maybe_properties(body, input, v5, PropertyContext::Will)?;
    let (input, topic) = string(body, input)?;
    check_topic_name(&topic, false).or_else(fail)?;
    let (input, payload) = binary(body, input)?;
    if properties.payload_format_indicator == Some(1) && std::str::from_utf8(&payload).is_err() {
        return fail(DecodeError::PayloadFormatInvalid {
            rule: "section 3.1.3.2.3",
        });
    }
    let will = LastWill {
        topic,
        payload,
        qos: flags.will_qos,
        retain: flags.will_retain,
        properties,
    };
    Ok((input, will))
}

/// Checks a topic name. An empty name is valid only when `alias` is true,
/// which means a Topic Alias may replace it.
fn check_topic_name(topic: &str, alias: bool) -> Result<(), DecodeError> {
    if topic.is_empty() {
        if alias {
            return Ok(());
        }
        return Err(DecodeError::TopicNameInvalid {
            rule: "MQTT-4.7.3-1",
            detail: "topic name is empty",
        });
    }
    if has_wildcard(topic) {
        return Err(DecodeError::TopicNameInvalid {
            rule: "MQTT-3.3.2-2",
            detail: "topic name contains a wildcard",
        });
    }
    Ok(())
}

/// True if `text` contains `+` or `#`. Scans bytes, which is faster than a
/// `char` pattern and exact because both are ASCII.
fn has_wildcard(text: &str) -> bool {
    text.bytes().any(|byte| byte == b'+' || byte == b'#')
}

fn connack<'a>(body: &Bytes, input: &'a [u8], version: ProtocolVersion) -> Res<'a, ConnAck> {
    let (input, flags) = be_u8(input)?;
    // MQTT 3.1 has no Session Present flag and leaves the byte unused.
    let session_present = match version {
        ProtocolVersion::V3_1 => false,
        _ if flags & 0b1111_1110 != 0 => {
            return fail(DecodeError::Malformed {
                rule: "MQTT-3.2.2-1",
                detail: "reserved CONNACK flags are set",
            })
        }
        _ => flags & 1 != 0,
    };
    let (input, code) = be_u8(input)?;
    let reason = if version.is_v5() {
        v5_reason(code, ReasonKind::ConnAck, "MQTT-3.2.2-8").or_else(fail)?
    } else {
        ReasonCode::from_v3_connack(code).ok_or(nom::Err::Failure(DecodeError::Malformed {
            rule: "section 3.2.2.3 (3.1.1)",
            detail: "CONNACK return code is above 5",
        }))?
    };
    let (input, properties) =
        maybe_properties(body, input, version.is_v5(), PropertyContext::ConnAck)?;
    let connack = ConnAck {
        session_present,
        reason,
        properties,
    };
    Ok((input, connack))
}

/// Converts an MQTT 5.0 reason code byte that must be valid for `kind`.
fn v5_reason(code: u8, kind: ReasonKind, rule: &'static str) -> Result<ReasonCode, DecodeError> {
    match ReasonCode::from_u8(code) {
        Some(reason) if reason.allowed_in(kind) => Ok(reason),
        _ => Err(DecodeError::Malformed {
            rule,
            detail: "reason code is not valid for this packet type",
        }),
    }
}

/// Reads PUBLISH. It takes the body by value so that the payload is cut from
/// it without extra reference count updates. When `body_owned` is true the
/// body is the only handle to its memory, and copying the topic name is then
/// cheaper than sharing that memory between topic and payload.
#[inline]
fn publish(
    mut body: Bytes,
    body_owned: bool,
    flags: u8,
    v5: bool,
) -> Result<Option<Packet>, DecodeError> {
    let dup = flags & 0b1000 != 0;
    let retain = flags & 0b0001 != 0;
    // check_publish_flags has already rejected QoS 3.
    let qos = QoS::from_u8((flags >> 1) & 0b11).ok_or(DecodeError::Malformed {
        rule: "MQTT-3.3.1-4",
        detail: "PUBLISH has QoS 3",
    })?;

    let input = body.as_ref();
    let (raw_topic, rest) = split_length_prefixed(input).ok_or_else(past_end)?;
    let (pkid, rest) = if qos == QoS::AtMostOnce {
        (None, rest)
    } else {
        let (value, rest) = split_u16(rest).ok_or_else(past_end)?;
        let pkid = NonZeroU16::new(value).ok_or_else(|| packet_id_zero("MQTT-2.2.1-3"))?;
        (Some(pkid), rest)
    };
    let (rest, properties) =
        maybe_properties(&body, rest, v5, PropertyContext::Publish).map_err(into_error)?;
    let payload_start = input.len() - rest.len();

    let topic = if is_plain_ascii_topic(raw_topic) {
        let topic = if body_owned {
            Bytes::copy_from_slice(raw_topic)
        } else {
            body.slice_ref(raw_topic)
        };
        // SAFETY: is_plain_ascii_topic found only bytes below 0x80, and ASCII
        // is valid UTF-8. The unit tests of `scan` check the scan against a
        // byte loop.
        unsafe { ByteString::from_bytes_unchecked(topic) }
    } else {
        publish_topic(&body, raw_topic, body_owned, v5)?
    };
    body.advance(payload_start);
    let payload = body;

    if topic.is_empty() {
        if !v5 {
            return Err(DecodeError::TopicNameInvalid {
                rule: "MQTT-4.7.3-1",
                detail: "topic name is empty",
            });
        }
        if properties.topic_alias.is_none() {
            return Err(DecodeError::ProtocolError {
                rule: "section 3.3.2.1",
                detail: "topic name is empty and there is no Topic Alias",
            });
        }
    }
    if properties.payload_format_indicator == Some(1) && std::str::from_utf8(&payload).is_err() {
        return Err(DecodeError::PayloadFormatInvalid {
            rule: "section 3.3.2.3.2",
        });
    }

    Ok(Some(Packet::Publish(Publish {
        dup,
        qos,
        retain,
        topic,
        pkid,
        payload,
        properties,
    })))
}

/// Checks a PUBLISH topic name that is not plain ASCII, and returns it as a
/// copy or as a slice of `body` like the fast path in [`publish`].
#[cold]
fn publish_topic(
    body: &Bytes,
    raw_topic: &[u8],
    body_owned: bool,
    v5: bool,
) -> Result<ByteString, DecodeError> {
    // The checks run in this order so that an error names the first rule the
    // topic breaks.
    let topic = to_str(raw_topic)?;
    check_topic_name(topic, v5)?;
    if body_owned {
        return Ok(ByteString::from(topic));
    }
    ByteString::try_from(body.slice_ref(raw_topic)).map_err(|_| not_utf8())
}

/// Reads PUBACK, PUBREC, PUBREL or PUBCOMP. In MQTT 5.0 the reason code and
/// the properties may be left out (section 3.4.2.1).
fn ack<'a>(
    body: &Bytes,
    input: &'a [u8],
    v5: bool,
    kind: ReasonKind,
    rule: &'static str,
) -> Res<'a, (PacketId, ReasonCode, Properties)> {
    let (input, pkid) = packet_id(input, "MQTT-2.2.1-5")?;
    if !v5 || input.is_empty() {
        return Ok((input, (pkid, ReasonCode::Success, Properties::default())));
    }
    let (input, code) = be_u8(input)?;
    let reason = v5_reason(code, kind, rule).or_else(fail)?;
    if input.is_empty() {
        return Ok((input, (pkid, reason, Properties::default())));
    }
    let (input, properties) = read_properties(body, input, PropertyContext::Ack)?;
    Ok((input, (pkid, reason, properties)))
}

/// Checks a topic filter of SUBSCRIBE or UNSUBSCRIBE and returns whether it
/// is a shared subscription.
fn check_filter(filter: &str, v5: bool) -> Result<bool, DecodeError> {
    if filter.is_empty() {
        return Err(DecodeError::Malformed {
            rule: "MQTT-4.7.3-1",
            detail: "topic filter is empty",
        });
    }
    let (shared, plain) = if v5 && filter.starts_with(SHARED_PREFIX) {
        let (_, plain) = split_shared(filter).ok_or(DecodeError::Malformed {
            rule: "MQTT-4.8.2-2",
            detail: "shared subscription filter is not $share/{ShareName}/{filter}",
        })?;
        (true, plain)
    } else {
        (false, filter)
    };
    if !valid_topic_filter(plain) {
        let rule = if plain.contains('#') {
            "MQTT-4.7.1-1"
        } else {
            "MQTT-4.7.1-2"
        };
        return Err(DecodeError::Malformed {
            rule,
            detail: "wildcard does not fill a whole level, or # is not last",
        });
    }
    Ok(shared)
}

fn subscribe<'a>(body: &Bytes, input: &'a [u8], v5: bool) -> Res<'a, Subscribe> {
    let (input, pkid) = packet_id(input, "MQTT-2.2.1-3")?;
    let (mut input, properties) = maybe_properties(body, input, v5, PropertyContext::Subscribe)?;
    let mut filters = Vec::with_capacity(count_filters(input, 1));
    while !input.is_empty() {
        let (rest, filter) = string(body, input)?;
        let (rest, options) = be_u8(rest)?;
        let shared = check_filter(&filter, v5).or_else(fail)?;
        let filter = subscription_options(filter, options, v5, shared).or_else(fail)?;
        filters.push(filter);
        input = rest;
    }
    if filters.is_empty() {
        return fail(DecodeError::ProtocolError {
            rule: "MQTT-3.8.3-2",
            detail: "SUBSCRIBE has no topic filter",
        });
    }
    let subscribe = Subscribe {
        pkid,
        filters,
        properties,
    };
    Ok((input, subscribe))
}

/// Counts the topic filters in `input`, each a string followed by
/// `options_len` bytes, up to the first that does not fit. Sizing the vector
/// first saves its regrowth.
fn count_filters(mut input: &[u8], options_len: usize) -> usize {
    let mut count = 0;
    while let Some((_, rest)) = split_length_prefixed(input) {
        count += 1;
        input = rest.get(options_len..).unwrap_or_default();
    }
    count
}

/// Decodes the Subscription Options byte (Requested QoS byte before 5.0).
fn subscription_options(
    filter: ByteString,
    options: u8,
    v5: bool,
    shared: bool,
) -> Result<SubscribeFilter, DecodeError> {
    if !v5 {
        if options & 0b1111_1100 != 0 {
            return Err(DecodeError::Malformed {
                rule: "MQTT-3.8.3-4 (3.1.1)",
                detail: "reserved bits of the Requested QoS byte are set",
            });
        }
        let qos = QoS::from_u8(options).ok_or(DecodeError::Malformed {
            rule: "MQTT-3.8.3-4 (3.1.1)",
            detail: "Requested QoS is 3",
        })?;
        return Ok(SubscribeFilter::new(filter, qos));
    }

    if options & 0b1100_0000 != 0 {
        return Err(DecodeError::Malformed {
            rule: "MQTT-3.8.3-5",
            detail: "reserved bits of the Subscription Options are set",
        });
    }
    let qos = QoS::from_u8(options & 0b11).ok_or(DecodeError::ProtocolError {
        rule: "section 3.8.3.1",
        detail: "Maximum QoS of a subscription is 3",
    })?;
    let no_local = options & 0b0100 != 0;
    let retain_as_published = options & 0b1000 != 0;
    let retain_handling = match (options >> 4) & 0b11 {
        0 => RetainHandling::SendAtSubscribe,
        1 => RetainHandling::SendIfNew,
        2 => RetainHandling::DoNotSend,
        _ => {
            return Err(DecodeError::ProtocolError {
                rule: "section 3.8.3.1",
                detail: "Retain Handling is 3",
            })
        }
    };
    if shared && no_local {
        return Err(DecodeError::ProtocolError {
            rule: "MQTT-3.8.3-4",
            detail: "No Local is 1 on a shared subscription",
        });
    }
    Ok(SubscribeFilter {
        filter,
        qos,
        no_local,
        retain_as_published,
        retain_handling,
    })
}

fn suback<'a>(body: &Bytes, input: &'a [u8], v5: bool) -> Res<'a, SubAck> {
    let (input, pkid) = packet_id(input, "MQTT-2.2.1-6")?;
    let (input, properties) = maybe_properties(body, input, v5, PropertyContext::SubAck)?;
    let mut reasons = Vec::with_capacity(input.len());
    for &code in input {
        let reason = if v5 {
            v5_reason(code, ReasonKind::SubAck, "MQTT-3.9.3-2").or_else(fail)?
        } else {
            ReasonCode::from_v3_suback(code).ok_or(nom::Err::Failure(DecodeError::Malformed {
                rule: "section 3.9.3 (3.1.1)",
                detail: "SUBACK return code is not 0, 1, 2 or 0x80",
            }))?
        };
        reasons.push(reason);
    }
    let suback = SubAck {
        pkid,
        reasons,
        properties,
    };
    Ok((&[], suback))
}

fn unsubscribe<'a>(body: &Bytes, input: &'a [u8], v5: bool) -> Res<'a, Unsubscribe> {
    let (input, pkid) = packet_id(input, "MQTT-2.2.1-3")?;
    let (mut input, properties) = maybe_properties(body, input, v5, PropertyContext::Unsubscribe)?;
    let mut filters = Vec::with_capacity(count_filters(input, 0));
    while !input.is_empty() {
        let (rest, filter) = string(body, input)?;
        check_filter(&filter, v5).or_else(fail)?;
        filters.push(filter);
        input = rest;
    }
    if filters.is_empty() {
        return fail(DecodeError::ProtocolError {
            rule: "MQTT-3.10.3-2",
            detail: "UNSUBSCRIBE has no topic filter",
        });
    }
    let unsubscribe = Unsubscribe {
        pkid,
        filters,
        properties,
    };
    Ok((input, unsubscribe))
}

fn unsuback<'a>(body: &Bytes, input: &'a [u8], v5: bool) -> Res<'a, UnsubAck> {
    let (input, pkid) = packet_id(input, "MQTT-2.2.1-6")?;
    if !v5 {
        let unsuback = UnsubAck {
            pkid,
            reasons: Vec::new(),
            properties: Properties::default(),
        };
        return Ok((input, unsuback));
    }
    let (input, properties) = read_properties(body, input, PropertyContext::UnsubAck)?;
    let mut reasons = Vec::with_capacity(input.len());
    for &code in input {
        reasons.push(v5_reason(code, ReasonKind::UnsubAck, "MQTT-3.11.3-2").or_else(fail)?);
    }
    let unsuback = UnsubAck {
        pkid,
        reasons,
        properties,
    };
    Ok((&[], unsuback))
}

/// Reads DISCONNECT. Before 5.0 it has no body; in 5.0 the reason code and
/// the properties may be left out (section 3.14.2.1).
fn disconnect<'a>(body: &Bytes, input: &'a [u8], v5: bool) -> Res<'a, Disconnect> {
    if !v5 || input.is_empty() {
        return Ok((input, Disconnect::default()));
    }
    let (input, code) = be_u8(input)?;
    let reason = v5_reason(code, ReasonKind::Disconnect, "MQTT-3.14.2-1").or_else(fail)?;
    if input.is_empty() {
        let disconnect = Disconnect {
            reason,
            properties: Properties::default(),
        };
        return Ok((input, disconnect));
    }
    let (input, properties) = read_properties(body, input, PropertyContext::Disconnect)?;
    Ok((input, Disconnect { reason, properties }))
}

/// Reads AUTH, which is empty for Success without properties and otherwise
/// has both the reason code and the properties (section 3.15.2.1).
fn auth<'a>(body: &Bytes, input: &'a [u8]) -> Res<'a, Auth> {
    if input.is_empty() {
        return Ok((input, Auth::default()));
    }
    let (input, code) = be_u8(input)?;
    let reason = v5_reason(code, ReasonKind::Auth, "MQTT-3.15.2-1").or_else(fail)?;
    let (input, properties) = read_properties(body, input, PropertyContext::Auth)?;
    Ok((input, Auth { reason, properties }))
}
