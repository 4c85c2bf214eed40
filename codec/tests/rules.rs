//! One test per wire validation rule. Each test feeds a packet that breaks
//! exactly one rule and checks the error variant and the rule it names, so
//! removing the check makes the test fail.

mod common;

use codec::*;
use common::*;

use ProtocolVersion::{V3_1, V3_1_1, V5};

fn malformed(rule: &'static str) -> impl Fn(&DecodeError) -> bool {
    move |error| matches!(error, DecodeError::Malformed { rule: r, .. } if *r == rule)
}

fn protocol_error(rule: &'static str) -> impl Fn(&DecodeError) -> bool {
    move |error| matches!(error, DecodeError::ProtocolError { rule: r, .. } if *r == rule)
}

#[track_caller]
fn assert_error(bytes: &[u8], version: ProtocolVersion, check: impl Fn(&DecodeError) -> bool) {
    let error = decode_error(bytes, version);
    assert!(check(&error), "unexpected error {error:?}");
}

/// Builds a v5 PUBLISH QoS 0 to "t" with the given property bytes and payload.
fn publish_v5(properties: &[u8], payload: &[u8]) -> Vec<u8> {
    let mut body = field(b"t");
    body.push(properties.len() as u8);
    body.extend_from_slice(properties);
    body.extend_from_slice(payload);
    packet(0x30, &body)
}

/// Builds a v5 CONNECT with client id "c" and the given property bytes.
fn connect_v5(properties: &[u8]) -> Vec<u8> {
    let mut body = b"\x00\x04MQTT\x05\x02\x00\x00".to_vec();
    body.push(properties.len() as u8);
    body.extend_from_slice(properties);
    body.extend(field(b"c"));
    packet(0x10, &body)
}

/// Builds a CONNECT of `version` with the given flags byte and payload fields.
fn connect_with_flags(version: ProtocolVersion, flags: u8, fields: &[&[u8]]) -> Vec<u8> {
    let mut body = match version {
        V3_1 => b"\x00\x06MQIsdp\x03".to_vec(),
        V3_1_1 => b"\x00\x04MQTT\x04".to_vec(),
        V5 => b"\x00\x04MQTT\x05".to_vec(),
    };
    body.push(flags);
    body.extend(b"\x00\x00");
    if version == V5 {
        body.push(0);
    }
    for (index, value) in fields.iter().enumerate() {
        let will_flag = flags & 0b100 != 0;
        if version == V5 && will_flag && index == 1 {
            // Empty will properties before the will topic.
            body.push(0);
        }
        body.extend(field(value));
    }
    packet(0x10, &body)
}

/// Builds a SUBSCRIBE with one filter and its options byte.
fn subscribe(version: ProtocolVersion, filter: &[u8], options: u8) -> Vec<u8> {
    let mut body = b"\x00\x01".to_vec();
    if version == V5 {
        body.push(0);
    }
    body.extend(field(filter));
    body.push(options);
    packet(0x82, &body)
}

/// Builds an UNSUBSCRIBE with one filter.
fn unsubscribe(version: ProtocolVersion, filter: &[u8]) -> Vec<u8> {
    let mut body = b"\x00\x01".to_vec();
    if version == V5 {
        body.push(0);
    }
    body.extend(field(filter));
    packet(0xa2, &body)
}

// Fixed header and Variable Byte Integer.

#[test]
fn var_int_longer_than_four_bytes_is_malformed() {
    assert_error(
        b"\x30\xff\xff\xff\xff\x01",
        V3_1_1,
        malformed("section 1.5.5"),
    );
}

#[test]
fn var_int_not_in_shortest_form_is_malformed() {
    assert_error(b"\xc0\x80\x00", V3_1_1, malformed("MQTT-1.5.5-1"));
}

#[test]
fn packet_type_0_is_malformed() {
    assert_error(b"\x00\x00", V5, malformed("section 2.1.2"));
}

#[test]
fn packet_type_15_before_v5_is_malformed() {
    assert_error(b"\xf0\x00", V3_1_1, malformed("section 2.1.2"));
    assert_error(b"\xf0\x00", V3_1, malformed("section 2.1.2"));
}

