// Body of the `fused_assign` kernel (headers: `fused_assign.cuh`, `warp_sq_distance.cuh`):
// each row's nearest centroid without the `n × K` distance matrix. A block of 256 threads
// takes 128 rows and streams all centroids past them in tiles of 128 (copied asynchronously
// into shared memory, three steps in flight; with up to 192 features the rows stay in shared
// memory, else they stream too), through the tensor cores; each thread keeps, for its rows, the four best partial distances `‖c‖² − 2x·c` and
// the indices of the first three, in registers. Float16 products alone would err by 2^-10,
// which would leave many labels undecided, so rows and centroids come split in two float16
// parts (`split_halves`, after scaling by powers of two into float16's range), and
// `x·c = xh·ch + xh·cl + xl·ch` is three products accumulated in float32 (error ~2^-20).
// It writes each row's candidates: the best, and the others within the bound of that error
// from it (up to three; `counts` 4 where a fourth lies within it too). `exact_candidates`
// then decides among them by exact distances.
//   inputs:  xnorm (n: ‖x‖²), xh, xl (n × DP, float16 bits), cnorm (K: ‖c‖²), ch, cl (K × DP,
//            float16 bits), cmax (1: max ‖c‖²)
//   outputs: candidates (n × 3, uint32), counts (n, uint32: 1 to 3, or 4)
//   template: K (centroids), D (features), DP (features padded to a multiple of 32)
//   dynamic shared memory: the rows (2 × 128 × (DP + 8) halves) and 3 steps of 2 tiles of
//   128 × 72 halves, at most 212992 bytes; or 3 steps of 4 tiles of 128 × 40 halves
    constexpr int BM = 128, BN = 128, STAGES = 3;
    // With few features the block's rows stay in shared memory for the whole kernel, and only
    // centroids stream past them, 64 features a step; otherwise both stream, 32 a step.
    constexpr bool RESIDENT = DP <= 192;
    constexpr int BK = RESIDENT ? 64 : 32, LDB = BK + 8, LDA = RESIDENT ? DP + 8 : BK + 8;
    constexpr int KT = (DP + BK - 1) / BK, CT = (K + BN - 1) / BN, TILES = KT * CT;
    constexpr int A_TILE = BM * LDA, B_TILE = BN * LDB;  // halves, each of hi and lo
    constexpr int A_FIXED = RESIDENT ? 2 * A_TILE : 0;
    constexpr int STAGE = RESIDENT ? 2 * B_TILE : 2 * A_TILE + 2 * B_TILE;
    extern __shared__ __align__(16) unsigned short smem[];
    const long long n = xnorm_shape[0];
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const int wm = warp >> 2, wn = warp & 3;  // 2 × 4 warps of 64 rows × 32 centroids
    const int g = lane >> 2, t = lane & 3;
    const long long row0 = (long long)blockIdx.x * BM;

    // Copies features [k0, k0 + width) of the block's rows into `a` (hi, then lo A_TILE on).
    auto copy_rows = [&](unsigned short* a, int k0, int width) {
        const int chunks = width / 8;
        for (int i = tid; i < BM * chunks; i += 256) {
            const int r = i / chunks, c = (i - r * chunks) * 8;
            const long long row = row0 + r;
            const bool ok = row < n;
            const long long at = (ok ? row : 0) * DP + k0 + c;
            mk_cp_async16(a + r * LDA + c, xh + at, ok);
            mk_cp_async16(a + A_TILE + r * LDA + c, xl + at, ok);
        }
    };
    // Squared norms of a centroid tile, copied with its first step; three buffers, as the
    // epilogue of tile ct may run in the step that copies tile ct + 2.
    __shared__ __align__(16) float tile_cnorm[3][BN];
    // Copies step `tile` (centroid tile ct, features kt·BK on) into its stage, or commits an
    // empty group past the end (so that group counts stay uniform).
    auto issue = [&](int tile) {
        if (tile < TILES) {
            const int ct = tile / KT, kt = tile - ct * KT;
            if (kt == 0 && tid < BN / 4) {
                const int j = ct * BN + tid * 4;
                const int bytes = j < K ? 4 * min(4, K - j) : 0;
                const unsigned int to = (unsigned int)__cvta_generic_to_shared(&tile_cnorm[ct % 3][tid * 4]);
                asm volatile("cp.async.ca.shared.global [%0], [%1], 16, %2;\n" ::"r"(to), "l"(cnorm + (j < K ? j : 0)), "r"(bytes) : "memory");
            }
            unsigned short* stage = smem + A_FIXED + (tile % STAGES) * STAGE;
            unsigned short* b = stage + (RESIDENT ? 0 : 2 * A_TILE);
            constexpr int CHUNKS = BK / 8;
            for (int i = tid; i < BN * CHUNKS; i += 256) {
                const int r = i / CHUNKS, c = (i - r * CHUNKS) * 8;
                if (kt * BK + c >= DP) continue;
                const long long j = (long long)ct * BN + r;
                const bool ok = j < K;
                const long long at = (ok ? j : 0) * DP + kt * BK + c;
                mk_cp_async16(b + r * LDB + c, ch + at, ok);
                mk_cp_async16(b + B_TILE + r * LDB + c, cl + at, ok);
            }
            if constexpr (!RESIDENT) copy_rows(stage, kt * BK, BK);
        }
        mk_cp_async_commit();
    };

    // Each thread's 8 rows: slot mi * 2 + h is local row wm*64 + mi*16 + h*8 + g.
    float best[8][4], inv_x[8];
    unsigned int best_idx[8][3];
