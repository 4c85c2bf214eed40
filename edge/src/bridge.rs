//! The Worker's side of the bridge to Cloudflare Queues: its bindings and
//! settings, webhook signatures, dead letters in R2 and the admin routes
//! that list and re-drive them. The queue consumer is in `queue`; the
//! outbox is in the Durable Object (`namespace::bridge`).

use broker::bridge::{seq_of_id, BridgeMessage, BridgeSettings};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use serde_json::json;
use sha2::Sha256;
use worker::{
    Bucket, Env, MessageBuilder, Method, QueueContentType, Request, Response, Result, SendMessage,
};

use crate::http_api::{json_error, namespace_of};
use crate::r2::STORE_BINDING;

/// Name of the `[vars]` table with the bridge settings.
pub const BRIDGE_VAR: &str = "BRIDGE";

/// Producer binding of the bridge queue in `wrangler.toml`.
pub const QUEUE_BINDING: &str = "BRIDGE_QUEUE";

/// Producer binding of the dead-letter queue in `wrangler.toml`.
pub const DEAD_LETTER_QUEUE_BINDING: &str = "BRIDGE_DEAD_LETTER_QUEUE";

/// Secret with which webhook bodies are signed.
pub const WEBHOOK_SECRET: &str = "BRIDGE_WEBHOOK_SECRET";

/// Header with the signature of a webhook body: `sha256=` and the
/// lowercase hex HMAC-SHA256 of the body under [`WEBHOOK_SECRET`].
pub const SIGNATURE_HEADER: &str = "X-Bridge-Signature-256";

/// Dead letters a listing or a re-drive handles at once (one `sendBatch`).
const DEAD_LETTER_PAGE: usize = 100;

/// Reads the `BRIDGE` variable; an absent one gives the defaults (no
/// rules), and a malformed one an error that names the problem.
pub fn load_settings(env: &Env) -> std::result::Result<BridgeSettings, String> {
    let Ok(value) = env.object_var::<serde_json::Value>(BRIDGE_VAR) else {
        return Ok(BridgeSettings::default());
    };
    BridgeSettings::from_json(value)
        .map_err(|error| format!("invalid {BRIDGE_VAR} variable: {error}"))
}

/// Signs a webhook body: the value of [`SIGNATURE_HEADER`].
pub fn sign(secret: &[u8], body: &[u8]) -> String {
    // HMAC accepts keys of any length, so `new_from_slice` cannot fail.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(body);
    let digest = mac.finalize().into_bytes();
    let mut hex = String::with_capacity(7 + 64);
    hex.push_str("sha256=");
    for byte in digest {
        hex.push_str(&format!("{byte:02x}"));
    }
    hex
}

/// A message that exhausted its delivery attempts, as stored in R2.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeadLetter {
    /// The message, with its destination, as the bridge queue carried it.
    pub message: BridgeMessage,
    /// The last delivery error.
    pub error: String,
    /// Delivery attempts made, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempts: Option<u32>,
    /// When the consumer gave up, in milliseconds since the Unix epoch.
    pub dead_at: u64,
}

/// Formats the R2 key of a dead letter, `dead-letter/<namespace>/<seq>.json`,
/// with the sequence zero-padded so keys sort in publication order.
pub fn dead_letter_key(message: &BridgeMessage) -> String {
    let seq = seq_of_id(&message.id).unwrap_or(0);
    format!("{}{seq:020}.json", dead_letter_prefix(&message.namespace))
}

fn dead_letter_prefix(namespace: &str) -> String {
    format!("dead-letter/{namespace}/")
}

/// Builds a queue message carrying `body` as text, which the queue counts
/// byte for byte (JSON content would escape the quotes of `body`).
pub fn text_message(body: String) -> SendMessage<String> {
    MessageBuilder::new(body)
        .content_type(QueueContentType::Text)
        .build()
}

/// Reports whether `path` is a dead-letter route of the admin API.
pub fn is_dead_letter_path(path: &str) -> bool {
    path == "/admin/dead-letters" || path == "/admin/dead-letters/redrive"
}

