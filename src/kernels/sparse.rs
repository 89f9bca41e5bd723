//! Max pooling over 2x2 windows with stride 2, and dropout, on plain `f32`
//! slices: each forward pass writes its output in one pass and keeps what
//! the backward pass needs (the winning position of each window, or the
//! seed of the dropout mask) instead of burn's index tensors and masks.

use rayon::prelude::*;

use super::allocator::zeros;

/// Values per rayon task of the element-wise kernels.
const CHUNK: usize = 1 << 14;

/// Returns the 2x2 maximum of every `height x width` plane in `x`, and
/// for each output the window position (0 to 3, row-major) that won. Of
/// equal values, the first wins.
pub fn max_pool_forward(x: &[f32], height: usize, width: usize) -> (Vec<f32>, Vec<u8>) {
    let (plane, out_plane) = (height * width, height / 2 * (width / 2));
    let planes = x.len() / plane;
    let mut out = zeros(planes * out_plane);
    let mut winners = vec![0u8; planes * out_plane];
    out.par_chunks_mut(out_plane)
        .zip(winners.par_chunks_mut(out_plane))
        .zip(x.par_chunks(plane))
        .for_each(|((out, winners), x)| pool_plane(x, width, out, winners));
    (out, winners)
}

#[multiversion::multiversion(targets = "simd")]
fn pool_plane(x: &[f32], width: usize, out: &mut [f32], winners: &mut [u8]) {
    let half = width / 2;
    let rows = out
        .chunks_exact_mut(half)
        .zip(winners.chunks_exact_mut(half));
    for (y, (out, winners)) in rows.enumerate() {
        let top = x[2 * y * width..][..width].chunks_exact(2);
        let bottom = x[(2 * y + 1) * width..][..width].chunks_exact(2);
        let windows = top.zip(bottom).zip(out.iter_mut().zip(winners.iter_mut()));
        for ((top, bottom), (out, winner)) in windows {
            // Pairwise selects instead of a scan keep the loop free of
            // branches on the data. A strict comparison keeps the first of equal values.
            let (a, b) = (top[0], top[1]);
            let (c, d) = (bottom[0], bottom[1]);
            let (upper, upper_at) = if b > a { (b, 1) } else { (a, 0) };
            let (lower, lower_at) = if d > c { (d, 3) } else { (c, 2) };
            let (best, best_at) = if lower > upper {
                (lower, lower_at)
            } else {
                (upper, upper_at)
            };
            *out = best;
            *winner = best_at;
        }
    }
}

/// Gradient of `max_pool_forward`: each output gradient goes to the
/// position that won its window, zero elsewhere.
pub fn max_pool_backward(grad: &[f32], winners: &[u8], height: usize, width: usize) -> Vec<f32> {
    let (plane, out_plane) = (height * width, height / 2 * (width / 2));
    let mut dx = zeros(grad.len() / out_plane * plane);
    dx.par_chunks_mut(plane)
        .zip(grad.par_chunks(out_plane))
        .zip(winners.par_chunks(out_plane))
        .for_each(|((dx, grad), winners)| unpool_plane(grad, winners, width, dx));
    dx
}

#[multiversion::multiversion(targets = "simd")]
fn unpool_plane(grad: &[f32], winners: &[u8], width: usize, dx: &mut [f32]) {
    let half = width / 2;
    let rows = grad.chunks_exact(half).zip(winners.chunks_exact(half));
    for (y, (grad, winners)) in rows.enumerate() {
        let (top, bottom) = dx[2 * y * width..(2 * y + 2) * width].split_at_mut(width);
        let windows = top.chunks_exact_mut(2).zip(bottom.chunks_exact_mut(2));
        for (((top, bottom), &g), &w) in windows.zip(grad).zip(winners) {
            top[0] = if w == 0 { g } else { 0.0 };
            top[1] = if w == 1 { g } else { 0.0 };
            bottom[0] = if w == 2 { g } else { 0.0 };
            bottom[1] = if w == 3 { g } else { 0.0 };
        }
    }
}

