//! MQTT 5.0 properties.
//!
//! [`PropertyValues`] carries every property. Each packet type allows only
//! some of them, which the decoder checks and the encoder trusts. Packets hold
//! them through [`Properties`], a pointer-sized handle that allocates only
//! when a property is set, because most packets carry none.

use std::fmt;
use std::ops::{Deref, DerefMut};

use bytes::{BufMut, Bytes, BytesMut};
use bytestring::ByteString;
use nom::bytes::complete::take;
use nom::number::complete::{be_u16, be_u32, be_u8};
use nom::{Err, Parser};

use crate::error::DecodeError;
use crate::topic::valid_topic_name;
use crate::wire::{
    binary, binary_len, fail, put_binary, put_var_int, string, var_int, var_int_len, Res,
};

/// The properties of one packet or will.
///
/// Dereferences to [`PropertyValues`], so fields read as
/// `packet.properties.topic_alias`. While no property is set it holds no
/// allocation and dereferences to a shared empty value. The first mutable
/// access allocates the values, even one that only writes `None`.
/// Build a handle with properties set from a [`PropertyValues`] literal:
/// `Properties::from(PropertyValues { topic_alias: Some(1), ..Default::default() })`.
#[derive(Default)]
pub struct Properties(Option<Box<PropertyValues>>);

/// The value every absent [`Properties`] dereferences to.
static EMPTY: PropertyValues = PropertyValues::EMPTY;

impl Properties {
    /// Returns the values by value, or empty values if none were set.
    pub fn into_values(self) -> PropertyValues {
        match self.0 {
            Some(values) => *values,
            None => PropertyValues::default(),
        }
    }

    /// Returns the values if any were allocated, so that a field can be
    /// cleared without allocating for a packet that carries none.
    pub fn values_mut(&mut self) -> Option<&mut PropertyValues> {
        self.0.as_deref_mut()
    }

    /// True if no property is set.
    pub fn is_empty(&self) -> bool {
        self.0.as_deref().is_none_or(PropertyValues::is_empty)
    }

    /// Returns the encoded length of the property list, without its Property
    /// Length.
    pub fn encoded_len(&self) -> usize {
        self.0.as_deref().map_or(0, PropertyValues::encoded_len)
    }
}

impl From<PropertyValues> for Properties {
    /// Wraps `values`, without an allocation when none is set.
    fn from(values: PropertyValues) -> Self {
        if values.is_empty() {
            return Properties(None);
        }
        Properties(Some(Box::new(values)))
    }
}

impl Deref for Properties {
    type Target = PropertyValues;

    fn deref(&self) -> &PropertyValues {
        self.0.as_deref().unwrap_or(&EMPTY)
    }
}

impl DerefMut for Properties {
    /// Allocates empty values first if there are none.
    fn deref_mut(&mut self) -> &mut PropertyValues {
        self.0.get_or_insert_with(Box::default)
    }
}

impl Clone for Properties {
    /// Clones the values, or leaves the clone unallocated when none is set,
    /// even if a mutable access allocated them.
    fn clone(&self) -> Self {
        match &self.0 {
            Some(values) if !values.is_empty() => Properties(Some(values.clone())),
            _ => Properties(None),
        }
    }
}

impl PartialEq for Properties {
    /// Compares the values, so an allocated empty set equals an absent one.
    fn eq(&self, other: &Self) -> bool {
        **self == **other
    }
}

impl Eq for Properties {}

impl fmt::Debug for Properties {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}

