//! The MQTT broker core: every protocol rule of one namespace, with no I/O.
//!
//! A [`Broker`] owns the sessions, subscriptions, retained messages and
//! in-flight messages of one namespace. It never reads a clock and never
//! touches a socket or a database. The embedding (the Durable Object, or a
//! test) drives it:
//!
//! 1. Create it with [`Broker::restore`], passing every row previously
//!    written to storage and the records of the sockets that are still open.
//! 2. Feed it events: [`Broker::handle_open`] for a new socket,
//!    [`Broker::handle_data`] for received bytes, [`Broker::handle_closed`]
//!    when a socket closes, and [`Broker::handle_timeout`] when the time
//!    returned by [`Broker::next_timeout`] has passed. Each takes the current
//!    time in milliseconds since the Unix epoch.
//! 3. After each event, drain [`Broker::poll_output`] until it returns `None`
//!    and carry out every [`Output`] in order: storage writes before sends,
//!    because a PUBACK must not leave before the message it acknowledges is
//!    stored.
//!
//! Modules:
//! - `config`: limits and advertised capabilities, with defaults.
//! - `store`: the rows the core asks the embedding to keep.

pub mod config;
pub mod store;

use bytes::Bytes;

pub use config::Config;
pub use store::{Row, RowKey, StoreOp};

/// Identifies one socket for as long as it is open. Assigned by the core.
pub type ConnId = u64;

/// What the core asks the embedding to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Send these bytes (one or more whole packets) as one binary message.
    Send { conn: ConnId, bytes: Bytes },
    /// Close the socket once the sends before this output are flushed.
    Close { conn: ConnId },
    /// Keep this record with the socket (the Durable Object's WebSocket
    /// attachment) so that the connection survives hibernation.
    SaveConnection { conn: ConnId, record: Bytes },
    /// Write to durable storage.
    Store(StoreOp),
}

/// The protocol state of one namespace.
pub struct Broker {
    _private: (),
}

impl Broker {
    /// Builds a broker from stored rows and the records of open sockets, as
    /// saved through [`Output::SaveConnection`].
    pub fn restore(config: Config, rows: Vec<Row>, connections: Vec<(ConnId, Bytes)>, now_ms: u64) -> Broker {
        let _ = (config, rows, connections, now_ms);
        todo!("broker: restore")
    }

    /// Registers a new socket and returns its id.
    pub fn handle_open(&mut self, now_ms: u64) -> ConnId {
        let _ = now_ms;
        todo!("broker: handle_open")
    }

    /// Processes bytes received on a socket.
    pub fn handle_data(&mut self, conn: ConnId, data: &[u8], now_ms: u64) {
        let _ = (conn, data, now_ms);
        todo!("broker: handle_data")
    }

    /// Processes the close of a socket, by the peer or after an error.
    pub fn handle_closed(&mut self, conn: ConnId, now_ms: u64) {
        let _ = (conn, now_ms);
        todo!("broker: handle_closed")
    }

    /// Runs every deadline that has passed: keepalive, CONNECT timeout,
    /// will delay, session and message expiry, retransmission.
    pub fn handle_timeout(&mut self, now_ms: u64) {
        let _ = now_ms;
        todo!("broker: handle_timeout")
    }

    /// The earliest time at which [`Broker::handle_timeout`] has work to do.
    pub fn next_timeout(&self) -> Option<u64> {
        todo!("broker: next_timeout")
    }

    /// The next action for the embedding, in order.
    pub fn poll_output(&mut self) -> Option<Output> {
        todo!("broker: poll_output")
    }
}
