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
