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
        assert!(
            expected.is_none() || code.trim_end().ends_with(';'),
            "a result must follow a complete statement: {line}"
        );
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
        "docs/existing-help-desks.md",
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

/// One table psql printed (aligned format): its column names and rows.
struct PsqlTable {
    columns: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl PsqlTable {
    fn column(&self, name: &str) -> usize {
        self.columns
            .iter()
            .position(|c| c == name)
            .unwrap_or_else(|| panic!("no column {name} in {:?}", self.columns))
    }

    /// The rows whose `column` is `value`.
    fn rows_where(&self, column: &str, value: &str) -> Vec<&Vec<String>> {
        let i = self.column(column);
        self.rows.iter().filter(|r| r[i] == value).collect()
    }

    fn int(&self, row: &[String], column: &str) -> i64 {
        let cell = &row[self.column(column)];
        cell.parse()
            .unwrap_or_else(|_| panic!("{column} = {cell:?} is not a number"))
    }
}

/// The tables psql printed in `text`, in order: a header line, a `---+---`
/// line, then rows up to the first line without a `|`.
fn psql_tables(text: &str) -> Vec<PsqlTable> {
    let lines: Vec<&str> = text.lines().collect();
    let cells =
        |line: &str| -> Vec<String> { line.split('|').map(|c| c.trim().to_string()).collect() };
    let mut tables = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let is_rule = line.starts_with('-') && line.chars().all(|c| c == '-' || c == '+');
        if !is_rule || i == 0 {
            continue;
        }
        let columns = cells(lines[i - 1]);
        let rows = lines[i + 1..]
            .iter()
            .take_while(|l| l.contains('|') || (columns.len() == 1 && !l.trim().is_empty()))
            .map(|l| cells(l))
            .collect();
        tables.push(PsqlTable { columns, rows });
    }
    tables
}

/// The part of the demo's output under the heading `== {number}.`, up to the
/// next heading.
fn demo_section(stdout: &str, number: u32) -> &str {
    let heading = format!("== {number}. ");
    let start = stdout
        .find(&heading)
        .unwrap_or_else(|| panic!("no section {heading} in the demo's output:\n{stdout}"));
    let rest = &stdout[start + heading.len()..];
    &rest[..rest.find("\n== ").unwrap_or(rest.len())]
}

