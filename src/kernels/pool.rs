//! A persistent worker pool for [`Kernels::linear`](super::Kernels::linear) and
//! [`Kernels::for_each_mut`](super::Kernels::for_each_mut) on std targets.
//!
//! A decode step runs 34 small linears of ~40 µs each; spawning threads per call (scoped
//! threads) costs about as much as it saves. Here the workers live for the process: a call
//! publishes its parts, works on them itself, and the workers that are awake take the rest;
//! between calls a worker spins for [`SPIN`] (the gap between two linears of a step is a few
//! microseconds of attention or LayerNorm), then sleeps on a condition variable.
//!
//! Parts are claimed with one compare-and-swap on `(generation, next part)`, so a worker that
//! wakes late can never take a part of a newer call with the closure of an older one. Only one
//! call uses the workers at a time; a concurrent call (another engine on another thread) runs
//! its parts on its own thread. The no_std engine never gets here.

use std::boxed::Box;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex, OnceLock, TryLockError};
use std::time::{Duration, Instant};

/// How long an idle worker spins before it sleeps.
const SPIN: Duration = Duration::from_micros(200);

/// Most workers the pool starts (beyond that, parts are shared among them).
const MAX_WORKERS: usize = 63;

/// A call's closure as the workers see it: a lifetime-erased pointer, valid while the call that
/// published it waits for its parts (see `run`).
#[derive(Clone, Copy)]
struct TaskPtr(*const (dyn Fn(usize) + Sync));

// SAFETY: the pointee is `Sync`, and it is only dereferenced while the publishing call is
// blocked in `run` waiting for every claimed part to finish.
unsafe impl Send for TaskPtr {}

struct Published {
    generation: u32,
    task: Option<TaskPtr>,
    parts: usize,
    sleepers: usize,
}

struct Pool {
    /// `generation << 32 | next part to claim`.
    claim: AtomicU64,
    /// Parts of the current call not finished yet.
    pending: AtomicUsize,
    /// A part panicked (the caller re-raises).
    panicked: AtomicBool,
    published: Mutex<Published>,
    wake: Condvar,
    /// One call at a time; holds the number of workers started.
    busy: Mutex<usize>,
}

static POOL: OnceLock<&'static Pool> = OnceLock::new();

fn pool() -> &'static Pool {
    POOL.get_or_init(|| {
        Box::leak(Box::new(Pool {
            claim: AtomicU64::new(0),
            pending: AtomicUsize::new(0),
            panicked: AtomicBool::new(false),
            published: Mutex::new(Published {
                generation: 0,
                task: None,
                parts: 0,
                sleepers: 0,
            }),
            wake: Condvar::new(),
            busy: Mutex::new(0),
        }))
    })
}