/// The value of every property of one packet or will. Absent properties are
/// `None` or empty. Only User Property and Subscription Identifier may repeat.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PropertyValues {
    /// 0x01, PUBLISH and will: 0 means unspecified bytes, 1 means UTF-8.
    pub payload_format_indicator: Option<u8>,
    /// 0x02, PUBLISH and will: lifetime in seconds.
    pub message_expiry_interval: Option<u32>,
    /// 0x03, PUBLISH and will.
    pub content_type: Option<ByteString>,
    /// 0x08, PUBLISH and will.
    pub response_topic: Option<ByteString>,
    /// 0x09, PUBLISH and will.
    pub correlation_data: Option<Bytes>,
    /// 0x0B: one in SUBSCRIBE; one or more in a forwarded PUBLISH.
    pub subscription_identifiers: Vec<u32>,
    /// 0x11, CONNECT, CONNACK and DISCONNECT: seconds.
    pub session_expiry_interval: Option<u32>,
    /// 0x12, CONNACK.
    pub assigned_client_identifier: Option<ByteString>,
    /// 0x13, CONNACK: seconds.
    pub server_keep_alive: Option<u16>,
    /// 0x15, CONNECT, CONNACK and AUTH.
    pub authentication_method: Option<ByteString>,
    /// 0x16, CONNECT, CONNACK and AUTH.
    pub authentication_data: Option<Bytes>,
    /// 0x17, CONNECT.
    pub request_problem_information: Option<u8>,
    /// 0x18, will only: seconds.
    pub will_delay_interval: Option<u32>,
    /// 0x19, CONNECT.
    pub request_response_information: Option<u8>,
    /// 0x1A, CONNACK.
    pub response_information: Option<ByteString>,
    /// 0x1C, CONNACK and DISCONNECT.
    pub server_reference: Option<ByteString>,
    /// 0x1F, every packet with a reason code.
    pub reason_string: Option<ByteString>,
    /// 0x21, CONNECT and CONNACK.
    pub receive_maximum: Option<u16>,
    /// 0x22, CONNECT and CONNACK.
    pub topic_alias_maximum: Option<u16>,
    /// 0x23, PUBLISH.
    pub topic_alias: Option<u16>,
    /// 0x24, CONNACK.
    pub maximum_qos: Option<u8>,
    /// 0x25, CONNACK.
    pub retain_available: Option<u8>,
    /// 0x26, every packet that has properties, in order.
    pub user_properties: Vec<(ByteString, ByteString)>,
    /// 0x27, CONNECT and CONNACK: bytes.
    pub maximum_packet_size: Option<u32>,
    /// 0x28, CONNACK.
    pub wildcard_subscription_available: Option<u8>,
    /// 0x29, CONNACK.
    pub subscription_identifier_available: Option<u8>,
    /// 0x2A, CONNACK.
    pub shared_subscription_available: Option<u8>,
}

impl PropertyValues {
    /// No property set, as a constant.
    const EMPTY: PropertyValues = PropertyValues {
        payload_format_indicator: None,
        message_expiry_interval: None,
        content_type: None,
        response_topic: None,
        correlation_data: None,
        subscription_identifiers: Vec::new(),
        session_expiry_interval: None,
        assigned_client_identifier: None,
        server_keep_alive: None,
        authentication_method: None,
        authentication_data: None,
        request_problem_information: None,
        will_delay_interval: None,
        request_response_information: None,
        response_information: None,
        server_reference: None,
        reason_string: None,
        receive_maximum: None,
        topic_alias_maximum: None,
        topic_alias: None,
        maximum_qos: None,
        retain_available: None,
        user_properties: Vec::new(),
        maximum_packet_size: None,
        wildcard_subscription_available: None,
        subscription_identifier_available: None,
        shared_subscription_available: None,
    };
}

/// The packet, or the will of a CONNECT, that a property list belongs to.
/// Each allows its own set of properties (MQTT 5.0 section 2.2.2.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PropertyContext {
    Connect,
    Will,
    ConnAck,
    Publish,
    /// PUBACK, PUBREC, PUBREL and PUBCOMP.
    Ack,
    Subscribe,
    SubAck,
    Unsubscribe,
    UnsubAck,
    Disconnect,
    Auth,
}