#[test]
fn first_packet_must_be_connect() {
    let mut buf = BytesMut::from(&b"\xc0\x00"[..]);
    let error = decode(&mut buf, None, NO_LIMIT).unwrap_err();
    assert_eq!(error, DecodeError::FirstPacketNotConnect);
    assert_eq!(error.reason_code(), ReasonCode::ProtocolError);
}

#[test]
fn packet_too_large_is_rejected_from_header() {
    // A CONNECT announcing 200 MB, with only its fixed header present.
    let mut buf = BytesMut::from(&b"\x10\x80\x84\xaf\x5f"[..]);
    let error = decode(&mut buf, None, 1024 * 1024).unwrap_err();
    assert_eq!(
        error,
        DecodeError::PacketTooLarge {
            size: 200_000_005,
            max: 1024 * 1024
        }
    );
    assert_eq!(error.reason_code(), ReasonCode::PacketTooLarge);
}

#[test]
fn packet_too_large_counts_header_bytes() {
    // PINGREQ is 2 bytes in all.
    assert_eq!(
        decode(&mut BytesMut::from(&b"\xc0\x00"[..]), Some(V5), 1),
        Err(DecodeError::PacketTooLarge { size: 2, max: 1 })
    );
    let ok = decode(&mut BytesMut::from(&b"\xc0\x00"[..]), Some(V5), 2);
    assert_eq!(ok, Ok(Some(Packet::PingReq)));
}

#[test]
fn reserved_header_flags_are_malformed() {
    let cases: [(&[u8], &str); 12] = [
        (b"\x11\x00", "MQTT-2.1.3-1"),
        (b"\x21\x02\x00\x00", "MQTT-2.1.3-1"),
        (b"\x42\x02\x00\x01", "MQTT-2.1.3-1"),
        (b"\x58\x02\x00\x01", "MQTT-2.1.3-1"),
        (b"\x60\x02\x00\x01", "MQTT-3.6.1-1"),
        (b"\x71\x02\x00\x01", "MQTT-2.1.3-1"),
        (b"\x80\x06\x00\x01\x00\x01a\x00", "MQTT-3.8.1-1"),
        (b"\x92\x03\x00\x01\x00", "MQTT-2.1.3-1"),
        (b"\xa3\x05\x00\x01\x00\x01a", "MQTT-3.10.1-1"),
        (b"\xc1\x00", "MQTT-2.1.3-1"),
        (b"\xe2\x00", "MQTT-3.14.1-1"),
        (b"\xf4\x00", "MQTT-3.15.1-1"),
    ];
    for (bytes, rule) in cases {
        assert_error(bytes, V5, malformed(rule));
    }
}

#[test]
fn reserved_header_flags_are_checked_before_body_arrives() {
    let mut buf = BytesMut::from(&b"\x60\x02"[..]);
    let error = decode(&mut buf, Some(V3_1_1), NO_LIMIT).unwrap_err();
    assert!(malformed("MQTT-3.6.1-1")(&error), "{error:?}");
}

#[test]
fn trailing_bytes_inside_packet_are_malformed() {
    let cases: [(&[u8], ProtocolVersion); 6] = [
        (b"\x40\x03\x00\x01\x00", V3_1_1),
        (b"\xc0\x01\x00", V5),
        (b"\xe0\x01\x00", V3_1_1),
        (b"\xb0\x03\x00\x01\x00", V3_1_1),
        (b"\x20\x03\x00\x00\x00", V3_1_1),
        (b"\x10\x0e\x00\x04MQTT\x04\x02\x00\x3c\x00\x01ax", V3_1_1),
    ];
    for (bytes, version) in cases {
        assert_error(bytes, version, malformed("section 2.1.4"));
    }
}

#[test]
fn field_past_end_of_packet_is_malformed() {
    // The filter length is 5 but only 1 byte follows.
    assert_error(
        b"\x82\x05\x00\x01\x00\x05a",
        V3_1_1,
        malformed("section 2.1.4"),
    );
    // PUBACK with a 1-byte packet identifier.
    assert_error(b"\x40\x01\x00", V3_1_1, malformed("section 2.1.4"));
}

