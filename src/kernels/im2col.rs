//! The three products of a 2-D convolution on plain `f32` slices in NCHW
//! order: the forward pass, the input (data) gradient and the weight
//! gradient, each as im2col or col2im around one `gemm` call per image.
//! Groups and dilation other than 1 are not handled; callers fall back.

use rayon::prelude::*;

/// Sizes of a convolution with groups 1 and dilation 1, batch included.
///
/// The output sizes are given, not derived, so that asymmetric "same"
/// padding and the output padding of a transposed convolution need no
/// extra fields: rows and columns beyond the input read as zero.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConvGeometry {
    pub batch: usize,
    pub in_channels: usize,
    pub in_size: [usize; 2],
    pub out_channels: usize,
    pub out_size: [usize; 2],
    pub kernel: [usize; 2],
    pub stride: [usize; 2],
    /// Zero rows above and zero columns left of the input.
    pub pad_begin: [usize; 2],
}

impl ConvGeometry {
    /// Rows of the im2col matrix: one per input channel and kernel tap.
    pub fn taps(&self) -> usize {
        self.in_channels * self.kernel[0] * self.kernel[1]
    }

    /// Output positions of one image.
    pub fn positions(&self) -> usize {
        self.out_size[0] * self.out_size[1]
    }

    pub fn input_len(&self) -> usize {
        self.in_channels * self.in_size[0] * self.in_size[1]
    }

    pub fn output_len(&self) -> usize {
        self.out_channels * self.positions()
    }

    /// Range of output indices `o` along one axis whose input index
    /// `o * stride + tap - pad` lies inside `0..size`.
    fn valid(&self, axis: usize, tap: usize) -> (usize, usize) {
        let (stride, pad) = (self.stride[axis], self.pad_begin[axis]);
        let (size, out) = (self.in_size[axis], self.out_size[axis]);
        let low = pad.saturating_sub(tap).div_ceil(stride).min(out);
        let high = if size + pad > tap {
            (size + pad - tap).div_ceil(stride).min(out)
        } else {
            0
        };
        (low, high.max(low))
    }

    /// Writes the im2col matrix of one image: `taps` rows of `positions`.
    fn im2col(&self, image: &[f32], cols: &mut [f32]) {
        let [kh, kw] = self.kernel;
        let [ih, iw] = self.in_size;
        let [oh, ow] = self.out_size;
        let [sy, sx] = self.stride;
        let [py, px] = self.pad_begin;
        for (row, col) in cols.chunks_exact_mut(oh * ow).enumerate() {
            let (c, ky, kx) = (row / (kh * kw), row / kw % kh, row % kw);
            let plane = &image[c * ih * iw..(c + 1) * ih * iw];
            let (y0, y1) = self.valid(0, ky);
            let (x0, x1) = self.valid(1, kx);
            col[..y0 * ow].fill(0.0);
            col[y1 * ow..].fill(0.0);
            for oy in y0..y1 {
                let line = &plane[(oy * sy + ky - py) * iw..][..iw];
                let out = &mut col[oy * ow..(oy + 1) * ow];
                out[..x0].fill(0.0);
                out[x1..].fill(0.0);
                if x0 == x1 {
                    continue;
                }
                let start = x0 * sx + kx - px;
                if sx == 1 {
                    out[x0..x1].copy_from_slice(&line[start..start + x1 - x0]);
                } else {
                    let strided = line[start..].iter().step_by(sx);
                    out[x0..x1]
                        .iter_mut()
                        .zip(strided)
                        .for_each(|(o, v)| *o = *v);
                }
            }
        }
    }

