//! Inference with trained models, in fixed-size batches so memory stays
//! bounded: sampling images, class probabilities, embeddings, and the
//! evaluation of a classifier on a labelled set.

use burn::prelude::*;
use burn::tensor::activation::softmax;
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use rand_distr::StandardNormal;
use serde::{Deserialize, Serialize};

use super::tensors::{PixelScale, images_to_tensor, tensor_to_images};
use crate::data::{CLASS_COUNT, IMAGE_BYTES, ImageSet};
use crate::models::{Classifier, Generator};

/// Images per forward pass during inference.
pub const INFER_BATCH: usize = 256;

/// Most images one sampling call may produce: ten times the reference
/// run's 50,000, about 1.5 GB of pixels held in memory at once.
pub const MAX_SAMPLES: usize = 500_000;

/// Samples `count` images from `generator` with latent vectors from N(0, 1)
/// seeded by `seed`; returns CHW pixel bytes, 3,072 per image.
///
/// The generator should be in inference mode (`valid()`), as returned by
/// training, so batch norm uses its running statistics.
pub fn sample_images(
    generator: &Generator,
    count: usize,
    latent_dim: usize,
    seed: u64,
    device: &Device,
) -> Vec<u8> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut images = Vec::with_capacity(count * IMAGE_BYTES);
    let mut remaining = count;
    while remaining > 0 {
        let batch = remaining.min(INFER_BATCH);
        let values: Vec<f32> = (0..batch * latent_dim)
            .map(|_| rng.sample(StandardNormal))
            .collect();
        let z = Tensor::<2>::from_data(TensorData::new(values, [batch, latent_dim]), device);
        images.extend(tensor_to_images(generator.forward(z)));
        remaining -= batch;
    }
    images
}

/// Class probabilities (softmax), 10 per image, for CHW pixel bytes.
pub fn predict_proba(classifier: &Classifier, images: &[u8], device: &Device) -> Vec<f32> {
    batched(images, |x| softmax(classifier.forward(x), 1), device)
}

/// Penultimate activations, 256 per image (the classifier's hidden width),
/// for CHW pixel bytes.
pub fn embed_images(classifier: &Classifier, images: &[u8], device: &Device) -> Vec<f32> {
    batched(images, |x| classifier.embed(x), device)
}

fn batched(images: &[u8], forward: impl Fn(Tensor<4>) -> Tensor<2>, device: &Device) -> Vec<f32> {
    let mut out = Vec::new();
    for chunk in images.chunks(INFER_BATCH * IMAGE_BYTES) {
        let x = images_to_tensor(chunk, device, PixelScale::Classifier);
        let values: Vec<f32> = forward(x)
            .try_into_vec_as()
            .expect("model outputs are floats that convert to f32");
        out.extend(values);
    }
    out
}

/// Accuracy of a classifier on a labelled set.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Evaluation {
    /// Share of images whose most probable class is the label.
    pub accuracy: f64,
    /// Accuracy per true class; 0 for a class with no image.
    pub per_class_accuracy: Vec<f64>,
    /// Counts indexed `[true class][predicted class]`.
    pub confusion: Vec<Vec<u64>>,
    /// Images evaluated.
    pub count: usize,
}

/// Evaluates `classifier` on every image of `test`.
pub fn evaluate(classifier: &Classifier, test: &ImageSet, device: &Device) -> Evaluation {
    let probabilities = predict_proba(classifier, &test.images, device);
    let predictions: Vec<usize> = probabilities.chunks(CLASS_COUNT).map(argmax).collect();
    Evaluation::from_predictions(&test.labels, &predictions)
}

/// Index of the largest value; the first one on ties.
pub fn argmax(values: &[f32]) -> usize {
    let mut best = 0;
    for (index, value) in values.iter().enumerate() {
        if *value > values[best] {
            best = index;
        }
    }
    best
}

impl Evaluation {
    /// Builds the evaluation from true labels and predicted classes.
    pub fn from_predictions(labels: &[u8], predictions: &[usize]) -> Evaluation {
        let mut confusion = vec![vec![0u64; CLASS_COUNT]; CLASS_COUNT];
        for (&label, &predicted) in labels.iter().zip(predictions) {
            confusion[label as usize][predicted] += 1;
        }
        let correct: u64 = (0..CLASS_COUNT).map(|c| confusion[c][c]).sum();
        let per_class_accuracy = confusion
            .iter()
            .enumerate()
            .map(|(class, row)| {
                let total: u64 = row.iter().sum();
                if total == 0 {
                    0.0
                } else {
                    row[class] as f64 / total as f64
                }
            })
            .collect();
        let count = labels.len();
        Evaluation {
            accuracy: if count == 0 {
                0.0
            } else {
                correct as f64 / count as f64
            },
            per_class_accuracy,
            confusion,
            count,
        }
    }

