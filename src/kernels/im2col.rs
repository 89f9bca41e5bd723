//! The three products of a 2-D convolution on plain `f32` slices in NCHW
//! order: the forward pass, the input (data) gradient and the weight
//! gradient, each as im2col or col2im around one `gemm` call per block of images.
//! Groups and dilation other than 1 are not handled; callers fall back.

use rayon::prelude::*;

use super::allocator::zeros;
use super::direct;

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

    /// Images per `gemm` call: enough that the im2col block has about
    /// `BLOCK_COLUMNS` columns, but few enough that every thread gets a block.
    fn images_per_block(&self) -> usize {
        let per_thread = self.batch.div_ceil(rayon::current_num_threads()).max(1);
        BLOCK_COLUMNS
            .div_ceil(self.positions())
            .clamp(1, per_thread)
    }

    /// Rows and columns of the zero-padded input that the taps read:
    /// `(out - 1) * stride + kernel` along each axis.
    pub(super) fn padded_size(&self) -> [usize; 2] {
        [0, 1].map(|axis| (self.out_size[axis] - 1) * self.stride[axis] + self.kernel[axis])
    }

    /// Offsets of the column phases in a padded row: phase `p` contains the
    /// padded columns `p, p + stride, p + 2 stride, ...`, so that a strided
    /// tap reads its columns as one contiguous run.
    fn phase_starts(&self) -> Vec<usize> {
        let (wp, sx) = (self.padded_size()[1], self.stride[1]);
        let mut starts = Vec::with_capacity(sx);
        let mut next = 0;
        for phase in 0..sx {
            starts.push(next);
            next += wp.saturating_sub(phase).div_ceil(sx);
        }
        starts
    }

    /// Offset in a padded row at which tap `kx` reads its `out_size[1]` columns.
    fn tap_start(&self, starts: &[usize], kx: usize) -> usize {
        starts[kx % self.stride[1]] + kx / self.stride[1]
    }

    /// Writes the im2col matrices of a block of images side by side:
    /// `taps` rows of `images * positions` columns. `padded` is scratch
    /// space for one padded image.
    fn im2col_block(&self, images: &[f32], cols: &mut [f32], padded: &mut Vec<f32>) {
        let count = images.len() / self.input_len();
        let (positions, ld) = (self.positions(), count * self.positions());
        let starts = self.phase_starts();
        let [hp, wp] = self.padded_size();
        // Every image writes the same interior positions, so the padding
        // stays zero from the first fill.
        let len = self.in_channels * hp * wp;
        if padded.len() != len {
            padded.clear();
            padded.resize(len, 0.0);
        }
        for (i, image) in images.chunks_exact(self.input_len()).enumerate() {
            pad_image(self, &starts, image, padded);
            im2col(self, &starts, padded, &mut cols[i * positions..], ld);
        }
    }

    /// Writes into the gradient `image` the sum of the im2col matrix of one
    /// image in `cols` (rows `ld` apart). `padded` is scratch space for one
    /// padded image.
    fn col2im(&self, cols: &[f32], ld: usize, image: &mut [f32], padded: &mut Vec<f32>) {
        let starts = self.phase_starts();
        let [hp, wp] = self.padded_size();
        padded.clear();
        padded.resize(self.in_channels * hp * wp, 0.0);
        col2im(self, &starts, cols, ld, padded);
        crop_image(self, &starts, padded, image);
    }
}

/// Calls `$body` with `$width` bound as a constant for the common output
/// widths, so that the row loops compile to fixed-size vector moves
/// instead of calls to `memcpy`.
macro_rules! with_const_width {
    ($width:expr, $body:ident ( $($arg:expr),* )) => {
        match $width {
            4 => $body::<4>($($arg),*),
            8 => $body::<8>($($arg),*),
            16 => $body::<16>($($arg),*),
            32 => $body::<32>($($arg),*),
            _ => $body::<0>($($arg),*),
        }
    };
}

