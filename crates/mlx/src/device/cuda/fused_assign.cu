// Body of the `fused_assign` kernel (headers: `fused_assign.cuh`, `warp_sq_distance.cuh`):
// each row's nearest centroid without the `n × K` distance matrix. A block of 256 threads
// takes 128 rows and streams all centroids past them in tiles of 128 (copied asynchronously
// into shared memory, three steps in flight; with up to 192 features the rows stay in shared
// memory, else they stream too), through the tensor cores; each thread keeps, for its rows and
// its share of the centroids, the four best partial distances `‖c‖² − 2x·c` and the indices of
// the first three, in registers. Rows and centroids come scaled by powers of two into
// float16's range and split in two float16 parts (`split_halves`). With P = 3 the kernel makes
// `x·c = xh·ch + xh·cl + xl·ch`, three products accumulated in float32 (error ~2^-20); with
// P = 1 one product of the high parts, whose error (~2^-10) is bounded per row by its own
// rounding (`xres`) and the centroids' largest (`cres`). Every centroid within the bound of
// that error from the best is a candidate (up to C, from every thread's share); `counts` says
// how many, or C + 1 where there are more or a share may hold more than it kept (a fourth
// value within the bound): then all are. `exact_candidates` decides among them exactly.
//   inputs:  xnorm (n: ‖x‖²), xh, xl (n × DP, float16 bits), xres (n: ≥ ‖x − xh‖, unscaled),
//            cnorm (K: ‖c‖²), ch, cl (K × DP, float16 bits), cmax (1: max ‖c‖²), cres (1:
//            ≥ every ‖c − ch‖)
//   outputs: candidates (n × C, uint32), counts (n, uint32: 1 to C, or C + 1)
//   template: K (centroids), D (features), DP (features padded to a multiple of 32), P (1 or
//            3 products), C (candidates at most)
//   dynamic shared memory: the rows (P = 3: 2, P = 1: 1 × 128 × (DP + 8) halves) and 3 steps
//   of tiles of 128 × 72 halves (2 or 1), at most 212992 bytes; or 3 steps of tiles of 128 ×
//   40 halves (4 or 2)
    constexpr int BM = 128, BN = 128, STAGES = 3;
    constexpr int HALVES = P == 3 ? 2 : 1;  // float16 parts read of each row and centroid
    // With few features the block's rows stay in shared memory for the whole kernel, and only
    // centroids stream past them, 64 features a step; otherwise both stream, 32 a step.
    constexpr bool RESIDENT = DP <= 192;
    constexpr int BK = RESIDENT ? 64 : 32, LDB = BK + 8, LDA = RESIDENT ? DP + 8 : BK + 8;
    constexpr int KT = (DP + BK - 1) / BK, CT = (K + BN - 1) / BN, TILES = KT * CT;
    constexpr int A_TILE = BM * LDA, B_TILE = BN * LDB;  // halves, each of the parts read
    constexpr int A_FIXED = RESIDENT ? HALVES * A_TILE : 0;
    constexpr int STAGE = RESIDENT ? HALVES * B_TILE : HALVES * (A_TILE + B_TILE);
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
            if constexpr (HALVES == 2) mk_cp_async16(a + A_TILE + r * LDA + c, xl + at, ok);
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
            unsigned short* b = stage + (RESIDENT ? 0 : HALVES * A_TILE);
            constexpr int CHUNKS = BK / 8;
            for (int i = tid; i < BN * CHUNKS; i += 256) {
                const int r = i / CHUNKS, c = (i - r * CHUNKS) * 8;
                if (kt * BK + c >= DP) continue;
                const long long j = (long long)ct * BN + r;
                const bool ok = j < K;
                const long long at = (ok ? j : 0) * DP + kt * BK + c;
                mk_cp_async16(b + r * LDB + c, ch + at, ok);
                if constexpr (HALVES == 2) mk_cp_async16(b + B_TILE + r * LDB + c, cl + at, ok);
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
        const unsigned short* b = stage + (RESIDENT ? 0 : HALVES * A_TILE);
        const int a_col = RESIDENT ? kt * BK : 0;
#pragma unroll
        for (int ks = 0; ks < BK; ks += 16) {
            if (kt * BK + ks >= DP) break;  // the last step of 64 may hold only 32 features
            unsigned int ah[4][4], al[4][4], bh[4][2], bl[4][2];
#pragma unroll
            for (int mi = 0; mi < 4; ++mi) {
                const int o = (wm * 64 + mi * 16 + (lane & 15)) * LDA + a_col + ks + (lane >> 4) * 8;
                mk_ldmatrix_x4(ah[mi], a + o);
                if constexpr (P == 3) mk_ldmatrix_x4(al[mi], a + A_TILE + o);
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
                if constexpr (P == 3) {
                    mk_ldmatrix_x4(r, b + B_TILE + o);
                    bl[2 * np][0] = r[0];
                    bl[2 * np][1] = r[1];
                    bl[2 * np + 1][0] = r[2];
                    bl[2 * np + 1][1] = r[3];
                }
            }
            // The small products first, and each product over all 16 accumulators before the
            // next, so that no product waits on the one just issued.
            if constexpr (P == 3) {
#pragma unroll
                for (int mi = 0; mi < 4; ++mi)
#pragma unroll
                    for (int ni = 0; ni < 4; ++ni) mk_mma(acc[mi][ni], al[mi], bh[ni]);
#pragma unroll
                for (int mi = 0; mi < 4; ++mi)
#pragma unroll
                    for (int ni = 0; ni < 4; ++ni) mk_mma(acc[mi][ni], ah[mi], bl[ni]);
            }
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

    // Shared memory is free once the tiles are done: each row's best over the four warps
    // that share it, its band's limit, and the candidates found within it.
    __syncthreads();
    float* quad_best = reinterpret_cast<float*>(smem);                     // [4][BM]
    float* limit = quad_best + 4 * BM;                                     // [BM]
    unsigned int* found = reinterpret_cast<unsigned int*>(limit + BM);     // [BM]
    unsigned int* overflow = found + BM;                                   // [BM]
    unsigned int* listed = overflow + BM;                                  // [BM][C]
    // The four lanes of a quad hold the same rows (other centroids).
#pragma unroll
    for (int s = 0; s < 8; ++s) {
        float m = best[s][0];
        m = fminf(m, __shfl_xor_sync(0xffffffffu, m, 1));
        m = fminf(m, __shfl_xor_sync(0xffffffffu, m, 2));
        if (t == 0) quad_best[wn * BM + wm * 64 + (s >> 1) * 16 + (s & 1) * 8 + g] = m;
    }
    __syncthreads();
    if (tid < BM) {
        const float b0 = fminf(fminf(quad_best[tid], quad_best[BM + tid]), fminf(quad_best[2 * BM + tid], quad_best[3 * BM + tid]));
        const long long r = row0 + tid;
        // Norms from float32 sums, raised by their own rounding.
        constexpr float sums = (D + 2) * 0x1p-24f;
        const float xm = (r < n ? sqrtf(xnorm[r]) : 0.0f) * (1.0f + sums), cm = sqrtf(cmax[0]) * (1.0f + sums);
        // `norms`: the centroids' squared norms and the epilogue's rounding, (D + 8)·2^-24 of
        // (‖c‖² + 2‖x‖‖c‖); the last term, what vectors too small for the scaled range lose.
        constexpr float norms = (D + 8) * 0x1p-24f;
        float bound;
        if constexpr (P == 3) {
            // The split products and their float32 sums: 3·⌈D/16⌉ + 8 steps of at most 2^-22
            // of ‖x‖‖c‖ each, which covers the split's own 3·2^-22.
            constexpr float eps = (3.0f * ((D + 15) / 16) + 8.0f) * 0x1p-22f;
            bound = 2.0f * eps * xm * cm;
        } else {
            // x·c − xh·ch = (x − xh)·c + xh·(c − ch), by Cauchy–Schwarz on each, and the float32
            // sums of exact products over ⌈DP/16⌉ + 8 steps of at most 2^-22 of ‖xh‖‖ch‖.
            constexpr float eps = ((DP + 15) / 16 + 8.0f) * 0x1p-22f;
            const float xr = r < n ? xres[r] : 0.0f, cr = cres[0];
            const float xt = xm + xr, ct = cm + cr;
            bound = 2.0f * (xr * cm + xt * cr + eps * xt * ct);
        }
        bound = (bound + norms * (cm * cm + 2.0f * xm * cm) + 0x1p-58f * (xm + cm)) * 1.001f;
        // Either of two values may err so: centroids closer than twice that are not told apart.
        const float lim = __fadd_ru(b0, 2.05f * bound);
        limit[tid] = lim;
        found[tid] = 0u;
        overflow[tid] = (isfinite(b0) && isfinite(lim)) ? 0u : 1u;
    }
    __syncthreads();
    // Every centroid of a thread's share within the band is a candidate; where the share's
    // fourth value lies within it too, the share may hold more than it kept.
#pragma unroll
    for (int s = 0; s < 8; ++s) {
        const int r = wm * 64 + (s >> 1) * 16 + (s & 1) * 8 + g;
        const float lim = limit[r];
#pragma unroll
        for (int q = 0; q < 3; ++q)
            if (best[s][q] <= lim) {
                const unsigned int at = atomicAdd(&found[r], 1u);
                if (at < (unsigned int)C) listed[r * C + at] = best_idx[s][q];
            }
        if (best[s][3] <= lim) overflow[r] = 1u;
    }
    __syncthreads();
    if (tid < BM) {
        const long long r = row0 + tid;
        if (r < n) {
            const unsigned int count = found[tid];
            const bool all = overflow[tid] != 0u || count > (unsigned int)C || count == 0u;
            // The order found is the atomics' (the exact decision does not depend on it).
            for (int q = 0; q < C; ++q) candidates[r * C + q] = (!all && q < (int)count) ? listed[tid * C + q] : 0u;
            counts[r] = all ? (unsigned int)(C + 1) : count;
        }
    }