#pragma unroll
    for (int s = 0; s < 8; ++s) {
#pragma unroll
        for (int q = 0; q < 4; ++q) best[s][q] = INFINITY;
#pragma unroll
        for (int q = 0; q < 3; ++q) best_idx[s][q] = 0;
        const long long r = row0 + wm * 64 + (s >> 1) * 16 + (s & 1) * 8 + g;
        inv_x[s] = mk_pow2(-mk_scale_exponent(r < n ? xnorm[r] : 0.0f));
    }

    float acc[4][4][4];
    if constexpr (RESIDENT) copy_rows(smem, 0, DP);  // committed with the first step
    issue(0);
    issue(1);
    for (int tile = 0; tile < TILES; ++tile) {
        const int ct = tile / KT, kt = tile - ct * KT;
        mk_cp_async_wait<1>();  // this step's copies are done (the next may be in flight)
        __syncthreads();        // for every thread; and the stage refilled below is free
        issue(tile + 2);
        if (kt == 0) {
#pragma unroll
            for (int mi = 0; mi < 4; ++mi)
#pragma unroll
                for (int ni = 0; ni < 4; ++ni)
#pragma unroll
                    for (int q = 0; q < 4; ++q) acc[mi][ni][q] = 0.0f;
        }
        const unsigned short* stage = smem + A_FIXED + (tile % STAGES) * STAGE;
        const unsigned short* a = RESIDENT ? smem : stage;
        const unsigned short* b = stage + (RESIDENT ? 0 : 2 * A_TILE);
        const int a_col = RESIDENT ? kt * BK : 0;
#pragma unroll
        for (int ks = 0; ks < BK; ks += 16) {
            if (kt * BK + ks >= DP) break;  // the last step of 64 may hold only 32 features
            unsigned int ah[4][4], al[4][4], bh[4][2], bl[4][2];
#pragma unroll
            for (int mi = 0; mi < 4; ++mi) {
                const int o = (wm * 64 + mi * 16 + (lane & 15)) * LDA + a_col + ks + (lane >> 4) * 8;
                mk_ldmatrix_x4(ah[mi], a + o);
                mk_ldmatrix_x4(al[mi], a + A_TILE + o);
            }
#pragma unroll
            for (int np = 0; np < 2; ++np) {
                const int o = (wn * 32 + np * 16 + (lane & 7) + (lane >> 4) * 8) * LDB + ks + ((lane >> 3) & 1) * 8;
                unsigned int r[4];
                mk_ldmatrix_x4(r, b + o);
                bh[2 * np][0] = r[0];
                bh[2 * np][1] = r[1];
                bh[2 * np + 1][0] = r[2];
                bh[2 * np + 1][1] = r[3];
                mk_ldmatrix_x4(r, b + B_TILE + o);
                bl[2 * np][0] = r[0];
                bl[2 * np][1] = r[1];
                bl[2 * np + 1][0] = r[2];
                bl[2 * np + 1][1] = r[3];
            }
            // The small products first, and each product over all 16 accumulators before the
            // next, so that no product waits on the one just issued.
#pragma unroll
            for (int mi = 0; mi < 4; ++mi)
#pragma unroll
                for (int ni = 0; ni < 4; ++ni) mk_mma(acc[mi][ni], al[mi], bh[ni]);
#pragma unroll
            for (int mi = 0; mi < 4; ++mi)
#pragma unroll
                for (int ni = 0; ni < 4; ++ni) mk_mma(acc[mi][ni], ah[mi], bl[ni]);
#pragma unroll
            for (int mi = 0; mi < 4; ++mi)
#pragma unroll
                for (int ni = 0; ni < 4; ++ni) mk_mma(acc[mi][ni], ah[mi], bh[ni]);
        }
        if (kt == KT - 1) {
            // Epilogue of a centroid tile: partial distances into each row's best four.
#pragma unroll
            for (int ni = 0; ni < 4; ++ni)
#pragma unroll
                for (int q = 0; q < 2; ++q) {
                    const unsigned int j = (unsigned int)(ct * BN + wn * 32 + ni * 8 + 2 * t + q);
                    if (j >= (unsigned int)K) continue;
                    // Scaling by powers of two is exact: one rounding, in the fused multiply-add.
                    const float cn = tile_cnorm[ct % 3][j - ct * BN], m2ci = -2.0f * mk_pow2(-mk_scale_exponent(cn));
#pragma unroll
                    for (int mi = 0; mi < 4; ++mi)
#pragma unroll
                        for (int h = 0; h < 2; ++h) {
                            const int s = mi * 2 + h;
                            const float v = fmaf(acc[mi][ni][h * 2 + q] * inv_x[s], m2ci, cn);
                            mk_insert_next(best[s], best_idx[s], v, j);
                        }
                }
        }
    }
    mk_cp_async_wait<0>();

    // The four lanes of a quad hold the same rows (other centroids): merge them.
