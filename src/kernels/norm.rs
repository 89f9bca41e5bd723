//! Batch normalization in training mode on plain `f32` slices in NCHW
//! order: statistics, normalized output and all three gradients, each in
//! a few vectorized passes instead of burn's transposed copies and
//! separate element-wise ops.

use rayon::prelude::*;

use super::allocator::zeros;

/// Sizes of an NCHW activation seen by batch normalization.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NormGeometry {
    pub batch: usize,
    pub channels: usize,
    /// Values per channel of one image: height times width.
    pub plane: usize,
}

impl NormGeometry {
    fn len(&self) -> usize {
        self.batch * self.channels * self.plane
    }

    /// Values that each channel's statistics average.
    fn samples(&self) -> f32 {
        (self.batch * self.plane) as f32
    }

    /// Returns the planes of channel `c` in `values`, image after image.
    fn planes<'a>(&self, values: &'a [f32], c: usize) -> impl Iterator<Item = &'a [f32]> {
        let (plane, stride) = (self.plane, self.channels * self.plane);
        (0..self.batch).map(move |b| &values[b * stride + c * plane..][..plane])
    }
}

/// Lanes of the partial sums, enough for one AVX-512 register.
const LANES: usize = 16;

/// Returns the sums of `x - shift` and of its square.
#[multiversion::multiversion(targets = "simd")]
fn centered_sums(x: &[f32], shift: f32) -> (f32, f32) {
    let (mut sum, mut squares) = ([0.0f32; LANES], [0.0f32; LANES]);
    let chunks = x.chunks_exact(LANES);
    let rest = chunks.remainder();
    for chunk in chunks {
        for i in 0..LANES {
            let d = chunk[i] - shift;
            sum[i] += d;
            squares[i] += d * d;
        }
    }
    let (mut s, mut q) = (sum.iter().sum::<f32>(), squares.iter().sum::<f32>());
    for &v in rest {
        s += v - shift;
        q += (v - shift) * (v - shift);
    }
    (s, q)
}

/// Returns the sums of `dy` and of `dy * (x - mean)`.
#[multiversion::multiversion(targets = "simd")]
fn grad_sums(dy: &[f32], x: &[f32], mean: f32) -> (f32, f32) {
    let (mut sum, mut dot) = ([0.0f32; LANES], [0.0f32; LANES]);
    let chunks = dy.chunks_exact(LANES).zip(x.chunks_exact(LANES));
    for (g, v) in chunks {
        for i in 0..LANES {
            sum[i] += g[i];
            dot[i] += g[i] * (v[i] - mean);
        }
    }
    let (mut s, mut d) = (sum.iter().sum::<f32>(), dot.iter().sum::<f32>());
    let tail = dy.len() - dy.len() % LANES;
    for (g, v) in dy[tail..].iter().zip(&x[tail..]) {
        s += g;
        d += g * (v - mean);
    }
    (s, d)
}

/// Writes `out = a * x + b`.
#[multiversion::multiversion(targets = "simd")]
fn affine(x: &[f32], a: f32, b: f32, out: &mut [f32]) {
    for (o, &v) in out.iter_mut().zip(x) {
        *o = a * v + b;
    }
}

/// Writes `out = a * dy + b * x + c`.
#[multiversion::multiversion(targets = "simd")]
fn affine2(dy: &[f32], x: &[f32], [a, b, c]: [f32; 3], out: &mut [f32]) {
    for ((o, &g), &v) in out.iter_mut().zip(dy).zip(x) {
        *o = a * g + b * v + c;
    }
}

/// Returns, per channel, the mean and the biased variance of `x`.
fn statistics(g: &NormGeometry, x: &[f32]) -> (Vec<f32>, Vec<f32>) {
    let n = g.samples();
    (0..g.channels)
        .into_par_iter()
        .map(|c| {
            // Summing around the first value keeps the squares small when
            // the channel's mean is far from zero.
            let shift = g.planes(x, c).next().map_or(0.0, |p| p[0]);
            let (sum, squares) = g
                .planes(x, c)
                .map(|p| centered_sums(p, shift))
                .fold((0.0, 0.0), |(s, q), (a, b)| (s + a, q + b));
            let mean = sum / n;
            (shift + mean, (squares / n - mean * mean).max(0.0))
        })
        .unzip()
}

/// Calls `f(channel, offset, plane)` for every plane of `out`, in parallel,
/// where `offset` is the plane's first index in the NCHW tensor.
fn per_plane(g: &NormGeometry, out: &mut [f32], f: impl Fn(usize, usize, &mut [f32]) + Sync) {
    out.par_chunks_mut(g.plane)
        .enumerate()
        .for_each(|(row, plane)| f(row % g.channels, row * g.plane, plane));
}

/// Normalizes `x` with its own batch statistics, then scales by `gamma`
/// and shifts by `beta`. Returns the output and the per-channel mean and
/// biased variance.
pub fn forward(
    g: &NormGeometry,
    x: &[f32],
    gamma: &[f32],
    beta: &[f32],
    epsilon: f32,
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    assert_eq!(x.len(), g.len(), "batch norm input size");
    assert_eq!(gamma.len(), g.channels, "batch norm gamma size");
    assert_eq!(beta.len(), g.channels, "batch norm beta size");
    let (mean, variance) = statistics(g, x);
    let scale: Vec<f32> = (0..g.channels)
        .map(|c| gamma[c] / (variance[c] + epsilon).sqrt())
        .collect();
    let mut out = zeros(g.len());
    per_plane(g, &mut out, |c, start, plane| {
        let shift = beta[c] - scale[c] * mean[c];
        affine(&x[start..start + g.plane], scale[c], shift, plane);
    });
    (out, mean, variance)
}

