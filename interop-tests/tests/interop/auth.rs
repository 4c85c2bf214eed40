//! Authentication and topic ACLs end to end, against a server of its own
//! with anonymous access off: the HTTP status of a rejected upgrade, the
//! CONNACK code of a rejected CONNECT, and what the ACL lets through.
//!
//! Tokens are signed here with the harness's HMAC key, or with the RSA key
//! of the `auth` crate's tests, whose public half the server is given.

use std::time::{SystemTime, UNIX_EPOCH};

use interop_tests::{repo_root, BrokerAddress, Wrangler, TEST_HMAC_SECRET};
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use libtest_mimic::Failed;
use serde_json::{json, Value};
use tokio::time::timeout;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Error as WsError;

use crate::mqtt::{run, WAIT};
use crate::wire::{packet, Incoming, Publish, Version, Wire};

pub const TESTS: &[(&str, crate::OwnServerTestFn)] = &[
    ("auth_rejected_tokens_get_401_or_connack", rejected_tokens),
    ("auth_acl_limits_publish_subscribe_delivery", acl_enforced),
    ("auth_token_expiry_ends_connection_and_stream", token_expiry),
];

/// The namespace the tests connect to, and that valid tokens name.
const NAMESPACE: &str = "auth";

/// The audience the server requires.
const AUDIENCE: &str = "mqtt-broker";

fn key_file(name: &str) -> Vec<u8> {
    let path = repo_root().join("auth/tests/keys").join(name);
    std::fs::read(&path)
        .unwrap_or_else(|error| panic!("reading {} failed: {error}", path.display()))
}

