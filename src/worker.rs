//! The background worker: applies due SLA transitions by itself, in short
//! transactions, by calling `sla.process_due()` like any other caller.
//!
//! It runs when the library is in `shared_preload_libraries`, connects to
//! `pg_sla.database`, idles until the extension exists there, and never
//! starts on a standby (it starts once recovery is finished). Its progress
//! is kept in shared memory for `sla.worker_status()`.
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use pgrx::bgworkers::SignalWakeFlags;
use pgrx::bgworkers::{BackgroundWorker, BackgroundWorkerBuilder, BgWorkerStartTime};
use pgrx::datum::TimestampWithTimeZone;
use pgrx::prelude::*;
use pgrx::{pg_shmem_init, PGRXSharedMemory, PgLwLock, PgTryBuilder};

use crate::due::{self, take_failures};
use crate::errors::SpiResultExt;
use crate::gucs;
use crate::store::clocks;
use crate::subxact::describe;

/// The least time budget of an attempt at a table's due tickets.
const MIN_TABLE_BUDGET: Duration = Duration::from_millis(250);

/// Seconds the postmaster waits before starting the worker again after it
/// exited with an error (a crash makes the postmaster restart it at once,
/// after crash recovery).
const RESTART_SECONDS: u64 = 3;

const STATE_STOPPED: u8 = 0;
const STATE_STARTING: u8 = 1;
const STATE_WAITING_FOR_EXTENSION: u8 = 2;
const STATE_DISABLED: u8 = 3;
const STATE_IDLE: u8 = 4;
const STATE_PROCESSING: u8 = 5;

const DATABASE_LEN: usize = 64;
const ERROR_LEN: usize = 1024;

/// The worker's progress, in shared memory. Timestamps are PostgreSQL
/// `TimestampTz` values, 0 meaning never.
#[derive(Clone, Copy)]
pub struct WorkerStatus {
    pid: i32,
    state: u8,
    database: [u8; DATABASE_LEN],
    started_at: i64,
    last_tick_at: i64,
    last_tick_micros: i64,
    last_tick_transitions: i64,
    transitions: i64,
    ticks: i64,
    errors: i64,
    last_error_at: i64,
    last_error: [u8; ERROR_LEN],
}

unsafe impl PGRXSharedMemory for WorkerStatus {}

impl WorkerStatus {
    const EMPTY: WorkerStatus = WorkerStatus {
        pid: 0,
        state: STATE_STOPPED,
        database: [0; DATABASE_LEN],
        started_at: 0,
        last_tick_at: 0,
        last_tick_micros: 0,
        last_tick_transitions: 0,
        transitions: 0,
        ticks: 0,
        errors: 0,
        last_error_at: 0,
        last_error: [0; ERROR_LEN],
    };
}

static STATUS: PgLwLock<WorkerStatus> = unsafe { PgLwLock::new(c"pg_sla_worker_status") };

/// Whether this server loaded the library at start (so that the worker and
/// its shared memory exist). Set in the postmaster, inherited by backends.
static PRELOADED: AtomicBool = AtomicBool::new(false);

/// Registers the worker and its shared memory; only possible while the
/// postmaster loads `shared_preload_libraries`.
// pgrx's shared-memory macro names a pg18 feature this crate does not have.
#[allow(unexpected_cfgs)]
pub fn register() {
    if !unsafe { pg_sys::process_shared_preload_libraries_in_progress } {
        return;
    }
    PRELOADED.store(true, Ordering::Relaxed);
    pg_shmem_init!(STATUS = WorkerStatus::EMPTY);
    BackgroundWorkerBuilder::new("pg_sla worker")
        .set_type("pg_sla worker")
        .set_library("pg_sla")
        .set_function("pg_sla_worker_main")
        .enable_spi_access()
        .set_start_time(BgWorkerStartTime::RecoveryFinished)
        .set_restart_time(Some(Duration::from_secs(RESTART_SECONDS)))
        .load();
}

fn update_status(f: impl FnOnce(&mut WorkerStatus)) {
    f(&mut STATUS.exclusive());
}

fn copy_text<const N: usize>(target: &mut [u8; N], text: &str) {
    // Cut at a character boundary, keeping a terminating zero.
    let mut end = text.len().min(N - 1);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    *target = [0; N];
    target[..end].copy_from_slice(&text.as_bytes()[..end]);
}

