//! Token verification against real keys: every way a token is rejected,
//! and the decision at CONNECT. The keys in `tests/keys` were generated with
//! `openssl genpkey` for these tests only.

use auth::{
    AuthError, ConfigError, ConnectCredentials, Grant, JwkSet, PublicKey, Settings, Verifier,
};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::{json, Value};

const SECRET: &[u8] = b"test-secret-of-at-least-32-bytes-0123456789";
const NOW: u64 = 1_800_000_000;

fn key_text(name: &str) -> String {
    std::fs::read_to_string(format!("{}/tests/keys/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

fn claims() -> Value {
    json!({
        "sub": "dev1",
        "exp": NOW + 600,
        "iss": "https://issuer.example",
        "aud": "mqtt-broker",
        "mqtt_namespace": "default",
        "mqtt_acl": {"publish": ["site1/#"], "subscribe": ["site1/#", "devices/%c/in"]},
    })
}

fn with(mut claims: Value, name: &str, value: Value) -> Value {
    claims[name] = value;
    claims
}

fn without(mut claims: Value, name: &str) -> Value {
    claims.as_object_mut().unwrap().remove(name);
    claims
}

fn sign(algorithm: Algorithm, key: &EncodingKey, kid: Option<&str>, claims: &Value) -> String {
    let mut header = Header::new(algorithm);
    header.kid = kid.map(str::to_string);
    encode(&header, claims, key).unwrap()
}

fn hs256(claims: &Value) -> String {
    sign(
        Algorithm::HS256,
        &EncodingKey::from_secret(SECRET),
        None,
        claims,
    )
}

fn rsa_private() -> EncodingKey {
    EncodingKey::from_rsa_pem(key_text("rsa_private.pem").as_bytes()).unwrap()
}

fn settings(algorithms: &[&str]) -> Settings {
    Settings {
        algorithms: algorithms.iter().map(|name| name.to_string()).collect(),
        issuer: Some("https://issuer.example".into()),
        audience: vec!["mqtt-broker".into()],
        public_keys: vec![
            PublicKey::Pem(key_text("rsa_public.pem")),
            PublicKey::Pem(key_text("ec_public.pem")),
            PublicKey::Pem(key_text("ed25519_public.pem")),
        ],
        ..Settings::default()
    }
}

fn hmac_verifier() -> Verifier {
    Verifier::new(settings(&["HS256"]), Some(SECRET)).unwrap()
}

fn all_verifier() -> Verifier {
    let algorithms = ["HS256", "HS384", "HS512", "RS256", "ES256", "EdDSA"];
    Verifier::new(settings(&algorithms), Some(SECRET)).unwrap()
}

/// Builds a token from raw header and claims JSON and the given signature text.
fn raw_token(header: &str, claims: &Value, signature: &str) -> String {
    format!(
        "{}.{}.{signature}",
        URL_SAFE_NO_PAD.encode(header),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    )
}

#[test]
fn accepts_every_configured_algorithm() {
    let verifier = all_verifier();
    let hmac = EncodingKey::from_secret(SECRET);
    let ec = EncodingKey::from_ec_pem(key_text("ec_private.pem").as_bytes()).unwrap();
    let ed = EncodingKey::from_ed_pem(key_text("ed25519_private.pem").as_bytes()).unwrap();
    let cases = [
        (Algorithm::HS256, &hmac),
        (Algorithm::HS384, &hmac),
        (Algorithm::HS512, &hmac),
        (Algorithm::RS256, &rsa_private()),
        (Algorithm::ES256, &ec),
        (Algorithm::EdDSA, &ed),
    ];
    for (algorithm, key) in cases {
        let token = sign(algorithm, key, None, &claims());
        let grant = verifier.verify(&token, NOW);
        assert!(grant.is_ok(), "{algorithm:?}: {grant:?}");
    }
}

#[test]
fn grant_carries_claims() {
    let grant = hmac_verifier().verify(&hs256(&claims()), NOW).unwrap();
    assert_eq!(
        grant,
        Grant {
            sub: "dev1".into(),
            namespace: "default".into(),
            publish: vec!["site1/#".into()],
            subscribe: vec!["site1/#".into(), "devices/%c/in".into()],
            expires_at: Some(NOW + 600),
        }
    );
}

#[test]
fn key_set_selects_key_by_id() {
    let jwks: JwkSet = serde_json::from_str(&key_text("jwks.json")).unwrap();
    let settings = Settings {
        algorithms: vec!["RS256".into()],
        public_keys: Vec::new(),
        jwks: Some(jwks),
        ..settings(&[])
    };
    let verifier = Verifier::new(settings, None).unwrap();

    let token = sign(Algorithm::RS256, &rsa_private(), Some("rsa-1"), &claims());
    assert!(verifier.verify(&token, NOW).is_ok());

    let unknown_kid = sign(Algorithm::RS256, &rsa_private(), Some("rsa-2"), &claims());
    assert_eq!(
        verifier.verify(&unknown_kid, NOW),
        Err(AuthError::UnknownKey)
    );
}

#[test]
fn rejects_alg_none() {
    let verifier = all_verifier();
    for header in [
        r#"{"alg":"none"}"#,
        r#"{"alg":"None"}"#,
        r#"{"alg":"NONE","typ":"JWT"}"#,
    ] {
        let token = raw_token(header, &claims(), "");
        assert!(
            matches!(
                verifier.verify(&token, NOW),
                Err(AuthError::AlgorithmNotAllowed(_))
            ),
            "{header} was not rejected as an algorithm"
        );
    }
}

#[test]
fn rejects_algorithm_not_configured() {
    let token = sign(
        Algorithm::HS512,
        &EncodingKey::from_secret(SECRET),
        None,
        &claims(),
    );
    assert_eq!(
        hmac_verifier().verify(&token, NOW),
        Err(AuthError::AlgorithmNotAllowed("HS512".into()))
    );

    let token = raw_token(r#"{"alg":"XS999"}"#, &claims(), "c2ln");
    assert_eq!(
        hmac_verifier().verify(&token, NOW),
        Err(AuthError::AlgorithmNotAllowed("XS999".into()))
    );
}

/// The classic confusion: an attacker signs with HS256, using the RSA public
/// key (which is public) as the HMAC secret, hoping the verifier feeds the
/// configured public key to HMAC.
#[test]
fn rejects_hmac_signed_with_public_key() {
    let public_pem = key_text("rsa_public.pem");
    let forged = sign(
        Algorithm::HS256,
        &EncodingKey::from_secret(public_pem.as_bytes()),
        None,
        &claims(),
    );

    let rsa_only = Verifier::new(settings(&["RS256"]), None).unwrap();
    assert_eq!(
        rsa_only.verify(&forged, NOW),
        Err(AuthError::AlgorithmNotAllowed("HS256".into()))
    );

    // With HS256 also enabled, only the configured secret is an HMAC key.
    assert_eq!(
        all_verifier().verify(&forged, NOW),
        Err(AuthError::BadSignature)
    );
}

#[test]
fn rejects_bad_signatures() {
    let verifier = all_verifier();

    let token = hs256(&claims());
    let (signed, _) = token.rsplit_once('.').unwrap();
    let other = hs256(&with(claims(), "sub", json!("admin")));
    let (_, other_signature) = other.rsplit_once('.').unwrap();
    let spliced = format!("{signed}.{other_signature}");
    assert_eq!(verifier.verify(&spliced, NOW), Err(AuthError::BadSignature));

    let other_secret = EncodingKey::from_secret(b"another-secret-of-at-least-32-bytes-000");
    let token = sign(Algorithm::HS256, &other_secret, None, &claims());
    assert_eq!(verifier.verify(&token, NOW), Err(AuthError::BadSignature));

    let other_rsa =
        EncodingKey::from_rsa_pem(key_text("rsa_other_private.pem").as_bytes()).unwrap();
    let token = sign(Algorithm::RS256, &other_rsa, None, &claims());
    assert_eq!(verifier.verify(&token, NOW), Err(AuthError::BadSignature));

    let token = raw_token(r#"{"alg":"HS256"}"#, &claims(), "");
    assert_eq!(verifier.verify(&token, NOW), Err(AuthError::BadSignature));
}

#[test]
fn rejects_malformed_tokens() {
    let verifier = hmac_verifier();
    let valid = hs256(&claims());
    let (header, rest) = valid.split_once('.').unwrap();
    let cases = [
        String::new(),
        "abc".to_string(),
        "a.b".to_string(),
        format!("{valid}.extra"),
        format!("!!!.{rest}"),
        format!("{}.{rest}", URL_SAFE_NO_PAD.encode("not json")),
        format!("{}.{rest}", URL_SAFE_NO_PAD.encode("[1]")),
        format!("{}.{rest}", URL_SAFE_NO_PAD.encode(r#"{"typ":"JWT"}"#)),
        format!(
            "{}.{rest}",
            URL_SAFE_NO_PAD.encode(r#"{"alg":"HS256","kid":7}"#)
        ),
        format!(
            "{}.{rest}",
            URL_SAFE_NO_PAD.encode(r#"{"alg":"HS256","crit":["x"]}"#)
        ),
        format!("{header}.e30.sig=="),
    ];
    for token in cases {
        assert!(
            matches!(verifier.verify(&token, NOW), Err(AuthError::Malformed(_))),
            "{token:?} gave {:?}",
            verifier.verify(&token, NOW)
        );
    }

    // Claims that are not JSON are found only after the signature passed.
    let token = {
        let message = format!("{}.{}", header, URL_SAFE_NO_PAD.encode("not json"));
        let signature = jsonwebtoken::crypto::sign(
            message.as_bytes(),
            &EncodingKey::from_secret(SECRET),
            Algorithm::HS256,
        )
        .unwrap();
        format!("{message}.{signature}")
    };
    assert!(matches!(
        verifier.verify(&token, NOW),
        Err(AuthError::Malformed(_))
    ));
}

#[test]
fn rejects_oversized_token() {
    let token = "a".repeat(auth::MAX_TOKEN_LEN + 1);
    assert_eq!(
        hmac_verifier().verify(&token, NOW),
        Err(AuthError::TokenTooLarge)
    );
}

#[test]
fn checks_expiry_with_leeway() {
    let verifier = hmac_verifier();
    let token = hs256(&with(claims(), "exp", json!(NOW)));
    assert!(verifier.verify(&token, NOW + 59).is_ok());
    assert_eq!(verifier.verify(&token, NOW + 60), Err(AuthError::Expired));
    assert_eq!(
        verifier.verify(&token, NOW + 86_400),
        Err(AuthError::Expired)
    );

    let fractional = hs256(&with(claims(), "exp", json!(NOW as f64 + 0.5)));
    assert!(verifier.verify(&fractional, NOW).is_ok());

    let text = hs256(&with(claims(), "exp", json!("tomorrow")));
    assert!(matches!(
        verifier.verify(&text, NOW),
        Err(AuthError::InvalidClaim(_))
    ));
}

#[test]
fn requires_exp_unless_configured() {
    let token = hs256(&without(claims(), "exp"));
    assert_eq!(
        hmac_verifier().verify(&token, NOW),
        Err(AuthError::MissingClaim("exp".into()))
    );

    let lenient = Settings {
        require_exp: false,
        ..settings(&["HS256"])
    };
    let verifier = Verifier::new(lenient, Some(SECRET)).unwrap();
    assert_eq!(verifier.verify(&token, NOW).unwrap().expires_at, None);
}

#[test]
fn checks_not_before_with_leeway() {
    let verifier = hmac_verifier();
    let token = hs256(&with(claims(), "nbf", json!(NOW + 100)));
    assert_eq!(verifier.verify(&token, NOW), Err(AuthError::NotYetValid));
    assert!(verifier.verify(&token, NOW + 40).is_ok());
    assert!(verifier.verify(&token, NOW + 100).is_ok());
}

#[test]
fn checks_issuer() {
    let verifier = hmac_verifier();
    let cases = [
        with(claims(), "iss", json!("https://other.example")),
        with(claims(), "iss", json!(["https://issuer.example"])),
        without(claims(), "iss"),
    ];
    for claims in cases {
        assert_eq!(
            verifier.verify(&hs256(&claims), NOW),
            Err(AuthError::WrongIssuer),
            "{claims}"
        );
    }
}

#[test]
fn checks_audience() {
    let verifier = hmac_verifier();
    let listed = with(claims(), "aud", json!(["other", "mqtt-broker"]));
    assert!(verifier.verify(&hs256(&listed), NOW).is_ok());

    let cases = [
        with(claims(), "aud", json!("other")),
        with(claims(), "aud", json!(["other"])),
        with(claims(), "aud", json!(7)),
        without(claims(), "aud"),
    ];
    for claims in cases {
        assert_eq!(
            verifier.verify(&hs256(&claims), NOW),
            Err(AuthError::WrongAudience),
            "{claims}"
        );
    }
}

#[test]
fn requires_broker_claims() {
    let verifier = hmac_verifier();
    let cases = [
        (without(claims(), "sub"), "missing_claim"),
        (with(claims(), "sub", json!("")), "invalid_claim"),
        (with(claims(), "sub", json!(42)), "invalid_claim"),
        (without(claims(), "mqtt_namespace"), "missing_claim"),
        (
            with(claims(), "mqtt_namespace", json!(["a"])),
            "invalid_claim",
        ),
        (with(claims(), "mqtt_acl", json!(["a/#"])), "invalid_claim"),
        (
            with(claims(), "mqtt_acl", json!({"publish": ["a/#/b"]})),
            "invalid_claim",
        ),
    ];
    for (claims, reason) in cases {
        let result = verifier.verify(&hs256(&claims), NOW);
        assert_eq!(
            result.as_ref().map_err(AuthError::reason).err(),
            Some(reason),
            "{claims}"
        );
    }

    let no_acl = verifier
        .verify(&hs256(&without(claims(), "mqtt_acl")), NOW)
        .unwrap();
    assert!(no_acl.publish.is_empty());
    assert!(no_acl.subscribe.is_empty());
}

#[test]
fn custom_claim_names() {
    let custom = Settings {
        namespace_claim: "tenant".into(),
        acl_claim: "topics".into(),
        ..settings(&["HS256"])
    };
    let verifier = Verifier::new(custom, Some(SECRET)).unwrap();
    let claims = with(claims(), "tenant", json!("t1"));
    let claims = with(claims, "topics", json!({"publish": ["x"]}));
    let grant = verifier.verify(&hs256(&claims), NOW).unwrap();
    assert_eq!(grant.namespace, "t1");
    assert_eq!(grant.publish, vec!["x"]);
}

#[test]
fn rejects_unusable_configuration() {
    let error = |settings: Settings, secret: Option<&[u8]>| -> ConfigError {
        Verifier::new(settings, secret)
            .err()
            .expect("configuration was accepted")
    };
    let cases = [
        (settings(&["HS255"]), Some(SECRET), "unknown algorithm"),
        (settings(&["none"]), Some(SECRET), "unknown algorithm"),
        (settings(&["HS256"]), None, "HMAC secret is missing"),
        (
            settings(&["HS256"]),
            Some(b"short".as_slice()),
            "at least 32",
        ),
        (
            Settings {
                public_keys: vec![PublicKey::Pem(key_text("rsa_private.pem"))],
                ..settings(&[])
            },
            None,
            "private key",
        ),
        (
            Settings {
                public_keys: vec![PublicKey::Pem("garbage".into())],
                ..settings(&[])
            },
            None,
            "public_keys[0]",
        ),
        (
            Settings {
                public_keys: Vec::new(),
                ..settings(&["ES256"])
            },
            None,
            "no key of its kind",
        ),
    ];
    for (settings, secret, expected) in cases {
        let message = error(settings, secret).to_string();
        assert!(message.contains(expected), "{message:?} lacks {expected:?}");
    }

    let oct: JwkSet =
        serde_json::from_value(json!({"keys": [{"kty": "oct", "k": "c2VjcmV0"}]})).unwrap();
    let message = error(
        Settings {
            jwks: Some(oct),
            ..settings(&[])
        },
        None,
    )
    .to_string();
    assert!(message.contains("oct"), "{message}");
}

#[test]
fn settings_from_json() {
    let settings = Settings::from_json(
        r#"{"algorithms": ["HS256"], "audience": "a", "anonymous": true, "leeway_secs": 5}"#,
    )
    .unwrap();
    assert_eq!(settings.audience, vec!["a"]);
    assert!(settings.anonymous);
    assert_eq!(settings.leeway_secs, 5);
    assert_eq!(settings.namespace_claim, "mqtt_namespace");

    assert!(!Settings::default().anonymous);
    assert!(Settings::from_json(r#"{"anonymos": true}"#).is_err());
}

#[test]
fn reasons_are_stable() {
    let cases = [
        (AuthError::MissingToken, "missing_token", 0x87, 0x05),
        (AuthError::TokenTooLarge, "token_too_large", 0x86, 0x05),
        (AuthError::Malformed("x"), "malformed", 0x86, 0x05),
        (
            AuthError::AlgorithmNotAllowed("none".into()),
            "algorithm_not_allowed",
            0x86,
            0x05,
        ),
        (AuthError::UnknownKey, "unknown_key", 0x86, 0x05),
        (AuthError::BadSignature, "bad_signature", 0x86, 0x05),
        (AuthError::Expired, "expired", 0x86, 0x05),
        (AuthError::NotYetValid, "not_yet_valid", 0x86, 0x05),
        (AuthError::WrongIssuer, "wrong_issuer", 0x86, 0x05),
        (AuthError::WrongAudience, "wrong_audience", 0x86, 0x05),
        (
            AuthError::MissingClaim("sub".into()),
            "missing_claim",
            0x86,
            0x05,
        ),
        (
            AuthError::InvalidClaim("sub".into()),
            "invalid_claim",
            0x86,
            0x05,
        ),
        (AuthError::WrongNamespace, "wrong_namespace", 0x87, 0x05),
        (
            AuthError::ClientIdMismatch,
            "client_id_mismatch",
            0x85,
            0x02,
        ),
    ];
    for (error, reason, v5, v311) in cases {
        assert_eq!(error.reason(), reason);
        assert_eq!(error.connack_reason_v5(), v5, "{reason}");
        assert_eq!(error.connack_return_code_v311(), v311, "{reason}");
    }
}

fn credentials<'a>(
    ingress_grant: Option<&'a Grant>,
    client_id: &'a str,
    password: Option<&'a [u8]>,
) -> ConnectCredentials<'a> {
    ConnectCredentials {
        ingress_grant,
        namespace: "default",
        client_id,
        username: Some("alice"),
        password,
    }
}

#[test]
fn connect_with_password_token() {
    let verifier = hmac_verifier();
    let token = hs256(&claims());

    let authorized = verifier
        .authorize_connect(&credentials(None, "", Some(token.as_bytes())), NOW)
        .unwrap();
    assert_eq!(authorized.client_id, "dev1");
    assert_eq!(authorized.sub.as_deref(), Some("dev1"));
    assert!(authorized.acl.may_subscribe("devices/dev1/in"));
    assert!(!authorized.acl.may_subscribe("devices/dev2/in"));
    assert!(authorized.acl.may_publish("site1/x"));
    assert!(!authorized.acl.may_publish("site2/x"));

    let mismatch =
        verifier.authorize_connect(&credentials(None, "dev2", Some(token.as_bytes())), NOW);
    assert_eq!(mismatch, Err(AuthError::ClientIdMismatch));

    let expired =
        verifier.authorize_connect(&credentials(None, "", Some(token.as_bytes())), NOW + 3600);
    assert_eq!(expired, Err(AuthError::Expired));

    let elsewhere = ConnectCredentials {
        namespace: "other",
        ..credentials(None, "", Some(token.as_bytes()))
    };
    assert_eq!(
        verifier.authorize_connect(&elsewhere, NOW),
        Err(AuthError::WrongNamespace)
    );
}

#[test]
fn connect_with_ingress_grant() {
    let verifier = hmac_verifier();
    let grant = verifier.verify(&hs256(&claims()), NOW).unwrap();
    let authorized = verifier
        .authorize_connect(&credentials(Some(&grant), "dev1", Some(b"ignored")), NOW)
        .unwrap();
    assert_eq!(authorized.client_id, "dev1");
    assert!(!authorized.acl.is_unrestricted());
}

#[test]
fn connect_without_token() {
    let closed = hmac_verifier();
    assert_eq!(
        closed.authorize_connect(&credentials(None, "c1", None), NOW),
        Err(AuthError::MissingToken)
    );
    assert!(matches!(
        closed.authorize_connect(&credentials(None, "c1", Some(b"hunter2")), NOW),
        Err(AuthError::Malformed(_))
    ));

    let open = Verifier::new(
        Settings {
            anonymous: true,
            ..settings(&["HS256"])
        },
        Some(SECRET),
    )
    .unwrap();
    let anonymous = open
        .authorize_connect(&credentials(None, "c1", Some(b"hunter2")), NOW)
        .unwrap();
    assert_eq!(anonymous.client_id, "c1");
    assert_eq!(anonymous.sub, None);
    assert!(anonymous.acl.is_unrestricted());

    // A token that fails is rejected even when anonymous access is on.
    let bad = hs256(&with(claims(), "exp", json!(NOW - 3600)));
    assert_eq!(
        open.authorize_connect(&credentials(None, "c1", Some(bad.as_bytes())), NOW),
        Err(AuthError::Expired)
    );
}
