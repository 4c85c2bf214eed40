//! The queue consumer of the bridge, in the same Worker as the broker.
//!
//! Batches of the bridge queue are delivered to their destination: a
//! webhook (a signed POST with an `Idempotency-Key`) or the R2 bucket under
//! `bridge/`. A failed delivery is retried with exponential backoff; the
//! last allowed attempt sends the message, with its error, to the
//! dead-letter queue. Batches of the dead-letter queue are stored in R2
//! under `dead-letter/`, where the admin API lists and re-drives them.
//!
//! The handler is a plain `wasm_bindgen` export rather than
//! `#[event(queue)]`, because the `worker` crate (0.8) does not expose a
//! message's `attempts`, which the backoff needs.

use std::time::Duration;

use broker::bridge::{seq_of_id, BridgeMessage, BridgeSettings, Destination};
use futures_util::future::{join_all, select, Either};
use serde_json::json;
use wasm_bindgen::prelude::wasm_bindgen;
use wasm_bindgen::{JsCast, JsValue};
use worker::worker_sys::{Context as ContextSys, Message as MessageSys, MessageBatch as BatchSys};
use worker::{
    console_error, js_sys, Date, Delay, Env, Fetch, Headers, Method, Request, RequestInit,
};

use crate::bridge::{
    self, dead_letter_key, text_message, DeadLetter, DEAD_LETTER_QUEUE_BINDING, SIGNATURE_HEADER,
    WEBHOOK_SECRET,
};
use crate::logging;
use crate::r2::STORE_BINDING;

/// How long a webhook may take to respond before the attempt counts as
/// failed.
const WEBHOOK_TIMEOUT: Duration = Duration::from_secs(15);

/// One message of a batch, with its body and delivery attempts.
struct Received {
    raw: MessageSys,
    body: Option<String>,
    attempts: u32,
}

/// The `queue` handler of the Worker.
#[wasm_bindgen(wasm_bindgen_futures = ::worker::wasm_bindgen_futures, js_sys = ::worker::js_sys)]
pub async fn queue(batch: BatchSys, env: Env, _ctx: ContextSys) -> Result<JsValue, JsValue> {
    crate::logging::install();
    let settings = match bridge::load_settings(&env) {
        Ok(settings) => settings,
        Err(message) => {
            // Without settings there is no backoff or attempt limit to
            // apply, so the runtime's own retries and dead-lettering take over.
            logging::error(None, &format!("bridge consumer: {message}"));
            batch.retry_all(JsValue::NULL)?;
            return Ok(JsValue::UNDEFINED);
        }
    };
    let queue_name = batch.queue().map(String::from).unwrap_or_default();
    let messages: Vec<Received> = batch
        .messages()?
        .iter()
        .map(|value| {
            let raw: MessageSys = value.unchecked_into();
            let attempts = js_sys::Reflect::get(&raw, &JsValue::from_str("attempts"))
                .ok()
                .and_then(|value| value.as_f64())
                .map_or(1, |value| value as u32);
            let body = raw.body().ok().and_then(|body| body.as_string());
            Received {
                raw,
                body,
                attempts,
            }
        })
        .collect();
    if queue_name == settings.dead_letter_queue {
        join_all(
            messages
                .iter()
                .map(|message| store_dead_letter(&env, message)),
        )
        .await;
    } else {
        join_all(
            messages
                .iter()
                .map(|message| deliver(&env, &settings, message)),
        )
        .await;
    }
    Ok(JsValue::UNDEFINED)
}

/// Delivers one message of the bridge queue, then acknowledges it,
/// retries it later, or moves it to the dead-letter queue.
async fn deliver(env: &Env, settings: &BridgeSettings, received: &Received) {
    let parsed = received
        .body
        .as_deref()
        .map(serde_json::from_str::<BridgeMessage>);
    let message = match parsed {
        Some(Ok(message)) => message,
        _ => {
            // A body this Worker did not write can never be delivered.
            logging::error(
                None,
                "bridge consumer: dropped a message that is not a bridge message",
            );
            let _ = received.raw.ack();
            return;
        }
    };
    let error = match deliver_to_destination(env, &message).await {
        Ok(()) => {
            let _ = received.raw.ack();
            return;
        }
        Err(error) => error,
    };
    console_error!(
        "{}",
        json!({
            "level": "error",
            "message": "bridge delivery failed",
            "namespace": message.namespace,
            "id": message.id,
            "rule": message.rule,
            "attempts": received.attempts,
            "error": error,
        })
    );
    if received.attempts >= settings.delivery_max_attempts {
        dead_letter(env, received, message, error).await;
        return;
    }
    let delay = settings.delivery_retry_delay_secs(received.attempts);
    let _ = received.raw.retry(retry_options(delay));
}

