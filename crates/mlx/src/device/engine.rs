//! The MLX backend's strategies: Lloyd iterations resident on the device when the fit's
//! data is held there (else the host loop, streaming blocks of rows to the device), greedy
//! k-means++ resident on the device (the data held there, or a sample copied once), and
//! mini-batch steps resident on the device when it holds the fit's data.

use super::lloyd::MlxLloyd;
use super::minibatch::MlxMiniBatch;
use super::seeding;
use super::MlxKernel;
use mlx_kmeans::error::Result;
use mlx_kmeans::kernel::Kernel;
use mlx_kmeans::matrix::{MatRef, Points};
use mlx_kmeans::monitor::Monitor;
use mlx_kmeans::options::SeedingOptions;
use mlx_kmeans::params::KMeansParams;
use mlx_kmeans::strategy::{DensePass, Engine, HostLloyd, HostMiniBatch, LloydStep, MiniBatchState, MiniBatchSteps};
use rand_chacha::ChaCha8Rng;

pub struct MlxEngine<'a> {
    kernel: MlxKernel<'a>,
    /// For greedy k-means++ on the host loop (where the device does not hold the seeding).
    seeding: SeedingOptions,
}

impl<'a> MlxEngine<'a> {
    pub fn new(kernel: MlxKernel<'a>, seeding: SeedingOptions) -> Self {
        Self { kernel, seeding }
    }
}

impl Engine<f32> for MlxEngine<'_> {
    fn kernel(&self) -> &dyn Kernel<f32> {
        &self.kernel
    }

    fn seeding(&self) -> SeedingOptions {
        self.seeding
    }

    fn lloyd<'s>(
        &'s self,
        points: Points<'s, f32>,
        centroids: Vec<f32>,
        params: &KMeansParams,
    ) -> Result<Box<dyn LloydStep<f32> + 's>> {
        // Bounds prune nothing on a device that computes every distance in one dense pass.
        Ok(match self.kernel.whole_centred(points.x) {
            Some(resident) => Box::new(MlxLloyd::new(
                &self.kernel,
                points,
                resident,
                &centroids,
                (params.spherical, params.max_iter),
            )?),
            None => Box::new(HostLloyd::new(&self.kernel, points, centroids, params.spherical, DensePass)),
        })
    }

    fn minibatch<'s>(
        &'s self,
        x: MatRef<'s, f32>,
        weights: Option<&'s [f32]>,
        state: MiniBatchState<f32>,
        reassignment_ratio: f64,
        spherical: bool,
    ) -> Result<Box<dyn MiniBatchSteps<f32> + 's>> {
        // Resident when the kernel holds the fit's data; else batches are gathered on the host.
        Ok(match self.kernel.whole_centred(x) {
            Some(data) => {
                Box::new(MlxMiniBatch::new(&self.kernel, x, data, weights, state, reassignment_ratio, spherical)?)
            }
            None => Box::new(HostMiniBatch { kernel: &self.kernel, x, weights, state, reassignment_ratio, spherical }),
        })
    }

    fn kmeans_plusplus(
        &self,
        samples: &[Points<'_, f32>],
        k: usize,
        rngs: &mut [ChaCha8Rng],
        first_run: usize,
        monitor: Monitor<'_>,
    ) -> Result<Option<Vec<Vec<usize>>>> {
        // Samples of one shape seed in lockstep, stacked (the samples of one fit always are
        // of one shape; a fit's `n_init` runs stack copies of its rows); others go to the
        // host loop.
        let (rows, cols, weighted) = (samples[0].rows(), samples[0].cols(), samples[0].weights.is_some());
        if !samples.iter().all(|s| s.rows() == rows && s.weights.is_some() == weighted) {
            return Ok(None);
        }
        if !self.kernel.holds(rows * samples.len(), cols) {
            // Runs over the same rows (a fit's `n_init`) whose stacked copies the device cannot
            // hold seed one after another on it; other samples too large for their copies
            // seed in the host loop, which streams them through the kernel.
            if !(samples.iter().all(|s| s.same_rows(&samples[0])) && self.kernel.holds(rows, cols)) {
                return Ok(None);
            }
            let mut chosen = Vec::with_capacity(samples.len());
            for (r, rng) in rngs.iter_mut().enumerate() {
                let run = (first_run + r, self.seeding.prune);
                chosen.extend(seeding::kmeans_plusplus(
                    &self.kernel,
                    &samples[..1],
                    k,
                    std::slice::from_mut(rng),
                    run,
                    &mut *monitor,
                )?);
            }
            return Ok(Some(chosen));
        }
        Ok(Some(seeding::kmeans_plusplus(&self.kernel, samples, k, rngs, (first_run, self.seeding.prune), monitor)?))
    }
}
