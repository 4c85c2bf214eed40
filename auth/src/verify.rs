//! Token verification: signature, algorithm, key and the registered claims.

use std::str::FromStr;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk};
use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey};
use serde_json::{Map, Value};

use crate::grant::{AclClaim, Grant};
use crate::settings::{PublicKey, Settings};
use crate::{AuthError, ConfigError};

/// Maximum token length accepted, in bytes. It bounds the work done for a
/// peer, and keeps a grant small enough for the 16 KiB WebSocket attachment
/// in which a Durable Object keeps per-socket state across hibernation.
pub const MAX_TOKEN_LEN: usize = 8 * 1024;

/// Shortest HMAC secret accepted, in bytes: RFC 7518 section 3.2 requires a
/// key at least as long as the hash output, and HS256 is the shortest.
pub const MIN_HMAC_SECRET_LEN: usize = 32;

/// Verifies tokens against one configuration. Build it once and reuse it.
///
/// [`verify_claims`](Verifier::verify_claims) checks the signature and the
/// registered claims; [`verify`](Verifier::verify) also reads the broker's
/// claims into a [`Grant`].
pub struct Verifier {
    settings: Settings,
    algorithms: Vec<Algorithm>,
    keys: Vec<Key>,
}

/// One key and what it may verify.
struct Key {
    kid: Option<String>,
    family: AlgorithmFamily,
    /// The one algorithm a JWK declared with `alg`, if it did.
    algorithm: Option<Algorithm>,
    /// The curve of an EC key from a JWK; PEM keys leave it open.
    curve: Option<EllipticCurve>,
    key: DecodingKey,
}

impl Verifier {
    /// Builds a verifier from `settings` and, for HS256/384/512, the HMAC
    /// secret. Fails when an algorithm is unknown, a key does not parse, or a
    /// listed algorithm has no key of its kind.
    pub fn new(settings: Settings, hmac_secret: Option<&[u8]>) -> Result<Verifier, ConfigError> {
        let mut algorithms = Vec::new();
        for name in &settings.algorithms {
            let algorithm = Algorithm::from_str(name).map_err(|_| {
                ConfigError(format!(
                    "unknown algorithm {name:?}; use HS256, HS384, HS512, RS256, RS384, \
                     RS512, PS256, PS384, PS512, ES256, ES384 or EdDSA"
                ))
            })?;
            algorithms.push(algorithm);
        }

        let mut keys = Vec::new();
        if let Some(secret) = hmac_secret {
            if secret.len() < MIN_HMAC_SECRET_LEN {
                return Err(ConfigError(format!(
                    "HMAC secret has {} bytes; use at least {MIN_HMAC_SECRET_LEN}",
                    secret.len()
                )));
            }
            keys.push(Key {
                kid: None,
                family: AlgorithmFamily::Hmac,
                algorithm: None,
                curve: None,
                key: DecodingKey::from_secret(secret),
            });
        }
        for (index, public_key) in settings.public_keys.iter().enumerate() {
            keys.push(
                key_from_pem(public_key)
                    .map_err(|error| ConfigError(format!("public_keys[{index}]: {error}")))?,
            );
        }
        if let Some(jwks) = &settings.jwks {
            for (index, jwk) in jwks.keys.iter().enumerate() {
                keys.push(
                    key_from_jwk(jwk)
                        .map_err(|error| ConfigError(format!("jwks.keys[{index}]: {error}")))?,
                );
            }
        }

        for algorithm in &algorithms {
            if !keys.iter().any(|key| key.family == algorithm.family()) {
                return Err(ConfigError(format!(
                    "algorithm {algorithm:?} is enabled but no key of its kind is configured{}",
                    if algorithm.family() == AlgorithmFamily::Hmac {
                        " (the HMAC secret is missing)"
                    } else {
                        ""
                    }
                )));
            }
        }
        Ok(Verifier {
            settings,
            algorithms,
            keys,
        })
    }

    /// Returns the settings this verifier was built from.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// Reports whether clients without a token may connect.
    pub fn anonymous_allowed(&self) -> bool {
        self.settings.anonymous
    }

    /// Verifies `token` at `now_secs` (seconds since the Unix epoch) and
    /// returns the [`Grant`] its claims describe.
    pub fn verify(&self, token: &str, now_secs: u64) -> Result<Grant, AuthError> {
        let claims = self.verify_claims(token, now_secs)?;
        grant_from_claims(&self.settings, &claims)
    }

