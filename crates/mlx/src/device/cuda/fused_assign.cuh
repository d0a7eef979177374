// Helpers of the `fused_assign` kernel: float16 conversions, the split of a float into two
// float16 parts, and the tensor-core product (m16n8k16, float16 in, float32 accumulators).
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

__device__ __forceinline__ void mk_mma(float* c, const unsigned int* a, const unsigned int* b) {
    asm volatile(
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

// Puts partial distance `v` of centroid `j` into a row's three best: values `b1 ≤ b2 ≤ b3`,
// indices of the first two; equal values go to the lower index.
__device__ __forceinline__ void mk_insert(float& b1, unsigned int& i1, float& b2, unsigned int& i2, float& b3, float v,
                                          unsigned int j) {
    if (v < b1 || (v == b1 && j < i1)) {
        b3 = b2;
        b2 = b1;
        i2 = i1;
        b1 = v;
        i1 = j;
    } else if (v < b2 || (v == b2 && j < i2)) {
        b3 = b2;
        b2 = v;
        i2 = j;
    } else {
        b3 = fminf(b3, v);
    }
}
