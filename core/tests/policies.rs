//! Tests of policy choice and policy validation (`sla_core::policy`):
//! worked cases, then property tests against a brute-force model.
use proptest::prelude::*;
use serde_json::json;
use sla_core::policy::{
    parse_conditions, validate, ColumnValue, Condition, IntervalValue, Policy, PolicyDraft,
    PolicyOrder,
};
use sla_core::{Targets, MICROS_PER_HOUR};

fn policy(name: &str, position: i32, enabled: bool, conditions: serde_json::Value) -> Policy {
    Policy {
        name: name.to_owned(),
        position,
        enabled,
        calendar: None,
        conditions: parse_conditions(&conditions).unwrap(),
        targets: Targets {
            first_response: Some(MICROS_PER_HOUR),
            next_response: None,
            resolution: None,
            warn_fraction: None,
            release_fraction: None,
        },
        feedback_message: None,
        pause_statuses: vec![],
        tables: None,
    }
}

/// The ticket table of the worked cases.
const TABLE: u32 = 16_384;

fn row<'a>(values: &'a [(&'a str, Option<&'a str>)]) -> impl FnMut(&str) -> ColumnValue<'a> {
    move |column| match values.iter().find(|(c, _)| *c == column) {
        None => ColumnValue::Absent,
        Some((_, None)) => ColumnValue::Null,
        Some((_, Some(v))) => ColumnValue::Text((*v).into()),
    }
}

#[test]
fn the_first_enabled_match_by_position_then_name_applies() {
    // In name order, as the store reads them.
    let order = PolicyOrder::new(vec![
        policy("alpha", 2, true, json!({"priority": "urgent"})),
        policy("beta", 2, true, json!({"priority": "urgent"})),
        policy("first", 0, false, json!({})),
        policy("zeta", 1, true, json!({})),
    ]);
    let names: Vec<&str> = order.as_slice().iter().map(|p| p.name.as_str()).collect();
    // Disabled ones are left out; equal positions keep the name order.
    assert_eq!(names, ["zeta", "alpha", "beta"]);
    let chosen = order
        .choose(TABLE, row(&[("priority", Some("urgent"))]))
        .unwrap();
    assert_eq!(chosen.name, "zeta");
    let order = PolicyOrder::new(vec![
        policy("catch_all", 10, true, json!({})),
        policy("urgent", 1, true, json!({"priority": "urgent"})),
    ]);
    assert_eq!(
        order
            .choose(TABLE, row(&[("priority", Some("urgent"))]))
            .unwrap()
            .name,
        "urgent"
    );
    assert_eq!(
        order
            .choose(TABLE, row(&[("priority", Some("low"))]))
            .unwrap()
            .name,
        "catch_all"
    );
    assert!(PolicyOrder::<Policy>::new(vec![])
        .choose(TABLE, row(&[]))
        .is_none());
}

fn interval(months: i32, days: i32, micros: i64) -> IntervalValue<'static> {
    IntervalValue {
        months,
        days,
        micros,
        printed: "printed",
    }
}

fn draft<'a>(conditions: &'a serde_json::Value, pauses: &'a [Option<String>]) -> PolicyDraft<'a> {
    PolicyDraft {
        name: "p",
        first_response: None,
        next_response: None,
        resolution: None,
        warn_at: None,
        release_ownership_at: None,
        conditions,
        pause_statuses: pauses,
    }
}