/// Starts a server that accepts HS256 with the harness's key and RS256 with
/// the test RSA key, requires the audience, and rejects anonymous clients.
fn start_server(persist: &std::path::Path) -> Wrangler {
    let public_key = String::from_utf8(key_file("rsa_public.pem")).expect("PEM is text");
    // A Rust string literal in debug form is also a valid TOML basic string.
    let public_keys = format!("[{public_key:?}]");
    let audience = format!("[{AUDIENCE:?}]");
    Wrangler::start_authenticated(
        persist,
        &[
            ("algorithms", r#"["HS256", "RS256"]"#),
            ("audience", &audience),
            ("public_keys", &public_keys),
        ],
    )
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs()
}

fn claims(sub: &str, publish: &[&str], subscribe: &[&str]) -> Value {
    json!({
        "sub": sub,
        "aud": AUDIENCE,
        "exp": now_secs() + 600,
        "mqtt_namespace": NAMESPACE,
        "mqtt_acl": {"publish": publish, "subscribe": subscribe},
    })
}

fn sign_with(algorithm: Algorithm, key: &EncodingKey, claims: &Value) -> String {
    encode(&Header::new(algorithm), claims, key).expect("signing succeeds")
}

fn hs256(claims: &Value) -> String {
    let key = EncodingKey::from_secret(TEST_HMAC_SECRET.as_bytes());
    sign_with(Algorithm::HS256, &key, claims)
}

/// Signs every kind of bad token, and returns each with its name and the
/// HTTP status of an upgrade that carries it.
fn bad_tokens() -> Vec<(&'static str, String, u16)> {
    let valid = claims("dev1", &["site1/#"], &["site1/#"]);
    let mut expired = valid.clone();
    expired["exp"] = json!(now_secs() - 3600);
    let mut not_yet_valid = valid.clone();
    not_yet_valid["nbf"] = json!(now_secs() + 3600);
    let mut wrong_audience = valid.clone();
    wrong_audience["aud"] = json!("another-service");
    let mut other_namespace = valid.clone();
    other_namespace["mqtt_namespace"] = json!("other");

    let token = hs256(&valid);
    let (signed, signature) = token.rsplit_once('.').expect("three parts");
    let flipped = if signature.starts_with('A') { 'B' } else { 'A' };
    let tampered = format!("{signed}.{flipped}{}", &signature[1..]);
    let payload = signed.split('.').nth(1).expect("three parts");
    let alg_none = format!("eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.{payload}.");
    let wrong_key = sign_with(
        Algorithm::HS256,
        &EncodingKey::from_secret(b"another-secret-of-at-least-32-bytes!"),
        &valid,
    );
    // Algorithm confusion: HS256 with the server's RSA public key as the
    // HMAC secret. The server never uses an RSA key for HMAC.
    let confused = sign_with(
        Algorithm::HS256,
        &EncodingKey::from_secret(&key_file("rsa_public.pem")),
        &valid,
    );

    vec![
        ("tampered signature", tampered, 401),
        ("wrong key", wrong_key, 401),
        ("expired", hs256(&expired), 401),
        ("not yet valid", hs256(&not_yet_valid), 401),
        ("wrong audience", hs256(&wrong_audience), 401),
        ("alg none", alg_none, 401),
        ("HMAC with the RSA public key", confused, 401),
        ("another namespace", hs256(&other_namespace), 403),
    ]
}

/// Sends a WebSocket upgrade and returns the HTTP status: 101 when the
/// server accepted it.
async fn upgrade_status(url: &str, bearer: Option<&str>) -> Result<u16, Failed> {
    let mut request = url.into_client_request()?;
    let headers = request.headers_mut();
    headers.insert("Sec-WebSocket-Protocol", "mqtt".parse()?);
    if let Some(token) = bearer {
        headers.insert("Authorization", format!("Bearer {token}").parse()?);
    }
    let upgrade = timeout(WAIT, tokio_tungstenite::connect_async(request))
        .await
        .map_err(|_| format!("upgrade to {url} timed out"))?;
    match upgrade {
        Ok((mut socket, response)) => {
            let _ = socket.close(None).await;
            Ok(response.status().as_u16())
        }
        Err(WsError::Http(response)) => Ok(response.status().as_u16()),
        Err(error) => Err(error.into()),
    }
}

fn put_string(out: &mut Vec<u8>, value: &[u8]) {
    let length = u16::try_from(value.len()).expect("string under 64 KiB");
    out.extend_from_slice(&length.to_be_bytes());
    out.extend_from_slice(value);
}

/// Encodes a CONNECT with Clean Start, `token` as the password (with a
/// username, which the broker ignores) and an optional will topic.
fn connect_packet(
    version: Version,
    client_id: &str,
    token: Option<&str>,
    will: Option<&str>,
) -> Vec<u8> {
    let mut body = Vec::new();
    put_string(&mut body, b"MQTT");
    body.push(match version {
        Version::V311 => 4,
        Version::V5 => 5,
    });
    let mut flags = 0x02;
    if will.is_some() {
        flags |= 0x04;
    }
    if token.is_some() {
        flags |= 0x80 | 0x40;
    }
    body.push(flags);
    body.extend_from_slice(&0u16.to_be_bytes());
    if version == Version::V5 {
        body.push(0);
    }
    put_string(&mut body, client_id.as_bytes());
    if let Some(topic) = will {
        if version == Version::V5 {
            body.push(0);
        }
        put_string(&mut body, topic.as_bytes());
        put_string(&mut body, b"gone");
    }
    if let Some(token) = token {
        put_string(&mut body, b"user");
        put_string(&mut body, token.as_bytes());
    }
    packet(0x10, &body)
}

/// Opens a connection, sends a CONNECT and returns the connection with the
/// CONNACK code (the reason code in 5.0, the return code in 3.1.1).
async fn connect(
    address: &BrokerAddress,
    version: Version,
    client_id: &str,
    token: Option<&str>,
    will: Option<&str>,
) -> Result<(Wire, u8), Failed> {
    let mut wire = Wire::open(address, version).await?;
    wire.send(connect_packet(version, client_id, token, will))
        .await?;
    match wire.recv().await? {
        Incoming::ConnAck { code, .. } => Ok((wire, code)),
        other => Err(format!("{client_id}: expected CONNACK, received {other:?}").into()),
    }
}

/// Connects and fails unless the CONNACK accepts the connection.
async fn connected(
    address: &BrokerAddress,
    version: Version,
    client_id: &str,
    token: &str,
) -> Result<Wire, Failed> {
    match connect(address, version, client_id, Some(token), None).await? {
        (wire, 0) => Ok(wire),
        (_, code) => Err(format!("{client_id}: CONNACK 0x{code:02x}").into()),
    }
}

/// Checks that a CONNECT is rejected with `expected` and the connection
/// then closes.
async fn expect_rejected(
    address: &BrokerAddress,
    version: Version,
    client_id: &str,
    token: Option<&str>,
    will: Option<&str>,
    expected: u8,
    case: &str,
) -> Result<(), Failed> {
    let (mut wire, code) = connect(address, version, client_id, token, will).await?;
    assert_eq!(code, expected, "{case}, {version:?}: CONNACK 0x{code:02x}");
    assert_eq!(
        wire.recv().await?,
        Incoming::Closed,
        "{case}, {version:?}: not closed"
    );
    Ok(())
}

/// Every bad token is rejected on the upgrade (401, or 403 for another
/// namespace) and in the CONNECT password (CONNACK 0x86 or 0x87 in 5.0,
/// 0x05 in 3.1.1), and valid tokens open connections either way.
fn rejected_tokens() -> Result<(), Failed> {
    let persist = tempfile::tempdir()?;
    let server = start_server(persist.path());
    let path = format!("/mqtt/{NAMESPACE}");
    let url = server.ws_url(&path);
    let address = server.address(&path);

    let bad = bad_tokens();
    run(async {
        for (case, token, status) in &bad {
            assert_eq!(
                upgrade_status(&url, Some(token)).await?,
                *status,
                "{case}, header"
            );
        }
        let (case, token, _) = &bad[0];
        let with_query = format!("{url}?token={token}");
        assert_eq!(
            upgrade_status(&with_query, None).await?,
            401,
            "{case}, query"
        );

        let valid = hs256(&claims("dev1", &["site1/#"], &["site1/#"]));
        assert_eq!(
            upgrade_status(&url, Some(&valid)).await?,
            101,
            "valid HS256"
        );
        let rsa = EncodingKey::from_rsa_pem(&key_file("rsa_private.pem"))?;
        let rs256 = sign_with(Algorithm::RS256, &rsa, &claims("dev1", &[], &[]));
        assert_eq!(
            upgrade_status(&url, Some(&rs256)).await?,
            101,
            "valid RS256"
        );

        for (case, token, status) in &bad {
            let v5 = if *status == 403 { 0x87 } else { 0x86 };
            expect_rejected(&address, Version::V5, "dev1", Some(token), None, v5, case).await?;
            expect_rejected(
                &address,
                Version::V311,
                "dev1",
                Some(token),
                None,
                0x05,
                case,
            )
            .await?;
        }
        for version in [Version::V5, Version::V311] {
            let code = if version == Version::V5 { 0x87 } else { 0x05 };
            expect_rejected(&address, version, "anon", None, None, code, "no token").await?;
            let code = if version == Version::V5 { 0x85 } else { 0x02 };
            expect_rejected(
                &address,
                version,
                "dev2",
                Some(&valid),
                None,
                code,
                "other client id",
            )
            .await?;
            let code = if version == Version::V5 { 0x87 } else { 0x05 };
            let will = Some("site2/will");
            expect_rejected(
                &address,
                version,
                "dev1",
                Some(&valid),
                will,
                code,
                "will topic",
            )
            .await?;
        }

        // A token on the upgrade replaces the CONNECT password, and an empty
        // client id gets the token's `sub`.
        let query_address = BrokerAddress {
            url: format!("{url}?token={valid}"),
            port: address.port,
        };
        let mut wire = Wire::open(&query_address, Version::V5).await?;
        wire.send(connect_packet(Version::V5, "", None, None))
            .await?;
        match wire.recv().await? {
            Incoming::ConnAck {
                code: 0,
                properties,
                ..
            } => {
                let assigned = properties.get(crate::wire::property::ASSIGNED_CLIENT_IDENTIFIER);
                assert_eq!(
                    assigned,
                    Some(&crate::wire::Value::String("dev1".into())),
                    "assigned client id"
                );
            }
            other => return Err(format!("expected CONNACK 0, received {other:?}").into()),
        }
        let (_wire, code) = connect(&address, Version::V311, "dev1", Some(&valid), None).await?;
        assert_eq!(code, 0, "token in the CONNECT password");
        Ok(())
    })?;
    // Failures are logged by the ingress (upgrade) and the broker (CONNECT),
    // never with the token.
    let log = server.log();
    assert!(
        log.lines()
            .any(|line| line.contains("\"reason\":\"bad_signature\"")
                && line.contains("\"client_id\":\"(before CONNECT)\"")),
        "no ingress failure log:\n{log}"
    );
    assert!(
        log.lines()
            .any(|line| line.contains("\"reason\":\"bad_signature\"")
                && !line.contains("\"client_id\":\"(before CONNECT)\"")),
        "no broker failure log:\n{log}"
    );
    for (case, token, _) in &bad {
        let signature = token.rsplit('.').next().unwrap_or_default();
        assert!(
            signature.is_empty() || !log.contains(signature),
            "{case}: token in the log"
        );
    }
    Ok(())
}

/// Publishes at QoS 1 or 2 and returns the reason code of the PUBACK or
/// PUBREC.
async fn publish_reason(
    wire: &mut Wire,
    topic: &str,
    qos: u8,
    pkid: u16,
    retain: bool,
) -> Result<u8, Failed> {
    let mut publish = Publish::new(topic, b"payload", qos, pkid);
    publish.retain = retain;
    wire.publish_acknowledged(&publish).await
}

/// Subscriptions that widen past the ACL are rejected, publishes outside it
/// are rejected and reach no subscriber, retained messages are filtered, and a
/// stream of rejected clients leaves the others served.
fn acl_enforced() -> Result<(), Failed> {
    let persist = tempfile::tempdir()?;
    let server = start_server(persist.path());
    let address = server.address(&format!("/mqtt/{NAMESPACE}"));
    let site1 = |sub: &str| hs256(&claims(sub, &["site1/#"], &["site1/#"]));
    let everything = |sub: &str| hs256(&claims(sub, &["#"], &["#", "$SYS/#"]));

    run(async {
        let mut watcher =
            connected(&address, Version::V5, "watcher", &everything("watcher")).await?;
        let filters = [("#", 1), ("$SYS/broker/#", 1)];
        assert_eq!(
            watcher.subscribe(1, &filters, &Default::default()).await?,
            [1, 1]
        );

        let wildcards = [("#", 1), ("site1/+/temp", 1), ("+/temp", 1), ("$SYS/#", 1)];
        let mut dev3 = connected(&address, Version::V311, "dev3", &site1("dev3")).await?;
        let codes = dev3.subscribe(1, &wildcards, &Default::default()).await?;
        assert_eq!(codes, [0x80, 0x01, 0x80, 0x80], "3.1.1 SUBACK");
        let mut dev5 = connected(&address, Version::V5, "dev5", &site1("dev5")).await?;
        let codes = dev5.subscribe(1, &wildcards, &Default::default()).await?;
        assert_eq!(codes, [0x87, 0x01, 0x87, 0x87], "5.0 SUBACK");

        assert_eq!(
            publish_reason(&mut dev5, "site2/a", 1, 10, false).await?,
            0x87
        );
        assert_eq!(
            publish_reason(&mut dev5, "site2/a", 2, 11, false).await?,
            0x87
        );
        assert_eq!(
            publish_reason(&mut dev5, "site2/r", 1, 12, true).await?,
            0x87
        );
        assert_eq!(
            publish_reason(&mut dev5, "$SYS/broker/fake", 1, 13, false).await?,
            0x87
        );
        // 3.1.1 has no reason code: the message is acknowledged and dropped.
        assert_eq!(publish_reason(&mut dev3, "site2/b", 1, 14, false).await?, 0);
        assert_eq!(publish_reason(&mut dev5, "site1/r", 1, 15, true).await?, 0);

        let first = watcher.expect_publish().await?;
        assert_eq!(first.topic, "site1/r", "the first message the watcher got");

        let mut late = connected(&address, Version::V5, "late", &everything("late")).await?;
        assert_eq!(
            late.subscribe(1, &[("#", 1)], &Default::default()).await?,
            [1]
        );
        let retained = late.expect_publish().await?;
        assert_eq!(retained.topic, "site1/r");
        assert!(retained.retain);
        // The next message is the marker: no other retained message came.
        assert_eq!(
            publish_reason(&mut dev5, "site1/marker", 1, 16, false).await?,
            0
        );
        assert_eq!(late.expect_publish().await?.topic, "site1/marker");
        assert_eq!(watcher.expect_publish().await?.topic, "site1/marker");

        // Rejected clients leave the broker serving everyone else.
        for (case, token, status) in bad_tokens() {
            let code = if status == 403 { 0x87 } else { 0x86 };
            expect_rejected(
                &address,
                Version::V5,
                "dev1",
                Some(&token),
                None,
                code,
                case,
            )
            .await?;
        }
        assert_eq!(
            publish_reason(&mut dev5, "site1/after", 1, 17, false).await?,
            0
        );
        assert_eq!(watcher.expect_publish().await?.topic, "site1/after");
        Ok(())
    })
}

/// Checks that a connection and an SSE stream end when their token expires
/// (here with no leeway). MQTT 5.0 gets DISCONNECT 0x87 and the stream a
/// last `error` event. A new CONNECT with the token gets CONNACK 0x86.
fn token_expiry() -> Result<(), Failed> {
    let persist = tempfile::tempdir()?;
    let audience = format!("[{AUDIENCE:?}]");
    let server = Wrangler::start_authenticated(
        persist.path(),
        &[("audience", &audience), ("leeway_secs", "0")],
    );
    let address = server.address(&format!("/mqtt/{NAMESPACE}"));
    let mut short = claims("dev1", &["site1/#"], &["site1/#"]);
    short["exp"] = json!(now_secs() + 4);
    let token = hs256(&short);

    run(async {
        let mut dev1 = connected(&address, Version::V5, "dev1", &token).await?;
        let path = format!("/sse?namespace={NAMESPACE}&filter=site1/%23&token={token}");
        let mut stream = crate::http::SseStream::open(server.port(), &path, None).await?;
        match dev1.expect_closed_with().await? {
            Some(Incoming::Disconnect { reason, .. }) => assert_eq!(reason, 0x87),
            other => return Err(format!("expected DISCONNECT 0x87, got {other:?}").into()),
        }
        let (kind, _, data) = stream.next_event().await?;
        assert_eq!(kind, "error", "the stream's last event: {data}");
        assert!(data.contains("token expired"), "{data}");
        let (_, code) = connect(&address, Version::V5, "dev1", Some(&token), None).await?;
        assert_eq!(code, 0x86, "CONNACK to the expired token");
        Ok(())
    })
}
