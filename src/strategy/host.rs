//! Lloyd steps on the host: the state (centroids, labels, distances) in host memory, each
//! iteration one pass of the kernel over the rows and the update on the host. How a pass
//! searches is a [`HostPass`]: every row against every centroid ([`DensePass`]), or only
//! the rows that bounds cannot settle (`super::bounds::BoundedPass`).

use super::{Assignment, LloydStep, StepReport};
use crate::error::Result;
use crate::kernel::{assign_accumulate_in_chunks, assign_in_chunks, move_rows, ClusterSums, KeptRows, Kernel, Move};
use crate::matrix::{weighted_sum, MatRef, Points};
use crate::monitor::KeepGoing;
use crate::scalar::Scalar;
use crate::update::{average, empty_clusters, relocate_empty_clusters, squared_shift, InertiaBySums};

/// How one host pass finds every row's nearest centroid.
pub trait HostPass<T: Scalar> {
    /// Labels and squared distances of every row for `centroids`, and the per-cluster sums.
    fn assign_sum(
        &mut self,
        kernel: &dyn Kernel<T>,
        points: Points<'_, T>,
        centroids: MatRef<'_, T>,
        labels: &mut [u32],
        distances: &mut [T],
        keep_going: KeepGoing<'_>,
    ) -> Result<ClusterSums>;

    /// Whether [`assign_measure`](HostPass::assign_measure) saves work: not where a pass's
    /// distances come with its sums.
    fn measures_apart(&self) -> bool {
        true
    }

    /// Labels of every row for `centroids`, as [`assign_sum`](HostPass::assign_sum) gives
    /// them, without the sums (its caller moves the rows whose labels changed) and with
    /// distances that may be only upper bounds within the kernel's error bound (its caller
    /// takes the inertia from the sums). `kept`: the rows as the kernel kept them, for its products.
    fn assign_measure(
        &mut self,
        kernel: &dyn Kernel<T>,
        points: Points<'_, T>,
        kept: Option<&KeptRows>,
        centroids: MatRef<'_, T>,
        labels: &mut [u32],
        distances: &mut [T],
        keep_going: KeepGoing<'_>,
    ) -> Result<()>;

    /// Labels only (the final assignment; its caller measures the distances): `distances`
    /// holds the pass's working values, as `assign_sum` left them and it leaves them.
    /// `kept`: the rows as the kernel kept them, for its products.
    #[allow(clippy::too_many_arguments)]
    fn assign(
        &mut self,
        kernel: &dyn Kernel<T>,
        points: Points<'_, T>,
        kept: Option<&KeptRows>,
        centroids: MatRef<'_, T>,
        labels: &mut [u32],
        distances: &mut [T],
        keep_going: KeepGoing<'_>,
    ) -> Result<()>;

    /// The centroids moved from `old` to `new` (`k × d` each) after a pass gave `labels`.
    fn moved(&mut self, _old: &[T], _new: &[T], _d: usize, _labels: &[u32]) {}

    /// An order of the rows the pass asks the kept rows to be laid out in (asked once: it
    /// lists rows in that order from its next pass on).
    fn layout(&mut self) -> Option<Vec<usize>> {
        None
    }

    /// Whether the kept rows were laid out in the order [`HostPass::layout`] last asked for.
    fn laid_out(&mut self, _done: bool) {}
}

/// A pass lent to a step (to read its state afterwards).
impl<T: Scalar, P: HostPass<T>> HostPass<T> for &mut P {
    fn assign_sum(
        &mut self,
        kernel: &dyn Kernel<T>,
        points: Points<'_, T>,
        centroids: MatRef<'_, T>,
        labels: &mut [u32],
        distances: &mut [T],
        keep_going: KeepGoing<'_>,
    ) -> Result<ClusterSums> {
        (**self).assign_sum(kernel, points, centroids, labels, distances, keep_going)
    }

