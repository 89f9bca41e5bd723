//! The command line as typed by the user. Each subcommand's arguments live
//! in the module that runs it; this file only composes them and dispatches.

use clap::{Args, Parser, Subcommand};

use crate::backend::BackendKind;
use crate::launch::manifest::{Manifest, ManifestError};

/// Federated learning by synthetic data on CIFAR-10.
#[derive(Debug, Parser)]
#[command(name = "fedsynth", version, about, long_about = None)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

/// Options shared by every subcommand.
#[derive(Clone, Debug, Args)]
pub struct GlobalArgs {
    /// Compute backend for training and inference [default: flex, or the
    /// manifest's `run.backend` for `launch`, `coordinator` and `site`].
    #[arg(long, global = true, env = "FEDSYNTH_BACKEND")]
    pub backend: Option<BackendKind>,
    /// CPU threads for training and search, at most 1024; 0 uses every core
    /// [default: 0, or the manifest's `run.threads` for `launch`].
    #[arg(
        long,
        global = true,
        env = "FEDSYNTH_THREADS",
        value_parser = crate::backend::parse_threads,
        allow_hyphen_values = true
    )]
    pub threads: Option<usize>,
}

impl GlobalArgs {
    /// Returns the backend of the local commands: `--backend`, else flex.
    pub fn backend(&self) -> BackendKind {
        self.backend.unwrap_or_default()
    }

    /// Returns the compute threads of the local commands: `--threads`,
    /// else 0 for every core.
    pub fn threads(&self) -> usize {
        self.threads.unwrap_or(0)
    }

    /// Lets `--backend`, when given, override a manifest's `run.backend`.
    pub fn override_backend(&self, manifest: &mut Manifest) -> Result<(), ManifestError> {
        if let Some(backend) = self.backend {
            manifest.run.backend = backend;
            manifest.validate()?;
        }
        Ok(())
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Download, check and inspect the CIFAR-10 data.
    #[command(subcommand)]
    Data(crate::data::cli::DataCommand),
    /// Train the reference DCGAN on one node.
    TrainGan(crate::training::cli::TrainGanArgs),
    /// Train the reference classifier on one node.
    TrainClassifier(crate::training::cli::TrainClassifierArgs),
    /// Sample images from a generator checkpoint.
    Sample(crate::training::cli::SampleArgs),
    /// Evaluate a classifier checkpoint on the CIFAR-10 test split.
    Evaluate(crate::training::cli::EvaluateArgs),
    /// Audit synthetic images for nearest-neighbour leakage of training images.
    Audit(crate::privacy::cli::AuditArgs),
    /// Run the gRPC coordinator.
    Coordinator(crate::federation::cli::CoordinatorArgs),
    /// Run one site, which dials the coordinator and pulls its work.
    Site(crate::federation::cli::SiteArgs),
    /// Start a coordinator and its sites on this machine from a manifest.
    Launch(crate::launch::cli::LaunchArgs),
    /// Measure training steps and nearest-neighbour search.
    #[command(subcommand)]
    Bench(BenchCommand),
}

#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Images per second of one GAN step and one classifier step.
    Steps(crate::training::cli::BenchStepsArgs),
    /// GFLOP/s of exact k-nearest-neighbour search.
    Knn(crate::privacy::cli::BenchKnnArgs),
}

/// Runs the parsed command line.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    let global = cli.global;
    match cli.command {
        Command::Data(command) => crate::data::cli::run(command, &global),
        Command::TrainGan(args) => crate::training::cli::train_gan(args, &global),
        Command::TrainClassifier(args) => crate::training::cli::train_classifier(args, &global),
        Command::Sample(args) => crate::training::cli::sample(args, &global),
        Command::Evaluate(args) => crate::training::cli::evaluate(args, &global),
        Command::Audit(args) => crate::privacy::cli::audit(args, &global),
        Command::Coordinator(args) => crate::federation::cli::coordinator(args, &global),
        Command::Site(args) => crate::federation::cli::site(args, &global),
        Command::Launch(args) => crate::launch::cli::launch(args, &global),
        Command::Bench(BenchCommand::Steps(args)) => {
            crate::training::cli::bench_steps(args, &global)
        }
        Command::Bench(BenchCommand::Knn(args)) => crate::privacy::cli::bench_knn(args, &global),
    }
}
