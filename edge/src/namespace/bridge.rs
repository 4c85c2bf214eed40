//! The Durable Object's side of the bridge to Cloudflare Queues: the SQLite
//! outbox, the flush that sends it to the queue in batches, and the
//! namespace's own bridge rules (`/admin/bridge/rules`).
//!
//! The policy (rule matching, bound, batches, backoff, ids) is
//! [`broker::bridge::Outbox`]; this module only reads and writes rows and
//! calls the queue.

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use broker::bridge::{validate_rules, Batch, BridgeSettings, Outbox, OutboxLimits, Rule};
use broker::Message;
use serde_json::json;
use worker::{Date, Method, Queue, Request, Response, Result, SqlStorage};
use worker::{SqlStorageValue, Storage};

use super::http::json_error;
use super::{move_alarm_earlier, Alarm, Namespace};
use crate::bridge::{text_message, QUEUE_BINDING};
use crate::logging;

const CREATE_OUTBOX: &str = "CREATE TABLE IF NOT EXISTS bridge_outbox (
    seq INTEGER PRIMARY KEY,
    bytes INTEGER NOT NULL,
    body TEXT NOT NULL
)";

/// Named values of the bridge: `high_water` (the highest sequence number
/// ever sent, so ids are never reused) and `rules` (the namespace's own
/// rules as JSON).
const CREATE_STATE: &str =
    "CREATE TABLE IF NOT EXISTS bridge_state (name TEXT PRIMARY KEY, value TEXT NOT NULL)";

/// Rules a namespace may set through the admin API. Every routed message
/// is matched against each rule, in the event that routes it.
const MAX_NAMESPACE_RULES: usize = 100;

/// The bridge of one namespace while the object is in memory.
pub(super) struct Bridge {
    /// Rules from the `BRIDGE` variable, for every namespace.
    configured: Vec<Rule>,
    /// Rules set through the admin API for this namespace.
    own: Vec<Rule>,
    outbox: Outbox,
}

/// The bridge, shared with the flush running after an event.
pub(super) type SharedBridge = Rc<RefCell<Option<Bridge>>>;

impl Bridge {
    /// Creates the tables if needed and rebuilds the outbox from them.
    pub(super) fn load(
        settings: &BridgeSettings,
        sql: &SqlStorage,
    ) -> std::result::Result<Bridge, String> {
        let failed = |error: worker::Error| format!("loading the bridge outbox failed: {error}");
        sql.exec(CREATE_OUTBOX, None).map_err(failed)?;
        sql.exec(CREATE_STATE, None).map_err(failed)?;
        let mut rows = Vec::new();
        for columns in sql
            .exec("SELECT seq, bytes FROM bridge_outbox", None)
            .map_err(failed)?
            .raw()
        {
            let columns = columns.map_err(failed)?;
            if let [SqlStorageValue::Integer(seq), SqlStorageValue::Integer(bytes)] =
                columns.as_slice()
            {
                rows.push((*seq as u64, *bytes as usize));
            }
        }
        let high_water = read_state(sql, "high_water")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let own = match read_state(sql, "rules") {
            Some(json) => serde_json::from_str(&json)
                .map_err(|error| format!("stored bridge rules do not parse: {error}"))?,
            None => Vec::new(),
        };
        Ok(Bridge {
            configured: settings.rules.clone(),
            own,
            outbox: Outbox::restore(OutboxLimits::from(settings), rows, high_water),
        })
    }

    /// Reports whether any rule applies, so the broker must feed routed
    /// messages.
    pub(super) fn has_rules(&self) -> bool {
        !self.configured.is_empty() || !self.own.is_empty()
    }

    /// Returns when a failed send is due again.
    pub(super) fn next_deadline(&self) -> Option<u64> {
        self.outbox.next_deadline()
    }

    /// Renders the bridge metrics in the Prometheus text format.
    pub(super) fn to_prometheus(&self, namespace: &str) -> String {
        self.outbox.to_prometheus(namespace)
    }

