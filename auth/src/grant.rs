//! The rights a verified token carries, and their transfer from the ingress
//! Worker to the Durable Object in a request header.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{Acl, AuthError};

/// Header value for "the ingress verified no token". The CONNECT password
/// must then carry one, unless anonymous access is on.
pub const NO_GRANT: &str = "none";

/// The rights of a verified token. Filters still hold their `%c` and `%u`
/// placeholders; [`Grant::acl`] resolves them for one connection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grant {
    /// The token's subject, which the client id must equal.
    pub sub: String,
    /// The one namespace the token may use.
    pub namespace: String,
    /// Topic filters the client may publish to.
    pub publish: Vec<String>,
    /// Topic filters the client may subscribe to and receive from.
    pub subscribe: Vec<String>,
    /// The token's `exp`, in seconds since the Unix epoch.
    pub expires_at: Option<u64>,
}

impl Grant {
    /// Checks that the token may be used in `namespace`.
    pub fn check_namespace(&self, namespace: &str) -> Result<(), AuthError> {
        if self.namespace == namespace {
            Ok(())
        } else {
            Err(AuthError::WrongNamespace)
        }
    }

    /// Returns the client id a connection with this grant gets: `sub` when
    /// the CONNECT client id is empty or equal to it.
    pub fn bind_client_id(&self, requested: &str) -> Result<String, AuthError> {
        if requested.is_empty() || requested == self.sub {
            Ok(self.sub.clone())
        } else {
            Err(AuthError::ClientIdMismatch)
        }
    }

    /// Builds the ACL of one connection, with the placeholders replaced.
    pub fn acl(&self, client_id: &str, username: Option<&str>) -> Acl {
        Acl::new(&self.publish, &self.subscribe, client_id, username)
    }

    /// Encodes the grant for a request header: base64url of its JSON, so
    /// that topic filters with any UTF-8 fit in an ASCII header value.
    pub fn to_header_value(&self) -> String {
        // serde_json fails only on maps with non-string keys or on failing
        // Serialize impls, and a Grant has neither.
        let json = serde_json::to_vec(self).unwrap_or_default();
        URL_SAFE_NO_PAD.encode(json)
    }

    /// Decodes a header value written by [`to_header_value`](Self::to_header_value);
    /// `Ok(None)` for [`NO_GRANT`].
    pub fn from_header_value(value: &str) -> Result<Option<Grant>, AuthError> {
        if value == NO_GRANT {
            return Ok(None);
        }
        let json = URL_SAFE_NO_PAD
            .decode(value)
            .map_err(|_| AuthError::Malformed("grant header is not base64url"))?;
        serde_json::from_slice(&json)
            .map(Some)
            .map_err(|_| AuthError::Malformed("grant header is not a grant in JSON"))
    }
}

/// The ACL claim of a token: `{"publish": [...], "subscribe": [...]}`.
#[derive(Debug, Default)]
pub(crate) struct AclClaim {
    pub publish: Vec<String>,
    pub subscribe: Vec<String>,
}

impl AclClaim {
    /// Reads the claim named `name`; both lists are optional, and every
    /// entry must be a valid topic filter (placeholders count as text).
    pub fn from_claim(name: &str, value: &Value) -> Result<AclClaim, AuthError> {
        let Value::Object(object) = value else {
            return Err(AuthError::InvalidClaim(format!("{name} is not an object")));
        };
        if let Some(key) = object
            .keys()
            .find(|key| *key != "publish" && *key != "subscribe")
        {
            return Err(AuthError::InvalidClaim(format!(
                "{name} has the unknown field {:?}; use publish and subscribe",
                crate::verify::printable_prefix(key)
            )));
        }
        Ok(AclClaim {
            publish: filter_list(name, "publish", object.get("publish"))?,
            subscribe: filter_list(name, "subscribe", object.get("subscribe"))?,
        })
    }
}

fn filter_list(claim: &str, field: &str, value: Option<&Value>) -> Result<Vec<String>, AuthError> {
    let invalid =
        || AuthError::InvalidClaim(format!("{claim}.{field} is not a list of topic filters"));
    let Some(value) = value else {
        return Ok(Vec::new());
    };
    let Value::Array(entries) = value else {
        return Err(invalid());
    };
    entries
        .iter()
        .map(|entry| match entry {
            Value::String(filter) if crate::filter::valid_topic_filter(filter) => {
                Ok(filter.clone())
            }
            _ => Err(invalid()),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grant() -> Grant {
        Grant {
            sub: "dev1".into(),
            namespace: "default".into(),
            publish: vec!["site1/#".into(), "größe/%c".into()],
            subscribe: vec!["site1/+".into()],
            expires_at: Some(1_900_000_000),
        }
    }

    #[test]
    fn header_value_round_trip() {
        let value = grant().to_header_value();
        assert!(value.is_ascii());
        assert_eq!(Grant::from_header_value(&value), Ok(Some(grant())));
        assert_eq!(Grant::from_header_value(NO_GRANT), Ok(None));
        assert!(Grant::from_header_value("not base64!").is_err());
        assert!(Grant::from_header_value("e30").is_err());
    }

    #[test]
    fn client_id_binding() {
        let grant = grant();
        assert_eq!(grant.bind_client_id(""), Ok("dev1".to_string()));
        assert_eq!(grant.bind_client_id("dev1"), Ok("dev1".to_string()));
        assert_eq!(
            grant.bind_client_id("dev2"),
            Err(AuthError::ClientIdMismatch)
        );
    }

    #[test]
    fn namespace_check() {
        assert_eq!(grant().check_namespace("default"), Ok(()));
        assert_eq!(
            grant().check_namespace("other"),
            Err(AuthError::WrongNamespace)
        );
    }

    #[test]
    fn acl_claim_parsing() {
        let valid = serde_json::json!({"publish": ["a/#"], "subscribe": ["b/+"]});
        let claim = AclClaim::from_claim("mqtt_acl", &valid).unwrap();
        assert_eq!(claim.publish, vec!["a/#"]);
        assert_eq!(claim.subscribe, vec!["b/+"]);

        let invalid = [
            serde_json::json!("a/#"),
            serde_json::json!({"publish": "a/#"}),
            serde_json::json!({"publish": ["a/#/b"]}),
            serde_json::json!({"publish": [1]}),
            serde_json::json!({"pub": ["a"]}),
        ];
        for value in invalid {
            assert!(
                matches!(
                    AclClaim::from_claim("mqtt_acl", &value),
                    Err(AuthError::InvalidClaim(_))
                ),
                "{value} was accepted"
            );
        }
    }
}
