//! Audit statistics as pure functions over plain distance slices: distance
//! to closest record (DCR), the nearest-neighbour ratio, the data-copying
//! test of Meehan, Chaudhuri and Dasgupta (2020) and duplicate counts.
//!
//! Degenerate inputs never panic. A value that is undefined (a median of no
//! values, a ratio of 0 / 0, a test with an empty sample) is NaN, and NaN
//! inputs are ignored wherever a statistic summarises a sample.
//!
//! # The nearest-neighbour ratio threshold
//!
//! The default threshold of 0.5 (with k = 50, pixel features) comes from
//! the ratios of real images that were never trained on, the 10,000 images
//! of the CIFAR-10 test split, against CIFAR-10 training images:
//!
//! | training images | below 0.3 | below 0.4 | below 0.5 | below 0.6 | below 0.7 |
//! |---|---|---|---|---|---|
//! | 10,000 | 0.05% | 0.23% | 0.60% | 1.03% | 2.54% |
//! | 49,000 | 0.21% | 0.74% | 1.82% | 3.05% | 4.77% |
//!
//! measured with `fedsynth audit --synthetic test_batch.bin --train DIR
//! --holdout-fraction 0.02 [--limit-train 10000]` and the per-image ratios
//! in its `audit.json`. In the planted-copy tests (`tests/audit.rs`, 3,000
//! training images) the held-out real images have ratios of 0.43 to 0.95
//! (median 0.86), while exact and mirrored copies have 0, copies with
//! Gaussian noise of sigma 2/255 at most 0.06, and copies shifted by one
//! pixel with a reflected border at most 0.12. With 0.5, under 2% of real
//! images are flagged even against the whole training split, so a release
//! gate drops few genuine images, and the copies stay far below the
//! threshold. The rate grows with the training set because more real
//! near-duplicates are found: the closest test-training pairs of these runs
//! are the same photographs (some mirrored), so part of the flagged real
//! images are duplicates inside CIFAR-10 itself rather than false alarms.

use serde::{Deserialize, Serialize};

/// Returns the `p`-th percentile (0-100) of the non-NaN `values`, linearly
/// interpolated between closest ranks (numpy's default), or NaN when none.
pub fn percentile(values: &[f64], p: f64) -> f64 {
    let mut sorted: Vec<f64> = values.iter().copied().filter(|v| !v.is_nan()).collect();
    if sorted.is_empty() || p.is_nan() {
        return f64::NAN;
    }
    sorted.sort_by(f64::total_cmp);
    let position = (p.clamp(0.0, 100.0) / 100.0) * (sorted.len() - 1) as f64;
    let lower = position.floor() as usize;
    let upper = position.ceil() as usize;
    let fraction = position - lower as f64;
    if lower == upper {
        sorted[lower]
    } else {
        sorted[lower] + (sorted[upper] - sorted[lower]) * fraction
    }
}

/// Returns the median of the non-NaN `values`, or NaN when none.
pub fn median(values: &[f64]) -> f64 {
    percentile(values, 50.0)
}

/// Returns the share of non-NaN `values` strictly below `threshold`, or NaN
/// when there is no such value.
pub fn share_below(values: &[f64], threshold: f64) -> f64 {
    let valid: Vec<f64> = values.iter().copied().filter(|v| !v.is_nan()).collect();
    if valid.is_empty() || threshold.is_nan() {
        return f64::NAN;
    }
    let below = valid.iter().filter(|&&v| v < threshold).count();
    below as f64 / valid.len() as f64
}

/// Distance to closest record of synthetic and held-out real images.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DcrStats {
    #[serde(with = "super::nan_serde::number")]
    pub synthetic_median: f64,
    #[serde(with = "super::nan_serde::number")]
    pub synthetic_p5: f64,
    #[serde(with = "super::nan_serde::number")]
    pub holdout_median: f64,
    #[serde(with = "super::nan_serde::number")]
    pub holdout_p5: f64,
    /// Share of synthetic images closer to the training set than the
    /// holdout's 5th percentile; about 0.05 when nothing is copied.
    #[serde(with = "super::nan_serde::number")]
    pub synthetic_share_below_holdout_p5: f64,
}

/// Summarises the DCR of synthetic and held-out images.
pub fn dcr_stats(synthetic: &[f64], holdout: &[f64]) -> DcrStats {
    let holdout_p5 = percentile(holdout, 5.0);
    DcrStats {
        synthetic_median: median(synthetic),
        synthetic_p5: percentile(synthetic, 5.0),
        holdout_median: median(holdout),
        holdout_p5,
        synthetic_share_below_holdout_p5: share_below(synthetic, holdout_p5),
    }
}