/// Copies `image` into the interior of the zero-padded, phase-ordered
/// layout that `im2col` reads, and leaves the padding as it is. The layout
/// is `in_channels` planes of `padded_size`, each row's columns grouped by
/// phase. Input rows and columns beyond the padded size are
/// never read by a tap and are left out.
#[multiversion::multiversion(targets = "simd")]
pub(super) fn pad_image(g: &ConvGeometry, starts: &[usize], image: &[f32], padded: &mut [f32]) {
    let [hp, wp] = g.padded_size();
    let [ih, iw] = g.in_size;
    let [py, px] = g.pad_begin;
    let sx = g.stride[1];
    let rows = ih.min(hp.saturating_sub(py));
    let columns = iw.min(wp.saturating_sub(px));
    for (plane, out) in image
        .chunks_exact(ih * iw)
        .zip(padded.chunks_exact_mut(hp * wp))
    {
        for y in 0..rows {
            let line = &plane[y * iw..y * iw + columns];
            let to = &mut out[(y + py) * wp..(y + py + 1) * wp];
            match sx {
                1 => to[px..px + columns].copy_from_slice(line),
                2 => {
                    let (even, odd) = to.split_at_mut(starts[1]);
                    let (first, second) = if px % 2 == 0 {
                        (even, odd)
                    } else {
                        (odd, even)
                    };
                    let first = &mut first[px / 2..];
                    let second = &mut second[px.div_ceil(2)..];
                    let pairs = line.chunks_exact(2);
                    if let [last] = pairs.remainder() {
                        first[columns / 2] = *last;
                    }
                    for ((pair, a), b) in pairs.zip(first.iter_mut()).zip(second.iter_mut()) {
                        *a = pair[0];
                        *b = pair[1];
                    }
                }
                _ => {
                    for (first, start) in phase_runs(px, sx, starts) {
                        let run = line.iter().skip(first).step_by(sx);
                        let to = to.iter_mut().skip(start);
                        to.zip(run).for_each(|(t, &v)| *t = v);
                    }
                }
            }
        }
    }
}

/// Pairs, for each column phase, the first input column `x` of that phase
/// (padded column `x + px`) with its offset in a padded, phase-ordered row.
/// The input columns of a phase are `x, x + sx, x + 2 sx, ...`.
fn phase_runs(px: usize, sx: usize, starts: &[usize]) -> impl Iterator<Item = (usize, usize)> + '_ {
    (0..sx).map(move |phase| {
        let first = (phase + sx - px % sx) % sx;
        (first, starts[phase] + (first + px) / sx)
    })
}

/// Writes `image` from its padded, phase-ordered gradient: the inverse of
/// `pad_image`, with input positions that no tap reads set to zero.
#[multiversion::multiversion(targets = "simd")]
fn crop_image(g: &ConvGeometry, starts: &[usize], padded: &[f32], image: &mut [f32]) {
    let [hp, wp] = g.padded_size();
    let [ih, iw] = g.in_size;
    let [py, px] = g.pad_begin;
    let sx = g.stride[1];
    let rows = ih.min(hp.saturating_sub(py));
    let columns = iw.min(wp.saturating_sub(px));
    for (plane, from) in image
        .chunks_exact_mut(ih * iw)
        .zip(padded.chunks_exact(hp * wp))
    {
        plane[rows * iw..].fill(0.0);
        for y in 0..rows {
            let line = &mut plane[y * iw..(y + 1) * iw];
            let row = &from[(y + py) * wp..(y + py + 1) * wp];
            line[columns..].fill(0.0);
            match sx {
                1 => line[..columns].copy_from_slice(&row[px..px + columns]),
                2 => {
                    let (even, odd) = row.split_at(starts[1]);
                    let (first, second) = if px % 2 == 0 {
                        (even, odd)
                    } else {
                        (odd, even)
                    };
                    let first = &first[px / 2..];
                    let second = &second[px.div_ceil(2)..];
                    let mut pairs = line[..columns].chunks_exact_mut(2);
                    for ((pair, &a), &b) in (&mut pairs).zip(first).zip(second) {
                        pair[0] = a;
                        pair[1] = b;
                    }
                    if let [last] = pairs.into_remainder() {
                        *last = first[columns / 2];
                    }
                }
                _ => {
                    for (first, start) in phase_runs(px, sx, starts) {
                        let run = line[..columns].iter_mut().skip(first).step_by(sx);
                        run.zip(row.iter().skip(start)).for_each(|(v, &t)| *v = t);
                    }
                }
            }
        }
    }
}

