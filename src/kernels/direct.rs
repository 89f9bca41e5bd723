//! Direct stride-1 convolutions for layers with at most four channels on
//! one side, such as a generator's RGB output layer or a network's first
//! layer. With so few channels the im2col matrix has few rows or `gemm`
//! gets a thin product, and both waste most of the time. These kernels
//! instead keep one output row per channel in vector registers and read
//! the zero-padded input in place.
//!
//! Each function returns `None` where it does not apply, and the caller
//! runs the im2col path instead.

use std::arch::x86_64::{__m512, _mm512_add_ps, _mm512_fmadd_ps, _mm512_loadu_ps};
use std::arch::x86_64::{
    _mm512_reduce_add_ps, _mm512_set1_ps, _mm512_setzero_ps, _mm512_storeu_ps,
};

use rayon::prelude::*;

use super::allocator::zeros;
use super::im2col::{ConvGeometry, pad_image};

/// Channels on the narrow side that the kernels take at most.
const NARROW: usize = 4;

/// Output channels that one pass of the forward kernel accumulates.
const CHANNEL_BLOCK: usize = 4;

/// Values per partial sum in the weight-gradient kernel: one AVX-512 register.
const LANES: usize = 16;

/// Tells whether `width` is an output row width the kernels compile for.
fn supported_width(width: usize) -> bool {
    matches!(width, 16 | 32)
}

/// Tells whether `g` is a stride-1 convolution with a narrow side and an
/// even number of output rows, on a CPU with AVX-512.
fn applies(g: &ConvGeometry) -> bool {
    g.stride == [1, 1]
        && g.in_channels.min(g.out_channels) <= NARROW
        && supported_width(g.out_size[1])
        && g.out_size[0].is_multiple_of(2)
        && available()
}

/// Tells whether this CPU runs the direct kernels: they need AVX-512F.
pub fn available() -> bool {
    std::arch::is_x86_feature_detected!("avx512f")
}

/// Computes the forward pass of `g`, or returns `None` where the direct
/// kernel does not apply.
pub fn forward(
    g: &ConvGeometry,
    x: &[f32],
    weight: &[f32],
    bias: Option<&[f32]>,
) -> Option<Vec<f32>> {
    if !applies(g) {
        return None;
    }
    let [hp, wp] = g.padded_size();
    let mut out = zeros(g.batch * g.output_len());
    out.par_chunks_mut(g.output_len())
        .zip(x.par_chunks(g.input_len()))
        .for_each_init(
            || vec![0.0f32; g.in_channels * hp * wp],
            |padded, (out, image)| {
                pad_image(g, &[0], image, padded);
                forward_image(g, padded, weight, bias, out);
            },
        );
    Some(out)
}

/// Computes the input gradient of `g`, or returns `None` where the direct
/// kernel does not apply. The gradient is the forward pass of the adjoint convolution: the output
/// gradient convolved with the flipped kernel, channels swapped.
pub fn input_grad(g: &ConvGeometry, grad: &[f32], weight: &[f32]) -> Option<Vec<f32>> {
    let [kh, kw] = g.kernel;
    let [py, px] = g.pad_begin;
    if py >= kh || px >= kw {
        return None;
    }
    let adjoint = ConvGeometry {
        batch: g.batch,
        in_channels: g.out_channels,
        in_size: g.out_size,
        out_channels: g.in_channels,
        out_size: g.in_size,
        kernel: g.kernel,
        stride: g.stride,
        pad_begin: [kh - 1 - py, kw - 1 - px],
    };
    if !applies(g) || !applies(&adjoint) {
        return None;
    }
    let mut flipped = vec![0.0f32; weight.len()];
    let (cin, cout) = (g.in_channels, g.out_channels);
    for o in 0..cout {
        for c in 0..cin {
            for ky in 0..kh {
                for kx in 0..kw {
                    let from = ((o * cin + c) * kh + ky) * kw + kx;
                    let to = ((c * cout + o) * kh + kh - 1 - ky) * kw + kw - 1 - kx;
                    flipped[to] = weight[from];
                }
            }
        }
    }
    forward(&adjoint, grad, &flipped, None)
}

