//! Exact k-nearest-neighbour search by L2 distance, as a blocked matrix
//! multiply: `||q - r||^2 = ||q||^2 + ||r||^2 - 2 q.r`, with `q.r` from `gemm`.
//!
//! The search streams over blocks of reference rows and keeps a top-k list
//! per query, so memory stays bounded by one reference block and one
//! distance tile per thread, whatever the number of references. Approximate
//! squared distances from the multiply only select the candidates; the k
//! survivors are recomputed directly, so an identical pair reads exactly 0.
//! Several consecutive reference rows may belong to one record, such as the
//! mirrored and shifted variants of a training image. The k neighbours are
//! then k distinct records, each at the minimum distance over its rows.

use rayon::prelude::*;

use super::augment::{self, VARIANTS};
use crate::data::cifar::IMAGE_BYTES;

/// Query rows per distance tile.
const QUERY_BLOCK: usize = 256;
/// Reference rows per streamed block (rounded down to whole records).
const REFERENCE_BLOCK: usize = 2048;

/// The k nearest records of each query, nearest first.
#[derive(Clone, Debug, PartialEq)]
pub struct Neighbours {
    /// Neighbours per query: the requested k, or the record count when fewer.
    pub k: usize,
    /// `queries * k` L2 distances, ascending within each query.
    pub distances: Vec<f32>,
    /// `queries * k` record indices matching `distances`.
    pub indices: Vec<u32>,
}

impl Neighbours {
    /// Number of queries.
    pub fn queries(&self) -> usize {
        self.distances.len().checked_div(self.k).unwrap_or(0)
    }

    /// Distances of query `query`, ascending.
    pub fn distances_of(&self, query: usize) -> &[f32] {
        &self.distances[query * self.k..(query + 1) * self.k]
    }

    /// Record indices of query `query`, nearest first.
    pub fn indices_of(&self, query: usize) -> &[u32] {
        &self.indices[query * self.k..(query + 1) * self.k]
    }

    /// Distance to the nearest record per query; empty when `k == 0`.
    pub fn nearest_distances(&self) -> Vec<f32> {
        if self.k == 0 {
            return Vec::new();
        }
        self.distances.chunks_exact(self.k).map(|d| d[0]).collect()
    }
}

/// Reference rows the search streams over.
///
/// Rows `r * variants()..(r + 1) * variants()` belong to record `r`.
pub trait ReferenceRows: Sync {
    /// Values per row.
    fn dim(&self) -> usize;
    /// Total rows; a multiple of `variants()`.
    fn rows(&self) -> usize;
    /// Rows per record.
    fn variants(&self) -> usize;
    /// Writes rows `start..start + out.len() / dim()` into `out`.
    fn fill(&self, start: usize, out: &mut [f32]);
    /// Returns rows `start..start + count` without copying, when they are stored.
    fn borrow(&self, _start: usize, _count: usize) -> Option<&[f32]> {
        None
    }
}

/// Rows stored as one row-major slice.
pub struct DenseRows<'a> {
    data: &'a [f32],
    dim: usize,
    variants: usize,
}

impl<'a> DenseRows<'a> {
    /// Wraps `data` as rows of `dim` values, `variants` consecutive rows per record.
    ///
    /// # Panics
    ///
    /// Panics when `data` is not a whole number of records.
    pub fn new(data: &'a [f32], dim: usize, variants: usize) -> DenseRows<'a> {
        assert!(variants > 0, "a record has at least one row");
        let record = dim * variants;
        assert!(
            record == 0 || data.len().is_multiple_of(record),
            "reference data of {} values is not a whole number of {variants} rows of {dim}",
            data.len()
        );
        DenseRows {
            data,
            dim,
            variants,
        }
    }
}

impl ReferenceRows for DenseRows<'_> {
    fn dim(&self) -> usize {
        self.dim
    }
    fn rows(&self) -> usize {
        self.data.len().checked_div(self.dim).unwrap_or(0)
    }
    fn variants(&self) -> usize {
        self.variants
    }
    fn fill(&self, start: usize, out: &mut [f32]) {
        out.copy_from_slice(&self.data[start * self.dim..start * self.dim + out.len()]);
    }
    fn borrow(&self, start: usize, count: usize) -> Option<&[f32]> {
        Some(&self.data[start * self.dim..(start + count) * self.dim])
    }
}