/// Writes the im2col matrix of one image, `taps` rows of `positions`
/// values, into `cols` with `ld` values between row starts, from the
/// padded image that `pad_image` wrote.
#[multiversion::multiversion(targets = "simd")]
fn im2col(g: &ConvGeometry, starts: &[usize], padded: &[f32], cols: &mut [f32], ld: usize) {
    with_const_width!(g.out_size[1], im2col_rows(g, starts, padded, cols, ld));
}

/// Runs `im2col` on output rows of `W` values, or of `out_size[1]` when `W` is 0.
#[inline(always)]
fn im2col_rows<const W: usize>(
    g: &ConvGeometry,
    starts: &[usize],
    padded: &[f32],
    cols: &mut [f32],
    ld: usize,
) {
    let [kh, kw] = g.kernel;
    let [hp, wp] = g.padded_size();
    let [oh, ow] = g.out_size;
    let width = if W == 0 { ow } else { W };
    let sy = g.stride[0];
    for row in 0..g.taps() {
        let (c, ky, kx) = (row / (kh * kw), row / kw % kh, row % kw);
        let plane = &padded[c * hp * wp..(c + 1) * hp * wp];
        let from = g.tap_start(starts, kx);
        let col = &mut cols[row * ld..row * ld + oh * ow];
        for (oy, out) in col.chunks_exact_mut(width).enumerate() {
            let line = &plane[(oy * sy + ky) * wp + from..][..width];
            out.copy_from_slice(line);
        }
    }
}

/// Adds the im2col matrix in `cols` into the padded image gradient
/// `padded`, laid out as `im2col` reads it.
#[multiversion::multiversion(targets = "simd")]
fn col2im(g: &ConvGeometry, starts: &[usize], cols: &[f32], ld: usize, padded: &mut [f32]) {
    with_const_width!(g.out_size[1], col2im_rows(g, starts, cols, ld, padded));
}

/// Runs `col2im` on output rows of `W` values, or of `out_size[1]` when `W` is 0.
#[inline(always)]
fn col2im_rows<const W: usize>(
    g: &ConvGeometry,
    starts: &[usize],
    cols: &[f32],
    ld: usize,
    padded: &mut [f32],
) {
    let [kh, kw] = g.kernel;
    let [hp, wp] = g.padded_size();
    let [oh, ow] = g.out_size;
    let width = if W == 0 { ow } else { W };
    let sy = g.stride[0];
    for row in 0..g.taps() {
        let (c, ky, kx) = (row / (kh * kw), row / kw % kh, row % kw);
        let plane = &mut padded[c * hp * wp..(c + 1) * hp * wp];
        let to = g.tap_start(starts, kx);
        let col = &cols[row * ld..row * ld + oh * ow];
        for (oy, from) in col.chunks_exact(width).enumerate() {
            let line = &mut plane[(oy * sy + ky) * wp + to..][..width];
            line.iter_mut().zip(from).for_each(|(t, v)| *t += v);
        }
    }
}

/// Columns of the im2col block that one `gemm` call multiplies. Small
/// outputs (4x4, 8x8) take several images per call, so that the call is
/// not bound by streaming the weight matrix.
const BLOCK_COLUMNS: usize = 512;

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

/// Moves `block`, `[channels, images * positions]`, into NCHW order
/// `[images, channels, positions]` in `out`, adding `bias` per channel.
fn scatter_block(
    block: &[f32],
    channels: usize,
    positions: usize,
    out: &mut [f32],
    bias: Option<&[f32]>,
) {
    let ld = out.len() / channels;
    for (i, image) in out.chunks_exact_mut(channels * positions).enumerate() {
        for (c, row) in image.chunks_exact_mut(positions).enumerate() {
            let from = &block[c * ld + i * positions..][..positions];
            match bias {
                Some(bias) => row.iter_mut().zip(from).for_each(|(o, v)| *o = v + bias[c]),
                None => row.copy_from_slice(from),
            }
        }
    }
}

/// Moves NCHW `images`, `[images, channels, positions]`, into `block` as
/// `[channels, images * positions]`.
fn gather_block(images: &[f32], channels: usize, positions: usize, block: &mut [f32]) {
    let ld = images.len() / channels;
    for (i, image) in images.chunks_exact(channels * positions).enumerate() {
        for (c, row) in image.chunks_exact(positions).enumerate() {
            block[c * ld + i * positions..][..positions].copy_from_slice(row);
        }
    }
}