/// Property identifiers.
mod id {
    pub const PAYLOAD_FORMAT_INDICATOR: u32 = 0x01;
    pub const MESSAGE_EXPIRY_INTERVAL: u32 = 0x02;
    pub const CONTENT_TYPE: u32 = 0x03;
    pub const RESPONSE_TOPIC: u32 = 0x08;
    pub const CORRELATION_DATA: u32 = 0x09;
    pub const SUBSCRIPTION_IDENTIFIER: u32 = 0x0B;
    pub const SESSION_EXPIRY_INTERVAL: u32 = 0x11;
    pub const ASSIGNED_CLIENT_IDENTIFIER: u32 = 0x12;
    pub const SERVER_KEEP_ALIVE: u32 = 0x13;
    pub const AUTHENTICATION_METHOD: u32 = 0x15;
    pub const AUTHENTICATION_DATA: u32 = 0x16;
    pub const REQUEST_PROBLEM_INFORMATION: u32 = 0x17;
    pub const WILL_DELAY_INTERVAL: u32 = 0x18;
    pub const REQUEST_RESPONSE_INFORMATION: u32 = 0x19;
    pub const RESPONSE_INFORMATION: u32 = 0x1A;
    pub const SERVER_REFERENCE: u32 = 0x1C;
    pub const REASON_STRING: u32 = 0x1F;
    pub const RECEIVE_MAXIMUM: u32 = 0x21;
    pub const TOPIC_ALIAS_MAXIMUM: u32 = 0x22;
    pub const TOPIC_ALIAS: u32 = 0x23;
    pub const MAXIMUM_QOS: u32 = 0x24;
    pub const RETAIN_AVAILABLE: u32 = 0x25;
    pub const USER_PROPERTY: u32 = 0x26;
    pub const MAXIMUM_PACKET_SIZE: u32 = 0x27;
    pub const WILDCARD_SUBSCRIPTION_AVAILABLE: u32 = 0x28;
    pub const SUBSCRIPTION_IDENTIFIER_AVAILABLE: u32 = 0x29;
    pub const SHARED_SUBSCRIPTION_AVAILABLE: u32 = 0x2A;
}

const fn mask(ids: &[u32]) -> u64 {
    let mut mask = 0;
    let mut index = 0;
    while index < ids.len() {
        mask |= 1 << ids[index];
        index += 1;
    }
    mask
}

impl PropertyContext {
    /// Returns the allowed property identifiers as a bit set.
    fn allowed(self) -> u64 {
        use id::*;
        match self {
            PropertyContext::Connect => mask(&[
                SESSION_EXPIRY_INTERVAL,
                RECEIVE_MAXIMUM,
                MAXIMUM_PACKET_SIZE,
                TOPIC_ALIAS_MAXIMUM,
                REQUEST_RESPONSE_INFORMATION,
                REQUEST_PROBLEM_INFORMATION,
                USER_PROPERTY,
                AUTHENTICATION_METHOD,
                AUTHENTICATION_DATA,
            ]),
            PropertyContext::Will => mask(&[
                WILL_DELAY_INTERVAL,
                PAYLOAD_FORMAT_INDICATOR,
                MESSAGE_EXPIRY_INTERVAL,
                CONTENT_TYPE,
                RESPONSE_TOPIC,
                CORRELATION_DATA,
                USER_PROPERTY,
            ]),
            PropertyContext::ConnAck => mask(&[
                SESSION_EXPIRY_INTERVAL,
                RECEIVE_MAXIMUM,
                MAXIMUM_QOS,
                RETAIN_AVAILABLE,
                MAXIMUM_PACKET_SIZE,
                ASSIGNED_CLIENT_IDENTIFIER,
                TOPIC_ALIAS_MAXIMUM,
                REASON_STRING,
                USER_PROPERTY,
                WILDCARD_SUBSCRIPTION_AVAILABLE,
                SUBSCRIPTION_IDENTIFIER_AVAILABLE,
                SHARED_SUBSCRIPTION_AVAILABLE,
                SERVER_KEEP_ALIVE,
                RESPONSE_INFORMATION,
                SERVER_REFERENCE,
                AUTHENTICATION_METHOD,
                AUTHENTICATION_DATA,
            ]),
            PropertyContext::Publish => mask(&[
                PAYLOAD_FORMAT_INDICATOR,
                MESSAGE_EXPIRY_INTERVAL,
                TOPIC_ALIAS,
                RESPONSE_TOPIC,
                CORRELATION_DATA,
                USER_PROPERTY,
                SUBSCRIPTION_IDENTIFIER,
                CONTENT_TYPE,
            ]),
            PropertyContext::Ack | PropertyContext::SubAck | PropertyContext::UnsubAck => {
                mask(&[REASON_STRING, USER_PROPERTY])
            }
            PropertyContext::Subscribe => mask(&[SUBSCRIPTION_IDENTIFIER, USER_PROPERTY]),
            PropertyContext::Unsubscribe => mask(&[USER_PROPERTY]),
            PropertyContext::Disconnect => mask(&[
                SESSION_EXPIRY_INTERVAL,
                REASON_STRING,
                USER_PROPERTY,
                SERVER_REFERENCE,
            ]),
            PropertyContext::Auth => mask(&[
                AUTHENTICATION_METHOD,
                AUTHENTICATION_DATA,
                REASON_STRING,
                USER_PROPERTY,
            ]),
        }
    }

