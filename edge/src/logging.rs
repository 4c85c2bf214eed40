//! Structured logs: one JSON object per line on the Workers console, with
//! `level`, `message` and the ids involved (`namespace`, `client_id`).
//! Lifecycle events are at info; payloads and tokens are never logged.

use serde_json::{json, Value};
use worker::{console_debug, console_error, console_log};

/// Bridges the `log` records of the broker core to JSON lines.
struct ConsoleLogger;

static LOGGER: ConsoleLogger = ConsoleLogger;

impl log::Log for ConsoleLogger {
    fn enabled(&self, metadata: &log::Metadata) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &log::Record) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let mut line = json!({
            "level": record.level().as_str().to_lowercase(),
            "target": record.target(),
            "message": record.args().to_string(),
        });
        if let Value::Object(fields) = &mut line {
            let _ = record.key_values().visit(&mut FieldCollector(fields));
        }
        match record.level() {
            log::Level::Error => console_error!("{line}"),
            log::Level::Debug | log::Level::Trace => console_debug!("{line}"),
            _ => console_log!("{line}"),
        }
    }

    fn flush(&self) {}
}

/// Copies the key-value pairs of a record into the JSON object.
struct FieldCollector<'a>(&'a mut serde_json::Map<String, Value>);

impl<'kvs> log::kv::VisitSource<'kvs> for FieldCollector<'_> {
    fn visit_pair(
        &mut self,
        key: log::kv::Key<'kvs>,
        value: log::kv::Value<'kvs>,
    ) -> Result<(), log::kv::Error> {
        let value = match (value.to_bool(), value.to_u64()) {
            (Some(flag), _) => Value::Bool(flag),
            (_, Some(number)) => Value::from(number),
            _ => Value::String(value.to_string()),
        };
        self.0.insert(key.as_str().to_string(), value);
        Ok(())
    }
}

/// Installs the logger at info level; later calls change nothing.
pub fn install() {
    if log::set_logger(&LOGGER).is_ok() {
        log::set_max_level(log::LevelFilter::Info);
    }
}

/// Logs `fields` at info, adding `"level": "info"`.
pub fn info(fields: &Value) {
    let mut line = fields.clone();
    if let Value::Object(map) = &mut line {
        map.insert("level".into(), "info".into());
    }
    console_log!("{line}");
}

/// Logs `message` at error, with the namespace when it is known.
pub fn error(namespace: Option<&str>, message: &str) {
    let line = message_line("error", namespace, message);
    console_error!("{line}");
}

/// Logs `message` at info, with the namespace when it is known.
pub fn info_message(namespace: Option<&str>, message: &str) {
    let line = message_line("info", namespace, message);
    console_log!("{line}");
}

/// Logs `message` at debug, with the namespace when it is known.
pub fn debug(namespace: Option<&str>, message: &str) {
    let line = message_line("debug", namespace, message);
    console_debug!("{line}");
}

fn message_line(level: &str, namespace: Option<&str>, message: &str) -> Value {
    let mut line = json!({ "level": level, "message": message });
    if let (Value::Object(fields), Some(namespace)) = (&mut line, namespace) {
        fields.insert("namespace".into(), namespace.into());
    }
    line
}
