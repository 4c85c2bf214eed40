//! MQTT messages in HTTP form: publish parameters from query and headers,
//! the JSON of batch publishes and of messages sent to HTTP clients, and
//! the token bucket that limits HTTP publishes. No I/O, so it is tested
//! natively.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use broker::Message;
use bytes::Bytes;
use codec::{Properties, PropertyValues, Publish, QoS};
use percent_encoding::percent_decode_str;
use serde::{Deserialize, Serialize};

/// Header with the Message Expiry Interval, in seconds.
pub const EXPIRY_HEADER: &str = "MQTT-Message-Expiry";
/// Header with the Response Topic.
pub const RESPONSE_TOPIC_HEADER: &str = "MQTT-Response-Topic";
/// Header with the Correlation Data, in standard base64.
pub const CORRELATION_DATA_HEADER: &str = "MQTT-Correlation-Data";
/// Header with one or more User Properties, `key=value`, comma-separated,
/// each key and value percent-encoded.
pub const USER_PROPERTY_HEADER: &str = "MQTT-User-Property";
/// Header with the QoS of a retained message read over HTTP.
pub const QOS_HEADER: &str = "MQTT-QoS";

/// The Content-Type curl sends with `-d` when none is given. It describes
/// nothing about the payload, so it is not forwarded.
const CURL_DEFAULT_CONTENT_TYPE: &str = "application/x-www-form-urlencoded";

/// A request problem, sent back with status 400 and this message.
pub type BadRequest = String;

/// Percent-decodes a path segment (topics may contain `/` as `%2F`, and
/// `+` stays a plus sign). Invalid UTF-8 is an error.
pub fn decode_path(segment: &str) -> Result<String, BadRequest> {
    percent_decode_str(segment)
        .decode_utf8()
        .map(|text| text.into_owned())
        .map_err(|_| "the topic in the path is not valid UTF-8 after percent-decoding".to_string())
}

/// Parses the `qos` query parameter: 0, 1 or 2, default 0.
pub fn parse_qos(value: Option<&str>) -> Result<QoS, BadRequest> {
    let Some(value) = value else {
        return Ok(QoS::AtMostOnce);
    };
    value
        .parse::<u8>()
        .ok()
        .and_then(QoS::from_u8)
        .ok_or_else(|| format!("invalid qos {value:?}: use 0, 1 or 2"))
}

/// Parses the `retain` query parameter: true/false or 1/0, default false.
pub fn parse_retain(value: Option<&str>) -> Result<bool, BadRequest> {
    match value {
        None | Some("false") | Some("0") => Ok(false),
        Some("true") | Some("1") | Some("") => Ok(true),
        Some(other) => Err(format!("invalid retain {other:?}: use true or false")),
    }
}

/// The property headers of one HTTP publish, read before the body.
#[derive(Debug, Default)]
pub struct PropertyHeaders {
    /// `Content-Type`.
    pub content_type: Option<String>,
    /// `MQTT-Message-Expiry`.
    pub message_expiry: Option<String>,
    /// `MQTT-Response-Topic`.
    pub response_topic: Option<String>,
    /// `MQTT-Correlation-Data`.
    pub correlation_data: Option<String>,
    /// `MQTT-User-Property`, several headers joined by commas.
    pub user_properties: Option<String>,
}