#[test]
fn error_consumes_the_bad_packet_only() {
    let mut buf = BytesMut::from(&b"\x40\x03\x00\x01\x00\xc0\x00"[..]);
    assert!(decode(&mut buf, Some(V3_1_1), NO_LIMIT).is_err());
    assert_eq!(&buf[..], b"\xc0\x00");
}

// UTF-8 strings.

#[test]
fn string_with_nul_is_malformed() {
    assert_error(
        &packet(0x30, b"\x00\x02a\x00"),
        V3_1_1,
        malformed("MQTT-1.5.4-2"),
    );
}

#[test]
fn string_with_invalid_utf8_is_malformed() {
    assert_error(
        &packet(0x30, b"\x00\x01\xff"),
        V3_1_1,
        malformed("MQTT-1.5.4-1"),
    );
}

#[test]
fn string_with_encoded_surrogate_is_malformed() {
    // U+D800 encoded as if it were a character.
    assert_error(
        &packet(0x30, b"\x00\x03\xed\xa0\x80"),
        V3_1_1,
        malformed("MQTT-1.5.4-1"),
    );
}

#[test]
fn string_with_overlong_nul_is_malformed() {
    assert_error(
        &packet(0x30, b"\x00\x02\xc0\x80"),
        V3_1_1,
        malformed("MQTT-1.5.4-1"),
    );
}

#[test]
fn string_with_bom_is_kept() {
    // MQTT-1.5.4-3: U+FEFF is not stripped.
    let bytes = packet(0x30, b"\x00\x04\xef\xbb\xbfa");
    match decode_whole(&bytes, V3_1_1).unwrap() {
        Packet::Publish(publish) => assert_eq!(&publish.topic[..], "\u{feff}a"),
        other => panic!("{other:?}"),
    }
}

// PUBLISH.

#[test]
fn publish_qos3_is_malformed() {
    assert_error(
        b"\x36\x05\x00\x01t\x00\x01",
        V3_1_1,
        malformed("MQTT-3.3.1-4"),
    );
    // Rejected from the first byte alone.
    let mut buf = BytesMut::from(&b"\x36"[..]);
    let error = decode(&mut buf, Some(V5), NO_LIMIT).unwrap_err();
    assert!(malformed("MQTT-3.3.1-4")(&error), "{error:?}");
}

#[test]
fn publish_dup_with_qos0_is_malformed() {
    assert_error(b"\x38\x03\x00\x01t", V3_1_1, malformed("MQTT-3.3.1-2"));
}

#[test]
fn publish_topic_with_wildcard_is_invalid() {
    for topic in [&b"a/+"[..], b"a/#", b"+", b"a+b"] {
        let mut body = field(topic);
        body.extend(b"payload");
        let error = decode_error(&packet(0x30, &body), V3_1_1);
        assert!(
            matches!(
                error,
                DecodeError::TopicNameInvalid {
                    rule: "MQTT-3.3.2-2",
                    ..
                }
            ),
            "{error:?}"
        );
        assert_eq!(error.reason_code(), ReasonCode::TopicNameInvalid);
    }
}

#[test]
fn publish_empty_topic_before_v5_is_invalid() {
    let error = decode_error(b"\x30\x02\x00\x00", V3_1_1);
    assert!(
        matches!(
            error,
            DecodeError::TopicNameInvalid {
                rule: "MQTT-4.7.3-1",
                ..
            }
        ),
        "{error:?}"
    );
}

#[test]
fn publish_v5_empty_topic_without_alias_is_protocol_error() {
    assert_error(
        b"\x30\x03\x00\x00\x00",
        V5,
        protocol_error("section 3.3.2.1"),
    );
}

#[test]
fn publish_packet_id_zero_is_malformed() {
    assert_error(
        b"\x32\x05\x00\x01t\x00\x00",
        V3_1_1,
        malformed("MQTT-2.2.1-3"),
    );
}

