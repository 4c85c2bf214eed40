//! proptest strategies for valid packets of every type and version.

use std::num::NonZeroU16;

use codec::reason::ALL;
use codec::*;
use proptest::collection::vec;
use proptest::option;
use proptest::prelude::*;

use ProtocolVersion::{V3_1, V3_1_1, V5};

pub fn text(pattern: &'static str) -> impl Strategy<Value = ByteString> {
    pattern.prop_map(ByteString::from)
}

/// Any UTF-8 string without U+0000, including multi-byte characters.
pub fn any_text() -> impl Strategy<Value = ByteString> {
    text("[a-zA-Z0-9 /é€😀\u{feff}]{0,12}")
}

pub fn topic_name() -> impl Strategy<Value = ByteString> {
    text("[a-z0-9é$]{1,6}(/[a-z0-9é]{0,6}){0,3}")
}

pub fn topic_filter() -> impl Strategy<Value = ByteString> {
    prop_oneof![
        text("#"),
        text("([a-z]{1,4}|\\+)(/([a-z]{0,4}|\\+)){0,3}(/#)?"),
        topic_name(),
    ]
}

pub fn binary() -> impl Strategy<Value = Bytes> {
    vec(any::<u8>(), 0..24).prop_map(Bytes::from)
}

pub fn pkid() -> impl Strategy<Value = PacketId> {
    (1..=u16::MAX).prop_map(|value| NonZeroU16::new(value).unwrap())
}

pub fn qos() -> impl Strategy<Value = QoS> {
    prop_oneof![
        Just(QoS::AtMostOnce),
        Just(QoS::AtLeastOnce),
        Just(QoS::ExactlyOnce)
    ]
}

pub fn reason(kind: ReasonKind) -> impl Strategy<Value = ReasonCode> {
    let allowed: Vec<ReasonCode> = ALL
        .into_iter()
        .filter(|reason| reason.allowed_in(kind))
        .collect();
    proptest::sample::select(allowed)
}

pub fn flag() -> impl Strategy<Value = Option<u8>> {
    option::of(0..=1u8)
}

/// Properties with every field random and valid; [`restrict`] then keeps
/// only those a packet allows.
pub fn any_properties() -> impl Strategy<Value = PropertyValues> {
    let publication = (
        flag(),
        option::of(any::<u32>()),
        option::of(any_text()),
        option::of(topic_name()),
        option::of(binary()),
        vec(1..=VARIABLE_BYTE_INTEGER_MAX, 0..3),
        option::of(1..=u16::MAX),
        vec((any_text(), any_text()), 0..3),
    );
    let session = (
        option::of(any::<u32>()),
        option::of(any_text()),
        option::of(any::<u16>()),
        option::of(any_text()),
        option::of(binary()),
        flag(),
        option::of(any::<u32>()),
        flag(),
        option::of(any_text()),
        option::of(any_text()),
        option::of(any_text()),
    );
    let limits = (
        option::of(1..=u16::MAX),
        option::of(any::<u16>()),
        flag(),
        flag(),
        option::of(1..=u32::MAX),
        flag(),
        flag(),
        flag(),
    );
    (publication, session, limits).prop_map(|(publication, session, limits)| {
        let (format, expiry, content_type, response_topic, correlation, ids, alias, user) =
            publication;
        let (
            session_expiry,
            assigned,
            keep_alive,
            method,
            data,
            problem,
            will_delay,
            response,
            response_information,
            reference,
            reason,
        ) = session;
        let (receive, alias_max, max_qos, retain, packet_size, wildcard, ids_available, shared) =
            limits;
        PropertyValues {
            payload_format_indicator: format,
            message_expiry_interval: expiry,
            content_type,
            response_topic,
            correlation_data: correlation,
            subscription_identifiers: ids,
            session_expiry_interval: session_expiry,
            assigned_client_identifier: assigned,
            server_keep_alive: keep_alive,
            authentication_method: method,
            authentication_data: data,
            request_problem_information: problem,
            will_delay_interval: will_delay,
            request_response_information: response,
            response_information,
            server_reference: reference,
            reason_string: reason,
            receive_maximum: receive,
            topic_alias_maximum: alias_max,
            topic_alias: alias,
            maximum_qos: max_qos,
            retain_available: retain,
            user_properties: user,
            maximum_packet_size: packet_size,
            wildcard_subscription_available: wildcard,
            subscription_identifier_available: ids_available,
            shared_subscription_available: shared,
        }
    })
}