#pragma unroll
    for (int s = 0; s < 8; ++s)
#pragma unroll
        for (int off = 1; off < 4; off <<= 1) {
            float o[4];
            unsigned int oi[3];
#pragma unroll
            for (int q = 0; q < 4; ++q) o[q] = __shfl_xor_sync(0xffffffffu, best[s][q], off);
#pragma unroll
            for (int q = 0; q < 3; ++q) oi[q] = __shfl_xor_sync(0xffffffffu, best_idx[s][q], off);
#pragma unroll
            for (int q = 0; q < 3; ++q) mk_insert(best[s], best_idx[s], o[q], oi[q]);
            best[s][3] = fminf(best[s][3], o[3]);  // o[3] ≥ o[2], which is placed already
        }
    // Then the four warps that share rows, through shared memory (the tiles are done).
    __syncthreads();
    float* red = reinterpret_cast<float*>(smem);                        // [4][BM][4]
    unsigned int* red_idx = reinterpret_cast<unsigned int*>(red + 4 * BM * 4);  // [4][BM][3]
    if (t == 0) {
#pragma unroll
        for (int s = 0; s < 8; ++s) {
            const int r = wn * BM + wm * 64 + (s >> 1) * 16 + (s & 1) * 8 + g;
#pragma unroll
            for (int q = 0; q < 4; ++q) red[r * 4 + q] = best[s][q];
#pragma unroll
            for (int q = 0; q < 3; ++q) red_idx[r * 3 + q] = best_idx[s][q];
        }
    }
    __syncthreads();
    if (tid < BM) {
        float b[4];
        unsigned int bi[3];
#pragma unroll
        for (int q = 0; q < 4; ++q) b[q] = red[tid * 4 + q];
#pragma unroll
        for (int q = 0; q < 3; ++q) bi[q] = red_idx[tid * 3 + q];
        for (int w = 1; w < 4; ++w) {
            const int o = w * BM + tid;
            for (int q = 0; q < 3; ++q) mk_insert(b, bi, red[o * 4 + q], red_idx[o * 3 + q]);
            b[3] = fminf(b[3], red[o * 4 + 3]);
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
        // How many centroids are candidates: 1 to 3; 4 when a fourth is as near.
        const unsigned int count = (b[1] - b[0] > band) ? 1u : (b[2] - b[0] > band) ? 2u : (b[3] - b[0] > band) ? 3u : 4u;
        if (r < n) {
#pragma unroll
            for (int q = 0; q < 3; ++q) candidates[r * 3 + q] = bi[q];
            counts[r] = count;
        }
    }