#[test]
fn publish_payload_format_utf8_is_checked() {
    let bytes = publish_v5(b"\x01\x01", b"\xff\xfe");
    let error = decode_error(&bytes, V5);
    assert!(
        matches!(error, DecodeError::PayloadFormatInvalid { .. }),
        "{error:?}"
    );
    assert_eq!(error.reason_code(), ReasonCode::PayloadFormatInvalid);

    // The same payload is valid when the indicator means unspecified bytes.
    assert!(decode_whole(&publish_v5(b"\x01\x00", b"\xff\xfe"), V5).is_ok());
}

#[test]
fn will_payload_format_utf8_is_checked() {
    let mut body = b"\x00\x04MQTT\x05\x06\x00\x00\x00".to_vec();
    body.extend(field(b"c"));
    body.extend(b"\x02\x01\x01");
    body.extend(field(b"t"));
    body.extend(field(b"\xff"));
    let error = decode_error(&packet(0x10, &body), V5);
    assert!(
        matches!(error, DecodeError::PayloadFormatInvalid { .. }),
        "{error:?}"
    );
}

#[test]
fn payload_format_indicator_above_1_is_protocol_error() {
    let bytes = publish_v5(b"\x01\x02", b"x");
    assert_error(&bytes, V5, protocol_error("section 3.3.2.3.2"));
}

#[test]
fn topic_alias_zero_is_invalid() {
    let error = decode_error(&publish_v5(b"\x23\x00\x00", b""), V5);
    assert_eq!(
        error,
        DecodeError::TopicAliasInvalid {
            rule: "MQTT-3.3.2-8"
        }
    );
    assert_eq!(error.reason_code(), ReasonCode::TopicAliasInvalid);
}

#[test]
fn response_topic_with_wildcard_is_protocol_error() {
    let mut properties = vec![0x08];
    properties.extend(field(b"a/#"));
    assert_error(
        &publish_v5(&properties, b""),
        V5,
        protocol_error("MQTT-3.3.2-14"),
    );
}

// Properties.

#[test]
fn property_not_allowed_in_packet_is_malformed() {
    // Receive Maximum in PUBLISH.
    assert_error(
        &publish_v5(b"\x21\x00\x01", b""),
        V5,
        malformed("section 2.2.2.2"),
    );
    // Topic Alias in CONNECT.
    assert_error(
        &connect_v5(b"\x23\x00\x01"),
        V5,
        malformed("section 2.2.2.2"),
    );
    // Will Delay Interval outside a will.
    assert_error(
        &connect_v5(b"\x18\x00\x00\x00\x01"),
        V5,
        malformed("section 2.2.2.2"),
    );
    // Session Expiry Interval in PUBACK.
    let puback = b"\x40\x09\x00\x01\x00\x05\x11\x00\x00\x00\x01";
    assert_error(puback, V5, malformed("section 2.2.2.2"));
}

#[test]
fn unknown_property_is_malformed() {
    assert_error(
        &publish_v5(b"\x7f\x00", b""),
        V5,
        malformed("section 2.2.2.2"),
    );
    assert_error(
        &publish_v5(b"\x00\x00", b""),
        V5,
        malformed("section 2.2.2.2"),
    );
}

#[test]
fn property_length_past_end_is_malformed() {
    assert_error(b"\x30\x05\x00\x01t\x09\x01", V5, malformed("section 2.1.4"));
}

#[test]
fn repeated_property_is_protocol_error() {
    let twice = b"\x02\x00\x00\x00\x01\x02\x00\x00\x00\x02";
    assert_error(
        &publish_v5(twice, b""),
        V5,
        protocol_error("section 2.2.2.2"),
    );
    let receive_maximum_twice = b"\x21\x00\x01\x21\x00\x02";
    assert_error(
        &connect_v5(receive_maximum_twice),
        V5,
        protocol_error("section 2.2.2.2"),
    );
}

