//! Large buffers written once per fit, on huge pages where the OS offers them: a fresh
//! buffer of a few hundred megabytes otherwise costs a page fault per 4 KiB on first write,
//! which takes longer than writing it.

use std::mem::MaybeUninit;

/// Huge pages on x86-64 and most Linux ARM kernels.
#[cfg(target_os = "linux")]
const HUGE_PAGE: usize = 2 << 20;

/// An empty vector with room for `len` values whose whole huge pages are advised to be
/// huge (Linux, transparent huge pages in `madvise` or `always` mode; elsewhere a plain
/// allocation). Write it through [`zeroed`] on its spare capacity, then set its length.
pub fn with_capacity<T>(len: usize) -> Vec<T> {
    let mut values = Vec::with_capacity(len);
    advise_huge(&mut values);
    values
}

#[cfg(target_os = "linux")]
fn advise_huge<T>(values: &mut Vec<T>) {
    let bytes = values.capacity() * std::mem::size_of::<T>();
    let start = values.as_mut_ptr() as usize;
    let (first, end) = (start.next_multiple_of(HUGE_PAGE), (start + bytes) & !(HUGE_PAGE - 1));
    if end > first {
        // SAFETY: the range lies within the vector's allocation; the advice changes how the
        // pages are backed, never their contents. A kernel without huge pages refuses it,
        // which leaves ordinary pages: nothing to handle.
        unsafe { libc::madvise(first as *mut libc::c_void, end - first, libc::MADV_HUGEPAGE) };
    }
}

#[cfg(not(target_os = "linux"))]
fn advise_huge<T>(_values: &mut Vec<T>) {}

/// `part` of a vector's spare capacity written with zeros, as initialised values (so that
/// each task of a parallel fill touches its pages first while they are in its cache).
pub fn zeroed<T: Copy + Default>(part: &mut [MaybeUninit<T>]) -> &mut [T] {
    for value in part.iter_mut() {
        value.write(T::default());
    }
    // SAFETY: every element was written just above; `MaybeUninit<T>` has `T`'s layout.
    unsafe { std::slice::from_raw_parts_mut(part.as_mut_ptr().cast::<T>(), part.len()) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rayon::prelude::*;

    #[test]
    fn a_buffer_filled_in_parallel_parts_is_all_zeros_then_written() {
        for len in [0usize, 1, 1000, (3 << 20) + 5] {
            let mut values: Vec<u32> = with_capacity(len);
            values.spare_capacity_mut()[..len].par_chunks_mut(4096).enumerate().for_each(|(p, part)| {
                let part = zeroed(part);
                assert!(part.iter().all(|&v| v == 0));
                part[0] = p as u32 + 1;
            });
            // SAFETY: every part was written by `zeroed`.
            unsafe { values.set_len(len) };
            for (i, &v) in values.iter().enumerate() {
                let expected = if i % 4096 == 0 { (i / 4096) as u32 + 1 } else { 0 };
                assert_eq!(v, expected, "len {len}, index {i}");
            }
        }
    }
}
