//! Limits and advertised capabilities of a namespace.

/// Broker settings. The Worker fills them from `wrangler.toml` `[vars]`;
/// every field has a default.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Largest packet accepted or sent, in bytes.
    pub max_packet_size: usize,
    /// Milliseconds a new socket may wait before its CONNECT arrives.
    pub connect_timeout_ms: u64,
}

impl Default for Config {
    fn default() -> Self {
        Config { max_packet_size: 1024 * 1024, connect_timeout_ms: 10_000 }
    }
}
