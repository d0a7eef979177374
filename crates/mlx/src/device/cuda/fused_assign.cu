// Body of the `fused_assign` kernel (headers: `fused_assign.cuh`, `warp_sq_distance.cuh`):
// each row's nearest centroid without the `n × K` distance matrix. A block of 256 threads
// takes 128 rows and streams all centroids past them in tiles of 128, 32 features at a time,
// through the tensor cores; each thread keeps, for its rows, the three best partial distances
// `‖c‖² − 2x·c` and the indices of the first two, in registers. Float16 products would err by
// 2^-10, which would leave many labels undecided, so every value is split into two float16
// parts (rows and centroids first scaled by powers of two into float16's range) and
// `x·c = xh·ch + xh·cl + xl·ch` is three products accumulated in float32 (error ~2^-20).
// Where the second best lies within the bound of that error from the best, but the third
// does not, the row is decided between the two by exact distances (differences, float64);
// where the third does too, the row is flagged, and `settle_flagged` decides it from exact
// distances to every centroid. Each other row's squared distance is recomputed exactly, by
// differences to its centroid.
//   inputs:  x (n × D), xnorm (n: ‖x‖²), centroids (K × D), cnorm (K: ‖c‖²), cmax (1: max
//            ‖c‖²), all float32
//   outputs: labels (n, uint32), distances (n, float32; 0 where flagged), flags (n, uint32)
//   template: K (centroids), D (features)
    constexpr int BM = 128, BN = 128, BK = 32, LD = BK + 8;  // LD: padded row, in halves
    const long long n = x_shape[0];
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const int wm = warp >> 2, wn = warp & 3;  // 2 × 4 warps of 64 rows × 32 centroids
    const int g = lane >> 2, t = lane & 3;
    const long long row0 = (long long)blockIdx.x * BM;

    __shared__ __align__(16) unsigned short a_hi[BM * LD];
    __shared__ __align__(16) unsigned short a_lo[BM * LD];
    __shared__ __align__(16) unsigned short b_hi[BN * LD];
    __shared__ __align__(16) unsigned short b_lo[BN * LD];
    __shared__ float tile_cnorm[BN], tile_cinv[BN], row_scale[BM], row_inv[BM];

    if (tid < BM) {
        const long long r = row0 + tid;
        const int e = mk_scale_exponent(r < n ? xnorm[r] : 0.0f);
        row_scale[tid] = mk_pow2(e);
        row_inv[tid] = mk_pow2(-e);
    }
    __syncthreads();

    // Each thread's 8 rows: slot mi * 2 + h is local row wm*64 + mi*16 + h*8 + g.
    float best[8], second[8], third[8], inv_x[8];
    unsigned int best_idx[8], second_idx[8];
