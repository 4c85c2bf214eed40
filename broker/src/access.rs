//! Authentication at CONNECT and the topic ACL checks on publish,
//! subscribe and delivery.
//!
//! The [`auth`] crate decides: it verifies tokens and owns the [`Acl`]. This
//! module applies its decisions to MQTT: it picks the CONNACK code of a
//! rejection, logs failures at a limited rate, and keeps the ACL of each
//! session (in the session row, so that it survives hibernation).

use std::fmt;
use std::sync::Arc;

use auth::{Acl, AuthError, ConnectCredentials, Grant, LogDecision, LogLimiter, Verifier};
use codec::{Connect, ProtocolVersion, ReasonCode};

use crate::{topic, Broker, ConnId};

/// At most this many authentication failures are logged per window.
const FAILURE_LOGS_PER_WINDOW: u32 = 20;

/// The window of [`FAILURE_LOGS_PER_WINDOW`], in seconds.
const FAILURE_LOG_WINDOW_SECS: u64 = 60;

/// Maximum length of a client id in a log line, in characters. A client
/// id comes from the peer and may be 65 535 bytes long.
const MAX_LOGGED_CLIENT_ID: usize = 64;

/// The authentication mode of CONNECT.
#[derive(Clone, Default)]
pub enum Authentication {
    /// No authentication: every client connects and may use every topic,
    /// except publishing under `$SYS`. This is the default, for tests and
    /// for embeddings that check clients before they reach the broker.
    #[default]
    Off,
    /// Tokens from the ingress grant or the CONNECT password, and anonymous
    /// access as the verifier's settings allow.
    Tokens(Arc<Verifier>),
    /// The authentication settings are unusable: every CONNECT is rejected
    /// with Server unavailable. The text names the setting to fix.
    Misconfigured(String),
}

/// The authentication state of a broker.
pub(crate) struct AccessControl {
    authentication: Authentication,
    failure_log: LogLimiter,
}

impl Default for AccessControl {
    fn default() -> Self {
        AccessControl {
            authentication: Authentication::Off,
            failure_log: LogLimiter::new(FAILURE_LOGS_PER_WINDOW, FAILURE_LOG_WINDOW_SECS),
        }
    }
}

/// An accepted CONNECT: the client id and the topics it may use.
pub(crate) struct Admitted {
    /// The client id to use; empty when the broker must assign one.
    pub client_id: String,
    /// The ACL of the session; `None` when every topic is allowed.
    pub acl: Option<Acl>,
    /// When the token expires, in milliseconds since the Unix epoch; the
    /// connection is closed then.
    pub token_expires_ms: Option<u64>,
}

impl Broker {
    /// Sets how CONNECT is authenticated, for connections whose CONNECT
    /// arrives from now on. Without a call, authentication is
    /// [`Authentication::Off`].
    pub fn set_authentication(&mut self, authentication: Authentication) {
        self.access.authentication = authentication;
    }

    /// Stores the grant that the ingress verified from the upgrade request
    /// of a socket, or `None` when the request carried no token. Call it
    /// right after [`Broker::handle_open`]. The grant is kept in the
    /// connection record until CONNECT arrives, so it survives hibernation.
    pub fn set_ingress_grant(&mut self, conn: ConnId, grant: Option<Grant>) {
        let Some(connection) = self.connections.get_mut(&conn) else {
            return;
        };
        connection.grant = grant;
        self.changed_records.insert(conn);
        self.flush_records();
    }

    /// Authenticates a CONNECT and consumes the connection's ingress grant.
    /// On rejection, returns the CONNACK reason for the client's version.
    pub(crate) fn authenticate(
        &mut self,
        conn: ConnId,
        connect: &Connect,
        now_ms: u64,
    ) -> Result<Admitted, ReasonCode> {
        let grant = match self.connections.get_mut(&conn) {
            Some(connection) => connection.grant.take(),
            None => None,
        };
        let verifier = match &self.access.authentication {
            Authentication::Off => {
                self.check_will_topic(connect, None, now_ms)?;
                return Ok(Admitted {
                    client_id: connect.client_id.to_string(),
                    acl: None,
                    token_expires_ms: None,
                });
            }
            Authentication::Misconfigured(message) => {
                let message = message.clone();
                self.log_misconfigured(&message, now_ms);
                return Err(ReasonCode::ServerUnavailable);
            }
            Authentication::Tokens(verifier) => Arc::clone(verifier),
        };

        let credentials = ConnectCredentials {
            ingress_grant: grant.as_ref(),
            namespace: &self.namespace_name,
            client_id: &connect.client_id,
            username: connect.username.as_deref(),
            password: connect.password.as_deref(),
        };
        let authorized = match verifier.authorize_connect(&credentials, now_ms / 1000) {
            Ok(authorized) => authorized,
            Err(error) => {
                self.log_failure(&connect.client_id, error.reason(), &error, now_ms);
                return Err(connack_reason(&error, connect.protocol));
            }
        };
        let admitted = Admitted {
            client_id: authorized.client_id,
            acl: Some(authorized.acl).filter(|acl| !acl.is_unrestricted()),
            // The connection ends when CONNECT would no longer accept the
            // token, so that a reconnect with it is refused rather than
            // accepted and closed again.
            token_expires_ms: authorized.expires_at.map(|secs| {
                let leeway = verifier.settings().leeway_secs;
                secs.saturating_add(leeway).saturating_mul(1000)
            }),
        };
        self.check_will_topic(connect, admitted.acl.as_ref(), now_ms)?;
        Ok(admitted)
    }