/// CIFAR images (CHW bytes) searched as pixels in [0, 1] together with their
/// mirrored and shifted variants, generated block by block.
pub struct AugmentedImages<'a> {
    images: &'a [u8],
}

impl<'a> AugmentedImages<'a> {
    /// Wraps `images`, `IMAGE_BYTES` bytes each.
    ///
    /// # Panics
    ///
    /// Panics when `images` is not a whole number of images.
    pub fn new(images: &'a [u8]) -> AugmentedImages<'a> {
        assert_eq!(
            images.len() % IMAGE_BYTES,
            0,
            "not a whole number of images"
        );
        AugmentedImages { images }
    }
}

impl ReferenceRows for AugmentedImages<'_> {
    fn dim(&self) -> usize {
        IMAGE_BYTES
    }
    fn rows(&self) -> usize {
        self.images.len() / IMAGE_BYTES * VARIANTS.len()
    }
    fn variants(&self) -> usize {
        VARIANTS.len()
    }
    fn fill(&self, start: usize, out: &mut [f32]) {
        out.par_chunks_mut(IMAGE_BYTES)
            .enumerate()
            .for_each(|(offset, row)| {
                let index = start + offset;
                let record = index / VARIANTS.len();
                let image = &self.images[record * IMAGE_BYTES..(record + 1) * IMAGE_BYTES];
                augment::write_variant_unit(image, VARIANTS[index % VARIANTS.len()], row);
            });
    }
}

/// Returns the `k` nearest references of each query by L2 distance.
///
/// `queries` and `references` are row-major with `dim` values per row. Ties
/// are broken by the lower reference index.
///
/// # Panics
///
/// Panics when either slice is not a whole number of rows.
pub fn knn(queries: &[f32], references: &[f32], dim: usize, k: usize) -> Neighbours {
    search(queries, &DenseRows::new(references, dim, 1), k)
}

/// Returns the `k` nearest distinct records of each query in `references`.
///
/// # Panics
///
/// Panics when `queries` is not a whole number of rows of `references.dim()`.
pub fn search<R: ReferenceRows>(queries: &[f32], references: &R, k: usize) -> Neighbours {
    let dim = references.dim();
    let variants = references.variants();
    if dim == 0 {
        // Rows without values carry no query count, so there is nothing to return.
        return Neighbours {
            k: 0,
            distances: Vec::new(),
            indices: Vec::new(),
        };
    }
    assert_eq!(
        queries.len() % dim,
        0,
        "queries are not whole rows of {dim}"
    );
    let query_count = queries.len() / dim;
    let records = references.rows() / variants;
    let k = k.min(records);
    if query_count == 0 || k == 0 {
        return Neighbours {
            k,
            distances: Vec::new(),
            indices: Vec::new(),
        };
    }

    let query_norms: Vec<f32> = queries.par_chunks_exact(dim).map(squared_norm).collect();
    let mut lists: Vec<TopK> = (0..query_count)
        .map(|_| TopK::new(k, variants > 1))
        .collect();
    let block_rows = (REFERENCE_BLOCK / variants).max(1) * variants;
    let mut buffer = vec![0.0f32; block_rows * dim];
    let bar = crate::progress::bar(references.rows().div_ceil(block_rows) as u64, "knn");

    // Stream over reference blocks. Every query tile reads each block once,
    // so a block is generated and its norms computed once for all queries.
    for start in (0..references.rows()).step_by(block_rows) {
        let count = block_rows.min(references.rows() - start);
        let block = match references.borrow(start, count) {
            Some(rows) => rows,
            None => {
                references.fill(start, &mut buffer[..count * dim]);
                &buffer[..count * dim]
            }
        };
        let block_norms: Vec<f32> = block.par_chunks_exact(dim).map(squared_norm).collect();
        let tile = Tile {
            block,
            norms: &block_norms,
            first_row: start,
            variants,
            dim,
        };
        update_lists(queries, &query_norms, &mut lists, &tile);
        bar.inc(1);
    }
    bar.finish_and_clear();

    refine(queries, references, lists, k)
}

