//! A panic anywhere ends the process, so that a supervisor (systemd, ECS, Kubernetes)
//! restarts it. Without this, a panic ends only the task or thread it happened in: the
//! embedded broker's storage task, a stage's loop or a librdkafka callback could die while
//! the process lives on, answering `/healthz` and refusing or dropping everything else.

/// The exit code after a panic: the one Rust gives a panicking `main`.
pub const EXIT_CODE: i32 = 101;

/// Installs the hook: the panic is reported as usual (message, location, and a backtrace
/// when `RUST_BACKTRACE` asks for one), then the process exits with [`EXIT_CODE`].
pub fn exit_on_panic() {
    let report = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        report(info);
        eprintln!(
            "exposures: a panic is a bug; exiting with code {EXIT_CODE} so a supervisor restarts the process"
        );
        std::process::exit(EXIT_CODE);
    }));
}

/// The environment variable that makes [`inject`] panic, for tests of this module's
/// promise on a real process: its value names the place (`stage`, `broker`).
pub const INJECT_VARIABLE: &str = "EXPOSURES_INJECT_PANIC";

/// Panics, in a task of its own on the current runtime, when [`INJECT_VARIABLE`] names
/// `place`: how the tests prove that a panic off the main task ends the process.
pub fn inject(place: &'static str) {
    if std::env::var(INJECT_VARIABLE).is_ok_and(|requested| requested == place) {
        tokio::spawn(async move {
            panic!("{INJECT_VARIABLE}={place}: a panic injected by request");
        });
    }
}
