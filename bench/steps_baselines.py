"""Times the reference GAN step and classifier step in PyTorch or Keras.

The models, batches and optimizers are those of fedsynth (see the Models
section of the design): Adam 2e-4 with beta1 0.5 for both GAN networks,
Adamax 5e-3 for the classifier. Each framework runs in its own process so
the two do not share a thread pool. Prints one line per step:
"<framework> <step>: <seconds> s/step".
"""

import argparse
import os
import statistics
import sys
import time


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--framework", choices=["torch", "tensorflow"], required=True)
    parser.add_argument("--gan-batch", type=int, default=128)
    parser.add_argument("--classifier-batch", type=int, default=32)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--iters", type=int, default=5)
    parser.add_argument("--threads", type=int, default=0, help="0 uses every core")
    return parser.parse_args()


def time_steps(step, warmup, iters):
    """Median seconds of `iters` calls of `step` after `warmup` untimed ones."""
    for _ in range(warmup):
        step()
    times = []
    for _ in range(iters):
        started = time.perf_counter()
        step()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def torch_steps(args, threads):
    import torch
    from torch import nn

    torch.set_num_threads(threads)
    torch.manual_seed(0)

    def conv_block(cin, cout, stride):
        return [
            nn.Conv2d(cin, cout, 5, stride, padding=2),
            nn.BatchNorm2d(cout, momentum=0.2, eps=1e-3),
            nn.LeakyReLU(0.2),
        ]

    discriminator = nn.Sequential(
        *conv_block(3, 32, 1),
        *conv_block(32, 32, 2),
        *conv_block(32, 64, 2),
        *conv_block(64, 128, 2),
        nn.Flatten(),
        nn.Dropout(0.4),
        nn.Linear(2048, 1),
    )

    def up(cin, cout):
        return nn.ConvTranspose2d(cin, cout, 5, 2, padding=2, output_padding=1)

    generator = nn.Sequential(
        nn.Linear(100, 2048),
        nn.LeakyReLU(0.2),
        nn.Unflatten(1, (128, 4, 4)),
        up(128, 64),
        nn.LeakyReLU(0.2),
        nn.BatchNorm2d(64, momentum=0.2, eps=1e-3),
        up(64, 32),
        nn.LeakyReLU(0.2),
        nn.BatchNorm2d(32, momentum=0.2, eps=1e-3),
        up(32, 32),
        nn.LeakyReLU(0.2),
        nn.Conv2d(32, 3, 3, padding=1),
        nn.Tanh(),
    )
    opt_d = torch.optim.Adam(discriminator.parameters(), 2e-4, betas=(0.5, 0.999), eps=1e-7)
    opt_g = torch.optim.Adam(generator.parameters(), 2e-4, betas=(0.5, 0.999), eps=1e-7)
    bce = nn.BCEWithLogitsLoss()
    half = args.gan_batch // 2
    real = torch.rand(half, 3, 32, 32) * 2 - 1

    def gan_step():
        # Discriminator on a real half labelled 1 and a generated half labelled 0.
        with torch.no_grad():
            fake = generator(torch.randn(half, 100))
        opt_d.zero_grad(set_to_none=True)
        loss_real = bce(discriminator(real), torch.ones(half, 1))
        loss_fake = bce(discriminator(fake), torch.zeros(half, 1))
        ((loss_real + loss_fake) * 0.5).backward()
        opt_d.step()

        # Generator through the discriminator with its weights frozen.
        discriminator.requires_grad_(False)
        opt_g.zero_grad(set_to_none=True)
        generated = generator(torch.randn(2 * half, 100))
        bce(discriminator(generated), torch.ones(2 * half, 1)).backward()
        opt_g.step()
        discriminator.requires_grad_(True)

    def same(cin, cout):
        return nn.Conv2d(cin, cout, 3, padding=1)

    classifier = nn.Sequential(
        same(3, 16),
        nn.LeakyReLU(0.1),
        same(16, 32),
        nn.LeakyReLU(0.1),
        nn.MaxPool2d(2),
        nn.Dropout(0.25),
        same(32, 32),
        nn.LeakyReLU(0.1),
        same(32, 64),
        nn.LeakyReLU(0.1),
        nn.MaxPool2d(2),
        nn.Dropout(0.25),
        nn.Flatten(),
        nn.Linear(4096, 256),
        nn.LeakyReLU(0.1),
        nn.Dropout(0.5),
        nn.Linear(256, 10),
    )
    opt_c = torch.optim.Adamax(classifier.parameters(), 5e-3, eps=1e-7)
    images = torch.rand(args.classifier_batch, 3, 32, 32) - 0.5
    labels = torch.arange(args.classifier_batch) % 10
    cross_entropy = nn.CrossEntropyLoss()

    def classifier_step():
        opt_c.zero_grad(set_to_none=True)
        cross_entropy(classifier(images), labels).backward()
        opt_c.step()

    version = f"torch {torch.__version__}"
    return version, gan_step, classifier_step