    /// True if the property may appear more than once: User Property always,
    /// Subscription Identifier only in PUBLISH (MQTT 5.0 section 3.8.2.1.2).
    fn may_repeat(self, id: u32) -> bool {
        id == id::USER_PROPERTY
            || (id == id::SUBSCRIPTION_IDENTIFIER && self == PropertyContext::Publish)
    }
}

/// Error details that name the property, as static strings.
macro_rules! property_details {
    ($($id:path => $name:literal,)*) => {
        fn not_allowed_detail(id: u32) -> &'static str {
            match id {
                $($id => concat!($name, " is not allowed in this packet"),)*
                _ => "unknown property identifier",
            }
        }

        fn repeated_detail(id: u32) -> &'static str {
            match id {
                $($id => concat!($name, " appears more than once"),)*
                _ => "property appears more than once",
            }
        }
    };
}

property_details! {
    id::PAYLOAD_FORMAT_INDICATOR => "Payload Format Indicator",
    id::MESSAGE_EXPIRY_INTERVAL => "Message Expiry Interval",
    id::CONTENT_TYPE => "Content Type",
    id::RESPONSE_TOPIC => "Response Topic",
    id::CORRELATION_DATA => "Correlation Data",
    id::SUBSCRIPTION_IDENTIFIER => "Subscription Identifier",
    id::SESSION_EXPIRY_INTERVAL => "Session Expiry Interval",
    id::ASSIGNED_CLIENT_IDENTIFIER => "Assigned Client Identifier",
    id::SERVER_KEEP_ALIVE => "Server Keep Alive",
    id::AUTHENTICATION_METHOD => "Authentication Method",
    id::AUTHENTICATION_DATA => "Authentication Data",
    id::REQUEST_PROBLEM_INFORMATION => "Request Problem Information",
    id::WILL_DELAY_INTERVAL => "Will Delay Interval",
    id::REQUEST_RESPONSE_INFORMATION => "Request Response Information",
    id::RESPONSE_INFORMATION => "Response Information",
    id::SERVER_REFERENCE => "Server Reference",
    id::REASON_STRING => "Reason String",
    id::RECEIVE_MAXIMUM => "Receive Maximum",
    id::TOPIC_ALIAS_MAXIMUM => "Topic Alias Maximum",
    id::TOPIC_ALIAS => "Topic Alias",
    id::MAXIMUM_QOS => "Maximum QoS",
    id::RETAIN_AVAILABLE => "Retain Available",
    id::USER_PROPERTY => "User Property",
    id::MAXIMUM_PACKET_SIZE => "Maximum Packet Size",
    id::WILDCARD_SUBSCRIPTION_AVAILABLE => "Wildcard Subscription Available",
    id::SUBSCRIPTION_IDENTIFIER_AVAILABLE => "Subscription Identifier Available",
    id::SHARED_SUBSCRIPTION_AVAILABLE => "Shared Subscription Available",
}

/// nom reader for a Property Length and the properties it covers.
///
/// A property that `context` does not allow, or an unknown one, is malformed
/// (section 2.2.2.2). A repeated one is a Protocol Error, as the text of each
/// property states.
pub(crate) fn read_properties<'a>(
    body: &Bytes,
    input: &'a [u8],
    context: PropertyContext,
) -> Res<'a, Properties> {
    // Most packets carry no properties, so skip the general path for them.
    if let Some((0, rest)) = input.split_first() {
        return Ok((rest, Properties::default()));
    }
    let (rest, length) = var_int(input)?;
    let (rest, mut list) = take(length).parse_complete(rest)?;

    let mut values = Box::<PropertyValues>::default();
    let mut seen: u64 = 0;
    while !list.is_empty() {
        let (after_id, id) = var_int(list)?;
        let bit = 1u64.checked_shl(id).unwrap_or(0);
        if bit & context.allowed() == 0 {
            return fail(DecodeError::Malformed {
                rule: "section 2.2.2.2",
                detail: not_allowed_detail(id),
            });
        }
        if seen & bit != 0 && !context.may_repeat(id) {
            return fail(DecodeError::ProtocolError {
                rule: "section 2.2.2.2",
                detail: repeated_detail(id),
            });
        }
        seen |= bit;
        list = read_value(body, after_id, id, &mut values)?;
    }
    // Every property sets a field, so a non-zero length leaves `values` non-empty.
    Ok((rest, Properties(Some(values))))
}