/// The packet a property list is generated for.
#[derive(Clone, Copy)]
pub enum Context {
    Connect,
    Will,
    ConnAck,
    Publish,
    Ack,
    Subscribe,
    Unsubscribe,
    Disconnect,
    Auth,
}

/// Keeps the properties that `context` allows, and none before 5.0.
pub fn restrict(all: PropertyValues, context: Context, version: ProtocolVersion) -> Properties {
    let mut restricted = PropertyValues::default();
    if !version.is_v5() {
        return Properties::default();
    }
    restricted.user_properties = all.user_properties;
    match context {
        Context::Connect => {
            restricted.session_expiry_interval = all.session_expiry_interval;
            restricted.receive_maximum = all.receive_maximum;
            restricted.maximum_packet_size = all.maximum_packet_size;
            restricted.topic_alias_maximum = all.topic_alias_maximum;
            restricted.request_response_information = all.request_response_information;
            restricted.request_problem_information = all.request_problem_information;
            restricted.authentication_method = all.authentication_method;
            restricted.authentication_data = all.authentication_data;
        }
        Context::Will | Context::Publish => {
            restricted.payload_format_indicator = all.payload_format_indicator;
            restricted.message_expiry_interval = all.message_expiry_interval;
            restricted.content_type = all.content_type;
            restricted.response_topic = all.response_topic;
            restricted.correlation_data = all.correlation_data;
            if matches!(context, Context::Will) {
                restricted.will_delay_interval = all.will_delay_interval;
            } else {
                restricted.topic_alias = all.topic_alias;
                restricted.subscription_identifiers = all.subscription_identifiers;
            }
        }
        Context::ConnAck => {
            let user_properties = restricted.user_properties;
            restricted = PropertyValues {
                payload_format_indicator: None,
                message_expiry_interval: None,
                content_type: None,
                response_topic: None,
                correlation_data: None,
                subscription_identifiers: Vec::new(),
                request_problem_information: None,
                will_delay_interval: None,
                request_response_information: None,
                topic_alias: None,
                user_properties,
                ..all
            };
        }
        Context::Ack => restricted.reason_string = all.reason_string,
        Context::Subscribe => {
            restricted.subscription_identifiers = all.subscription_identifiers;
            restricted.subscription_identifiers.truncate(1);
        }
        Context::Unsubscribe => {}
        Context::Disconnect => {
            restricted.session_expiry_interval = all.session_expiry_interval;
            restricted.reason_string = all.reason_string;
            restricted.server_reference = all.server_reference;
        }
        Context::Auth => {
            restricted.authentication_method = all.authentication_method;
            restricted.authentication_data = all.authentication_data;
            restricted.reason_string = all.reason_string;
        }
    }
    Properties::from(restricted)
}

pub fn properties(context: Context, version: ProtocolVersion) -> impl Strategy<Value = Properties> {
    any_properties().prop_map(move |all| restrict(all, context, version))
}

/// Clears a Payload Format Indicator of 1 on a payload that is not UTF-8.
pub fn consistent_format(mut properties: Properties, payload: &[u8]) -> Properties {
    if properties.payload_format_indicator == Some(1) && std::str::from_utf8(payload).is_err() {
        properties.payload_format_indicator = Some(0);
    }
    properties
}