    /// Adds the im2col matrix `cols` back into one image gradient.
    fn col2im(&self, cols: &[f32], image: &mut [f32]) {
        let [kh, kw] = self.kernel;
        let [ih, iw] = self.in_size;
        let [oh, ow] = self.out_size;
        let [sy, sx] = self.stride;
        let [py, px] = self.pad_begin;
        for (row, col) in cols.chunks_exact(oh * ow).enumerate() {
            let (c, ky, kx) = (row / (kh * kw), row / kw % kh, row % kw);
            let plane = &mut image[c * ih * iw..(c + 1) * ih * iw];
            let (y0, y1) = self.valid(0, ky);
            let (x0, x1) = self.valid(1, kx);
            for oy in y0..y1 {
                let line = &mut plane[(oy * sy + ky - py) * iw..][..iw];
                let from = &col[oy * ow..(oy + 1) * ow];
                if x0 == x1 {
                    continue;
                }
                let start = x0 * sx + kx - px;
                if sx == 1 {
                    let to = &mut line[start..start + x1 - x0];
                    to.iter_mut().zip(&from[x0..x1]).for_each(|(t, v)| *t += v);
                } else {
                    let to = line[start..].iter_mut().step_by(sx);
                    to.zip(&from[x0..x1]).for_each(|(t, v)| *t += v);
                }
            }
        }
    }
}

/// `dst (m x n) = lhs (m x k) * rhs (k x n)`, or `dst +=` when `accumulate`;
/// each matrix given by its row and column strides.
#[allow(clippy::too_many_arguments)]
fn matmul(
    [m, n, k]: [usize; 3],
    dst: &mut [f32],
    accumulate: bool,
    lhs: &[f32],
    [lhs_rs, lhs_cs]: [isize; 2],
    rhs: &[f32],
    [rhs_rs, rhs_cs]: [isize; 2],
) {
    assert!(dst.len() >= m * n, "matmul destination too small");
    // SAFETY: the callers size `lhs` and `rhs` for these strides (checked by
    // the geometry asserts), and `dst` is a dense m x n row-major block.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            n as isize,
            accumulate,
            lhs.as_ptr(),
            lhs_cs,
            lhs_rs,
            rhs.as_ptr(),
            rhs_cs,
            rhs_rs,
            1.0,
            1.0,
            false,
            false,
            false,
            gemm::Parallelism::None,
        );
    }
}

/// Output `[batch, out_channels, out_h, out_w]` of `x` convolved with
/// `weight` (`[out_channels, in_channels, kh, kw]`), plus `bias` per channel.
pub fn forward(g: &ConvGeometry, x: &[f32], weight: &[f32], bias: Option<&[f32]>) -> Vec<f32> {
    assert_eq!(x.len(), g.batch * g.input_len(), "conv input size");
    assert_eq!(weight.len(), g.out_channels * g.taps(), "conv weight size");
    let (taps, positions) = (g.taps(), g.positions());
    let mut out = vec![0.0f32; g.batch * g.output_len()];
    out.par_chunks_mut(g.output_len())
        .zip(x.par_chunks(g.input_len()))
        .for_each_init(
            || vec![0.0f32; taps * positions],
            |cols, (out, image)| {
                g.im2col(image, cols);
                let shape = [g.out_channels, positions, taps];
                let w_strides = [taps as isize, 1];
                let c_strides = [positions as isize, 1];
                matmul(shape, out, false, weight, w_strides, cols, c_strides);
                if let Some(bias) = bias {
                    for (row, b) in out.chunks_exact_mut(positions).zip(bias) {
                        row.iter_mut().for_each(|v| *v += b);
                    }
                }
            },
        );
    out
}

/// Gradient of the input, `[batch, in_channels, in_h, in_w]`, from the
/// output gradient `grad` and the weight.
pub fn input_grad(g: &ConvGeometry, grad: &[f32], weight: &[f32]) -> Vec<f32> {
    assert_eq!(
        grad.len(),
        g.batch * g.output_len(),
        "conv output gradient size"
    );
    assert_eq!(weight.len(), g.out_channels * g.taps(), "conv weight size");
    let (taps, positions) = (g.taps(), g.positions());
    let mut dx = vec![0.0f32; g.batch * g.input_len()];
    dx.par_chunks_mut(g.input_len())
        .zip(grad.par_chunks(g.output_len()))
        .for_each_init(
            || vec![0.0f32; taps * positions],
            |cols, (dx, grad)| {
                // cols (taps x positions) = weight^T (taps x out) * grad (out x positions)
                let shape = [taps, positions, g.out_channels];
                let w_strides = [1, taps as isize];
                let g_strides = [positions as isize, 1];
                matmul(shape, cols, false, weight, w_strides, grad, g_strides);
                g.col2im(cols, dx);
            },
        );
    dx
}

