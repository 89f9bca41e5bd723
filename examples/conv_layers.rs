//! Times the forward pass, input gradient and weight gradient of every
//! convolution of the reference models at its training batch, on the CPU
//! kernels, and prints each as a ratio to plain `gemm` products measured
//! in the same run.
//!
//! Usage: `cargo run --release --example conv_layers -- [THREADS [REPETITIONS]]`
//! (2 threads and 10 repetitions by default).

use std::hint::black_box;
use std::time::Instant;

use fedsynth::kernels::im2col::{self, ConvGeometry};
use rayon::prelude::*;

/// Builds a square geometry: `batch` images of `in_channels x side x side`
/// to `out_channels x out_side x out_side` with a `kernel x kernel` window.
fn square(
    batch: usize,
    [in_channels, side]: [usize; 2],
    [out_channels, out_side]: [usize; 2],
    [kernel, stride, pad]: [usize; 3],
) -> ConvGeometry {
    ConvGeometry {
        batch,
        in_channels,
        in_size: [side, side],
        out_channels,
        out_size: [out_side, out_side],
        kernel: [kernel, kernel],
        stride: [stride, stride],
        pad_begin: [pad, pad],
    }
}

/// Returns the mean seconds of `repetitions` calls of `f`, after one untimed call.
fn seconds(repetitions: usize, mut f: impl FnMut()) -> f64 {
    f();
    let started = Instant::now();
    for _ in 0..repetitions {
        f();
    }
    started.elapsed().as_secs_f64() / repetitions as f64
}

/// Returns the GFLOP/s of independent 256 x 512 x 1024 products, one per
/// thread at a time, each on one thread as the kernels call `gemm`.
fn gemm_baseline(repetitions: usize) -> f64 {
    let [m, n, k] = [256, 512, 1024];
    let calls = 4 * rayon::current_num_threads();
    let lhs = vec![0.5f32; m * k];
    let rhs = vec![0.25f32; k * n];
    let mut outputs = vec![vec![0.0f32; m * n]; calls];
    let time = seconds(repetitions, || {
        outputs.par_iter_mut().for_each(|dst| {
            // SAFETY: `lhs` is m x k, `rhs` k x n and `dst` m x n, all
            // dense and row-major, as the strides below state.
            unsafe {
                gemm::gemm(
                    m,
                    n,
                    k,
                    dst.as_mut_ptr(),
                    1,
                    n as isize,
                    false,
                    lhs.as_ptr(),
                    1,
                    k as isize,
                    rhs.as_ptr(),
                    1,
                    n as isize,
                    1.0,
                    1.0,
                    false,
                    false,
                    false,
                    gemm::Parallelism::None,
                );
            }
        });
        black_box(&outputs);
    });
    2.0 * (m * n * k * calls) as f64 / time / 1e9
}

/// Parses a count argument named `name`, `default` when absent, and exits
/// with a message when it is not a whole number of at least `minimum`.
fn count_argument(value: Option<String>, name: &str, default: usize, minimum: usize) -> usize {
    let Some(value) = value else {
        return default;
    };
    match value.parse::<usize>() {
        Ok(count) if count >= minimum => count,
        _ => {
            eprintln!("invalid {name} `{value}`: use a whole number of at least {minimum}");
            std::process::exit(2);
        }
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let threads = count_argument(args.next(), "THREADS (0 for every core)", 2, 0);
    let repetitions = count_argument(args.next(), "REPETITIONS", 10, 1);
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build_global()
        .expect("the global thread pool is built once");
    let threads = rayon::current_num_threads();

    // Each transposed convolution of the generator is listed as the
    // convolution whose input gradient is its forward pass.
    let (gan, classifier) = (128, 32);
    let layers = [
        ("discriminator 1", square(gan, [3, 32], [32, 32], [5, 1, 2])),
        (
            "discriminator 2",
            square(gan, [32, 32], [32, 16], [5, 2, 1]),
        ),
        ("discriminator 3", square(gan, [32, 16], [64, 8], [5, 2, 1])),
        ("discriminator 4", square(gan, [64, 8], [128, 4], [5, 2, 1])),
        ("generator up 1", square(gan, [64, 8], [128, 4], [5, 2, 2])),
        ("generator up 2", square(gan, [32, 16], [64, 8], [5, 2, 2])),
        ("generator up 3", square(gan, [32, 32], [32, 16], [5, 2, 2])),
        ("generator rgb", square(gan, [32, 32], [3, 32], [3, 1, 1])),
        (
            "classifier 1",
            square(classifier, [3, 32], [16, 32], [3, 1, 1]),
        ),
        (
            "classifier 2",
            square(classifier, [16, 32], [32, 32], [3, 1, 1]),
        ),
        (
            "classifier 3",
            square(classifier, [32, 16], [32, 16], [3, 1, 1]),
        ),
        (
            "classifier 4",
            square(classifier, [32, 16], [64, 16], [3, 1, 1]),
        ),
    ];

    let baseline = gemm_baseline(repetitions);
    println!("{threads} threads, {repetitions} repetitions");
    println!("gemm baseline: {baseline:.0} GFLOP/s");
    println!("ratio = layer GFLOP/s / gemm baseline GFLOP/s");
    println!(
        "{:16} {:>8} | {:>8} {:>6} | {:>8} {:>6} | {:>8} {:>6}",
        "layer", "MFLOP", "forward", "ratio", "input", "ratio", "weight", "ratio"
    );
    let mut totals = [0.0f64; 3];
    let mut total_flop = 0.0;
    for (name, g) in layers {
        let ramp = |len: usize, scale: f32| -> Vec<f32> {
            (0..len).map(|i| (i % 17) as f32 * scale - 0.8).collect()
        };
        let x = ramp(g.batch * g.input_len(), 0.1);
        let weight = ramp(g.out_channels * g.taps(), 0.01);
        let grad = ramp(g.batch * g.output_len(), 0.05);
        let flop = 2.0 * (g.batch * g.positions() * g.taps() * g.out_channels) as f64;
        let times = [
            seconds(repetitions, || {
                black_box(im2col::forward(&g, &x, &weight, None));
            }),
            seconds(repetitions, || {
                black_box(im2col::input_grad(&g, &grad, &weight));
            }),
            seconds(repetitions, || {
                black_box(im2col::weight_grad(&g, &x, &grad));
            }),
        ];
        print!("{name:16} {:8.1}", flop / 1e6);
        for (total, time) in totals.iter_mut().zip(times) {
            *total += time;
            print!(
                " | {:6.2} ms {:6.2}",
                time * 1e3,
                flop / time / 1e9 / baseline
            );
        }
        println!();
        total_flop += flop;
    }
    let all: f64 = totals.iter().sum();
    println!(
        "all layers: forward {:.1} ms, input {:.1} ms, weight {:.1} ms; ratio {:.2}",
        totals[0] * 1e3,
        totals[1] * 1e3,
        totals[2] * 1e3,
        3.0 * total_flop / all / 1e9 / baseline
    );
}
