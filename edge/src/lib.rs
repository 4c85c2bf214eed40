//! The Cloudflare Worker: thin glue between the runtime and the broker core.
//!
//! - `routes`: the ingress `fetch` handler; it validates the path and sends
//!   each WebSocket upgrade to the Durable Object of its namespace.
//! - `namespace`: the Durable Object that owns one namespace. It feeds socket
//!   events to [`broker::Broker`] and carries out what the broker returns.
//! - `storage`: the broker's rows in the object's SQLite storage.
//! - `settings`: broker settings from the `MQTT` variable in `wrangler.toml`.
//! - `auth_env`: authentication settings, secrets and verifiers from the
//!   environment.
//! - `ingress_auth`: the rate limit and token check on `/mqtt` upgrades.
//! - `admin`: the `/admin/` API behind Cloudflare Access or a bearer secret.
//! - `http_api`: the ingress side of the HTTP API (publish, retained reads,
//!   SSE, long polling, admin requests per namespace); see `docs/http.md`.
//! - `http_message`: HTTP requests and JSON to and from MQTT messages.
//! - `http_settings`: HTTP API settings from the `HTTP` variable.
//! - `logging`: JSON log lines with the namespace and client id.
//! - `bridge`: the bridge to Cloudflare Queues: bindings, settings, webhook
//!   signatures and the dead-letter admin routes.
//! - `queue`: the queue consumer that delivers bridged messages.
//! - `r2`: the archive's R2 bucket, its settings and shared reads.
//! - `r2_api`: the archive routes of the admin API (export, mirror reads,
//!   import, audit range, replay).
//! - `upkeep`: the scheduled handler that cleans every known namespace.

mod admin;
mod auth_env;
mod bridge;
mod http_api;
mod http_message;
mod http_settings;
mod ingress_auth;
mod logging;
mod namespace;
mod queue;
mod r2;
mod r2_api;
mod routes;
mod settings;
mod storage;
mod upkeep;

pub use namespace::Namespace;

/// Name of the Durable Object binding in `wrangler.toml`.
pub const NAMESPACE_BINDING: &str = "NAMESPACES";

/// Header with which the ingress tells the Durable Object its namespace name.
pub const NAMESPACE_HEADER: &str = "x-mqtt-namespace";

/// Header with which the ingress passes the token it verified to the Durable
/// Object: [`auth::Grant::to_header_value`], or [`auth::NO_GRANT`] when the
/// upgrade request carried no token. The ingress always sets it, replacing
/// any value the client sent.
pub const GRANT_HEADER: &str = "x-mqtt-grant";
