// Body of the `cluster_means` kernel: the second pass after `chunk_sums`. Block j finds
// cluster j's run in `sorted` by binary search, adds its chunks' partial rows in chunk order
// (in float64), and writes the sums, the weight total and the mean (sum / weight, rounded
// once to float32; zero for an empty cluster).
//   inputs:  hi, lo ((n/R + k + 1) × (D + 1), float32), sorted (n, uint32)
//   outputs: sums (k × D), weights (k), means (k × D), all float32
//   template: D (features), R (rows per chunk)
    const unsigned int j = blockIdx.x;
    const long long n = sorted_shape[0];
    long long low = 0, high = n;
    while (low < high) { const long long mid = (low + high) >> 1; if (sorted[mid] < j) low = mid + 1; else high = mid; }
    const long long start = low;
    high = n;
    while (low < high) { const long long mid = (low + high) >> 1; if (sorted[mid] <= j) low = mid + 1; else high = mid; }
    const long long end = low;
    const long long first = start / R, last = end > start ? (end - 1) / R : first - 1;
    double weight = 0.0;
    for (long long b = first; b <= last; ++b) {
        const long long at = (b + j) * (D + 1) + D;
        weight += (double)hi[at] + (double)lo[at];
    }
    if (threadIdx.x == 0) weights[j] = (float)weight;
    for (int c = threadIdx.x; c < D; c += blockDim.x) {
        double acc = 0.0;
        for (long long b = first; b <= last; ++b) {
            const long long at = (b + j) * (D + 1) + c;
            acc += (double)hi[at] + (double)lo[at];
        }
        sums[(long long)j * D + c] = (float)acc;
        means[(long long)j * D + c] = weight > 0.0 ? (float)(acc / weight) : 0.0f;
    }
