//! mlx-kmeans: one k-means loop (Lloyd and mini-batch), generic over the float type and
//! over the backend (an engine of kernels and step strategies) that runs its steps.

pub mod error;
pub mod init;
pub mod kernel;
pub mod lloyd;
pub mod matrix;
pub mod minibatch;
pub mod monitor;
pub mod options;
pub mod pages;
pub mod params;
pub mod sampling;
pub mod scalar;
pub mod sparse;
pub mod strategy;
pub mod update;

#[cfg(feature = "python")]
pub mod bindings;

pub use error::{Error, Result};
pub use init::Init;
pub use kernel::{cpu::CpuKernel, ClusterSums, Kernel};
pub use lloyd::{fit, lloyd_step, KMeansFit};
pub use matrix::{MatRef, Points};
pub use minibatch::{MiniBatchFit, MiniBatchState};
pub use monitor::{Monitor, Progress, Stage};
pub use params::{Algorithm, KMeansParams, MiniBatchParams};
pub use scalar::Scalar;
pub use strategy::{Engine, HostEngine};
