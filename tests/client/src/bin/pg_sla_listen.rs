//! Prints pg_sla's notifications as they are committed: a client LISTENing
//! on channel `pg_sla`, written with the `postgres` crate.
//!
//! ```text
//! cargo run -p pg_sla_client_tests --bin pg_sla_listen -- "host=/var/run/postgresql dbname=postgres" [COUNT]
//! ```
//! Each line is one notification's JSON payload. With COUNT, it exits after
//! that many.
use std::io::Write;

use postgres::fallible_iterator::FallibleIterator;
use postgres::{Client, NoTls};

fn main() -> Result<(), postgres::Error> {
    let mut args = std::env::args().skip(1);
    let conninfo = args
        .next()
        .unwrap_or_else(|| "host=/var/run/postgresql dbname=postgres".to_string());
    let count: Option<usize> = args.next().map(|n| n.parse().expect("COUNT is a number"));

    let mut client = Client::connect(&conninfo, NoTls)?;
    client.batch_execute("LISTEN pg_sla")?;
    println!("listening on channel pg_sla");
    std::io::stdout().flush().ok();

    let mut notifications = client.notifications();
    let mut arriving = notifications.blocking_iter();
    let mut seen = 0;
    while let Some(notification) = arriving.next()? {
        // {"id": ..., "kind": "breached", "ticket_table": "public.tickets", "ticket_id": "42", ...}
        println!("{}", notification.payload());
        std::io::stdout().flush().ok();
        seen += 1;
        if count == Some(seen) {
            break;
        }
    }
    Ok(())
}
