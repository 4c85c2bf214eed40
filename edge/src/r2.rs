//! The archive's R2 bucket: its binding, the `AUDIT` settings, and the
//! reads that the ingress Worker and the Durable Object share. The key
//! layout and the record format are in [`broker::archive`].

use broker::archive::{self, ArchiveSettings, MessageRecord};
use worker::{Bucket, Env, Object};

/// Name of the R2 bucket binding in `wrangler.toml`.
pub const STORE_BINDING: &str = "STORE";

/// Name of the `[vars]` table with the archive settings.
pub const AUDIT_VAR: &str = "AUDIT";

/// Objects one R2 list call returns at most (R2's own maximum).
const LIST_PAGE: u32 = 1000;

/// Reads the `AUDIT` variable; an absent one gives the defaults, and a
/// malformed one an error that names the problem.
pub fn load_settings(env: &Env) -> Result<ArchiveSettings, String> {
    let Ok(value) = env.object_var::<serde_json::Value>(AUDIT_VAR) else {
        return Ok(ArchiveSettings::default());
    };
    ArchiveSettings::from_json(value)
        .map_err(|error| format!("invalid {AUDIT_VAR} variable: {error}"))
}

/// Returns the bucket, or an error that names the missing binding.
pub fn bucket(env: &Env) -> Result<Bucket, String> {
    env.bucket(STORE_BINDING).map_err(|error| {
        format!("R2 bucket binding {STORE_BINDING} is not configured in wrangler.toml: {error}")
    })
}

/// Lists the objects under `prefix` whose keys sort after `start_after`,
/// in key order, one list call (a class A operation) per 1000 objects.
/// `keep_going` receives each key and stops the listing when it returns
/// false.
pub async fn list(
    bucket: &Bucket,
    prefix: &str,
    start_after: Option<String>,
    mut keep_going: impl FnMut(&str) -> bool,
) -> Result<Vec<Object>, String> {
    let mut objects = Vec::new();
    let mut after = start_after;
    loop {
        let mut request = bucket.list().prefix(prefix).limit(LIST_PAGE);
        if let Some(after) = &after {
            request = request.start_after(after.clone());
        }
        let page = request
            .execute()
            .await
            .map_err(|error| format!("listing R2 prefix {prefix} failed: {error}"))?;
        let truncated = page.truncated();
        for object in page.objects() {
            let key = object.key();
            if !keep_going(&key) {
                return Ok(objects);
            }
            after = Some(key);
            objects.push(object);
        }
        if !truncated {
            return Ok(objects);
        }
    }
}

/// Reads an object as text; `None` if it does not exist.
pub async fn read_text(bucket: &Bucket, key: &str) -> Result<Option<String>, String> {
    let object = bucket
        .get(key)
        .execute()
        .await
        .map_err(|error| format!("reading R2 object {key} failed: {error}"))?;
    let Some(body) = object.as_ref().and_then(Object::body) else {
        return Ok(None);
    };
    body.text()
        .await
        .map(Some)
        .map_err(|error| format!("reading R2 object {key} failed: {error}"))
}

/// Reads the retained mirror of a namespace: its unexpired records in
/// topic key order. One class B operation per retained message.
pub async fn read_retained(
    bucket: &Bucket,
    namespace: &str,
    now_ms: u64,
) -> Result<Vec<MessageRecord>, String> {
    let prefix = archive::retained_prefix(namespace);
    let objects = list(bucket, &prefix, None, |_| true).await?;
    let mut records = Vec::new();
    for object in objects {
        let key = object.key();
        let Some(text) = read_text(bucket, &key).await? else {
            // Deleted between the listing and the read.
            continue;
        };
        let parsed = archive::parse_ndjson(&text).map_err(|error| format!("{key}: {error}"))?;
        records.extend(
            parsed
                .into_iter()
                .filter(|record| record.expires_at_ms.is_none_or(|at| at > now_ms)),
        );
    }
    Ok(records)
}

/// Reads the audit records of a namespace accepted from `from_ms`
/// (included) to `to_ms` (excluded), in sequence order. It lists from the
/// hour of `from_ms` and stops at the first object of an hour at or after
/// `to_ms`. Messages still buffered in the Durable Object are not included.
pub async fn read_audit_range(
    bucket: &Bucket,
    namespace: &str,
    from_ms: u64,
    to_ms: u64,
) -> Result<Vec<MessageRecord>, String> {
    let prefix = archive::audit_prefix(namespace);
    let start = archive::audit_hour_prefix(namespace, from_ms);
    let objects = list(bucket, &prefix, Some(start), |key| {
        archive::parse_audit_key(namespace, key).is_none_or(|parsed| parsed.hour_start_ms < to_ms)
    })
    .await?;
    let mut records = Vec::new();
    for object in objects {
        let key = object.key();
        if archive::parse_audit_key(namespace, &key).is_none() {
            continue;
        }
        let Some(text) = read_text(bucket, &key).await? else {
            continue;
        };
        let parsed = archive::parse_ndjson(&text).map_err(|error| format!("{key}: {error}"))?;
        records.extend(parsed.into_iter().filter(|record| {
            record
                .time_ms
                .is_some_and(|time| from_ms <= time && time < to_ms)
        }));
    }
    records.sort_by_key(|record| record.seq);
    Ok(records)
}

/// Joins records into an NDJSON body.
pub fn to_ndjson(records: &[MessageRecord]) -> String {
    records.iter().map(MessageRecord::to_line).collect()
}