pub fn connect(version: ProtocolVersion) -> impl Strategy<Value = Packet> {
    let will = (
        topic_name(),
        binary(),
        qos(),
        any::<bool>(),
        properties(Context::Will, version),
    )
        .prop_map(|(topic, payload, qos, retain, properties)| LastWill {
            properties: consistent_format(properties, &payload),
            topic,
            payload,
            qos,
            retain,
        });
    let client_id = if version == V3_1 {
        text("[a-zA-Z0-9]{1,23}").boxed()
    } else {
        any_text().boxed()
    };
    (
        any::<bool>(),
        any::<u16>(),
        client_id,
        option::of(will),
        option::of(any_text()),
        option::of(binary()),
        properties(Context::Connect, version),
    )
        .prop_map(
            move |(clean_start, keep_alive, client_id, will, username, password, properties)| {
                // 3.1.1 needs Clean Session for an empty client id, and a
                // user name for a password.
                let clean_start = clean_start || (version == V3_1_1 && client_id.is_empty());
                let password = if version.is_v5() || username.is_some() {
                    password
                } else {
                    None
                };
                Packet::Connect(Connect {
                    protocol: version,
                    clean_start,
                    keep_alive,
                    client_id,
                    will,
                    username,
                    password,
                    properties,
                })
            },
        )
}

pub fn connack(version: ProtocolVersion) -> impl Strategy<Value = Packet> {
    let reason = if version.is_v5() {
        reason(ReasonKind::ConnAck).boxed()
    } else {
        (0..=5u8)
            .prop_map(|code| ReasonCode::from_v3_connack(code).unwrap())
            .boxed()
    };
    (any::<bool>(), reason, properties(Context::ConnAck, version)).prop_map(
        move |(session_present, reason, properties)| {
            Packet::ConnAck(ConnAck {
                session_present: session_present && version != V3_1,
                reason,
                properties,
            })
        },
    )
}

pub fn publish(version: ProtocolVersion) -> impl Strategy<Value = Packet> {
    (
        any::<bool>(),
        qos(),
        any::<bool>(),
        topic_name(),
        pkid(),
        binary(),
        properties(Context::Publish, version),
    )
        .prop_map(
            move |(dup, qos, retain, topic, pkid, payload, properties)| {
                let at_most_once = qos == QoS::AtMostOnce;
                // With a Topic Alias, 5.0 may leave the topic name empty.
                let topic = if properties.topic_alias.is_some() && dup {
                    ByteString::new()
                } else {
                    topic
                };
                Packet::Publish(Publish {
                    dup: dup && !at_most_once,
                    qos,
                    retain,
                    topic,
                    pkid: (!at_most_once).then_some(pkid),
                    properties: consistent_format(properties, &payload),
                    payload,
                })
            },
        )
}

pub fn ack(version: ProtocolVersion) -> impl Strategy<Value = Packet> {
    let kinds = (0..4usize, pkid(), properties(Context::Ack, version));
    let reasons = (
        reason(ReasonKind::PubAckOrPubRec),
        reason(ReasonKind::PubRelOrPubComp),
    );
    (kinds, reasons).prop_map(
        move |((which, pkid, properties), (pub_reason, rel_reason))| {
            let v5 = version.is_v5();
            let pub_reason = if v5 { pub_reason } else { ReasonCode::Success };
            let rel_reason = if v5 { rel_reason } else { ReasonCode::Success };
            match which {
                0 => Packet::PubAck(PubAck {
                    pkid,
                    reason: pub_reason,
                    properties,
                }),
                1 => Packet::PubRec(PubRec {
                    pkid,
                    reason: pub_reason,
                    properties,
                }),
                2 => Packet::PubRel(PubRel {
                    pkid,
                    reason: rel_reason,
                    properties,
                }),
                _ => Packet::PubComp(PubComp {
                    pkid,
                    reason: rel_reason,
                    properties,
                }),
            }
        },
    )
}