#pragma unroll
    for (int s = 0; s < 8; ++s) {
        best[s] = INFINITY;
        second[s] = INFINITY;
        third[s] = INFINITY;
        best_idx[s] = 0;
        second_idx[s] = 0;
        inv_x[s] = row_inv[wm * 64 + (s >> 1) * 16 + (s & 1) * 8 + g];
    }

    // Global -> registers (the next tile, while this one is multiplied) -> shared memory.
    constexpr int KT = (D + BK - 1) / BK, CT = (K + BN - 1) / BN;
    float4 next_a[4], next_b[4];
    auto fetch = [&](const float* src, long long first, long long rows, int k0, float4* out) {
#pragma unroll
        for (int i = 0; i < 4; ++i) {
            const int f = tid + 256 * i, r = f >> 3, c = k0 + (f & 7) * 4;
            const long long at = first + r;
            float4 v = make_float4(0.f, 0.f, 0.f, 0.f);
            if (at < rows) {
                const float* p = src + at * D + c;
                if (D % 4 == 0) {
                    if (c < D) v = *reinterpret_cast<const float4*>(p);
                } else {
                    if (c < D) v.x = p[0];
                    if (c + 1 < D) v.y = p[1];
                    if (c + 2 < D) v.z = p[2];
                    if (c + 3 < D) v.w = p[3];
                }
            }
            out[i] = v;
        }
    };
    auto store = [&](const float4* in, const float* scale, unsigned short* hi, unsigned short* lo) {
#pragma unroll
        for (int i = 0; i < 4; ++i) {
            const int f = tid + 256 * i, r = f >> 3, c = (f & 7) * 4;
            const float s = scale[r];
            unsigned short h[4], l[4];
            mk_split(in[i].x * s, h[0], l[0]);
            mk_split(in[i].y * s, h[1], l[1]);
            mk_split(in[i].z * s, h[2], l[2]);
            mk_split(in[i].w * s, h[3], l[3]);
            *reinterpret_cast<uint2*>(hi + r * LD + c) =
                make_uint2(h[0] | ((unsigned int)h[1] << 16), h[2] | ((unsigned int)h[3] << 16));
            *reinterpret_cast<uint2*>(lo + r * LD + c) =
                make_uint2(l[0] | ((unsigned int)l[1] << 16), l[2] | ((unsigned int)l[3] << 16));
        }
    };
    __shared__ float tile_cscale[BN];

    float acc[4][4][4];
    fetch(x, row0, n, 0, next_a);
    fetch(centroids, 0, K, 0, next_b);
    for (int tile = 0; tile < KT * CT; ++tile) {
        const int ct = tile / KT, kt = tile - ct * KT;
        __syncthreads();  // the last tile's products and epilogue are done with shared memory
        if (kt == 0) {
            if (tid < BN) {
                const int j = ct * BN + tid;
                const float cn = j < K ? cnorm[j] : 0.0f;
                const int e = mk_scale_exponent(cn);
                tile_cnorm[tid] = cn;
                tile_cscale[tid] = mk_pow2(e);
                tile_cinv[tid] = mk_pow2(-e);
            }
            __syncthreads();
        }
        store(next_a, row_scale, a_hi, a_lo);
        store(next_b, tile_cscale, b_hi, b_lo);
        __syncthreads();
        if (tile + 1 < KT * CT) {
            const int nct = (tile + 1) / KT, nkt = tile + 1 - nct * KT;
            fetch(x, row0, n, nkt * BK, next_a);
            fetch(centroids, (long long)nct * BN, K, nkt * BK, next_b);
        }
        if (kt == 0) {
#pragma unroll
            for (int mi = 0; mi < 4; ++mi)
#pragma unroll
                for (int ni = 0; ni < 4; ++ni)
#pragma unroll
                    for (int q = 0; q < 4; ++q) acc[mi][ni][q] = 0.0f;
        }
#pragma unroll
        for (int ks = 0; ks < BK; ks += 16) {
            if (kt * BK + ks >= D) break;
            unsigned int ah[4][4], al[4][4], bh[4][2], bl[4][2];
#pragma unroll
            for (int mi = 0; mi < 4; ++mi) {
                const int r = wm * 64 + mi * 16 + g;
                const int o0 = r * LD + ks + 2 * t, o1 = (r + 8) * LD + ks + 2 * t;
                ah[mi][0] = *reinterpret_cast<const unsigned int*>(a_hi + o0);
                ah[mi][1] = *reinterpret_cast<const unsigned int*>(a_hi + o1);
                ah[mi][2] = *reinterpret_cast<const unsigned int*>(a_hi + o0 + 8);
                ah[mi][3] = *reinterpret_cast<const unsigned int*>(a_hi + o1 + 8);
                al[mi][0] = *reinterpret_cast<const unsigned int*>(a_lo + o0);
                al[mi][1] = *reinterpret_cast<const unsigned int*>(a_lo + o1);
                al[mi][2] = *reinterpret_cast<const unsigned int*>(a_lo + o0 + 8);
                al[mi][3] = *reinterpret_cast<const unsigned int*>(a_lo + o1 + 8);
            }
#pragma unroll
            for (int ni = 0; ni < 4; ++ni) {
                const int o = (wn * 32 + ni * 8 + g) * LD + ks + 2 * t;
                bh[ni][0] = *reinterpret_cast<const unsigned int*>(b_hi + o);
                bh[ni][1] = *reinterpret_cast<const unsigned int*>(b_hi + o + 8);
                bl[ni][0] = *reinterpret_cast<const unsigned int*>(b_lo + o);
                bl[ni][1] = *reinterpret_cast<const unsigned int*>(b_lo + o + 8);
            }
#pragma unroll
            for (int mi = 0; mi < 4; ++mi)
#pragma unroll
                for (int ni = 0; ni < 4; ++ni) {
                    mk_mma(acc[mi][ni], al[mi], bh[ni]);
                    mk_mma(acc[mi][ni], ah[mi], bl[ni]);
                    mk_mma(acc[mi][ni], ah[mi], bh[ni]);
                }
        }
        if (kt == KT - 1) {
            // Epilogue of a centroid tile: partial distances into each row's best two.
#pragma unroll
            for (int ni = 0; ni < 4; ++ni)
#pragma unroll
                for (int q = 0; q < 2; ++q) {
                    const int local = wn * 32 + ni * 8 + 2 * t + q;
                    const unsigned int j = (unsigned int)(ct * BN + local);
                    if (j >= (unsigned int)K) continue;
                    const float cn = tile_cnorm[local], ci = tile_cinv[local];
#pragma unroll
                    for (int mi = 0; mi < 4; ++mi)
#pragma unroll
                        for (int h = 0; h < 2; ++h) {
                            const int s = mi * 2 + h;
                            const float v = cn - 2.0f * (acc[mi][ni][h * 2 + q] * inv_x[s] * ci);
                            if (v < third[s]) mk_insert(best[s], best_idx[s], second[s], second_idx[s], third[s], v, j);
                        }
                }
        }
    }

    // The four lanes of a quad hold the same rows (other centroids): merge them.
