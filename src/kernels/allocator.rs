//! Keeps freed memory in the process heap instead of returning it to the
//! kernel. Training frees and reallocates the same multi-megabyte tensors
//! every step, and glibc would otherwise map and fault them in afresh. Large
//! outputs are zeroed by all threads at once.

use std::mem::MaybeUninit;

use rayon::prelude::*;

/// Raises glibc's mmap and trim thresholds so that tensor buffers of up to
/// 32 MiB are reused from the heap. Does nothing on other C libraries.
///
/// The process then keeps its peak heap size until it exits, which a
/// training process reaches again at every step anyway.
pub fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // Twice the largest tensor of the reference GAN step: the generator's
        // last feature map, 128 x 32 x 32 x 32 floats (16 MiB).
        const MMAP_THRESHOLD: libc::c_int = 32 << 20;
        // SAFETY: mallopt only changes allocator parameters; it is called
        // before any other thread starts.
        let set = unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1
                && libc::mallopt(libc::M_TRIM_THRESHOLD, libc::c_int::MAX) == 1
        };
        if !set {
            tracing::debug!("glibc rejected the malloc thresholds; keeping its defaults");
        }
    }
}

/// Outputs below this many values are zeroed on the calling thread.
const PARALLEL_ZEROS: usize = 1 << 16;

/// Returns `len` zeros, written by all rayon threads. Kernel outputs are
/// several megabytes, and a serial `vec![0.0; len]` would clear them on one
/// thread while the others wait for the kernel to start.
pub(crate) fn zeros(len: usize) -> Vec<f32> {
    if len < PARALLEL_ZEROS {
        return vec![0.0; len];
    }
    let mut values = Vec::with_capacity(len);
    values.spare_capacity_mut()[..len]
        .par_chunks_mut(PARALLEL_ZEROS)
        .for_each(|chunk| chunk.fill(MaybeUninit::new(0.0)));
    // SAFETY: the loop above wrote each of the first `len` elements.
    unsafe { values.set_len(len) };
    values
}