/// Returns the nearest-neighbour ratio of one query: the distance to its
/// nearest record divided by the mean distance to its `distances.len()`
/// nearest records (ascending).
///
/// NaN when there is no neighbour, when any distance is not finite, or when
/// every distance is 0 (0 / 0; the duplicate count reports that case).
pub fn nn_ratio(distances: &[f32]) -> f64 {
    if distances.is_empty() || distances.iter().any(|d| !d.is_finite()) {
        return f64::NAN;
    }
    let mean = distances.iter().map(|&d| f64::from(d)).sum::<f64>() / distances.len() as f64;
    if mean == 0.0 {
        return f64::NAN;
    }
    f64::from(distances[0]) / mean
}

/// Returns [`nn_ratio`] of each query in `distances`, `k` values per query.
/// No query has a ratio when `k == 0`.
pub fn nn_ratios(distances: &[f32], k: usize) -> Vec<f64> {
    if k == 0 {
        return Vec::new();
    }
    distances.chunks_exact(k).map(nn_ratio).collect()
}

/// Returns the Mann-Whitney U statistic of `first` against `second`: the
/// number of pairs where the value from `first` is larger, ties counting
/// one half. NaN values are ignored.
pub fn mann_whitney_u(first: &[f64], second: &[f64]) -> f64 {
    let mut pooled: Vec<(f64, bool)> = first
        .iter()
        .filter(|v| !v.is_nan())
        .map(|&v| (v, true))
        .chain(second.iter().filter(|v| !v.is_nan()).map(|&v| (v, false)))
        .collect();
    pooled.sort_by(|a, b| a.0.total_cmp(&b.0));

    // Rank sum of `first`, with tied values sharing their average rank.
    let mut rank_sum = 0.0;
    let mut start = 0;
    while start < pooled.len() {
        let mut end = start;
        while end < pooled.len() && pooled[end].0 == pooled[start].0 {
            end += 1;
        }
        let average_rank = (start + 1 + end) as f64 / 2.0;
        let from_first = pooled[start..end].iter().filter(|p| p.1).count();
        rank_sum += average_rank * from_first as f64;
        start = end;
    }
    let n = pooled.iter().filter(|p| p.1).count() as f64;
    rank_sum - n * (n + 1.0) / 2.0
}

/// Returns the Mann-Whitney U of `first` against `second` as a z-score
/// under the null hypothesis of one common distribution.
///
/// Uses the normal approximation without a tie correction and with a
/// continuity correction of 0.5 toward the one-sided alternative that
/// `first` is smaller, as the reference implementation of the data-copying
/// test does; so two samples of one repeated value score `0.5 / sigma`.
/// NaN when either sample has no non-NaN value.
pub fn mann_whitney_z(first: &[f64], second: &[f64]) -> f64 {
    let n = first.iter().filter(|v| !v.is_nan()).count() as f64;
    let m = second.iter().filter(|v| !v.is_nan()).count() as f64;
    if n == 0.0 || m == 0.0 {
        return f64::NAN;
    }
    let u = mann_whitney_u(first, second);
    let mean = n * m / 2.0 - 0.5;
    let sigma = (n * m * (n + m + 1.0) / 12.0).sqrt();
    (u - mean) / sigma
}

/// Distances to the nearest training record inside one cell of the
/// partition, for the synthetic and the held-out images in that cell.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CellDistances {
    pub synthetic: Vec<f64>,
    pub holdout: Vec<f64>,
}

/// The data-copying statistic C_T and how it was formed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CopyingTest {
    /// Holdout-weighted mean of the per-cell z-scores; negative means the
    /// synthetic images sit closer to the training set than real unseen
    /// images do (data copying), positive means farther (underfitting).
    /// NaN when no cell qualifies.
    #[serde(with = "super::nan_serde::number")]
    pub c_t: f64,
    /// Cells in the partition.
    pub cells: usize,
    /// Cells that entered C_T.
    pub cells_used: usize,
    /// Minimum synthetic images for a cell to enter C_T.
    pub min_synthetic_per_cell: usize,
    /// z-score per cell, NaN for a skipped cell.
    #[serde(with = "super::nan_serde::numbers")]
    pub cell_z: Vec<f64>,
}