#[test]
fn demo_script_sql_replays_a_help_desk_and_the_worker_breaches_live_tickets() {
    // As scripts/demo.sh runs it: the worker preloaded, psql on the postgres
    // database.
    let cluster = Cluster::start("demo", &["shared_preload_libraries = 'pg_sla'"]);
    let conninfo = cluster.connection_string("postgres", "postgres");
    let started = std::time::Instant::now();
    let output = Command::new("psql")
        .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", &conninfo, "-f"])
        .arg(repo_file("docs/demo.sql"))
        .output()
        .expect("run psql");
    let took = started.elapsed();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "demo failed:\n{stdout}\n{stderr}");
    assert!(
        stderr.trim().is_empty(),
        "the demo wrote to stderr:\n{stderr}"
    );
    eprintln!("demo SQL took {took:?}");

    // 1. Calendars: Paris closed on the weekend and on the holiday of the
    // demo week, New York's shortened day (08:00-13:00).
    let days = &psql_tables(demo_section(&stdout, 1))[0];
    assert_eq!(days.rows.len(), 8, "eight days shown:\n{stdout}");
    assert!(
        days.rows_where("Paris", "00:00:00").len() >= 3,
        "weekend and holiday closed in Paris:\n{stdout}"
    );
    assert_eq!(
        days.rows_where("New York", "05:00:00").len(),
        1,
        "New York's shortened day:\n{stdout}"
    );

    // 3. Seven policies; the table is tracked.
    let policies = &psql_tables(demo_section(&stdout, 3))[0];
    assert_eq!(policies.rows.len(), 7, "{stdout}");

    // 4. The replayed week: 3,000 tickets, every SLA outcome present.
    let replay = psql_tables(demo_section(&stdout, 4));
    let totals = &replay[0];
    assert_eq!(totals.int(&totals.rows[0], "tickets"), 3000, "{stdout}");
    assert!(
        totals.int(&totals.rows[0], "notifications") > 100,
        "{stdout}"
    );
    for status in ["achieved", "missed", "breached", "running", "paused"] {
        assert_eq!(
            replay[1].rows_where("sla_status", status).len(),
            1,
            "tickets {status} after the replay:\n{stdout}"
        );
    }

    // 5. Live: the worker breached the two unanswered VIP chats, not the
    // answered one nor the one waiting on the customer; LISTEN showed it.
    let live = demo_section(&stdout, 5);
    let live_tables = psql_tables(live);
    let vip = &live_tables[0];
    assert_eq!(vip.rows.len(), 4, "{live}");
    let breached = vip.rows_where("sla_status", "breached");
    assert_eq!(breached.len(), 2, "two VIP chats breached:\n{live}");
    for row in &breached {
        assert_eq!(row[vip.column("sla_policy")], "vip_chat", "{live}");
        assert_ne!(row[vip.column("breached at (UTC)")], "-", "{live}");
    }
    assert_eq!(
        vip.rows_where("subject", "Checkout page is down")[0][vip.column("sla_status")],
        "running",
        "the answered chat is in time:\n{live}"
    );
    assert_eq!(
        vip.rows_where("subject", "Question about the contract")[0][vip.column("sla_status")],
        "paused",
        "{live}"
    );
    let pushed = live
        .lines()
        .filter(|l| {
            l.starts_with("Asynchronous notification \"pg_sla\"")
                && l.contains("\"kind\" : \"breached\"")
                && l.contains("\"policy\" : \"vip_chat\"")
        })
        .count();
    assert_eq!(
        pushed, 2,
        "the breaches pushed to the listening psql:\n{live}"
    );
    let worker = &live_tables[1];
    assert_eq!(worker.rows[0][worker.column("running")], "t", "{live}");
    assert!(worker.int(&worker.rows[0], "transitions") >= 4, "{live}");

    // 6. The report: every policy, with clocks judged.
    let report_tables = psql_tables(demo_section(&stdout, 6));
    let report = &report_tables[0];
    for policy in [
        "vip_chat",
        "urgent",
        "live_high",
        "live",
        "email_high",
        "email_low",
        "email",
    ] {
        let rows = report.rows_where("policy", policy);
        assert!(!rows.is_empty(), "report row for {policy}:\n{stdout}");
        let started: i64 = rows.iter().map(|r| report.int(r, "started")).sum();
        assert!(started > 0, "{policy} started clocks:\n{stdout}");
    }
    let email_first = report
        .rows
        .iter()
        .find(|r| r[0] == "email" && r[1] == "first_response")
        .expect("email first_response row");
    assert!(report.int(email_first, "achieved") > 0, "{stdout}");
    assert!(report.int(email_first, "missed") > 0, "{stdout}");
    assert_ne!(email_first[report.column("met %")], "-", "{stdout}");
    let vip_first = report.rows_where("policy", "vip_chat");
    let vip_first = vip_first
        .iter()
        .find(|r| r[1] == "first_response")
        .expect("vip_chat first_response row");
    assert_eq!(report.int(vip_first, "breached now"), 2, "{stdout}");
    let teams = &report_tables[1];
    assert_eq!(teams.rows.len(), 3, "one row per team:\n{stdout}");

    // 7. Breached tickets: the most recent are the live VIP chats.
    let breaches = psql_tables(demo_section(&stdout, 7));
    assert!(
        !breaches[0]
            .rows_where("metric", "first_response")
            .is_empty(),
        "{stdout}"
    );
    let recent = &breaches[1];
    assert_eq!(recent.rows.len(), 10, "{stdout}");
    assert_eq!(recent.rows_where("policy", "vip_chat").len(), 2, "{stdout}");
    assert!(
        recent.rows[..2]
            .iter()
            .all(|r| r[recent.column("policy")] == "vip_chat"),
        "{stdout}"
    );

    // 8. One ticket's timeline.
    let story = psql_tables(demo_section(&stdout, 8));
    let timeline = story.last().expect("a timeline");
    assert!(
        !timeline.rows_where("event", "started").is_empty(),
        "{stdout}"
    );
    assert!(
        !timeline.rows_where("event", "breached").is_empty(),
        "{stdout}"
    );

    // 9. Notifications of every kind, the latest being the worker's.
    let notifications = psql_tables(demo_section(&stdout, 9));
    for kind in [
        "due_soon",
        "breached",
        "customer_feedback",
        "ownership_released",
        "breach_alert",
    ] {
        let rows = notifications[0].rows_where("kind", kind);
        assert_eq!(rows.len(), 1, "{kind} notifications:\n{stdout}");
        assert!(notifications[0].int(rows[0], "count") > 0, "{stdout}");
    }
    let latest = &notifications[1];
    assert_eq!(latest.rows.len(), 8, "{stdout}");
    assert_eq!(
        latest.rows[0][latest.column("kind")],
        "breached",
        "{stdout}"
    );
    assert_eq!(
        latest.rows[0][latest.column("policy")],
        "vip_chat",
        "{stdout}"
    );
}