/// Run `task(i)` for every `i < parts` exactly once, on this thread and up to `parts − 1`
/// pool workers; returns when all have finished. A panic in a part is re-raised here.
pub(crate) fn run(parts: usize, task: &(dyn Fn(usize) + Sync)) {
    if parts <= 1 {
        if parts == 1 {
            task(0);
        }
        return;
    }
    let p = pool();
    let mut started = match p.busy.try_lock() {
        Ok(guard) => guard,
        Err(TryLockError::Poisoned(e)) => e.into_inner(),
        Err(TryLockError::WouldBlock) => {
            // another call has the workers: do it all here
            (0..parts).for_each(task);
            return;
        }
    };
    let want = (parts - 1).min(MAX_WORKERS);
    while *started < want {
        if std::thread::Builder::new()
            .name("m2-worker".into())
            .spawn(move || worker(p))
            .is_err()
        {
            break; // fewer workers: the parts still all run (this thread takes the rest)
        }
        *started += 1;
    }

    // SAFETY (of the erasure): `task` outlives every use — workers only call it after a
    // successful claim of this generation, and this function returns only once `pending`,
    // which counts every part, has reached 0.
    let erased: *const (dyn Fn(usize) + Sync + '_) = task;
    let erased: *const (dyn Fn(usize) + Sync) = unsafe { std::mem::transmute(erased) };
    let generation = {
        let mut pub_ = lock(&p.published);
        pub_.generation = pub_.generation.wrapping_add(1);
        pub_.task = Some(TaskPtr(erased));
        pub_.parts = parts;
        p.pending.store(parts, Ordering::Relaxed);
        p.claim
            .store(u64::from(pub_.generation) << 32, Ordering::Release);
        if pub_.sleepers > 0 {
            p.wake.notify_all();
        }
        pub_.generation
    };

    while let Some(i) = claim(p, generation, parts) {
        run_part(p, task, i);
    }
    let mut spins = 0u32;
    while p.pending.load(Ordering::Acquire) != 0 {
        spins += 1;
        if spins < 1 << 16 {
            std::hint::spin_loop();
        } else {
            std::thread::yield_now();
        }
    }
    lock(&p.published).task = None;
    if p.panicked.swap(false, Ordering::Relaxed) {
        drop(started);
        panic!("a kernel worker panicked");
    }
}

/// Claim the next part of `generation`, if it is still the current call and has parts left.
fn claim(p: &Pool, generation: u32, parts: usize) -> Option<usize> {
    let mut cur = p.claim.load(Ordering::Acquire);
    loop {
        let (g, next) = ((cur >> 32) as u32, (cur & 0xffff_ffff) as usize);
        if g != generation || next >= parts {
            return None;
        }
        match p
            .claim
            .compare_exchange_weak(cur, cur + 1, Ordering::AcqRel, Ordering::Acquire)
        {
            Ok(_) => return Some(next),
            Err(now) => cur = now,
        }
    }
}

fn run_part(p: &Pool, task: &(dyn Fn(usize) + Sync), i: usize) {
    if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| task(i))).is_err() {
        p.panicked.store(true, Ordering::Relaxed);
    }
    p.pending.fetch_sub(1, Ordering::Release);
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn worker(p: &'static Pool) {
    let mut seen = 0u32;
    loop {
        // wait for a newer generation: spin a while, then sleep
        let t0 = Instant::now();
        let mut spins = 0u32;
        loop {
            let g = (p.claim.load(Ordering::Acquire) >> 32) as u32;
            if g != seen {
                break;
            }
            spins += 1;
            if spins.is_multiple_of(256) && t0.elapsed() > SPIN {
                let mut pub_ = lock(&p.published);
                while pub_.generation == seen {
                    pub_.sleepers += 1;
                    pub_ = p.wake.wait(pub_).unwrap_or_else(|e| e.into_inner());
                    pub_.sleepers -= 1;
                }
                break;
            }
            std::hint::spin_loop();
        }
        let (generation, task, parts) = {
            let pub_ = lock(&p.published);
            (pub_.generation, pub_.task, pub_.parts)
        };
        seen = generation;
        let Some(TaskPtr(task)) = task else {
            continue; // that call has already finished
        };
        while let Some(i) = claim(p, generation, parts) {
            // SAFETY: the claim succeeded for `generation`, whose caller waits in `run` until
            // this part is finished, so the closure `task` points to is alive.
            run_part(p, unsafe { &*task }, i);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU32;
    use std::vec::Vec;

    #[test]
    fn every_part_runs_exactly_once() {
        for parts in [0usize, 1, 2, 3, 8, 65] {
            for _ in 0..200 {
                let hits: Vec<AtomicU32> = (0..parts).map(|_| AtomicU32::new(0)).collect();
                run(parts, &|i| {
                    hits[i].fetch_add(1, Ordering::Relaxed);
                });
                assert!(hits.iter().all(|h| h.load(Ordering::Relaxed) == 1));
            }
        }
    }

    #[test]
    fn concurrent_callers_each_get_all_their_parts() {
        std::thread::scope(|s| {
            for t in 0..4 {
                s.spawn(move || {
                    for round in 0..300 {
                        let parts = 2 + (t + round) % 5;
                        let sum = AtomicUsize::new(0);
                        run(parts, &|i| {
                            sum.fetch_add(i + 1, Ordering::Relaxed);
                        });
                        assert_eq!(sum.load(Ordering::Relaxed), parts * (parts + 1) / 2);
                    }
                });
            }
        });
    }

    #[test]
    fn a_panicking_part_is_reraised_and_the_pool_still_works() {
        let r = std::panic::catch_unwind(|| {
            run(4, &|i| {
                if i == 3 {
                    panic!("boom");
                }
            })
        });
        assert!(r.is_err());
        let sum = AtomicUsize::new(0);
        run(4, &|i| {
            sum.fetch_add(i, Ordering::Relaxed);
        });
        assert_eq!(sum.load(Ordering::Relaxed), 6);
    }
}