/// Serves `GET /admin/dead-letters` and `POST /admin/dead-letters/redrive`
/// for `?namespace=`. The caller has passed the `/admin/` gate.
pub async fn handle_dead_letters(req: Request, env: &Env) -> Result<Response> {
    let namespace = match namespace_of(&req)? {
        Ok(namespace) => namespace,
        Err(response) => return Ok(response),
    };
    let bucket = match env.bucket(STORE_BINDING) {
        Ok(bucket) => bucket,
        Err(_) => {
            return json_error(
                500,
                format!("R2 bucket binding {STORE_BINDING} is not configured"),
            )
        }
    };
    let only_id = req
        .url()?
        .query_pairs()
        .find(|(name, _)| name == "id")
        .map(|(_, value)| value.into_owned());
    let letters = match list_dead_letters(&bucket, &namespace, only_id.as_deref()).await {
        Ok(letters) => letters,
        Err(message) => return json_error(502, message),
    };
    match (req.method(), req.path().as_str()) {
        (Method::Get, "/admin/dead-letters") => {
            let (letters, truncated) = letters;
            let list: Vec<&DeadLetter> = letters.iter().map(|(_, letter)| letter).collect();
            Response::from_json(&json!({
                "namespace": namespace,
                "dead_letters": list,
                "truncated": truncated,
            }))
        }
        (Method::Post, "/admin/dead-letters/redrive") => {
            redrive(env, &bucket, &namespace, letters).await
        }
        _ => json_error(
            405,
            "method not allowed: GET /admin/dead-letters, POST /admin/dead-letters/redrive",
        ),
    }
}

/// Dead letters of one namespace and their keys, oldest first, at most one
/// page; with `only_id`, just that one. The flag is true when more remain.
async fn list_dead_letters(
    bucket: &Bucket,
    namespace: &str,
    only_id: Option<&str>,
) -> std::result::Result<(Vec<(String, DeadLetter)>, bool), String> {
    let prefix = dead_letter_prefix(namespace);
    let (keys, truncated) = match only_id.map(seq_of_id) {
        Some(Some(seq)) => (vec![format!("{prefix}{seq:020}.json")], false),
        Some(None) => return Ok((Vec::new(), false)),
        None => {
            let listed = bucket
                .list()
                .prefix(prefix.clone())
                .limit(DEAD_LETTER_PAGE as u32)
                .execute()
                .await
                .map_err(|error| format!("listing R2 prefix {prefix} failed: {error}"))?;
            let keys = listed.objects().iter().map(|object| object.key()).collect();
            (keys, listed.truncated())
        }
    };
    let mut letters = Vec::new();
    for key in keys {
        let object = bucket
            .get(key.clone())
            .execute()
            .await
            .map_err(|error| format!("reading R2 object {key} failed: {error}"))?;
        let Some(body) = object.as_ref().and_then(|object| object.body()) else {
            continue;
        };
        let text = body.text().await.unwrap_or_default();
        match serde_json::from_str::<DeadLetter>(&text) {
            Ok(letter) => letters.push((key, letter)),
            Err(error) => {
                crate::logging::error(None, &format!("dead letter {key} does not parse: {error}"))
            }
        }
    }
    Ok((letters, truncated))
}

/// Sends dead letters back to the bridge queue, then deletes them. Their
/// ids stay, so webhooks that got them before drop the repeats.
async fn redrive(
    env: &Env,
    bucket: &Bucket,
    namespace: &str,
    (letters, truncated): (Vec<(String, DeadLetter)>, bool),
) -> Result<Response> {
    let queue = match env.queue(QUEUE_BINDING) {
        Ok(queue) => queue,
        Err(_) => {
            return json_error(
                500,
                format!("queue binding {QUEUE_BINDING} is not configured"),
            )
        }
    };
    let bodies: Vec<SendMessage<String>> = letters
        .iter()
        .map(|(_, letter)| text_message(serde_json::to_string(&letter.message).unwrap_or_default()))
        .collect();
    let count = bodies.len();
    if count > 0 {
        if let Err(error) = queue.send_batch(bodies).await {
            return json_error(502, format!("sending to the bridge queue failed: {error}"));
        }
    }
    for (key, _) in &letters {
        if let Err(error) = bucket.delete(key.clone()).await {
            crate::logging::error(
                Some(namespace),
                &format!("deleting re-driven dead letter {key} failed: {error}"),
            );
        }
    }
    crate::logging::info(&json!({
        "namespace": namespace,
        "redriven": count,
        "message": "dead letters sent back to the bridge queue",
    }));
    Response::from_json(
        &json!({ "namespace": namespace, "redriven": count, "remaining": truncated }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_is_hmac_sha256_hex() {
        // RFC 4231, test case 2.
        let signature = sign(b"Jefe", b"what do ya want for nothing?");
        assert_eq!(
            signature,
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn dead_letter_keys_sort_by_sequence() {
        let message: BridgeMessage = serde_json::from_value(json!({
            "id": "site-1:42", "namespace": "site-1", "rule": "r", "topic": "t",
            "qos": 0, "retain": false, "time": 1
        }))
        .unwrap();
        assert_eq!(
            dead_letter_key(&message),
            "dead-letter/site-1/00000000000000000042.json"
        );
    }
}
