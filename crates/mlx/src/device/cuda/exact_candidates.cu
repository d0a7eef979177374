// Body of the `exact_candidates` kernel (header: `warp_sq_distance.cuh`), after
// `fused_assign`: each row's label among its candidates by exact squared distances (float64,
// by differences; the lower index on ties, as on the host), and that distance. A row with
// more candidates than listed (`counts` C + 1) is decided among all centroids. One warp per row, as
// many rows at once as there are warps (latency is hidden by their number).
//   inputs:  x (n × D, float32), centroids (K × D, float32), candidates (n × C, uint32),
//            counts (n, uint32)
//   outputs: labels (n, uint32), distances (n, float32)
//   template: K (centroids), D (features), C (candidates listed at most)
    const long long n = x_shape[0];
    const int lane = threadIdx.x & 31;
    const long long warps = (long long)gridDim.x * blockDim.x / 32;
    for (long long r = ((long long)blockIdx.x * blockDim.x + threadIdx.x) / 32; r < n; r += warps) {
        const float* xr = x + r * D;
        const unsigned int count = counts[r];
        const bool listed = count <= (unsigned int)C;
        const int total = listed ? (int)count : K;
        double best = INFINITY;
        unsigned int label = 0;
        for (int q = 0; q < total; ++q) {
            const unsigned int j = listed ? candidates[r * C + q] : (unsigned int)q;
            const double exact = warp_sq_distance(xr, centroids + (long long)j * D, D, lane);
            if (exact < best || (exact == best && j < label)) {
                best = exact;
                label = j;
            }
        }
        if (lane == 0) {
            labels[r] = label;
            distances[r] = (float)best;
        }
    }