/// Builds MQTT 5.0 PUBLISH properties from the headers.
pub fn properties_from_headers(headers: &PropertyHeaders) -> Result<Properties, BadRequest> {
    let mut properties = Properties::default();
    properties.content_type = headers
        .content_type
        .as_deref()
        .filter(|value| !value.eq_ignore_ascii_case(CURL_DEFAULT_CONTENT_TYPE))
        .map(Into::into);
    if let Some(value) = &headers.message_expiry {
        let seconds = value.trim().parse::<u32>().map_err(|_| {
            format!("invalid {EXPIRY_HEADER} {value:?}: use whole seconds from 0 to 4294967295")
        })?;
        properties.message_expiry_interval = Some(seconds);
    }
    if let Some(topic) = &headers.response_topic {
        properties.response_topic = Some(check_response_topic(topic)?.into());
    }
    if let Some(value) = &headers.correlation_data {
        properties.correlation_data = Some(decode_base64(CORRELATION_DATA_HEADER, value)?);
    }
    if let Some(value) = &headers.user_properties {
        for pair in value
            .split(',')
            .map(str::trim)
            .filter(|pair| !pair.is_empty())
        {
            let (key, value) = pair
                .split_once('=')
                .ok_or_else(|| format!("invalid {USER_PROPERTY_HEADER} {pair:?}: use key=value"))?;
            properties
                .user_properties
                .push((decode_path(key)?.into(), decode_path(value)?.into()));
        }
    }
    Ok(properties)
}

fn check_response_topic(topic: &str) -> Result<&str, BadRequest> {
    match codec::topic::valid_topic_name(topic) {
        true => Ok(topic),
        false => Err(format!(
            "invalid response topic {topic:?}: wildcards are not allowed"
        )),
    }
}

fn decode_base64(field: &str, value: &str) -> Result<Bytes, BadRequest> {
    BASE64
        .decode(value.trim())
        .map(Bytes::from)
        .map_err(|_| format!("invalid {field}: expected standard base64"))
}

/// Builds the PUBLISH of an HTTP publish.
pub fn publish(
    topic: String,
    payload: Bytes,
    qos: QoS,
    retain: bool,
    properties: Properties,
) -> Publish {
    Publish {
        dup: false,
        qos,
        retain,
        topic: topic.into(),
        pkid: None,
        payload,
        properties,
    }
}

/// One message of a batch publish.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchMessage {
    /// The topic name.
    pub topic: String,
    /// The payload as UTF-8 text.
    pub payload: Option<String>,
    /// The payload as standard base64, for binary payloads.
    pub payload_base64: Option<String>,
    /// QoS 0, 1 or 2; default 0.
    #[serde(default)]
    pub qos: u8,
    /// Whether the message is retained; default false.
    #[serde(default)]
    pub retain: bool,
    /// Content Type.
    pub content_type: Option<String>,
    /// Message Expiry Interval in seconds.
    pub message_expiry: Option<u32>,
    /// Response Topic.
    pub response_topic: Option<String>,
    /// Correlation Data in standard base64.
    pub correlation_data: Option<String>,
    /// User Properties as `[key, value]` pairs.
    #[serde(default)]
    pub user_properties: Vec<(String, String)>,
}

/// Parses the JSON array of a batch publish into PUBLISH packets. An error
/// names the index of the first bad message.
pub fn parse_batch(body: &[u8], max_messages: usize) -> Result<Vec<Publish>, BadRequest> {
    let messages: Vec<BatchMessage> = serde_json::from_slice(body)
        .map_err(|error| format!("invalid batch: expected a JSON array of messages: {error}"))?;
    if messages.len() > max_messages {
        return Err(format!(
            "batch of {} messages exceeds the maximum of {max_messages}",
            messages.len()
        ));
    }
    messages
        .into_iter()
        .enumerate()
        .map(|(index, message)| {
            batch_publish(message).map_err(|error| format!("message {index}: {error}"))
        })
        .collect()
}

fn batch_publish(message: BatchMessage) -> Result<Publish, BadRequest> {
    let payload = match (message.payload, message.payload_base64) {
        (Some(_), Some(_)) => return Err("set payload or payload_base64, not both".to_string()),
        (Some(text), None) => Bytes::from(text),
        (None, Some(encoded)) => decode_base64("payload_base64", &encoded)?,
        (None, None) => Bytes::new(),
    };
    let qos = QoS::from_u8(message.qos)
        .ok_or_else(|| format!("invalid qos {}: use 0, 1 or 2", message.qos))?;
    let mut properties = Properties::from(PropertyValues {
        content_type: message.content_type.map(Into::into),
        message_expiry_interval: message.message_expiry,
        ..PropertyValues::default()
    });
    if let Some(topic) = &message.response_topic {
        properties.response_topic = Some(check_response_topic(topic)?.into());
    }
    if let Some(value) = &message.correlation_data {
        properties.correlation_data = Some(decode_base64("correlation_data", value)?);
    }
    properties.user_properties = message
        .user_properties
        .into_iter()
        .map(|(key, value)| (key.into(), value.into()))
        .collect();
    Ok(publish(
        message.topic,
        payload,
        qos,
        message.retain,
        properties,
    ))
}

