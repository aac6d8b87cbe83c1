//! The `lmq` binary: `serve` until SIGTERM, and the admin verbs against it.

// Test code: a failed unwrap is a failed test.
#![allow(
    clippy::disallowed_methods,
    reason = "tests measure the real time brokers take"
)]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::cast_possible_truncation
)]

use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const LMQ: &str = env!("CARGO_BIN_EXE_lmq");

struct Server {
    child: Child,
    address: String,
}

impl Server {
    /// Starts `lmq serve` on a port the kernel picks and reads the address from its ready
    /// line (choosing a free port first and passing it races with other processes).
    fn start(data_dir: &std::path::Path) -> Self {
        let mut child = Command::new(LMQ)
            .args(["serve", "--data-dir"])
            .arg(data_dir)
            .args(["--listen", "127.0.0.1:0", "--admin-listen", "off"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let (sender, receiver) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in
                std::io::BufRead::lines(std::io::BufReader::new(stderr)).map_while(Result::ok)
            {
                if line.contains("lmq ready") {
                    let _ = sender.send(line);
                }
            }
        });
        let ready = receiver
            .recv_timeout(Duration::from_secs(20))
            .expect("lmq serve printed its ready line");
        let address = ready
            .split_whitespace()
            .find_map(|field| field.strip_prefix("listen="))
            .expect("the ready line names the listen address")
            .to_string();
        Server { child, address }
    }

    fn lmq(&self, args: &[&str]) -> Output {
        Command::new(LMQ)
            .args(args)
            .args(["-b", &self.address])
            .output()
            .unwrap()
    }

    fn ok(&self, args: &[&str]) -> String {
        let output = self.lmq(args);
        assert!(
            output.status.success(),
            "lmq {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).unwrap()
    }

    /// SIGTERM, then the exit status.
    fn terminate(mut self) -> std::process::ExitStatus {
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(i32::try_from(self.child.id()).unwrap()),
            nix::sys::signal::Signal::SIGTERM,
        )
        .unwrap();
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "no exit after SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn admin_verbs_work_against_a_running_broker_and_sigterm_stops_it_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    assert!(
        server
            .ok(&[
                "topics",
                "create",
                "cli",
                "--partitions",
                "2",
                "--config",
                "retention.ms=60000"
            ])
            .contains("Created")
    );
    let listed: serde_json::Value =
        serde_json::from_str(&server.ok(&["topics", "list", "-o", "json"])).unwrap();
    assert_eq!(listed[0]["name"], "cli");
    assert_eq!(listed[0]["partitions"], 2);
    let produced = server.ok(&["produce", "cli", "--partition", "1", "one", "two", "three"]);
    assert_eq!(
        produced.lines().collect::<Vec<_>>(),
        ["cli-1@0", "cli-1@1", "cli-1@2"]
    );
    let consumed = server.ok(&[
        "consume",
        "cli",
        "--partition",
        "1",
        "--from",
        "1",
        "--max",
        "2",
    ]);
    assert_eq!(consumed, "1\ttwo\n2\tthree\n");
    server.ok(&[
        "topics",
        "alter",
        "cli",
        "--partitions",
        "3",
        "--delete-config",
        "retention.ms",
    ]);
    let described: serde_json::Value =
        serde_json::from_str(&server.ok(&["topics", "describe", "cli", "-o", "json"])).unwrap();
    assert_eq!(described["partitions"].as_array().unwrap().len(), 3);
    assert_eq!(described["partitions"][1]["log_end_offset"], 3);
    server.ok(&[
        "groups",
        "reset-offsets",
        "readers",
        "--topic",
        "cli",
        "--to",
        "1",
    ]);
    let group: serde_json::Value =
        serde_json::from_str(&server.ok(&["groups", "describe", "readers", "-o", "json"])).unwrap();
    let partition_one = group["offsets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|offset| offset["partition"] == 1)
        .unwrap();
    assert_eq!(
        (
            partition_one["committed"].as_i64(),
            partition_one["lag"].as_i64()
        ),
        (Some(1), Some(2))
    );
    let status: serde_json::Value =
        serde_json::from_str(&server.ok(&["cluster", "status", "-o", "json"])).unwrap();
    assert_eq!(status["controller"], 0);
    let failed = server.lmq(&["topics", "create", "cli"]);
    assert!(!failed.status.success());
    assert!(String::from_utf8_lossy(&failed.stderr).contains("TOPIC_ALREADY_EXISTS"));

    assert!(server.terminate().success(), "SIGTERM is a clean shutdown");
    // The logs were closed cleanly: the data is all there after a restart.
    let server = Server::start(dir.path());
    assert_eq!(
        server
            .ok(&["consume", "cli", "--partition", "1", "--max", "3"])
            .lines()
            .count(),
        3
    );
}

#[test]
fn every_command_explains_itself_with_an_example() {
    let commands: [&[&str]; 14] = [
        &["--help"],
        &["serve", "--help"],
        &["topics", "--help"],
        &["topics", "list", "--help"],
        &["topics", "describe", "--help"],
        &["topics", "create", "--help"],
        &["topics", "delete", "--help"],
        &["topics", "alter", "--help"],
        &["groups", "list", "--help"],
        &["groups", "describe", "--help"],
        &["groups", "reset-offsets", "--help"],
        &["cluster", "status", "--help"],
        &["produce", "--help"],
        &["consume", "--help"],
    ];
    for args in commands {
        let output = Command::new(LMQ).args(args).output().unwrap();
        let help = String::from_utf8_lossy(&output.stdout);
        assert!(output.status.success(), "{args:?}");
        assert!(
            help.contains("Example") || args == ["--help"],
            "{args:?} has no example:\n{help}"
        );
    }
}
