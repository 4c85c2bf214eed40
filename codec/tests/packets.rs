//! Byte-level tests: each packet type in each version, checked against bytes
//! written out by hand from the MQTT 3.1, 3.1.1 and 5.0 specifications, in
//! both directions. Also the remaining length boundaries and the largest
//! strings.

mod common;

use std::num::NonZeroU16;

use codec::*;
use common::*;

use ProtocolVersion::{V3_1, V3_1_1, V5};

fn pkid(value: u16) -> PacketId {
    NonZeroU16::new(value).unwrap()
}

fn text(value: &str) -> ByteString {
    ByteString::from(value.to_owned())
}

fn connect(protocol: ProtocolVersion) -> Connect {
    Connect {
        protocol,
        clean_start: true,
        keep_alive: 60,
        client_id: text("a"),
        will: None,
        username: None,
        password: None,
        properties: Properties::default(),
    }
}

#[test]
fn connect_v3_1_minimal() {
    let bytes = b"\x10\x0f\x00\x06MQIsdp\x03\x02\x00\x3c\x00\x01a";
    assert_wire(bytes, &Packet::Connect(connect(V3_1)), V3_1);
    let first = decode_first(bytes).unwrap().unwrap();
    assert_eq!(first, Packet::Connect(connect(V3_1)));
}

#[test]
fn connect_v3_1_1_minimal() {
    let bytes = b"\x10\x0d\x00\x04MQTT\x04\x02\x00\x3c\x00\x01a";
    assert_wire(bytes, &Packet::Connect(connect(V3_1_1)), V3_1_1);
}

#[test]
fn connect_v5_minimal() {
    let bytes = b"\x10\x0e\x00\x04MQTT\x05\x02\x00\x3c\x00\x00\x01a";
    assert_wire(bytes, &Packet::Connect(connect(V5)), V5);
}

#[test]
fn connect_level_selects_version_before_connect() {
    let cases: [(&[u8], ProtocolVersion); 3] = [
        (b"\x10\x0f\x00\x06MQIsdp\x03\x02\x00\x3c\x00\x01a", V3_1),
        (b"\x10\x0d\x00\x04MQTT\x04\x02\x00\x3c\x00\x01a", V3_1_1),
        (b"\x10\x0e\x00\x04MQTT\x05\x02\x00\x3c\x00\x00\x01a", V5),
    ];
    for (bytes, version) in cases {
        match decode_first(bytes) {
            Ok(Some(Packet::Connect(connect))) => assert_eq!(connect.protocol, version),
            other => panic!("{version:?}: {other:?}"),
        }
    }
}

#[test]
fn connect_v3_1_1_with_will_and_credentials() {
    let mut body = b"\x00\x04MQTT\x04\xee\x00\x0a".to_vec();
    for value in [&b"c"[..], b"t", b"p", b"u", b"pw"] {
        body.extend(field(value));
    }
    let bytes = packet(0x10, &body);
    let expected = Packet::Connect(Connect {
        protocol: V3_1_1,
        clean_start: true,
        keep_alive: 10,
        client_id: text("c"),
        will: Some(LastWill {
            topic: text("t"),
            payload: Bytes::from_static(b"p"),
            qos: QoS::AtLeastOnce,
            retain: true,
            properties: Properties::default(),
        }),
        username: Some(text("u")),
        password: Some(Bytes::from_static(b"pw")),
        properties: Properties::default(),
    });
    assert_wire(&bytes, &expected, V3_1_1);
}

