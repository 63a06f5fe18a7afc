//! Test harness: a scratch PostgreSQL cluster on a private port and socket
//! directory, started by `scripts/cluster.sh` (as the `postgres` OS user when
//! run as root), with `pg_sla` created in its `postgres` database.
//!
//! The cluster stops and its directory is removed when the value is dropped;
//! when the test is panicking the directory is kept and the server log's
//! tail is printed, so a failure shows what the server said.
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub use postgres::{Client, Error, NoTls};

pub struct Cluster {
    dir: PathBuf,
    host: String,
    port: u16,
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn cluster_script() -> PathBuf {
    repo_root().join("scripts/cluster.sh")
}

/// Runs `scripts/cluster.sh COMMAND DIR ARGS...`; panics with its output
/// (and `context`, such as a log tail) when it fails.
fn cluster_script_ok(
    command: &str,
    dir: &Path,
    args: &[&str],
    context: &str,
) -> std::process::Output {
    cluster_script_with_env(command, dir, args, &[], context)
}

/// The same, with extra environment variables for the script (and so for
/// the server it starts).
fn cluster_script_with_env(
    command: &str,
    dir: &Path,
    args: &[&str],
    env: &[(&str, &str)],
    context: &str,
) -> std::process::Output {
    let output = Command::new(cluster_script())
        .arg(command)
        .arg(dir)
        .args(args)
        .envs(env.iter().copied())
        .output()
        .expect("run scripts/cluster.sh");
    assert!(
        output.status.success(),
        "cluster.sh {command} failed: {}{}\n{context}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

static COUNTER: AtomicUsize = AtomicUsize::new(0);

impl Cluster {
    /// Starts a fresh cluster with the given extra postgresql.conf lines and
    /// creates the extension.
    pub fn start(name: &str, settings: &[&str]) -> Cluster {
        Cluster::start_with_env(name, settings, &[])
    }

    /// The same, with extra environment variables for the server process
    /// (such as `RUST_BACKTRACE`).
    pub fn start_with_env(name: &str, settings: &[&str], env: &[(&str, &str)]) -> Cluster {
        let base = std::env::var_os("PG_SLA_TEST_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| repo_root().join("target/client-tests"));
        std::fs::create_dir_all(&base).expect("create test directory");
        let dir = base.join(format!(
            "{name}-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        let output = cluster_script_with_env("start", &dir, settings, env, "");
        let stdout = String::from_utf8_lossy(&output.stdout);
        let field = |key: &str| {
            stdout
                .split_whitespace()
                .find_map(|kv| kv.strip_prefix(key))
                .unwrap_or_else(|| panic!("no {key} in cluster.sh output: {stdout}"))
                .to_string()
        };
        let cluster = Cluster {
            host: field("PGHOST="),
            port: field("PGPORT=").parse().expect("port"),
            dir,
        };
        cluster
            .connect()
            .batch_execute("CREATE EXTENSION pg_sla")
            .expect(
                "CREATE EXTENSION pg_sla (is the extension installed? run `cargo pgrx install`)",
            );
        cluster
    }

    pub fn connection_string(&self, database: &str, user: &str) -> String {
        format!(
            "host={} port={} user={user} dbname={database} application_name=pg_sla_tests",
            self.host, self.port
        )
    }

    /// A new superuser session on the `postgres` database.
    pub fn connect(&self) -> Client {
        self.connect_as("postgres")
    }

    /// A new superuser session on the `postgres` database that keeps the
    /// messages of the NOTICEs and WARNINGs it receives, in order.
    pub fn connect_keeping_notices(&self) -> (Client, Arc<Mutex<Vec<String>>>) {
        let notices = Arc::new(Mutex::new(Vec::new()));
        let seen = Arc::clone(&notices);
        let mut config: postgres::Config = self
            .connection_string("postgres", "postgres")
            .parse()
            .expect("a connection string");
        config.notice_callback(move |notice| {
            seen.lock()
                .expect("notices")
                .push(notice.message().to_owned())
        });
        let client = config
            .connect(NoTls)
            .unwrap_or_else(|e| panic!("connect: {e}\n{}", self.log_tail(40)));
        (client, notices)
    }

    pub fn connect_as(&self, user: &str) -> Client {
        Client::connect(&self.connection_string("postgres", user), NoTls)
            .unwrap_or_else(|e| panic!("connect as {user}: {e}\n{}", self.log_tail(40)))
    }

    /// Dumps a database with `pg_dump --format=custom` (connecting with
    /// `source`, a connection string, and `options`) into a file named
    /// `archive` in the cluster's directory, creates database `target` and
    /// restores the dump there with `pg_restore --exit-on-error` as the
    /// superuser; panics with their output when either fails.
    pub fn dump_and_restore(&self, source: &str, options: &[&str], archive: &str, target: &str) {
        let archive = self.dir.join(archive);
        let archive = archive.to_str().expect("a UTF-8 path");
        let mut dump = vec!["--format=custom", "--file", archive];
        dump.extend_from_slice(options);
        dump.push(source);
        run_program("pg_dump", &dump);
        self.connect()
            .batch_execute(&format!("CREATE DATABASE {target}"))
            .unwrap_or_else(|e| panic!("create database {target}: {e}"));
        run_program(
            "pg_restore",
            &[
                "--exit-on-error",
                "--dbname",
                &self.connection_string(target, "postgres"),
                archive,
            ],
        );
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Restarts the server (fast shutdown) on the same port and directory.
    pub fn restart(&self) {
        cluster_script_ok("restart", &self.dir, &[], &self.log_tail(40));
    }

    /// The postmaster's process id.
    pub fn postmaster_pid(&self) -> u32 {
        let pid_file = std::fs::read_to_string(self.dir.join("data/postmaster.pid"))
            .expect("read postmaster.pid");
        pid_file
            .lines()
            .next()
            .and_then(|line| line.trim().parse().ok())
            .expect("a pid on the first line of postmaster.pid")
    }

    /// The whole server log (empty if there is none yet).
    pub fn server_log(&self) -> String {
        std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default()
    }

    pub fn log_tail(&self, lines: usize) -> String {
        let log = self.server_log();
        let all: Vec<&str> = log.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let failing = std::thread::panicking();
        if failing {
            eprintln!(
                "--- server log of {} (kept) ---\n{}\n---",
                self.dir.display(),
                self.log_tail(60)
            );
        }
        let mut stop = Command::new(cluster_script());
        stop.arg("stop").arg(&self.dir);
        if failing {
            stop.arg("--keep");
        }
        let _ = stop.status();
    }
}

/// Polls `check` every 50 ms until it returns `Some`, for at most `timeout`;
/// panics naming `what` when time runs out.
pub fn wait_for<T>(what: &str, timeout: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Runs a program to its end; panics with its output when it fails.
pub fn run_program(program: &str, args: &[&str]) {
    let output = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("run {program}: {e}"));
    assert!(
        output.status.success(),
        "{program} {args:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Runs an application's statements as if at `time` (a timestamptz):
/// pg_sla reads the time of its writes from `pg_sla.event_time`.
pub fn execute_at(db: &mut Client, time: &str, statements: &str) {
    db.batch_execute(&format!(
        "SET pg_sla.event_time = '{time}'; {statements}; RESET pg_sla.event_time;"
    ))
    .unwrap_or_else(|e| panic!("{statements}: {e}"));
}

/// The SQLSTATE and message of a failed statement.
pub fn sql_error(result: Result<impl std::fmt::Debug, Error>) -> (String, String) {
    let error = result.expect_err("statement should have failed");
    let db = error
        .as_db_error()
        .unwrap_or_else(|| panic!("not a server error: {error}"));
    (db.code().code().to_string(), db.message().to_string())
}

/// The first column of a one-row query as text ("NULL" for SQL NULL);
/// panics naming the query when it fails.
pub fn query_text(db: &mut Client, query: &str) -> String {
    db.query_one(query, &[])
        .unwrap_or_else(|e| panic!("{query}: {e}"))
        .get::<_, Option<String>>(0)
        .unwrap_or_else(|| "NULL".into())
}

/// The first column of a one-row query, cast to bigint.
pub fn query_int(db: &mut Client, query: &str) -> i64 {
    db.query_one(&format!("SELECT ({query})::bigint"), &[])
        .unwrap_or_else(|e| panic!("{query}: {e}"))
        .get(0)
}

/// Every row of a query, its columns as text ("NULL" for SQL NULL) joined by
/// " | "; panics naming the query when it fails.
pub fn query_rows(db: &mut Client, query: &str) -> Vec<String> {
    db.simple_query(query)
        .unwrap_or_else(|e| panic!("{query}: {e}"))
        .into_iter()
        .filter_map(|message| match message {
            postgres::SimpleQueryMessage::Row(row) => Some(
                (0..row.len())
                    .map(|i| row.get(i).unwrap_or("NULL"))
                    .collect::<Vec<_>>()
                    .join(" | "),
            ),
            _ => None,
        })
        .collect()
}