/// Checks a Byte property that only 0 and 1 are valid for.
fn zero_or_one(
    value: u8,
    rule: &'static str,
    detail: &'static str,
) -> Result<u8, Err<DecodeError>> {
    if value > 1 {
        return fail(DecodeError::ProtocolError { rule, detail });
    }
    Ok(value)
}

/// Checks a property that may not be 0.
fn non_zero<T: Default + PartialEq>(
    value: T,
    rule: &'static str,
    detail: &'static str,
) -> Result<T, Err<DecodeError>> {
    if value == T::default() {
        return fail(DecodeError::ProtocolError { rule, detail });
    }
    Ok(value)
}

/// Reads the value of property `id` into `properties`.
fn read_value<'a>(
    body: &Bytes,
    input: &'a [u8],
    id: u32,
    properties: &mut PropertyValues,
) -> Result<&'a [u8], Err<DecodeError>> {
    let p = properties;
    let rest = match id {
        id::PAYLOAD_FORMAT_INDICATOR => {
            let (rest, value) = be_u8(input)?;
            let value = zero_or_one(
                value,
                "section 3.3.2.3.2",
                "Payload Format Indicator is not 0 or 1",
            )?;
            p.payload_format_indicator = Some(value);
            rest
        }
        id::MESSAGE_EXPIRY_INTERVAL => {
            let (rest, value) = be_u32(input)?;
            p.message_expiry_interval = Some(value);
            rest
        }
        id::CONTENT_TYPE => {
            let (rest, value) = string(body, input)?;
            p.content_type = Some(value);
            rest
        }
        id::RESPONSE_TOPIC => {
            let (rest, value) = string(body, input)?;
            if !valid_topic_name(&value) {
                return fail(DecodeError::ProtocolError {
                    rule: "MQTT-3.3.2-14",
                    detail: "Response Topic is not a valid topic name",
                });
            }
            p.response_topic = Some(value);
            rest
        }
        id::CORRELATION_DATA => {
            let (rest, value) = binary(body, input)?;
            p.correlation_data = Some(value);
            rest
        }
        id::SUBSCRIPTION_IDENTIFIER => {
            let (rest, value) = var_int(input)?;
            let value = non_zero(value, "section 3.3.2.3.8", "Subscription Identifier is 0")?;
            p.subscription_identifiers.push(value);
            rest
        }
        id::SESSION_EXPIRY_INTERVAL => {
            let (rest, value) = be_u32(input)?;
            p.session_expiry_interval = Some(value);
            rest
        }
        id::ASSIGNED_CLIENT_IDENTIFIER => {
            let (rest, value) = string(body, input)?;
            p.assigned_client_identifier = Some(value);
            rest
        }
        id::SERVER_KEEP_ALIVE => {
            let (rest, value) = be_u16(input)?;
            p.server_keep_alive = Some(value);
            rest
        }
        id::AUTHENTICATION_METHOD => {
            let (rest, value) = string(body, input)?;
            p.authentication_method = Some(value);
            rest
        }
        id::AUTHENTICATION_DATA => {
            let (rest, value) = binary(body, input)?;
            p.authentication_data = Some(value);
            rest
        }
        id::REQUEST_PROBLEM_INFORMATION => {
            let (rest, value) = be_u8(input)?;
            let value = zero_or_one(
                value,
                "section 3.1.2.11.7",
                "Request Problem Information is not 0 or 1",
            )?;
            p.request_problem_information = Some(value);
            rest
        }
        id::WILL_DELAY_INTERVAL => {
            let (rest, value) = be_u32(input)?;
            p.will_delay_interval = Some(value);
            rest
        }
        id::REQUEST_RESPONSE_INFORMATION => {
            let (rest, value) = be_u8(input)?;
            let value = zero_or_one(
                value,
                "section 3.1.2.11.6",
                "Request Response Information is not 0 or 1",
            )?;
            p.request_response_information = Some(value);
            rest
        }
        id::RESPONSE_INFORMATION => {
            let (rest, value) = string(body, input)?;
            p.response_information = Some(value);
            rest
        }
        id::SERVER_REFERENCE => {
            let (rest, value) = string(body, input)?;
            p.server_reference = Some(value);
            rest
        }
        id::REASON_STRING => {
            let (rest, value) = string(body, input)?;
            p.reason_string = Some(value);
            rest
        }
        id::RECEIVE_MAXIMUM => {
            let (rest, value) = be_u16(input)?;
            let value = non_zero(value, "section 3.1.2.11.3", "Receive Maximum is 0")?;
            p.receive_maximum = Some(value);
            rest
        }
        id::TOPIC_ALIAS_MAXIMUM => {
            let (rest, value) = be_u16(input)?;
            p.topic_alias_maximum = Some(value);
            rest
        }
        id::TOPIC_ALIAS => {
            let (rest, value) = be_u16(input)?;
            if value == 0 {
                return fail(DecodeError::TopicAliasInvalid {
                    rule: "MQTT-3.3.2-8",
                });
            }
            p.topic_alias = Some(value);
            rest
        }
        id::MAXIMUM_QOS => {
            let (rest, value) = be_u8(input)?;
            let value = zero_or_one(value, "section 3.2.2.3.4", "Maximum QoS is not 0 or 1")?;
            p.maximum_qos = Some(value);
            rest
        }
        id::RETAIN_AVAILABLE => {
            let (rest, value) = be_u8(input)?;
            let value = zero_or_one(value, "section 3.2.2.3.5", "Retain Available is not 0 or 1")?;
            p.retain_available = Some(value);
            rest
        }
        id::USER_PROPERTY => {
            let (rest, name) = string(body, input)?;
            let (rest, value) = string(body, rest)?;
            p.user_properties.push((name, value));
            rest
        }
        id::MAXIMUM_PACKET_SIZE => {
            let (rest, value) = be_u32(input)?;
            let value = non_zero(value, "section 3.1.2.11.4", "Maximum Packet Size is 0")?;
            p.maximum_packet_size = Some(value);
            rest
        }
        id::WILDCARD_SUBSCRIPTION_AVAILABLE => {
            let (rest, value) = be_u8(input)?;
            let value = zero_or_one(
                value,
                "section 3.2.2.3.11",
                "Wildcard Subscription Available is not 0 or 1",
            )?;
            p.wildcard_subscription_available = Some(value);
            rest
        }
        id::SUBSCRIPTION_IDENTIFIER_AVAILABLE => {
            let (rest, value) = be_u8(input)?;
            let value = zero_or_one(
                value,
                "section 3.2.2.3.12",
                "Subscription Identifier Available is not 0 or 1",
            )?;
            p.subscription_identifier_available = Some(value);
            rest
        }
        id::SHARED_SUBSCRIPTION_AVAILABLE => {
            let (rest, value) = be_u8(input)?;
            let value = zero_or_one(
                value,
                "section 3.2.2.3.13",
                "Shared Subscription Available is not 0 or 1",
            )?;
            p.shared_subscription_available = Some(value);
            rest
        }
        _ => {
            return fail(DecodeError::Malformed {
                rule: "section 2.2.2.2",
                detail: "unknown property identifier",
            })
        }
    };
    Ok(rest)
}

