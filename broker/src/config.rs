//! Limits and advertised capabilities of a namespace.

use codec::QoS;

/// The largest stored row the Durable Object's SQLite accepts is 2 MB
/// (Cloudflare Durable Objects limits, 2026). A stored message is one PUBLISH
/// plus a header of a few bytes, so packets stay below this.
const MAX_STORABLE_PACKET_SIZE: usize = 2_000_000 - 64;

/// Broker settings. Every field has a default; see [`Config::set`] for how
/// the Worker overrides them from `wrangler.toml`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Largest packet accepted, in bytes, advertised to MQTT 5.0 clients as
    /// Maximum Packet Size. Default 1 MiB; at most about 2 MB, the largest
    /// row the store accepts.
    pub max_packet_size: usize,
    /// Milliseconds a new socket may wait before its CONNECT arrives.
    /// Default 10 000.
    pub connect_timeout_ms: u64,
    /// Largest keep alive, in seconds, granted to MQTT 5.0 clients. A client
    /// that requests more (or 0) gets this value as Server Keep Alive, and
    /// 0 (the default) grants the requested value. MQTT 3.1.1 cannot carry
    /// another value, so 3.1.1 clients always keep their own.
    pub max_keep_alive: u16,
    /// Keep alive, in seconds, imposed on every MQTT 5.0 client as Server
    /// Keep Alive. 0 (the default) leaves it to the client and
    /// `max_keep_alive`.
    pub server_keep_alive: u16,
    /// Receive Maximum advertised to MQTT 5.0 clients: how many QoS 2
    /// messages a client may have unreleased at once. Default 64.
    pub receive_maximum: u16,
    /// Most QoS 1 and 2 messages in flight to one client at once, further
    /// capped by the client's own Receive Maximum. Default 32.
    pub max_inflight: u16,
    /// Most messages queued for one session (offline, or online with a full
    /// in-flight window). A message that does not fit is dropped and
    /// counted. Default 1000.
    pub max_queued_messages: usize,
    /// Most bytes (topic and payload) queued for one session. Default 16 MiB.
    pub max_queued_bytes: usize,
    /// Highest topic alias a client may use, advertised to MQTT 5.0 clients
    /// as Topic Alias Maximum. 0 turns topic aliases off. Default 10, because
    /// the aliases are kept in the 16 KiB WebSocket attachment.
    pub topic_alias_maximum: u16,
    /// Highest QoS accepted from and granted to clients. Default 2.
    pub max_qos: QoS,
    /// Whether retained messages are kept. Default true.
    pub retain_available: bool,
    /// Whether QoS 0 messages are queued for offline sessions. Default false.
    pub queue_qos0: bool,
    /// Longest session expiry, in seconds, granted to a client. A 3.1.1
    /// client with Clean Session 0 requests a session that never expires and
    /// gets this value. Default `u32::MAX`, which means never.
    pub session_expiry_maximum: u32,
    /// Whether connects and disconnects are published under
    /// `$SYS/presence/`. Default true.
    pub presence_events: bool,
    /// Seconds between `$SYS/broker/` status publications, sent only while
    /// clients are connected. 0 (the default) turns them off.
    pub sys_interval_secs: u32,
    /// PUBLISH packets per second one client may send, on average. A client
    /// that sends faster is disconnected with Message rate too high. 0 turns
    /// the limit off. Default 1000.
    pub max_messages_per_sec: u32,
    /// PUBLISH packets a client may send at once after a quiet period: the
    /// size of its message bucket. Default 2000.
    pub max_message_burst: u32,
    /// Bytes (of every packet after CONNECT) per second one client may send,
    /// on average. The bucket contains one second's worth, and at least one
    /// packet of `max_packet_size`. 0 turns the limit off. Default 10 MiB.
    pub max_bytes_per_sec: u64,
    /// Maximum number of connected clients in one namespace. A further
    /// CONNECT is rejected with Quota exceeded. 0 turns the limit off. Default 10 000.
    pub max_connections: usize,
    /// Maximum number of subscriptions of one session. Filters of a
    /// SUBSCRIBE beyond it are rejected. 0 turns the limit off. Default 100.
    pub max_subscriptions_per_client: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            max_packet_size: 1024 * 1024,
            connect_timeout_ms: 10_000,
            max_keep_alive: 0,
            server_keep_alive: 0,
            receive_maximum: 64,
            max_inflight: 32,
            max_queued_messages: 1000,
            max_queued_bytes: 16 * 1024 * 1024,
            topic_alias_maximum: 10,
            max_qos: QoS::ExactlyOnce,
            retain_available: true,
            queue_qos0: false,
            session_expiry_maximum: u32::MAX,
            presence_events: true,
            sys_interval_secs: 0,
            max_messages_per_sec: 1000,
            max_message_burst: 2000,
            max_bytes_per_sec: 10 * 1024 * 1024,
            max_connections: 10_000,
            max_subscriptions_per_client: 100,
        }
    }
}