/// Sends a message that used its last attempt to the dead-letter queue
/// with its error. If that fails, the runtime's own dead-lettering (the
/// consumer's `dead_letter_queue`) takes it after `max_retries`.
async fn dead_letter(env: &Env, received: &Received, message: BridgeMessage, error: String) {
    let letter = DeadLetter {
        message,
        error,
        attempts: Some(received.attempts),
        dead_at: Date::now().as_millis(),
    };
    let body = serde_json::to_string(&letter).unwrap_or_default();
    let sent = match env.queue(DEAD_LETTER_QUEUE_BINDING) {
        Ok(queue) => queue.send(text_message(body)).await,
        Err(error) => Err(error),
    };
    match sent {
        Ok(()) => {
            let _ = received.raw.ack();
        }
        Err(error) => {
            logging::error(
                Some(&letter.message.namespace),
                &format!(
                    "bridge consumer: sending {} to the dead-letter queue failed: {error}",
                    letter.message.id
                ),
            );
            let _ = received.raw.retry(JsValue::NULL);
        }
    }
}

async fn deliver_to_destination(env: &Env, message: &BridgeMessage) -> Result<(), String> {
    match &message.destination {
        Some(Destination::Webhook(url)) => post_webhook(env, url, message).await,
        Some(Destination::R2(folder)) => {
            let seq = seq_of_id(&message.id).unwrap_or(0);
            let key = format!("bridge/{folder}/{}/{seq:020}.json", message.namespace);
            put_object(env, &key, message.delivery_body()).await
        }
        None => Err("the message has no destination".into()),
    }
}

/// POSTs the message to a webhook, signed, with its id as the
/// `Idempotency-Key`. Any 2xx status is a delivery.
async fn post_webhook(env: &Env, url: &str, message: &BridgeMessage) -> Result<(), String> {
    let secret = env
        .secret(WEBHOOK_SECRET)
        .map(|secret| secret.to_string())
        .unwrap_or_default();
    if secret.is_empty() {
        return Err(format!(
            "the {WEBHOOK_SECRET} secret is not set, and webhooks are never sent unsigned: \
             set it with `wrangler secret put {WEBHOOK_SECRET}`"
        ));
    }

    let body = message.delivery_body();
    let headers = Headers::new();
    let header_error = |error: worker::Error| error.to_string();
    headers
        .set("Content-Type", "application/json")
        .map_err(header_error)?;
    headers
        .set("Idempotency-Key", &message.id)
        .map_err(header_error)?;
    headers
        .set(
            SIGNATURE_HEADER,
            &bridge::sign(secret.as_bytes(), body.as_bytes()),
        )
        .map_err(header_error)?;
    let mut init = RequestInit::new();
    init.with_method(Method::Post)
        .with_headers(headers)
        .with_body(Some(JsValue::from_str(&body)));
    let request = Request::new_with_init(url, &init)
        .map_err(|error| format!("invalid webhook request: {error}"))?;

    let fetch = Fetch::Request(request);
    let sent = Box::pin(fetch.send());
    let timeout = Box::pin(Delay::from(WEBHOOK_TIMEOUT));
    let outcome = match select(sent, timeout).await {
        Either::Left((Ok(response), _)) => match response.status_code() {
            200..=299 => Ok(()),
            status => Err(format!("webhook responded with HTTP {status}")),
        },
        Either::Left((Err(error), _)) => Err(format!("webhook request failed: {error}")),
        Either::Right(_) => Err(format!("webhook timed out after {WEBHOOK_TIMEOUT:?}")),
    };
    outcome
}

async fn put_object(env: &Env, key: &str, body: String) -> Result<(), String> {
    let bucket = env
        .bucket(STORE_BINDING)
        .map_err(|_| format!("R2 bucket binding {STORE_BINDING} is not configured"))?;
    bucket
        .put(key, body)
        .execute()
        .await
        .map(|_| ())
        .map_err(|error| format!("writing R2 object {key} failed: {error}"))
}

/// Stores one message of the dead-letter queue in R2: our own envelope with
/// the last error, or a bare bridge message that the runtime moved there.
async fn store_dead_letter(env: &Env, received: &Received) {
    let body = received.body.as_deref().unwrap_or_default();
    let letter = serde_json::from_str::<DeadLetter>(body).or_else(|_| {
        serde_json::from_str::<BridgeMessage>(body).map(|message| DeadLetter {
            message,
            error: "delivery attempts exhausted (moved by the queue; last error not recorded)"
                .into(),
            attempts: None,
            dead_at: Date::now().as_millis(),
        })
    });
    let Ok(letter) = letter else {
        logging::error(
            None,
            "bridge dead letters: dropped a message that is not a bridge message",
        );
        let _ = received.raw.ack();
        return;
    };
    let key = dead_letter_key(&letter.message);
    let text = serde_json::to_string(&letter).unwrap_or_default();
    match put_object(env, &key, text).await {
        Ok(()) => {
            crate::logging::info(&json!({
                "message": "bridge message dead-lettered",
                "namespace": letter.message.namespace,
                "id": letter.message.id,
                "key": key,
            }));
            let _ = received.raw.ack();
        }
        Err(error) => {
            logging::error(
                Some(&letter.message.namespace),
                &format!(
                    "bridge dead letters: storing {} failed: {error}",
                    letter.message.id
                ),
            );
            let _ = received.raw.retry(JsValue::NULL);
        }
    }
}

/// Builds the options object of `Message.retry`: `{ delaySeconds }`.
fn retry_options(delay_secs: u32) -> JsValue {
    let options = js_sys::Object::new();
    let _ = js_sys::Reflect::set(
        &options,
        &JsValue::from_str("delaySeconds"),
        &JsValue::from(delay_secs),
    );
    options.into()
}
