//! The reference models: the DCGAN generator and discriminator, and the
//! CIFAR-10 classifier used for c, c_k and c'. Each has a `#[derive(Config)]`
//! with the reference sizes as defaults; training loops live in `training`.

pub mod classifier;
pub mod discriminator;
pub mod generator;

pub use classifier::{Classifier, ClassifierConfig};
pub use discriminator::{Discriminator, DiscriminatorConfig};
pub use generator::{Generator, GeneratorConfig};

use burn::module::{Module, ModuleVisitor, Param};
use burn::tensor::Tensor;

/// Counts the scalars of every trainable parameter.
///
/// Batch-norm running statistics are buffers that burn visits like
/// parameters, so fields named `running_*` are skipped; the count matches
/// Keras' "trainable params".
pub fn trainable_params<M: Module>(module: &M) -> usize {
    #[derive(Default)]
    struct Counter {
        path: Vec<String>,
        count: usize,
    }
    impl ModuleVisitor for Counter {
        fn enter_module(&mut self, name: &str, _container_type: &str) {
            self.path.push(name.to_string());
        }
        fn exit_module(&mut self, _name: &str, _container_type: &str) {
            self.path.pop();
        }
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            let is_buffer = self
                .path
                .last()
                .is_some_and(|name| name.starts_with("running_"));
            if !is_buffer {
                self.count += param.shape().num_elements();
            }
        }
    }
    let mut counter = Counter::default();
    module.visit(&mut counter);
    counter.count
}
