//! The verifier's configuration: which algorithms and keys to accept and
//! which claims to check. Secrets are not part of it; they are passed to
//! [`Verifier::new`](crate::Verifier::new) separately.

use jsonwebtoken::jwk::JwkSet;
use serde::{Deserialize, Serialize};

/// Default name of the claim that names the one namespace a token may use.
pub const DEFAULT_NAMESPACE_CLAIM: &str = "mqtt_namespace";

/// Default name of the claim that lists the topic filters a token allows.
pub const DEFAULT_ACL_CLAIM: &str = "mqtt_acl";

/// Default tolerance for clock skew when checking `exp` and `nbf`, in seconds.
pub const DEFAULT_LEEWAY_SECS: u64 = 60;

/// Token verification settings, read from JSON such as the `AUTH` variable
/// of the Worker. Every field is optional; the defaults accept no token and
/// no anonymous client.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// JWS algorithm names to accept, such as `"HS256"`, `"RS256"`,
    /// `"ES256"` or `"EdDSA"`. A token signed with any other is rejected.
    pub algorithms: Vec<String>,
    /// Required value of `iss`; not checked when absent.
    pub issuer: Option<String>,
    /// Accepted values of `aud`; not checked when empty. A token passes when
    /// its `aud` (a string or a list) names at least one of them.
    #[serde(deserialize_with = "one_or_many")]
    pub audience: Vec<String>,
    /// Name of the claim that names the token's namespace.
    pub namespace_claim: String,
    /// Name of the claim that contains the token's topic filters, an object
    /// `{"publish": [...], "subscribe": [...]}`.
    pub acl_claim: String,
    /// Tolerance for clock skew when checking `exp` and `nbf`, in seconds.
    pub leeway_secs: u64,
    /// Whether a token must carry `exp`.
    pub require_exp: bool,
    /// Whether a client without a token may connect, with access to every
    /// topic except publishing to `$` topics.
    pub anonymous: bool,
    /// Public keys as PEM (SPKI `PUBLIC KEY`, or PKCS#1 `RSA PUBLIC KEY`).
    pub public_keys: Vec<PublicKey>,
    /// A JSON Web Key Set with public keys (RSA, EC or OKP). Symmetric
    /// (`oct`) keys in it are rejected: the HMAC secret is a Worker secret.
    pub jwks: Option<JwkSet>,
}

/// A public key in PEM, with an optional key id to match the token's `kid`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum PublicKey {
    /// The PEM text alone.
    Pem(String),
    /// The PEM text and the key id.
    WithKeyId {
        /// The PEM text.
        pem: String,
        /// The key id that tokens signed with this key carry as `kid`.
        kid: Option<String>,
    },
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            algorithms: Vec::new(),
            issuer: None,
            audience: Vec::new(),
            namespace_claim: DEFAULT_NAMESPACE_CLAIM.to_string(),
            acl_claim: DEFAULT_ACL_CLAIM.to_string(),
            leeway_secs: DEFAULT_LEEWAY_SECS,
            require_exp: true,
            anonymous: false,
            public_keys: Vec::new(),
            jwks: None,
        }
    }
}

impl Settings {
    /// Parses settings from JSON text; unknown fields are an error so that a
    /// typo is not silently ignored.
    pub fn from_json(text: &str) -> Result<Settings, crate::ConfigError> {
        serde_json::from_str(text).map_err(|error| crate::ConfigError(error.to_string()))
    }
}

fn one_or_many<'de, D>(deserializer: D) -> Result<Vec<String>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(match OneOrMany::deserialize(deserializer)? {
        OneOrMany::One(value) => vec![value],
        OneOrMany::Many(values) => values,
    })
}

/// Turns the text of an HMAC secret into key bytes: the text without one
/// trailing line break, so that a file written by `echo` and the same value
/// stored with `wrangler secret put` give the same key.
pub fn hmac_secret_from_text(text: &str) -> &[u8] {
    let text = text.strip_suffix('\n').unwrap_or(text);
    let text = text.strip_suffix('\r').unwrap_or(text);
    text.as_bytes()
}
