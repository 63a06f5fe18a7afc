//! Policy conditions: which tickets a policy applies to.
//!
//! Conditions map a ticket column to a value or an array of accepted values,
//! e.g. `{"priority": ["urgent", "high"], "channel": "email"}`. A ticket
//! matches when every named column holds one of its accepted values, compared
//! as PostgreSQL prints them; JSON `null` accepts SQL NULL. `{}` matches
//! every ticket.
use serde_json::Value;

#[derive(Debug, Clone, PartialEq)]
pub struct Condition {
    pub column: String,
    /// Accepted values as text; `None` accepts NULL.
    pub accepted: Vec<Option<String>>,
}

/// What a ticket's column holds, as seen by the matcher.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnValue<'a> {
    /// The ticket table has no such column: the condition cannot hold.
    Absent,
    Null,
    Text(&'a str),
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
            let values: Vec<&Value> = match wanted {
                Value::Array(items) => items.iter().collect(),
                single => vec![single],
            };
            if values.is_empty() {
                return Err(format!(
                    "conditions.{column} must accept at least one value, got []"
                ));
            }
            let accepted = values
                .iter()
                .enumerate()
                .map(|(i, v)| accepted_text(v).ok_or_else(|| {
                    format!("conditions.{column}[{i}] must be a string, number, boolean or null, got {v}")
                }))
                .collect::<Result<Vec<_>, String>>()?;
            Ok(Condition {
                column: column.clone(),
                accepted,
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
        .all(|condition| match value_of(&condition.column) {
            ColumnValue::Absent => false,
            ColumnValue::Null => condition.accepted.iter().any(Option::is_none),
            ColumnValue::Text(text) => condition
                .accepted
                .iter()
                .any(|accepted| accepted.as_deref() == Some(text)),
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn lookup<'a>(row: &'a [(&'a str, Option<&'a str>)]) -> impl FnMut(&str) -> ColumnValue<'a> {
        move |column| match row.iter().find(|(c, _)| *c == column) {
            None => ColumnValue::Absent,
            Some((_, None)) => ColumnValue::Null,
            Some((_, Some(v))) => ColumnValue::Text(v),
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
