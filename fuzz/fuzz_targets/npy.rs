//! The `.npy` feature reader (`m2 caption --features`, `m2-pack --calibrate`): any bytes give
//! features of the declared shape or an error, never a panic or an allocation beyond the file.
#![no_main]
use libfuzzer_sys::fuzz_target;
use std::io::Write;

fuzz_target!(|data: &[u8]| {
    // The reader takes a path: one scratch file per process in /dev/shm (or the temp dir).
    thread_local! {
        static PATH: std::path::PathBuf = {
            let dir = if std::path::Path::new("/dev/shm").is_dir() {
                std::path::PathBuf::from("/dev/shm")
            } else {
                std::env::temp_dir()
            };
            dir.join(format!("m2-fuzz-npy-{}.npy", std::process::id()))
        };
    }
    PATH.with(|p| {
        std::fs::File::create(p).unwrap().write_all(data).unwrap();
        for d_in in [2usize, 72] {
            if let Ok(f) = m2::input::read_features(p, d_in) {
                assert_eq!(f.data.len(), f.images * f.regions * f.d_in);
                let _ = f.image(f.images - 1);
            }
        }
    });
});
