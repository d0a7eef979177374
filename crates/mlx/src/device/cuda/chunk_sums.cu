// Body of the `chunk_sums` kernel: the first of two passes that sum rows per cluster in a
// fixed order (so a fit is reproducible) without one-hot matrices or atomics. Rows are
// visited in label order (`order`, with `sorted` their labels). Block b takes sorted
// positions [b·R, (b+1)·R) and, for each label j among them, writes the weighted sum of its
// rows (accumulated in float64) as a float pair (hi + lo) to partial row b + j. That index is
// unique: a later chunk never holds a smaller label. Column D holds the sum of weights.
//   inputs:  x (n × D, float32), w (n, float32), order (n, uint32), sorted (n, uint32)
//   outputs: hi, lo ((n/R + k + 1) × (D + 1), float32)
//   template: D (features), R (rows per chunk)
    const long long n = sorted_shape[0];
    const long long r0 = (long long)blockIdx.x * R;
    const long long r1 = min(r0 + (long long)R, n);
    if (r0 >= n) return;
    for (int c0 = 0; c0 < D; c0 += blockDim.x) {
        const int c = c0 + threadIdx.x;
        const bool column = c < D;
        const bool weight_column = c0 == 0 && threadIdx.x == 0;
        unsigned int current = sorted[r0];
        double acc = 0.0, weight = 0.0;
        for (long long r = r0; r <= r1; ++r) {
            const unsigned int label = r < r1 ? sorted[r] : 0xffffffffu;
            if (label != current) {
                const long long base = ((long long)blockIdx.x + current) * (D + 1);
                if (column) {
                    const float h = (float)acc;
                    hi[base + c] = h;
                    lo[base + c] = (float)(acc - (double)h);
                }
                if (weight_column) {
                    const float h = (float)weight;
                    hi[base + D] = h;
                    lo[base + D] = (float)(weight - (double)h);
                }
                if (r == r1) break;
                acc = 0.0;
                weight = 0.0;
                current = label;
            }
            const unsigned int i = order[r];
            const double wi = (double)w[i];
            if (column) acc += wi * (double)x[(long long)i * D + c];
            weight += wi;
        }
    }
