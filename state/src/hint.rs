//! A hint to the CPU: [`prefetch`] asks for a cache line that a lookup will
//! read soon, without waiting for it.
//!
//! Tables far larger than the CPU caches (the dedup ids, the filter of
//! written keys) take a miss on nearly every lookup. A plain load made
//! ahead of the lookup overlaps little: it cannot retire before its line
//! arrives, so the core stalls on it as soon as its reorder buffer fills.
//! A prefetch instruction retires at once and the line arrives meanwhile.

/// Asks for the cache line holding `value` to be brought into every cache
/// level. Only a hint: it changes nothing a program can observe but time.
#[inline(always)]
pub fn prefetch<T>(value: &T) {
    #[cfg(target_arch = "x86_64")]
    safe_arch::prefetch_t0(value);
    #[cfg(not(target_arch = "x86_64"))]
    let _ = value;
}
