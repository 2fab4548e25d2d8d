//! Many images on worker threads (std): each worker captions its own images with its own
//! workspace, and the results come back on the calling thread in input order, each as soon as
//! its turn comes. `m2 caption` streams its output through this; the Python bindings'
//! `caption_batch` collects it.
//!
//! The captions are the same bits for any number of workers (every image is decoded alone,
//! and every kernel's result is independent of its thread count).

use super::{decode, Caption, SearchOptions};
use crate::kernels::Kernels;
use crate::model::{EngineError, M2};
use crate::plan::Plan;
use crate::workspace::Workspace;
use crate::Blob;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use std::vec::Vec;

/// How to decode a batch.
#[derive(Clone, Copy, Debug)]
pub struct Batch {
    /// Every worker's kernels (give them one thread each when there are several workers).
    pub kernels: Kernels,
    /// The plan every workspace is carved with: `M2::plan(beam, max_len)` (beam 1 for greedy).
    pub plan: Plan,
    pub search: SearchOptions,
    /// Greedy decoding instead of beam search.
    pub greedy: bool,
}

/// One image's result, with what the reader returned for it and the time it took (reading
/// included).
#[derive(Clone, Debug)]
pub struct Decoded<T> {
    pub caption: Caption,
    pub read: T,
    pub elapsed: Duration,
}

/// Caption images `0..images` on `workspaces.len()` worker threads (one workspace buffer of
/// `plan.total_floats()` or more each; at least one). `read(k, buf)` fills `buf` with image
/// `k`'s features `[n, d_in]` (called on the workers); `emit(k, result)` gets the results in
/// order `0, 1, …` on the calling thread. The first error — a reader's, the engine's (through
/// `engine_error(Some(k), e)`; `None`: a workspace that does not fit the plan), or `emit`'s —
/// stops the workers and is returned, after every image before it has been emitted.
pub fn decode_in_order<T: Send, E: Send>(
    blob: &Blob,
    batch: &Batch,
    workspaces: &mut [Vec<f32>],
    images: usize,
    read: impl Fn(usize, &mut Vec<f32>) -> Result<T, E> + Sync,
    engine_error: impl Fn(Option<usize>, EngineError) -> E + Sync,
    mut emit: impl FnMut(usize, Decoded<T>) -> Result<(), E>,
) -> Result<(), E> {
    if workspaces.is_empty() && images > 0 {
        // no worker could run: an error, not a success that emitted nothing
        let needed_bytes = batch.plan.checked_total_bytes().unwrap_or(usize::MAX);
        let e = crate::workspace::WorkspaceError::TooSmall {
            needed_bytes,
            given_bytes: 0,
        };
        return Err(engine_error(None, e.into()));
    }
    let workers = workspaces.len().max(1).min(images.max(1));
    let next = AtomicUsize::new(0);
    let stop = AtomicBool::new(false);
    let (tx, rx) = std::sync::mpsc::sync_channel::<(usize, Result<Decoded<T>, E>)>(2 * workers);
    let mut carved = Vec::with_capacity(workers);
    for mem in workspaces.iter_mut().take(workers) {
        carved.push(Workspace::new(mem, batch.plan).map_err(|e| engine_error(None, e.into()))?);
    }
    let (read, engine_error) = (&read, &engine_error);
    std::thread::scope(|s| {
        // owned here: returning early drops it, so a worker blocked sending sees the channel
        // closed and stops before the scope joins it
        let rx = rx;
        for mut ws in carved {
            let (tx, next, stop) = (tx.clone(), &next, &stop);
            s.spawn(move || {
                let model = M2::new(blob, batch.kernels);
                let mut buf = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    let k = next.fetch_add(1, Ordering::Relaxed);
                    if k >= images {
                        break;
                    }
                    let t = Instant::now();
                    let r = read(k, &mut buf).and_then(|read| {
                        decode(&model, &buf, &mut ws, &batch.search, batch.greedy)
                            .map(|caption| Decoded {
                                caption,
                                read,
                                elapsed: t.elapsed(),
                            })
                            .map_err(|e| engine_error(Some(k), e))
                    });
                    if tx.send((k, r)).is_err() {
                        break;
                    }
                }
            });
        }
        drop(tx);
        let mut pending = BTreeMap::new();
        let mut emitted = 0;
        for (k, r) in rx.iter() {
            pending.insert(k, r);
            while let Some(r) = pending.remove(&emitted) {
                if let Err(e) = r.and_then(|d| emit(emitted, d)) {
                    stop.store(true, Ordering::Relaxed);
                    return Err(e);
                }
                emitted += 1;
            }
        }
        Ok(())
    })
}