/// A message as HTTP clients receive it in JSON (retained lists, SSE
/// events and long polls).
#[derive(Debug, Serialize)]
pub struct MessageJson {
    /// The topic name.
    pub topic: String,
    /// The payload as text, when it is valid UTF-8.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payload: Option<String>,
    /// The payload in standard base64, always present.
    pub payload_base64: String,
    /// QoS of the publication.
    pub qos: u8,
    /// Whether the message is retained.
    pub retain: bool,
    /// Content Type.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
    /// Seconds until the message expires.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message_expiry: Option<u64>,
    /// Response Topic.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub response_topic: Option<String>,
    /// Correlation Data in standard base64.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub correlation_data: Option<String>,
    /// User Properties as `[key, value]` pairs.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub user_properties: Vec<(String, String)>,
}

impl MessageJson {
    /// Describes a message at `now_ms`.
    pub fn new(message: &Message, now_ms: u64) -> MessageJson {
        let properties = &message.properties;
        MessageJson {
            topic: message.topic.to_string(),
            payload: std::str::from_utf8(&message.payload)
                .ok()
                .map(str::to_string),
            payload_base64: BASE64.encode(&message.payload),
            qos: message.qos as u8,
            retain: message.retain,
            content_type: properties
                .content_type
                .as_ref()
                .map(|value| value.to_string()),
            message_expiry: remaining_secs(message, now_ms),
            response_topic: properties
                .response_topic
                .as_ref()
                .map(|value| value.to_string()),
            correlation_data: properties
                .correlation_data
                .as_ref()
                .map(|data| BASE64.encode(data)),
            user_properties: properties
                .user_properties
                .iter()
                .map(|(key, value)| (key.to_string(), value.to_string()))
                .collect(),
        }
    }
}

/// Seconds until the message expires, rounded up.
pub fn remaining_secs(message: &Message, now_ms: u64) -> Option<u64> {
    message
        .expires_at_ms
        .map(|expires| expires.saturating_sub(now_ms).div_ceil(1000))
}

/// Encodes one User Property as a header value.
pub fn user_property_header(key: &str, value: &str) -> String {
    use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};
    format!(
        "{}={}",
        utf8_percent_encode(key, NON_ALPHANUMERIC),
        utf8_percent_encode(value, NON_ALPHANUMERIC)
    )
}

/// Encodes Correlation Data for a header.
pub fn base64_header(data: &[u8]) -> String {
    BASE64.encode(data)
}

/// A token bucket: `rate` tokens per second up to `burst`.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    rate_per_ms: f64,
    burst: f64,
    tokens: f64,
    updated_ms: u64,
}

impl TokenBucket {
    /// Creates a full bucket.
    pub fn new(rate_per_sec: f64, burst: f64, now_ms: u64) -> TokenBucket {
        TokenBucket {
            rate_per_ms: rate_per_sec / 1000.0,
            burst,
            tokens: burst,
            updated_ms: now_ms,
        }
    }