impl PropertyValues {
    /// Returns the encoded length of the property list, without its Property
    /// Length.
    pub fn encoded_len(&self) -> usize {
        let p = self;
        let mut length = 0;
        length += p.payload_format_indicator.map_or(0, |_| 2);
        length += p.message_expiry_interval.map_or(0, |_| 5);
        length += p
            .content_type
            .as_ref()
            .map_or(0, |value| 1 + binary_len(value.as_bytes()));
        length += p
            .response_topic
            .as_ref()
            .map_or(0, |value| 1 + binary_len(value.as_bytes()));
        length += p
            .correlation_data
            .as_ref()
            .map_or(0, |value| 1 + binary_len(value));
        for value in &p.subscription_identifiers {
            length += 1 + var_int_len(*value as usize);
        }
        length += p.session_expiry_interval.map_or(0, |_| 5);
        length += p
            .assigned_client_identifier
            .as_ref()
            .map_or(0, |value| 1 + binary_len(value.as_bytes()));
        length += p.server_keep_alive.map_or(0, |_| 3);
        length += p
            .authentication_method
            .as_ref()
            .map_or(0, |value| 1 + binary_len(value.as_bytes()));
        length += p
            .authentication_data
            .as_ref()
            .map_or(0, |value| 1 + binary_len(value));
        length += p.request_problem_information.map_or(0, |_| 2);
        length += p.will_delay_interval.map_or(0, |_| 5);
        length += p.request_response_information.map_or(0, |_| 2);
        length += p
            .response_information
            .as_ref()
            .map_or(0, |value| 1 + binary_len(value.as_bytes()));
        length += p
            .server_reference
            .as_ref()
            .map_or(0, |value| 1 + binary_len(value.as_bytes()));
        length += p
            .reason_string
            .as_ref()
            .map_or(0, |value| 1 + binary_len(value.as_bytes()));
        length += p.receive_maximum.map_or(0, |_| 3);
        length += p.topic_alias_maximum.map_or(0, |_| 3);
        length += p.topic_alias.map_or(0, |_| 3);
        length += p.maximum_qos.map_or(0, |_| 2);
        length += p.retain_available.map_or(0, |_| 2);
        for (name, value) in &p.user_properties {
            length += 1 + binary_len(name.as_bytes()) + binary_len(value.as_bytes());
        }
        length += p.maximum_packet_size.map_or(0, |_| 5);
        length += p.wildcard_subscription_available.map_or(0, |_| 2);
        length += p.subscription_identifier_available.map_or(0, |_| 2);
        length += p.shared_subscription_available.map_or(0, |_| 2);
        length
    }

