//! Mints a signed token with chosen claims for development and tests.
//!
//! ```text
//! cargo run -p auth --bin mint-token -- --secret-file dev-secret.txt \
//!     --sub dev1 --namespace default --publish 'site1/#' --subscribe 'site1/#' --ttl 3600
//! ```
//!
//! The token goes to standard output; nothing else does.

use std::process::ExitCode;
use std::str::FromStr;
use std::time::{SystemTime, UNIX_EPOCH};

use auth::{
    hmac_secret_from_text, DEFAULT_ACL_CLAIM, DEFAULT_NAMESPACE_CLAIM, MIN_HMAC_SECRET_LEN,
};
use jsonwebtoken::{Algorithm, AlgorithmFamily, EncodingKey, Header};
use serde_json::{json, Map, Value};

const USAGE: &str = "\
Usage: mint-token (--secret-file FILE | --key-file FILE --alg ALG) --sub SUB --namespace NAME
                  [--publish FILTER]... [--subscribe FILTER]... [options]

Prints a signed JSON Web Token for the MQTT broker.

Key (one of):
  --secret-file FILE     HMAC secret (one trailing line break is ignored); --alg defaults to HS256
  --key-file FILE        private key in PEM (PKCS#8, or PKCS#1 for RSA) for RS*, PS*, ES* or EdDSA

Claims:
  --sub SUB              subject; an MQTT client with an empty client id gets it as its client id
  --namespace NAME       the one namespace the token may use
  --publish FILTER       topic filter the client may publish to (repeatable; %c and %u allowed)
  --subscribe FILTER     topic filter the client may subscribe to (repeatable)
  --ttl SECONDS          lifetime from now, written as exp (default 3600)
  --issuer ISS           iss claim
  --audience AUD         aud claim (repeatable)

Options:
  --alg ALG              HS256, HS384, HS512, RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384 or EdDSA
  --kid KID              key id for the header
  --namespace-claim NAME claim name for the namespace (default mqtt_namespace)
  --acl-claim NAME       claim name for the topic filters (default mqtt_acl)
  -h, --help             print this help
";

/// Lifetime of a token when `--ttl` is not given, in seconds.
const DEFAULT_TTL_SECS: u64 = 3600;

/// The parsed command line.
#[derive(Debug, Clone, PartialEq)]
struct Options {
    key: KeySource,
    algorithm: Algorithm,
    sub: String,
    namespace: String,
    publish: Vec<String>,
    subscribe: Vec<String>,
    ttl_secs: u64,
    issuer: Option<String>,
    audience: Vec<String>,
    kid: Option<String>,
    namespace_claim: String,
    acl_claim: String,
}

#[derive(Debug, Clone, PartialEq)]
enum KeySource {
    SecretFile(String),
    KeyFile(String),
}

/// The action the command line requests.
#[derive(Debug, PartialEq)]
enum Command {
    Help,
    Mint(Box<Options>),
}

fn main() -> ExitCode {
    let command = match parse_args(std::env::args().skip(1)) {
        Ok(command) => command,
        Err(message) => {
            eprintln!("mint-token: {message}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let Command::Mint(options) = command else {
        print!("{USAGE}");
        return ExitCode::SUCCESS;
    };
    let path = match &options.key {
        KeySource::SecretFile(path) | KeySource::KeyFile(path) => path,
    };
    let key_bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(error) => {
            eprintln!("mint-token: cannot read {path}: {error}");
            return ExitCode::FAILURE;
        }
    };
    let now_secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_secs());
    match mint(&options, &key_bytes, now_secs) {
        Ok(token) => {
            println!("{token}");
            ExitCode::SUCCESS
        }
        Err(message) => {
            eprintln!("mint-token: {message}");
            ExitCode::FAILURE
        }
    }
}

fn parse_args(args: impl IntoIterator<Item = String>) -> Result<Command, String> {
    let mut args = args.into_iter();
    let mut key = None;
    let mut algorithm = None;
    let mut sub = None;
    let mut namespace = None;
    let mut publish = Vec::new();
    let mut subscribe = Vec::new();
    let mut ttl_secs = DEFAULT_TTL_SECS;
    let mut issuer = None;
    let mut audience = Vec::new();
    let mut kid = None;
    let mut namespace_claim = DEFAULT_NAMESPACE_CLAIM.to_string();
    let mut acl_claim = DEFAULT_ACL_CLAIM.to_string();

    while let Some(flag) = args.next() {
        if flag == "-h" || flag == "--help" {
            return Ok(Command::Help);
        }
        let mut value = || args.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--secret-file" | "--key-file" if key.is_some() => {
                return Err("give only one of --secret-file and --key-file".to_string());
            }
            "--secret-file" => key = Some(KeySource::SecretFile(value()?)),
            "--key-file" => key = Some(KeySource::KeyFile(value()?)),
            "--alg" => {
                let name = value()?;
                let parsed = Algorithm::from_str(&name)
                    .map_err(|_| format!("unknown algorithm {name:?} for --alg"))?;
                algorithm = Some(parsed);
            }
            "--sub" => sub = Some(value()?),
            "--namespace" => namespace = Some(value()?),
            "--publish" => publish.push(value()?),
            "--subscribe" => subscribe.push(value()?),
            "--ttl" => {
                let text = value()?;
                ttl_secs = text.parse().ok().filter(|secs| *secs > 0).ok_or_else(|| {
                    format!("--ttl must be a positive number of seconds, not {text:?}")
                })?;
            }
            "--issuer" => issuer = Some(value()?),
            "--audience" => audience.push(value()?),
            "--kid" => kid = Some(value()?),
            "--namespace-claim" => namespace_claim = value()?,
            "--acl-claim" => acl_claim = value()?,
            _ => return Err(format!("unknown argument {flag:?}")),
        }
    }

    let key = key.ok_or("missing --secret-file or --key-file")?;
    let algorithm = match (&key, algorithm) {
        (_, Some(algorithm)) => algorithm,
        (KeySource::SecretFile(_), None) => Algorithm::HS256,
        (KeySource::KeyFile(_), None) => return Err("--key-file needs --alg".to_string()),
    };
    let is_hmac = algorithm.family() == AlgorithmFamily::Hmac;
    if is_hmac != matches!(key, KeySource::SecretFile(_)) {
        return Err(format!(
            "--alg {algorithm:?} needs {}",
            if is_hmac {
                "--secret-file"
            } else {
                "--key-file"
            }
        ));
    }
    for filter in publish.iter().chain(&subscribe) {
        if !auth::filter::valid_topic_filter(filter) {
            return Err(format!("invalid topic filter {filter:?}"));
        }
    }

    Ok(Command::Mint(Box::new(Options {
        key,
        algorithm,
        sub: sub.filter(|sub| !sub.is_empty()).ok_or("missing --sub")?,
        namespace: namespace
            .filter(|name| !name.is_empty())
            .ok_or("missing --namespace")?,
        publish,
        subscribe,
        ttl_secs,
        issuer,
        audience,
        kid,
        namespace_claim,
        acl_claim,
    })))
}

