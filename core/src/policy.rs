//! Policy conditions: which tickets a policy applies to.
//!
//! Conditions map a ticket column to a value or an array of accepted values,
//! e.g. `{"priority": ["urgent", "high"], "channel": "email"}`, or to
//! `{"not": value or array}` for the values refused (`{"sender_type":
//! {"not": "bot"}}`). A ticket matches when every named column holds one of
//! its accepted values (none of its refused ones), compared as PostgreSQL
//! prints them; JSON `null` stands for SQL NULL, so `null` is "is null" and
//! `{"not": null}` "is not null". A column the ticket table lacks meets no
//! condition. `{}` matches every ticket.
use std::borrow::{Borrow, Cow};

use serde_json::Value;

use crate::clock::Targets;
use crate::{Micros, MICROS_PER_DAY, MICROS_PER_HOUR, SEARCH_HORIZON};

/// The longest target a policy may have: the business time the engine
/// searches a calendar over. A longer one gives deadlines that cannot be
/// represented, and would fail the application's writes.
pub const MAX_TARGET: Micros = SEARCH_HORIZON;

/// A row of `sla.policies`, parsed.
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    pub name: String,
    pub position: i32,
    pub enabled: bool,
    /// The calendar the policy's clocks run on; `None` is 24/7.
    pub calendar: Option<String>,
    pub conditions: Vec<Condition>,
    pub targets: Targets,
    pub feedback_message: Option<String>,
    pub pause_statuses: Vec<String>,
    /// The ticket tables (their OIDs) the policy applies to; `None`: every
    /// tracked table.
    pub tables: Option<Vec<u32>>,
}

impl Policy {
    /// Whether the policy may apply to tickets of this table.
    pub fn applies_to(&self, table: u32) -> bool {
        self.tables
            .as_ref()
            .is_none_or(|tables| tables.contains(&table))
    }
}

/// The enabled policies in the order they are tried: by position, then by
/// name. Names compare in the database's collation, which only the database
/// knows: `new` takes the policies in name order (the store reads them so)
/// and sorts them, stably, by position.
pub struct PolicyOrder<P> {
    ordered: Vec<P>,
}

impl<P: Borrow<Policy>> PolicyOrder<P> {
    /// `by_name`: every policy, in the order of their names.
    pub fn new(by_name: impl IntoIterator<Item = P>) -> Self {
        let mut ordered: Vec<P> = by_name
            .into_iter()
            .filter(|p| Borrow::<Policy>::borrow(p).enabled)
            .collect();
        ordered.sort_by_key(|p| Borrow::<Policy>::borrow(p).position);
        PolicyOrder { ordered }
    }

    /// The policy that applies to a ticket of `table`: the first in this
    /// order that applies to the table and whose conditions the ticket
    /// meets. `value_of` reads a column of the ticket; it may be asked for
    /// the same column more than once.
    pub fn choose<'v>(
        &self,
        table: u32,
        mut value_of: impl FnMut(&str) -> ColumnValue<'v>,
    ) -> Option<&P> {
        self.ordered.iter().find(|policy| {
            let policy = Borrow::<Policy>::borrow(*policy);
            policy.applies_to(table) && matches(&policy.conditions, &mut value_of)
        })
    }

    pub fn as_slice(&self) -> &[P] {
        &self.ordered
    }
}

/// A target as PostgreSQL gives an interval: months, days and microseconds
/// kept apart, and the value as PostgreSQL prints it, for messages.
#[derive(Debug, Clone, Copy)]
pub struct IntervalValue<'a> {
    pub months: i32,
    pub days: i32,
    pub micros: i64,
    pub printed: &'a str,
}

/// A policy row as written, before it is accepted.
#[derive(Debug, Clone)]
pub struct PolicyDraft<'a> {
    pub name: &'a str,
    pub first_response: Option<IntervalValue<'a>>,
    pub next_response: Option<IntervalValue<'a>>,
    pub resolution: Option<IntervalValue<'a>>,
    pub warn_at: Option<f64>,
    pub release_ownership_at: Option<f64>,
    pub conditions: &'a Value,
    pub pause_statuses: &'a [Option<String>],
}

/// Why a policy row is refused: a message that names the policy, the field
/// and the value, and a hint when there is one. Every problem is invalid
/// input (SQLSTATE 22023).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyError {
    pub message: String,
    pub hint: Option<&'static str>,
}

