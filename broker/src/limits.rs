//! Abuse limits: the token buckets that bound each client's message and
//! byte rates, and the caps on connections per namespace and subscriptions
//! per session.

use codec::{Packet, ReasonCode};

use crate::lifecycle::Ending;
use crate::{Broker, ConnId};

/// Tokens are counted in thousandths, so that a refill of a few tokens per
/// second still adds something every millisecond.
const SCALE: u64 = 1000;

/// A token bucket: `rate_per_sec` tokens are added each second, up to
/// `capacity`, and each use takes some out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenBucket {
    /// Tokens left, in thousandths.
    tokens: u64,
    /// When `tokens` was last refilled, in milliseconds since the Unix epoch.
    refilled_ms: u64,
}

impl TokenBucket {
    /// Creates a full bucket.
    pub fn full(capacity: u64, now_ms: u64) -> TokenBucket {
        TokenBucket {
            tokens: capacity.saturating_mul(SCALE),
            refilled_ms: now_ms,
        }
    }

    /// Refills the bucket for the time since the last call, then takes
    /// `cost` tokens. Returns false, and takes nothing, when fewer than
    /// `cost` tokens are left. A `rate_per_sec` of 0 means no limit.
    pub fn take(&mut self, cost: u64, rate_per_sec: u64, capacity: u64, now_ms: u64) -> bool {
        if rate_per_sec == 0 {
            return true;
        }
        let elapsed_ms = now_ms.saturating_sub(self.refilled_ms);
        // A rate in tokens per second is the same number of thousandths per
        // millisecond.
        let refill = elapsed_ms.saturating_mul(rate_per_sec);
        self.tokens = self
            .tokens
            .saturating_add(refill)
            .min(capacity.saturating_mul(SCALE));
        self.refilled_ms = self.refilled_ms.max(now_ms);

        let cost = cost.saturating_mul(SCALE);
        if self.tokens < cost {
            return false;
        }
        self.tokens -= cost;
        true
    }
}

/// The message and byte buckets of one connection.
///
/// NOTE: the buckets are not part of the hibernation record, so a connection
/// restored after the Durable Object wakes starts with full buckets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    messages: TokenBucket,
    bytes: TokenBucket,
}

/// The settings of a [`RateLimit`]: rates per second and bucket sizes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateSettings {
    /// PUBLISH packets per second; 0 for no limit.
    pub messages_per_sec: u64,
    /// PUBLISH packets that may arrive at once after a quiet period.
    pub message_burst: u64,
    /// Bytes per second; 0 for no limit.
    pub bytes_per_sec: u64,
    /// Bytes that may arrive at once after a quiet period.
    pub byte_burst: u64,
}

impl RateLimit {
    /// Creates the buckets of a new connection, both full.
    pub fn new(settings: RateSettings, now_ms: u64) -> RateLimit {
        RateLimit {
            messages: TokenBucket::full(settings.message_burst, now_ms),
            bytes: TokenBucket::full(settings.byte_burst, now_ms),
        }
    }

    /// Counts one packet of `size` bytes, and one message when it is a
    /// PUBLISH. Returns false when the packet exceeds either rate.
    pub fn admit(
        &mut self,
        size: usize,
        is_publish: bool,
        settings: RateSettings,
        now_ms: u64,
    ) -> bool {
        let size = u64::try_from(size).unwrap_or(u64::MAX);
        let bytes_ok = self
            .bytes
            .take(size, settings.bytes_per_sec, settings.byte_burst, now_ms);
        if !is_publish {
            return bytes_ok;
        }
        let rate = settings.messages_per_sec;
        let message_ok = self.messages.take(1, rate, settings.message_burst, now_ms);
        message_ok && bytes_ok
    }
}

impl Broker {
    /// Counts a packet against its connection's rates, once CONNECT is
    /// accepted. A packet over either rate closes the connection, with
    /// DISCONNECT 0x96 (Message rate too high) for MQTT 5.0 clients, and
    /// returns false.
    pub(crate) fn admit_packet(
        &mut self,
        conn: ConnId,
        packet: &Packet,
        size: usize,
        now_ms: u64,
    ) -> bool {
        let settings = self.config.rate_settings();
        let Some(connection) = self.connections.get_mut(&conn) else {
            return false;
        };
        if connection.session.is_none() {
            return true;
        }
        let is_publish = matches!(packet, Packet::Publish(_));
        let rate_limit = connection
            .rate_limit
            .get_or_insert_with(|| RateLimit::new(settings, now_ms));
        if rate_limit.admit(size, is_publish, settings, now_ms) {
            return true;
        }
        log::debug!("connection {conn}: message or byte rate exceeded, closing");
        self.metrics.rate_limit_disconnects += 1;
        let reason = ReasonCode::MessageRateTooHigh;
        self.end_connection(conn, Ending::ServerClose(reason), now_ms);
        false
    }

    /// Returns whether a CONNECT for `client_id` would exceed
    /// `max_connections`, and counts each rejection in the metrics. A
    /// CONNECT that takes over a connected session replaces a client rather
    /// than adding one, so it never does.
    pub(crate) fn connection_limit_reached(&mut self, client_id: &str) -> bool {
        let max = self.config.max_connections;
        if max == 0 {
            return false;
        }
        let takes_over = self
            .sessions
            .get(client_id)
            .is_some_and(|session| session.conn.is_some());
        if takes_over || self.connected_client_count() < max {
            return false;
        }
        self.metrics.connection_limit_rejections += 1;
        true
    }

    /// Returns whether a new subscription to `filter` would exceed
    /// `max_subscriptions_per_client`, and counts each rejection in the
    /// metrics. Replacing an existing subscription adds none, so it never
    /// does.
    pub(crate) fn subscription_limit_reached(&mut self, client_id: &str, filter: &str) -> bool {
        let max = self.config.max_subscriptions_per_client;
        let Some(session) = self.sessions.get(client_id) else {
            return false;
        };
        if max == 0
            || session.subscriptions.contains_key(filter)
            || session.subscriptions.len() < max
        {
            return false;
        }
        self.metrics.subscription_limit_rejections += 1;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_allows_burst_then_refills_at_rate() {
        let mut bucket = TokenBucket::full(3, 0);
        for _ in 0..3 {
            assert!(bucket.take(1, 10, 3, 0));
        }
        assert!(!bucket.take(1, 10, 3, 0));
        // 10 per second is one token every 100 ms.
        assert!(!bucket.take(1, 10, 3, 99));
        assert!(bucket.take(1, 10, 3, 100));
        assert!(!bucket.take(1, 10, 3, 100));
    }

    #[test]
    fn bucket_never_holds_more_than_capacity() {
        let mut bucket = TokenBucket::full(2, 0);
        assert!(bucket.take(2, 1, 2, 0));
        assert!(bucket.take(2, 1, 2, 1_000_000));
        assert!(!bucket.take(1, 1, 2, 1_000_000));
    }

    #[test]
    fn zero_rate_is_no_limit() {
        let mut bucket = TokenBucket::full(0, 0);
        assert!(bucket.take(u64::MAX, 0, 0, 0));
    }
}
