//! The broker's own storage counters, read from `/admin/metrics` of one
//! namespace before and after a run.

use std::time::Duration;

use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The address of one namespace's counters.
#[derive(Debug, Clone)]
pub struct Source {
    pub port: u16,
    /// The `ADMIN_TOKEN` the server was started with.
    pub admin_token: String,
    pub namespace: String,
}

/// The edge's storage and WebSocket counters, or their change over a run.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct StorageCounts {
    pub statements: u64,
    pub rows_read: u64,
    pub rows_written: u64,
    pub batches: u64,
    pub coalesced: u64,
    /// WebSocket messages the broker received.
    pub websocket_messages: u64,
}

impl StorageCounts {
    /// Returns the change from `before` to `self`.
    pub fn since(&self, before: &StorageCounts) -> StorageCounts {
        StorageCounts {
            statements: self.statements.saturating_sub(before.statements),
            rows_read: self.rows_read.saturating_sub(before.rows_read),
            rows_written: self.rows_written.saturating_sub(before.rows_written),
            batches: self.batches.saturating_sub(before.batches),
            coalesced: self.coalesced.saturating_sub(before.coalesced),
            websocket_messages: self
                .websocket_messages
                .saturating_sub(before.websocket_messages),
        }
    }

    fn set(&mut self, name: &str, value: u64) {
        match name {
            "mqtt_storage_statements_total" => self.statements = value,
            "mqtt_storage_rows_read_total" => self.rows_read = value,
            "mqtt_storage_rows_written_total" => self.rows_written = value,
            "mqtt_storage_batches_total" => self.batches = value,
            "mqtt_storage_coalesced_total" => self.coalesced = value,
            "mqtt_websocket_messages_received_total" => self.websocket_messages = value,
            _ => {}
        }
    }
}

impl Source {
    /// Reads the counters. The request wakes the namespace's Durable Object
    /// if it is not in memory, which reads its rows once.
    pub async fn read(&self) -> Result<StorageCounts, String> {
        let body = tokio::time::timeout(Duration::from_secs(10), self.get_metrics())
            .await
            .map_err(|_| "reading /admin/metrics timed out after 10 s".to_string())??;
        let mut counts = StorageCounts::default();
        for line in body.lines().filter(|line| !line.starts_with('#')) {
            let (Some(name), Some(value)) = (line.split('{').next(), line.split(' ').nth(1)) else {
                continue;
            };
            if let Ok(value) = value.trim().parse() {
                counts.set(name, value);
            }
        }
        Ok(counts)
    }

    /// Sends `GET /admin/metrics` as HTTP/1.0, so that the body comes
    /// without chunked encoding and ends when the connection closes.
    async fn get_metrics(&self) -> Result<String, String> {
        let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", self.port))
            .await
            .map_err(|error| format!("connecting to port {} failed: {error}", self.port))?;
        let request = format!(
            "GET /admin/metrics?namespace={} HTTP/1.0\r\nHost: 127.0.0.1\r\n\
             Authorization: Bearer {}\r\n\r\n",
            self.namespace, self.admin_token
        );
        stream
            .write_all(request.as_bytes())
            .await
            .map_err(|error| format!("sending the metrics request failed: {error}"))?;
        let mut response = Vec::new();
        stream
            .read_to_end(&mut response)
            .await
            .map_err(|error| format!("reading the metrics response failed: {error}"))?;
        let response = String::from_utf8_lossy(&response).into_owned();
        let (head, body) = response
            .split_once("\r\n\r\n")
            .ok_or("the metrics response has no body")?;
        if !head.starts_with("HTTP/1.1 200") && !head.starts_with("HTTP/1.0 200") {
            let status = head.lines().next().unwrap_or_default();
            return Err(format!("GET /admin/metrics returned {status}"));
        }
        Ok(body.to_string())
    }
}
