//! Large buffers written once per fit, on huge pages where the OS offers them quickly: a
//! fresh buffer of a few hundred megabytes otherwise costs a page fault per 4 KiB on first
//! write, which takes longer than writing it.

use std::mem::MaybeUninit;

/// Huge pages on x86-64 and most Linux ARM kernels.
#[cfg(target_os = "linux")]
const HUGE_PAGE: usize = 2 << 20;

/// An empty vector with room for `len` values whose whole huge pages are advised to be
/// huge (Linux, transparent huge pages in `madvise` or `always` mode; elsewhere a plain
/// allocation) while they come quickly. Write it through [`zeroed`] on its spare capacity,
/// then set its length.
pub fn with_capacity<T>(len: usize) -> Vec<T> {
    let mut values = Vec::with_capacity(len);
    advise_huge(&mut values);
    values
}

/// A huge page that takes longer than this to fault in comes from memory its host must
/// back afresh (a virtual machine whose free memory was handed back): there 4 KiB pages,
/// taken from what was freed lately, cost a fraction of the time. On a 2-core VM, 153 MB
/// took 250–440 ms on such huge pages (5–6 ms a page) and 65–80 ms on 4 KiB pages; huge
/// pages the host still backed took 0.3–0.5 ms each.
#[cfg(target_os = "linux")]
const SLOW_HUGE_PAGE: std::time::Duration = std::time::Duration::from_millis(2);

/// Each whole huge page advised and faulted, a page per thread at a time, until one comes
/// slowly: the rest are left to 4 KiB pages, faulted as they are written. A buffer's pages
/// can come partly from memory the host backs and partly not, so one page first would not
/// tell; faulting them on every thread keeps a large buffer's zeroing parallel.
#[cfg(target_os = "linux")]
fn advise_huge<T>(values: &mut Vec<T>) {
    let bytes = values.capacity() * std::mem::size_of::<T>();
    let start = values.as_mut_ptr() as usize;
    let (first, end) = (start.next_multiple_of(HUGE_PAGE), (start + bytes) & !(HUGE_PAGE - 1));
    if end <= first {
        return;
    }
    let started = std::time::Instant::now();
    let threads = rayon::current_num_threads();
    let huge = fault_while_quick((end - first) / HUGE_PAGE, threads, |p| {
        let page = first + p * HUGE_PAGE;
        // SAFETY: the page lies within the vector's allocation; the advice changes how it is
        // backed, never its contents (a kernel without huge pages refuses it, which leaves
        // ordinary pages: nothing to handle), and its first byte, in the vector's spare
        // capacity, is written before it is read.
        unsafe {
            libc::madvise(page as *mut libc::c_void, HUGE_PAGE, libc::MADV_HUGEPAGE);
            let started = std::time::Instant::now();
            std::ptr::write_volatile(page as *mut u8, 0);
            started.elapsed()
        }
    });
    log::debug!(
        "a fresh buffer of {} MiB: {} MiB on huge pages, faulted in {:.1} ms",
        bytes >> 20,
        (huge * HUGE_PAGE) >> 20,
        started.elapsed().as_secs_f64() * 1e3
    );
}

/// Faults pages `0..pages` by `fault` (which says how long each took), `group` at a time in
/// parallel, until a group holds one that took longer than [`SLOW_HUGE_PAGE`]; how many it
/// faulted, that group included.
#[cfg(target_os = "linux")]
fn fault_while_quick(pages: usize, group: usize, fault: impl Fn(usize) -> std::time::Duration + Sync) -> usize {
    use rayon::prelude::*;
    let mut faulted = 0;
    while faulted < pages {
        let last = (faulted + group.max(1)).min(pages);
        let slowest = (faulted..last).into_par_iter().map(&fault).max().unwrap_or_default();
        faulted = last;
        if slowest > SLOW_HUGE_PAGE {
            break;
        }
    }
    faulted
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

    #[cfg(target_os = "linux")]
    #[test]
    fn huge_pages_are_taken_until_one_comes_slowly() {
        let ms = std::time::Duration::from_micros;
        let took = |times: Vec<u64>, group: usize| {
            let asked = std::sync::Mutex::new(Vec::new());
            let faulted = fault_while_quick(times.len(), group, |p| {
                asked.lock().unwrap().push(p);
                ms(times[p])
            });
            let mut asked = asked.into_inner().unwrap();
            asked.sort_unstable();
            (faulted, asked)
        };
        for group in [0, 1] {
            assert_eq!(took(vec![], group), (0, vec![]));
            assert_eq!(took(vec![300, 400, 300], group), (3, vec![0, 1, 2]));
            assert_eq!(took(vec![6000, 300, 300], group), (1, vec![0]));
            assert_eq!(took(vec![300, 300, 5500, 300], group), (3, vec![0, 1, 2]));
        }
        // The limit itself is quick enough.
        let limit = SLOW_HUGE_PAGE.as_micros() as u64;
        assert_eq!(took(vec![limit, limit + 1, 300], 1), (2, vec![0, 1]));
        // A group is faulted whole: a slow page stops the pages after its group.
        assert_eq!(took(vec![300, 6000, 300, 300, 300], 2), (2, vec![0, 1]));
        assert_eq!(took(vec![300, 300, 300, 6000, 300, 300], 2), (4, vec![0, 1, 2, 3]));
        assert_eq!(took(vec![300, 300, 300], 2), (3, vec![0, 1, 2]));
    }

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
