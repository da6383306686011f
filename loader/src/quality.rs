//! Whether the exposures of an experiment can be trusted for its analysis, the checks
//! GrowthBook makes, computed in the warehouse for `exposures status`:
//!
//! - **Sample-ratio mismatch (SRM).** Users per variation against the expected weights
//!   (equal, or `--weights EXP=50,50`), Pearson's chi-square test; flagged below
//!   p = 0.001, GrowthBook's default threshold. A pipeline that loses events unevenly by
//!   variation shows up here first.
//! - **Multiple exposures.** The share of users seen in more than one variation of the
//!   same experiment; flagged above 1 %.
//!
//! Both are one SQL query each that runs unchanged on Redshift and PostgreSQL; users are
//! `ds_user_id`s (rows without one are not counted), within the `--window`.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use schemas::ddl::Dialect;

use crate::load::from_row;

/// GrowthBook's default SRM threshold.
pub const SRM_P_VALUE: f64 = 0.001;
/// Share of users in more than one variation above which an experiment is flagged.
pub const MULTIPLE_EXPOSURE_SHARE: f64 = 0.01;

/// A timestamp literal comparable with `exposed_at` (or `received_at`) in `dialect`.
pub(crate) fn timestamp(dialect: Dialect, at: DateTime<Utc>) -> String {
    let text = at.format("%Y-%m-%d %H:%M:%S");
    match dialect {
        Dialect::Postgres => format!("TIMESTAMPTZ '{text}+00'"),
        Dialect::Redshift => format!("TIMESTAMP '{text}'"),
    }
}

/// Users of one variation of an experiment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsersPerVariation {
    pub experiment_id: String,
    pub variation_id: String,
    pub users: i64,
}

from_row!(
    "status: users per variation",
    UsersPerVariation {
        experiment_id: get,
        variation_id: get,
        users: get
    }
);

/// Users of an experiment, and how many of them were exposed to more than one variation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MultipleExposures {
    pub experiment_id: String,
    pub users: i64,
    pub users_in_several: i64,
}

from_row!(
    "status: multiple exposures",
    MultipleExposures {
        experiment_id: get,
        users: get,
        users_in_several: get
    }
);

/// [`UsersPerVariation`] rows of the users exposed since `since`.
pub fn users_per_variation_sql(dialect: Dialect, schema: &str, since: DateTime<Utc>) -> String {
    format!(
        "SELECT experiment_id, variation_id, COUNT(DISTINCT ds_user_id) FROM {schema}.exposures \
         WHERE exposed_at >= {} AND ds_user_id IS NOT NULL \
         GROUP BY experiment_id, variation_id ORDER BY experiment_id, variation_id",
        timestamp(dialect, since)
    )
}

/// [`MultipleExposures`] rows of the users exposed since `since`.
pub fn multiple_exposures_sql(dialect: Dialect, schema: &str, since: DateTime<Utc>) -> String {
    format!(
        "SELECT experiment_id, COUNT(*), SUM(CASE WHEN variations > 1 THEN 1 ELSE 0 END) FROM \
         (SELECT experiment_id, ds_user_id, COUNT(DISTINCT variation_id) AS variations FROM {schema}.exposures \
         WHERE exposed_at >= {} AND ds_user_id IS NOT NULL GROUP BY experiment_id, ds_user_id) per_user \
         GROUP BY experiment_id ORDER BY experiment_id",
        timestamp(dialect, since)
    )
}

/// One experiment's checks.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ExperimentQuality {
    pub experiment_id: String,
    /// (variation_id, users, expected share), in variation order.
    pub variations: Vec<VariationUsers>,
    pub chi_square: f64,
    /// SRM p-value; 1 when there is nothing to compare (one variation, no users).
    pub p_value: f64,
    pub srm: bool,
    pub users: i64,
    pub users_in_several_variations: i64,
    pub multiple_exposure_share: f64,
    pub multiple_exposures: bool,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct VariationUsers {
    pub variation_id: String,
    pub users: i64,
    pub expected_share: f64,
}

impl ExperimentQuality {
    pub fn needs_attention(&self) -> bool {
        self.srm || self.multiple_exposures
    }
}

