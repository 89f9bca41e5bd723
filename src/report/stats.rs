//! Small statistics over labels that the report shows: class histograms,
//! the balance of a histogram, and the agreement of two classifiers.

use serde::{Deserialize, Serialize};

/// Counts each class in `labels`; labels at or above `classes` are ignored.
pub fn label_histogram(labels: &[u8], classes: usize) -> Vec<u64> {
    let mut histogram = vec![0u64; classes];
    for &label in labels {
        if let Some(count) = histogram.get_mut(label as usize) {
            *count += 1;
        }
    }
    histogram
}

/// Counts the most probable class of each row of `probabilities`
/// (row-major, `classes` values per image). Ties go to the lower class.
pub fn argmax_histogram(probabilities: &[f32], classes: usize) -> Vec<u64> {
    let mut histogram = vec![0u64; classes];
    if classes == 0 {
        return histogram;
    }
    for row in probabilities.chunks_exact(classes) {
        let mut best = 0;
        for (class, &p) in row.iter().enumerate() {
            if p > row[best] {
                best = class;
            }
        }
        histogram[best] += 1;
    }
    histogram
}

/// Share of positions where `a` and `b` hold the same label; `None` when
/// the slices are empty or differ in length.
pub fn agreement<T: PartialEq>(a: &[T], b: &[T]) -> Option<f64> {
    if a.is_empty() || a.len() != b.len() {
        return None;
    }
    let same = a.iter().zip(b).filter(|(x, y)| x == y).count();
    Some(same as f64 / a.len() as f64)
}

/// The spread of a histogram over its classes: its largest and smallest class.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct ClassBalance {
    pub total: u64,
    /// Share of the most frequent class, in [0, 1].
    pub max_share: f64,
    pub max_class: usize,
    /// Share of the least frequent class, in [0, 1].
    pub min_share: f64,
    pub min_class: usize,
}

impl ClassBalance {
    /// Summarises `histogram`; `None` when it is empty or counts nothing.
    pub fn of(histogram: &[u64]) -> Option<ClassBalance> {
        let total: u64 = histogram.iter().sum();
        if total == 0 {
            return None;
        }
        let (max_class, max) = extreme(histogram, |a, b| a > b)?;
        let (min_class, min) = extreme(histogram, |a, b| a < b)?;
        Some(ClassBalance {
            total,
            max_share: max as f64 / total as f64,
            max_class,
            min_share: min as f64 / total as f64,
            min_class,
        })
    }

    /// Ratio of the largest to the smallest class; infinite when a class
    /// is missing, 1 for a perfectly balanced histogram.
    pub fn max_min_ratio(&self) -> f64 {
        if self.min_share == 0.0 {
            f64::INFINITY
        } else {
            self.max_share / self.min_share
        }
    }
}

/// First index whose count beats every other under `better`.
fn extreme(histogram: &[u64], better: impl Fn(u64, u64) -> bool) -> Option<(usize, u64)> {
    let mut best: Option<(usize, u64)> = None;
    for (class, &count) in histogram.iter().enumerate() {
        match best {
            Some((_, current)) if !better(count, current) => {}
            _ => best = Some((class, count)),
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_histogram_counts_and_ignores_out_of_range() {
        assert_eq!(label_histogram(&[0, 2, 2, 9, 12], 3), vec![1, 0, 2]);
    }

    #[test]
    fn argmax_histogram_picks_most_probable_class() {
        let probabilities = [0.1, 0.7, 0.2, 0.5, 0.25, 0.25, 0.3, 0.3, 0.4];
        assert_eq!(argmax_histogram(&probabilities, 3), vec![1, 1, 1]);
    }

    #[test]
    fn argmax_histogram_breaks_ties_towards_lower_class() {
        assert_eq!(argmax_histogram(&[0.5, 0.5], 2), vec![1, 0]);
    }

    #[test]
    fn agreement_is_share_of_equal_labels() {
        assert_eq!(agreement(&[1, 2, 3, 4], &[1, 2, 0, 0]), Some(0.5));
        assert_eq!(agreement(&[1], &[1, 2]), None);
        assert_eq!(agreement::<u8>(&[], &[]), None);
    }

    #[test]
    fn class_balance_reports_extremes() {
        let balance = ClassBalance::of(&[10, 30, 0, 60]).unwrap();
        assert_eq!(balance.total, 100);
        assert_eq!(balance.max_class, 3);
        assert!((balance.max_share - 0.6).abs() < 1e-12);
        assert_eq!(balance.min_class, 2);
        assert_eq!(balance.min_share, 0.0);
        assert!(balance.max_min_ratio().is_infinite());
    }

    #[test]
    fn class_balance_of_uniform_histogram_has_ratio_one() {
        let balance = ClassBalance::of(&[5, 5, 5]).unwrap();
        assert!((balance.max_min_ratio() - 1.0).abs() < 1e-12);
        assert!(ClassBalance::of(&[0, 0]).is_none());
    }
}
