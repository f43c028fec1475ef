//! The statistics the verdicts on distribution and cost rest on: Pearson's chi-square test of
//! uniformity, spread, and ratios. Pure functions over counts; `statrs` supplies the distribution.

use serde::Serialize;
use statrs::distribution::{ChiSquared, ContinuousCDF};

/// Pearson's chi-square goodness-of-fit test of `counts` against the uniform distribution.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct ChiSquare {
    pub statistic: f64,
    /// Degrees of freedom: members - 1.
    pub df: u32,
    /// The probability of a statistic at least this large if every member were equally likely.
    pub p_value: f64,
}

/// The test needs at least two members and at least one observation; otherwise there is nothing to
/// test and the answer is `None`, never a pass.
pub fn chi_square_uniform(counts: &[u64]) -> Option<ChiSquare> {
    let members = counts.len();
    let total: u64 = counts.iter().sum();
    if members < 2 || total == 0 {
        return None;
    }
    let expected = total as f64 / members as f64;
    let statistic: f64 = counts
        .iter()
        .map(|&c| (c as f64 - expected).powi(2) / expected)
        .sum();
    let df = (members - 1) as u32;
    let distribution = ChiSquared::new(f64::from(df)).expect("df >= 1 is a valid chi-square");
    Some(ChiSquare {
        statistic,
        df,
        p_value: distribution.sf(statistic),
    })
}

/// The largest count over the smallest: 1.0 is perfectly even; infinite when a member got nothing.
pub fn spread(counts: &[u64]) -> Option<f64> {
    let max = *counts.iter().max()?;
    let min = *counts.iter().min()?;
    if max == 0 {
        return None;
    }
    Some(if min == 0 {
        f64::INFINITY
    } else {
        max as f64 / min as f64
    })
}

/// The largest value over the first one (for cost: time per flow at the largest group against a
/// group of one). `None` when there is no positive baseline.
pub fn growth_over_first(values: &[f64]) -> Option<f64> {
    let first = *values.first()?;
    if first.is_nan() || first <= 0.0 {
        return None;
    }
    let max = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    Some(max / first)
}

/// Bonferroni: one claim tested on `tests` experiments at family-wise level `alpha` tests each at
/// `alpha / tests`, so that 32 fair distributions do not produce a false "uneven" 3% of the time.
pub fn bonferroni(alpha: f64, tests: usize) -> f64 {
    alpha / tests.max(1) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64, tolerance: f64) -> bool {
        (a - b).abs() <= tolerance
    }

    #[test]
    fn chi_square_matches_closed_form_for_two_degrees_of_freedom() {
        // Expected 20 each: (100 + 0 + 100) / 20 = 10; with df = 2 the survival function is
        // exp(-x/2), so p = exp(-5).
        let t = chi_square_uniform(&[10, 20, 30]).unwrap();
        assert!(close(t.statistic, 10.0, 1e-12), "{t:?}");
        assert_eq!(t.df, 2);
        assert!(close(t.p_value, (-5.0f64).exp(), 1e-12), "{t:?}");
    }

    #[test]
    fn chi_square_matches_table_values() {
        // Textbook critical values: 3.841 at df 1 and 16.919 at df 9 are the 5% points.
        let one = chi_square_uniform(&[0, 0]).is_none();
        assert!(one, "no observations, no test");
        // 40 vs 60: expected 50, statistic (100 + 100) / 50 = 4.0, df 1, p = 0.0455.
        let t = chi_square_uniform(&[40, 60]).unwrap();
        assert!(close(t.statistic, 4.0, 1e-12));
        assert!(close(t.p_value, 0.045_500_263_896_358_4, 1e-9), "{t:?}");
        // A perfectly even split has statistic 0 and p = 1.
        let even = chi_square_uniform(&[48; 16]).unwrap();
        assert_eq!(even.statistic, 0.0);
        assert!(close(even.p_value, 1.0, 1e-12));
        // Everything on one of 4 members out of 192 flows: p is astronomically small.
        let skewed = chi_square_uniform(&[192, 0, 0, 0]).unwrap();
        assert!(close(skewed.statistic, 576.0, 1e-9));
        assert!(skewed.p_value < 1e-100);
    }

    #[test]
    fn spread_and_growth() {
        assert_eq!(spread(&[10, 20, 5]), Some(4.0));
        assert_eq!(spread(&[3, 0]), Some(f64::INFINITY));
        assert_eq!(spread(&[]), None);
        assert_eq!(growth_over_first(&[100.0, 150.0, 120.0]), Some(1.5));
        assert_eq!(growth_over_first(&[0.0, 1.0]), None);
        assert_eq!(bonferroni(0.001, 4), 0.00025);
        assert_eq!(bonferroni(0.001, 0), 0.001);
    }
}