/// Gradient of the weight, `[out_channels, in_channels, kh, kw]`, summed
/// over the batch.
pub fn weight_grad(g: &ConvGeometry, x: &[f32], grad: &[f32]) -> Vec<f32> {
    assert_eq!(x.len(), g.batch * g.input_len(), "conv input size");
    assert_eq!(
        grad.len(),
        g.batch * g.output_len(),
        "conv output gradient size"
    );
    let (taps, positions) = (g.taps(), g.positions());
    let weights = g.out_channels * taps;
    // One partial sum per rayon split, at least a few images each.
    let min_len = g.batch.div_ceil(rayon::current_num_threads()).max(1);
    x.par_chunks(g.input_len())
        .zip(grad.par_chunks(g.output_len()))
        .with_min_len(min_len)
        .fold(
            || (vec![0.0f32; weights], vec![0.0f32; taps * positions]),
            |(mut dw, mut cols), (image, grad)| {
                g.im2col(image, &mut cols);
                // dw (out x taps) += grad (out x positions) * cols^T (positions x taps)
                let shape = [g.out_channels, taps, positions];
                let g_strides = [positions as isize, 1];
                let c_strides = [1, positions as isize];
                matmul(shape, &mut dw, true, grad, g_strides, &cols, c_strides);
                (dw, cols)
            },
        )
        .map(|(dw, _)| dw)
        .reduce(|| vec![0.0f32; weights], add_into)
}

/// Computes the convolution of `x` with `weight` and the weight gradient
/// against `grad` from one im2col per image. This is the backward pass of
/// a transposed convolution, whose output gradient is `x` here.
pub fn forward_and_weight_grad(
    g: &ConvGeometry,
    x: &[f32],
    weight: &[f32],
    grad: &[f32],
) -> (Vec<f32>, Vec<f32>) {
    assert_eq!(x.len(), g.batch * g.input_len(), "conv input size");
    assert_eq!(weight.len(), g.out_channels * g.taps(), "conv weight size");
    assert_eq!(
        grad.len(),
        g.batch * g.output_len(),
        "conv output gradient size"
    );
    let (taps, positions) = (g.taps(), g.positions());
    let weights = g.out_channels * taps;
    let min_len = g.batch.div_ceil(rayon::current_num_threads()).max(1);
    let mut out = vec![0.0f32; g.batch * g.output_len()];
    let dw = out
        .par_chunks_mut(g.output_len())
        .zip(x.par_chunks(g.input_len()))
        .zip(grad.par_chunks(g.output_len()))
        .with_min_len(min_len)
        .fold(
            || (vec![0.0f32; weights], vec![0.0f32; taps * positions]),
            |(mut dw, mut cols), ((out, image), grad)| {
                g.im2col(image, &mut cols);
                let w_strides = [taps as isize, 1];
                let c_strides = [positions as isize, 1];
                let shape = [g.out_channels, positions, taps];
                matmul(shape, out, false, weight, w_strides, &cols, c_strides);
                let shape = [g.out_channels, taps, positions];
                let cols_t = [1, positions as isize];
                matmul(shape, &mut dw, true, grad, c_strides, &cols, cols_t);
                (dw, cols)
            },
        )
        .map(|(dw, _)| dw)
        .reduce(|| vec![0.0f32; weights], add_into);
    (out, dw)
}

fn add_into(mut a: Vec<f32>, b: Vec<f32>) -> Vec<f32> {
    a.iter_mut().zip(&b).for_each(|(x, y)| *x += y);
    a
}