    /// Writes the outbox rows of routed messages. Runs in the event that
    /// routed them and before anything it sends, so the output gate delays
    /// a PUBACK until these rows are durable too.
    pub(super) fn admit(
        &mut self,
        sql: &SqlStorage,
        namespace: &str,
        routed: &[Message],
        now: u64,
    ) {
        if !self.has_rules() {
            return;
        }
        let rules: Vec<Rule> = self.configured.iter().chain(&self.own).cloned().collect();
        for message in routed {
            let admission = self.outbox.admit(&rules, namespace, message, now);
            let mut result = Ok(());
            for seq in admission.evicted {
                result = result.and(delete_rows(sql, seq, seq));
            }
            for row in admission.inserted {
                let values = vec![
                    (row.seq as i64).into(),
                    (row.body.len() as i64).into(),
                    row.body.into(),
                ];
                let insert =
                    "INSERT OR REPLACE INTO bridge_outbox (seq, bytes, body) VALUES (?, ?, ?)";
                result = result.and(sql.exec(insert, values).map(|_| ()));
            }
            if let Err(error) = result {
                logging::error(
                    Some(namespace),
                    &format!("writing the bridge outbox failed: {error}"),
                );
            }
        }
    }
}

impl Namespace {
    /// Feeds routed messages to the outbox and starts a flush when one is
    /// due. Called from `carry_out`, before the sends of the event.
    pub(super) fn bridge_routed(&self, namespace: &str, routed: &[Message]) {
        let now = Date::now().as_millis();
        let sql = self.state.storage().sql();
        if let Some(bridge) = self.bridge.borrow_mut().as_mut() {
            bridge.admit(&sql, namespace, routed, now);
        }
        self.start_bridge_flush(namespace, now);
    }

    /// Starts sending the outbox in the background unless a flush is in
    /// flight or backing off. Sockets never wait for the queue.
    fn start_bridge_flush(&self, namespace: &str, now: u64) {
        let has_work = self
            .bridge
            .borrow()
            .as_ref()
            .is_some_and(|bridge| bridge.outbox.has_work(now));
        if !has_work {
            return;
        }
        let queue = self
            .env
            .queue(QUEUE_BINDING)
            .map_err(|error| error.to_string());
        let flush = flush(
            self.state.storage(),
            queue,
            Rc::clone(&self.bridge),
            Rc::clone(&self.alarm),
            namespace.to_string(),
        );
        self.state.wait_until(flush);
    }

    /// Serves `/admin/bridge/rules`: GET lists the configured rules and the
    /// namespace's own, PUT replaces its own with a JSON array, DELETE
    /// removes them.
    pub(super) async fn handle_bridge_rules(
        &self,
        mut req: Request,
        method: Method,
    ) -> Result<Response> {
        let own = match method {
            Method::Get => None,
            Method::Put => {
                let body = req.text().await.unwrap_or_default();
                match serde_json::from_str::<Vec<Rule>>(&body) {
                    Ok(rules) => Some(rules),
                    Err(error) => return json_error(400, format!("invalid rules JSON: {error}")),
                }
            }
            Method::Delete => Some(Vec::new()),
            _ => return json_error(405, "method not allowed: use GET, PUT or DELETE"),
        };
        if let Some(rules) = own {
            if let Err(message) = self.replace_bridge_rules(rules) {
                return json_error(400, message);
            }
        }
        let guard = self.bridge.borrow();
        let Some(bridge) = guard.as_ref() else {
            return json_error(500, "the bridge is not loaded");
        };
        Response::from_json(&json!({ "configured": bridge.configured, "namespace": bridge.own }))
    }

    fn replace_bridge_rules(&self, rules: Vec<Rule>) -> std::result::Result<(), String> {
        if rules.len() > MAX_NAMESPACE_RULES {
            return Err(format!(
                "{} rules: a namespace may have at most {MAX_NAMESPACE_RULES}",
                rules.len()
            ));
        }
        let mut guard = self.bridge.borrow_mut();
        let bridge = guard.as_mut().ok_or("the bridge is not loaded")?;
        let all: Vec<Rule> = bridge.configured.iter().chain(&rules).cloned().collect();
        validate_rules(&all)?;
        let sql = self.state.storage().sql();
        let json = serde_json::to_string(&rules).map_err(|error| error.to_string())?;
        write_state(&sql, "rules", &json)
            .map_err(|error| format!("saving the rules failed: {error}"))?;
        bridge.own = rules;
        let observe = bridge.has_rules();
        drop(guard);
        if observe {
            if let Some(loaded) = self.loaded.borrow_mut().as_mut() {
                loaded.broker.set_observe_routed(true);
            }
        }
        Ok(())
    }
}

