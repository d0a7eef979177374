// Body of the `settle_flagged` kernel (header: `warp_sq_distance.cuh`), after
// `fused_assign`: rows it flagged (their two best centroids within its error bound) are
// decided from exact float64 distances to every centroid, by differences, lowest index on
// ties as on the host; other rows keep their label and distance. One warp per 32 rows; each
// flagged row is taken by the whole warp.
//   inputs:  x (n × D), centroids (K × D), labels_in (n, uint32), distances_in (n),
//            flags (n, uint32)
//   outputs: labels (n, uint32), distances (n, float32)
//   template: K (centroids), D (features)
    const long long n = x_shape[0];
    const long long row = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    const int lane = threadIdx.x & 31;
    const bool flagged = row < n && flags[row] != 0u;
    if (row < n && !flagged) {
        labels[row] = labels_in[row];
        distances[row] = distances_in[row];
    }
    unsigned int pending = __ballot_sync(0xffffffffu, flagged);
    while (pending) {
        const int src = __ffs(pending) - 1;
        pending &= pending - 1;
        const long long r = row - lane + src;
        const float* xr = x + r * D;
        double best = INFINITY;
        unsigned int idx = 0;
        for (int j = 0; j < K; ++j) {
            const double exact = warp_sq_distance(xr, centroids + (long long)j * D, D, lane);
            if (exact < best) {
                best = exact;
                idx = j;
            }
        }
        if (lane == 0) {
            labels[r] = idx;
            distances[r] = (float)best;
        }
    }