    /// True if no property is set.
    pub fn is_empty(&self) -> bool {
        self.encoded_len() == 0
    }
}

/// Appends the Property Length `length`, which must be
/// `properties.encoded_len()`, and the properties in identifier order.
pub(crate) fn put_properties(out: &mut BytesMut, properties: &PropertyValues, length: usize) {
    put_var_int(out, length);
    if length == 0 {
        return;
    }
    let p = properties;
    if let Some(value) = p.payload_format_indicator {
        put_byte(out, id::PAYLOAD_FORMAT_INDICATOR, value);
    }
    if let Some(value) = p.message_expiry_interval {
        put_u32(out, id::MESSAGE_EXPIRY_INTERVAL, value);
    }
    if let Some(value) = &p.content_type {
        put_data(out, id::CONTENT_TYPE, value.as_bytes());
    }
    if let Some(value) = &p.response_topic {
        put_data(out, id::RESPONSE_TOPIC, value.as_bytes());
    }
    if let Some(value) = &p.correlation_data {
        put_data(out, id::CORRELATION_DATA, value);
    }
    for value in &p.subscription_identifiers {
        put_id(out, id::SUBSCRIPTION_IDENTIFIER);
        put_var_int(out, *value as usize);
    }
    if let Some(value) = p.session_expiry_interval {
        put_u32(out, id::SESSION_EXPIRY_INTERVAL, value);
    }
    if let Some(value) = &p.assigned_client_identifier {
        put_data(out, id::ASSIGNED_CLIENT_IDENTIFIER, value.as_bytes());
    }
    if let Some(value) = p.server_keep_alive {
        put_u16(out, id::SERVER_KEEP_ALIVE, value);
    }
    if let Some(value) = &p.authentication_method {
        put_data(out, id::AUTHENTICATION_METHOD, value.as_bytes());
    }
    if let Some(value) = &p.authentication_data {
        put_data(out, id::AUTHENTICATION_DATA, value);
    }
    if let Some(value) = p.request_problem_information {
        put_byte(out, id::REQUEST_PROBLEM_INFORMATION, value);
    }
    if let Some(value) = p.will_delay_interval {
        put_u32(out, id::WILL_DELAY_INTERVAL, value);
    }
    if let Some(value) = p.request_response_information {
        put_byte(out, id::REQUEST_RESPONSE_INFORMATION, value);
    }
    if let Some(value) = &p.response_information {
        put_data(out, id::RESPONSE_INFORMATION, value.as_bytes());
    }
    if let Some(value) = &p.server_reference {
        put_data(out, id::SERVER_REFERENCE, value.as_bytes());
    }
    if let Some(value) = &p.reason_string {
        put_data(out, id::REASON_STRING, value.as_bytes());
    }
    if let Some(value) = p.receive_maximum {
        put_u16(out, id::RECEIVE_MAXIMUM, value);
    }
    if let Some(value) = p.topic_alias_maximum {
        put_u16(out, id::TOPIC_ALIAS_MAXIMUM, value);
    }
    if let Some(value) = p.topic_alias {
        put_u16(out, id::TOPIC_ALIAS, value);
    }
    if let Some(value) = p.maximum_qos {
        put_byte(out, id::MAXIMUM_QOS, value);
    }
    if let Some(value) = p.retain_available {
        put_byte(out, id::RETAIN_AVAILABLE, value);
    }
    for (name, value) in &p.user_properties {
        put_id(out, id::USER_PROPERTY);
        put_binary(out, name.as_bytes());
        put_binary(out, value.as_bytes());
    }
    if let Some(value) = p.maximum_packet_size {
        put_u32(out, id::MAXIMUM_PACKET_SIZE, value);
    }
    if let Some(value) = p.wildcard_subscription_available {
        put_byte(out, id::WILDCARD_SUBSCRIPTION_AVAILABLE, value);
    }
    if let Some(value) = p.subscription_identifier_available {
        put_byte(out, id::SUBSCRIPTION_IDENTIFIER_AVAILABLE, value);
    }
    if let Some(value) = p.shared_subscription_available {
        put_byte(out, id::SHARED_SUBSCRIPTION_AVAILABLE, value);
    }
}