pub fn subscribe_filter(version: ProtocolVersion) -> impl Strategy<Value = SubscribeFilter> {
    (
        topic_filter(),
        qos(),
        any::<bool>(),
        any::<bool>(),
        0..3u8,
        any::<bool>(),
    )
        .prop_map(
            move |(filter, qos, no_local, retain_as_published, handling, shared)| {
                if !version.is_v5() {
                    return SubscribeFilter::new(filter, qos);
                }
                let retain_handling = match handling {
                    0 => RetainHandling::SendAtSubscribe,
                    1 => RetainHandling::SendIfNew,
                    _ => RetainHandling::DoNotSend,
                };
                // No Local is a Protocol Error on a shared subscription.
                let (filter, no_local) = if shared {
                    (ByteString::from(format!("$share/group/{filter}")), false)
                } else {
                    (filter, no_local)
                };
                SubscribeFilter {
                    filter,
                    qos,
                    no_local,
                    retain_as_published,
                    retain_handling,
                }
            },
        )
}

pub fn subscribe(version: ProtocolVersion) -> impl Strategy<Value = Packet> {
    (
        pkid(),
        vec(subscribe_filter(version), 1..5),
        properties(Context::Subscribe, version),
    )
        .prop_map(|(pkid, filters, properties)| {
            Packet::Subscribe(Subscribe {
                pkid,
                filters,
                properties,
            })
        })
}

pub fn suback(version: ProtocolVersion) -> impl Strategy<Value = Packet> {
    let reason = if version.is_v5() {
        reason(ReasonKind::SubAck).boxed()
    } else {
        proptest::sample::select(vec![
            ReasonCode::Success,
            ReasonCode::GrantedQoS1,
            ReasonCode::GrantedQoS2,
            ReasonCode::UnspecifiedError,
        ])
        .boxed()
    };
    (pkid(), vec(reason, 1..5), properties(Context::Ack, version)).prop_map(
        |(pkid, reasons, properties)| {
            Packet::SubAck(SubAck {
                pkid,
                reasons,
                properties,
            })
        },
    )
}

pub fn unsubscribe(version: ProtocolVersion) -> impl Strategy<Value = Packet> {
    (
        pkid(),
        vec(topic_filter(), 1..5),
        properties(Context::Unsubscribe, version),
    )
        .prop_map(|(pkid, filters, properties)| {
            Packet::Unsubscribe(Unsubscribe {
                pkid,
                filters,
                properties,
            })
        })
}

pub fn unsuback(version: ProtocolVersion) -> impl Strategy<Value = Packet> {
    let reasons = vec(reason(ReasonKind::UnsubAck), 0..5);
    (pkid(), reasons, properties(Context::Ack, version)).prop_map(
        move |(pkid, reasons, properties)| {
            let reasons = if version.is_v5() { reasons } else { Vec::new() };
            Packet::UnsubAck(UnsubAck {
                pkid,
                reasons,
                properties,
            })
        },
    )
}

pub fn disconnect(version: ProtocolVersion) -> impl Strategy<Value = Packet> {
    (
        reason(ReasonKind::Disconnect),
        properties(Context::Disconnect, version),
    )
        .prop_map(move |(reason, properties)| {
            let reason = if version.is_v5() {
                reason
            } else {
                ReasonCode::Success
            };
            Packet::Disconnect(Disconnect { reason, properties })
        })
}

pub fn auth() -> impl Strategy<Value = Packet> {
    (reason(ReasonKind::Auth), properties(Context::Auth, V5))
        .prop_map(|(reason, properties)| Packet::Auth(Auth { reason, properties }))
}

pub fn any_packet(version: ProtocolVersion) -> BoxedStrategy<Packet> {
    let common = prop_oneof![
        connect(version),
        connack(version),
        publish(version),
        ack(version),
        subscribe(version),
        suback(version),
        unsubscribe(version),
        unsuback(version),
        Just(Packet::PingReq),
        Just(Packet::PingResp),
        disconnect(version),
    ];
    if version.is_v5() {
        prop_oneof![10 => common, 1 => auth()].boxed()
    } else {
        common.boxed()
    }
}
