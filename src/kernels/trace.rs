//! Watching the inputs of every linear layer (std only) — what int8 calibration needs
//! (`pack::calibrate`): while [`observe_linears`] runs its body on this thread, every
//! [`Kernels::linear`](super::Kernels::linear) call first hands the observer the weight's
//! address ([`weight_address`]), its input rows `x [n, k]` and `n`. Outside it, a linear costs
//! one thread-local read more.

use crate::blob::{Matrix, WeightData};
use std::boxed::Box;
use std::cell::RefCell;

/// Called with (weight address, `x [n, k]`, `n`) before each linear on the observing thread.
pub type LinearObserver = Box<dyn FnMut(usize, &[f32], usize)>;

std::thread_local! {
    static OBSERVER: RefCell<Option<LinearObserver>> = const { RefCell::new(None) };
}

/// Run `body` with `observer` watching this thread's linears; returns the body's result and
/// the observer (with whatever it accumulated). Nested calls replace the outer observer for
/// their duration.
pub fn observe_linears<R>(
    observer: LinearObserver,
    body: impl FnOnce() -> R,
) -> (R, LinearObserver) {
    let outer = OBSERVER.with(|o| o.borrow_mut().replace(observer));
    let r = body();
    let mine = OBSERVER.with(|o| core::mem::replace(&mut *o.borrow_mut(), outer));
    (r, mine.expect("the observer is only taken out here"))
}

/// The address that identifies a weight matrix to an observer: where its data starts.
pub fn weight_address(w: &Matrix<'_>) -> usize {
    match w.data {
        WeightData::F32(d) => d.as_ptr() as usize,
        WeightData::F16(d) => d.as_ptr() as usize,
        WeightData::I8 { q, .. } => q.as_ptr() as usize,
    }
}

/// Hand `x [n, k]` to the observer, if one is installed on this thread.
#[inline]
pub(super) fn observe(w: &Matrix<'_>, x: &[f32], n: usize) {
    OBSERVER.with(|o| {
        // a linear called from inside the observer itself is not observed
        if let Ok(mut slot) = o.try_borrow_mut() {
            if let Some(f) = slot.as_mut() {
                f(weight_address(w), x, n);
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::{Kernels, QuantScratch};
    use std::rc::Rc;
    use std::vec::Vec;

    #[test]
    fn the_observer_sees_each_linear_and_only_while_installed() {
        let w = [1f32, 2.0, 3.0, 4.0, 5.0, 6.0]; // [3, 2]
        let m = Matrix {
            rows: 3,
            cols: 2,
            data: WeightData::F32(&w),
        };
        let x = [1f32, -1.0, 0.5, 2.0]; // [2, 2]
        let (mut y, mut q, mut s) = ([0f32; 6], [0i8; 4], [0f32; 2]);
        let seen = Rc::new(RefCell::new(Vec::new()));
        let log = Rc::clone(&seen);
        let run = |y: &mut [f32], q: &mut [i8], s: &mut [f32]| {
            let mut qs = QuantScratch { q, scales: s };
            Kernels::SCALAR.linear(&x, 2, &m, None, y, &mut qs);
        };
        let ((), _) = observe_linears(
            Box::new(move |addr, x, n| log.borrow_mut().push((addr, x.to_vec(), n))),
            || run(&mut y, &mut q, &mut s),
        );
        run(&mut y, &mut q, &mut s); // not observed
        let seen = seen.borrow();
        assert_eq!(seen.len(), 1);
        assert_eq!(seen[0], (weight_address(&m), x.to_vec(), 2));
        assert_eq!(y, [-1.0, -1.0, -1.0, 4.5, 9.5, 14.5]);
    }
}
