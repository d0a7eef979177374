// Body of the `row_argmin` kernel (MLX generates the signature; `warp_sq_distance.cuh` is
// its header). One warp per row of the
// `n × K` partial distances `‖c‖² − 2x·c`: each lane scans a strided part, then the warp
// reduces; ties go to the lower centroid index, as on the host. The partial distances carry
// the GEMM's error (up to TOL_E6 millionths of ‖x‖² + 2 max‖c‖²), so when another centroid
// comes that close to the best, the row is decided again from exact float64 distances
// `‖x − c‖²` to the centroids in that band. Writes the label and the exact squared distance
// to it (float64, rounded once), which the expanded form would blur by cancellation.
//   inputs:  dist (n × K), xnorm (n), x (n × D), centroids (K × D), cmax (1: max ‖c‖²),
//            all float32
//   outputs: labels (n, uint32), distances (n, float32)
//   template: K (centroids), D (features), TOL_E6 (error bound, in millionths)
    const long long gid = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    const long long row = gid / 32;
    const int lane = threadIdx.x & 31;
    const long long n = dist_shape[0];
    if (row >= n) return;  // the whole warp shares `row`
    const float* p = dist + row * K;
    float best = INFINITY;
    unsigned int idx = 0;
    for (int j = lane; j < K; j += 32) {
        const float v = p[j];
        if (v < best) { best = v; idx = j; }
    }
    for (int offset = 16; offset > 0; offset >>= 1) {
        const float other = __shfl_xor_sync(0xffffffffu, best, offset);
        const unsigned int other_idx = __shfl_xor_sync(0xffffffffu, idx, offset);
        if (other < best || (other == best && other_idx < idx)) { best = other; idx = other_idx; }
    }
    const float limit = best + (float)TOL_E6 * 1e-6f * (xnorm[row] + 2.0f * cmax[0]);
    bool near = false;
    for (int j = lane; j < K; j += 32) near |= (p[j] <= limit && (unsigned int)j != idx);
    const float* xr = x + row * D;
    double best_exact = INFINITY;
    if (__any_sync(0xffffffffu, near)) {
        for (int j = 0; j < K; ++j) {
            if (p[j] > limit) continue;  // the same for every lane
            const double exact = warp_sq_distance(xr, centroids + (long long)j * D, D, lane);
            if (exact < best_exact) { best_exact = exact; idx = j; }
        }
    } else {
        best_exact = warp_sq_distance(xr, centroids + (long long)idx * D, D, lane);
    }
    if (lane == 0) {
        labels[row] = idx;
        distances[row] = (float)best_exact;
    }
