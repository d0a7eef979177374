// The CUDA dialect of the shared kernels (`shared/*.body`): types, address spaces and
// SIMD-group (warp) exchanges under the names the bodies use. `prologue.cuda` names the
// thread indices.
typedef long long km_long;
typedef unsigned int km_uint;
#define KM_DEVICE
#define KM_XOR(value, offset) __shfl_xor_sync(0xffffffffu, (value), (offset))
