// The Metal dialect of the shared kernels (`shared/*.body`): types, address spaces and
// SIMD-group exchanges under the names the bodies use. `prologue.metal` names the thread
// indices (MLX declares the attributes it finds named in the body).
typedef long km_long;
typedef uint km_uint;
#define KM_DEVICE device
#define KM_XOR(value, offset) simd_shuffle_xor((value), (ushort)(offset))
