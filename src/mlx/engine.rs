//! The MLX backend's strategies: Lloyd iterations resident on the device when the fit's
//! data is held there, greedy k-means++ resident on the device (the data held there, or a
//! sample copied once), mini-batch steps as on the host.

use super::lloyd::MlxLloyd;
use super::seeding;
use super::MlxKernel;
use crate::error::Result;
use crate::kernel::Kernel;
use crate::matrix::Points;
use crate::params::KMeansParams;
use crate::monitor::Monitor;
use crate::strategy::{DensePass, Engine, HostLloyd, LloydStep};
use rand_chacha::ChaCha8Rng;

pub struct MlxEngine<'a> {
    kernel: MlxKernel<'a>,
}

impl<'a> MlxEngine<'a> {
    pub fn new(kernel: MlxKernel<'a>) -> Self {
        Self { kernel }
    }
}

impl Engine<f32> for MlxEngine<'_> {
    fn kernel(&self) -> &dyn Kernel<f32> {
        &self.kernel
    }

    fn lloyd<'s>(
        &'s self,
        points: Points<'s, f32>,
        centroids: Vec<f32>,
        params: &KMeansParams,
    ) -> Result<Box<dyn LloydStep<f32> + 's>> {
        // Bounds prune nothing on a device that computes every distance in one dense pass.
        Ok(match self.kernel.whole_centred(points.x) {
            Some(resident) => Box::new(MlxLloyd::new(&self.kernel, points, resident, &centroids, params.spherical)?),
            None => Box::new(HostLloyd::new(&self.kernel, points, centroids, params.spherical, DensePass)),
        })
    }

    fn kmeans_plusplus(
        &self,
        points: Points<'_, f32>,
        k: usize,
        rng: &mut ChaCha8Rng,
        run: usize,
        monitor: Monitor<'_>,
    ) -> Result<Option<Vec<usize>>> {
        Ok(Some(seeding::kmeans_plusplus(&self.kernel, points, k, rng, run, monitor)?))
    }
}