/// One streamed block of reference rows with their squared norms.
struct Tile<'a> {
    block: &'a [f32],
    norms: &'a [f32],
    first_row: usize,
    variants: usize,
    dim: usize,
}

/// Offers every row of `tile` to every query's top-k list.
///
/// Tiles of queries run in parallel, each with a single-threaded multiply.
/// With fewer tiles than threads, the tiles run in turn and the multiply
/// itself is parallel.
fn update_lists(queries: &[f32], query_norms: &[f32], lists: &mut [TopK], tile: &Tile) {
    let threads = rayon::current_num_threads();
    let tiles = lists.len().div_ceil(QUERY_BLOCK);
    let columns = tile.norms.len();
    if tiles >= threads {
        lists.par_chunks_mut(QUERY_BLOCK).enumerate().for_each_init(
            || vec![0.0f32; QUERY_BLOCK * columns],
            |dots, (index, chunk)| {
                let first = index * QUERY_BLOCK;
                offer_tile(queries, query_norms, first, chunk, tile, dots, None);
            },
        );
    } else {
        let mut dots = vec![0.0f32; QUERY_BLOCK * columns];
        for (index, chunk) in lists.chunks_mut(QUERY_BLOCK).enumerate() {
            let first = index * QUERY_BLOCK;
            let parallel = Some(threads);
            offer_tile(
                queries,
                query_norms,
                first,
                chunk,
                tile,
                &mut dots,
                parallel,
            );
        }
    }
}

/// Multiplies one query tile by the reference block and offers the
/// resulting squared distances to the tile's lists.
fn offer_tile(
    queries: &[f32],
    query_norms: &[f32],
    first: usize,
    lists: &mut [TopK],
    tile: &Tile,
    dots: &mut [f32],
    threads: Option<usize>,
) {
    let rows = lists.len();
    let columns = tile.norms.len();
    let dim = tile.dim;
    let lhs = &queries[first * dim..(first + rows) * dim];
    let dots = &mut dots[..rows * columns];
    let parallelism = match threads {
        Some(threads) => gemm::Parallelism::Rayon(threads),
        None => gemm::Parallelism::None,
    };

    // dots[i][j] = lhs[i] . block[j]: lhs is rows x dim row-major, and the
    // block read with row stride 1 and column stride dim is its transpose.
    // SAFETY: every pointer covers its slice for the given strides and
    // sizes. dst is rows x columns (row stride `columns`), lhs is rows x dim
    // (row stride `dim`) and rhs is dim x columns (column stride `dim`).
    // dst does not alias either input.
    unsafe {
        gemm::gemm(
            rows,
            columns,
            dim,
            dots.as_mut_ptr(),
            1,
            columns as isize,
            false,
            lhs.as_ptr(),
            1,
            dim as isize,
            tile.block.as_ptr(),
            dim as isize,
            1,
            0.0,
            1.0,
            false,
            false,
            false,
            parallelism,
        );
    }

    for (i, list) in lists.iter_mut().enumerate() {
        let query_norm = query_norms[first + i];
        let row = &dots[i * columns..(i + 1) * columns];
        for (j, (&dot, &norm)) in row.iter().zip(tile.norms).enumerate() {
            let squared = query_norm + norm - 2.0 * dot;
            let index = tile.first_row + j;
            list.offer(squared, (index / tile.variants) as u32, index as u32);
        }
    }
}

/// Recomputes each kept neighbour's distance directly and sorts by it.
fn refine<R: ReferenceRows>(
    queries: &[f32],
    references: &R,
    lists: Vec<TopK>,
    k: usize,
) -> Neighbours {
    let dim = references.dim();
    let per_query: Vec<Vec<(f32, u32)>> = lists
        .into_par_iter()
        .enumerate()
        .map_init(
            || vec![0.0f32; dim],
            |row, (q, list)| {
                let query = &queries[q * dim..(q + 1) * dim];
                let mut exact: Vec<(f32, u32)> = list
                    .entries
                    .iter()
                    .map(|entry| {
                        let reference = match references.borrow(entry.row as usize, 1) {
                            Some(stored) => stored,
                            None => {
                                references.fill(entry.row as usize, row);
                                &row[..]
                            }
                        };
                        (exact_distance(query, reference), entry.record)
                    })
                    .collect();
                exact.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
                // A list has fewer than k entries only when distances were
                // NaN. The missing neighbours read as infinitely far.
                exact.resize(k, (f32::INFINITY, u32::MAX));
                exact
            },
        )
        .collect();
    let mut distances = Vec::with_capacity(per_query.len() * k);
    let mut indices = Vec::with_capacity(per_query.len() * k);
    for list in per_query {
        for (distance, record) in list {
            distances.push(distance);
            indices.push(record);
        }
    }
    Neighbours {
        k,
        distances,
        indices,
    }
}