/// Variation ids in their natural order: numeric ones by value ("2" < "10"), then others.
fn variation_order(a: &str, b: &str) -> std::cmp::Ordering {
    match (a.parse::<i64>(), b.parse::<i64>()) {
        (Ok(x), Ok(y)) => x.cmp(&y),
        (Ok(_), Err(_)) => std::cmp::Ordering::Less,
        (Err(_), Ok(_)) => std::cmp::Ordering::Greater,
        _ => a.cmp(b),
    }
}

/// Evaluates the rows of the two queries. `weights` maps an experiment to the weights of
/// its variations in variation order ("0", "1", …); a variation with a weight and no
/// users counts as 0 users (a variation that lost everything is the worst mismatch).
pub fn evaluate(
    per_variation: &[UsersPerVariation],
    multiple: &[MultipleExposures],
    weights: &BTreeMap<String, Vec<f64>>,
) -> Vec<ExperimentQuality> {
    let mut experiments: BTreeMap<&str, Vec<(String, i64)>> = BTreeMap::new();
    for row in per_variation {
        experiments
            .entry(&row.experiment_id)
            .or_default()
            .push((row.variation_id.clone(), row.users));
    }
    experiments
        .into_iter()
        .map(|(experiment, mut seen)| {
            seen.sort_by(|a, b| variation_order(&a.0, &b.0));
            let given = weights.get(experiment);
            if let Some(given) = given {
                // Variations the weights name but nobody was seen in.
                for id in (0..given.len()).map(|index| index.to_string()) {
                    if !seen.iter().any(|(seen_id, _)| *seen_id == id) {
                        seen.push((id, 0));
                    }
                }
                seen.sort_by(|a, b| variation_order(&a.0, &b.0));
            }
            let shares: Vec<f64> = match given {
                Some(given) if given.len() == seen.len() && given.iter().all(|w| *w > 0.0) => {
                    let total: f64 = given.iter().sum();
                    given.iter().map(|w| w / total).collect()
                }
                _ => vec![1.0 / seen.len().max(1) as f64; seen.len()],
            };
            let total: i64 = seen.iter().map(|(_, users)| users).sum();
            let chi_square: f64 = seen
                .iter()
                .zip(&shares)
                .map(|((_, users), share)| {
                    let expected = total as f64 * share;
                    if expected > 0.0 {
                        (*users as f64 - expected).powi(2) / expected
                    } else {
                        0.0
                    }
                })
                .sum();
            let p_value = if seen.len() > 1 && total > 0 {
                chi_square_p_value(chi_square, (seen.len() - 1) as f64)
            } else {
                1.0
            };
            let (users, several) = multiple
                .iter()
                .find(|row| row.experiment_id == experiment)
                .map(|row| (row.users, row.users_in_several))
                .unwrap_or((0, 0));
            let share = if users > 0 {
                several as f64 / users as f64
            } else {
                0.0
            };
            ExperimentQuality {
                experiment_id: experiment.to_owned(),
                variations: seen
                    .into_iter()
                    .zip(shares)
                    .map(|((variation_id, users), expected_share)| VariationUsers {
                        variation_id,
                        users,
                        expected_share,
                    })
                    .collect(),
                chi_square,
                p_value,
                srm: p_value < SRM_P_VALUE,
                users,
                users_in_several_variations: several,
                multiple_exposure_share: share,
                multiple_exposures: share > MULTIPLE_EXPOSURE_SHARE,
            }
        })
        .collect()
}

/// P(X ≥ `statistic`) for X chi-square distributed with `degrees` degrees of freedom:
/// the regularized upper incomplete gamma function Q(k/2, x/2).
pub fn chi_square_p_value(statistic: f64, degrees: f64) -> f64 {
    if statistic <= 0.0 {
        return 1.0;
    }
    upper_regularized_gamma(degrees / 2.0, statistic / 2.0)
}

