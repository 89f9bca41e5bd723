//! `fedsynth data`: download the official release and inspect a CIFAR-10
//! directory.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand};

use crate::cli::GlobalArgs;
use crate::data::cifar::{CLASS_COUNT, Cifar10};
use crate::data::download::{self, CIFAR10_MD5, CIFAR10_URL, DownloadOutcome, DownloadRequest};
use crate::data::location;

#[derive(Debug, Subcommand)]
pub enum DataCommand {
    /// Download the official CIFAR-10 binary release, check its MD5 and unpack it.
    Download(DownloadArgs),
    /// Print the CIFAR-10 directory in use, its image counts and class histogram.
    Info(InfoArgs),
}

#[derive(Debug, Args)]
pub struct DownloadArgs {
    /// The `cifar-10-batches-bin` directory to create
    /// [default: ~/.cache/fedsynth/cifar-10-batches-bin or the platform's cache directory].
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// Address of the gzip-compressed tar archive.
    #[arg(long, default_value = CIFAR10_URL)]
    pub url: String,
    /// Expected MD5 of the archive, in hexadecimal.
    #[arg(long, value_name = "HEX", default_value = CIFAR10_MD5)]
    pub md5: String,
}

#[derive(Debug, Args)]
pub struct InfoArgs {
    /// CIFAR-10 directory [default: $FEDSYNTH_DATA, else the per-user cache directory].
    #[arg(long, value_name = "DIR")]
    pub data: Option<PathBuf>,
}

/// Runs a `fedsynth data` subcommand.
pub fn run(command: DataCommand, _global: &GlobalArgs) -> anyhow::Result<()> {
    match command {
        DataCommand::Download(args) => run_download(args),
        DataCommand::Info(args) => run_info(args),
    }
}

fn run_download(args: DownloadArgs) -> anyhow::Result<()> {
    let request = DownloadRequest {
        url: args.url,
        md5: args.md5,
        dir: args.dir.unwrap_or_else(location::default_data_dir),
    };
    let outcome = download::download(&request)
        .with_context(|| format!("failed to download CIFAR-10 into {}", request.dir.display()))?;
    match outcome {
        DownloadOutcome::Downloaded { bytes, md5 } => {
            println!(
                "downloaded {bytes} bytes (MD5 {md5}) and unpacked CIFAR-10 into {}",
                request.dir.display()
            );
        }
        DownloadOutcome::AlreadyPresent => {
            println!("CIFAR-10 is already present in {}", request.dir.display());
        }
    }
    Ok(())
}

fn run_info(args: InfoArgs) -> anyhow::Result<()> {
    let dir = location::resolve_data_dir(args.data.as_deref(), None)?;
    let data = Cifar10::load(&dir)?;
    let train = data.train.class_histogram();
    let test = data.test.class_histogram();

    println!("directory: {}", dir.display());
    println!("training images: {}", data.train.len());
    println!("test images: {}", data.test.len());
    println!("{:<12} {:>8} {:>8}", "class", "train", "test");
    for class in 0..CLASS_COUNT {
        let name = &data.class_names[class];
        println!("{name:<12} {:>8} {:>8}", train[class], test[class]);
    }
    Ok(())
}
