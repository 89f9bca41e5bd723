//! A small deterministic k-means (k-means++ seeding, then Lloyd iterations),
//! used to partition the feature space into cells for the data-copying test.
//! Assignments use the exact search of [`super::knn`].

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

use super::knn;

/// Cluster centres found by [`fit`].
#[derive(Clone, Debug, PartialEq)]
pub struct KMeans {
    pub dim: usize,
    /// `cells * dim` values, row-major.
    pub centroids: Vec<f32>,
}

impl KMeans {
    /// Number of cells.
    pub fn cells(&self) -> usize {
        self.centroids.len().checked_div(self.dim).unwrap_or(0)
    }

    /// Returns the cell of each row of `points`: its nearest centroid, the
    /// lower index on a tie. Every row gets cell 0 when there is no centroid.
    pub fn assign(&self, points: &[f32]) -> Vec<usize> {
        let rows = points.len().checked_div(self.dim).unwrap_or(0);
        if self.cells() == 0 {
            return vec![0; rows];
        }
        let nearest = knn::knn(points, &self.centroids, self.dim, 1);
        nearest.indices.iter().map(|&i| i as usize).collect()
    }
}

/// Fits `cells` centroids to the rows of `points` with `iterations` Lloyd
/// steps after k-means++ seeding from `seed`.
///
/// Returns fewer centroids when there are fewer rows than `cells`, and none
/// for no rows. A cell that loses all its rows keeps its previous centroid.
///
/// # Panics
///
/// Panics when `points` is not a whole number of rows of `dim`.
pub fn fit(points: &[f32], dim: usize, cells: usize, iterations: usize, seed: u64) -> KMeans {
    assert!(dim > 0, "k-means needs at least one dimension");
    assert_eq!(points.len() % dim, 0, "points are not whole rows of {dim}");
    let rows = points.len() / dim;
    let cells = cells.min(rows);
    let mut model = KMeans {
        dim,
        centroids: seed_centroids(points, dim, cells, seed),
    };
    for _ in 0..iterations {
        let assignment = model.assign(points);
        let updated = mean_per_cell(points, dim, &assignment, &model.centroids);
        if updated == model.centroids {
            break;
        }
        model.centroids = updated;
    }
    model
}

/// k-means++: the first centre uniformly, each next one with probability
/// proportional to the squared distance to the nearest centre so far.
fn seed_centroids(points: &[f32], dim: usize, cells: usize, seed: u64) -> Vec<f32> {
    let rows = points.len() / dim;
    if cells == 0 {
        return Vec::new();
    }
    let mut rng = StdRng::seed_from_u64(seed);
    let row = |i: usize| &points[i * dim..(i + 1) * dim];
    let first = rng.random_range(0..rows);
    let mut centroids = row(first).to_vec();
    let mut nearest: Vec<f64> = (0..rows).map(|i| squared(row(i), row(first))).collect();

    while centroids.len() < cells * dim {
        let total: f64 = nearest.iter().sum();
        // When every row coincides with a centre, any row is as good as another.
        let chosen = if total > 0.0 {
            let mut target = rng.random::<f64>() * total;
            let mut chosen = rows - 1;
            for (i, &d) in nearest.iter().enumerate() {
                if target < d {
                    chosen = i;
                    break;
                }
                target -= d;
            }
            chosen
        } else {
            rng.random_range(0..rows)
        };
        centroids.extend_from_slice(row(chosen));
        for (i, best) in nearest.iter_mut().enumerate() {
            *best = best.min(squared(row(i), row(chosen)));
        }
    }
    centroids
}

fn mean_per_cell(points: &[f32], dim: usize, assignment: &[usize], previous: &[f32]) -> Vec<f32> {
    let cells = previous.len() / dim;
    let mut sums = vec![0.0f64; cells * dim];
    let mut counts = vec![0usize; cells];
    for (point, &cell) in points.chunks_exact(dim).zip(assignment) {
        counts[cell] += 1;
        for (sum, &value) in sums[cell * dim..(cell + 1) * dim].iter_mut().zip(point) {
            *sum += f64::from(value);
        }
    }
    let mut centroids = previous.to_vec();
    for cell in 0..cells {
        if counts[cell] == 0 {
            continue;
        }
        for d in 0..dim {
            centroids[cell * dim + d] = (sums[cell * dim + d] / counts[cell] as f64) as f32;
        }
    }
    centroids
}

fn squared(a: &[f32], b: &[f32]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(&x, &y)| (f64::from(x) - f64::from(y)).powi(2))
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn blobs() -> Vec<f32> {
        // Three tight groups on a line, 20 points each.
        let mut points = Vec::new();
        for centre in [0.0f32, 10.0, 20.0] {
            for i in 0..20 {
                points.push(centre + (i as f32) * 0.01);
                points.push(-centre);
            }
        }
        points
    }

    #[test]
    fn fit_separates_clear_groups() {
        let points = blobs();
        let model = fit(&points, 2, 3, 20, 1);
        let cells = model.assign(&points);
        for group in cells.chunks(20) {
            assert!(group.iter().all(|&c| c == group[0]), "{cells:?}");
        }
        assert_ne!(cells[0], cells[20]);
        assert_ne!(cells[20], cells[40]);
        assert_ne!(cells[0], cells[40]);
    }

    #[test]
    fn fit_is_deterministic_for_a_seed() {
        let points = blobs();
        assert_eq!(fit(&points, 2, 3, 5, 9), fit(&points, 2, 3, 5, 9));
    }

    #[test]
    fn fit_caps_cells_at_rows() {
        let model = fit(&[1.0, 2.0], 1, 5, 3, 0);
        assert_eq!(model.cells(), 2);
        assert_eq!(fit(&[], 1, 5, 3, 0).cells(), 0);
    }

    #[test]
    fn identical_points_share_one_cell() {
        let points = vec![0.5f32; 10 * 3];
        let model = fit(&points, 3, 4, 5, 2);
        assert_eq!(model.cells(), 4);
        assert!(model.assign(&points).iter().all(|&c| c == 0));
    }

    #[test]
    fn assign_without_centroids_is_cell_zero() {
        let model = fit(&[], 2, 3, 1, 0);
        assert_eq!(model.assign(&[1.0, 2.0, 3.0, 4.0]), vec![0, 0]);
    }
}
