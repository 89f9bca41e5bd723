//! Training of the reference models on one node: pixel scaling, the Adamax
//! optimizer, the GAN and classifier loops, checkpoints and inference.
//! Nothing here talks to the network; the federation calls these functions.

pub mod cli;
