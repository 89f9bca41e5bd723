//! Progress bars for long work: shown on a terminal, hidden in CI and when
//! stderr is redirected, so logs stay one line per epoch or round.

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Whether progress bars are drawn: stderr is a terminal and `CI` is unset.
pub fn enabled() -> bool {
    std::io::stderr().is_terminal() && std::env::var_os("CI").is_none()
}

/// Creates a bar of `len` steps labelled `message`, hidden unless [`enabled`].
pub fn bar(len: u64, message: impl Into<String>) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(Some(len), draw_target());
    let style =
        ProgressStyle::with_template("{msg:>12} [{bar:30}] {pos}/{len} {per_sec} eta {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> ");
    bar.set_style(style);
    bar.set_message(message.into());
    bar
}

/// Creates a byte-count bar for downloads and transfers.
pub fn bytes_bar(len: Option<u64>, message: impl Into<String>) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(len, draw_target());
    let style = ProgressStyle::with_template(
        "{msg:>12} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
    )
    .unwrap_or_else(|_| ProgressStyle::default_bar())
    .progress_chars("=> ");
    bar.set_style(style);
    bar.set_message(message.into());
    bar
}

fn draw_target() -> ProgressDrawTarget {
    if enabled() {
        ProgressDrawTarget::stderr()
    } else {
        ProgressDrawTarget::hidden()
    }
}