#[test]
fn connect_v5_with_properties_and_will_properties() {
    let mut body = b"\x00\x04MQTT\x05\x06\x00\x3c".to_vec();
    // Session Expiry Interval 60, Receive Maximum 16.
    body.extend(b"\x08\x11\x00\x00\x00\x3c\x21\x00\x10");
    body.extend(field(b"c"));
    // Will Delay Interval 5.
    body.extend(b"\x05\x18\x00\x00\x00\x05");
    body.extend(field(b"t"));
    body.extend(field(b""));
    let bytes = packet(0x10, &body);
    let expected = Packet::Connect(Connect {
        protocol: V5,
        clean_start: true,
        keep_alive: 60,
        client_id: text("c"),
        will: Some(LastWill {
            topic: text("t"),
            payload: Bytes::new(),
            qos: QoS::AtMostOnce,
            retain: false,
            properties: Properties::from(PropertyValues {
                will_delay_interval: Some(5),
                ..PropertyValues::default()
            }),
        }),
        username: None,
        password: None,
        properties: Properties::from(PropertyValues {
            session_expiry_interval: Some(60),
            receive_maximum: Some(16),
            ..PropertyValues::default()
        }),
    });
    assert_wire(&bytes, &expected, V5);
}

#[test]
fn connect_v5_password_without_username() {
    let mut body = b"\x00\x04MQTT\x05\x42\x00\x00\x00".to_vec();
    body.extend(field(b"c"));
    body.extend(field(b"secret"));
    let bytes = packet(0x10, &body);
    let expected = Packet::Connect(Connect {
        keep_alive: 0,
        client_id: text("c"),
        password: Some(Bytes::from_static(b"secret")),
        ..connect(V5)
    });
    assert_wire(&bytes, &expected, V5);
}

#[test]
fn connack_each_version() {
    let accepted = ConnAck {
        session_present: true,
        reason: ReasonCode::Success,
        properties: Properties::default(),
    };
    assert_wire(
        b"\x20\x02\x01\x00",
        &Packet::ConnAck(accepted.clone()),
        V3_1_1,
    );
    assert_wire(b"\x20\x03\x01\x00\x00", &Packet::ConnAck(accepted), V5);

    // MQTT 3.1 has no Session Present flag.
    let refused = ConnAck {
        session_present: false,
        reason: ReasonCode::NotAuthorized,
        properties: Properties::default(),
    };
    assert_wire(b"\x20\x02\x00\x05", &Packet::ConnAck(refused), V3_1);

    // The Session Present flag does not exist in 3.1, so it is not encoded.
    let present = ConnAck {
        session_present: true,
        reason: ReasonCode::Success,
        properties: Properties::default(),
    };
    assert_eq!(
        encode_vec(&Packet::ConnAck(present), V3_1),
        b"\x20\x02\x00\x00"
    );
}

#[test]
fn connack_v3_return_codes_map_to_reason_codes() {
    let expected = [
        ReasonCode::Success,
        ReasonCode::UnsupportedProtocolVersion,
        ReasonCode::ClientIdentifierNotValid,
        ReasonCode::ServerUnavailable,
        ReasonCode::BadUserNameOrPassword,
        ReasonCode::NotAuthorized,
    ];
    for (code, reason) in expected.into_iter().enumerate() {
        let bytes = [0x20, 0x02, 0x00, code as u8];
        match decode_whole(&bytes, V3_1_1).unwrap() {
            Packet::ConnAck(connack) => assert_eq!(connack.reason, reason),
            other => panic!("{other:?}"),
        }
    }
}

#[test]
fn connack_v3_encodes_v5_reasons_as_return_codes() {
    let connack = |reason| {
        Packet::ConnAck(ConnAck {
            session_present: false,
            reason,
            properties: Properties::default(),
        })
    };
    assert_eq!(
        encode_vec(&connack(ReasonCode::Banned), V3_1_1),
        b"\x20\x02\x00\x05"
    );
    assert_eq!(
        encode_vec(&connack(ReasonCode::ServerBusy), V3_1_1),
        b"\x20\x02\x00\x03"
    );
}

#[test]
fn connack_v5_with_properties() {
    let bytes = b"\x20\x08\x00\x00\x05\x22\x00\x0a\x24\x01";
    let expected = Packet::ConnAck(ConnAck {
        session_present: false,
        reason: ReasonCode::Success,
        properties: Properties::from(PropertyValues {
            topic_alias_maximum: Some(10),
            maximum_qos: Some(1),
            ..PropertyValues::default()
        }),
    });
    assert_wire(bytes, &expected, V5);
}