    /// Takes `count` tokens if the bucket has them; otherwise takes none
    /// and returns the seconds until it will.
    pub fn take(&mut self, count: f64, now_ms: u64) -> Result<(), u64> {
        let elapsed = now_ms.saturating_sub(self.updated_ms) as f64;
        self.tokens = (self.tokens + elapsed * self.rate_per_ms).min(self.burst);
        self.updated_ms = now_ms;
        if count <= self.tokens {
            self.tokens -= count;
            return Ok(());
        }
        let missing = count - self.tokens;
        let wait_ms = if self.rate_per_ms > 0.0 {
            missing / self.rate_per_ms
        } else {
            f64::MAX
        };
        Err((wait_ms / 1000.0).ceil().min(86_400.0) as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_parameters_parse() {
        assert_eq!(parse_qos(None), Ok(QoS::AtMostOnce));
        assert_eq!(parse_qos(Some("2")), Ok(QoS::ExactlyOnce));
        assert!(parse_qos(Some("3")).is_err());
        assert!(parse_qos(Some("one")).is_err());
        assert_eq!(parse_retain(Some("true")), Ok(true));
        assert_eq!(parse_retain(None), Ok(false));
        assert!(parse_retain(Some("yes")).is_err());
    }

    #[test]
    fn headers_become_properties() {
        let headers = PropertyHeaders {
            content_type: Some("application/json".into()),
            message_expiry: Some("60".into()),
            response_topic: Some("reply/to".into()),
            correlation_data: Some("AAE=".into()),
            user_properties: Some("a=1, b%3Dc=x%2Cy".into()),
        };
        let properties = properties_from_headers(&headers).unwrap();
        assert_eq!(properties.content_type.as_deref(), Some("application/json"));
        assert_eq!(properties.message_expiry_interval, Some(60));
        assert_eq!(properties.correlation_data.as_deref(), Some(&[0u8, 1][..]));
        assert_eq!(properties.user_properties[1].0, "b=c");
        assert_eq!(properties.user_properties[1].1, "x,y");
    }

    #[test]
    fn invalid_headers_are_rejected() {
        let bad = [
            PropertyHeaders {
                message_expiry: Some("-1".into()),
                ..Default::default()
            },
            PropertyHeaders {
                response_topic: Some("a/#".into()),
                ..Default::default()
            },
            PropertyHeaders {
                correlation_data: Some("not base64!".into()),
                ..Default::default()
            },
            PropertyHeaders {
                user_properties: Some("novalue".into()),
                ..Default::default()
            },
        ];
        for headers in bad {
            assert!(properties_from_headers(&headers).is_err(), "{headers:?}");
        }
    }

    #[test]
    fn curl_default_content_type_is_dropped() {
        let headers = PropertyHeaders {
            content_type: Some(CURL_DEFAULT_CONTENT_TYPE.into()),
            ..Default::default()
        };
        assert_eq!(
            properties_from_headers(&headers).unwrap().content_type,
            None
        );
    }

    #[test]
    fn batch_parses_and_names_bad_index() {
        let body = br#"[{"topic":"a","payload":"x","qos":1},{"topic":"b","payload_base64":"AAE=","retain":true}]"#;
        let publishes = parse_batch(body, 10).unwrap();
        assert_eq!(publishes.len(), 2);
        assert_eq!(publishes[0].qos, QoS::AtLeastOnce);
        assert_eq!(&publishes[1].payload[..], &[0, 1]);
        assert!(publishes[1].retain);

        let error = parse_batch(br#"[{"topic":"a"},{"topic":"b","qos":5}]"#, 10).unwrap_err();
        assert!(error.starts_with("message 1:"), "{error}");
        assert!(parse_batch(b"{}", 10).is_err());
        assert!(parse_batch(br#"[{"topic":"a"},{"topic":"b"}]"#, 1).is_err());
    }

    #[test]
    fn token_bucket_refills() {
        let mut bucket = TokenBucket::new(1.0, 2.0, 0);
        assert!(bucket.take(2.0, 0).is_ok());
        assert_eq!(bucket.take(1.0, 0), Err(1));
        assert!(bucket.take(1.0, 1_000).is_ok());
    }

    #[test]
    fn path_topics_are_percent_decoded() {
        assert_eq!(decode_path("a%2Fb/c+d").unwrap(), "a/b/c+d");
        assert!(decode_path("%FF").is_err());
    }
}
