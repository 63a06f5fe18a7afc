//! The documentation cannot drift: every ```sql block of the user guide runs
//! here in order, and a statement ending in `-- => value` must return that
//! value (first column of the first row, as text, with TimeZone UTC), or,
//! with `-- => ERROR 42501`, fail with that SQLSTATE. The demo script's SQL
//! runs through psql as the demo runs it.
use std::path::Path;
use std::process::Command;

use pg_sla_client_tests::Cluster;
use postgres::SimpleQueryMessage;

fn repo_file(path: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(path)
}

/// (statement, expected value) pairs from the ```sql blocks of a Markdown file.
fn sql_statements(markdown: &str) -> Vec<(String, Option<String>)> {
    let mut statements = Vec::new();
    let mut in_block = false;
    let mut current = String::new();
    for line in markdown.lines() {
        if line.trim_start().starts_with("```") {
            in_block = !in_block && line.trim() == "```sql";
            continue;
        }
        if !in_block {
            continue;
        }
        let (code, expected) = match line.split_once("-- =>") {
            Some((code, expected)) => (code, Some(expected.trim().to_string())),
            None => (line, None),
        };
        // "-- => value" on a line of its own checks the statement above it.
        if code.trim().is_empty() && expected.is_some() && current.trim().is_empty() {
            let (statement, slot): &mut (String, Option<String>) = statements
                .last_mut()
                .unwrap_or_else(|| panic!("a result with no statement above it: {line}"));
            assert!(slot.is_none(), "two results for one statement: {statement}");
            *slot = expected;
            continue;
        }
        current.push_str(code);
        current.push('\n');
        if code.trim_end().ends_with(';') {
            statements.push((std::mem::take(&mut current), expected));
        }
    }
    assert!(
        current.trim().is_empty(),
        "unterminated statement: {current}"
    );
    statements
}

#[test]
fn user_guide_examples_run_and_return_what_the_guide_says() {
    for guide in [
        "docs/calendars.md",
        "docs/sla.md",
        "docs/reporting.md",
        "docs/privileges.md",
        "docs/upgrades.md",
    ] {
        run_guide(guide, &[]);
    }
    run_guide("docs/worker.md", &["shared_preload_libraries = 'pg_sla'"]);
}

/// Runs one guide's examples on a fresh cluster with these settings, in order.
fn run_guide(path: &str, settings: &[&str]) {
    let cluster = Cluster::start("docs", settings);
    let mut db = cluster.connect();
    db.batch_execute("SET TimeZone = 'UTC'").unwrap();
    let guide = std::fs::read_to_string(repo_file(path)).unwrap();
    let statements = sql_statements(&guide);
    assert!(statements.len() >= 2, "{path} has examples");
    let mut checked = 0;
    for (statement, expected) in statements {
        if let Some(code) = expected.as_deref().and_then(|e| e.strip_prefix("ERROR ")) {
            let error = db
                .simple_query(&statement)
                .expect_err(&format!("{path}: example should fail: {statement}"));
            let state = error.as_db_error().map(|e| e.code().code().to_string());
            assert_eq!(state.as_deref(), Some(code), "{path}: {statement}\n{error}");
            checked += 1;
            continue;
        }
        let messages = db
            .simple_query(&statement)
            .unwrap_or_else(|e| panic!("{path}: example failed: {statement}\n{e}"));
        if let Some(expected) = expected {
            let first = messages.iter().find_map(|m| match m {
                SimpleQueryMessage::Row(row) => Some(row.get(0).unwrap_or("NULL").to_string()),
                _ => None,
            });
            assert_eq!(
                first.as_deref(),
                Some(expected.as_str()),
                "{path}: {statement}"
            );
            checked += 1;
        }
    }
    assert!(checked >= 2, "{path} states results to check");
}

#[test]
fn demo_script_sql_runs_and_prints_the_seed_deadline() {
    let cluster = Cluster::start("demo", &[]);
    let conninfo = cluster.connection_string("postgres", "postgres");
    let output = Command::new("psql")
        .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", &conninfo, "-f"])
        .arg(repo_file("docs/demo.sql"))
        .output()
        .expect("run psql");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "demo failed:\n{stdout}\n{stderr}");
    assert!(
        stdout.contains("2026-11-23 09:15:00"),
        "seed deadline printed:\n{stdout}"
    );
    assert!(
        stdout.contains("2027-04-06 11:00:00"),
        "DST-crossing deadline printed:\n{stdout}"
    );
    // The demo shows one refused edit, on purpose.
    assert!(
        stderr.contains("windows 09:00-12:00 and 11:00-18:00 overlap"),
        "{stderr}"
    );
}
