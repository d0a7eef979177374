// Helpers of the `split_halves` and `fused_assign` kernels: float16 conversions, the split of
// a float into two float16 parts, asynchronous copies into shared memory, fragment loads and
// the tensor-core product (m16n8k16, float16 in, float32 accumulators).
__device__ __forceinline__ unsigned short mk_to_half(float f) {
    unsigned short h;
    asm("cvt.rn.f16.f32 %0, %1;" : "=h"(h) : "f"(f));
    return h;
}

__device__ __forceinline__ float mk_from_half(unsigned short h) {
    float f;
    asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(h));
    return f;
}

// `v` (scaled below 2^14) as high + rest, both float16: the pair holds 22 of its bits.
__device__ __forceinline__ void mk_split(float v, unsigned short& hi, unsigned short& lo) {
    hi = mk_to_half(v);
    lo = mk_to_half(v - mk_from_half(hi));
}

// 16 bytes from global to shared memory without registers; zeros where `valid` is false.
__device__ __forceinline__ void mk_cp_async16(void* shared, const void* global, bool valid) {
    const unsigned int to = (unsigned int)__cvta_generic_to_shared(shared);
    const int bytes = valid ? 16 : 0;
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(to), "l"(global), "r"(bytes) : "memory");
}

__device__ __forceinline__ void mk_cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::: "memory"); }

template <int N>
__device__ __forceinline__ void mk_cp_async_wait() {
    asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
}

// Four 8×8 matrices of 16-bit values from shared memory (each lane gives one row address).
__device__ __forceinline__ void mk_ldmatrix_x4(unsigned int* r, const unsigned short* p) {
    const unsigned int at = (unsigned int)__cvta_generic_to_shared(p);
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(at)
                 : "memory");
}

// Not volatile: products into different accumulators may be interleaved, which hides each
// one's latency.
__device__ __forceinline__ void mk_mma(float* c, const unsigned int* a, const unsigned int* b) {
    asm(
        "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
        "{%0,%1,%2,%3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}

// The power of two that brings every coordinate of a vector with squared norm `sq` under
// 2^14 (float16 reaches 65504); 1 for vectors too small for their squared norm to be normal.
__device__ __forceinline__ int mk_scale_exponent(float sq) {
    if (!(sq >= 0x1p-120f)) return 0;
    const int e = 13 - ilogbf(sqrtf(sq));
    return max(-120, min(120, e));
}

__device__ __forceinline__ float mk_pow2(int e) { return __int_as_float((127 + e) << 23); }

// Puts partial distance `v` of centroid `j` into a row's four best (values `b[0] ≤ … ≤ b[3]`,
// the indices of the first three) without branches, so that a warp never splits over which
// lanes insert: min/max moves the values, selects the indices. For a thread's own stream,
// whose `j` only grow, an equal value stays behind the earlier (lower) index.
__device__ __forceinline__ void mk_insert_next(float* b, unsigned int* i, float v, unsigned int j) {
    const bool c0 = v < b[0], c1 = v < b[1], c2 = v < b[2];
    b[3] = fminf(b[3], fmaxf(b[2], v));
    b[2] = fminf(b[2], fmaxf(b[1], v));
    i[2] = c1 ? i[1] : (c2 ? j : i[2]);
    b[1] = fminf(b[1], fmaxf(b[0], v));
    i[1] = c0 ? i[0] : (c1 ? j : i[1]);
    b[0] = fminf(b[0], v);
    i[0] = c0 ? j : i[0];
}
