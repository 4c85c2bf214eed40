//! The decision at CONNECT: which token applies, whether it fits the
//! namespace and client id, and the resulting ACL.

use serde::{Deserialize, Serialize};

use crate::{Acl, AuthError, Grant, Verifier};

/// The credentials of a connection when its CONNECT arrives.
#[derive(Debug, Clone, Copy)]
pub struct ConnectCredentials<'a> {
    /// The grant the ingress verified from the upgrade request, if any.
    pub ingress_grant: Option<&'a Grant>,
    /// The namespace the connection belongs to.
    pub namespace: &'a str,
    /// The client id from CONNECT; empty when the client sent none.
    pub client_id: &'a str,
    /// The username from CONNECT.
    pub username: Option<&'a str>,
    /// The password from CONNECT.
    pub password: Option<&'a [u8]>,
}

/// An accepted connection: its client id and what it may do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Authorized {
    /// The client id to use: the token's `sub` when the client sent none.
    pub client_id: String,
    /// The token's subject; `None` for an anonymous client.
    pub sub: Option<String>,
    /// The topics the connection may use.
    pub acl: Acl,
    /// When the token expires, in seconds since the Unix epoch.
    pub expires_at: Option<u64>,
}

impl Verifier {
    /// Decides whether a CONNECT is accepted, at `now_secs`.
    ///
    /// A grant verified by the ingress wins, and the password is then not
    /// read. Otherwise a password that is a token must verify. Without a
    /// token, the client connects anonymously if that is allowed; with
    /// anonymous access on, a password that is not a token is ignored.
    pub fn authorize_connect(
        &self,
        credentials: &ConnectCredentials<'_>,
        now_secs: u64,
    ) -> Result<Authorized, AuthError> {
        let verified;
        let grant = match credentials.ingress_grant {
            Some(grant) => grant,
            None => match password_token(credentials.password) {
                Some(token) => {
                    verified = self.verify(token, now_secs)?;
                    &verified
                }
                None if self.anonymous_allowed() => {
                    return Ok(Authorized {
                        client_id: credentials.client_id.to_string(),
                        sub: None,
                        acl: Acl::unrestricted(),
                        expires_at: None,
                    });
                }
                None if credentials.password.is_some() => {
                    return Err(AuthError::Malformed("password is not a token"));
                }
                None => return Err(AuthError::MissingToken),
            },
        };

        grant.check_namespace(credentials.namespace)?;
        let client_id = grant.bind_client_id(credentials.client_id)?;
        let acl = grant.acl(&client_id, credentials.username);
        Ok(Authorized {
            client_id,
            sub: Some(grant.sub.clone()),
            acl,
            expires_at: grant.expires_at,
        })
    }
}

/// Returns the password as a token, if it has the shape of one (UTF-8 with
/// two dots).
fn password_token(password: Option<&[u8]>) -> Option<&str> {
    let text = std::str::from_utf8(password?).ok()?;
    (text.matches('.').count() == 2).then_some(text)
}
