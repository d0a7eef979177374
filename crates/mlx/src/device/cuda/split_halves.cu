// Body of the `split_halves` kernel (header: `fused_assign.cuh`): rows (or centroids) as the
// fused kernel takes them. Each row is scaled by the power of two that brings its largest
// possible coordinate (its norm) under 2^14, then each value is split into a float16 high
// part and a float16 rest, which together hold 22 bits of it. Rows are padded with zeros to
// DP (a multiple of the kernel's 32 features per step).
//   inputs:  x (n × D, float32), sq (n: squared norms, float32)
//   outputs: hi, lo (n × DP, uint16: float16 bits)
//   template: D (features), DP (padded features)
    const long long n = x_shape[0];
    const long long pairs = n * (DP / 2);
    const long long stride = (long long)gridDim.x * blockDim.x;
    for (long long p = (long long)blockIdx.x * blockDim.x + threadIdx.x; p < pairs; p += stride) {
        const long long row = p / (DP / 2);
        const int c = (int)(p - row * (DP / 2)) * 2;
        const float s = mk_pow2(mk_scale_exponent(sq[row]));
        const float* xr = x + row * D;
        const float v0 = c < D ? xr[c] * s : 0.0f, v1 = c + 1 < D ? xr[c + 1] * s : 0.0f;
        unsigned short h0, l0, h1, l1;
        mk_split(v0, h0, l0);
        mk_split(v1, h1, l1);
        reinterpret_cast<unsigned int*>(hi)[p] = h0 | ((unsigned int)h1 << 16);
        reinterpret_cast<unsigned int*>(lo)[p] = l0 | ((unsigned int)l1 << 16);
    }