fn squared_norm(row: &[f32]) -> f32 {
    row.iter().map(|&v| v * v).sum()
}

/// L2 distance accumulated in f64, so identical rows give exactly 0.
fn exact_distance(a: &[f32], b: &[f32]) -> f32 {
    let sum: f64 = a
        .iter()
        .zip(b)
        .map(|(&x, &y)| {
            let d = f64::from(x) - f64::from(y);
            d * d
        })
        .sum();
    sum.sqrt() as f32
}

/// One kept candidate: approximate squared distance, record and the row
/// (variant) that gave it.
#[derive(Clone, Copy, Debug)]
struct Entry {
    squared: f32,
    record: u32,
    row: u32,
}

/// The k best records seen so far for one query, sorted ascending by
/// (squared distance, record).
struct TopK {
    capacity: usize,
    /// Whether several rows share a record, so an offer may improve a kept record.
    grouped: bool,
    entries: Vec<Entry>,
}

impl TopK {
    fn new(capacity: usize, grouped: bool) -> TopK {
        TopK {
            capacity,
            grouped,
            entries: Vec::with_capacity(capacity + 1),
        }
    }

    fn offer(&mut self, squared: f32, record: u32, row: u32) {
        // Cancellation can make the squared distance of a near pair slightly
        // negative; it still ranks first, and `refine` recomputes it.
        if squared.is_nan() {
            return;
        }
        if self.entries.len() == self.capacity {
            let worst = self.entries[self.capacity - 1];
            if !before(squared, record, worst.squared, worst.record) {
                return;
            }
        }
        if self.grouped
            && let Some(position) = self.entries.iter().position(|e| e.record == record)
        {
            if squared >= self.entries[position].squared {
                return;
            }
            self.entries.remove(position);
        }
        let position = self
            .entries
            .partition_point(|e| before(e.squared, e.record, squared, record));
        self.entries.insert(
            position,
            Entry {
                squared,
                record,
                row,
            },
        );
        self.entries.truncate(self.capacity);
    }
}

