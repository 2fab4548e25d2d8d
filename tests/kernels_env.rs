//! `M2_KERNEL` handling (one test: the environment is process-wide).
#![cfg(feature = "std")]

use m2::kernels::{Isa, KernelError, Kernels};

#[test]
fn m2_kernel_env() {
    let best = Kernels::detect();
    std::env::remove_var("M2_KERNEL");
    assert_eq!(Kernels::from_env(), Ok(best));
    std::env::set_var("M2_KERNEL", "");
    assert_eq!(Kernels::from_env(), Ok(best));
    std::env::set_var("M2_KERNEL", "Scalar");
    assert_eq!(Kernels::from_env(), Ok(Kernels::SCALAR));
    for isa in Isa::ALL {
        std::env::set_var("M2_KERNEL", isa.name());
        match Kernels::from_env() {
            Ok(k) => assert_eq!(k.isa(), isa),
            Err(e) => {
                assert_eq!(e, KernelError::Unavailable(isa));
                assert!(!isa.is_available());
                assert_eq!(e.fallback(), best);
                let msg = e.to_string();
                assert!(
                    msg.contains(isa.name()) && msg.contains(best.isa().name()),
                    "{msg}"
                );
            }
        }
    }
    // AVX-VNNI by name; `avx2` still forces plain AVX2 where VNNI is the detected path.
    std::env::set_var("M2_KERNEL", " AvxVnni ");
    match Kernels::from_env() {
        Ok(k) => {
            assert_eq!(k.isa(), Isa::AvxVnni);
            assert!(matches!(best.isa(), Isa::AvxVnni | Isa::Avx512));
        }
        Err(e) => {
            assert_eq!(e, KernelError::Unavailable(Isa::AvxVnni));
            assert!(e.to_string().contains("avxvnni"), "{e}");
            println!("note: AVX-VNNI not available here: M2_KERNEL=avxvnni -> {e}");
        }
    }
    // AVX-512 by name: forced where the CPU has it, else the warning and the detected path.
    std::env::set_var("M2_KERNEL", "AVX512");
    match Kernels::from_env() {
        Ok(k) => {
            assert_eq!(k.isa(), Isa::Avx512);
            assert_eq!(best.isa(), Isa::Avx512);
        }
        Err(e) => {
            assert_eq!(e, KernelError::Unavailable(Isa::Avx512));
            assert_eq!(e.fallback(), best);
            let msg = e.to_string();
            assert!(
                msg.contains("M2_KERNEL=avx512") && msg.contains(best.isa().name()),
                "{msg}"
            );
            println!("note: AVX-512 not available here: M2_KERNEL=avx512 -> {e}");
        }
    }
    // What a host without AVX-512 is told (built here by hand: this host may have it).
    let e = KernelError::Unavailable(Isa::Avx512);
    assert_eq!(e.fallback(), best);
    assert_eq!(
        e.to_string(),
        format!(
            "M2_KERNEL=avx512: this CPU or build cannot run it (the best here is {})",
            best.isa()
        )
    );
    if Isa::Avx2.is_available() {
        std::env::set_var("M2_KERNEL", "avx2");
        assert_eq!(Kernels::from_env().map(|k| k.isa()), Ok(Isa::Avx2));
    }
    std::env::set_var("M2_KERNEL", "avx1024");
    let e = Kernels::from_env().unwrap_err();
    assert_eq!(e, KernelError::Unknown("avx1024".into()));
    let msg = e.to_string();
    assert!(msg.contains("\"avx1024\""), "{msg}");
    for isa in Isa::ALL {
        assert!(msg.contains(isa.name()), "{msg} does not list {isa}");
    }
    std::env::remove_var("M2_KERNEL");
}