    /// Verifies the signature, the algorithm, `exp`, `nbf`, `iss` and `aud`
    /// of `token` at `now_secs`, and returns all its claims.
    pub fn verify_claims(
        &self,
        token: &str,
        now_secs: u64,
    ) -> Result<Map<String, Value>, AuthError> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(AuthError::TokenTooLarge);
        }
        let mut parts = token.split('.');
        let (Some(header), Some(payload), Some(signature), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(AuthError::Malformed("expected three dot-separated parts"));
        };

        let header = decode_json_part(header, "header")?;
        let (algorithm, kid) = self.check_header(&header)?;
        if URL_SAFE_NO_PAD.decode(signature).is_err() {
            return Err(AuthError::Malformed("signature is not base64url"));
        }
        let signed_len = token.len() - signature.len() - 1;
        self.check_signature(&token.as_bytes()[..signed_len], signature, algorithm, kid)?;

        // Only now, with the signature checked, are the claims worth reading.
        let claims = decode_json_part(payload, "claims")?;
        self.check_registered_claims(&claims, now_secs)?;
        Ok(claims)
    }

    /// Returns the header's algorithm, if allowed, and its key id.
    fn check_header<'h>(
        &self,
        header: &'h Map<String, Value>,
    ) -> Result<(Algorithm, Option<&'h str>), AuthError> {
        let Some(Value::String(name)) = header.get("alg") else {
            return Err(AuthError::Malformed("header has no \"alg\" string"));
        };
        // `none`, unknown names and known but unlisted algorithms all end
        // here; the name is shortened because a peer chose it.
        let algorithm = Algorithm::from_str(name)
            .ok()
            .filter(|algorithm| self.algorithms.contains(algorithm))
            .ok_or_else(|| AuthError::AlgorithmNotAllowed(printable_prefix(name)))?;

        // RFC 7515 section 4.1.11: a recipient that does not understand a
        // `crit` extension must reject the token, and this one supports none.
        if header.contains_key("crit") {
            return Err(AuthError::Malformed("header has a \"crit\" extension"));
        }
        let kid = match header.get("kid") {
            None => None,
            Some(Value::String(kid)) => Some(kid.as_str()),
            Some(_) => return Err(AuthError::Malformed("header \"kid\" is not a string")),
        };
        Ok((algorithm, kid))
    }

    fn check_signature(
        &self,
        message: &[u8],
        signature: &str,
        algorithm: Algorithm,
        kid: Option<&str>,
    ) -> Result<(), AuthError> {
        let mut tried = 0;
        for key in self.keys.iter().filter(|key| key.fits(algorithm, kid)) {
            // An error here means the key cannot serve this algorithm (an EC
            // key of another curve, say); it counts as not fitting.
            match jsonwebtoken::crypto::verify(signature, message, &key.key, algorithm) {
                Ok(true) => return Ok(()),
                Ok(false) => tried += 1,
                Err(_) => {}
            }
        }
        if tried == 0 {
            Err(AuthError::UnknownKey)
        } else {
            Err(AuthError::BadSignature)
        }
    }

    fn check_registered_claims(
        &self,
        claims: &Map<String, Value>,
        now_secs: u64,
    ) -> Result<(), AuthError> {
        let leeway = self.settings.leeway_secs;
        match numeric_date(claims, "exp")? {
            Some(exp) if now_secs >= exp.saturating_add(leeway) => return Err(AuthError::Expired),
            Some(_) => {}
            None if self.settings.require_exp => {
                return Err(AuthError::MissingClaim("exp".to_string()))
            }
            None => {}
        }
        if let Some(nbf) = numeric_date(claims, "nbf")? {
            if now_secs.saturating_add(leeway) < nbf {
                return Err(AuthError::NotYetValid);
            }
        }

        if let Some(issuer) = &self.settings.issuer {
            if claims.get("iss").and_then(Value::as_str) != Some(issuer.as_str()) {
                return Err(AuthError::WrongIssuer);
            }
        }
        if !self.settings.audience.is_empty() && !self.audience_accepted(claims.get("aud")) {
            return Err(AuthError::WrongAudience);
        }
        Ok(())
    }

    fn audience_accepted(&self, aud: Option<&Value>) -> bool {
        let accepted = |value: &Value| {
            value
                .as_str()
                .is_some_and(|name| self.settings.audience.iter().any(|a| a == name))
        };
        match aud {
            Some(Value::Array(values)) => values.iter().any(accepted),
            Some(value) => accepted(value),
            None => false,
        }
    }
}

impl Key {
    fn fits(&self, algorithm: Algorithm, kid: Option<&str>) -> bool {
        // The key's family, not the token, decides which algorithms it may
        // verify: an RSA public key is never used as an HMAC secret.
        if self.family != algorithm.family() {
            return false;
        }
        if self.algorithm.is_some_and(|declared| declared != algorithm) {
            return false;
        }
        let curve_fits = match (&self.curve, algorithm) {
            (Some(EllipticCurve::P256), Algorithm::ES256) => true,
            (Some(EllipticCurve::P384), Algorithm::ES384) => true,
            (Some(_), _) => false,
            (None, _) => true,
        };
        // A token's `kid` selects among keys that have an id; a key
        // configured without one is tried for any token of its family.
        let kid_fits = match (kid, &self.kid) {
            (Some(wanted), Some(own)) => wanted == own,
            _ => true,
        };
        curve_fits && kid_fits
    }
}