    fn assign_measure(
        &mut self,
        kernel: &dyn Kernel<T>,
        points: Points<'_, T>,
        kept: Option<&KeptRows>,
        centroids: MatRef<'_, T>,
        labels: &mut [u32],
        distances: &mut [T],
        keep_going: KeepGoing<'_>,
    ) -> Result<()> {
        (**self).assign_measure(kernel, points, kept, centroids, labels, distances, keep_going)
    }

    fn measures_apart(&self) -> bool {
        (**self).measures_apart()
    }

    fn assign(
        &mut self,
        kernel: &dyn Kernel<T>,
        points: Points<'_, T>,
        kept: Option<&KeptRows>,
        centroids: MatRef<'_, T>,
        labels: &mut [u32],
        distances: &mut [T],
        keep_going: KeepGoing<'_>,
    ) -> Result<()> {
        (**self).assign(kernel, points, kept, centroids, labels, distances, keep_going)
    }

    fn moved(&mut self, old: &[T], new: &[T], d: usize, labels: &[u32]) {
        (**self).moved(old, new, d, labels)
    }

    fn layout(&mut self) -> Option<Vec<usize>> {
        (**self).layout()
    }

    fn laid_out(&mut self, done: bool) {
        (**self).laid_out(done)
    }
}

/// Every row searches every centroid.
pub struct DensePass;

impl<T: Scalar> HostPass<T> for DensePass {
    fn assign_sum(
        &mut self,
        kernel: &dyn Kernel<T>,
        points: Points<'_, T>,
        centroids: MatRef<'_, T>,
        labels: &mut [u32],
        distances: &mut [T],
        keep_going: KeepGoing<'_>,
    ) -> Result<ClusterSums> {
        assign_accumulate_in_chunks(kernel, points, centroids, labels, distances, keep_going)
    }

    fn assign_measure(
        &mut self,
        kernel: &dyn Kernel<T>,
        points: Points<'_, T>,
        kept: Option<&KeptRows>,
        centroids: MatRef<'_, T>,
        labels: &mut [u32],
        distances: &mut [T],
        keep_going: KeepGoing<'_>,
    ) -> Result<()> {
        let (x, x_sq_norms) = (points.x, points.x_sq_norms);
        assign_in_chunks(kernel, x, x_sq_norms, kept, centroids, labels, distances, keep_going)
    }

    fn assign(
        &mut self,
        kernel: &dyn Kernel<T>,
        points: Points<'_, T>,
        kept: Option<&KeptRows>,
        centroids: MatRef<'_, T>,
        labels: &mut [u32],
        distances: &mut [T],
        keep_going: KeepGoing<'_>,
    ) -> Result<()> {
        assign_in_chunks(kernel, points.x, points.x_sq_norms, kept, centroids, labels, distances, keep_going)
    }
}

/// Lloyd state in host memory, stepped by a kernel through a [`HostPass`].
pub struct HostLloyd<'s, T, P> {
    kernel: &'s dyn Kernel<T>,
    points: Points<'s, T>,
    centroids: Vec<T>,
    labels: Vec<u32>,
    labels_old: Vec<u32>,
    distances: Vec<T>,
    /// The sums of `labels_old` (before any empty-cluster repair), where the kernel lets a
    /// pass move the rows whose labels changed instead of summing every row again.
    kept: Option<ClusterSums>,
    /// The inertia of passes that keep their sums (they need not measure each row).
    by_sums: Option<InertiaBySums>,
    /// The rows as the kernel's products read them, kept at the first pass that keeps sums
    /// ([`Kernel::keep_rows`]; `Some(None)`: the kernel keeps none).
    kept_rows: Option<Option<KeptRows>>,
    /// Whether the first pass keeps the rows and sums already (a fit of one pass would keep
    /// a copy it never reads again).
    keep_first: bool,
    /// Whether `finish` may leave the distances unmeasured (the caller needs none).
    spare_distances: bool,
    spherical: bool,
    pass: P,
}

/// Moving more than this share of the rows costs more than summing all of them again: a
/// moved row is read out of order and changes two clusters' sums (on C, moving 27 % of the
/// rows took 80–94 ms an iteration against 92–98 ms for summing them all).
const MOVED_SHARE: f64 = 0.4;