fn read_text<const N: usize>(source: &[u8; N]) -> String {
    let end = source.iter().position(|&b| b == 0).unwrap_or(N);
    String::from_utf8_lossy(&source[..end]).into_owned()
}

fn now() -> i64 {
    unsafe { pg_sys::GetCurrentTimestamp() }
}

/// Sleeps until `nap` has passed or a signal sets the latch; exits if the
/// postmaster died, or (through `die`) on SIGTERM.
fn nap(nap: Duration) {
    unsafe {
        pg_sys::WaitLatch(
            pg_sys::MyLatch,
            (pg_sys::WL_LATCH_SET | pg_sys::WL_TIMEOUT | pg_sys::WL_EXIT_ON_PM_DEATH) as i32,
            nap.as_millis().clamp(1, i64::MAX as u128) as std::ffi::c_long,
            pg_sys::PG_WAIT_EXTENSION,
        );
        pg_sys::ResetLatch(pg_sys::MyLatch);
    }
    check_for_shutdown();
}

/// Exits on SIGTERM. A cancel (`pg_cancel_backend`) arriving between
/// transactions has nothing to cancel: it is dropped, as PostgreSQL drops
/// one that reaches an idle session, rather than ending the worker.
fn check_for_shutdown() {
    unsafe { pg_sys::QueryCancelPending = 0 };
    check_for_interrupts!();
}

/// Clears the worker's pid from the status on any exit, an error included.
#[pg_guard]
unsafe extern "C-unwind" fn worker_exited(_code: i32, _arg: pg_sys::Datum) {
    update_status(|status| {
        status.pid = 0;
        status.state = STATE_STOPPED;
    });
}

/// Settings the worker's session must have whatever the database or the
/// server sets by default: its own `search_path` (it runs as a superuser,
/// so a database owner's schemas must not resolve its names), READ
/// COMMITTED writes, no timeouts cutting a batch short, triggers firing.
const SESSION_SETTINGS: [(&std::ffi::CStr, &std::ffi::CStr); 7] = [
    (c"search_path", c"pg_catalog, pg_temp"),
    (c"default_transaction_isolation", c"read committed"),
    (c"default_transaction_read_only", c"off"),
    (c"session_replication_role", c"origin"),
    (c"statement_timeout", c"0"),
    (c"lock_timeout", c"0"),
    (c"idle_in_transaction_session_timeout", c"0"),
];

fn override_session_settings() {
    for (name, value) in SESSION_SETTINGS {
        unsafe {
            pg_sys::SetConfigOption(
                name.as_ptr(),
                value.as_ptr(),
                pg_sys::GucContext::PGC_SUSET,
                pg_sys::GucSource::PGC_S_OVERRIDE,
            )
        };
    }
}

extern "C-unwind" {
    /// PostgreSQL's SIGTERM handler for backends (`pg_sys::die` is a Rust
    /// wrapper, not a signal handler).
    #[link_name = "die"]
    fn postgres_die(signal: std::ffi::c_int);
}

#[pg_guard]
#[no_mangle]
pub extern "C-unwind" fn pg_sla_worker_main(_arg: pg_sys::Datum) {
    BackgroundWorker::attach_signal_handlers(SignalWakeFlags::SIGHUP);
    // SIGTERM interrupts whatever the worker waits for (a lock, a slow
    // trigger) at the next CHECK_FOR_INTERRUPTS, as in PostgreSQL's own
    // workers: a flag checked between transactions would wait for them.
    unsafe { pg_sys::pqsignal(pg_sys::SIGTERM as i32, Some(postgres_die)) };
    let database = gucs::worker_database();
    update_status(|status| {
        // Totals and the last error survive restarts; this process is new.
        status.pid = unsafe { pg_sys::MyProcPid };
        status.state = STATE_STARTING;
        status.started_at = now();
        copy_text(&mut status.database, &database);
    });
    unsafe { pg_sys::before_shmem_exit(Some(worker_exited), pg_sys::Datum::from(0)) };
    // A database that does not exist is a FATAL error here, retried after
    // RESTART_SECONDS.
    BackgroundWorker::connect_worker_to_spi(Some(&database), None);
    override_session_settings();
    log!("pg_sla worker started in database \"{database}\"");

    let mut extension_found: Option<bool> = None;
    loop {
        if unsafe { std::ptr::read_volatile(&raw const pg_sys::ConfigReloadPending) } != 0 {
            unsafe {
                pg_sys::ConfigReloadPending = 0;
                pg_sys::ProcessConfigFile(pg_sys::GucContext::PGC_SIGHUP);
            }
            if gucs::worker_database() != database {
                log!(
                    "pg_sla worker: pg_sla.database changed to \"{}\", restarting",
                    gucs::worker_database()
                );
                // Exit code 1: the postmaster starts it again.
                unsafe { pg_sys::proc_exit(1) };
            }
        }
        let sleep = if gucs::worker_enabled() {
            tick(&database, &mut extension_found)
        } else {
            update_status(|status| status.state = STATE_DISABLED);
            gucs::worker_naptime()
        };
        nap(sleep);
    }
}