/// Computes the weight gradient of `g`, or returns `None` where the direct
/// kernel does not apply: it needs at most four output channels and a 3- or 5-wide kernel.
pub fn weight_grad(g: &ConvGeometry, x: &[f32], grad: &[f32]) -> Option<Vec<f32>> {
    let narrow_output = g.out_channels <= NARROW && matches!(g.kernel[1], 3 | 5);
    if !applies(g) || !narrow_output {
        return None;
    }
    let [hp, wp] = g.padded_size();
    let len = g.out_channels * g.taps();
    let threads = rayon::current_num_threads();
    let dw = x
        .par_chunks(g.input_len())
        .zip(grad.par_chunks(g.output_len()))
        .with_min_len(g.batch.div_ceil(threads).max(1))
        .fold(
            || (vec![0.0f32; len], vec![0.0f32; g.in_channels * hp * wp]),
            |(mut dw, mut padded), (image, grad)| {
                pad_image(g, &[0], image, &mut padded);
                weight_grad_image(g, &padded, grad, &mut dw);
                (dw, padded)
            },
        )
        .map(|(dw, _)| dw)
        .reduce(
            || vec![0.0f32; len],
            |mut a, b| {
                a.iter_mut().zip(&b).for_each(|(a, b)| *a += b);
                a
            },
        );
    Some(dw)
}

/// Convolves one padded image into `out`, `CHANNEL_BLOCK` output channels
/// at a time.
fn forward_image(
    g: &ConvGeometry,
    padded: &[f32],
    weight: &[f32],
    bias: Option<&[f32]>,
    out: &mut [f32],
) {
    let [hp, wp] = g.padded_size();
    assert!(padded.len() >= g.in_channels * hp * wp, "padded image size");
    assert!(weight.len() >= g.out_channels * g.taps(), "weight size");
    assert!(out.len() >= g.output_len(), "output size");
    assert!(
        g.out_size[0].is_multiple_of(2),
        "direct kernels take an even number of rows"
    );
    let mut first = 0;
    while first < g.out_channels {
        let block = CHANNEL_BLOCK.min(g.out_channels - first);
        let args = (g, padded, weight, bias, first);
        // SAFETY: `applies` checked AVX-512 support, and the asserts above
        // bound every offset that the kernel reads or writes.
        unsafe {
            match (g.out_size[1], block) {
                (16, 1) => forward_block::<1, 1>(args, out),
                (16, 2) => forward_block::<1, 2>(args, out),
                (16, 3) => forward_block::<1, 3>(args, out),
                (16, _) => forward_block::<1, 4>(args, out),
                (_, 1) => forward_block::<2, 1>(args, out),
                (_, 2) => forward_block::<2, 2>(args, out),
                (_, 3) => forward_block::<2, 3>(args, out),
                (_, _) => forward_block::<2, 4>(args, out),
            }
        }
        first += block;
    }
}

/// Writes output channels `first..first + B` of one image whose rows are
/// `V` registers wide, two rows at a time: every tap adds its weight times
/// a shifted input row to each channel's rows.
///
/// # Safety
///
/// The CPU supports AVX-512F, and `padded`, `weight` and `out` are as large
/// as `g` requires.
#[target_feature(enable = "avx512f")]
unsafe fn forward_block<const V: usize, const B: usize>(
    (g, padded, weight, bias, first): (&ConvGeometry, &[f32], &[f32], Option<&[f32]>, usize),
    out: &mut [f32],
) {
    let [kh, kw] = g.kernel;
    let [hp, wp] = g.padded_size();
    let (cin, taps, plane, width) = (g.in_channels, g.taps(), g.positions(), g.out_size[1]);
    let (padded, weight) = (padded.as_ptr(), weight.as_ptr());
    for y in (0..g.out_size[0]).step_by(2) {
        let mut acc = [[[_mm512_setzero_ps(); V]; B]; 2];
        for c in 0..cin {
            for ky in 0..kh {
                // SAFETY: rows `y + ky` and `y + ky + 1` lie inside the padded plane.
                let rows = unsafe { [0, 1].map(|r| padded.add((c * hp + y + r + ky) * wp)) };
                for kx in 0..kw {
                    let tap = (c * kh + ky) * kw + kx;
                    // SAFETY: columns `kx..kx + V * LANES` lie inside each padded row.
                    let input: [[__m512; V]; 2] = unsafe {
                        rows.map(|row| {
                            std::array::from_fn(|v| _mm512_loadu_ps(row.add(kx + v * LANES)))
                        })
                    };
                    for b in 0..B {
                        // SAFETY: `first + b` is an output channel.
                        let w = unsafe { _mm512_set1_ps(*weight.add((first + b) * taps + tap)) };
                        for (rows, input) in acc.iter_mut().zip(&input) {
                            for (sum, &value) in rows[b].iter_mut().zip(input) {
                                *sum = _mm512_fmadd_ps(w, value, *sum);
                            }
                        }
                    }
                }
            }
        }
        for (r, rows) in acc.iter().enumerate() {
            for (b, sums) in rows.iter().enumerate() {
                let channel = first + b;
                let shift = _mm512_set1_ps(bias.map_or(0.0, |bias| bias[channel]));
                let row = &mut out[channel * plane + (y + r) * width..][..V * LANES];
                for (chunk, &sum) in row.chunks_exact_mut(LANES).zip(sums) {
                    // SAFETY: `chunk` has `LANES` values.
                    unsafe { _mm512_storeu_ps(chunk.as_mut_ptr(), _mm512_add_ps(sum, shift)) };
                }
            }
        }
    }
}

