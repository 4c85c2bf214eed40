//! Authentication and authorization for the MQTT broker, without I/O: the
//! caller passes the current time and the configuration, and gets values
//! back. It builds for the host and for `wasm32-unknown-unknown`.
//!
//! - `settings`: which algorithms, keys and claims a [`Verifier`] accepts.
//! - `verify`: the [`Verifier`], which checks a JSON Web Token.
//! - `grant`: the [`Grant`] a valid token carries, and its header encoding.
//! - `connect`: the decision at CONNECT, from token or anonymous access.
//! - `acl`: the [`Acl`] that decides publish, subscribe and delivery.
//! - `filter`: topic filter validity, matching and coverage.
//! - `error`: [`AuthError`], each rejection with its log reason and CONNACK code.
//! - `log_limit`: a rate limit for failure logs.
//! - `secret`: comparison of bearer secrets.

mod acl;
mod connect;
mod error;
pub mod filter;
mod grant;
mod log_limit;
mod secret;
mod settings;
mod verify;

pub use acl::Acl;
pub use connect::{Authorized, ConnectCredentials};
pub use error::{AuthError, ConfigError};
pub use grant::{Grant, NO_GRANT};
pub use jsonwebtoken::jwk::JwkSet;
pub use log_limit::{LogDecision, LogLimiter};
pub use secret::secrets_equal;
pub use settings::{
    hmac_secret_from_text, PublicKey, Settings, DEFAULT_ACL_CLAIM, DEFAULT_LEEWAY_SECS,
    DEFAULT_NAMESPACE_CLAIM,
};
pub use verify::{Verifier, MAX_TOKEN_LEN, MIN_HMAC_SECRET_LEN};
