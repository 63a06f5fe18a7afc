//! `sla.validate_policy`: the CHECK constraint of `sla.policies`, which
//! accepts exactly the rows the core accepts (`sla_core::policy::validate`).
use std::ffi::CStr;

use pgrx::datum::{Interval, IntoDatum};
use pgrx::pg_sys::errcodes::PgSqlErrorCode;
use pgrx::pg_sys::panic::ErrorReport;
use pgrx::prelude::*;
use sla_core::policy::{validate, IntervalValue, PolicyDraft};

use crate::jsonb_arg::JsonbArg;

/// An interval as PostgreSQL prints it (for messages).
fn printed(value: Interval) -> String {
    unsafe {
        let mut output_function = pg_sys::InvalidOid;
        let mut is_varlena = false;
        pg_sys::getTypeOutputInfo(pg_sys::INTERVALOID, &mut output_function, &mut is_varlena);
        let datum = value.into_datum().expect("an interval is never NULL");
        let text = pg_sys::OidOutputFunctionCall(output_function, datum);
        let printed = CStr::from_ptr(text).to_string_lossy().into_owned();
        pg_sys::pfree(text.cast());
        printed
    }
}

/// True for a valid policy row; otherwise an error (22023) naming the
/// policy, the field and the value.
#[allow(clippy::too_many_arguments)]
#[pg_extern(immutable, parallel_safe)]
fn validate_policy(
    name: Option<&str>,
    first_response: Option<Interval>,
    next_response: Option<Interval>,
    resolution: Option<Interval>,
    warn_at: Option<f64>,
    release_ownership_at: Option<f64>,
    conditions: Option<JsonbArg>,
    pause_statuses: Option<Vec<Option<String>>>,
) -> bool {
    // The table's columns are NOT NULL; a direct call may pass NULL.
    let (Some(name), Some(conditions), Some(pause_statuses)) = (name, conditions, pause_statuses)
    else {
        ereport!(
            ERROR,
            PgSqlErrorCode::ERRCODE_NULL_VALUE_NOT_ALLOWED,
            "name, conditions and pause_statuses must not be NULL"
        );
    };
    let texts = [first_response, next_response, resolution].map(|t| t.map(printed));
    fn part(value: Option<Interval>, text: &Option<String>) -> Option<IntervalValue<'_>> {
        value.map(|v| IntervalValue {
            months: v.months(),
            days: v.days(),
            micros: v.micros(),
            printed: text.as_deref().unwrap_or_default(),
        })
    }
    let conditions: serde_json::Value = match serde_json::from_str(&conditions.to_text()) {
        Ok(value) => value,
        Err(e) => {
            ereport!(
                ERROR,
                PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
                format!("policy \"{name}\": conditions cannot be read: {e}")
            );
        }
    };
    let draft = PolicyDraft {
        name,
        first_response: part(first_response, &texts[0]),
        next_response: part(next_response, &texts[1]),
        resolution: part(resolution, &texts[2]),
        warn_at,
        release_ownership_at,
        conditions: &conditions,
        pause_statuses: &pause_statuses,
    };
    if let Err(error) = validate(&draft) {
        let report = ErrorReport::new(
            PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            error.message,
            "validate_policy",
        );
        match error.hint {
            Some(hint) => report.set_hint(hint),
            None => report,
        }
        .report(pgrx::PgLogLevel::ERROR);
        unreachable!("an ERROR does not return");
    }
    true
}
