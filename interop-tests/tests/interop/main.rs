//! Real MQTT clients against the Worker under `wrangler dev`.
//!
//! One server is started for the whole run (starting workerd takes seconds),
//! every test uses its own client ids and topics, and the server is stopped
//! by its process id when the run ends. Tests that restart the server start
//! their own. The `side_by_side*` tests also run each scenario against a
//! mosquitto of their own and compare.

mod archive;
mod auth;
mod bridge;
mod external;
mod hibernation;
mod http;
mod http_sessions;
mod limits;
mod mqtt;
mod raw;
mod reason_strings;
mod restart;
mod side_by_side;
mod side_by_side_errors;
mod side_by_side_rumqttc;
mod side_by_side_session;
mod side_by_side_v5;
mod wire;

use std::sync::Arc;

use interop_tests::Wrangler;
use libtest_mimic::{Arguments, Failed, Trial};

/// A test: receives the shared server and returns an error to fail.
type TestFn = fn(&Wrangler) -> Result<(), Failed>;

/// A test that starts its own server: it needs other settings, or kills
/// the runtime.
type OwnServerTestFn = fn() -> Result<(), Failed>;

fn main() {
    let args = Arguments::from_args();
    let persist = tempfile::tempdir().expect("creating a temporary folder failed");

    let mut tests: Vec<(&'static str, TestFn)> = Vec::new();
    tests.extend(mqtt::TESTS);
    tests.extend(http::TESTS);
    tests.extend(raw::TESTS);
    tests.extend(reason_strings::TESTS);
    tests.extend(external::TESTS);
    tests.extend(limits::TESTS);
    tests.extend(side_by_side::TESTS);
    tests.extend(side_by_side_errors::TESTS);
    tests.extend(side_by_side_rumqttc::TESTS);
    tests.extend(side_by_side_session::TESTS);
    tests.extend(side_by_side_v5::TESTS);

    let server = Arc::new(Wrangler::start(persist.path(), &[]));
    let mut trials: Vec<Trial> = tests
        .into_iter()
        .map(|(name, test)| {
            let server = Arc::clone(&server);
            Trial::test(name, move || test(&server))
        })
        .collect();
    trials.extend(
        restart::TESTS
            .iter()
            .map(|&(name, test)| Trial::test(name, test)),
    );
    trials.extend(
        http::OWN_SERVER_TESTS
            .iter()
            .map(|&(name, test)| Trial::test(name, test)),
    );
    trials.extend(
        http_sessions::TESTS
            .iter()
            .map(|&(name, test)| Trial::test(name, test)),
    );
    trials.extend(
        archive::TESTS
            .iter()
            .map(|&(name, test)| Trial::test(name, test)),
    );
    trials.extend(
        hibernation::TESTS
            .iter()
            .map(|&(name, test)| Trial::test(name, test)),
    );
    trials.extend(
        auth::TESTS
            .iter()
            .map(|&(name, test)| Trial::test(name, test)),
    );
    trials.extend(
        limits::OWN_SERVER_TESTS
            .iter()
            .map(|&(name, test)| Trial::test(name, test)),
    );

    trials.extend(
        bridge::TESTS
            .iter()
            .map(|&(name, test)| Trial::test(name, test)),
    );

    let conclusion = libtest_mimic::run(&args, trials);
    bridge::stop_server();
    match Arc::try_unwrap(server) {
        Ok(mut server) => server.stop(),
        Err(_) => eprintln!("the shared server is still referenced; it stops on exit"),
    }
    conclusion.exit();
}

/// Returns the `open_sockets` field of every `broker started` log line of
/// `namespace` in `log`, in order. The Durable Object logs one such JSON
/// line each time it builds its broker.
pub(crate) fn broker_starts(log: &str, namespace: &str) -> Vec<u64> {
    log.lines()
        .filter_map(|line| {
            let start = line.find('{')?;
            let end = line.rfind('}')?;
            serde_json::from_str::<serde_json::Value>(line.get(start..=end)?).ok()
        })
        .filter(|fields| fields["message"] == "broker started" && fields["namespace"] == namespace)
        .filter_map(|fields| fields["open_sockets"].as_u64())
        .collect()
}
