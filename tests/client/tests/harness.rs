//! The harness itself: later issues' tests rely on it starting, isolating,
//! restarting and cleaning up clusters, and on it keeping the evidence of a
//! failing test.
use std::time::Duration;

use pg_sla_client_tests::{wait_for, Cluster};
use postgres::{Client, NoTls};

fn answers(connection_string: &str) -> bool {
    Client::connect(connection_string, NoTls)
        .and_then(|mut c| c.simple_query("SELECT 1"))
        .is_ok()
}

#[test]
fn clusters_run_side_by_side_and_clean_up_after_themselves() {
    let a = Cluster::start("harness-a", &[]);
    let b = Cluster::start("harness-b", &["work_mem = '7MB'"]);
    assert_ne!(a.port(), b.port());
    assert_ne!(a.dir(), b.dir());
    let work_mem: String = b.connect().query_one("SHOW work_mem", &[]).unwrap().get(0);
    assert_eq!(work_mem, "7MB", "extra settings reach postgresql.conf");
    for cluster in [&a, &b] {
        let version: String = cluster
            .connect()
            .query_one(
                "SELECT e.extversion || ' ' || a.default_version FROM pg_extension e
                   JOIN pg_available_extensions a ON a.name = e.extname WHERE e.extname = 'pg_sla'",
                &[],
            )
            .unwrap()
            .get(0);
        let package = std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../Cargo.toml"),
        )
        .unwrap();
        let current = package
            .lines()
            .find_map(|l| l.strip_prefix("version = \""))
            .and_then(|v| v.strip_suffix('"'))
            .expect("the package version");
        assert_eq!(
            version,
            format!("{current} {current}"),
            "the current version is created"
        );
    }

    let (a_dir, a_conn) = (
        a.dir().to_path_buf(),
        a.connection_string("postgres", "postgres"),
    );
    drop(a);
    assert!(!a_dir.exists(), "the directory is removed");
    assert!(!answers(&a_conn), "the server is stopped");
    assert!(
        b.connect().simple_query("SELECT 1").is_ok(),
        "the other one runs on"
    );
}

#[test]
fn a_failing_test_keeps_its_cluster_directory_and_log() {
    let (sender, receiver) = std::sync::mpsc::channel();
    let failing = std::thread::spawn(move || {
        let cluster = Cluster::start("harness-failing", &[]);
        let _ = cluster.connect().simple_query("SELECT no_such_column");
        sender
            .send((
                cluster.dir().to_path_buf(),
                cluster.connection_string("postgres", "postgres"),
            ))
            .unwrap();
        panic!("deliberate failure to exercise the harness");
    });
    assert!(failing.join().is_err());
    let (dir, conn) = receiver.recv().unwrap();
    let log = std::fs::read_to_string(dir.join("server.log")).expect("the log is kept");
    assert!(
        log.contains("no_such_column"),
        "the log shows the failing statement:\n{log}"
    );
    assert!(!answers(&conn), "the server is stopped even so");
    let status = std::process::Command::new(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/cluster.sh"),
    )
    .arg("stop")
    .arg(&dir)
    .status()
    .unwrap();
    assert!(status.success() && !dir.exists());
}

#[test]
fn restart_keeps_the_data_and_the_port() {
    let cluster = Cluster::start("harness-restart", &[]);
    cluster
        .connect()
        .batch_execute("CREATE TABLE kept (x int); INSERT INTO kept VALUES (42)")
        .unwrap();
    let before = cluster.postmaster_pid();
    cluster.restart();
    let after = wait_for("a new postmaster", Duration::from_secs(30), || {
        Some(cluster.postmaster_pid()).filter(|&pid| pid != before)
    });
    assert_ne!(before, after);
    let x: i32 = cluster
        .connect()
        .query_one("SELECT x FROM kept", &[])
        .unwrap()
        .get(0);
    assert_eq!(x, 42);
}