/// What one transaction of a tick did.
enum Step {
    NoExtension,
    Processed {
        applied: i32,
        /// When the next known transition falls due, if before a nap.
        next_in: Option<Duration>,
    },
}

/// Processes everything due, one short transaction per batch, and returns
/// how long to sleep before the next tick.
fn tick(database: &str, extension_found: &mut Option<bool>) -> Duration {
    let naptime = gucs::worker_naptime();
    let batch = gucs::worker_batch_size();
    // Each attempt at a table's due tickets gets half a nap: a table whose
    // triggers hang costs the others at most that, once per tick. At least
    // MIN_TABLE_BUDGET, so that a short nap does not cut healthy work.
    due::set_table_budget(Some((naptime / 2).max(MIN_TABLE_BUDGET)));
    let started = Instant::now();
    let started_at = now();
    let mut transitions = 0i64;
    let mut errors = 0i64;
    let mut last_error: Option<String> = None;
    let mut sleep = naptime;
    loop {
        check_for_shutdown();
        update_status(|status| status.state = STATE_PROCESSING);
        let result = transaction(|| process_batch(batch));
        // Failures process_due survived (a ticket it could not process).
        let (failed, failure) = take_failures();
        errors += failed;
        last_error = failure.or(last_error);
        match result {
            Ok(Step::NoExtension) => {
                if *extension_found != Some(false) {
                    log!(
                        "pg_sla worker: extension pg_sla is not created in database \"{database}\"; waiting for CREATE EXTENSION pg_sla"
                    );
                }
                *extension_found = Some(false);
                update_status(|status| status.state = STATE_WAITING_FOR_EXTENSION);
                return naptime;
            }
            Ok(Step::Processed { applied, next_in }) => {
                if *extension_found == Some(false) {
                    log!("pg_sla worker: extension pg_sla found in database \"{database}\"");
                }
                *extension_found = Some(true);
                transitions += i64::from(applied);
                if applied == 0 {
                    sleep = next_in.map_or(naptime, |next| next.min(naptime));
                    break;
                }
            }
            Err(message) => {
                // The transaction rolled back: what was due stays due, for
                // the next tick.
                let message = format!("pg_sla worker: due processing failed: {message}");
                warning!("{message}");
                errors += 1;
                last_error = Some(message);
                break;
            }
        }
    }
    let elapsed = started.elapsed();
    update_status(|status| {
        status.state = STATE_IDLE;
        status.ticks += 1;
        status.last_tick_at = started_at;
        status.last_tick_micros = elapsed.as_micros().min(i64::MAX as u128) as i64;
        status.last_tick_transitions = transitions;
        status.transitions += transitions;
        if let Some(last) = &last_error {
            status.errors += errors;
            status.last_error_at = now();
            copy_text(&mut status.last_error, last);
        }
    });
    sleep
}

/// One transaction: due processing of up to `batch` clocks, then the wait
/// until the next known transition.
fn process_batch(batch: i32) -> Step {
    let installed = Spi::get_one::<bool>(
        "SELECT EXISTS (SELECT FROM pg_catalog.pg_extension
                         WHERE extname OPERATOR(pg_catalog.=) 'pg_sla')",
    )
    .or_raise("look for the extension")
    .unwrap_or(false);
    if !installed {
        return Step::NoExtension;
    }
    let applied = Spi::get_one_with_args::<i32>(
        "SELECT sla.process_due(pg_catalog.now(), $1)",
        &[batch.into()],
    )
    .or_raise("run due processing")
    .unwrap_or(0);
    let next_in = if applied == 0 {
        next_transition_in()
    } else {
        None
    };
    Step::Processed { applied, next_in }
}