impl<'s, T: Scalar, P: HostPass<T>> HostLloyd<'s, T, P> {
    pub fn new(kernel: &'s dyn Kernel<T>, points: Points<'s, T>, centroids: Vec<T>, spherical: bool, pass: P) -> Self {
        let n = points.rows();
        Self {
            kernel,
            points,
            centroids,
            labels: vec![0; n],
            labels_old: vec![u32::MAX; n],
            distances: vec![T::zero(); n],
            kept: None,
            by_sums: None,
            kept_rows: None,
            keep_first: false,
            spare_distances: false,
            spherical,
            pass,
        }
    }

    /// From the first pass on, keep the rows as the kernel reads them and the sums (for fits
    /// of more than one pass).
    pub fn keeping_from_first(self, keep_first: bool) -> Self {
        Self { keep_first, ..self }
    }

    /// Where the caller needs no per-row distances, `finish` may take the inertia from the
    /// kept sums and leave them empty (`KMeansParams::distances`).
    pub fn sparing_distances(self, spare_distances: bool) -> Self {
        Self { spare_distances, ..self }
    }

    /// Whether passes keep their sums (and move the rows whose labels changed): where the
    /// kernel lets them and the pass's distances do not come with its sums.
    fn keeps_sums(&self) -> bool {
        self.kernel.moves_rows() && self.pass.measures_apart()
    }

    /// The pass's labels, sums and inertia. Where the kernel lets it and the pass can, the
    /// sums are the last pass's with the rows whose labels changed moved (or, on the first
    /// pass or where many changed, summed afresh), and the inertia comes from them; else the
    /// pass makes its sums and measures every row's distance.
    fn assign_sum(&mut self, centroids: MatRef<'_, T>, keep_going: KeepGoing<'_>) -> Result<(ClusterSums, f64)> {
        let (kernel, points) = (self.kernel, self.points);
        let keeps = self.keeps_sums() && (self.keep_first || self.kept.is_some());
        let (labels, distances) = (&mut self.labels, &mut self.distances);
        if !keeps {
            let sums = self.pass.assign_sum(kernel, points, centroids, labels, distances, keep_going)?;
            return Ok((sums, weighted_sum(distances, points.weights)));
        }
        // The rows kept as the kernel reads them, so that no later pass rounds them again; the
        // same pass over the rows measures what the inertia by sums needs of them.
        if self.kept_rows.is_none() {
            let centre = InertiaBySums::centre(centroids.as_slice(), points.cols());
            let mut spreads = vec![0.0; points.rows()];
            let kept = kernel.keep_rows(points.x, Some((&centre, &mut spreads)));
            if kept.is_some() {
                self.by_sums = Some(InertiaBySums::of_spreads(&centre, spreads));
            }
            self.kept_rows = Some(kept);
        }
        let rows = self.kept_rows.as_ref().and_then(Option::as_ref);
        self.pass.assign_measure(kernel, points, rows, centroids, labels, distances, keep_going)?;
        if let Some(order) = self.pass.layout() {
            let done = match self.kept_rows.as_mut() {
                Some(Some(kept)) => kernel.lay_out_kept(kept, points.x, &order),
                _ => false,
            };
            self.pass.laid_out(done);
        }
        let sums = match self.kept.take() {
            None => kernel.accumulate(points.x, points.weights, labels, centroids.rows())?,
            Some(mut kept) => {
                let moves: Vec<Move> = (labels.iter().zip(&self.labels_old).enumerate())
                    .filter(|(_, (new, old))| new != old)
                    .map(|(row, (&new, &old))| Move { row, old, new })
                    .collect();
                if moves.len() as f64 > MOVED_SHARE * points.rows() as f64 {
                    kernel.accumulate(points.x, points.weights, labels, centroids.rows())?
                } else {
                    move_rows(points.x, points.weights, labels, &moves, &mut kept);
                    kept
                }
            }
        };
        let by_sums = self.by_sums.get_or_insert_with(|| InertiaBySums::new(points.x, centroids.as_slice()));
        let inertia = by_sums.inertia(&sums, centroids.as_slice(), labels, points.weights);
        Ok((sums, inertia))
    }
}

