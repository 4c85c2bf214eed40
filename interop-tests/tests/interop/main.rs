//! Real MQTT clients against the Worker under `wrangler dev`.
//!
//! One server is started for the whole run (starting workerd takes seconds),
//! every test uses its own client ids and topics, and the server is stopped
//! by its process id when the run ends. Tests that restart the server start
//! their own.

mod external;
mod mqtt;
mod raw;
mod restart;

use std::sync::Arc;

use interop_tests::Wrangler;
use libtest_mimic::{Arguments, Failed, Trial};

/// A test: receives the shared server and returns an error to fail.
type TestFn = fn(&Wrangler) -> Result<(), Failed>;

fn main() {
    let args = Arguments::from_args();
    let persist = tempfile::tempdir().expect("creating a temporary folder failed");

    let mut tests: Vec<(&'static str, TestFn)> = Vec::new();
    tests.extend(mqtt::TESTS);
    tests.extend(raw::TESTS);
    tests.extend(external::TESTS);

    let server = Arc::new(Wrangler::start(persist.path(), &[]));
    let mut trials: Vec<Trial> = tests
        .into_iter()
        .map(|(name, test)| {
            let server = Arc::clone(&server);
            Trial::test(name, move || test(&server))
        })
        .collect();
    trials.extend(restart::TESTS.iter().map(|&(name, test)| Trial::test(name, test)));

    let conclusion = libtest_mimic::run(&args, trials);
    match Arc::try_unwrap(server) {
        Ok(mut server) => server.stop(),
        Err(_) => eprintln!("the shared server is still referenced; it stops on exit"),
    }
    conclusion.exit();
}