fn before(squared: f32, record: u32, other_squared: f32, other_record: u32) -> bool {
    squared < other_squared || (squared == other_squared && record < other_record)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::{RngExt, SeedableRng};

    fn random_rows(rng: &mut StdRng, rows: usize, dim: usize) -> Vec<f32> {
        (0..rows * dim).map(|_| rng.random::<f32>()).collect()
    }

    /// Brute force: every distance directly, sorted by (distance, index).
    fn naive(queries: &[f32], references: &[f32], dim: usize, k: usize) -> Neighbours {
        let mut distances = Vec::new();
        let mut indices = Vec::new();
        for query in queries.chunks_exact(dim) {
            let mut all: Vec<(f32, u32)> = references
                .chunks_exact(dim)
                .enumerate()
                .map(|(j, r)| (exact_distance(query, r), j as u32))
                .collect();
            all.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
            for &(d, j) in all.iter().take(k) {
                distances.push(d);
                indices.push(j);
            }
        }
        Neighbours {
            k: k.min(references.len() / dim),
            distances,
            indices,
        }
    }

    fn assert_matches(found: &Neighbours, expected: &Neighbours) {
        assert_eq!(found.k, expected.k);
        assert_eq!(found.indices, expected.indices);
        for (a, b) in found.distances.iter().zip(&expected.distances) {
            let scale = b.abs().max(1e-6);
            assert!((a - b).abs() / scale <= 1e-4, "distance {a} vs {b}");
        }
    }

    #[test]
    fn knn_matches_naive_search() {
        let mut rng = StdRng::seed_from_u64(7);
        for &(queries, references, dim, k) in &[
            (1, 1, 1, 1),
            (5, 40, 3, 4),
            (300, 2500, 17, 10),
            (700, 300, 64, 50),
        ] {
            let q = random_rows(&mut rng, queries, dim);
            let r = random_rows(&mut rng, references, dim);
            let found = knn(&q, &r, dim, k);
            assert_matches(&found, &naive(&q, &r, dim, k));
        }
    }

    #[test]
    fn knn_caps_k_at_reference_count() {
        let q = vec![0.0, 0.0];
        let r = vec![1.0, 0.0, 3.0, 0.0];
        let found = knn(&q, &r, 2, 5);
        assert_eq!(found.k, 2);
        assert_eq!(found.indices, vec![0, 1]);
        assert_eq!(found.distances, vec![1.0, 3.0]);
    }

    #[test]
    fn knn_of_empty_inputs_is_empty() {
        let none = knn(&[], &[1.0, 2.0], 2, 3);
        assert_eq!(none.queries(), 0);
        let no_references = knn(&[1.0, 2.0], &[], 2, 3);
        assert_eq!(no_references.k, 0);
        assert!(no_references.distances.is_empty());
    }

    #[test]
    fn identical_rows_are_at_distance_zero() {
        let mut rng = StdRng::seed_from_u64(3);
        let r = random_rows(&mut rng, 50, 3072);
        let q = r[7 * 3072..8 * 3072].to_vec();
        let found = knn(&q, &r, 3072, 3);
        assert_eq!(found.indices[0], 7);
        assert_eq!(found.distances[0], 0.0);
    }

    #[test]
    fn ties_break_by_lower_index() {
        let r = vec![1.0, -1.0, 1.0, -1.0];
        let found = knn(&[0.0], &r, 1, 4);
        assert_eq!(found.indices, vec![0, 1, 2, 3]);
    }

    #[test]
    fn grouped_rows_give_distinct_records() {
        // Records of two rows each; record 1 has both rows nearest.
        let r = vec![5.0, 6.0, 0.5, 0.25, 3.0, 9.0];
        let rows = DenseRows::new(&r, 1, 2);
        let found = search(&[0.0], &rows, 3);
        assert_eq!(found.indices, vec![1, 2, 0]);
        assert_eq!(found.distances, vec![0.25, 3.0, 5.0]);
    }

    #[test]
    fn grouped_search_matches_naive_min_over_variants() {
        let mut rng = StdRng::seed_from_u64(11);
        let (dim, variants, records, k) = (8, 3, 900, 20);
        let r = random_rows(&mut rng, records * variants, dim);
        let q = random_rows(&mut rng, 40, dim);
        let found = search(&q, &DenseRows::new(&r, dim, variants), k);

        // The nearest row of each record, then a plain search over those.
        for (qi, query) in q.chunks_exact(dim).enumerate() {
            let mut best: Vec<(f32, u32)> = (0..records)
                .map(|rec| {
                    let d = r[rec * variants * dim..(rec + 1) * variants * dim]
                        .chunks_exact(dim)
                        .map(|row| exact_distance(query, row))
                        .fold(f32::INFINITY, f32::min);
                    (d, rec as u32)
                })
                .collect();
            best.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
            let expected: Vec<u32> = best.iter().take(k).map(|b| b.1).collect();
            assert_eq!(found.indices_of(qi), &expected[..]);
        }
    }

    #[test]
    fn augmented_images_find_mirrored_copy() {
        let mut rng = StdRng::seed_from_u64(5);
        let images: Vec<u8> = (0..20 * IMAGE_BYTES).map(|_| rng.random::<u8>()).collect();
        let mirrored = augment::variant_bytes(
            &images[3 * IMAGE_BYTES..4 * IMAGE_BYTES],
            augment::Variant::Mirror,
        );
        let query: Vec<f32> = mirrored.iter().map(|&v| f32::from(v) / 255.0).collect();
        let found = search(&query, &AugmentedImages::new(&images), 2);
        assert_eq!(found.indices[0], 3);
        assert_eq!(found.distances[0], 0.0);
        assert_ne!(found.indices[1], 3);
    }
}