/// Computes C_T (Meehan, Chaudhuri and Dasgupta, 2020, "A Non-Parametric
/// Test to Detect Data-Copying in Generative Models").
///
/// Per cell, the Mann-Whitney z-score compares the synthetic distances with
/// the held-out ones ([`mann_whitney_z`] with the synthetic sample first).
/// C_T averages them weighted by each cell's share of held-out images. As
/// in the paper, cells with too few generated samples are skipped, because
/// their z-score is too noisy: here, cells with fewer than
/// `min_synthetic_per_cell` synthetic images, and cells without held-out
/// images, whose weight is 0.
pub fn copying_test(cells: &[CellDistances], min_synthetic_per_cell: usize) -> CopyingTest {
    let cell_z: Vec<f64> = cells
        .iter()
        .map(|cell| {
            let enough = cell.synthetic.len() >= min_synthetic_per_cell.max(1);
            if enough && !cell.holdout.is_empty() {
                mann_whitney_z(&cell.synthetic, &cell.holdout)
            } else {
                f64::NAN
            }
        })
        .collect();

    let mut weighted = 0.0;
    let mut weight = 0.0;
    let mut used = 0;
    for (cell, &z) in cells.iter().zip(&cell_z) {
        if z.is_nan() {
            continue;
        }
        let share = cell.holdout.len() as f64;
        weighted += share * z;
        weight += share;
        used += 1;
    }
    let c_t = if weight > 0.0 {
        weighted / weight
    } else {
        f64::NAN
    };
    CopyingTest {
        c_t,
        cells: cells.len(),
        cells_used: used,
        min_synthetic_per_cell,
        cell_z,
    }
}

/// Exact and near duplicates among synthetic images.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Duplicates {
    /// Images whose nearest training record is at distance 0.
    pub exact: usize,
    /// Images at a distance above 0 and below `near_threshold`.
    pub near: usize,
    pub near_threshold: f64,
}