#[test]
fn validation_names_the_policy_the_field_and_the_value() {
    let empty = json!({});
    let ok = draft(&empty, &[]);
    assert_eq!(validate(&ok), Ok(()));
    let cases: Vec<(PolicyDraft, &str)> = vec![
        (
            PolicyDraft {
                first_response: Some(IntervalValue {
                    printed: "-00:30:00",
                    ..interval(0, 0, -1_800_000_000)
                }),
                ..ok.clone()
            },
            "policy \"p\": first_response must be a positive interval without months or years, got -00:30:00",
        ),
        (
            PolicyDraft {
                resolution: Some(interval(1, 0, 0)),
                ..ok.clone()
            },
            "policy \"p\": resolution must be a positive interval without months or years, got printed",
        ),
        (
            PolicyDraft {
                first_response: Some(IntervalValue {
                    printed: "100000000:00:00",
                    ..interval(0, 0, 100_000_000 * MICROS_PER_HOUR)
                }),
                ..ok.clone()
            },
            "policy \"p\": first_response must be at most 87840 hours (ten years of business time), got 100000000:00:00",
        ),
        (
            PolicyDraft {
                warn_at: Some(1.5),
                ..ok.clone()
            },
            "policy \"p\": warn_at must be a fraction between 0 and 1 (exclusive), got 1.5",
        ),
        (
            PolicyDraft {
                warn_at: Some(f64::NAN),
                ..ok.clone()
            },
            "policy \"p\": warn_at must be a fraction between 0 and 1 (exclusive), got NaN",
        ),
        (
            PolicyDraft {
                release_ownership_at: Some(1e20),
                ..ok.clone()
            },
            "policy \"p\": release_ownership_at must be a fraction between 0 and 1 (exclusive), got 1e+20",
        ),
        (
            PolicyDraft {
                warn_at: Some(-1e-5),
                ..ok.clone()
            },
            "policy \"p\": warn_at must be a fraction between 0 and 1 (exclusive), got -1e-05",
        ),
        (
            PolicyDraft {
                release_ownership_at: Some(0.5),
                ..ok.clone()
            },
            "policy \"p\": release_ownership_at needs a first_response target",
        ),
    ];
    for (draft, expected) in cases {
        assert_eq!(validate(&draft).unwrap_err().message, expected);
    }
    let array = json!([1]);
    assert!(validate(&draft(&array, &[]))
        .unwrap_err()
        .message
        .contains("conditions must be a JSON object"));
    let nested = json!({"team": [{"x": 1}]});
    assert!(validate(&draft(&nested, &[]))
        .unwrap_err()
        .message
        .contains("conditions.team[0]"));
    let pauses = [Some("pending".to_owned()), None];
    assert_eq!(
        validate(&draft(&empty, &pauses)).unwrap_err().message,
        "policy \"p\": pause_statuses must not contain NULL"
    );
    // A day is 24 hours when PostgreSQL compares intervals: '-1 day 25 hours'
    // is one hour.
    let one_hour = PolicyDraft {
        first_response: Some(interval(0, -1, 25 * MICROS_PER_HOUR)),
        ..ok.clone()
    };
    assert_eq!(validate(&one_hour), Ok(()));
}

// ---------------------------------------------------------------------------
// Properties

const COLUMNS: [&str; 3] = ["priority", "channel", "team"];
const VALUES: [&str; 3] = ["a", "b", "c"];

fn any_conditions() -> impl Strategy<Value = Vec<Condition>> {
    proptest::collection::btree_map(
        prop::sample::select(COLUMNS.to_vec()),
        (
            proptest::collection::vec(
                prop::option::weighted(0.8, prop::sample::select(VALUES.to_vec())),
                1..3,
            ),
            prop::bool::weighted(0.3),
        ),
        0..3,
    )
    .prop_map(|map| {
        map.into_iter()
            .map(|(column, (accepted, negated))| Condition {
                column: column.to_owned(),
                accepted: accepted.into_iter().map(|v| v.map(str::to_owned)).collect(),
                negated,
            })
            .collect()
    })
}

fn any_policies() -> impl Strategy<Value = Vec<Policy>> {
    proptest::collection::vec(
        (
            0..3i32,
            prop::sample::select(vec!["a", "b", "B", "c", "é", "a1"]),
            any::<bool>(),
            any_conditions(),
            // Every table, or some of tables 1 and 2.
            prop::option::weighted(0.3, proptest::collection::vec(1..3u32, 1..3)),
        ),
        0..6,
    )
    .prop_map(|rows| {
        let mut seen = std::collections::HashSet::new();
        rows.into_iter()
            // Names are a primary key.
            .filter(|(_, name, _, _, _)| seen.insert(*name))
            .map(|(position, name, enabled, conditions, tables)| Policy {
                conditions,
                tables,
                ..policy(name, position, enabled, json!({}))
            })
            .collect()
    })
}