fn publish(qos: QoS, pkid: Option<PacketId>, payload: &'static [u8]) -> Publish {
    Publish {
        dup: false,
        qos,
        retain: false,
        topic: text("t"),
        pkid,
        payload: Bytes::from_static(payload),
        properties: Properties::default(),
    }
}

#[test]
fn publish_qos0_each_version() {
    let expected = Packet::Publish(publish(QoS::AtMostOnce, None, b"hi"));
    for version in [V3_1, V3_1_1] {
        assert_wire(b"\x30\x05\x00\x01thi", &expected, version);
    }
    assert_wire(b"\x30\x06\x00\x01t\x00hi", &expected, V5);
}

#[test]
fn publish_qos1_dup_retain() {
    let expected = Packet::Publish(Publish {
        dup: true,
        retain: true,
        ..publish(QoS::AtLeastOnce, Some(pkid(10)), b"hi")
    });
    assert_wire(b"\x3b\x07\x00\x01t\x00\x0ahi", &expected, V3_1_1);
    assert_wire(b"\x3b\x08\x00\x01t\x00\x0a\x00hi", &expected, V5);
}

#[test]
fn publish_v5_qos2_with_properties() {
    let bytes = b"\x34\x0d\x00\x01t\x00\x0b\x05\x01\x01\x23\x00\x05hi";
    let expected = Packet::Publish(Publish {
        properties: Properties::from(PropertyValues {
            payload_format_indicator: Some(1),
            topic_alias: Some(5),
            ..PropertyValues::default()
        }),
        ..publish(QoS::ExactlyOnce, Some(pkid(11)), b"hi")
    });
    assert_wire(bytes, &expected, V5);
}

#[test]
fn publish_v5_empty_topic_with_alias() {
    let bytes = b"\x30\x06\x00\x00\x03\x23\x00\x01";
    let expected = Packet::Publish(Publish {
        topic: text(""),
        properties: Properties::from(PropertyValues {
            topic_alias: Some(1),
            ..PropertyValues::default()
        }),
        ..publish(QoS::AtMostOnce, None, b"")
    });
    assert_wire(bytes, &expected, V5);
}

#[test]
fn publish_empty_payload() {
    let expected = Packet::Publish(publish(QoS::AtMostOnce, None, b""));
    assert_wire(b"\x30\x03\x00\x01t", &expected, V3_1_1);
    assert_wire(b"\x30\x04\x00\x01t\x00", &expected, V5);
}

#[test]
fn publish_payload_shares_input_buffer() {
    // Another packet follows, so the buffer stays with the caller and both
    // topic and payload are slices of it.
    let mut buf = BytesMut::from(&b"\x30\x07\x00\x03a/bhi\xc0\x00"[..]);
    let start = buf.as_ptr() as usize;
    let packet = decode(&mut buf, Some(V3_1_1), NO_LIMIT).unwrap().unwrap();
    let Packet::Publish(publish) = packet else {
        panic!("not a PUBLISH")
    };
    assert_eq!(publish.topic.as_ptr() as usize, start + 4);
    assert_eq!(publish.payload.as_ptr() as usize, start + 7);
    assert_eq!(&buf[..], b"\xc0\x00");
}

#[test]
fn publish_filling_buffer_takes_it_over() {
    // The packet fills the buffer to its capacity: the payload keeps the
    // buffer's memory and the topic is a copy.
    let mut buf = BytesMut::from(&b"\x30\x07\x00\x03a/bhi"[..]);
    assert_eq!(buf.capacity(), buf.len());
    let start = buf.as_ptr() as usize;
    let packet = decode(&mut buf, Some(V3_1_1), NO_LIMIT).unwrap().unwrap();
    let Packet::Publish(publish) = packet else {
        panic!("not a PUBLISH")
    };
    assert_eq!(publish.topic, "a/b");
    assert_eq!(publish.payload.as_ptr() as usize, start + 7);
    assert_eq!(publish.payload, &b"hi"[..]);
    assert!(buf.is_empty());
}