/// Builds the token's claims, issued at `now_secs`.
fn claims(options: &Options, now_secs: u64) -> Map<String, Value> {
    let mut claims = Map::new();
    claims.insert("sub".into(), json!(options.sub));
    claims.insert("iat".into(), json!(now_secs));
    claims.insert(
        "exp".into(),
        json!(now_secs.saturating_add(options.ttl_secs)),
    );
    if let Some(issuer) = &options.issuer {
        claims.insert("iss".into(), json!(issuer));
    }
    match options.audience.as_slice() {
        [] => {}
        [one] => {
            claims.insert("aud".into(), json!(one));
        }
        many => {
            claims.insert("aud".into(), json!(many));
        }
    }
    claims.insert(options.namespace_claim.clone(), json!(options.namespace));
    claims.insert(
        options.acl_claim.clone(),
        json!({ "publish": options.publish, "subscribe": options.subscribe }),
    );
    claims
}

/// Signs the claims of `options` with the key in `key_bytes`.
fn mint(options: &Options, key_bytes: &[u8], now_secs: u64) -> Result<String, String> {
    let key = match &options.key {
        KeySource::SecretFile(_) => {
            let text = std::str::from_utf8(key_bytes)
                .map_err(|_| "the secret file is not UTF-8 text".to_string())?;
            let secret = hmac_secret_from_text(text);
            if secret.len() < MIN_HMAC_SECRET_LEN {
                return Err(format!(
                    "the secret has {} bytes; use at least {MIN_HMAC_SECRET_LEN}, for example \
                     `openssl rand -base64 48`",
                    secret.len()
                ));
            }
            EncodingKey::from_secret(secret)
        }
        KeySource::KeyFile(_) => match options.algorithm.family() {
            AlgorithmFamily::Rsa => EncodingKey::from_rsa_pem(key_bytes),
            AlgorithmFamily::Ec => EncodingKey::from_ec_pem(key_bytes),
            AlgorithmFamily::Ed => EncodingKey::from_ed_pem(key_bytes),
            AlgorithmFamily::Hmac => unreachable!("parse_args pairs HMAC with --secret-file"),
        }
        .map_err(|error| format!("cannot read the private key: {error}"))?,
    };
    let mut header = Header::new(options.algorithm);
    header.kid = options.kid.clone();
    jsonwebtoken::encode(&header, &claims(options, now_secs), &key)
        .map_err(|error| format!("signing failed: {error}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use auth::{PublicKey, Settings, Verifier};

    const SECRET: &str = "0123456789abcdef0123456789abcdef-dev\n";
    const NOW: u64 = 1_800_000_000;

    fn args(text: &str) -> Vec<String> {
        text.split_whitespace().map(str::to_string).collect()
    }

    fn options(text: &str) -> Options {
        match parse_args(args(text)) {
            Ok(Command::Mint(options)) => *options,
            other => panic!("{text:?} parsed to {other:?}"),
        }
    }

    fn key_file(name: &str) -> Vec<u8> {
        std::fs::read(format!("{}/tests/keys/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
    }

    #[test]
    fn parses_full_command_line() {
        let options = options(
            "--secret-file s.txt --sub dev1 --namespace default --publish site1/# \
             --subscribe site1/# --subscribe devices/%c --ttl 60 --issuer iss1 \
             --audience a1 --audience a2 --kid k1",
        );
        assert_eq!(options.key, KeySource::SecretFile("s.txt".into()));
        assert_eq!(options.algorithm, Algorithm::HS256);
        assert_eq!(options.sub, "dev1");
        assert_eq!(options.namespace, "default");
        assert_eq!(options.publish, vec!["site1/#"]);
        assert_eq!(options.subscribe, vec!["site1/#", "devices/%c"]);
        assert_eq!(options.ttl_secs, 60);
        assert_eq!(options.issuer.as_deref(), Some("iss1"));
        assert_eq!(options.audience, vec!["a1", "a2"]);
        assert_eq!(options.kid.as_deref(), Some("k1"));
    }

    #[test]
    fn rejects_bad_command_lines() {
        let cases = [
            "--sub dev1 --namespace default",
            "--secret-file s --namespace default",
            "--secret-file s --sub dev1",
            "--secret-file s --sub dev1 --namespace default --ttl 0",
            "--secret-file s --sub dev1 --namespace default --ttl soon",
            "--secret-file s --sub dev1 --namespace default --alg RS256",
            "--key-file k --sub dev1 --namespace default",
            "--key-file k --sub dev1 --namespace default --alg HS256",
            "--secret-file s --key-file k --sub dev1 --namespace default",
            "--secret-file s --sub dev1 --namespace default --publish a/#/b",
            "--secret-file s --sub dev1 --namespace default --alg none",
            "--secret-file s --sub dev1 --namespace default --colour red",
            "--secret-file",
        ];
        for case in cases {
            assert!(parse_args(args(case)).is_err(), "{case:?} was accepted");
        }
    }

    #[test]
    fn help_flag() {
        assert_eq!(parse_args(args("--sub x --help")), Ok(Command::Help));
    }

    #[test]
    fn hmac_token_verifies() {
        let options = options(
            "--secret-file s --sub dev1 --namespace default --publish site1/# \
             --subscribe site1/+ --issuer iss1 --audience broker",
        );
        let token = mint(&options, SECRET.as_bytes(), NOW).unwrap();

        let settings = Settings {
            algorithms: vec!["HS256".into()],
            issuer: Some("iss1".into()),
            audience: vec!["broker".into()],
            ..Settings::default()
        };
        let verifier = Verifier::new(settings, Some(hmac_secret_from_text(SECRET))).unwrap();
        let grant = verifier.verify(&token, NOW + 10).unwrap();
        assert_eq!(grant.sub, "dev1");
        assert_eq!(grant.namespace, "default");
        assert_eq!(grant.publish, vec!["site1/#"]);
        assert_eq!(grant.subscribe, vec!["site1/+"]);
        assert_eq!(grant.expires_at, Some(NOW + DEFAULT_TTL_SECS));
    }

    #[test]
    fn rsa_token_verifies() {
        let options = options("--key-file k --alg RS256 --kid rsa-1 --sub dev1 --namespace n1");
        let token = mint(&options, &key_file("rsa_private.pem"), NOW).unwrap();

        let public_pem = String::from_utf8(key_file("rsa_public.pem")).unwrap();
        let settings = Settings {
            algorithms: vec!["RS256".into()],
            public_keys: vec![PublicKey::Pem(public_pem)],
            ..Settings::default()
        };
        let grant = Verifier::new(settings, None)
            .unwrap()
            .verify(&token, NOW)
            .unwrap();
        assert_eq!(grant.namespace, "n1");
    }

    #[test]
    fn custom_claim_names() {
        let options = options(
            "--secret-file s --sub d --namespace n --namespace-claim ns --acl-claim rights \
             --publish a",
        );
        let claims = claims(&options, NOW);
        assert_eq!(claims["ns"], json!("n"));
        assert_eq!(claims["rights"], json!({"publish": ["a"], "subscribe": []}));
        assert_eq!(claims["exp"], json!(NOW + DEFAULT_TTL_SECS));
        assert!(!claims.contains_key("aud"));
    }

    #[test]
    fn short_secret_is_refused() {
        let options = options("--secret-file s --sub d --namespace n");
        let error = mint(&options, b"short\n", NOW).unwrap_err();
        assert!(error.contains("at least 32"), "{error}");
    }
}