/// Checks a policy row: what the `sla.policies` CHECK constraint calls, so
/// every row the caches read has passed it.
pub fn validate(draft: &PolicyDraft) -> Result<(), PolicyError> {
    let name = draft.name;
    let refuse = |message: String| PolicyError {
        message: format!("policy \"{name}\": {message}"),
        hint: None,
    };
    for (field, target) in [
        ("first_response", draft.first_response),
        ("next_response", draft.next_response),
        ("resolution", draft.resolution),
    ] {
        let Some(target) = target else { continue };
        // PostgreSQL compares intervals with a day as 24 hours.
        let total =
            i128::from(target.days) * i128::from(MICROS_PER_DAY) + i128::from(target.micros);
        if target.months != 0 || total <= 0 {
            return Err(PolicyError {
                hint: Some("Use hours, minutes or days, e.g. '30 minutes' or '3 days'."),
                ..refuse(format!(
                    "{field} must be a positive interval without months or years, got {}",
                    target.printed
                ))
            });
        }
        if total > i128::from(MAX_TARGET) {
            return Err(refuse(format!(
                "{field} must be at most {} hours (ten years of business time), got {}",
                MAX_TARGET / MICROS_PER_HOUR,
                target.printed
            )));
        }
    }
    for (field, fraction) in [
        ("warn_at", draft.warn_at),
        ("release_ownership_at", draft.release_ownership_at),
    ] {
        if let Some(value) = fraction {
            if !(value > 0.0 && value < 1.0) {
                return Err(refuse(format!(
                    "{field} must be a fraction between 0 and 1 (exclusive), got {}",
                    print_float(value)
                )));
            }
        }
    }
    if draft.release_ownership_at.is_some() && draft.first_response.is_none() {
        return Err(refuse(
            "release_ownership_at needs a first_response target".to_owned(),
        ));
    }
    parse_conditions(draft.conditions).map_err(refuse)?;
    if draft.pause_statuses.iter().any(Option::is_none) {
        return Err(refuse("pause_statuses must not contain NULL".to_owned()));
    }
    Ok(())
}

