//! The reasons a token or a configuration is rejected, and how each
//! rejection appears on the wire.

use std::fmt;

/// A rejected token or a refused binding between a token and a connection.
///
/// Each variant has a stable short [`reason`](AuthError::reason) for logs and
/// metrics. No variant carries the token or any secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthError {
    /// No token was presented and anonymous access is off.
    MissingToken,
    /// The token is longer than [`MAX_TOKEN_LEN`](crate::MAX_TOKEN_LEN).
    TokenTooLarge,
    /// The token is not three base64url parts with JSON header and claims.
    Malformed(&'static str),
    /// The header names an algorithm that the configuration does not list,
    /// including `none` and names that are no JWS algorithm at all.
    AlgorithmNotAllowed(String),
    /// No configured key fits the token's algorithm and key id (`kid`).
    UnknownKey,
    /// The signature does not verify with any key that fits.
    BadSignature,
    /// `exp` is in the past, beyond the leeway.
    Expired,
    /// `nbf` is in the future, beyond the leeway.
    NotYetValid,
    /// `iss` is missing or differs from the configured issuer.
    WrongIssuer,
    /// `aud` is missing or names none of the configured audiences.
    WrongAudience,
    /// A claim that this broker requires is absent.
    MissingClaim(String),
    /// A claim is present but has the wrong type or an invalid value.
    InvalidClaim(String),
    /// The token's namespace claim names another namespace.
    WrongNamespace,
    /// The CONNECT client id is neither empty nor the token's `sub`.
    ClientIdMismatch,
}

impl AuthError {
    /// Returns a short, stable, lowercase reason for logs.
    pub fn reason(&self) -> &'static str {
        match self {
            AuthError::MissingToken => "missing_token",
            AuthError::TokenTooLarge => "token_too_large",
            AuthError::Malformed(_) => "malformed",
            AuthError::AlgorithmNotAllowed(_) => "algorithm_not_allowed",
            AuthError::UnknownKey => "unknown_key",
            AuthError::BadSignature => "bad_signature",
            AuthError::Expired => "expired",
            AuthError::NotYetValid => "not_yet_valid",
            AuthError::WrongIssuer => "wrong_issuer",
            AuthError::WrongAudience => "wrong_audience",
            AuthError::MissingClaim(_) => "missing_claim",
            AuthError::InvalidClaim(_) => "invalid_claim",
            AuthError::WrongNamespace => "wrong_namespace",
            AuthError::ClientIdMismatch => "client_id_mismatch",
        }
    }

    /// Returns the CONNACK reason code of MQTT 5.0 for this rejection.
    ///
    /// A token that cannot be trusted is 0x86 (Bad User Name or Password).
    /// A valid token that does not allow this connection, or no token at
    /// all, is 0x87 (Not authorized). A client id that differs from `sub` is
    /// 0x85 (Client Identifier not valid).
    pub fn connack_reason_v5(&self) -> u8 {
        match self {
            AuthError::MissingToken | AuthError::WrongNamespace => 0x87,
            AuthError::ClientIdMismatch => 0x85,
            _ => 0x86,
        }
    }

    /// Returns the CONNACK return code of MQTT 3.1.1 for this rejection:
    /// 0x02 (Identifier rejected) for a client id that differs from `sub`,
    /// 0x05 (Not authorized) for everything else.
    pub fn connack_return_code_v311(&self) -> u8 {
        match self {
            AuthError::ClientIdMismatch => 0x02,
            _ => 0x05,
        }
    }
}

impl fmt::Display for AuthError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AuthError::MissingToken => {
                f.write_str("no token presented and anonymous access is off")
            }
            AuthError::TokenTooLarge => {
                write!(f, "token longer than {} bytes", crate::MAX_TOKEN_LEN)
            }
            AuthError::Malformed(what) => write!(f, "malformed token: {what}"),
            AuthError::AlgorithmNotAllowed(alg) => {
                write!(f, "algorithm {alg:?} is not allowed by the configuration")
            }
            AuthError::UnknownKey => {
                f.write_str("no configured key matches the token's algorithm and key id")
            }
            AuthError::BadSignature => f.write_str("invalid signature"),
            AuthError::Expired => f.write_str("token expired"),
            AuthError::NotYetValid => f.write_str("token not valid yet (nbf)"),
            AuthError::WrongIssuer => f.write_str("issuer (iss) missing or not accepted"),
            AuthError::WrongAudience => f.write_str("audience (aud) missing or not accepted"),
            AuthError::MissingClaim(name) => write!(f, "required claim {name:?} missing"),
            AuthError::InvalidClaim(what) => write!(f, "invalid claim: {what}"),
            AuthError::WrongNamespace => f.write_str("token does not allow this namespace"),
            AuthError::ClientIdMismatch => {
                f.write_str("client id differs from the token's subject (sub)")
            }
        }
    }
}

impl std::error::Error for AuthError {}

/// An authentication configuration that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError(pub String);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid authentication configuration: {}", self.0)
    }
}

impl std::error::Error for ConfigError {}