/// Computes the gradients of `forward` for the input, `gamma` and `beta`,
/// from the output gradient `dy` and the statistics that `forward` returned.
pub fn backward(
    g: &NormGeometry,
    x: &[f32],
    dy: &[f32],
    gamma: &[f32],
    (mean, variance): (&[f32], &[f32]),
    epsilon: f32,
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    assert_eq!(x.len(), g.len(), "batch norm input size");
    assert_eq!(dy.len(), g.len(), "batch norm output gradient size");
    let n = g.samples();
    let inv_std: Vec<f32> = variance
        .iter()
        .map(|v| 1.0 / (v + epsilon).sqrt())
        .collect();
    // Per channel: the sum of dy and the sum of dy times the normalized input.
    let (beta_grad, gamma_grad): (Vec<f32>, Vec<f32>) = (0..g.channels)
        .into_par_iter()
        .map(|c| {
            let (sum, dot) = g
                .planes(dy, c)
                .zip(g.planes(x, c))
                .map(|(d, v)| grad_sums(d, v, mean[c]))
                .fold((0.0, 0.0), |(s, p), (a, b)| (s + a, p + b));
            (sum, dot * inv_std[c])
        })
        .unzip();
    // dx = gamma inv_std (dy - mean(dy) - x_hat mean(dy x_hat)), linear in dy and x.
    let coefficients: Vec<[f32; 3]> = (0..g.channels)
        .map(|c| {
            let k = gamma[c] * inv_std[c];
            let (mean_dy, mean_dy_xhat) = (beta_grad[c] / n, gamma_grad[c] / n);
            let b = -k * inv_std[c] * mean_dy_xhat;
            [k, b, -k * mean_dy - b * mean[c]]
        })
        .collect();
    let mut dx = zeros(g.len());
    per_plane(g, &mut dx, |c, start, plane| {
        let range = start..start + g.plane;
        affine2(&dy[range.clone()], &x[range], coefficients[c], plane);
    });
    (dx, gamma_grad, beta_grad)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ramp(len: usize, scale: f32, offset: f32) -> Vec<f32> {
        (0..len)
            .map(|i| ((i * 7919 % 101) as f32 / 50.0 - 1.0) * scale + offset)
            .collect()
    }

    const G: NormGeometry = NormGeometry {
        batch: 3,
        channels: 4,
        plane: 37,
    };

    #[test]
    fn statistics_match_two_pass_definition() {
        let x = ramp(G.len(), 2.0, 5.0);
        let (mean, variance) = statistics(&G, &x);
        for c in 0..G.channels {
            let values: Vec<f32> = G.planes(&x, c).flatten().copied().collect();
            let want_mean = values.iter().sum::<f32>() / values.len() as f32;
            let want_var =
                values.iter().map(|v| (v - want_mean).powi(2)).sum::<f32>() / values.len() as f32;
            assert!((mean[c] - want_mean).abs() < 1e-4, "mean of channel {c}");
            assert!(
                (variance[c] - want_var).abs() < 1e-4,
                "variance of channel {c}"
            );
        }
    }

    #[test]
    fn backward_matches_finite_differences() {
        let x = ramp(G.len(), 1.5, 0.3);
        let gamma = [0.5, 1.0, 1.5, -2.0];
        let beta = [0.1, -0.2, 0.0, 0.4];
        let r = ramp(G.len(), 0.7, 0.0);
        let loss = |x: &[f32], gamma: &[f32], beta: &[f32]| -> f64 {
            let (out, _, _) = forward(&G, x, gamma, beta, 1e-3);
            out.iter().zip(&r).map(|(o, w)| (o * w) as f64).sum()
        };
        let (mean, variance) = statistics(&G, &x);
        let (dx, dgamma, dbeta) = backward(&G, &x, &r, &gamma, (&mean, &variance), 1e-3);
        let h = 1e-2f32;
        let numeric = |f: &dyn Fn(f32) -> f64| (f(h) - f(-h)) / (2.0 * h as f64);
        for i in [0, 17, 60, 111, G.len() - 1] {
            let shifted = |d: f32| {
                let mut x = x.clone();
                x[i] += d;
                loss(&x, &gamma, &beta)
            };
            let want = numeric(&shifted);
            assert!(
                (dx[i] as f64 - want).abs() < 2e-2,
                "dx[{i}] {} vs {want}",
                dx[i]
            );
        }
        for c in 0..G.channels {
            let gamma_shifted = |d: f32| {
                let mut gamma = gamma;
                gamma[c] += d;
                loss(&x, &gamma, &beta)
            };
            let beta_shifted = |d: f32| {
                let mut beta = beta;
                beta[c] += d;
                loss(&x, &gamma, &beta)
            };
            let (want_gamma, want_beta) = (numeric(&gamma_shifted), numeric(&beta_shifted));
            assert!((dgamma[c] as f64 - want_gamma).abs() < 2e-2, "dgamma[{c}]");
            assert!((dbeta[c] as f64 - want_beta).abs() < 2e-2, "dbeta[{c}]");
        }
    }
}