/// Sum of `grad` over batch and positions, per output channel.
pub fn bias_grad(g: &ConvGeometry, grad: &[f32]) -> Vec<f32> {
    let mut db = vec![0.0f32; g.out_channels];
    for image in grad.chunks_exact(g.output_len()) {
        for (sum, row) in db.iter_mut().zip(image.chunks_exact(g.positions())) {
            *sum += row.iter().sum::<f32>();
        }
    }
    db
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A direct six-loop convolution, the definition the kernels must match.
    fn direct(g: &ConvGeometry, x: &[f32], w: &[f32]) -> Vec<f32> {
        let mut out = vec![0.0; g.batch * g.output_len()];
        let [ih, iw] = g.in_size.map(|s| s as isize);
        for b in 0..g.batch {
            for o in 0..g.out_channels {
                for oy in 0..g.out_size[0] {
                    for ox in 0..g.out_size[1] {
                        let mut sum = 0.0;
                        for c in 0..g.in_channels {
                            for ky in 0..g.kernel[0] {
                                for kx in 0..g.kernel[1] {
                                    let iy =
                                        (oy * g.stride[0] + ky) as isize - g.pad_begin[0] as isize;
                                    let ix =
                                        (ox * g.stride[1] + kx) as isize - g.pad_begin[1] as isize;
                                    if iy < 0 || ix < 0 || iy >= ih || ix >= iw {
                                        continue;
                                    }
                                    let xi = ((b * g.in_channels + c) as isize * ih + iy) * iw + ix;
                                    let wi = ((o * g.in_channels + c) * g.kernel[0] + ky)
                                        * g.kernel[1]
                                        + kx;
                                    sum += x[xi as usize] * w[wi];
                                }
                            }
                        }
                        let oi =
                            ((b * g.out_channels + o) * g.out_size[0] + oy) * g.out_size[1] + ox;
                        out[oi] = sum;
                    }
                }
            }
        }
        out
    }

    fn ramp(len: usize, scale: f32) -> Vec<f32> {
        (0..len)
            .map(|i| ((i * 7919 % 101) as f32 / 50.0 - 1.0) * scale)
            .collect()
    }

    fn strided_geometry() -> ConvGeometry {
        // 5x5 stride 2 "same" on 9x9: ceil(9 / 2) = 5, padding 2 before.
        ConvGeometry {
            batch: 3,
            in_channels: 2,
            in_size: [9, 9],
            out_channels: 4,
            out_size: [5, 5],
            kernel: [5, 5],
            stride: [2, 2],
            pad_begin: [2, 2],
        }
    }

    #[test]
    fn forward_matches_direct_convolution() {
        let g = strided_geometry();
        let x = ramp(g.batch * g.input_len(), 1.0);
        let w = ramp(g.out_channels * g.taps(), 0.3);
        let got = forward(&g, &x, &w, None);
        let want = direct(&g, &x, &w);
        for (a, b) in got.iter().zip(&want) {
            assert!((a - b).abs() < 1e-4, "{a} vs {b}");
        }
    }

    #[test]
    fn input_and_weight_grads_are_adjoint_to_forward() {
        // <forward(x, w), r> = <x, input_grad(r, w)> = <w, weight_grad(x, r)>.
        let g = strided_geometry();
        let x = ramp(g.batch * g.input_len(), 1.0);
        let w = ramp(g.out_channels * g.taps(), 0.3);
        let r = ramp(g.batch * g.output_len(), 0.5);
        let dot = |a: &[f32], b: &[f32]| a.iter().zip(b).map(|(p, q)| p * q).sum::<f32>();
        let reference = dot(&forward(&g, &x, &w, None), &r);
        let via_input = dot(&x, &input_grad(&g, &r, &w));
        let via_weight = dot(&w, &weight_grad(&g, &x, &r));
        assert!((reference - via_input).abs() < 1e-3 * reference.abs().max(1.0));
        assert!((reference - via_weight).abs() < 1e-3 * reference.abs().max(1.0));
    }

    #[test]
    fn shared_im2col_matches_separate_passes() {
        let g = strided_geometry();
        let x = ramp(g.batch * g.input_len(), 1.0);
        let w = ramp(g.out_channels * g.taps(), 0.3);
        let r = ramp(g.batch * g.output_len(), 0.5);
        let (out, dw) = forward_and_weight_grad(&g, &x, &w, &r);
        let close = |a: &[f32], b: &[f32]| a.iter().zip(b).all(|(p, q)| (p - q).abs() < 1e-4);
        assert!(close(&out, &forward(&g, &x, &w, None)));
        assert!(close(&dw, &weight_grad(&g, &x, &r)));
    }

    #[test]
    fn valid_range_skips_padding() {
        let g = strided_geometry();
        // Tap 0 with padding 2 reads input -2, 0, 2, ...: the first output is padding.
        assert_eq!(g.valid(0, 0), (1, 5));
        // Tap 4 reads 2, 4, 6, 8, 10: the last output is past the input.
        assert_eq!(g.valid(0, 4), (0, 4));
    }
}
