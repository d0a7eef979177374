//! mlx-kmeans: one k-means loop (Lloyd and mini-batch), generic over the float type and
//! over the kernel provider that computes assignments and per-cluster sums.

mod bounds;
pub mod error;
pub mod init;
pub mod kernel;
pub mod lloyd;
pub mod matrix;
pub mod minibatch;
pub mod scalar;

#[cfg(feature = "python")]
mod bindings;

pub use error::{Error, Result};
pub use init::Init;
pub use kernel::{cpu::CpuKernel, ClusterSums, Kernel};
pub use lloyd::{fit, lloyd_step, KMeansFit, KMeansParams, Progress, Stage};
pub use matrix::MatRef;
pub use minibatch::{MiniBatchFit, MiniBatchParams, MiniBatchState};
pub use scalar::Scalar;
