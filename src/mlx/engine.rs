//! The MLX backend's strategies: Lloyd iterations resident on the device when the fit's
//! data is held there, k-means++ candidates evaluated in one kernel call per step (each
//! call is a device round trip), mini-batch steps as on the host.

use super::lloyd::MlxLloyd;
use super::MlxKernel;
use crate::error::Result;
use crate::kernel::Kernel;
use crate::matrix::{MatRef, Points};
use crate::params::KMeansParams;
use crate::strategy::{potentials_after_pairwise, DensePass, Engine, HostLloyd, LloydStep};

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

    fn candidate_potentials(
        &self,
        points: Points<'_, f32>,
        row_weights: &[f64],
        closest: &[f32],
        candidates: MatRef<'_, f32>,
        distances: &mut [f32],
    ) -> Result<Vec<f64>> {
        potentials_after_pairwise(&self.kernel, points, row_weights, closest, candidates, distances)
    }
}