/// ln Γ(x), Lanczos approximation (g = 7, 9 terms), accurate to ~1e-15 for x > 0.
fn ln_gamma(x: f64) -> f64 {
    const COEFFICIENTS: [f64; 9] = [
        0.999_999_999_999_809_9,
        676.520_368_121_885_1,
        -1_259.139_216_722_402_8,
        771.323_428_777_653_1,
        -176.615_029_162_140_6,
        12.507_343_278_686_905,
        -0.138_571_095_265_720_12,
        9.984_369_578_019_572e-6,
        1.505_632_735_149_311_6e-7,
    ];
    if x < 0.5 {
        // Reflection: Γ(x)Γ(1−x) = π / sin(πx).
        return (std::f64::consts::PI / (std::f64::consts::PI * x).sin()).ln() - ln_gamma(1.0 - x);
    }
    let x = x - 1.0;
    let mut sum = COEFFICIENTS[0];
    for (i, c) in COEFFICIENTS.iter().enumerate().skip(1) {
        sum += c / (x + i as f64);
    }
    let t = x + 7.5;
    0.5 * (2.0 * std::f64::consts::PI).ln() + (x + 0.5) * t.ln() - t + sum.ln()
}

/// Q(a, x) = Γ(a, x) / Γ(a): a series below a + 1, a continued fraction above
/// (Numerical Recipes §6.2).
fn upper_regularized_gamma(a: f64, x: f64) -> f64 {
    const EPSILON: f64 = 1e-15;
    const ITERATIONS: usize = 1_000;
    let log_prefactor = -x + a * x.ln() - ln_gamma(a);
    if x < a + 1.0 {
        let (mut term, mut sum, mut n) = (1.0 / a, 1.0 / a, a);
        for _ in 0..ITERATIONS {
            n += 1.0;
            term *= x / n;
            sum += term;
            if term.abs() < sum.abs() * EPSILON {
                break;
            }
        }
        (1.0 - sum * log_prefactor.exp()).clamp(0.0, 1.0)
    } else {
        let tiny = f64::MIN_POSITIVE / EPSILON;
        let mut b = x + 1.0 - a;
        let mut c = 1.0 / tiny;
        let mut d = 1.0 / b;
        let mut h = d;
        for i in 1..ITERATIONS {
            let an = -(i as f64) * (i as f64 - a);
            b += 2.0;
            d = an * d + b;
            if d.abs() < tiny {
                d = tiny;
            }
            c = b + an / c;
            if c.abs() < tiny {
                c = tiny;
            }
            d = 1.0 / d;
            let delta = d * c;
            h *= delta;
            if (delta - 1.0).abs() < EPSILON {
                break;
            }
        }
        (log_prefactor.exp() * h).clamp(0.0, 1.0)
    }
}

