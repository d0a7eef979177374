//! Raw bindings to mlx-c (generated at build time), linked against the libmlx shipped in the
//! `mlx` Python wheels.
#![allow(non_upper_case_globals)]
#![allow(non_camel_case_types)]
#![allow(non_snake_case)]
#![allow(dead_code)]
#![allow(clippy::all)]

/// IEEE half-precision bits, as bindgen represents `__fp16` on aarch64 (the one platform
/// where mlx-c defines the type itself); defined here so every platform agrees.
#[repr(transparent)]
#[derive(Debug, Default, Copy, Clone, Hash, PartialEq, Eq)]
pub struct float16_t(pub u16);

/// bfloat16 bits, as bindgen represents `__bf16` on aarch64.
pub type bfloat16_t = u16;

include!(concat!(env!("OUT_DIR"), "/bindings.rs"));

extern "C" {
    /// mlx-c's `mlx_pad`, declared by hand (the build script leaves it out of the generated
    /// bindings): mlx-rs 0.33 passes `mode` as `*const i8`, which C's `char` is on x86-64 and
    /// macOS but not on ARM Linux (unsigned there). A pointer either way: the ABI is the same.
    pub fn mlx_pad(
        res: *mut mlx_array,
        a: mlx_array,
        axes: *const std::os::raw::c_int,
        axes_num: usize,
        low_pad_size: *const std::os::raw::c_int,
        low_pad_size_num: usize,
        high_pad_size: *const std::os::raw::c_int,
        high_pad_size_num: usize,
        pad_value: mlx_array,
        mode: *const i8,
        s: mlx_stream,
    ) -> std::os::raw::c_int;
}