/// A ticket: each column absent, NULL or a value.
fn any_ticket() -> impl Strategy<Value = Vec<(&'static str, Option<Option<&'static str>>)>> {
    let cell = prop::option::weighted(
        0.9,
        prop::option::weighted(0.8, prop::sample::select(VALUES.to_vec())),
    );
    (cell.clone(), cell.clone(), cell)
        .prop_map(|(a, b, c)| COLUMNS.into_iter().zip([a, b, c]).collect::<Vec<_>>())
}

proptest! {
    /// The chosen policy is the minimum, by (position, place in name
    /// order), of the enabled policies that list the ticket's table (or no
    /// table) and whose every condition holds, checked column by column here
    /// without the matcher.
    #[test]
    fn choose_agrees_with_a_brute_force_model(
        policies in any_policies(),
        ticket in any_ticket(),
        table in 1..3u32,
    ) {
        // Absent columns meet nothing; a present value (NULL included)
        // meets a condition when it is listed, or when it is not and the
        // condition is negated.
        let holds = |condition: &Condition| match ticket.iter().find(|(c, _)| *c == condition.column) {
            Some((_, Some(value))) => {
                condition.accepted.iter().any(|a| a.as_deref() == *value) ^ condition.negated
            }
            _ => false,
        };
        let expected = policies
            .iter()
            .enumerate()
            .filter(|(_, p)| {
                let listed = p.tables.as_ref().is_none_or(|tables| tables.contains(&table));
                p.enabled && listed && p.conditions.iter().all(holds)
            })
            .min_by_key(|(place, p)| (p.position, *place))
            .map(|(_, p)| p.name.clone());
        let order = PolicyOrder::new(policies.iter());
        let chosen = order
            .choose(table, |column| match ticket.iter().find(|(c, _)| *c == column) {
                Some((_, Some(Some(v)))) => ColumnValue::Text((*v).into()),
                Some((_, Some(None))) => ColumnValue::Null,
                _ => ColumnValue::Absent,
            })
            .map(|p| p.name.clone());
        prop_assert_eq!(chosen, expected);
    }

    /// Validation accepts exactly the rows the documented rules allow.
    #[test]
    fn validate_accepts_exactly_the_documented_rows(
        target in prop::option::of((-2..3i32, prop::sample::select(vec![-2, -1, 0, 1, 3659, 3660, 3661]), -3..4i64)),
        warn_at in prop::option::of(prop::sample::select(vec![-1.0, 0.0, 0.25, 0.999, 1.0, 2.0, f64::NAN])),
        release in prop::option::of(prop::sample::select(vec![0.0, 0.5, 1.0])),
        null_pause in any::<bool>(),
    ) {
        let conditions = json!({});
        let pauses = if null_pause { vec![None] } else { vec![Some("pending".to_owned())] };
        let first_response = target.map(|(months, days, hours)| interval(months, days, hours * MICROS_PER_HOUR));
        let draft = PolicyDraft {
            first_response,
            ..draft(&conditions, &pauses)
        };
        let fraction_ok = |f: Option<f64>| f.is_none_or(|f| f > 0.0 && f < 1.0);
        let target_ok = target.is_none_or(|(months, days, hours)| {
            let hours = days as i64 * 24 + hours;
            months == 0 && hours > 0 && hours <= 87_840
        });
        let expected = target_ok
            && fraction_ok(warn_at)
            && fraction_ok(release)
            && (release.is_none() || target.is_some())
            && !null_pause;
        let draft = PolicyDraft { warn_at, release_ownership_at: release, ..draft };
        prop_assert_eq!(validate(&draft).is_ok(), expected);
    }
}
