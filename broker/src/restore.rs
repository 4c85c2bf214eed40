//! Rebuilding the broker from stored rows and connection records after the
//! Durable Object wakes from hibernation or restarts.

use bytes::Bytes;
use codec::ReasonCode;

use crate::connection::{self, Connection};
use crate::lifecycle::Ending;
use crate::retained;
use crate::session::{self, Session, SessionRecord, StoredMessage};
use crate::store::{kind, Row, RowKey, StoreOp};
use crate::{Broker, ConnId, Output};

impl Broker {
    /// Loads sessions first, then the rows that belong to them, so the order
    /// of `rows` does not matter. Rows of unknown kinds, damaged rows and
    /// rows whose session is gone are skipped.
    pub(crate) fn restore_rows(&mut self, rows: Vec<Row>, now_ms: u64) {
        let (session_rows, other_rows): (Vec<Row>, Vec<Row>) =
            rows.into_iter().partition(|row| row.kind == kind::SESSION);
        for row in session_rows {
            let Ok(record) = serde_json::from_slice::<SessionRecord>(&row.value) else {
                log::debug!("skipping damaged session row of {:?}", row.owner);
                continue;
            };
            let mut session = Session::new(row.owner.clone(), record.expiry_interval);
            session.disconnected_at_ms = record.disconnected_at_ms;
            session.acl = record.acl;
            self.sessions.insert(row.owner, session);
        }
        for row in other_rows {
            if row.kind == kind::RETAINED {
                match retained::decode(row.value) {
                    Some(message) if !message.is_expired(now_ms) => {
                        self.retained.insert_restored(message)
                    }
                    // Expired or damaged rows are deleted here, because
                    // nothing else would ever delete them.
                    _ => self.store(StoreOp::Delete {
                        key: RowKey::new(kind::RETAINED, "", row.name),
                    }),
                }
                continue;
            }
            let Some(session) = self.sessions.get_mut(&row.owner) else {
                continue;
            };
            restore_session_row(session, &row.kind, row.name, row.value);
        }
        for session in self.sessions.values() {
            for filter in session.subscriptions.keys() {
                self.subscription_tree.insert(&session.client_id, filter);
            }
        }
        for session in self.sessions.values_mut() {
            // Continue packet ids after the newest message in flight.
            if let Some(newest) = session.inflight.values().next_back() {
                session.next_packet_id = newest.pkid.get().checked_add(1).unwrap_or(1);
            }
        }
    }

    /// Restores open sockets and binds them to their sessions. A connected
    /// session whose socket is not among them lost it during hibernation.
    pub(crate) fn restore_connections(&mut self, records: Vec<(ConnId, Bytes)>, now_ms: u64) {
        self.next_conn_id = connection::first_new_id(records.iter().map(|(conn, _)| *conn), now_ms);
        for (conn, record) in records {
            let Some(connection) = Connection::decode_record(record) else {
                log::debug!("connection {conn}: damaged record, closing");
                self.outputs.push_back(Output::Close { conn });
                continue;
            };
            let client_id = connection.session.as_ref().map(|c| c.client_id.clone());
            let buffer_lost = connection.buffer_lost;
            self.connections.insert(conn, connection);
            if let Some(client_id) = client_id {
                let Some(session) = self.sessions.get_mut(&client_id) else {
                    // The session ended while the socket stayed open.
                    self.end_connection(conn, Ending::Rejected, now_ms);
                    continue;
                };
                // A socket the broker closed after a takeover may still be
                // listed while its close completes. Ids only grow, so the
                // higher id is the newer connection, and the other is closed
                // without touching the session.
                let stale = match session.conn {
                    Some(other) if other > conn => Some(conn),
                    Some(other) => {
                        session.conn = Some(conn);
                        Some(other)
                    }
                    None => {
                        session.conn = Some(conn);
                        None
                    }
                };
                if let Some(stale) = stale {
                    self.end_connection(stale, Ending::Rejected, now_ms);
                    if stale == conn {
                        continue;
                    }
                }
            }
            if buffer_lost {
                let ending = Ending::ServerClose(ReasonCode::ImplementationSpecificError);
                let detail = "a partial packet was lost while the broker hibernated";
                self.end_connection_explained(conn, ending, Some(detail.into()), now_ms);
            }
        }

        let vanished: Vec<String> = self
            .sessions
            .values()
            .filter(|s| s.conn.is_none() && s.disconnected_at_ms.is_none())
            .map(|s| s.client_id.clone())
            .collect();
        for client_id in vanished {
            self.detach_vanished(&client_id, now_ms);
        }
    }
}

fn restore_session_row(session: &mut Session, row_kind: &str, name: String, value: Bytes) {
    match row_kind {
        kind::SUBSCRIPTION => {
            if let Some(subscription) = session::decode_subscription(&value) {
                session.subscriptions.insert(name, subscription);
            }
        }
        kind::MESSAGE => {
            let Ok(sequence) = name.parse::<u64>() else {
                return;
            };
            session.next_sequence = session.next_sequence.max(sequence.saturating_add(1));
            match session::decode_message_row(value) {
                Some(StoredMessage::Queued(message)) => session.push_queue(sequence, message),
                Some(StoredMessage::Inflight(inflight)) => {
                    session.inflight.insert(sequence, inflight);
                }
                None => {}
            }
        }
        kind::INCOMING_QOS2 => {
            if let Ok(pkid) = name.parse::<u16>() {
                session.incoming_qos2.insert(pkid);
            }
        }
        kind::WILL => session.will = session::decode_will(value),
        _ => {}
    }
}