/// Returns `true` for the elements that dropout keeps: a 32-bit hash of
/// the element's index and `seed` below `threshold`.
/// The hash (a multiply-xorshift finalizer) needs no state, so the backward
/// pass recomputes the same mask and the loop vectorizes.
#[inline(always)]
fn kept(index: u32, seed: u32, threshold: u32) -> bool {
    let mut h = index.wrapping_mul(0x9e37_79b9) ^ seed;
    h ^= h >> 16;
    h = h.wrapping_mul(0x7feb_352d);
    h ^= h >> 15;
    h = h.wrapping_mul(0x846c_a68b);
    h ^= h >> 16;
    h < threshold
}

/// Computes the 32-bit threshold below which a hash keeps its element.
fn threshold(prob: f32) -> u32 {
    ((1.0 - prob as f64) * 4_294_967_296.0).min(u32::MAX as f64) as u32
}

/// Writes `out = values / (1 - prob)` where the mask of `seed` keeps an
/// element, 0 elsewhere. `first` is the index of `values[0]` in the tensor.
#[multiversion::multiversion(targets = "simd")]
fn dropout_chunk(values: &[f32], prob: f32, seed: u32, first: u32, out: &mut [f32]) {
    let (limit, scale) = (threshold(prob), 1.0 / (1.0 - prob));
    for (i, (o, &v)) in out.iter_mut().zip(values).enumerate() {
        let keep = kept(first.wrapping_add(i as u32), seed, limit);
        *o = if keep { v * scale } else { 0.0 };
    }
}

/// Zeroes each element of `values` with probability `prob` and scales the
/// rest by `1 / (1 - prob)`, with the mask that `seed` draws. Applied to an
/// output gradient with the same seed, it is dropout's backward pass.
pub fn dropout(values: &[f32], prob: f32, seed: u32) -> Vec<f32> {
    let mut out = zeros(values.len());
    out.par_chunks_mut(CHUNK)
        .zip(values.par_chunks(CHUNK))
        .enumerate()
        .for_each(|(i, (out, values))| dropout_chunk(values, prob, seed, (i * CHUNK) as u32, out));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max_pool_picks_window_maximum() {
        // One 2x4 plane: windows [1, 5, 2, 0] and [3, 3, 4, 9].
        let x = [1.0, 5.0, 3.0, 3.0, 2.0, 0.0, 4.0, 9.0];
        let (out, winners) = max_pool_forward(&x, 2, 4);
        assert_eq!(out, vec![5.0, 9.0]);
        assert_eq!(winners, vec![1, 3]);
    }

    #[test]
    fn max_pool_first_of_equal_values_wins() {
        let x = [3.0, 3.0, 3.0, 3.0];
        let (_, winners) = max_pool_forward(&x, 2, 2);
        assert_eq!(winners, vec![0]);
    }

    #[test]
    fn max_pool_gradient_goes_to_winner() {
        let winners = [1, 2];
        let dx = max_pool_backward(&[7.0, -1.0], &winners, 2, 4);
        assert_eq!(dx, vec![0.0, 7.0, 0.0, 0.0, 0.0, 0.0, -1.0, 0.0]);
    }

    #[test]
    fn dropout_keeps_about_one_minus_prob() {
        let values = vec![1.0f32; 200_000];
        let out = dropout(&values, 0.25, 42);
        let kept = out.iter().filter(|&&v| v != 0.0).count() as f64 / values.len() as f64;
        assert!((kept - 0.75).abs() < 0.01, "kept {kept}");
        assert!(
            out.iter()
                .all(|&v| v == 0.0 || (v - 1.0 / 0.75).abs() < 1e-6)
        );
    }

    #[test]
    fn dropout_mask_depends_on_seed_only() {
        let values: Vec<f32> = (1..=50_000).map(|i| i as f32).collect();
        let first = dropout(&values, 0.5, 7);
        let again = dropout(&values, 0.5, 7);
        let other = dropout(&values, 0.5, 8);
        assert_eq!(first, again);
        assert_ne!(first, other);
    }
}