/// Moves NCHW `images` into `block` as `[images * positions, channels]`.
fn gather_block_transposed(images: &[f32], channels: usize, positions: usize, block: &mut [f32]) {
    for (i, image) in images.chunks_exact(channels * positions).enumerate() {
        let rows = &mut block[i * positions * channels..][..positions * channels];
        for (c, plane) in image.chunks_exact(positions).enumerate() {
            for (p, &v) in plane.iter().enumerate() {
                rows[p * channels + c] = v;
            }
        }
    }
}

/// Output `[batch, out_channels, out_h, out_w]` of `x` convolved with
/// `weight` (`[out_channels, in_channels, kh, kw]`), plus `bias` per channel.
pub fn forward(g: &ConvGeometry, x: &[f32], weight: &[f32], bias: Option<&[f32]>) -> Vec<f32> {
    assert_eq!(x.len(), g.batch * g.input_len(), "conv input size");
    assert_eq!(weight.len(), g.out_channels * g.taps(), "conv weight size");
    if let Some(out) = direct::forward(g, x, weight, bias) {
        return out;
    }
    let mut out = zeros(g.batch * g.output_len());
    let per_block = g.images_per_block();
    out.par_chunks_mut(per_block * g.output_len())
        .zip(x.par_chunks(per_block * g.input_len()))
        .for_each_init(
            || Blocks::new(g, per_block),
            |blocks, (out, images)| blocks.forward(g, images, weight, bias, out),
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
    if let Some(dx) = direct::input_grad(g, grad, weight) {
        return dx;
    }
    let mut dx = zeros(g.batch * g.input_len());
    let per_block = g.images_per_block();
    dx.par_chunks_mut(per_block * g.input_len())
        .zip(grad.par_chunks(per_block * g.output_len()))
        .for_each_init(
            || Blocks::new(g, per_block),
            |blocks, (dx, grads)| {
                let columns = grads.len() / g.output_len() * g.positions();
                gather_block(grads, g.out_channels, g.positions(), &mut blocks.outputs);
                // cols (taps x columns) = weight^T (taps x out) * grad (out x columns)
                let shape = [g.taps(), columns, g.out_channels];
                let w_strides = [1, g.taps() as isize];
                let g_strides = [columns as isize, 1];
                let grad = &blocks.outputs[..g.out_channels * columns];
                matmul(
                    shape,
                    &mut blocks.cols,
                    false,
                    weight,
                    w_strides,
                    grad,
                    g_strides,
                );
                for (i, image) in dx.chunks_exact_mut(g.input_len()).enumerate() {
                    let cols = &blocks.cols[i * g.positions()..];
                    g.col2im(cols, columns, image, &mut blocks.padded_grad);
                }
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
    if let Some(dw) = direct::weight_grad(g, x, grad) {
        return dw;
    }
    let per_block = g.images_per_block();
    let dw_t = x
        .par_chunks(per_block * g.input_len())
        .zip(grad.par_chunks(per_block * g.output_len()))
        .with_min_len(g.blocks_per_thread(per_block))
        .fold(
            || Blocks::new(g, per_block),
            |mut blocks, (images, grads)| {
                g.im2col_block(images, &mut blocks.cols, &mut blocks.padded);
                blocks.add_weight_grad(g, grads);
                blocks
            },
        )
        .map(|blocks| blocks.dw_t)
        .reduce(|| vec![0.0f32; g.out_channels * g.taps()], add_into);
    transpose(&dw_t, g.taps(), g.out_channels)
}

/// Computes the convolution of `x` with `weight` and the weight gradient
/// against `grad` from one im2col per block of images. This is the backward
/// pass of a transposed convolution, whose output gradient is `x` here.
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
    let per_block = g.images_per_block();
    let mut out = zeros(g.batch * g.output_len());
    let dw_t = out
        .par_chunks_mut(per_block * g.output_len())
        .zip(x.par_chunks(per_block * g.input_len()))
        .zip(grad.par_chunks(per_block * g.output_len()))
        .with_min_len(g.blocks_per_thread(per_block))
        .fold(
            || Blocks::new(g, per_block),
            |mut blocks, ((out, images), grads)| {
                blocks.forward(g, images, weight, None, out);
                blocks.add_weight_grad(g, grads);
                blocks
            },
        )
        .map(|blocks| blocks.dw_t)
        .reduce(|| vec![0.0f32; g.out_channels * g.taps()], add_into);
    (out, transpose(&dw_t, g.taps(), g.out_channels))
}

impl ConvGeometry {
    /// Blocks each rayon split takes at least, so that the weight gradient
    /// is summed in about one buffer per thread.
    fn blocks_per_thread(&self, per_block: usize) -> usize {
        let blocks = self.batch.div_ceil(per_block);
        blocks.div_ceil(rayon::current_num_threads()).max(1)
    }
}

/// Scratch buffers of one rayon split, sized for a block of images.
struct Blocks {
    /// The im2col matrix of the block: `taps x columns`.
    cols: Vec<f32>,
    /// Output-sized values of the block: `out_channels x columns`, or
    /// `columns x out_channels` for the weight gradient.
    outputs: Vec<f32>,
    /// The running weight gradient, transposed: `taps x out_channels`.
    dw_t: Vec<f32>,
    /// One zero-padded image with its columns ordered by phase, for im2col.
    padded: Vec<f32>,
    /// The gradient of one padded image, for col2im.
    padded_grad: Vec<f32>,
}

impl Blocks {
    fn new(g: &ConvGeometry, per_block: usize) -> Self {
        let columns = per_block * g.positions();
        Blocks {
            cols: vec![0.0; g.taps() * columns],
            outputs: vec![0.0; g.out_channels * columns],
            dw_t: Vec::new(),
            padded: Vec::new(),
            padded_grad: Vec::new(),
        }
    }

    /// Convolves a block of `images` into `out` (NCHW).
    fn forward(
        &mut self,
        g: &ConvGeometry,
        images: &[f32],
        weight: &[f32],
        bias: Option<&[f32]>,
        out: &mut [f32],
    ) {
        let columns = images.len() / g.input_len() * g.positions();
        g.im2col_block(images, &mut self.cols, &mut self.padded);
        let shape = [g.out_channels, columns, g.taps()];
        let w_strides = [g.taps() as isize, 1];
        let c_strides = [columns as isize, 1];
        let block = &mut self.outputs[..g.out_channels * columns];
        matmul(
            shape, block, false, weight, w_strides, &self.cols, c_strides,
        );
        scatter_block(block, g.out_channels, g.positions(), out, bias);
    }

    /// Adds the weight gradient of the block whose im2col is in `cols` and
    /// whose output gradient is `grads` (NCHW).
    fn add_weight_grad(&mut self, g: &ConvGeometry, grads: &[f32]) {
        let columns = grads.len() / g.output_len() * g.positions();
        if self.dw_t.is_empty() {
            self.dw_t = vec![0.0; g.taps() * g.out_channels];
        }
        let grad_t = &mut self.outputs[..columns * g.out_channels];
        gather_block_transposed(grads, g.out_channels, g.positions(), grad_t);
        // dw^T (taps x out) += cols (taps x columns) * grad^T (columns x out);
        // gemm reads both factors column-major, the order its kernels read best.
        let shape = [g.taps(), g.out_channels, columns];
        let c_strides = [columns as isize, 1];
        let g_strides = [g.out_channels as isize, 1];
        matmul(
            shape,
            &mut self.dw_t,
            true,
            &self.cols,
            c_strides,
            grad_t,
            g_strides,
        );
    }
}

/// `rows x cols` row-major to `cols x rows` row-major.
fn transpose(values: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut out = vec![0.0f32; values.len()];
    for (r, row) in values.chunks_exact(cols).enumerate() {
        for (c, &v) in row.iter().enumerate() {
            out[c * rows + r] = v;
        }
    }
    out
}

fn add_into(mut a: Vec<f32>, b: Vec<f32>) -> Vec<f32> {
    if a.len() < b.len() {
        return b;
    }
    a.iter_mut().zip(&b).for_each(|(x, y)| *x += y);
    a
}

/// Sums NCHW `grad` over batch and positions, per channel: the gradient of
/// a per-channel bias.
pub fn bias_grad(grad: &[f32], channels: usize, positions: usize) -> Vec<f32> {
    (0..channels)
        .into_par_iter()
        .map(|c| {
            grad.chunks_exact(channels * positions)
                .map(|image| sum(&image[c * positions..(c + 1) * positions]))
                .sum()
        })
        .collect()
}

/// Returns the sum of `values`, in 16 lanes so that the loop vectorizes.
#[multiversion::multiversion(targets = "simd")]
fn sum(values: &[f32]) -> f32 {
    let mut lanes = [0.0f32; 16];
    let chunks = values.chunks_exact(16);
    let rest: f32 = chunks.remainder().iter().sum();
    for chunk in chunks {
        for (lane, v) in lanes.iter_mut().zip(chunk) {
            *lane += v;
        }
    }
    lanes.iter().sum::<f32>() + rest
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
    fn strided_products_match_definition() {
        check_products(&strided_geometry());
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
    fn image_blocks_match_single_images() {
        // 5x5 outputs take many images per gemm call. 7 images leave a
        // partial last block whatever the thread count.
        let g = ConvGeometry {
            batch: 7,
            ..strided_geometry()
        };
        let one = ConvGeometry { batch: 1, ..g };
        let x = ramp(g.batch * g.input_len(), 1.0);
        let w = ramp(g.out_channels * g.taps(), 0.3);
        let r = ramp(g.batch * g.output_len(), 0.5);
        let close = |a: &[f32], b: &[f32]| a.iter().zip(b).all(|(p, q)| (p - q).abs() < 1e-4);
        let images = x.chunks(g.input_len()).zip(r.chunks(g.output_len()));
        let mut dw_sum = vec![0.0f32; w.len()];
        let (out, dx) = (forward(&g, &x, &w, None), input_grad(&g, &r, &w));
        for (i, (image, grad)) in images.enumerate() {
            let out_i = &out[i * g.output_len()..(i + 1) * g.output_len()];
            let dx_i = &dx[i * g.input_len()..(i + 1) * g.input_len()];
            assert!(
                close(out_i, &forward(&one, image, &w, None)),
                "forward of image {i}"
            );
            assert!(
                close(dx_i, &input_grad(&one, grad, &w)),
                "input gradient of image {i}"
            );
            dw_sum = add_into(dw_sum, weight_grad(&one, image, grad));
        }
        assert!(close(&weight_grad(&g, &x, &r), &dw_sum), "weight gradient");
    }

    /// Checks `forward` against `direct` and both gradients against the
    /// adjoint identity `<forward(x, w), r> = <x, dx(r)> = <w, dw(x, r)>`.
    fn check_products(g: &ConvGeometry) {
        let x = ramp(g.batch * g.input_len(), 1.0);
        let w = ramp(g.out_channels * g.taps(), 0.3);
        let r = ramp(g.batch * g.output_len(), 0.5);
        let out = forward(g, &x, &w, None);
        for (a, b) in out.iter().zip(&direct(g, &x, &w)) {
            assert!((a - b).abs() < 1e-3, "forward {a} vs {b}");
        }
        let dot = |a: &[f32], b: &[f32]| a.iter().zip(b).map(|(p, q)| p * q).sum::<f32>();
        let reference = dot(&out, &r);
        let tolerance = 1e-3 * reference.abs().max(1.0);
        let via_input = dot(&x, &input_grad(g, &r, &w));
        let via_weight = dot(&w, &weight_grad(g, &x, &r));
        assert!(
            (reference - via_input).abs() < tolerance,
            "{reference} vs {via_input}"
        );
        assert!(
            (reference - via_weight).abs() < tolerance,
            "{reference} vs {via_weight}"
        );
    }

    #[test]
    fn stride_one_same_products_match_definition() {
        let g = ConvGeometry {
            batch: 3,
            in_channels: 9,
            in_size: [7, 6],
            out_channels: 8,
            out_size: [7, 6],
            kernel: [3, 3],
            stride: [1, 1],
            pad_begin: [1, 1],
        };
        check_products(&g);
    }

    #[test]
    fn stride_one_valid_products_match_definition() {
        let g = ConvGeometry {
            batch: 2,
            in_channels: 8,
            in_size: [6, 9],
            out_channels: 10,
            out_size: [4, 5],
            kernel: [3, 5],
            stride: [1, 1],
            pad_begin: [0, 0],
        };
        check_products(&g);
    }

    #[test]
    fn stride_one_asymmetric_padding_products_match_definition() {
        // A 4x4 kernel with "same" output pads one before and two after.
        let g = ConvGeometry {
            batch: 2,
            in_channels: 8,
            in_size: [5, 5],
            out_channels: 8,
            out_size: [5, 5],
            kernel: [4, 4],
            stride: [1, 1],
            pad_begin: [1, 1],
        };
        check_products(&g);
    }

    #[test]
    fn strided_odd_padding_products_match_definition() {
        // An odd left padding puts even input columns in the odd phase, and
        // an odd width leaves one column without a pair.
        let g = ConvGeometry {
            batch: 2,
            in_channels: 3,
            in_size: [7, 7],
            out_channels: 5,
            out_size: [4, 4],
            kernel: [4, 4],
            stride: [2, 2],
            pad_begin: [1, 1],
        };
        check_products(&g);
    }

    #[test]
    fn strided_unread_input_products_match_definition() {
        // The taps stop at input column 6 of 8, so column 7 gets a zero gradient.
        let g = ConvGeometry {
            batch: 2,
            in_channels: 2,
            in_size: [8, 8],
            out_channels: 3,
            out_size: [3, 3],
            kernel: [3, 3],
            stride: [2, 2],
            pad_begin: [0, 0],
        };
        check_products(&g);
    }

    /// Checks a geometry that the direct kernels take: on a CPU with AVX-512
    /// all three products must come from them, and they match the definition.
    fn check_direct_products(g: &ConvGeometry) {
        let x = ramp(g.batch * g.input_len(), 1.0);
        let w = ramp(g.out_channels * g.taps(), 0.3);
        let r = ramp(g.batch * g.output_len(), 0.5);
        if direct::available() {
            assert!(direct::forward(g, &x, &w, None).is_some(), "direct forward");
            assert!(
                direct::input_grad(g, &r, &w).is_some(),
                "direct input gradient"
            );
            if g.out_channels <= 4 {
                assert!(
                    direct::weight_grad(g, &x, &r).is_some(),
                    "direct weight gradient"
                );
            }
        }
        check_products(g);
        let bias = ramp(g.out_channels, 2.0);
        let plain = forward(g, &x, &w, None);
        let biased = forward(g, &x, &w, Some(&bias));
        for (i, (a, b)) in biased.iter().zip(&plain).enumerate() {
            let channel = i / g.positions() % g.out_channels;
            assert!((a - b - bias[channel]).abs() < 1e-5, "bias at {i}");
        }
    }

    #[test]
    fn direct_narrow_output_matches_definition() {
        // Like a generator's RGB layer: 3 output channels, 3x3 "same".
        let g = ConvGeometry {
            batch: 3,
            in_channels: 5,
            in_size: [4, 16],
            out_channels: 3,
            out_size: [4, 16],
            kernel: [3, 3],
            stride: [1, 1],
            pad_begin: [1, 1],
        };
        check_direct_products(&g);
    }

    #[test]
    fn direct_narrow_input_matches_definition() {
        // Like a first layer: 3 input channels, 5x5 "same", 32 wide.
        let g = ConvGeometry {
            batch: 2,
            in_channels: 3,
            in_size: [4, 32],
            out_channels: 6,
            out_size: [4, 32],
            kernel: [5, 5],
            stride: [1, 1],
            pad_begin: [2, 2],
        };
        check_direct_products(&g);
    }

    #[test]
    fn direct_wide_kernel_weight_grad_matches_definition() {
        // A 5x5 kernel with 2 output channels takes the 5-wide gradient kernel.
        let g = ConvGeometry {
            batch: 2,
            in_channels: 4,
            in_size: [6, 16],
            out_channels: 2,
            out_size: [6, 16],
            kernel: [5, 5],
            stride: [1, 1],
            pad_begin: [2, 2],
        };
        check_direct_products(&g);
    }

    #[test]
    fn direct_valid_convolution_matches_definition() {
        // No padding: the forward pass is direct, the input gradient (18
        // wide) falls back to col2im.
        let g = ConvGeometry {
            batch: 2,
            in_channels: 2,
            in_size: [6, 18],
            out_channels: 4,
            out_size: [4, 16],
            kernel: [3, 3],
            stride: [1, 1],
            pad_begin: [0, 0],
        };
        let x = ramp(g.batch * g.input_len(), 1.0);
        let w = ramp(g.out_channels * g.taps(), 0.3);
        let r = ramp(g.batch * g.output_len(), 0.5);
        assert_eq!(
            direct::forward(&g, &x, &w, None).is_some(),
            direct::available()
        );
        assert!(direct::input_grad(&g, &r, &w).is_none());
        check_products(&g);
    }
}
