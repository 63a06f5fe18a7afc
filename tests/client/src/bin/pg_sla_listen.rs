//! Prints pg_sla's notifications as they are committed: a client LISTENing
//! on channel `pg_sla`, written with the `postgres` crate.
//!
//! ```text
//! cargo run -p pg_sla_client_tests --bin pg_sla_listen -- "host=/var/run/postgresql dbname=postgres" [COUNT [SECONDS]]
//! ```
//! Each line is one notification's JSON payload. With COUNT, it exits after
//! that many; with SECONDS too, it fails if they have not come by then.
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

    let mut notifications = client.notifications();
    let mut seen = 0;
    while count != Some(seen) {
        let next = match deadline {
            None => notifications.blocking_iter().next()?,
            Some(deadline) => {
                let left = deadline.saturating_duration_since(Instant::now());
                notifications.timeout_iter(left).next()?
            }
        };
        let Some(notification) = next else {
            eprintln!("pg_sla_listen: no notification before the deadline");
            std::process::exit(1);
        };
        // {"id" : 42, "kind" : "breached", "ticket_table" : "public.tickets", "ticket_id" : "1017", ...}
        println!("{}", notification.payload());
        std::io::stdout().flush().ok();
        seen += 1;
    }
    Ok(())
}