#[test]
fn acks_v3() {
    let cases = [
        (0x40, Packet::PubAck(PubAck::new(pkid(1)))),
        (0x50, Packet::PubRec(PubRec::new(pkid(1)))),
        (0x62, Packet::PubRel(PubRel::new(pkid(1)))),
        (0x70, Packet::PubComp(PubComp::new(pkid(1)))),
    ];
    for (first, expected) in cases {
        for version in [V3_1, V3_1_1, V5] {
            assert_wire(&[first, 0x02, 0x00, 0x01], &expected, version);
        }
    }
}

#[test]
fn acks_v5_reason_only_and_full_forms() {
    let puback = PubAck {
        reason: ReasonCode::NoMatchingSubscribers,
        ..PubAck::new(pkid(1))
    };
    assert_wire(b"\x40\x03\x00\x01\x10", &Packet::PubAck(puback.clone()), V5);

    // A zero Property Length may be sent; it decodes to the same packet and
    // is left out again on encoding.
    let decoded = decode_whole(b"\x40\x04\x00\x01\x10\x00", V5).unwrap();
    assert_eq!(decoded, Packet::PubAck(puback));

    let pubrel = PubRel {
        reason: ReasonCode::PacketIdentifierNotFound,
        properties: Properties::from(PropertyValues {
            reason_string: Some(text("x")),
            ..PropertyValues::default()
        }),
        ..PubRel::new(pkid(2))
    };
    assert_wire(
        b"\x62\x08\x00\x02\x92\x04\x1f\x00\x01x",
        &Packet::PubRel(pubrel),
        V5,
    );
}

#[test]
fn acks_v3_ignore_reason_on_encode() {
    let puback = PubAck {
        reason: ReasonCode::QuotaExceeded,
        ..PubAck::new(pkid(1))
    };
    assert_eq!(
        encode_vec(&Packet::PubAck(puback), V3_1_1),
        b"\x40\x02\x00\x01"
    );
}

#[test]
fn subscribe_v3() {
    let bytes = b"\x82\x0e\x00\x01\x00\x03a/#\x01\x00\x03+/b\x02";
    let expected = Packet::Subscribe(Subscribe {
        pkid: pkid(1),
        filters: vec![
            SubscribeFilter::new("a/#", QoS::AtLeastOnce),
            SubscribeFilter::new("+/b", QoS::ExactlyOnce),
        ],
        properties: Properties::default(),
    });
    assert_wire(bytes, &expected, V3_1_1);
    assert_wire(bytes, &expected, V3_1);
}

#[test]
fn subscribe_v5_options_and_identifier() {
    let bytes = b"\x82\x0b\x00\x01\x02\x0b\x07\x00\x03a/#\x2d";
    let expected = Packet::Subscribe(Subscribe {
        pkid: pkid(1),
        filters: vec![SubscribeFilter {
            no_local: true,
            retain_as_published: true,
            retain_handling: RetainHandling::DoNotSend,
            ..SubscribeFilter::new("a/#", QoS::AtLeastOnce)
        }],
        properties: Properties::from(PropertyValues {
            subscription_identifiers: vec![7],
            ..PropertyValues::default()
        }),
    });
    assert_wire(bytes, &expected, V5);
}

#[test]
fn subscribe_v5_shared_filter() {
    let bytes = b"\x82\x10\x00\x01\x00\x00\x0a$share/g/a\x00";
    let expected = Packet::Subscribe(Subscribe {
        pkid: pkid(1),
        filters: vec![SubscribeFilter::new("$share/g/a", QoS::AtMostOnce)],
        properties: Properties::default(),
    });
    assert_wire(bytes, &expected, V5);
}