#pragma unroll
    for (int s = 0; s < 8; ++s)
#pragma unroll
        for (int off = 1; off < 4; off <<= 1) {
            const float o1 = __shfl_xor_sync(0xffffffffu, best[s], off);
            const unsigned int oi1 = __shfl_xor_sync(0xffffffffu, best_idx[s], off);
            const float o2 = __shfl_xor_sync(0xffffffffu, second[s], off);
            const unsigned int oi2 = __shfl_xor_sync(0xffffffffu, second_idx[s], off);
            const float o3 = __shfl_xor_sync(0xffffffffu, third[s], off);
            mk_insert(best[s], best_idx[s], second[s], second_idx[s], third[s], o1, oi1);
            mk_insert(best[s], best_idx[s], second[s], second_idx[s], third[s], o2, oi2);
            third[s] = fminf(third[s], o3);  // o3 ≥ o2, which is placed already
        }
    // Then the four warps that share rows, through shared memory (the tiles are done).
    __syncthreads();
    float* red = reinterpret_cast<float*>(a_hi);                     // [4][BM][3]
    unsigned int* red_idx = reinterpret_cast<unsigned int*>(b_hi);  // [4][BM][2]
    if (t == 0) {
#pragma unroll
        for (int s = 0; s < 8; ++s) {
            const int r = wn * BM + wm * 64 + (s >> 1) * 16 + (s & 1) * 8 + g;
            red[r * 3] = best[s];
            red[r * 3 + 1] = second[s];
            red[r * 3 + 2] = third[s];
            red_idx[r * 2] = best_idx[s];
            red_idx[r * 2 + 1] = second_idx[s];
        }
    }
    __syncthreads();
    unsigned int* row_label = reinterpret_cast<unsigned int*>(b_lo);  // [BM][2]: the two best
    unsigned int* row_state = reinterpret_cast<unsigned int*>(a_lo);  // [BM]
    if (tid < BM) {
        float b1 = red[tid * 3], b2 = red[tid * 3 + 1], b3 = red[tid * 3 + 2];
        unsigned int i1 = red_idx[tid * 2], i2 = red_idx[tid * 2 + 1];
        for (int w = 1; w < 4; ++w) {
            const int o = w * BM + tid;
            mk_insert(b1, i1, b2, i2, b3, red[o * 3], red_idx[o * 2]);
            mk_insert(b1, i1, b2, i2, b3, red[o * 3 + 1], red_idx[o * 2 + 1]);
            b3 = fminf(b3, red[o * 3 + 2]);
        }
        const long long r = row0 + tid;
        // The error of a partial distance: 2·eps·‖x‖‖c‖ from the split products and their
        // float32 sums (3·⌈D/16⌉ + 8 steps of at most 2^-22 each, which covers the split's
        // own 3·2^-22), (D + 8)·2^-24·(‖c‖² + 2‖x‖‖c‖) from the norms and the epilogue, and
        // what vectors too small for the scaled range can lose. Either of two values may err
        // so: two centroids closer than twice that are not told apart.
        const float xm = r < n ? sqrtf(xnorm[r]) : 0.0f, cm = sqrtf(cmax[0]);
        constexpr float eps = (3.0f * ((D + 15) / 16) + 8.0f) * 0x1p-22f;
        constexpr float norms = (D + 8) * 0x1p-24f;
        const float bound = 2.0f * eps * xm * cm + norms * (cm * cm + 2.0f * xm * cm) + 0x1p-58f * (xm + cm);
        const float band = 2.05f * bound;
        // 0: decided; 1: between the two best; 2: flagged (a third centroid is as near).
        const unsigned int state = (b2 - b1 > band) ? 0u : (b3 - b1 > band) ? 1u : 2u;
        row_label[tid * 2] = i1;
        row_label[tid * 2 + 1] = i2;
        row_state[tid] = state;
        if (r < n) flags[r] = state == 2u ? 1u : 0u;
    }
    __syncthreads();
    // Exact squared distances (differences, float64) to the chosen centroid, or to both
    // candidates where the row is between two: each warp takes 16 rows.
    for (int i = 0; i < BM / 8; ++i) {
        const int local = warp * (BM / 8) + i;
        const long long r = row0 + local;
        if (r >= n) break;  // the same for the whole warp
        const unsigned int state = row_state[local];
        unsigned int label = row_label[local * 2];
        double exact = 0.0;
        if (state != 2u) exact = warp_sq_distance(x + r * D, centroids + (long long)label * D, D, lane);
        if (state == 1u) {
            const unsigned int other = row_label[local * 2 + 1];
            const double e2 = warp_sq_distance(x + r * D, centroids + (long long)other * D, D, lane);
            if (e2 < exact || (e2 == exact && other < label)) {
                exact = e2;
                label = other;
            }
        }
        if (lane == 0) {
            labels[r] = label;
            distances[r] = (float)exact;
        }
    }