/// A double as PostgreSQL prints it (shortest exact form, `NaN`,
/// `Infinity`).
fn print_float(value: f64) -> String {
    if value.is_nan() {
        "NaN".to_owned()
    } else if value.is_infinite() {
        if value > 0.0 { "Infinity" } else { "-Infinity" }.to_owned()
    } else if value != 0.0 && !(1e-4..1e15).contains(&value.abs()) {
        // PostgreSQL switches to an exponent outside this range, signed and
        // of two digits at least: 1e+20, 1e-05.
        let printed = format!("{value:e}");
        match printed.split_once('e') {
            Some((mantissa, exponent)) => {
                let (sign, digits) = match exponent.strip_prefix('-') {
                    Some(digits) => ('-', digits),
                    None => ('+', exponent),
                };
                format!("{mantissa}e{sign}{digits:0>2}")
            }
            None => printed,
        }
    } else {
        format!("{value}")
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Condition {
    pub column: String,
    /// The values listed, as text; `None` stands for NULL.
    pub accepted: Vec<Option<String>>,
    /// The values listed are refused rather than accepted (`{"not": …}`).
    pub negated: bool,
}

impl Condition {
    /// Whether a column's value meets the condition.
    pub fn holds(&self, value: &ColumnValue) -> bool {
        let listed = match value {
            ColumnValue::Absent => return false,
            ColumnValue::Null => self.accepted.iter().any(Option::is_none),
            ColumnValue::Text(text) => self
                .accepted
                .iter()
                .any(|accepted| accepted.as_deref() == Some(&**text)),
        };
        listed != self.negated
    }
}

/// What a ticket's column holds, as seen by the matcher: text as
/// PostgreSQL prints the value, borrowed or owned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ColumnValue<'a> {
    /// The ticket table has no such column: the condition cannot hold.
    Absent,
    Null,
    Text(Cow<'a, str>),
}

/// Parses conditions written as JSON text (as a jsonb column prints).
pub fn parse_conditions_text(text: &str) -> Result<Vec<Condition>, String> {
    serde_json::from_str(text)
        .map_err(|e| e.to_string())
        .and_then(|value| parse_conditions(&value))
}

/// Parses a policy's `conditions` object (the field names in errors are
/// JSON paths such as `conditions.priority[1]`).
pub fn parse_conditions(value: &Value) -> Result<Vec<Condition>, String> {
    let Value::Object(map) = value else {
        return Err(format!(
            "conditions must be a JSON object of column → value or array of values, got {value}"
        ));
    };
    map.iter()
        .map(|(column, wanted)| {
            let (wanted, negated, path) = match wanted {
                Value::Object(operator) => match operator.iter().next() {
                    Some((key, refused)) if key == "not" && operator.len() == 1 => {
                        (refused, true, format!("{column}.not"))
                    }
                    _ => {
                        return Err(format!(
                            "conditions.{column} must be a value, an array of values or {{\"not\": value or array}}, got {}",
                            Value::Object(operator.clone())
                        ))
                    }
                },
                other => (other, false, column.clone()),
            };
            let values: Vec<&Value> = match wanted {
                Value::Array(items) => items.iter().collect(),
                single => vec![single],
            };
            if values.is_empty() {
                return Err(format!(
                    "conditions.{path} must list at least one value, got []"
                ));
            }
            let accepted = values
                .iter()
                .enumerate()
                .map(|(i, v)| accepted_text(v).ok_or_else(|| {
                    format!("conditions.{path}[{i}] must be a string, number, boolean or null, got {v}")
                }))
                .collect::<Result<Vec<_>, String>>()?;
            Ok(Condition {
                column: column.clone(),
                accepted,
                negated,
            })
        })
        .collect()
}

fn accepted_text(value: &Value) -> Option<Option<String>> {
    match value {
        Value::Null => Some(None),
        Value::String(s) => Some(Some(s.clone())),
        Value::Number(n) => Some(Some(n.to_string())),
        // PostgreSQL prints booleans as t and f.
        Value::Bool(true) => Some(Some("t".to_owned())),
        Value::Bool(false) => Some(Some("f".to_owned())),
        Value::Array(_) | Value::Object(_) => None,
    }
}

/// Whether a ticket whose columns `value_of` reads meets every condition.
pub fn matches<'a>(
    conditions: &[Condition],
    mut value_of: impl FnMut(&str) -> ColumnValue<'a>,
) -> bool {
    conditions
        .iter()
        .all(|condition| condition.holds(&value_of(&condition.column)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn lookup<'a>(row: &'a [(&'a str, Option<&'a str>)]) -> impl FnMut(&str) -> ColumnValue<'a> {
        move |column| match row.iter().find(|(c, _)| *c == column) {
            None => ColumnValue::Absent,
            Some((_, None)) => ColumnValue::Null,
            Some((_, Some(v))) => ColumnValue::Text((*v).into()),
        }
    }

    #[test]
    fn conditions_match_any_accepted_value_of_every_column() {
        let conditions =
            parse_conditions(&json!({"priority": ["urgent", "high"], "channel": "email"})).unwrap();
        let row = [("priority", Some("high")), ("channel", Some("email"))];
        assert!(matches(&conditions, lookup(&row)));
        let row = [("priority", Some("low")), ("channel", Some("email"))];
        assert!(!matches(&conditions, lookup(&row)));
        let row = [("priority", Some("high"))];
        assert!(
            !matches(&conditions, lookup(&row)),
            "a missing column never matches"
        );
        assert!(matches(&parse_conditions(&json!({})).unwrap(), lookup(&[])));
    }

    #[test]
    fn not_refuses_the_values_it_lists_and_not_null_is_is_not_null() {
        let conditions = parse_conditions(
            &json!({"sender_type": {"not": "bot"}, "private": {"not": [true, null]}, "assignee": {"not": null}}),
        )
        .unwrap();
        let row = [
            ("sender_type", Some("agent")),
            ("private", Some("f")),
            ("assignee", Some("ann")),
        ];
        assert!(matches(&conditions, lookup(&row)));
        // A NULL is not "bot": it meets {"not": "bot"}.
        let row = [
            ("sender_type", None),
            ("private", Some("f")),
            ("assignee", Some("ann")),
        ];
        assert!(matches(&conditions, lookup(&row)));
        for refused in [
            [
                ("sender_type", Some("bot")),
                ("private", Some("f")),
                ("assignee", Some("ann")),
            ],
            [
                ("sender_type", Some("agent")),
                ("private", Some("t")),
                ("assignee", Some("ann")),
            ],
            [
                ("sender_type", Some("agent")),
                ("private", None),
                ("assignee", Some("ann")),
            ],
            [
                ("sender_type", Some("agent")),
                ("private", Some("f")),
                ("assignee", None),
            ],
        ] {
            assert!(!matches(&conditions, lookup(&refused)), "{refused:?}");
        }
        // A column the table lacks meets no condition, negated or not.
        let row = [("private", Some("f")), ("assignee", Some("ann"))];
        assert!(!matches(&conditions, lookup(&row)));
    }

    #[test]
    fn operators_other_than_not_are_refused_naming_the_path() {
        for (conditions, message) in [
            (
                json!({"a": {"in": [1]}}),
                "conditions.a must be a value, an array of values or {\"not\": value or array}",
            ),
            (
                json!({"a": {"not": 1, "also": 2}}),
                "conditions.a must be a value",
            ),
            (
                json!({"a": {"not": []}}),
                "conditions.a.not must list at least one value, got []",
            ),
            (
                json!({"a": {"not": [1, {"b": 2}]}}),
                "conditions.a.not[1] must be a string, number, boolean or null",
            ),
        ] {
            let error = parse_conditions(&conditions).unwrap_err();
            assert!(error.contains(message), "{conditions}: {error}");
        }
    }

    #[test]
    fn numbers_booleans_and_null_compare_as_postgres_prints_them() {
        let conditions =
            parse_conditions(&json!({"tier": 2, "vip": true, "team": [null, "b"]})).unwrap();
        let row = [("tier", Some("2")), ("vip", Some("t")), ("team", None)];
        assert!(matches(&conditions, lookup(&row)));
        let row = [("tier", Some("2")), ("vip", Some("f")), ("team", None)];
        assert!(!matches(&conditions, lookup(&row)));
    }

    #[test]
    fn malformed_conditions_name_the_field() {
        let err = parse_conditions(&json!([1])).unwrap_err();
        assert!(err.contains("conditions"), "{err}");
        let err = parse_conditions(&json!({"team": []})).unwrap_err();
        assert!(err.contains("conditions.team"), "{err}");
        let err = parse_conditions(&json!({"team": ["a", {"x": 1}]})).unwrap_err();
        assert!(err.contains("conditions.team[1]"), "{err}");
    }
}