/// The inertia by sums is taken for the fit's result only where it is at least this share
/// of the rows' spread about the centre it is measured from: its rounding error is a few
/// units in the last place of that spread, so it then stays within about 1e-10 of the
/// inertia; tighter fits (rows on their centroids) measure every row.
const SUMS_INERTIA_SHARE: f64 = 1e-6;

impl<T: Scalar, P: HostPass<T>> HostLloyd<'_, T, P> {
    /// The final inertia from the kept sums, where the caller spares the distances, the last
    /// pass's labels are the final ones (so the sums are theirs) and the inertia is well
    /// conditioned: no pass over the rows.
    fn inertia_by_sums(&self, labels_current: bool) -> Option<f64> {
        let (sums, by_sums) = (self.kept.as_ref()?, self.by_sums.as_ref()?);
        if !(self.spare_distances && labels_current) {
            return None;
        }
        let inertia = by_sums.inertia(sums, &self.centroids, &self.labels, self.points.weights);
        (inertia >= SUMS_INERTIA_SHARE * by_sums.spread(self.points.weights)).then_some(inertia)
    }
}

impl<T: Scalar, P: HostPass<T>> LloydStep<T> for HostLloyd<'_, T, P> {
    fn step(&mut self, keep_going: KeepGoing<'_>) -> Result<StepReport> {
        let (x, d) = (self.points.x, self.points.cols());
        let centroids = std::mem::take(&mut self.centroids);
        let current = MatRef::new(&centroids, centroids.len() / d, d)?;
        let pass = self.assign_sum(current, keep_going);
        self.centroids = centroids;
        let (sums, inertia) = pass?;
        // The repair changes the sums but not the labels: the kept sums stay those of the labels.
        let repaired = (!empty_clusters(&sums).is_empty()).then(|| {
            let mut repaired = sums.clone();
            // Passes over the rows the kernel kept bound each row's distance from above (exact
            // where they measured it); others may give the expanded form's, which can lie below.
            let upper = self.kept_rows.as_ref().and_then(Option::as_ref).map(|_| &self.distances[..]);
            relocate_empty_clusters(x, self.points.weights, &self.labels, &self.centroids, upper, &mut repaired);
            repaired
        });
        let updated = average(repaired.as_ref().unwrap_or(&sums), &self.centroids, d, self.spherical);
        if self.keeps_sums() {
            self.kept = Some(sums);
        }
        let center_shift = squared_shift(&updated, &self.centroids);
        self.pass.moved(&self.centroids, &updated, d, &self.labels);
        self.centroids = updated;
        let labels_changed = self.labels != self.labels_old;
        self.labels_old.copy_from_slice(&self.labels);
        Ok(StepReport { inertia, center_shift, labels_changed })
    }

    fn finish(mut self: Box<Self>, labels_current: bool, keep_going: KeepGoing<'_>) -> Result<Assignment<T>> {
        let d = self.points.cols();
        let centroids = MatRef::new(&self.centroids, self.centroids.len() / d, d)?;
        if !labels_current {
            // One more assignment so the labels match the returned centroids.
            let kept = self.kept_rows.as_ref().and_then(Option::as_ref);
            let (labels, distances) = (&mut self.labels, &mut self.distances);
            self.pass.assign(self.kernel, self.points, kept, centroids, labels, distances, keep_going)?;
        }
        if let Some(inertia) = self.inertia_by_sums(labels_current) {
            log::debug!("final inertia from the cluster sums: no pass for the distances");
            return Ok(Assignment { centroids: self.centroids, labels: self.labels, distances: Vec::new(), inertia });
        }
        let (distances, inertia) =
            self.kernel.labelled_sq_distances(self.points.x, self.points.weights, centroids, &self.labels)?;
        Ok(Assignment { centroids: self.centroids, labels: self.labels, distances, inertia })
    }
}