/// Adds the weight gradient of one padded image and its output gradient
/// into `dw`.
fn weight_grad_image(g: &ConvGeometry, padded: &[f32], grad: &[f32], dw: &mut [f32]) {
    let [hp, wp] = g.padded_size();
    assert!(padded.len() >= g.in_channels * hp * wp, "padded image size");
    assert!(grad.len() >= g.output_len(), "output gradient size");
    assert!(
        dw.len() >= g.out_channels * g.taps(),
        "weight gradient size"
    );
    let args = (g, padded, grad);
    // SAFETY: `applies` checked AVX-512 support, and the asserts above bound
    // every offset that the kernel reads or writes.
    unsafe {
        match (g.out_channels, g.kernel[1]) {
            (1, 3) => weight_grad_block::<1, 3>(args, dw),
            (2, 3) => weight_grad_block::<2, 3>(args, dw),
            (3, 3) => weight_grad_block::<3, 3>(args, dw),
            (_, 3) => weight_grad_block::<4, 3>(args, dw),
            (1, _) => weight_grad_block::<1, 5>(args, dw),
            (2, _) => weight_grad_block::<2, 5>(args, dw),
            (3, _) => weight_grad_block::<3, 5>(args, dw),
            (_, _) => weight_grad_block::<4, 5>(args, dw),
        }
    }
}

/// Weight gradient for `C` output channels and a kernel `K` wide: for each
/// input channel and kernel row, `C * K` partial sums of `LANES` values,
/// each the product of an output-gradient row with a shifted input row.
///
/// # Safety
///
/// The CPU supports AVX-512F, and `padded`, `grad` and `dw` are as large as
/// `g` requires.
#[target_feature(enable = "avx512f")]
unsafe fn weight_grad_block<const C: usize, const K: usize>(
    (g, padded, grad): (&ConvGeometry, &[f32], &[f32]),
    dw: &mut [f32],
) {
    let kh = g.kernel[0];
    let [hp, wp] = g.padded_size();
    let [oh, ow] = g.out_size;
    let (cin, taps, plane) = (g.in_channels, g.taps(), g.positions());
    let (padded, grad) = (padded.as_ptr(), grad.as_ptr());
    for c in 0..cin {
        for ky in 0..kh {
            let mut acc = [[_mm512_setzero_ps(); K]; C];
            for y in 0..oh {
                // SAFETY: row `y + ky` lies inside the padded plane.
                let row = unsafe { padded.add((c * hp + y + ky) * wp) };
                for x in (0..ow).step_by(LANES) {
                    // SAFETY: columns `x + kx .. x + kx + LANES` lie inside the row.
                    let input: [__m512; K] =
                        std::array::from_fn(|kx| unsafe { _mm512_loadu_ps(row.add(x + kx)) });
                    for (o, acc) in acc.iter_mut().enumerate() {
                        // SAFETY: `o < C` is an output channel and `x + LANES <= ow`.
                        let d = unsafe { _mm512_loadu_ps(grad.add(o * plane + y * ow + x)) };
                        for kx in 0..K {
                            acc[kx] = _mm512_fmadd_ps(d, input[kx], acc[kx]);
                        }
                    }
                }
            }
            for (o, acc) in acc.iter().enumerate() {
                for (kx, lanes) in acc.iter().enumerate() {
                    dw[o * taps + (c * kh + ky) * K + kx] += _mm512_reduce_add_ps(*lanes);
                }
            }
        }
    }
}
