//! The runtime switches, as the engine takes them: plain values handed down explicitly
//! (through the engines' construction and the seeding's arguments). Nothing in the engine
//! reads the environment: `python/mlx_kmeans/_options.py` reads every `MLX_KMEANS_*` variable
//! when a native call begins and hands them over (`bindings::configure`). README's table
//! "Runtime switches" lists them.

/// Switches of greedy k-means++.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SeedingOptions {
    /// Exact pruning of rows whose candidates cannot be nearer (`false`: measure every row,
    /// the same picks; for measuring and for the tests that compare both).
    pub prune: bool,
    /// The 8-bit screen: `Some(true)` whatever the data's size, `Some(false)` never (the
    /// pruning stays), `None` where the kernel finds it pays.
    pub screen: Option<bool>,
}

impl Default for SeedingOptions {
    fn default() -> Self {
        Self { prune: true, screen: None }
    }
}

/// A dialect of the MLX kernel's shared-source kernels, or none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SharedDialect {
    Off,
    Metal,
    Cuda,
}

/// Switches of the MLX backend, for measuring and testing. `None` leaves a choice to the
/// kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MlxSwitches {
    /// MLX's own ops only (`false`), or the custom CUDA kernels where they run.
    pub cuda_kernels: bool,
    /// The custom kernels assign rows by the fused kernel (`true`) or through blocks of the
    /// distance matrix (`false`), whatever the shape.
    pub fused: Option<bool>,
    /// Float16 products per distance in the fused kernel: 3 (the split) or 1 (the high
    /// parts, more near ties decided exactly), whatever the shape.
    pub products: Option<u8>,
    /// MLX input shared with the kernel (`false`: copied).
    pub share: bool,
    /// Device memory the fit's data and its working copies may take before the data stays on
    /// the host and is streamed to the device in blocks each pass (default: MLX's limit).
    pub device_bytes: Option<usize>,
    /// Resident Lloyd steps queued one ahead (`true`) or each waited for (`false`), whatever
    /// the steps' time.
    pub queue_ahead: Option<bool>,
    /// Near ties with two centroids in their band decided against the first pass's best and
    /// runner-up (`true`: also on MLX's ops, which then find the runner-up by two more
    /// passes), or all by the general buffer (`false`); `None`: where the kernel finds the
    /// runner-up.
    pub pairs: Option<bool>,
    /// The shared-source kernels the MLX-ops path runs (default: Metal on an Apple GPU).
    pub shared: Option<SharedDialect>,
    /// GEMMs through the high/low split even where float32 products are measured exact.
    pub split: bool,
}

impl Default for MlxSwitches {
    fn default() -> Self {
        Self {
            cuda_kernels: true,
            fused: None,
            products: None,
            share: true,
            device_bytes: None,
            queue_ahead: None,
            pairs: None,
            shared: None,
            split: false,
        }
    }
}

/// Which triangle-inequality bounds the cpu backend's bounded Lloyd passes keep (the same
/// labels either way); `None` in [`Options`]: chosen per fit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BoundsKind {
    /// One lower bound per row (`strategy::bounds`).
    Hamerly,
    /// One lower bound per row and group of centroids (`strategy::grouped`).
    Grouped,
    /// Each row's nearest centroids and a lower bound on the others (`strategy::candidates`).
    Candidates,
}

/// Every switch of one native call.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Options {
    /// The cpu kernel's float32 distances: `amx`, `bf16`, `f32` or `gemm` (a diagnostic: the
    /// labels are the same); `None` (or a kind this CPU lacks): the fastest it has.
    pub cpu_dots: Option<String>,
    pub cpu_bounds: Option<BoundsKind>,
    pub seeding: SeedingOptions,
    pub mlx: MlxSwitches,
}
