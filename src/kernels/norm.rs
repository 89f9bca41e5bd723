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

/// The LeakyReLU after a batch norm, given by the factor of a value whose
/// normalized input `pre` is negative. A slope of 1 leaves every value as it is.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Activation {
    pub slope: f32,
}

impl Activation {
    /// No activation: the plain batch norm.
    pub const IDENTITY: Activation = Activation { slope: 1.0 };

    /// Returns the derivative of the activation at `pre`, which is also the
    /// factor that maps `pre` to the activation's output.
    #[inline(always)]
    fn factor(self, pre: f32) -> f32 {
        if pre < 0.0 { self.slope } else { 1.0 }
    }
}

/// The per-channel affine map of the forward pass, `pre = scale * x + shift`,
/// whose sign the backward pass needs for the activation's derivative.
#[derive(Clone, Copy, Debug)]
struct ChannelMap {
    scale: f32,
    shift: f32,
}

/// Returns the sums of `d` and of `d * (x - mean)`, where `d` is `dy`
/// through the activation's derivative at `map(x)`.
#[multiversion::multiversion(targets = "simd")]
fn grad_sums(
    dy: &[f32],
    x: &[f32],
    mean: f32,
    map: ChannelMap,
    activation: Activation,
) -> (f32, f32) {
    let (mut sum, mut dot) = ([0.0f32; LANES], [0.0f32; LANES]);
    // Written out rather than through `Activation::factor`: multiplying by
    // the factor kept this reduction scalar, at about four times the time.
    let (scale, shift, slope) = (map.scale, map.shift, activation.slope);
    let chunks = dy.chunks_exact(LANES).zip(x.chunks_exact(LANES));
    for (g, v) in chunks {
        for i in 0..LANES {
            let pre = scale * v[i] + shift;
            let d = if pre < 0.0 { g[i] * slope } else { g[i] };
            sum[i] += d;
            dot[i] += d * (v[i] - mean);
        }
    }
    let (mut s, mut p) = (sum.iter().sum::<f32>(), dot.iter().sum::<f32>());
    let tail = dy.len() - dy.len() % LANES;
    for (g, v) in dy[tail..].iter().zip(&x[tail..]) {
        let d = g * activation.factor(map.scale * v + map.shift);
        s += d;
        p += d * (v - mean);
    }
    (s, p)
}

/// Writes `out = activation(scale * x + shift)`.
#[multiversion::multiversion(targets = "simd")]
fn affine(x: &[f32], map: ChannelMap, activation: Activation, out: &mut [f32]) {
    for (o, &v) in out.iter_mut().zip(x) {
        let pre = map.scale * v + map.shift;
        *o = pre * activation.factor(pre);
    }
}