    /// Checks the will topic against the ACL at CONNECT: a will that the
    /// client could not publish itself is rejected with Not authorized.
    fn check_will_topic(
        &mut self,
        connect: &Connect,
        acl: Option<&Acl>,
        now_ms: u64,
    ) -> Result<(), ReasonCode> {
        let Some(will) = &connect.will else {
            return Ok(());
        };
        if may_publish(acl, &will.topic) {
            return Ok(());
        }
        let detail = "the ACL does not allow publishing to the will topic";
        self.log_failure(
            &connect.client_id,
            "will_topic_not_allowed",
            &detail,
            now_ms,
        );
        Err(ReasonCode::NotAuthorized)
    }

    /// Reports whether the session of `client_id` may publish to `topic`.
    pub(crate) fn may_publish(&self, client_id: &str, topic: &str) -> bool {
        let acl = self.sessions.get(client_id).and_then(|s| s.acl.as_ref());
        may_publish(acl, topic)
    }

    /// Reports whether the session of `client_id` may subscribe to `filter`
    /// (with `$share/{group}/` for a shared subscription).
    pub(crate) fn may_subscribe(&self, client_id: &str, filter: &str) -> bool {
        let acl = self.sessions.get(client_id).and_then(|s| s.acl.as_ref());
        acl.is_none_or(|acl| acl.may_subscribe(filter))
    }

    /// Logs a rejected CONNECT with a short `reason` and a `detail` that
    /// contains no token, at most [`FAILURE_LOGS_PER_WINDOW`] per window.
    fn log_failure(
        &mut self,
        client_id: &str,
        reason: &'static str,
        detail: &dyn fmt::Display,
        now_ms: u64,
    ) {
        let LogDecision::Log { suppressed } = self.access.failure_log.check(now_ms / 1000) else {
            return;
        };
        let namespace = self.namespace_name.as_str();
        let client_id = loggable(client_id);
        let client_id = client_id.as_str();
        log::info!(namespace, client_id, reason, suppressed; "authentication failed: {detail}");
    }

    fn log_misconfigured(&mut self, message: &str, now_ms: u64) {
        let LogDecision::Log { suppressed } = self.access.failure_log.check(now_ms / 1000) else {
            return;
        };
        let namespace = self.namespace_name.as_str();
        log::error!(
            namespace, suppressed;
            "CONNECT rejected because authentication is misconfigured: {message}"
        );
    }
}

/// Applies the publish rule: a restricted ACL decides, and it rejects every
/// `$` topic. Without one, only `$SYS` is rejected, as before
/// authentication existed.
fn may_publish(acl: Option<&Acl>, topic_name: &str) -> bool {
    match acl {
        Some(acl) => acl.may_publish(topic_name),
        None => !topic::is_system_topic(topic_name),
    }
}

/// Returns the CONNACK reason for a rejected token: 0x86, 0x87 or 0x85 in
/// MQTT 5.0; for 3.1 and 3.1.1, the reason code that encodes as return code
/// 0x05 (or 0x02 for a client id that differs from `sub`).
fn connack_reason(error: &AuthError, version: ProtocolVersion) -> ReasonCode {
    let reason = match version {
        ProtocolVersion::V5 => ReasonCode::from_u8(error.connack_reason_v5()),
        _ => ReasonCode::from_v3_connack(error.connack_return_code_v311()),
    };
    reason.unwrap_or(ReasonCode::NotAuthorized)
}

/// Shortens a peer-chosen client id for a log line.
fn loggable(client_id: &str) -> String {
    client_id.chars().take(MAX_LOGGED_CLIENT_ID).collect()
}
