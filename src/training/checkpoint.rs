//! Checkpoints: each model as `<name>.safetensors` with its config as
//! `<name>.json` beside it, plus what a resumed run needs under `resume/`
//! (weights with their parameter ids, optimizer state, epochs done).
//!
//! Every file is written atomically, and `resume/state.json` is written
//! last, so a run that dies mid-save resumes from the previous epoch's
//! state. The safetensors files are the interchange format. `resume/` uses
//! burn's own burnpack format, because only it keeps the parameter ids that
//! key the optimizer state.

use std::fs;
use std::path::{Path, PathBuf};

use burn::config::Config;
use burn::module::Module;
use burn::optim::ModuleOptimizer;
use burn::store::{ModuleSnapshot, SafetensorsStore};
use burn::tensor::{Bytes, Device};
use serde::{Deserialize, Serialize};

use super::TrainError;
use crate::fsutil;
use crate::models::{Classifier, ClassifierConfig, Generator, GeneratorConfig};

/// File stem of the generator in a GAN checkpoint.
pub const GENERATOR: &str = "generator";
/// File stem of the discriminator in a GAN checkpoint.
pub const DISCRIMINATOR: &str = "discriminator";
/// File stem of the classifier in a classifier checkpoint.
pub const CLASSIFIER: &str = "classifier";
const RESUME_DIR: &str = "resume";
const STATE_FILE: &str = "state.json";

/// Progress of the training run that wrote a checkpoint.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainingState {
    /// Epochs finished, counted over every resume.
    pub epochs_done: usize,
}

/// Path of the weights of model `name` in `dir`.
pub fn weights_path(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("{name}.safetensors"))
}

/// Path of the config of model `name` in `dir`.
pub fn config_path(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("{name}.json"))
}

/// Serialises a module's weights as safetensors bytes, batch-norm running
/// statistics included.
pub fn module_to_bytes<M: Module>(module: &M) -> Result<Vec<u8>, TrainError> {
    let mut store = SafetensorsStore::from_bytes(None);
    // `valid` folds the latest batch-norm update into the running statistics,
    // which otherwise lag one step behind in what is saved.
    module
        .valid()
        .save_into(&mut store)
        .map_err(|err| TrainError::InvalidWeights(err.to_string()))?;
    store
        .get_bytes()
        .map_err(|err| TrainError::InvalidWeights(err.to_string()))
}

/// Loads safetensors bytes into `module`, which must have the same layout.
///
/// Every tensor of the module must be present with its shape; extra or
/// missing tensors are an error.
pub fn module_from_bytes<M: Module>(mut module: M, bytes: &[u8]) -> Result<M, TrainError> {
    let mut store = SafetensorsStore::from_bytes(Some(bytes.to_vec()));
    let result = module
        .load_from(&mut store)
        .map_err(|err| TrainError::InvalidWeights(err.to_string()))?;
    if !result.is_success() || !result.missing.is_empty() || !result.unused.is_empty() {
        return Err(TrainError::InvalidWeights(format!(
            "{} tensors applied, missing {:?}, unexpected {:?}, errors {:?}",
            result.applied.len(),
            result.missing,
            result.unused,
            result.errors
        )));
    }
    Ok(module)
}

/// Writes `module` and `config` as model `name` in `dir`.
pub fn save_model<M: Module, C: Config>(
    dir: &Path,
    name: &str,
    module: &M,
    config: &C,
) -> Result<(), TrainError> {
    let bytes = module_to_bytes(module)?;
    write_file(&weights_path(dir, name), &bytes)?;
    let json = serde_json::to_vec_pretty(config).map_err(|err| TrainError::WriteCheckpoint {
        path: config_path(dir, name),
        message: err.to_string(),
    })?;
    write_file(&config_path(dir, name), &json)
}

/// Reads the config of model `name` from `dir`.
pub fn load_config<C: Config>(dir: &Path, name: &str) -> Result<C, TrainError> {
    let path = config_path(dir, name);
    let bytes = read_file(&path)?;
    serde_json::from_slice(&bytes).map_err(|err| TrainError::ReadCheckpoint {
        path,
        message: err.to_string(),
    })
}

