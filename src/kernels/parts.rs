//! Independent parts of a step outside its linears — the cross-attention's three encoder
//! levels, the vocabulary log-softmax's rows ([`Kernels::log_softmax_rows`]) — spread over the worker pool (std targets with
//! threads), or run in order on this thread (one thread, and the no_std engine). Each part
//! writes only its own slices with the arithmetic it has alone, so the results are the same
//! bits either way.

use super::Kernels;

/// Multiply-adds of f32 attention (no FMA: about 25 GMAC/s on one x86_64 core, measured as
/// the decoder's cross-attention on the Intel VM of README's AVX-512 section) a worker's share
/// needs before [`Kernels::for_each_mut`] hands it out: ~1.3 µs of work against the pool's
/// ~1 µs to wake a spinning worker (`super::PAR_MIN_MACS` is the same rule for int8 linears).
pub const PAR_MIN_F32_MACS: usize = 32 << 10;

/// Values a worker's share of [`Kernels::log_softmax_rows`] needs before it is handed out:
/// one `e^x` and a few adds each, ~1.5 µs on one x86_64 core at 16 K.
pub const PAR_MIN_EXPS: usize = 16 << 10;

impl Kernels {
    /// `f(i, &mut items[i])` for every item, each item once. With one thread (or on no_std
    /// targets), or when a share would be under `min_work` (in the caller's unit: `work` is
    /// one item's), in order on this thread; otherwise up to [`Kernels::threads`] shares of
    /// consecutive items, run by this thread and the pool's workers.
    pub fn for_each_mut<T: Send>(
        &self,
        items: &mut [T],
        work: usize,
        min_work: usize,
        f: &(dyn Fn(usize, &mut T) + Sync),
    ) {
        #[cfg(feature = "std")]
        {
            let len = items.len();
            let t = self.threads.min(len);
            if t > 1 {
                let per = len.div_ceil(t);
                if per.saturating_mul(work) >= min_work {
                    let base = Items(items.as_mut_ptr());
                    let base = &base;
                    super::pool::run(len.div_ceil(per), &|share| {
                        for i in share * per..((share + 1) * per).min(len) {
                            // SAFETY: `pool::run` runs each share once and the shares'
                            // index ranges are disjoint and inside `0..len`, so this is the
                            // only reference to `items[i]`; `items` stays borrowed mutably
                            // until `run` returns, after every share has finished.
                            f(i, unsafe { &mut *base.0.add(i) });
                        }
                    });
                    return;
                }
            }
        }
        let _ = (work, min_work);
        for (i, item) in items.iter_mut().enumerate() {
            f(i, item);
        }
    }

    /// [`crate::math::log_softmax_rows`] with this path's vector unit: log-softmax over each
    /// row of `n` values of `x`, bit for bit on every path. The rows are split over this
    /// thread and the pool's workers when the kernels have threads and each share holds
    /// [`PAR_MIN_EXPS`] values or more: the same bits (each row's log-softmax is its own).
    pub fn log_softmax_rows(&self, x: &mut [f32], n: usize) {
        let rows = x.len().checked_div(n).unwrap_or(0);
        let t = self.threads.clamp(1, MAX_SHARES).min(rows.max(1));
        let per = rows.div_ceil(t).max(1);
        let mut shares = heapless::Vec::<&mut [f32], MAX_SHARES>::new();
        for share in x[..rows * n].chunks_mut((per * n).max(1)) {
            let _ = shares.push(share);
        }
        self.for_each_mut(&mut shares, per * n, PAR_MIN_EXPS, &|_, rows| {
            self.log_softmax_rows_here(rows, n)
        });
    }
}

/// Most shares [`Kernels::log_softmax_rows`] makes (the pool's workers and this thread).
const MAX_SHARES: usize = 64;

/// `items`' base pointer, shared with the shares of [`Kernels::for_each_mut`].
#[cfg(feature = "std")]
struct Items<T>(*mut T);

#[cfg(feature = "std")]
// SAFETY: the shares only turn the pointer into `&mut T` of disjoint items (see
// `for_each_mut`), each on one thread: that needs `T: Send`, as sending each `&mut T` would.
unsafe impl<T: Send> Sync for Items<T> {}

#[cfg(test)]
mod tests {
    use super::*;
    extern crate std;
    use std::vec::Vec;

    /// Every item is handed out once, with its own index, whatever the threads and the work.
    #[test]
    fn each_item_once_with_its_index() {
        for threads in 1..=5 {
            let k = Kernels::SCALAR.with_threads(threads);
            for len in 0..12 {
                for (work, min) in [(0, 1), (1, 1), (1000, 1), (1, usize::MAX)] {
                    let mut items: Vec<(usize, u32)> = (0..len).map(|i| (i, 0)).collect();
                    k.for_each_mut(&mut items, work, min, &|i, item| {
                        assert_eq!(i, item.0);
                        item.1 += 1;
                    });
                    assert!(items.iter().all(|&(_, n)| n == 1), "{threads} {len}");
                }
            }
        }
    }

    /// The rows split over threads give the ground truth's bits, rows short and long (past
    /// `PAR_MIN_EXPS` a share), on every path.
    #[test]
    fn log_softmax_rows_over_threads_is_one_call() {
        let mut s = 7u32;
        for isa in Kernels::available() {
            for n in [1usize, 3, 10_201] {
                for rows in 0..=7 {
                    let x: Vec<f32> = (0..rows * n)
                        .map(|_| {
                            s ^= s << 13;
                            s ^= s >> 17;
                            s ^= s << 5;
                            (s >> 8) as f32 / 65_536.0 - 128.0
                        })
                        .collect();
                    let k = Kernels::with_isa(isa).unwrap();
                    let mut want = x.clone();
                    crate::math::log_softmax_rows(&mut want, n);
                    for threads in 1..=4 {
                        let mut got = x.clone();
                        k.with_threads(threads).log_softmax_rows(&mut got, n);
                        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                        assert_eq!(bits(&got), bits(&want), "{isa} n {n} rows {rows} {threads}");
                    }
                }
            }
        }
    }
}
