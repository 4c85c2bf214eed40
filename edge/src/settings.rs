//! Broker settings from the Worker's environment.

use broker::Config;
use worker::Env;

/// Name of the `[vars]` entry that contains the broker settings, a table such as
/// `MQTT = { max_packet_size = 1048576 }` in `wrangler.toml`.
pub const SETTINGS_VAR: &str = "MQTT";

/// Builds the broker configuration: the defaults, overridden by each entry of
/// the `MQTT` variable. An unknown name or a value that does not parse is an
/// error that names it, so that a typo in `wrangler.toml` is not ignored.
pub fn load(env: &Env) -> Result<Config, String> {
    let mut config = Config::default();
    let Ok(entries) = env.object_var::<serde_json::Map<String, serde_json::Value>>(SETTINGS_VAR)
    else {
        return Ok(config);
    };
    for (name, value) in entries {
        let text = match value {
            serde_json::Value::String(text) => text,
            other => other.to_string(),
        };
        config
            .set(&name, &text)
            .map_err(|error| format!("invalid setting {SETTINGS_VAR}.{name} = {text}: {error}"))?;
    }
    Ok(config)
}