/// Counts exact and near duplicates from the synthetic DCRs; NaN distances
/// count as neither.
pub fn duplicates(dcr: &[f64], near_threshold: f64) -> Duplicates {
    let exact = dcr.iter().filter(|&&d| d == 0.0).count();
    let near = dcr
        .iter()
        .filter(|&&d| d > 0.0 && d < near_threshold)
        .count();
    Duplicates {
        exact,
        near,
        near_threshold,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentile_interpolates_like_numpy() {
        let values = [4.0, 1.0, 3.0, 2.0];
        assert_eq!(percentile(&values, 0.0), 1.0);
        assert_eq!(percentile(&values, 100.0), 4.0);
        assert_eq!(median(&values), 2.5);
        assert!((percentile(&values, 5.0) - 1.15).abs() < 1e-12);
    }

    #[test]
    fn percentile_of_empty_is_nan() {
        assert!(percentile(&[], 5.0).is_nan());
        assert!(median(&[f64::NAN]).is_nan());
    }

    #[test]
    fn percentile_ignores_nan() {
        assert_eq!(median(&[f64::NAN, 1.0, 3.0]), 2.0);
    }

    #[test]
    fn share_below_is_strict() {
        assert_eq!(share_below(&[1.0, 2.0, 3.0, 4.0], 3.0), 0.5);
        assert!(share_below(&[], 1.0).is_nan());
        assert!(share_below(&[1.0], f64::NAN).is_nan());
    }

    #[test]
    fn dcr_stats_compare_against_holdout_p5() {
        let holdout: Vec<f64> = (0..=100).map(f64::from).collect();
        let synthetic = [1.0, 4.0, 6.0, 50.0];
        let stats = dcr_stats(&synthetic, &holdout);
        assert_eq!(stats.holdout_p5, 5.0);
        assert_eq!(stats.holdout_median, 50.0);
        assert_eq!(stats.synthetic_median, 5.0);
        assert_eq!(stats.synthetic_share_below_holdout_p5, 0.5);
    }

    #[test]
    fn dcr_stats_of_empty_sets_are_nan() {
        let stats = dcr_stats(&[], &[]);
        assert!(stats.synthetic_median.is_nan());
        assert!(stats.holdout_p5.is_nan());
        assert!(stats.synthetic_share_below_holdout_p5.is_nan());
    }

    #[test]
    fn nn_ratio_divides_nearest_by_mean() {
        assert_eq!(nn_ratio(&[1.0, 2.0, 3.0]), 0.5);
        assert_eq!(nn_ratio(&[0.0, 2.0]), 0.0);
        assert_eq!(nn_ratio(&[2.0]), 1.0);
    }

    #[test]
    fn nn_ratio_of_degenerate_lists_is_nan() {
        assert!(nn_ratio(&[]).is_nan());
        assert!(nn_ratio(&[0.0, 0.0, 0.0]).is_nan());
        assert!(nn_ratio(&[1.0, f32::INFINITY]).is_nan());
    }

    #[test]
    fn nn_ratios_split_by_k() {
        assert_eq!(nn_ratios(&[1.0, 3.0, 2.0, 2.0], 2), vec![0.5, 1.0]);
        assert!(nn_ratios(&[], 0).is_empty());
    }

    #[test]
    fn mann_whitney_u_counts_larger_pairs() {
        assert_eq!(mann_whitney_u(&[3.0, 4.0], &[1.0, 2.0]), 4.0);
        assert_eq!(mann_whitney_u(&[1.0, 2.0], &[3.0, 4.0]), 0.0);
        assert_eq!(mann_whitney_u(&[1.0], &[1.0]), 0.5);
    }

    #[test]
    fn mann_whitney_u_matches_scipy_example() {
        // scipy.stats.mannwhitneyu([19, 22, 16, 29, 24], [20, 11, 17, 12]).statistic == 17.0
        let u = mann_whitney_u(&[19.0, 22.0, 16.0, 29.0, 24.0], &[20.0, 11.0, 17.0, 12.0]);
        assert_eq!(u, 17.0);
    }

    #[test]
    fn mann_whitney_z_is_negative_for_closer_sample() {
        let close: Vec<f64> = (0..50).map(|i| f64::from(i) * 0.1).collect();
        let far: Vec<f64> = (0..50).map(|i| 10.0 + f64::from(i) * 0.1).collect();
        assert!(mann_whitney_z(&close, &far) < -8.0);
        assert!(mann_whitney_z(&far, &close) > 8.0);
    }

    #[test]
    fn mann_whitney_z_of_ties_is_continuity_correction() {
        let z = mann_whitney_z(&[0.0; 4], &[0.0; 4]);
        let sigma = (16.0f64 * 9.0 / 12.0).sqrt();
        assert!((z - 0.5 / sigma).abs() < 1e-12);
    }

    #[test]
    fn mann_whitney_z_of_empty_sample_is_nan() {
        assert!(mann_whitney_z(&[], &[1.0]).is_nan());
        assert!(mann_whitney_z(&[1.0], &[f64::NAN]).is_nan());
    }

    #[test]
    fn copying_test_weights_cells_by_holdout_share() {
        let cells = vec![
            CellDistances {
                synthetic: vec![0.0, 0.1],
                holdout: vec![1.0, 2.0, 3.0],
            },
            CellDistances {
                synthetic: vec![5.0, 6.0],
                holdout: vec![1.0],
            },
        ];
        let test = copying_test(&cells, 2);
        let z0 = mann_whitney_z(&cells[0].synthetic, &cells[0].holdout);
        let z1 = mann_whitney_z(&cells[1].synthetic, &cells[1].holdout);
        assert_eq!(test.cells_used, 2);
        assert!((test.c_t - (3.0 * z0 + z1) / 4.0).abs() < 1e-12);
    }

    #[test]
    fn copying_test_skips_sparse_cells() {
        let cells = vec![
            CellDistances {
                synthetic: vec![0.0],
                holdout: vec![1.0, 2.0],
            },
            CellDistances {
                synthetic: vec![5.0, 6.0, 7.0],
                holdout: vec![1.0],
            },
            CellDistances {
                synthetic: vec![5.0, 6.0, 7.0],
                holdout: vec![],
            },
        ];
        let test = copying_test(&cells, 3);
        assert_eq!(test.cells, 3);
        assert_eq!(test.cells_used, 1);
        assert!(test.cell_z[0].is_nan());
        assert!(test.cell_z[2].is_nan());
        assert!(test.c_t > 0.0);
    }

    #[test]
    fn copying_test_without_cells_is_nan() {
        let test = copying_test(&[], 20);
        assert!(test.c_t.is_nan());
        assert_eq!(test.cells_used, 0);
        let sparse = copying_test(&[CellDistances::default()], 0);
        assert!(sparse.c_t.is_nan());
    }

    #[test]
    fn duplicates_split_exact_and_near() {
        let counts = duplicates(&[0.0, 0.0, 0.2, 0.5, 3.0, f64::NAN], 0.5);
        assert_eq!(counts.exact, 2);
        assert_eq!(counts.near, 1);
    }
}