/// Parses `--weights EXP=50,50` (repeatable).
pub fn parse_weights(text: &str) -> Result<(String, Vec<f64>), String> {
    let (experiment, weights) = text
        .split_once('=')
        .ok_or_else(|| format!("expected EXPERIMENT=W1,W2,…, got '{text}'"))?;
    let weights: Vec<f64> = weights
        .split(',')
        .map(|w| w.trim().parse::<f64>())
        .collect::<Result<_, _>>()
        .map_err(|e| format!("weights of '{experiment}': {e}"))?;
    if experiment.trim().is_empty()
        || weights.len() < 2
        || weights.iter().any(|w| !w.is_finite() || *w <= 0.0)
    {
        return Err(format!(
            "expected EXPERIMENT=W1,W2,… with two or more positive weights, got '{text}'"
        ));
    }
    Ok((experiment.trim().to_owned(), weights))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seen(experiment: &str, variation: &str, users: i64) -> UsersPerVariation {
        UsersPerVariation {
            experiment_id: experiment.to_owned(),
            variation_id: variation.to_owned(),
            users,
        }
    }

    fn several(experiment: &str, users: i64, users_in_several: i64) -> MultipleExposures {
        MultipleExposures {
            experiment_id: experiment.to_owned(),
            users,
            users_in_several,
        }
    }

    #[test]
    fn p_values_match_the_chi_square_table() {
        // Critical values from any chi-square table.
        for (statistic, degrees, p) in [
            (3.841_458_820_694_124, 1.0, 0.05),
            (10.827_566_170_662_733, 1.0, 0.001),
            (5.991_464_547_107_979, 2.0, 0.05),
            (13.815_510_557_964_274, 2.0, 0.001),
            (16.266_236_196_238_13, 3.0, 0.001),
            (0.454_936_423_119_572_8, 1.0, 0.5),
        ] {
            let got = chi_square_p_value(statistic, degrees);
            assert!(
                (got - p).abs() < 1e-9,
                "χ²={statistic}, df={degrees}: {got} vs {p}"
            );
        }
        assert_eq!(chi_square_p_value(0.0, 1.0), 1.0);
        assert!(chi_square_p_value(400.0, 1.0) < 1e-80);
    }

    #[test]
    fn a_60_40_split_of_a_50_50_experiment_is_flagged_and_a_fair_one_is_not() {
        let rows =
            |a: i64, b: i64, experiment: &str| vec![seen(experiment, "0", a), seen(experiment, "1", b)];
        let mut per_variation = rows(6_000, 4_000, "skewed");
        per_variation.extend(rows(5_030, 4_970, "fair"));
        let result = evaluate(&per_variation, &[], &BTreeMap::new());
        assert_eq!(result[0].experiment_id, "fair");
        assert!(!result[0].srm, "{:?}", result[0]);
        assert!(result[0].p_value > 0.5);
        assert!(result[1].srm, "{:?}", result[1]);
        assert!((result[1].chi_square - 400.0).abs() < 1e-9);

        // The same 60/40 is what a 60/40 experiment should see.
        let weights = BTreeMap::from([("skewed".to_owned(), vec![60.0, 40.0])]);
        let result = evaluate(&rows(6_000, 4_000, "skewed"), &[], &weights);
        assert!(!result[0].srm, "{:?}", result[0]);
        assert_eq!(result[0].variations[0].expected_share, 0.6);
    }

    #[test]
    fn a_variation_that_lost_every_user_is_a_mismatch() {
        let weights = BTreeMap::from([("e".to_owned(), vec![50.0, 50.0])]);
        let result = evaluate(&[seen("e", "0", 1_000)], &[], &weights);
        assert_eq!(result[0].variations.len(), 2);
        assert_eq!(result[0].variations[1].users, 0);
        assert!(result[0].srm);
    }

    #[test]
    fn multiple_exposures_above_one_percent_are_flagged() {
        let per_variation = [seen("e", "0", 100), seen("e", "1", 100)];
        let flagged = evaluate(&per_variation, &[several("e", 197, 3)], &BTreeMap::new());
        assert_eq!(flagged[0].multiple_exposure_share, 3.0 / 197.0);
        assert!(flagged[0].multiple_exposures);
        let fine = evaluate(&per_variation, &[several("e", 200, 2)], &BTreeMap::new());
        assert!(!fine[0].multiple_exposures, "exactly 1 % is not above it");
    }

    #[test]
    fn variations_sort_numerically_and_weights_parse() {
        let per_variation = [seen("e", "10", 1), seen("e", "2", 1), seen("e", "control", 1)];
        let result = evaluate(&per_variation, &[], &BTreeMap::new());
        let ids: Vec<&str> = result[0]
            .variations
            .iter()
            .map(|v| v.variation_id.as_str())
            .collect();
        assert_eq!(ids, ["2", "10", "control"]);
        assert_eq!(parse_weights("exp=50, 50"), Ok(("exp".into(), vec![50.0, 50.0])));
        for bad in ["exp", "exp=50", "=1,1", "exp=1,-1", "exp=a,b"] {
            assert!(parse_weights(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_queries_compare_with_each_dialects_timestamps() {
        let since = DateTime::parse_from_rfc3339("2026-11-18T10:00:00Z")
            .expect("time")
            .with_timezone(&Utc);
        assert!(users_per_variation_sql(Dialect::Postgres, "a", since)
            .contains("exposed_at >= TIMESTAMPTZ '2026-11-18 10:00:00+00'"));
        assert!(multiple_exposures_sql(Dialect::Redshift, "a", since)
            .contains("exposed_at >= TIMESTAMP '2026-11-18 10:00:00'"));
    }
}