/// Reads the weights of model `name` from `dir` into `module`.
pub fn load_weights<M: Module>(dir: &Path, name: &str, module: M) -> Result<M, TrainError> {
    let path = weights_path(dir, name);
    let bytes = read_file(&path)?;
    module_from_bytes(module, &bytes).map_err(|err| TrainError::ReadCheckpoint {
        path,
        message: err.to_string(),
    })
}

/// Writes a generator checkpoint (weights and config) into `dir`.
pub fn save_generator(
    dir: &Path,
    generator: &Generator,
    config: &GeneratorConfig,
) -> Result<(), TrainError> {
    save_model(dir, GENERATOR, generator, config)
}

/// Loads the generator saved in `dir` onto `device`.
pub fn load_generator(
    dir: &Path,
    device: &Device,
) -> Result<(Generator, GeneratorConfig), TrainError> {
    let config: GeneratorConfig = load_config(dir, GENERATOR)?;
    let generator = load_weights(dir, GENERATOR, config.init(device))?;
    Ok((generator, config))
}

/// Writes a classifier checkpoint (weights and config) into `dir`.
pub fn save_classifier(
    dir: &Path,
    classifier: &Classifier,
    config: &ClassifierConfig,
) -> Result<(), TrainError> {
    save_model(dir, CLASSIFIER, classifier, config)
}

/// Loads the classifier saved in `dir` onto `device`.
pub fn load_classifier(
    dir: &Path,
    device: &Device,
) -> Result<(Classifier, ClassifierConfig), TrainError> {
    let config: ClassifierConfig = load_config(dir, CLASSIFIER)?;
    let classifier = load_weights(dir, CLASSIFIER, config.init(device))?;
    Ok((classifier, config))
}

/// Writes the resume record of one model: its weights with parameter ids
/// and its optimizer state.
pub fn save_resume_model<M: Module>(
    dir: &Path,
    name: &str,
    module: &M,
    optimizer: &ModuleOptimizer,
) -> Result<(), TrainError> {
    let resume = dir.join(RESUME_DIR);
    let module_path = resume.join(format!("{name}.bpk"));
    let bytes = module
        .valid()
        .into_record()
        .into_bytes()
        .map_err(|err| write_error(&module_path, err))?;
    write_file(&module_path, &bytes)?;

    let optimizer_path = resume.join(format!("{name}-optimizer.bpk"));
    let bytes = optimizer
        .into_bytes()
        .map_err(|err| write_error(&optimizer_path, err))?;
    write_file(&optimizer_path, &bytes)
}

/// Restores one model and its optimizer from the resume record in `dir`.
pub fn load_resume_model<M: Module>(
    dir: &Path,
    name: &str,
    module: M,
    optimizer: ModuleOptimizer,
) -> Result<(M, ModuleOptimizer), TrainError> {
    let resume = dir.join(RESUME_DIR);
    let module_path = resume.join(format!("{name}.bpk"));
    let record =
        burn::store::ModuleRecord::from_bytes(Bytes::from_bytes_vec(read_file(&module_path)?))
            .map_err(|err| read_error(&module_path, err))?;
    let module = module
        .try_load_record(record)
        .map_err(|err| read_error(&module_path, err))?;

    let optimizer_path = resume.join(format!("{name}-optimizer.bpk"));
    let bytes = Bytes::from_bytes_vec(read_file(&optimizer_path)?);
    let optimizer = optimizer
        .from_bytes(bytes)
        .map_err(|err| read_error(&optimizer_path, err))?;
    Ok((module, optimizer))
}

/// Writes the epoch count; call it after every other file of the checkpoint.
pub fn save_state(dir: &Path, state: &TrainingState) -> Result<(), TrainError> {
    let path = dir.join(RESUME_DIR).join(STATE_FILE);
    fsutil::write_json_atomic(&path, state).map_err(|err| write_error(&path, err))
}

/// Reads the epoch count, or `None` when `dir` contains no finished checkpoint.
pub fn load_state(dir: &Path) -> Result<Option<TrainingState>, TrainError> {
    let path = dir.join(RESUME_DIR).join(STATE_FILE);
    if !path.is_file() {
        return Ok(None);
    }
    let bytes = read_file(&path)?;
    let state = serde_json::from_slice(&bytes).map_err(|err| read_error(&path, err))?;
    Ok(Some(state))
}

