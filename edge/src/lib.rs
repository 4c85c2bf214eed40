//! The Cloudflare Worker: thin glue between the runtime and the broker core.
//!
//! - `routes`: the ingress `fetch` handler; it validates the path and sends
//!   each WebSocket upgrade to the Durable Object of its namespace.
//! - `namespace`: the Durable Object that owns one namespace. It feeds socket
//!   events to [`broker::Broker`] and carries out what the broker returns.
//! - `storage`: the broker's rows in the object's SQLite storage.
//! - `settings`: broker settings from the `MQTT` variable in `wrangler.toml`.

mod namespace;
mod routes;
mod settings;
mod storage;

pub use namespace::Namespace;

/// Name of the Durable Object binding in `wrangler.toml`.
pub const NAMESPACE_BINDING: &str = "NAMESPACES";

/// Header with which the ingress tells the Durable Object its namespace name.
pub const NAMESPACE_HEADER: &str = "x-mqtt-namespace";