/// Time from now until the next clock transition known to be ahead, so
/// that the worker wakes for it rather than up to a nap later.
fn next_transition_in() -> Option<Duration> {
    let start = unsafe { pg_sys::GetCurrentTransactionStartTimestamp() };
    let start = TimestampWithTimeZone::try_from(start).ok()?;
    let next = clocks::next_transition_after(start)?;
    let next: i64 = next.into_inner();
    // Transitions come strictly after their time: wake a millisecond later.
    let micros = next - now() + 1000;
    Some(Duration::from_micros(micros.max(1000) as u64))
}

/// Runs `body` in a transaction of its own and commits it. Any error, in
/// `body` or at commit (a full NOTIFY queue, say), rolls the transaction
/// back and is returned: the worker goes on with its next tick.
fn transaction<R>(body: impl FnOnce() -> R) -> Result<R, String> {
    let mut body = Some(body);
    let result = PgTryBuilder::new(AssertUnwindSafe(|| {
        unsafe {
            pg_sys::SetCurrentStatementStartTimestamp();
            pg_sys::StartTransactionCommand();
            pg_sys::PushActiveSnapshot(pg_sys::GetTransactionSnapshot());
            pg_sys::pgstat_report_activity(
                pg_sys::BackendState::STATE_RUNNING,
                c"SELECT sla.process_due()".as_ptr(),
            );
        }
        let value = (body.take().expect("runs once"))();
        unsafe {
            pg_sys::PopActiveSnapshot();
            pg_sys::CommitTransactionCommand();
        }
        Ok(value)
    }))
    .catch_others(|error| {
        unsafe { pg_sys::AbortCurrentTransaction() };
        Err(describe(&error).message)
    })
    .execute();
    unsafe {
        pg_sys::pgstat_report_activity(pg_sys::BackendState::STATE_IDLE, std::ptr::null());
        // Table statistics reach autovacuum only when flushed: without it,
        // the worker's updates of clocks would never trigger a vacuum.
        pg_sys::pgstat_report_stat(false);
    }
    result
}

/// The worker's status, one row. `running` is false when the library is not
/// preloaded, the worker is turned off or waiting to restart.
#[allow(clippy::type_complexity)]
#[pg_extern(volatile, parallel_restricted)]
fn worker_status() -> TableIterator<
    'static,
    (
        name!(running, bool),
        name!(pid, Option<i32>),
        name!(database, Option<String>),
        name!(state, String),
        name!(started_at, Option<TimestampWithTimeZone>),
        name!(last_tick_at, Option<TimestampWithTimeZone>),
        name!(last_tick_ms, Option<f64>),
        name!(last_tick_transitions, Option<i64>),
        name!(transitions, i64),
        name!(ticks, i64),
        name!(errors, i64),
        name!(last_error, Option<String>),
        name!(last_error_at, Option<TimestampWithTimeZone>),
    ),
> {
    let timestamp = |t: i64| {
        if t == 0 {
            None
        } else {
            TimestampWithTimeZone::try_from(t).ok()
        }
    };
    if !PRELOADED.load(Ordering::Relaxed) {
        return TableIterator::once((
            false,
            None,
            None,
            "not loaded: add pg_sla to shared_preload_libraries".to_string(),
            None,
            None,
            None,
            None,
            0,
            0,
            0,
            None,
            None,
        ));
    }
    let status = *STATUS.share();
    let alive = status.pid != 0 && !unsafe { pg_sys::BackendPidGetProc(status.pid) }.is_null();
    let state = match (alive, status.state) {
        (false, _) => "stopped",
        (true, STATE_STARTING) => "starting",
        (true, STATE_WAITING_FOR_EXTENSION) => "waiting for extension",
        (true, STATE_DISABLED) => "disabled",
        (true, STATE_PROCESSING) => "processing",
        (true, _) => "idle",
    };
    let database = read_text(&status.database);
    let error = read_text(&status.last_error);
    TableIterator::once((
        alive,
        alive.then_some(status.pid),
        (!database.is_empty()).then_some(database),
        state.to_string(),
        timestamp(status.started_at),
        timestamp(status.last_tick_at),
        (status.ticks > 0).then_some(status.last_tick_micros as f64 / 1000.0),
        (status.ticks > 0).then_some(status.last_tick_transitions),
        status.transitions,
        status.ticks,
        status.errors,
        (!error.is_empty()).then_some(error),
        timestamp(status.last_error_at),
    ))
}