fn put_id(out: &mut BytesMut, id: u32) {
    // Every identifier is below 128, so its Variable Byte Integer is one byte.
    out.put_u8(id as u8);
}

fn put_byte(out: &mut BytesMut, id: u32, value: u8) {
    put_id(out, id);
    out.put_u8(value);
}

fn put_u16(out: &mut BytesMut, id: u32, value: u16) {
    put_id(out, id);
    out.put_u16(value);
}

fn put_u32(out: &mut BytesMut, id: u32, value: u32) {
    put_id(out, id);
    out.put_u32(value);
}

fn put_data(out: &mut BytesMut, id: u32, value: &[u8]) {
    put_id(out, id);
    put_binary(out, value);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handle_is_pointer_sized() {
        assert_eq!(size_of::<Properties>(), size_of::<usize>());
    }

    #[test]
    fn absent_properties_read_as_empty() {
        let properties = Properties::default();
        assert!(properties.is_empty());
        assert_eq!(properties.encoded_len(), 0);
        assert_eq!(properties.topic_alias, None);
        assert!(properties.user_properties.is_empty());
        assert_eq!(*properties, PropertyValues::default());
    }

    // The field writes on a default handle are what this test exercises.
    #[allow(clippy::field_reassign_with_default)]
    #[test]
    fn mutable_access_allocates_and_keeps_equality() {
        let mut written = Properties::default();
        written.topic_alias = None;
        assert!(written.0.is_some());
        assert_eq!(written, Properties::default());
        assert!(written.clone().0.is_none());

        written.topic_alias = Some(3);
        assert_eq!(written.encoded_len(), 3);
        assert_ne!(written, Properties::default());
        assert_eq!(written.clone().topic_alias, Some(3));
    }

    #[test]
    fn from_values_allocates_only_when_set() {
        assert!(Properties::from(PropertyValues::default()).0.is_none());
        let set = Properties::from(PropertyValues {
            reason_string: Some("why".into()),
            ..PropertyValues::default()
        });
        assert_eq!(set.reason_string.as_deref(), Some("why"));
        assert_eq!(set.into_values().reason_string.as_deref(), Some("why"));
    }
}
