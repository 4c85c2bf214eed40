//! The scheduled upkeep (`[triggers] crons` in `wrangler.toml`). A Worker
//! cannot list its Durable Objects, so each namespace writes an R2 marker
//! `namespaces/<name>` once. The upkeep lists the markers and calls each
//! namespace's `/admin/upkeep`. That ends expired sessions, removes expired
//! retained messages and deletes the namespace's audit objects past their
//! retention. The totals go to one JSON log line.

use broker::archive::{UpkeepReport, NAMESPACE_MARKER_PREFIX};
use serde_json::json;
use worker::{event, Env, Method, Request, RequestInit, ScheduleContext, ScheduledEvent};

use crate::{http_api, logging, r2, NAMESPACE_BINDING, NAMESPACE_HEADER};

/// The path of a namespace's upkeep. The ingress never forwards it, so
/// only this handler reaches it.
pub const UPKEEP_PATH: &str = "/admin/upkeep";

#[event(scheduled)]
async fn scheduled(event: ScheduledEvent, env: Env, _ctx: ScheduleContext) {
    logging::install();
    let bucket = match r2::bucket(&env) {
        Ok(bucket) => bucket,
        Err(message) => {
            logging::error(None, &format!("scheduled upkeep: {message}"));
            return;
        }
    };
    let markers = match r2::list(&bucket, NAMESPACE_MARKER_PREFIX, None, |_| true).await {
        Ok(markers) => markers,
        Err(message) => {
            logging::error(None, &format!("scheduled upkeep: {message}"));
            return;
        }
    };
    let mut total = UpkeepReport::default();
    let mut namespaces = 0u64;
    let mut failed = Vec::new();
    // TODO: fan out over several invocations once a deployment has more
    // namespaces than one scheduled run can call in sequence.
    for marker in markers {
        let key = marker.key();
        let name = key.trim_start_matches(NAMESPACE_MARKER_PREFIX);
        if !http_api::valid_namespace(name) {
            continue;
        }
        match run_namespace(&env, name).await {
            Ok(report) => {
                namespaces += 1;
                total.expired_sessions += report.expired_sessions;
                total.expired_retained += report.expired_retained;
                total.audit_objects_deleted += report.audit_objects_deleted;
            }
            Err(message) => {
                logging::error(Some(name), &format!("scheduled upkeep: {message}"));
                failed.push(name.to_string());
            }
        }
    }
    logging::info(&json!({
        "message": "scheduled upkeep finished",
        "cron": event.cron(),
        "namespaces": namespaces,
        "failed_namespaces": failed,
        "expired_sessions": total.expired_sessions,
        "expired_retained": total.expired_retained,
        "audit_objects_deleted": total.audit_objects_deleted,
    }));
}

/// Calls the upkeep of one namespace and returns what it removed.
async fn run_namespace(env: &Env, namespace: &str) -> Result<UpkeepReport, String> {
    let failed = |error: worker::Error| format!("upkeep request failed: {error}");
    let headers = worker::Headers::new();
    headers.set(NAMESPACE_HEADER, namespace).map_err(failed)?;
    let mut init = RequestInit::new();
    init.with_method(Method::Post).with_headers(headers);
    let url = format!("https://namespace{UPKEEP_PATH}");
    let request = Request::new_with_init(&url, &init).map_err(failed)?;
    let stub = env
        .durable_object(NAMESPACE_BINDING)
        .and_then(|namespaces| namespaces.get_by_name(namespace))
        .map_err(failed)?;
    let mut response = stub.fetch_with_request(request).await.map_err(failed)?;
    let status = response.status_code();
    let text = response.text().await.map_err(failed)?;
    if status != 200 {
        return Err(format!("upkeep answered {status}: {text}"));
    }
    serde_json::from_str(&text).map_err(|error| format!("upkeep report does not parse: {error}"))
}