#[test]
fn suback_each_version() {
    let v3 = Packet::SubAck(SubAck {
        pkid: pkid(1),
        reasons: vec![
            ReasonCode::Success,
            ReasonCode::GrantedQoS2,
            ReasonCode::UnspecifiedError,
        ],
        properties: Properties::default(),
    });
    assert_wire(b"\x90\x05\x00\x01\x00\x02\x80", &v3, V3_1_1);
    assert_wire(b"\x90\x05\x00\x01\x00\x02\x80", &v3, V3_1);

    let v5 = Packet::SubAck(SubAck {
        pkid: pkid(1),
        reasons: vec![ReasonCode::GrantedQoS1, ReasonCode::NotAuthorized],
        properties: Properties::default(),
    });
    assert_wire(b"\x90\x05\x00\x01\x00\x01\x87", &v5, V5);
}

#[test]
fn suback_v3_maps_errors_to_0x80() {
    let suback = Packet::SubAck(SubAck {
        pkid: pkid(1),
        reasons: vec![ReasonCode::NotAuthorized, ReasonCode::GrantedQoS1],
        properties: Properties::default(),
    });
    assert_eq!(encode_vec(&suback, V3_1_1), b"\x90\x04\x00\x01\x80\x01");
}

#[test]
fn unsubscribe_each_version() {
    let expected = Packet::Unsubscribe(Unsubscribe {
        pkid: pkid(1),
        filters: vec![text("a")],
        properties: Properties::default(),
    });
    assert_wire(b"\xa2\x05\x00\x01\x00\x01a", &expected, V3_1_1);
    assert_wire(b"\xa2\x05\x00\x01\x00\x01a", &expected, V3_1);
    assert_wire(b"\xa2\x06\x00\x01\x00\x00\x01a", &expected, V5);
}

#[test]
fn unsuback_each_version() {
    let v3 = Packet::UnsubAck(UnsubAck {
        pkid: pkid(1),
        reasons: vec![],
        properties: Properties::default(),
    });
    assert_wire(b"\xb0\x02\x00\x01", &v3, V3_1_1);
    assert_wire(b"\xb0\x02\x00\x01", &v3, V3_1);

    let v5 = Packet::UnsubAck(UnsubAck {
        pkid: pkid(1),
        reasons: vec![ReasonCode::NoSubscriptionExisted],
        properties: Properties::default(),
    });
    assert_wire(b"\xb0\x04\x00\x01\x00\x11", &v5, V5);
}

#[test]
fn ping_each_version() {
    for version in [V3_1, V3_1_1, V5] {
        assert_wire(b"\xc0\x00", &Packet::PingReq, version);
        assert_wire(b"\xd0\x00", &Packet::PingResp, version);
    }
}

#[test]
fn disconnect_each_version() {
    for version in [V3_1, V3_1_1, V5] {
        assert_wire(
            b"\xe0\x00",
            &Packet::Disconnect(Disconnect::default()),
            version,
        );
    }
    let with_will = Disconnect {
        reason: ReasonCode::DisconnectWithWillMessage,
        properties: Properties::default(),
    };
    assert_wire(b"\xe0\x01\x04", &Packet::Disconnect(with_will.clone()), V5);
    // 3.1.1 DISCONNECT has no body, whatever the reason.
    assert_eq!(
        encode_vec(&Packet::Disconnect(with_will), V3_1_1),
        b"\xe0\x00"
    );

    let with_reason_string = Disconnect {
        reason: ReasonCode::DisconnectWithWillMessage,
        properties: Properties::from(PropertyValues {
            reason_string: Some(text("x")),
            ..PropertyValues::default()
        }),
    };
    let bytes = b"\xe0\x06\x04\x04\x1f\x00\x01x";
    assert_wire(bytes, &Packet::Disconnect(with_reason_string), V5);
}