def tensorflow_steps(args, threads):
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import tensorflow as tf
    import keras
    from keras import layers

    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    keras.utils.set_random_seed(0)

    discriminator = keras.Sequential([keras.Input((32, 32, 3))])
    for channels, stride in [(32, 1), (32, 2), (64, 2), (128, 2)]:
        discriminator.add(layers.Conv2D(channels, 5, stride, padding="same"))
        discriminator.add(layers.BatchNormalization(momentum=0.8))
        discriminator.add(layers.LeakyReLU(0.2))
    discriminator.add(layers.Flatten())
    discriminator.add(layers.Dropout(0.4))
    discriminator.add(layers.Dense(1))

    generator = keras.Sequential(
        [
            keras.Input((100,)),
            layers.Dense(2048),
            layers.LeakyReLU(0.2),
            layers.Reshape((4, 4, 128)),
            layers.Conv2DTranspose(64, 5, 2, padding="same"),
            layers.LeakyReLU(0.2),
            layers.BatchNormalization(momentum=0.8),
            layers.Conv2DTranspose(32, 5, 2, padding="same"),
            layers.LeakyReLU(0.2),
            layers.BatchNormalization(momentum=0.8),
            layers.Conv2DTranspose(32, 5, 2, padding="same"),
            layers.LeakyReLU(0.2),
            layers.Conv2D(3, 3, padding="same", activation="tanh"),
        ]
    )
    opt_d = keras.optimizers.Adam(2e-4, beta_1=0.5)
    opt_g = keras.optimizers.Adam(2e-4, beta_1=0.5)
    bce = keras.losses.BinaryCrossentropy(from_logits=True)
    half = args.gan_batch // 2
    real = tf.random.uniform((half, 32, 32, 3), -1.0, 1.0)

    @tf.function(jit_compile=False)
    def gan_step():
        # Discriminator on a real half labelled 1 and a generated half labelled 0.
        fake = generator(tf.random.normal((half, 100)), training=True)
        with tf.GradientTape() as tape:
            loss_real = bce(tf.ones((half, 1)), discriminator(real, training=True))
            loss_fake = bce(tf.zeros((half, 1)), discriminator(fake, training=True))
            loss_d = (loss_real + loss_fake) * 0.5
        weights = discriminator.trainable_variables
        opt_d.apply_gradients(zip(tape.gradient(loss_d, weights), weights))

        # Generator through the discriminator, whose weights are not updated.
        with tf.GradientTape() as tape:
            generated = generator(tf.random.normal((2 * half, 100)), training=True)
            loss_g = bce(tf.ones((2 * half, 1)), discriminator(generated, training=True))
        weights = generator.trainable_variables
        opt_g.apply_gradients(zip(tape.gradient(loss_g, weights), weights))

    classifier = keras.Sequential(
        [
            keras.Input((32, 32, 3)),
            layers.Conv2D(16, 3, padding="same"),
            layers.LeakyReLU(0.1),
            layers.Conv2D(32, 3, padding="same"),
            layers.LeakyReLU(0.1),
            layers.MaxPooling2D(2),
            layers.Dropout(0.25),
            layers.Conv2D(32, 3, padding="same"),
            layers.LeakyReLU(0.1),
            layers.Conv2D(64, 3, padding="same"),
            layers.LeakyReLU(0.1),
            layers.MaxPooling2D(2),
            layers.Dropout(0.25),
            layers.Flatten(),
            layers.Dense(256),
            layers.LeakyReLU(0.1),
            layers.Dropout(0.5),
            layers.Dense(10),
        ]
    )
    opt_c = keras.optimizers.Adamax(5e-3)
    cross_entropy = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    images = tf.random.uniform((args.classifier_batch, 32, 32, 3), -0.5, 0.5)
    labels = tf.range(args.classifier_batch) % 10

    @tf.function(jit_compile=False)
    def classifier_step():
        with tf.GradientTape() as tape:
            loss = cross_entropy(labels, classifier(images, training=True))
        weights = classifier.trainable_variables
        opt_c.apply_gradients(zip(tape.gradient(loss, weights), weights))

    version = f"tensorflow {tf.__version__}, keras {keras.__version__}"
    return version, gan_step, classifier_step


def main():
    args = parse_args()
    threads = args.threads or os.cpu_count()
    build = torch_steps if args.framework == "torch" else tensorflow_steps
    try:
        version, gan_step, classifier_step = build(args, threads)
    except ImportError as err:
        print(f"{args.framework}: not installed ({err}); skipping it")
        return 0
    gan = time_steps(gan_step, args.warmup, args.iters)
    classifier = time_steps(classifier_step, args.warmup, args.iters)
    print(f"{args.framework} version: {version}, {threads} threads")
    print(f"{args.framework} gan: {gan:.4f} s/step")
    print(f"{args.framework} classifier: {classifier:.4f} s/step")
    return 0


if __name__ == "__main__":
    sys.exit(main())