#[test]
fn user_property_may_repeat() {
    let mut properties = vec![0x26];
    properties.extend(field(b"k"));
    properties.extend(field(b"1"));
    properties.push(0x26);
    properties.extend(field(b"k"));
    properties.extend(field(b"2"));
    match decode_whole(&publish_v5(&properties, b""), V5).unwrap() {
        Packet::Publish(publish) => {
            let values: Vec<_> = publish
                .properties
                .user_properties
                .iter()
                .map(|(name, value)| (name.to_string(), value.to_string()))
                .collect();
            let expected = [("k", "1"), ("k", "2")].map(|(n, v)| (n.to_owned(), v.to_owned()));
            assert_eq!(values, expected);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn subscription_identifier_repeats_only_in_publish() {
    let twice = b"\x0b\x01\x0b\x02";
    match decode_whole(&publish_v5(twice, b""), V5).unwrap() {
        Packet::Publish(publish) => {
            assert_eq!(publish.properties.subscription_identifiers, [1, 2])
        }
        other => panic!("{other:?}"),
    }
    let subscribe = b"\x82\x0a\x00\x01\x04\x0b\x01\x0b\x02\x00\x01a\x00";
    assert_error(subscribe, V5, protocol_error("section 2.2.2.2"));
}

#[test]
fn subscription_identifier_zero_is_protocol_error() {
    assert_error(
        &publish_v5(b"\x0b\x00", b""),
        V5,
        protocol_error("section 3.3.2.3.8"),
    );
}

#[test]
fn receive_maximum_zero_is_protocol_error() {
    assert_error(
        &connect_v5(b"\x21\x00\x00"),
        V5,
        protocol_error("section 3.1.2.11.3"),
    );
}

#[test]
fn maximum_packet_size_zero_is_protocol_error() {
    let bytes = connect_v5(b"\x27\x00\x00\x00\x00");
    assert_error(&bytes, V5, protocol_error("section 3.1.2.11.4"));
}

#[test]
fn request_information_flags_above_1_are_protocol_errors() {
    assert_error(
        &connect_v5(b"\x17\x02"),
        V5,
        protocol_error("section 3.1.2.11.7"),
    );
    assert_error(
        &connect_v5(b"\x19\x02"),
        V5,
        protocol_error("section 3.1.2.11.6"),
    );
}

#[test]
fn connack_byte_properties_above_1_are_protocol_errors() {
    let cases: [(u8, &str); 5] = [
        (0x24, "section 3.2.2.3.4"),
        (0x25, "section 3.2.2.3.5"),
        (0x28, "section 3.2.2.3.11"),
        (0x29, "section 3.2.2.3.12"),
        (0x2a, "section 3.2.2.3.13"),
    ];
    for (id, rule) in cases {
        let bytes = [0x20, 0x05, 0x00, 0x00, 0x02, id, 0x02];
        assert_error(&bytes, V5, protocol_error(rule));
    }
}

// Reason codes.

#[test]
fn reason_code_not_valid_for_packet_is_malformed() {
    let cases: [(&[u8], &str); 9] = [
        (b"\x40\x03\x00\x01\x92", "MQTT-3.4.2-1"),
        (b"\x50\x03\x00\x01\x04", "MQTT-3.5.2-1"),
        (b"\x62\x03\x00\x01\x10", "MQTT-3.6.2-1"),
        (b"\x70\x03\x00\x01\x87", "MQTT-3.7.2-1"),
        (b"\x20\x03\x00\x04\x00", "MQTT-3.2.2-8"),
        (b"\x90\x04\x00\x01\x00\x11", "MQTT-3.9.3-2"),
        (b"\xb0\x04\x00\x01\x00\x01", "MQTT-3.11.3-2"),
        (b"\xe0\x01\x18", "MQTT-3.14.2-1"),
        (b"\xf0\x02\x04\x00", "MQTT-3.15.2-1"),
    ];
    for (bytes, rule) in cases {
        assert_error(bytes, V5, malformed(rule));
    }
}

#[test]
fn undefined_reason_code_is_malformed() {
    assert_error(b"\xe0\x01\x03", V5, malformed("MQTT-3.14.2-1"));
}

#[test]
fn connack_v3_return_code_above_5_is_malformed() {
    assert_error(
        b"\x20\x02\x00\x06",
        V3_1_1,
        malformed("section 3.2.2.3 (3.1.1)"),
    );
}

#[test]
fn connack_reserved_flags_are_malformed() {
    assert_error(b"\x20\x02\x02\x00", V3_1_1, malformed("MQTT-3.2.2-1"));
    assert_error(b"\x20\x03\x80\x00\x00", V5, malformed("MQTT-3.2.2-1"));
}

#[test]
fn suback_v3_return_code_outside_list_is_malformed() {
    assert_error(
        b"\x90\x03\x00\x01\x03",
        V3_1_1,
        malformed("section 3.9.3 (3.1.1)"),
    );
}

#[test]
fn auth_with_reason_but_no_properties_is_malformed() {
    assert_error(b"\xf0\x01\x18", V5, malformed("section 2.1.4"));
}

// Packet identifiers.

#[test]
fn packet_id_zero_is_malformed_everywhere() {
    let cases: [(&[u8], &str); 6] = [
        (b"\x40\x02\x00\x00", "MQTT-2.2.1-5"),
        (b"\x62\x02\x00\x00", "MQTT-2.2.1-5"),
        (b"\x82\x06\x00\x00\x00\x01a\x00", "MQTT-2.2.1-3"),
        (b"\xa2\x05\x00\x00\x00\x01a", "MQTT-2.2.1-3"),
        (b"\x90\x03\x00\x00\x00", "MQTT-2.2.1-6"),
        (b"\xb0\x02\x00\x00", "MQTT-2.2.1-6"),
    ];
    for (bytes, rule) in cases {
        assert_error(bytes, V3_1_1, malformed(rule));
    }
}

// SUBSCRIBE and UNSUBSCRIBE.

#[test]
fn subscribe_without_filters_is_protocol_error() {
    assert_error(b"\x82\x02\x00\x01", V3_1_1, protocol_error("MQTT-3.8.3-2"));
    assert_error(b"\x82\x03\x00\x01\x00", V5, protocol_error("MQTT-3.8.3-2"));
}

#[test]
fn unsubscribe_without_filters_is_protocol_error() {
    assert_error(b"\xa2\x02\x00\x01", V3_1_1, protocol_error("MQTT-3.10.3-2"));
    assert_error(b"\xa2\x03\x00\x01\x00", V5, protocol_error("MQTT-3.10.3-2"));
}

#[test]
fn filter_with_misplaced_multi_level_wildcard_is_malformed() {
    for filter in [&b"a/#/b"[..], b"a#", b"#/a", b"##"] {
        for version in [V3_1_1, V5] {
            assert_error(
                &subscribe(version, filter, 0),
                version,
                malformed("MQTT-4.7.1-1"),
            );
            assert_error(
                &unsubscribe(version, filter),
                version,
                malformed("MQTT-4.7.1-1"),
            );
        }
    }
}

#[test]
fn filter_with_partial_single_level_wildcard_is_malformed() {
    for filter in [&b"a+"[..], b"a/+b", b"++"] {
        for version in [V3_1_1, V5] {
            assert_error(
                &subscribe(version, filter, 0),
                version,
                malformed("MQTT-4.7.1-2"),
            );
            assert_error(
                &unsubscribe(version, filter),
                version,
                malformed("MQTT-4.7.1-2"),
            );
        }
    }
}

#[test]
fn empty_filter_is_malformed() {
    for version in [V3_1_1, V5] {
        assert_error(
            &subscribe(version, b"", 0),
            version,
            malformed("MQTT-4.7.3-1"),
        );
        assert_error(
            &unsubscribe(version, b""),
            version,
            malformed("MQTT-4.7.3-1"),
        );
    }
}

#[test]
fn subscription_options_reserved_bits_are_malformed() {
    assert_error(&subscribe(V5, b"a", 0x40), V5, malformed("MQTT-3.8.3-5"));
    assert_error(&subscribe(V5, b"a", 0x80), V5, malformed("MQTT-3.8.3-5"));
    let v3_rule = "MQTT-3.8.3-4 (3.1.1)";
    assert_error(&subscribe(V3_1_1, b"a", 0x04), V3_1_1, malformed(v3_rule));
}

#[test]
fn subscription_qos3_is_rejected() {
    let v3_rule = "MQTT-3.8.3-4 (3.1.1)";
    assert_error(&subscribe(V3_1_1, b"a", 0x03), V3_1_1, malformed(v3_rule));
    assert_error(
        &subscribe(V5, b"a", 0x03),
        V5,
        protocol_error("section 3.8.3.1"),
    );
}

#[test]
fn retain_handling_3_is_protocol_error() {
    assert_error(
        &subscribe(V5, b"a", 0x30),
        V5,
        protocol_error("section 3.8.3.1"),
    );
}

#[test]
fn shared_subscription_with_no_local_is_protocol_error() {
    let bytes = subscribe(V5, b"$share/g/a", 0x04);
    assert_error(&bytes, V5, protocol_error("MQTT-3.8.3-4"));
}

#[test]
fn shared_subscription_without_share_name_is_malformed() {
    for filter in [
        &b"$share//a"[..],
        b"$share/g",
        b"$share/g+/a",
        b"$share/g/a+",
    ] {
        let error = decode_error(&subscribe(V5, filter, 0), V5);
        assert!(matches!(error, DecodeError::Malformed { .. }), "{error:?}");
    }
}

// CONNECT.

#[test]
fn connect_reserved_flag_is_malformed() {
    let bytes = connect_with_flags(V3_1_1, 0x03, &[b"c"]);
    assert_error(&bytes, V3_1_1, malformed("MQTT-3.1.2-3"));
    let bytes = connect_with_flags(V5, 0x03, &[b"c"]);
    assert_error(&bytes, V5, malformed("MQTT-3.1.2-3"));
}

#[test]
fn connect_will_qos_without_will_flag_is_malformed() {
    let bytes = connect_with_flags(V3_1_1, 0x0a, &[b"c"]);
    assert_error(&bytes, V3_1_1, malformed("MQTT-3.1.2-11"));
}

#[test]
fn connect_will_retain_without_will_flag_is_malformed() {
    let bytes = connect_with_flags(V5, 0x22, &[b"c"]);
    assert_error(&bytes, V5, malformed("MQTT-3.1.2-13"));
}

#[test]
fn connect_will_qos3_is_malformed() {
    let bytes = connect_with_flags(V3_1_1, 0x1e, &[b"c", b"t", b"p"]);
    assert_error(&bytes, V3_1_1, malformed("MQTT-3.1.2-12"));
}

#[test]
fn connect_will_topic_with_wildcard_is_invalid() {
    let bytes = connect_with_flags(V3_1_1, 0x06, &[b"c", b"t/#", b"p"]);
    let error = decode_error(&bytes, V3_1_1);
    assert!(
        matches!(error, DecodeError::TopicNameInvalid { .. }),
        "{error:?}"
    );
}

#[test]
fn connect_password_without_username_before_v5_is_malformed() {
    for version in [V3_1, V3_1_1] {
        let bytes = connect_with_flags(version, 0x42, &[b"c", b"pw"]);
        assert_error(&bytes, version, malformed("MQTT-3.1.2-22 (3.1.1)"));
    }
}

#[test]
fn connect_flags_promise_fields_that_are_missing() {
    // User Name Flag set, no user name.
    let bytes = connect_with_flags(V3_1_1, 0x82, &[b"c"]);
    assert_error(&bytes, V3_1_1, malformed("section 2.1.4"));
}

#[test]
fn connect_unsupported_level_is_rejected() {
    let bytes = b"\x10\x0d\x00\x04MQTT\x06\x02\x00\x3c\x00\x01a";
    let error = decode_first(bytes).unwrap_err();
    assert_eq!(
        error,
        DecodeError::UnsupportedProtocolVersion {
            name: "MQTT".into(),
            level: 6
        }
    );
    assert_eq!(error.reason_code(), ReasonCode::UnsupportedProtocolVersion);
    assert_eq!(
        error.v3_response(),
        V3Response::ConnAckThenClose { return_code: 1 }
    );
}

#[test]
fn connect_name_and_level_must_agree() {
    let mqisdp_4 = b"\x10\x0f\x00\x06MQIsdp\x04\x02\x00\x3c\x00\x01a";
    let error = decode_first(mqisdp_4).unwrap_err();
    assert!(matches!(
        error,
        DecodeError::UnsupportedProtocolVersion { level: 4, .. }
    ));
    let mqtt_3 = b"\x10\x0d\x00\x04MQTT\x03\x02\x00\x3c\x00\x01a";
    let error = decode_first(mqtt_3).unwrap_err();
    assert!(matches!(
        error,
        DecodeError::UnsupportedProtocolVersion { level: 3, .. }
    ));
}

#[test]
fn connect_other_protocol_name_closes_without_connack() {
    let bytes = b"\x10\x0d\x00\x04HTTP\x04\x02\x00\x3c\x00\x01a";
    let error = decode_first(bytes).unwrap_err();
    assert_eq!(error.v3_response(), V3Response::Close);
}

#[test]
fn connect_v3_1_1_empty_client_id_needs_clean_session() {
    let bytes = connect_with_flags(V3_1_1, 0x00, &[b""]);
    let error = decode_error(&bytes, V3_1_1);
    assert!(
        matches!(error, DecodeError::ClientIdentifierNotValid { .. }),
        "{error:?}"
    );
    assert_eq!(
        error.v3_response(),
        V3Response::ConnAckThenClose { return_code: 2 }
    );
    assert_eq!(error.reason_code(), ReasonCode::ClientIdentifierNotValid);

    assert!(decode_whole(&connect_with_flags(V3_1_1, 0x02, &[b""]), V3_1_1).is_ok());
    // MQTT 5.0 lets the server assign an identifier either way.
    assert!(decode_whole(&connect_with_flags(V5, 0x00, &[b""]), V5).is_ok());
}

#[test]
fn connect_v3_1_client_id_is_1_to_23_characters() {
    let empty = connect_with_flags(V3_1, 0x02, &[b""]);
    let long = connect_with_flags(V3_1, 0x02, &[&[b'a'; 24]]);
    for bytes in [empty, long] {
        let error = decode_error(&bytes, V3_1);
        assert!(
            matches!(error, DecodeError::ClientIdentifierNotValid { .. }),
            "{error:?}"
        );
    }
    assert!(decode_whole(&connect_with_flags(V3_1, 0x02, &[&[b'a'; 23]]), V3_1).is_ok());
}

// The error to wire mapping.

#[test]
fn every_error_maps_to_a_reason_code() {
    let cases = [
        (
            DecodeError::Malformed {
                rule: "r",
                detail: "d",
            },
            0x81,
        ),
        (
            DecodeError::ProtocolError {
                rule: "r",
                detail: "d",
            },
            0x82,
        ),
        (DecodeError::FirstPacketNotConnect, 0x82),
        (
            DecodeError::UnsupportedProtocolVersion {
                name: "MQTT".into(),
                level: 9,
            },
            0x84,
        ),
        (
            DecodeError::ClientIdentifierNotValid {
                rule: "r",
                detail: "d",
            },
            0x85,
        ),
        (
            DecodeError::TopicNameInvalid {
                rule: "r",
                detail: "d",
            },
            0x90,
        ),
        (DecodeError::TopicAliasInvalid { rule: "r" }, 0x94),
        (DecodeError::PacketTooLarge { size: 2, max: 1 }, 0x95),
        (DecodeError::PayloadFormatInvalid { rule: "r" }, 0x99),
    ];
    for (error, code) in cases {
        assert_eq!(error.reason_code().code(), code, "{error:?}");
        assert!(!error.to_string().is_empty());
        assert!(!error.rule().is_empty());
    }
}

#[test]
fn v3_closes_without_connack_for_other_errors() {
    let errors = [
        DecodeError::FirstPacketNotConnect,
        DecodeError::PacketTooLarge { size: 2, max: 1 },
        DecodeError::Malformed {
            rule: "r",
            detail: "d",
        },
        DecodeError::TopicAliasInvalid { rule: "r" },
    ];
    for error in errors {
        assert_eq!(error.v3_response(), V3Response::Close, "{error:?}");
    }
}