impl Config {
    /// Parses one setting, named by its field name in snake_case, such as
    /// `max_packet_size` or `retain_available`.
    ///
    /// The Worker passes each entry of its `[vars]` settings here. A variable
    /// named like `MQTT_MAX_PACKET_SIZE` maps to the name lowercased without
    /// the `mqtt_` prefix. Numbers are decimal, booleans are `true` or
    /// `false`, and `max_qos` is 0, 1 or 2.
    /// Returns an error naming the problem for an unknown name or a value
    /// that does not parse or is out of range.
    pub fn set(&mut self, name: &str, value: &str) -> Result<(), String> {
        let value = value.trim();
        match name {
            "max_packet_size" => {
                let size: usize = parse_number(value)?;
                if !(16..=MAX_STORABLE_PACKET_SIZE).contains(&size) {
                    return Err(format!(
                        "{size} is out of range: expected 16 to {MAX_STORABLE_PACKET_SIZE} bytes"
                    ));
                }
                self.max_packet_size = size;
            }
            "connect_timeout_ms" => self.connect_timeout_ms = parse_nonzero(value)?,
            "max_keep_alive" => self.max_keep_alive = parse_number(value)?,
            "server_keep_alive" => self.server_keep_alive = parse_number(value)?,
            "receive_maximum" => self.receive_maximum = parse_nonzero(value)?,
            "max_inflight" => self.max_inflight = parse_nonzero(value)?,
            "max_queued_messages" => self.max_queued_messages = parse_number(value)?,
            "max_queued_bytes" => self.max_queued_bytes = parse_number(value)?,
            "topic_alias_maximum" => self.topic_alias_maximum = parse_number(value)?,
            "max_qos" => {
                let level: u8 = parse_number(value)?;
                self.max_qos = QoS::from_u8(level)
                    .ok_or_else(|| format!("{level} is not a QoS: expected 0, 1 or 2"))?;
            }
            "retain_available" => self.retain_available = parse_bool(value)?,
            "queue_qos0" => self.queue_qos0 = parse_bool(value)?,
            "session_expiry_maximum" => self.session_expiry_maximum = parse_number(value)?,
            "presence_events" => self.presence_events = parse_bool(value)?,
            "sys_interval_secs" => self.sys_interval_secs = parse_number(value)?,
            "max_messages_per_sec" => self.max_messages_per_sec = parse_number(value)?,
            "max_message_burst" => self.max_message_burst = parse_nonzero(value)?,
            "max_bytes_per_sec" => self.max_bytes_per_sec = parse_number(value)?,
            "max_connections" => self.max_connections = parse_number(value)?,
            "max_subscriptions_per_client" => {
                self.max_subscriptions_per_client = parse_number(value)?
            }
            _ => return Err(format!("unknown setting {name:?}")),
        }
        Ok(())
    }

    /// Returns the per-client rate limits in the form the token buckets take.
    pub(crate) fn rate_settings(&self) -> crate::limits::RateSettings {
        let max_packet_size = u64::try_from(self.max_packet_size).unwrap_or(u64::MAX);
        crate::limits::RateSettings {
            messages_per_sec: u64::from(self.max_messages_per_sec),
            message_burst: u64::from(self.max_message_burst),
            bytes_per_sec: self.max_bytes_per_sec,
            byte_burst: self.max_bytes_per_sec.max(max_packet_size),
        }
    }
}

fn parse_number<T: std::str::FromStr>(value: &str) -> Result<T, String> {
    value
        .parse()
        .map_err(|_| format!("{value:?} is not a valid number for this setting"))
}

fn parse_nonzero<T: std::str::FromStr + Default + PartialEq>(value: &str) -> Result<T, String> {
    let number: T = parse_number(value)?;
    if number == T::default() {
        return Err("0 is not allowed: expected at least 1".to_string());
    }
    Ok(number)
}

fn parse_bool(value: &str) -> Result<bool, String> {
    match value {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(format!(
            "{value:?} is not a boolean: expected true or false"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_parses_known_settings() {
        let mut config = Config::default();
        config.set("max_packet_size", "2048").unwrap();
        config.set("retain_available", "false").unwrap();
        config.set("max_qos", "1").unwrap();
        assert_eq!(config.max_packet_size, 2048);
        assert!(!config.retain_available);
        assert_eq!(config.max_qos, QoS::AtLeastOnce);
    }

    #[test]
    fn set_rejects_unknown_and_invalid_values() {
        let mut config = Config::default();
        assert!(config.set("max_packet", "1").is_err());
        assert!(config.set("max_qos", "3").is_err());
        assert!(config.set("receive_maximum", "0").is_err());
        assert!(config.set("max_packet_size", "3000000").is_err());
        assert!(config.set("queue_qos0", "yes").is_err());
        assert_eq!(config, Config::default());
    }

    #[test]
    fn set_parses_abuse_limits() {
        let mut config = Config::default();
        config.set("max_messages_per_sec", "0").unwrap();
        config.set("max_message_burst", "5").unwrap();
        config.set("max_bytes_per_sec", "100").unwrap();
        config.set("max_connections", "2").unwrap();
        config.set("max_subscriptions_per_client", "3").unwrap();
        assert_eq!(config.max_messages_per_sec, 0);
        assert_eq!(config.max_message_burst, 5);
        assert_eq!(config.max_bytes_per_sec, 100);
        assert_eq!(config.max_connections, 2);
        assert_eq!(config.max_subscriptions_per_client, 3);
        assert!(config.set("max_message_burst", "0").is_err());
        assert!(config.set("max_connections", "-1").is_err());
    }

    #[test]
    fn byte_burst_fits_one_maximum_packet() {
        let config = Config {
            max_packet_size: 4096,
            max_bytes_per_sec: 100,
            ..Config::default()
        };
        assert_eq!(config.rate_settings().byte_burst, 4096);
    }
}