fn key_from_pem(public_key: &PublicKey) -> Result<Key, String> {
    let (pem, kid) = match public_key {
        PublicKey::Pem(pem) => (pem, None),
        PublicKey::WithKeyId { pem, kid } => (pem, kid.clone()),
    };
    if pem.contains("PRIVATE KEY") {
        return Err("is a private key; configure the public key only".to_string());
    }
    let bytes = pem.as_bytes();
    let (family, key) = if let Ok(key) = DecodingKey::from_rsa_pem(bytes) {
        (AlgorithmFamily::Rsa, key)
    } else if let Ok(key) = DecodingKey::from_ec_pem(bytes) {
        (AlgorithmFamily::Ec, key)
    } else if let Ok(key) = DecodingKey::from_ed_pem(bytes) {
        (AlgorithmFamily::Ed, key)
    } else {
        return Err("not an RSA, EC or Ed25519 public key in PEM".to_string());
    };
    Ok(Key {
        kid,
        family,
        algorithm: None,
        curve: None,
        key,
    })
}

fn key_from_jwk(jwk: &Jwk) -> Result<Key, String> {
    let (family, curve) = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => (AlgorithmFamily::Rsa, None),
        AlgorithmParameters::EllipticCurve(params) => {
            (AlgorithmFamily::Ec, Some(params.curve.clone()))
        }
        AlgorithmParameters::OctetKeyPair(params) => {
            if params.curve != EllipticCurve::Ed25519 {
                return Err(format!(
                    "OKP curve {:?} is not supported; use Ed25519",
                    params.curve
                ));
            }
            (AlgorithmFamily::Ed, None)
        }
        AlgorithmParameters::OctetKey(_) => {
            return Err("symmetric (oct) keys are not accepted in a key set; \
                        put the HMAC secret in the Worker secret"
                .to_string())
        }
    };
    let algorithm = match &jwk.common.key_algorithm {
        None => None,
        Some(declared) => Some(
            Algorithm::from_str(&declared.to_string())
                .map_err(|_| format!("key algorithm {declared} is not a JWS algorithm"))?,
        ),
    };
    let key = DecodingKey::from_jwk(jwk).map_err(|error| error.to_string())?;
    Ok(Key {
        kid: jwk.common.key_id.clone(),
        family,
        algorithm,
        curve,
        key,
    })
}

fn decode_json_part(part: &str, name: &'static str) -> Result<Map<String, Value>, AuthError> {
    let malformed = || {
        AuthError::Malformed(if name == "header" {
            "header is not base64url-encoded JSON object"
        } else {
            "claims are not a base64url-encoded JSON object"
        })
    };
    let bytes = URL_SAFE_NO_PAD.decode(part).map_err(|_| malformed())?;
    match serde_json::from_slice(&bytes) {
        Ok(Value::Object(map)) => Ok(map),
        _ => Err(malformed()),
    }
}

/// Reads a NumericDate claim (RFC 7519 section 2): seconds, possibly with
/// a fraction, which is dropped.
fn numeric_date(claims: &Map<String, Value>, name: &str) -> Result<Option<u64>, AuthError> {
    match claims.get(name) {
        None => Ok(None),
        Some(value) => match value.as_f64() {
            Some(seconds) if seconds.is_finite() => Ok(Some(seconds.max(0.0) as u64)),
            _ => Err(AuthError::InvalidClaim(format!("{name} is not a number"))),
        },
    }
}

/// Keeps at most 32 printable ASCII characters of a peer-chosen string so
/// that it is safe to log.
pub(crate) fn printable_prefix(text: &str) -> String {
    text.chars()
        .take(32)
        .map(|c| {
            if c.is_ascii_graphic() || c == ' ' {
                c
            } else {
                '?'
            }
        })
        .collect()
}

fn grant_from_claims(settings: &Settings, claims: &Map<String, Value>) -> Result<Grant, AuthError> {
    let sub = match claims.get("sub") {
        Some(Value::String(sub)) if !sub.is_empty() => sub.clone(),
        Some(_) => {
            return Err(AuthError::InvalidClaim(
                "sub is not a non-empty string".into(),
            ))
        }
        None => return Err(AuthError::MissingClaim("sub".into())),
    };
    let namespace = match claims.get(&settings.namespace_claim) {
        Some(Value::String(namespace)) if !namespace.is_empty() => namespace.clone(),
        Some(_) => {
            return Err(AuthError::InvalidClaim(format!(
                "{} is not a non-empty string",
                settings.namespace_claim
            )))
        }
        None => return Err(AuthError::MissingClaim(settings.namespace_claim.clone())),
    };
    let acl = match claims.get(&settings.acl_claim) {
        // No ACL claim allows no topic at all.
        None => AclClaim::default(),
        Some(value) => AclClaim::from_claim(&settings.acl_claim, value)?,
    };
    let expires_at = numeric_date(claims, "exp")?;
    Ok(Grant {
        sub,
        namespace,
        publish: acl.publish,
        subscribe: acl.subscribe,
        expires_at,
    })
}