#[test]
fn auth_v5() {
    assert_wire(b"\xf0\x00", &Packet::Auth(Auth::default()), V5);
    let continue_auth = Auth {
        reason: ReasonCode::ContinueAuthentication,
        properties: Properties::from(PropertyValues {
            authentication_method: Some(text("SCRA")),
            ..PropertyValues::default()
        }),
    };
    let bytes = b"\xf0\x09\x18\x07\x15\x00\x04SCRA";
    assert_wire(bytes, &Packet::Auth(continue_auth), V5);
}

/// Builds a QoS 0 PUBLISH to topic "t" whose remaining length is `remaining`.
fn publish_with_remaining_length(remaining: usize) -> Packet {
    let payload = vec![b'x'; remaining - 3];
    Packet::Publish(Publish {
        payload: Bytes::from(payload),
        ..publish(QoS::AtMostOnce, None, b"")
    })
}

#[test]
fn remaining_length_boundaries() {
    let cases: [(usize, &[u8]); 6] = [
        (127, &[0x7f]),
        (128, &[0x80, 0x01]),
        (16_383, &[0xff, 0x7f]),
        (16_384, &[0x80, 0x80, 0x01]),
        (2_097_151, &[0xff, 0xff, 0x7f]),
        (2_097_152, &[0x80, 0x80, 0x80, 0x01]),
    ];
    for (remaining, length_bytes) in cases {
        let packet = publish_with_remaining_length(remaining);
        let bytes = encode_vec(&packet, V3_1_1);
        assert_eq!(
            &bytes[1..1 + length_bytes.len()],
            length_bytes,
            "{remaining}"
        );
        assert_eq!(bytes.len(), 1 + length_bytes.len() + remaining);
        let decoded = decode_whole(&bytes, V3_1_1).unwrap();
        assert_eq!(decoded, packet, "{remaining}");
    }
}

#[test]
fn remaining_length_maximum_header_is_read() {
    // 268435455 announced, nothing of the body present.
    let header = [0x30, 0xff, 0xff, 0xff, 0x7f];
    let mut buf = BytesMut::from(&header[..]);
    assert_eq!(decode(&mut buf, Some(V3_1_1), NO_LIMIT), Ok(None));
    assert_eq!(buf.len(), header.len(), "nothing consumed while waiting");

    let error = decode(&mut buf, Some(V3_1_1), 268_435_459).unwrap_err();
    assert_eq!(
        error,
        DecodeError::PacketTooLarge {
            size: 268_435_460,
            max: 268_435_459
        }
    );
    let exact = decode(&mut buf, Some(V3_1_1), 268_435_460);
    assert_eq!(exact, Ok(None));
}

#[test]
fn maximum_length_topic_and_client_id() {
    let long = "x".repeat(65_535);
    let packet = Packet::Publish(Publish {
        topic: text(&long),
        ..publish(QoS::AtMostOnce, None, b"p")
    });
    for version in [V3_1_1, V5] {
        let bytes = encode_vec(&packet, version);
        assert_eq!(&bytes[4..6], [0xff, 0xff]);
        assert_eq!(decode_whole(&bytes, version).unwrap(), packet);
    }

    let connect = Packet::Connect(Connect {
        client_id: text(&long),
        username: Some(text(&long)),
        password: Some(Bytes::from(vec![0; 65_535])),
        ..connect(V5)
    });
    let bytes = encode_vec(&connect, V5);
    assert_eq!(decode_whole(&bytes, V5).unwrap(), connect);
}

#[test]
fn encoded_len_matches_for_every_type() {
    let packets = [
        Packet::Connect(connect(V5)),
        Packet::PingReq,
        Packet::Disconnect(Disconnect::default()),
        Packet::Auth(Auth::default()),
        Packet::PubAck(PubAck::new(pkid(3))),
    ];
    for packet in packets {
        // encode_vec asserts that encoded_len agrees.
        encode_vec(&packet, V5);
    }
}