fn write_file(path: &Path, bytes: &[u8]) -> Result<(), TrainError> {
    fsutil::write_atomic(path, bytes).map_err(|err| write_error(path, err))
}

fn read_file(path: &Path) -> Result<Vec<u8>, TrainError> {
    if !path.is_file() {
        return Err(TrainError::MissingCheckpoint(path.to_path_buf()));
    }
    fs::read(path).map_err(|err| read_error(path, err))
}

fn write_error(path: &Path, err: impl std::fmt::Display) -> TrainError {
    TrainError::WriteCheckpoint {
        path: path.to_path_buf(),
        message: err.to_string(),
    }
}

fn read_error(path: &Path, err: impl std::fmt::Display) -> TrainError {
    TrainError::ReadCheckpoint {
        path: path.to_path_buf(),
        message: err.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::{ClassifierConfig, DiscriminatorConfig, GeneratorConfig};
    use burn::tensor::{Distribution, Tensor};

    fn outputs(tensor: Tensor<2>) -> Vec<f32> {
        tensor.try_into_vec_as().unwrap()
    }

    #[test]
    fn loaded_generator_gives_identical_outputs() {
        let device = Device::flex();
        let dir = tempfile::tempdir().unwrap();
        let config = GeneratorConfig::new();
        let generator = config.init(&device);
        save_generator(dir.path(), &generator, &config).unwrap();
        let (loaded, loaded_config) = load_generator(dir.path(), &device).unwrap();
        let z = Tensor::<2>::random([3, 100], Distribution::Normal(0.0, 1.0), &device);
        let expected: Vec<f32> = generator.forward(z.clone()).try_into_vec_as().unwrap();
        let actual: Vec<f32> = loaded.forward(z).try_into_vec_as().unwrap();
        assert!(expected == actual, "outputs differ after reload");
        assert_eq!(loaded_config.latent_dim, config.latent_dim);
    }

    #[test]
    fn loaded_classifier_gives_identical_outputs() {
        let device = Device::flex();
        let dir = tempfile::tempdir().unwrap();
        let config = ClassifierConfig::new();
        let classifier = config.init(&device);
        save_classifier(dir.path(), &classifier, &config).unwrap();
        let (loaded, _) = load_classifier(dir.path(), &device).unwrap();
        let x = Tensor::<4>::random([2, 3, 32, 32], Distribution::Uniform(-0.5, 0.5), &device);
        assert!(outputs(classifier.forward(x.clone())) == outputs(loaded.forward(x)));
    }

    #[test]
    fn checkpoint_keeps_batch_norm_statistics() {
        let train_device = Device::flex().autodiff();
        let discriminator = DiscriminatorConfig::new().init(&train_device);
        let x = Tensor::<4>::random(
            [4, 3, 32, 32],
            Distribution::Normal(0.5, 2.0),
            &train_device,
        );
        let _ = discriminator.forward(x);
        let bytes = module_to_bytes(&discriminator).unwrap();

        let device = Device::flex();
        let loaded = module_from_bytes(DiscriminatorConfig::new().init(&device), &bytes).unwrap();
        let probe = Tensor::<4>::ones([1, 3, 32, 32], &device);
        let expected = outputs(discriminator.valid().forward(probe.clone()));
        assert!(expected == outputs(loaded.forward(probe)));
    }

    #[test]
    fn rejects_weights_of_another_model() {
        let device = Device::flex();
        let bytes = module_to_bytes(&GeneratorConfig::new().init(&device)).unwrap();
        let err = module_from_bytes(ClassifierConfig::new().init(&device), &bytes).unwrap_err();
        assert!(matches!(err, TrainError::InvalidWeights(_)), "{err}");
    }

    #[test]
    fn missing_checkpoint_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let err = load_generator(dir.path(), &Device::flex()).unwrap_err();
        assert!(err.to_string().contains("generator.json"), "{err}");
    }

    #[test]
    fn state_is_absent_before_first_save() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(load_state(dir.path()).unwrap(), None);
        save_state(dir.path(), &TrainingState { epochs_done: 4 }).unwrap();
        assert_eq!(
            load_state(dir.path()).unwrap(),
            Some(TrainingState { epochs_done: 4 })
        );
    }
}
