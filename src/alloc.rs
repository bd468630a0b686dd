//! The process's allocator. A CGI process serves one request and exits: glibc's malloc,
//! already in the static binary, costs it nothing to set up. A FastCGI process serves
//! request after request, and under glibc `malloc` and `free` were a quarter of each
//! request's instructions (callgrind, CHANGELOG.md, 2026-11-30): once a process turns
//! responder ([`serve_many`]), new blocks come from mimalloc, which sets itself up at
//! its first allocation (its constructor is compiled out: `.cargo/config.toml`).
//!
//! Every block is freed and grown by the allocator that made it: mimalloc knows its own
//! memory (`mi_is_in_heap_region`, a look at its segment map that needs no set-up), so
//! the blocks glibc made before the switch stay glibc's to the end.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, Ordering};

use mimalloc::MiMalloc;

/// Whether new blocks come from mimalloc (set once, never cleared).
static MANY: AtomicBool = AtomicBool::new(false);

/// glibc's malloc until [`serve_many`], mimalloc after.
pub struct Allocator;

/// From now on this process serves many requests: new blocks come from mimalloc.
pub fn serve_many() {
    MANY.store(true, Ordering::Relaxed);
}

/// Before the switch every block is glibc's, and a CGI process never asks mimalloc.
fn made_by_mimalloc(ptr: *mut u8) -> bool {
    // SAFETY: a lookup in mimalloc's segment map; any address may be asked about.
    MANY.load(Ordering::Relaxed) && unsafe { libmimalloc_sys::mi_is_in_heap_region(ptr.cast()) }
}

// SAFETY: each call goes to one of two sound allocators; a block is freed or grown by
// the one that made it (`made_by_mimalloc`), with the layout it was made with.
unsafe impl GlobalAlloc for Allocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's layout, passed on.
        unsafe { if MANY.load(Ordering::Relaxed) { MiMalloc.alloc(layout) } else { System.alloc(layout) } }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's layout, passed on.
        unsafe {
            if MANY.load(Ordering::Relaxed) { MiMalloc.alloc_zeroed(layout) } else { System.alloc_zeroed(layout) }
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` goes back to the allocator that made it.
        unsafe { if made_by_mimalloc(ptr) { MiMalloc.dealloc(ptr, layout) } else { System.dealloc(ptr, layout) } }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: `ptr` is grown by the allocator that made it.
        unsafe {
            if made_by_mimalloc(ptr) {
                MiMalloc.realloc(ptr, layout, new_size)
            } else {
                System.realloc(ptr, layout, new_size)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A block made before the switch is grown and freed by glibc, one made after by
    /// mimalloc, in any order.
    #[test]
    fn blocks_go_back_to_the_allocator_that_made_them() {
        let before: Vec<u8> = (0..200u8).collect();
        if !MANY.load(Ordering::Relaxed) {
            assert!(!made_by_mimalloc(before.as_ptr().cast_mut()), "glibc's until the switch");
        }
        serve_many();
        let mut after: Vec<u8> = Vec::with_capacity(64);
        after.extend(0..64u8);
        assert!(made_by_mimalloc(after.as_ptr().cast_mut()), "new blocks come from mimalloc");
        let mut grown = before;
        grown.extend(0..=255u8);
        after.extend(0..=255u8);
        assert_eq!(grown[..200], (0..200u8).collect::<Vec<_>>()[..]);
        assert_eq!(after[..64], (0..64u8).collect::<Vec<_>>()[..]);
        drop(after);
        drop(grown);
    }
}
