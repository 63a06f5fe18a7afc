//! Prints pg_sla's notifications as they are committed: a client LISTENing
//! on channel `pg_sla`, written with the `postgres` crate.
//!
//! ```text
//! cargo run -p pg_sla_client_tests --bin pg_sla_listen -- "host=/var/run/postgresql dbname=postgres" [COUNT [SECONDS]]
//! ```
//! Each line is one notification: its row of `sla.notifications` as JSON.
//! With COUNT, it exits after that many; with SECONDS too, it fails if they
//! have not come by then.
//!
//! Any role that can connect may `NOTIFY pg_sla` with a payload of its own,
//! so a payload is only a hint: the client reads the row the payload names
//! (only pg_sla writes `sla.notifications`) and prints the row, never the
//! payload; a payload without a row, or naming a row already handled, is
//! ignored on standard error.
use std::io::Write;
use std::time::{Duration, Instant};

use postgres::fallible_iterator::FallibleIterator;
use postgres::{Client, NoTls};

fn main() -> Result<(), postgres::Error> {
    let mut args = std::env::args().skip(1);
    let conninfo = args
        .next()
        .unwrap_or_else(|| "host=/var/run/postgresql dbname=postgres".to_string());
    let count: Option<usize> = args.next().map(|n| n.parse().expect("COUNT is a number"));
    let deadline = args
        .next()
        .map(|s| Instant::now() + Duration::from_secs(s.parse().expect("SECONDS is a number")));

    let mut client = Client::connect(&conninfo, NoTls)?;
    client.batch_execute("LISTEN pg_sla")?;
    println!("listening on channel pg_sla");
    std::io::stdout().flush().ok();

    let mut seen = 0;
    let mut handled = std::collections::HashSet::new();
    while count != Some(seen) {
        let next = {
            let mut notifications = client.notifications();
            match deadline {
                None => notifications.blocking_iter().next()?,
                Some(deadline) => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    notifications.timeout_iter(left).next()?
                }
            }
        };
        let Some(notification) = next else {
            eprintln!("pg_sla_listen: no notification before the deadline");
            std::process::exit(1);
        };
        // {"id" : 42, "kind" : "breached", "ticket_table" : "public.tickets", "ticket_id" : "1017", ...}
        let payload = notification.payload();
        let Some((id, row)) = row_named_by(&mut client, payload) else {
            eprintln!("pg_sla_listen: ignored, not in sla.notifications: {payload}");
            continue;
        };
        if !handled.insert(id) {
            eprintln!("pg_sla_listen: ignored, already handled: {payload}");
            continue;
        }
        println!("{row}");
        std::io::stdout().flush().ok();
        seen += 1;
    }
    Ok(())
}

/// The id and the row (as JSON) of the notification this payload names, if
/// `sla.notifications` has it with the kind the payload says: a payload
/// that does not parse, or names no such row, was not sent by pg_sla.
fn row_named_by(client: &mut Client, payload: &str) -> Option<(i64, String)> {
    client
        .query_opt(
            "SELECT n.id, pg_catalog.row_to_json(n)::text
               FROM sla.notifications n, (SELECT ($1::text)::jsonb AS p) AS sent
              WHERE n.id OPERATOR(pg_catalog.=) (sent.p OPERATOR(pg_catalog.->>) 'id')::bigint
                AND n.kind OPERATOR(pg_catalog.=) (sent.p OPERATOR(pg_catalog.->>) 'kind')",
            &[&payload],
        )
        .ok()
        .flatten()
        .map(|row| (row.get(0), row.get(1)))
}
