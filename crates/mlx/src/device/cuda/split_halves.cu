// Body of the `split_halves` kernel (header: `fused_assign.cuh`): rows (or centroids) as the
// fused kernel takes them. Each row is scaled by the power of two that brings its largest
// possible coordinate (its norm) under 2^14, then each value is split into a float16 high
// part and a float16 rest, which together hold 22 bits of it. Rows are padded with zeros to
// DP (a multiple of the kernel's 32 features per step). `res` bounds each row's distance from
// its high part (unscaled): what one float16 product of the high parts leaves out. One warp
// per row, as many rows at once as there are warps.
//   inputs:  x (n × D, float32), sq (n: squared norms, float32)
//   outputs: hi, lo (n × DP, uint16: float16 bits), res (n, float32: ≥ ‖x − hi/scale‖)
//   template: D (features), DP (padded features)
    const long long n = x_shape[0];
    const int lane = threadIdx.x & 31;
    const long long warps = (long long)gridDim.x * blockDim.x / 32;
    for (long long row = ((long long)blockIdx.x * blockDim.x + threadIdx.x) / 32; row < n; row += warps) {
        const int e = mk_scale_exponent(sq[row]);
        const float s = mk_pow2(e);
        const float* xr = x + row * D;
        unsigned int* hr = reinterpret_cast<unsigned int*>(hi) + row * (DP / 2);
        unsigned int* lr = reinterpret_cast<unsigned int*>(lo) + row * (DP / 2);
        // The rest `v − hi` is exact in float32; its squares are summed in float64.
        double rest = 0.0;
        for (int p = lane; p < DP / 2; p += 32) {
            const int c = 2 * p;
            const float v0 = c < D ? xr[c] * s : 0.0f, v1 = c + 1 < D ? xr[c + 1] * s : 0.0f;
            unsigned short h0, l0, h1, l1;
            mk_split(v0, h0, l0);
            mk_split(v1, h1, l1);
            hr[p] = h0 | ((unsigned int)h1 << 16);
            lr[p] = l0 | ((unsigned int)l1 << 16);
            const double r0 = (double)(v0 - mk_from_half(h0)), r1 = (double)(v1 - mk_from_half(h1));
            rest += r0 * r0 + r1 * r1;
        }
        for (int offset = 16; offset > 0; offset >>= 1) rest += __shfl_xor_sync(0xffffffffu, rest, offset);
        if (lane == 0) {
            // float64 sums of at most 2^13 squares err far below the margin; unscaling by a
            // power of two is exact; rounded up so that it stays a bound.
            const double norm = sqrt(rest) * (1.0 + 0x1p-30) * (double)mk_pow2(-e);
            res[row] = __double2float_ru(norm) + 0x1p-126f;
        }
    }
