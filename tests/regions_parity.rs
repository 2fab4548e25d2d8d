//! The demo's region extractor (`m2::regions`, the one definition) against the bundled scenes:
//! Rust features from `assets/demo/test_scenes.npy` must equal, bit for bit, the features the
//! training pipeline's Python twin wrote to `assets/demo/test_features.npy` (and trained on).

mod common;

use common::{asset, npy, Array};
use m2::regions::{self, Params, Region, D_IN};

#[test]
fn rust_extractor_equals_bundled_features_bit_for_bit() {
    let Array {
        shape: ss,
        data: scenes,
    } = npy::<u8>(&asset("test_scenes.npy"));
    let Array {
        shape: fs,
        data: feats,
    } = npy::<f32>(&asset("test_features.npy"));
    let (k, h, w) = (ss[0], ss[1], ss[2]);
    let (r, d) = (fs[1], fs[2]);
    assert_eq!(fs[0], k);
    assert_eq!(d, D_IN);
    let mut scratch = vec![0u16; w * h];
    let mut regs = vec![Region::default(); r];
    let mut out = vec![0f32; r * D_IN];
    let mut mismatched = 0;
    for i in 0..k {
        let px = &scenes[i * w * h..(i + 1) * w * h];
        let n =
            regions::extract(px, w, h, &Params::DEMO, &mut scratch, &mut regs, &mut out).unwrap();
        assert!((1..=r).contains(&n), "scene {i}: {n} regions");
        let want = &feats[i * r * d..(i + 1) * r * d];
        if out
            .iter()
            .zip(want)
            .any(|(a, b)| a.to_bits() != b.to_bits())
        {
            mismatched += 1;
            eprintln!("scene {i}: features differ");
        }
    }
    assert_eq!(mismatched, 0, "{mismatched} of {k} scenes differ");
}

#[test]
fn bundled_pngs_decode_to_the_bundled_pixels() {
    let Array {
        shape: ss,
        data: scenes,
    } = npy::<u8>(&asset("test_scenes.npy"));
    let (h, w) = (ss[1], ss[2]);
    let mut seen = 0;
    for i in 0..ss[0] {
        let p = asset(&format!("scenes/scene_{i:02}.png"));
        if !p.exists() {
            continue;
        }
        let g = regions::from_png(&std::fs::read(&p).unwrap()).unwrap();
        assert_eq!((g.width, g.height), (w, h));
        assert_eq!(g.pixels, &scenes[i * w * h..(i + 1) * w * h], "scene {i}");
        seen += 1;
    }
    assert!(
        seen >= 8,
        "expected at least 8 bundled scene PNGs, found {seen}"
    );
}

#[test]
fn inverted_drawing_gives_the_same_regions() {
    let Array {
        shape: ss,
        data: scenes,
    } = npy::<u8>(&asset("test_scenes.npy"));
    let (h, w) = (ss[1], ss[2]);
    let px = &scenes[..w * h];
    let mut inv: Vec<u8> = px.iter().map(|v| 255 - v).collect();
    assert!(regions::invert_if_light_background(&mut inv, w, h));
    assert_eq!(inv, px);
    let mut again = px.to_vec();
    assert!(!regions::invert_if_light_background(&mut again, w, h));
}

#[test]
fn typed_errors_for_bad_canvases() {
    use regions::RegionError;
    let mut scratch = vec![0u16; 16];
    let mut regs = [Region::default(); 4];
    let mut out = [0f32; 4 * D_IN];
    let p = Params::DEMO;
    assert_eq!(
        regions::extract(&[], 0, 0, &p, &mut scratch, &mut regs, &mut out),
        Err(RegionError::ZeroSize { w: 0, h: 0 })
    );
    assert!(matches!(
        regions::extract(
            &vec![0; 300 * 300],
            300,
            300,
            &p,
            &mut scratch,
            &mut regs,
            &mut out
        ),
        Err(RegionError::CanvasTooBig { .. })
    ));
    assert_eq!(
        regions::extract(&[0; 25], 5, 5, &p, &mut scratch, &mut regs, &mut out),
        Err(RegionError::ScratchTooSmall {
            needed: 25,
            got: 16
        })
    );
    assert_eq!(
        regions::extract(&[0; 16], 4, 4, &p, &mut scratch, &mut regs, &mut out[..10]),
        Err(RegionError::OutputTooSmall {
            needed: 4 * D_IN,
            got: 10
        })
    );
    // an empty canvas has no regions (the engine reports NoRegions for it)
    assert_eq!(
        regions::extract(&[0; 16], 4, 4, &p, &mut scratch, &mut regs, &mut out),
        Ok(0)
    );
    // a sparse grid of isolated dots: 400 components
    let (w, h) = (60, 60);
    let mut grid = vec![0u8; w * h];
    for y in (0..h).step_by(3) {
        for x in (0..w).step_by(3) {
            grid[y * w + x] = 255;
        }
    }
    let mut big = vec![0u16; w * h];
    assert_eq!(
        regions::extract(&grid, w, h, &p, &mut big, &mut regs, &mut out),
        Err(RegionError::TooManyComponents)
    );
}

#[test]
fn large_pngs_are_shrunk_to_fit_and_keep_their_regions() {
    for i in 0..8 {
        let raw =
            regions::from_png(&std::fs::read(asset(&format!("scenes/scene_{i:02}.png"))).unwrap())
                .unwrap();
        let big = std::fs::read(asset(&format!("scenes/scene_{i:02}_x8.png"))).unwrap();
        let g = regions::downscale_to_fit(regions::from_png(&big).unwrap());
        assert_eq!((g.width, g.height), (192, 192), "384x384 shrinks by 2");
        let (r_big, _) = regions::features_from_png(&big, 4).unwrap();
        let mut scratch = vec![0u16; raw.width * raw.height];
        let mut regs = [Region::default(); 4];
        let n = regions::find_regions(
            &raw.pixels,
            raw.width,
            raw.height,
            &Params::DEMO,
            &mut scratch,
            &mut regs,
        )
        .unwrap();
        assert_eq!(
            r_big.len(),
            n,
            "scene {i}: same number of regions after x8 and /2"
        );
    }
}
