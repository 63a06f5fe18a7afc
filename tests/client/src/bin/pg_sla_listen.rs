//! Prints pg_sla's notifications as they are committed: a client LISTENing
//! on channel `pg_sla`, written with the `postgres` crate.
//!
//! ```text
//! cargo run -p pg_sla_client_tests --bin pg_sla_listen -- "host=/var/run/postgresql dbname=postgres" [COUNT [SECONDS]]
//! ```
//! Each line is one notification's JSON payload. With COUNT, it exits after
//! that many; with SECONDS too, it fails if they have not come by then.
//!
//! Any role that can connect may `NOTIFY pg_sla` with a payload of its own,
//! so a payload is only a hint: the client acts on a notification once it
//! has found its row in `sla.notifications` (which only pg_sla writes), and
//! ignores, on standard error, payloads without one.
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
        if !written_by_pg_sla(&mut client, payload) {
            eprintln!("pg_sla_listen: ignored, not in sla.notifications: {payload}");
            continue;
        }
        println!("{payload}");
        std::io::stdout().flush().ok();
        seen += 1;
    }
    Ok(())
}

/// Whether `sla.notifications` has the row this payload names, of the kind
/// it says: a payload that does not parse, or names no such row, was not
/// sent by pg_sla.
fn written_by_pg_sla(client: &mut Client, payload: &str) -> bool {
    client
        .query_opt(
            "SELECT FROM sla.notifications n, (SELECT ($1::text)::jsonb AS p) AS sent
              WHERE n.id OPERATOR(pg_catalog.=) (sent.p OPERATOR(pg_catalog.->>) 'id')::bigint
                AND n.kind OPERATOR(pg_catalog.=) (sent.p OPERATOR(pg_catalog.->>) 'kind')",
            &[&payload],
        )
        .is_ok_and(|row| row.is_some())
}