/// Writes `out = a * d + b * x + c`, where `d` is `dy` through the
/// activation's derivative at `map(x)`.
#[multiversion::multiversion(targets = "simd")]
fn affine2(
    dy: &[f32],
    x: &[f32],
    [a, b, c]: [f32; 3],
    (map, activation): (ChannelMap, Activation),
    out: &mut [f32],
) {
    for ((o, &g), &v) in out.iter_mut().zip(dy).zip(x) {
        let d = g * activation.factor(map.scale * v + map.shift);
        *o = a * d + b * v + c;
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

/// Returns the per-channel maps `scale * x + shift` that normalize with
/// `mean` and `variance`, then scale by `gamma` and shift by `beta`.
fn channel_maps(
    (gamma, beta): (&[f32], &[f32]),
    (mean, variance): (&[f32], &[f32]),
    epsilon: f32,
) -> Vec<ChannelMap> {
    (0..gamma.len())
        .map(|c| {
            let scale = gamma[c] / (variance[c] + epsilon).sqrt();
            ChannelMap {
                scale,
                shift: beta[c] - scale * mean[c],
            }
        })
        .collect()
}

/// Normalizes `x` with its own batch statistics, scales by `gamma`, shifts
/// by `beta` and applies `activation`. Returns the output and the
/// per-channel mean and biased variance.
pub fn forward(
    g: &NormGeometry,
    x: &[f32],
    (gamma, beta): (&[f32], &[f32]),
    epsilon: f32,
    activation: Activation,
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    assert_eq!(x.len(), g.len(), "batch norm input size");
    assert_eq!(gamma.len(), g.channels, "batch norm gamma size");
    assert_eq!(beta.len(), g.channels, "batch norm beta size");
    let (mean, variance) = statistics(g, x);
    let maps = channel_maps((gamma, beta), (&mean, &variance), epsilon);
    let mut out = zeros(g.len());
    per_plane(g, &mut out, |c, start, plane| {
        affine(&x[start..start + g.plane], maps[c], activation, plane);
    });
    (out, mean, variance)
}

/// Computes the gradients of `forward` for the input, `gamma` and `beta`,
/// from the output gradient `dy` and the statistics that `forward` returned.
/// The activation's derivative comes from the sign of the normalized input,
/// computed again from `x`, so the output need not be kept.
pub fn backward(
    g: &NormGeometry,
    (x, dy): (&[f32], &[f32]),
    (gamma, beta): (&[f32], &[f32]),
    (mean, variance): (&[f32], &[f32]),
    epsilon: f32,
    activation: Activation,
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    assert_eq!(x.len(), g.len(), "batch norm input size");
    assert_eq!(dy.len(), g.len(), "batch norm output gradient size");
    let n = g.samples();
    let inv_std: Vec<f32> = variance
        .iter()
        .map(|v| 1.0 / (v + epsilon).sqrt())
        .collect();
    let maps = channel_maps((gamma, beta), (mean, variance), epsilon);
    // Per channel, with d the gradient before the activation: the sum of d
    // and the sum of d times the normalized input.
    let (beta_grad, gamma_grad): (Vec<f32>, Vec<f32>) = (0..g.channels)
        .into_par_iter()
        .map(|c| {
            let (sum, dot) = g
                .planes(dy, c)
                .zip(g.planes(x, c))
                .map(|(d, v)| grad_sums(d, v, mean[c], maps[c], activation))
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
        let derivative = (maps[c], activation);
        affine2(
            &dy[range.clone()],
            &x[range],
            coefficients[c],
            derivative,
            plane,
        );
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
    fn leaky_activation_matches_composition() {
        let x = ramp(G.len(), 1.5, 0.3);
        let gamma = [0.5, 1.0, 1.5, -2.0];
        let beta = [0.1, -0.2, 0.0, 0.4];
        let leaky = Activation { slope: 0.2 };
        let plain = forward(&G, &x, (&gamma, &beta), 1e-3, Activation::IDENTITY);
        let (normalized, mean, variance) = plain;
        let (fused, _, _) = forward(&G, &x, (&gamma, &beta), 1e-3, leaky);
        let factor = |p: f32| if p < 0.0 { 0.2 } else { 1.0 };
        assert!(normalized.iter().any(|&p| p < 0.0), "no negative value");
        for (i, (f, p)) in fused.iter().zip(&normalized).enumerate() {
            assert!((f - p * factor(*p)).abs() < 1e-6, "output {i}: {f} vs {p}");
        }

        // The fused gradient equals the plain one of dy through LeakyReLU.
        let r = ramp(G.len(), 0.7, 0.0);
        let through: Vec<f32> = r
            .iter()
            .zip(&normalized)
            .map(|(g, p)| g * factor(*p))
            .collect();
        let statistics = (mean.as_slice(), variance.as_slice());
        let params = (gamma.as_slice(), beta.as_slice());
        let want = backward(
            &G,
            (&x, &through),
            params,
            statistics,
            1e-3,
            Activation::IDENTITY,
        );
        let got = backward(&G, (&x, &r), params, statistics, 1e-3, leaky);
        let names = ["input gradient", "gamma gradient", "beta gradient"];
        for ((name, a), b) in names
            .iter()
            .zip([&got.0, &got.1, &got.2])
            .zip([&want.0, &want.1, &want.2])
        {
            for (i, (p, q)) in a.iter().zip(b.iter()).enumerate() {
                assert!((p - q).abs() < 1e-4, "{name} {i}: {p} vs {q}");
            }
        }
    }

    #[test]
    fn backward_matches_finite_differences() {
        let x = ramp(G.len(), 1.5, 0.3);
        let gamma = [0.5, 1.0, 1.5, -2.0];
        let beta = [0.1, -0.2, 0.0, 0.4];
        let r = ramp(G.len(), 0.7, 0.0);
        let loss = |x: &[f32], gamma: &[f32], beta: &[f32]| -> f64 {
            let (out, _, _) = forward(&G, x, (gamma, beta), 1e-3, Activation::IDENTITY);
            out.iter().zip(&r).map(|(o, w)| (o * w) as f64).sum()
        };
        let (mean, variance) = statistics(&G, &x);
        let (dx, dgamma, dbeta) = backward(
            &G,
            (&x, &r),
            (&gamma, &beta),
            (&mean, &variance),
            1e-3,
            Activation::IDENTITY,
        );
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
