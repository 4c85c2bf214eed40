//! The admin requests the ingress forwards to a namespace, after its
//! `/admin/` gate: metrics, the client list, one client, and disconnect.

use serde_json::json;
use worker::{Method, Request, Response, Result};

use super::http::json_error;
use super::Namespace;
use crate::http_message::decode_path;

/// Content type of the Prometheus text exposition format.
const PROMETHEUS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

impl Namespace {
    /// Serves `/admin/{rest}`.
    pub(super) async fn handle_admin(
        &self,
        req: Request,
        method: Method,
        rest: &str,
    ) -> Result<Response> {
        let namespace = self
            .loaded
            .borrow()
            .as_ref()
            .map(|loaded| loaded.namespace.clone())
            .unwrap_or_default();
        match (method, rest) {
            (Method::Get, "metrics") => {
                let text = self.loaded.borrow().as_ref().map(|loaded| {
                    let mut text = loaded.broker.metrics().to_prometheus(&namespace);
                    let streams = loaded.feed.listener_count();
                    text.push_str("# HELP mqtt_sse_streams Open SSE streams.\n# TYPE mqtt_sse_streams gauge\n");
                    text.push_str(&format!("mqtt_sse_streams{{namespace=\"{}\"}} {streams}\n", escape(&namespace)));
                    text.push_str(&loaded.storage.to_prometheus(&escape(&namespace)));
                    text.push_str(&format!(
                        "# HELP mqtt_websocket_messages_received_total WebSocket messages received.\n\
                         # TYPE mqtt_websocket_messages_received_total counter\n\
                         mqtt_websocket_messages_received_total{{namespace=\"{}\"}} {}\n",
                        escape(&namespace),
                        loaded.websocket_messages
                    ));
                    text.push_str(&loaded.archive.prometheus(&escape(&namespace)));
                    if let Some(bridge) = self.bridge.borrow().as_ref() {
                        text.push_str(&bridge.to_prometheus(&namespace));
                    }
                    text
                });
                let mut response = Response::ok(text.unwrap_or_default())?;
                response
                    .headers_mut()
                    .set("Content-Type", PROMETHEUS_CONTENT_TYPE)?;
                Ok(response)
            }
            (method, "bridge/rules") => self.handle_bridge_rules(req, method).await,
            (Method::Get, "clients") => {
                let clients = self
                    .loaded
                    .borrow()
                    .as_ref()
                    .map(|loaded| loaded.broker.clients());
                Response::from_json(
                    &json!({ "namespace": namespace, "clients": clients.unwrap_or_default() }),
                )
            }
            (method, path) if path.starts_with("clients/") => {
                let rest = &path["clients/".len()..];
                let (encoded, action) = match rest.strip_suffix("/disconnect") {
                    Some(encoded) => (encoded, Some("disconnect")),
                    None => (rest, None),
                };
                let client_id = match decode_path(encoded) {
                    Ok(client_id) => client_id,
                    Err(message) => return json_error(400, message),
                };
                match (method, action) {
                    (Method::Get, None) => self.describe_client(&client_id),
                    (Method::Post, Some(_)) => self.disconnect_client(&namespace, &client_id),
                    _ => json_error(
                        405,
                        "method not allowed: GET a client, POST to its /disconnect",
                    ),
                }
            }
            (method, path) if super::archive::is_archive_path(path) => {
                self.handle_archive_admin(req, method, path, &namespace)
                    .await
            }
            (_, path) => json_error(404, format!("not found: /admin/{path}; see docs/http.md")),
        }
    }

    fn describe_client(&self, client_id: &str) -> Result<Response> {
        let described = self.loaded.borrow().as_ref().and_then(|loaded| {
            let client = loaded.broker.client(client_id)?;
            let subscriptions = loaded.broker.client_subscriptions(client_id)?;
            Some(json!({ "client": client, "subscriptions": subscriptions }))
        });
        match described {
            Some(body) => Response::from_json(&body),
            None => json_error(404, format!("no session with client id {client_id:?}")),
        }
    }

    fn disconnect_client(&self, namespace: &str, client_id: &str) -> Result<Response> {
        let disconnected =
            self.with_loaded(|loaded, now| loaded.broker.disconnect_client(client_id, now));
        match disconnected {
            Some(true) => {
                crate::logging::info(&json!({
                    "namespace": namespace,
                    "client_id": client_id,
                    "message": "client disconnected by the admin API",
                }));
                Response::from_json(&json!({ "disconnected": true }))
            }
            _ => json_error(404, format!("client {client_id:?} is not connected")),
        }
    }
}

fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}
