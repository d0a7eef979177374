// Squared distance between two float32 rows of length `d`, by differences in float64: each
// lane of the warp sums a strided part, then the warp adds the parts (every lane gets it).
__device__ double warp_sq_distance(const float* a, const float* b, int d, int lane) {
    double acc = 0.0;
    for (int c = lane; c < d; c += 32) {
        const double diff = (double)a[c] - (double)b[c];
        acc += diff * diff;
    }
    for (int offset = 16; offset > 0; offset >>= 1) acc += __shfl_xor_sync(0xffffffffu, acc, offset);
    return acc;
}