    /// Renders accuracy, per-class accuracy and the confusion matrix as text.
    pub fn to_text(&self, class_names: &[String]) -> String {
        let name = |class: usize| {
            class_names
                .get(class)
                .cloned()
                .unwrap_or_else(|| format!("class {class}"))
        };
        let mut text = format!(
            "accuracy: {:.2}% of {} images\n\nper-class accuracy:\n",
            self.accuracy * 100.0,
            self.count
        );
        for (class, accuracy) in self.per_class_accuracy.iter().enumerate() {
            text.push_str(&format!(
                "  {:<12} {:6.2}%\n",
                name(class),
                accuracy * 100.0
            ));
        }
        text.push_str("\nconfusion matrix (rows: true class, columns: predicted):\n");
        text.push_str(&format!("{:<12}", ""));
        for class in 0..self.confusion.len() {
            let short: String = name(class).chars().take(6).collect();
            text.push_str(&format!(" {short:>6}"));
        }
        text.push('\n');
        for (class, row) in self.confusion.iter().enumerate() {
            text.push_str(&format!("{:<12}", name(class)));
            for count in row {
                text.push_str(&format!(" {count:>6}"));
            }
            text.push('\n');
        }
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::{ClassifierConfig, GeneratorConfig};

    #[test]
    fn sample_images_is_deterministic_by_seed() {
        let device = Device::flex();
        let generator = GeneratorConfig::new().init(&device);
        let a = sample_images(&generator, 3, 100, 9, &device);
        let b = sample_images(&generator, 3, 100, 9, &device);
        let c = sample_images(&generator, 3, 100, 10, &device);
        assert_eq!(a.len(), 3 * IMAGE_BYTES);
        assert!(a == b, "same seed gave different images");
        assert!(a != c, "different seeds gave the same images");
    }

    #[test]
    fn sample_images_spans_several_batches() {
        let device = Device::flex();
        let generator = GeneratorConfig::new().init(&device);
        let images = sample_images(&generator, INFER_BATCH + 3, 100, 1, &device);
        assert_eq!(images.len(), (INFER_BATCH + 3) * IMAGE_BYTES);
    }

    #[test]
    fn predict_proba_rows_sum_to_one() {
        let device = Device::flex();
        let classifier = ClassifierConfig::new().init(&device);
        let images: Vec<u8> = (0..2 * IMAGE_BYTES).map(|i| (i % 251) as u8).collect();
        let probabilities = predict_proba(&classifier, &images, &device);
        assert_eq!(probabilities.len(), 20);
        for row in probabilities.chunks(CLASS_COUNT) {
            assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-5, "{row:?}");
        }
    }

    #[test]
    fn embed_images_returns_hidden_width() {
        let device = Device::flex();
        let classifier = ClassifierConfig::new().init(&device);
        let images = vec![128u8; 3 * IMAGE_BYTES];
        assert_eq!(embed_images(&classifier, &images, &device).len(), 3 * 256);
    }

    #[test]
    fn evaluation_counts_confusion_and_accuracy() {
        let labels = [0u8, 0, 1, 2];
        let predictions = [0usize, 1, 1, 0];
        let evaluation = Evaluation::from_predictions(&labels, &predictions);
        assert_eq!(evaluation.count, 4);
        assert_eq!(evaluation.accuracy, 0.5);
        assert_eq!(evaluation.confusion[0][0], 1);
        assert_eq!(evaluation.confusion[0][1], 1);
        assert_eq!(evaluation.confusion[2][0], 1);
        assert_eq!(evaluation.per_class_accuracy[0], 0.5);
        assert_eq!(evaluation.per_class_accuracy[1], 1.0);
        assert_eq!(evaluation.per_class_accuracy[2], 0.0);
        assert_eq!(evaluation.per_class_accuracy[3], 0.0);
    }

    #[test]
    fn evaluation_text_names_classes() {
        let evaluation = Evaluation::from_predictions(&[1], &[1]);
        let names: Vec<String> = (0..10).map(|i| format!("name{i}")).collect();
        let text = evaluation.to_text(&names);
        assert!(text.contains("accuracy: 100.00% of 1 images"), "{text}");
        assert!(text.contains("name1"), "{text}");
    }

    #[test]
    fn argmax_takes_first_of_ties() {
        assert_eq!(argmax(&[0.1, 0.7, 0.7]), 1);
    }
}