/// Sends batches until the outbox is empty or the queue fails, in which
/// case the rows stay and the alarm wakes the object after the backoff.
async fn flush(
    storage: Storage,
    queue: std::result::Result<Queue, String>,
    bridge: SharedBridge,
    alarm: Rc<Cell<Alarm>>,
    namespace: String,
) {
    let sql = storage.sql();
    loop {
        let now = Date::now().as_millis();
        let batch = bridge
            .borrow_mut()
            .as_mut()
            .and_then(|b| b.outbox.next_batch(now));
        let Some(batch) = batch else {
            return;
        };
        let sent = match &queue {
            Ok(queue) => send(&sql, queue, &batch).await,
            Err(error) => Err(format!("queue binding {QUEUE_BINDING} is missing: {error}")),
        };
        let now = Date::now().as_millis();
        let retry_at = {
            let mut guard = bridge.borrow_mut();
            let Some(state) = guard.as_mut() else {
                return;
            };
            match sent {
                Ok(()) => {
                    let high_water = state.outbox.batch_sent(&batch);
                    let first = batch.seqs.first().copied().unwrap_or(0);
                    let stored = delete_rows(&sql, first, high_water)
                        .and_then(|()| write_state(&sql, "high_water", &high_water.to_string()));
                    if let Err(error) = stored {
                        logging::error(
                            Some(&namespace),
                            &format!("removing sent bridge rows failed: {error}"),
                        );
                    }
                    None
                }
                Err(error) => {
                    let retry_at = state.outbox.batch_failed(now);
                    logging::error(
                        Some(&namespace),
                        &format!(
                            "sending {} bridge messages to the queue failed, \
                             retrying in {} ms: {error}",
                            batch.seqs.len(),
                            retry_at.saturating_sub(now)
                        ),
                    );
                    Some(retry_at)
                }
            }
        };
        if let Some(retry_at) = retry_at {
            move_alarm_earlier(&storage, &alarm, retry_at).await;
            return;
        }
    }
}

/// Reads the rows of a batch and sends them in one `sendBatch` call.
async fn send(sql: &SqlStorage, queue: &Queue, batch: &Batch) -> std::result::Result<(), String> {
    let (Some(&first), Some(&last)) = (batch.seqs.first(), batch.seqs.last()) else {
        return Ok(());
    };
    let select = "SELECT body FROM bridge_outbox WHERE seq BETWEEN ? AND ? ORDER BY seq";
    let cursor = sql
        .exec(select, vec![(first as i64).into(), (last as i64).into()])
        .map_err(|error| format!("reading the outbox failed: {error}"))?;
    let mut bodies = Vec::with_capacity(batch.seqs.len());
    for columns in cursor.raw() {
        let columns = columns.map_err(|error| format!("reading the outbox failed: {error}"))?;
        if let Some(SqlStorageValue::String(body)) = columns.into_iter().next() {
            bodies.push(body);
        }
    }
    let messages: Vec<_> = bodies.into_iter().map(text_message).collect();
    queue
        .send_batch(messages)
        .await
        .map_err(|error| error.to_string())
}

fn delete_rows(sql: &SqlStorage, first: u64, last: u64) -> worker::Result<()> {
    let delete = "DELETE FROM bridge_outbox WHERE seq BETWEEN ? AND ?";
    sql.exec(delete, vec![(first as i64).into(), (last as i64).into()])?;
    Ok(())
}

fn read_state(sql: &SqlStorage, name: &str) -> Option<String> {
    let cursor = sql
        .exec(
            "SELECT value FROM bridge_state WHERE name = ?",
            vec![name.into()],
        )
        .ok()?;
    for columns in cursor.raw().flatten() {
        if let Some(SqlStorageValue::String(value)) = columns.into_iter().next() {
            return Some(value);
        }
    }
    None
}

fn write_state(sql: &SqlStorage, name: &str, value: &str) -> worker::Result<()> {
    let upsert = "INSERT OR REPLACE INTO bridge_state (name, value) VALUES (?, ?)";
    sql.exec(upsert, vec![name.into(), value.into()])?;
    Ok(())
}
