//! Camera frames (`m2::frame`) against the CLI's PNG path: the same regions, features, beams
//! and scores bit for bit, whatever the stride and polarity; shrinking; typed errors.

mod common;

use common::beam_bits as bits;
use common::WorkspaceBuf;
use m2::frame::{
    caption_frame, downscale_into, downscaled_len, fit_factor, frame_features, labels_len, Event,
    Frame, FrameError, FrameScratch, Polarity,
};
use m2::kernels::Kernels;
use m2::model::{EngineError, M2};
use m2::regions::{self, Gray, Params, Region, RegionError, D_IN};
use m2::search::{beam_search, BeamOutput, SearchOptions};
use m2::workspace::Workspace;
use m2::Blob;

const OPTS: SearchOptions = SearchOptions {
    beam: 5,
    max_len: 20,
};

/// The bundled 48×48 demo scenes `scenes/scene_0*.png`: file bytes and decoded pixels.
fn scenes() -> Vec<(String, Vec<u8>, Gray)> {
    let mut names: Vec<String> = std::fs::read_dir(common::asset("scenes"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.starts_with("scene_0") && n.ends_with(".png") && !n.contains("_x"))
        .collect();
    names.sort();
    assert!(names.len() >= 8, "bundled scenes: {names:?}");
    names
        .into_iter()
        .map(|n| {
            let bytes = std::fs::read(common::asset(&format!("scenes/{n}"))).unwrap();
            let g = regions::from_png(&bytes).unwrap();
            assert_eq!((g.width, g.height), (48, 48), "{n}");
            (n, bytes, g)
        })
        .collect()
}

/// `g`'s rows `stride` bytes apart, the gaps filled with bright pixels the extractor must never
/// read, the buffer ending right after the last row's pixels.
fn strided(g: &Gray, stride: usize) -> Vec<u8> {
    let mut buf = vec![255u8; (g.height - 1) * stride + g.width];
    for (y, row) in g.pixels.chunks_exact(g.width).enumerate() {
        buf[y * stride..y * stride + g.width].copy_from_slice(row);
    }
    buf
}

fn inverted(px: &[u8]) -> Vec<u8> {
    px.iter().map(|v| 255 - v).collect()
}

/// An event of `caption_frame`, owned.
#[derive(Debug, PartialEq)]
enum Seen {
    Regions(usize),
    Encoded,
    CrossKv,
    Step(usize, Vec<u32>, u32),
}

fn seen(ev: Event) -> Seen {
    match ev {
        Event::Regions(n) => Seen::Regions(n),
        Event::Encoded => Seen::Encoded,
        Event::CrossKv => Seen::CrossKv,
        Event::Step(s) => Seen::Step(s.step, s.best_tokens.to_vec(), s.best_score.to_bits()),
    }
}

/// Caller buffers for `caption_frame`, sized for a `w × h` frame and `max_regions`.
struct Buffers {
    labels: Vec<u16>,
    regions: Vec<Region>,
    features: Vec<f32>,
}

impl Buffers {
    fn new(w: usize, h: usize, max_regions: usize) -> Self {
        Buffers {
            labels: vec![0; labels_len(w, h)],
            regions: vec![Region::default(); max_regions],
            features: vec![0.0; max_regions * D_IN],
        }
    }

    fn scratch(&mut self) -> FrameScratch<'_> {
        FrameScratch {
            labels: &mut self.labels,
            regions: &mut self.regions,
            features: &mut self.features,
        }
    }
}

fn caption(
    model: &M2,
    ws: &mut Workspace,
    frame: &Frame,
    polarity: Polarity,
    bufs: &mut Buffers,
) -> (Result<BeamOutput, FrameError>, Vec<Seen>) {
    let mut events = Vec::new();
    let out = caption_frame(
        model,
        frame,
        polarity,
        &Params::DEMO,
        bufs.scratch(),
        ws,
        &OPTS,
        |ev| events.push(seen(ev)),
    );
    (out, events)
}

#[test]
fn caption_frame_equals_the_cli_path_bit_for_bit() {
    let buf = common::demo_blob();
    let blob = Blob::parse(&buf).unwrap();
    let max_regions = blob.config().max_regions as usize;
    for kernels in [Kernels::SCALAR, Kernels::detect()] {
        let model = M2::new(&blob, kernels);
        let mut mem = WorkspaceBuf::new(&model, OPTS.beam, OPTS.max_len);
        let mut ws = mem.workspace();
        for (name, png, g) in scenes() {
            // the CLI's --image path
            let (regs, feats) = regions::features_from_png(&png, max_regions).unwrap();
            let mut steps = Vec::new();
            let want = beam_search(&model, &feats, &mut ws, &OPTS, |e| {
                steps.push(Seen::Step(
                    e.step,
                    e.best_tokens.to_vec(),
                    e.best_score.to_bits(),
                ))
            })
            .unwrap();
            let mut want_events = vec![Seen::Regions(regs.len()), Seen::Encoded, Seen::CrossKv];
            want_events.extend(steps);
            assert_eq!(want_events.len(), 3 + OPTS.max_len);

            let (w, h) = (g.width, g.height);
            let mut bufs = Buffers::new(w, h, max_regions);
            let wide = strided(&g, w + 13);
            let inv = inverted(&g.pixels);
            let cases: [(&str, &[u8], usize, Polarity); 5] = [
                ("raw, auto", &g.pixels, w, Polarity::Auto),
                ("raw, bright-on-dark", &g.pixels, w, Polarity::BrightOnDark),
                ("stride w+13, auto", &wide, w + 13, Polarity::Auto),
                ("inverted, auto", &inv, w, Polarity::Auto),
                ("inverted, dark-on-bright", &inv, w, Polarity::DarkOnBright),
            ];
            for (case, px, stride, polarity) in cases {
                let frame = Frame::new(px, w, h, stride).unwrap();
                let (out, events) = caption(&model, &mut ws, &frame, polarity, &mut bufs);
                let out = out.unwrap_or_else(|e| panic!("{name} {case}: {e}"));
                assert_eq!(bits(&out), bits(&want), "{name} {case} ({kernels:?})");
                assert_eq!(events, want_events, "{name} {case}: events");
                assert_eq!(&bufs.regions[..regs.len()], &regs[..], "{name} {case}");
            }
        }
    }
}

#[test]
fn strided_and_inverted_frames_give_the_features_of_the_contiguous_canvas() {
    let common::Array {
        shape,
        data: scenes,
    } = common::npy::<u8>(&common::asset("test_scenes.npy"));
    let (k, h, w) = (shape[0], shape[1], shape[2]);
    let r = 4;
    let mut labels = vec![0u16; labels_len(w, h)];
    let (mut want_regs, mut regs) = (vec![Region::default(); r], vec![Region::default(); r]);
    let (mut want, mut got) = (vec![0f32; r * D_IN], vec![0f32; r * D_IN]);
    let to_bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    for i in 0..k {
        let px = &scenes[i * w * h..(i + 1) * w * h];
        let g = Gray {
            width: w,
            height: h,
            pixels: px.to_vec(),
        };
        let n = regions::extract(
            px,
            w,
            h,
            &Params::DEMO,
            &mut labels,
            &mut want_regs,
            &mut want,
        )
        .unwrap();
        let inv = inverted(px);
        let inv_wide = strided(
            &Gray {
                width: w,
                height: h,
                pixels: inv.clone(),
            },
            w + 7,
        );
        let wide = strided(&g, w + 13);
        let cases: [(&[u8], usize, Polarity); 6] = [
            (px, w, Polarity::BrightOnDark),
            (&wide, w + 13, Polarity::BrightOnDark),
            (&wide, w + 13, Polarity::Auto),
            (&inv, w, Polarity::DarkOnBright),
            (&inv, w, Polarity::Auto),
            (&inv_wide, w + 7, Polarity::Auto),
        ];
        for (c, (buf, stride, polarity)) in cases.into_iter().enumerate() {
            got.fill(f32::NAN);
            let frame = Frame::new(buf, w, h, stride).unwrap();
            let m = frame_features(
                &frame,
                polarity,
                &Params::DEMO,
                &mut labels,
                &mut regs,
                &mut got,
            )
            .unwrap();
            assert_eq!(m, n, "scene {i} case {c}");
            assert_eq!(regs[..n], want_regs[..n], "scene {i} case {c}");
            assert_eq!(to_bits(&got), to_bits(&want), "scene {i} case {c}");
        }
    }
}

/// [`frame_features`] with `Polarity::Auto` and a labels buffer of its own.
fn auto_features(frame: &Frame, regs: &mut [Region], feats: &mut [f32]) -> usize {
    let mut labels = vec![0u16; labels_len(frame.width(), frame.height())];
    frame_features(
        frame,
        Polarity::Auto,
        &Params::DEMO,
        &mut labels,
        regs,
        feats,
    )
    .unwrap()
}

#[test]
fn upscaled_frames_shrink_back_to_the_same_regions() {
    let (mut want_regs, mut regs) = ([Region::default(); 4], [Region::default(); 4]);
    let (mut want, mut got) = ([0f32; 4 * D_IN], [0f32; 4 * D_IN]);
    for (name, _, g) in scenes() {
        let (w, h) = (g.width, g.height);
        let small = Frame::new(&g.pixels, w, h, w).unwrap();
        let n = auto_features(&small, &mut want_regs, &mut want);
        assert!(n > 0, "{name}");

        // each pixel repeated 4×4, in a strided buffer: 192×192
        let (bw, bh, stride) = (4 * w, 4 * h, 4 * w + 5);
        let mut big = vec![0u8; bh * stride];
        for y in 0..bh {
            for x in 0..bw {
                big[y * stride + x] = g.pixels[(y / 4) * w + x / 4];
            }
        }
        let big = Frame::new(&big, bw, bh, stride).unwrap();
        assert_eq!(
            fit_factor(bw, bh),
            1,
            "192×192 is within the extractor's limits"
        );
        let mut out = vec![0u8; downscaled_len(bw, bh, 4)];
        let back = downscale_into(&big, 4, &mut out).unwrap();
        assert_eq!((back.width(), back.height(), back.stride()), (w, h, w));
        assert_eq!(back.pixels(), &g.pixels[..], "{name}: 4×4 block means");
        let m = auto_features(&back, &mut regs, &mut got);
        assert_eq!((m, &regs[..n]), (n, &want_regs[..n]), "{name}");
        assert_eq!(got.map(f32::to_bits), want.map(f32::to_bits), "{name}");

        // 8× (384×384) is too big: fit_factor 2 and downscale_into are what the CLI uses
        let x8_png = common::asset(&format!("scenes/{}", name.replace(".png", "_x8.png")));
        let x8 = regions::from_png(&std::fs::read(x8_png).unwrap()).unwrap();
        let f = fit_factor(x8.width, x8.height);
        assert_eq!(f, 2);
        let frame = Frame::new(&x8.pixels, x8.width, x8.height, x8.width).unwrap();
        assert!(!frame.fits());
        let mut out = vec![0u8; downscaled_len(x8.width, x8.height, f)];
        let shrunk = downscale_into(&frame, f, &mut out).unwrap();
        assert!(shrunk.fits());
        let cli = regions::downscale_to_fit(x8.clone());
        assert_eq!((cli.width, cli.height), (shrunk.width(), shrunk.height()));
        assert_eq!(&cli.pixels[..], shrunk.pixels(), "{name}: one box filter");
        let m = auto_features(&shrunk, &mut regs, &mut got);
        assert_eq!(m, n, "{name}: same number of regions after ×8 and /2");
    }
}

#[test]
fn bad_frames_and_buffers_are_typed_errors() {
    // frame shapes
    let px = vec![0u8; 48 * 48];
    assert_eq!(
        Frame::new(&px, 48, 48, 47).unwrap_err(),
        RegionError::StrideTooSmall {
            width: 48,
            stride: 47
        }
    );
    assert_eq!(
        Frame::new(&px[..48 * 48 - 1], 48, 48, 48).unwrap_err(),
        RegionError::BufferTooShort {
            needed: 48 * 48,
            got: 48 * 48 - 1
        }
    );
    for (w, h, s) in [
        (usize::MAX, 1, usize::MAX),
        (usize::MAX, 2, usize::MAX),
        (1, usize::MAX, 1),
        (usize::MAX / 2, 3, usize::MAX / 2 + 1),
        (0, 5, 5),
        (5, 0, 5),
    ] {
        assert!(Frame::new(&px, w, h, s).is_err(), "{w}x{h} stride {s}");
    }
    assert_eq!(labels_len(usize::MAX, usize::MAX), usize::MAX);
    assert_eq!(fit_factor(usize::MAX, usize::MAX), usize::MAX.div_ceil(255));
    assert_eq!(downscaled_len(usize::MAX, 3, 0), 0);

    let buf = common::demo_blob();
    let blob = Blob::parse(&buf).unwrap();
    let max_regions = blob.config().max_regions as usize;
    let model = M2::new(&blob, Kernels::SCALAR);
    let mut mem = WorkspaceBuf::new(&model, OPTS.beam, OPTS.max_len);
    let mut ws = mem.workspace();
    let (_, _, g) = scenes().swap_remove(0);
    let frame = Frame::new(&g.pixels, 48, 48, 48).unwrap();
    let mut run =
        |frame: &Frame, bufs: &mut Buffers| caption(&model, &mut ws, frame, Polarity::Auto, bufs);

    // an all-black frame: no region (the extraction itself ran)
    let black = Frame::new(&px, 48, 48, 48).unwrap();
    let (out, events) = run(&black, &mut Buffers::new(48, 48, max_regions));
    assert_eq!(out.unwrap_err(), FrameError::NoRegion);
    assert_eq!(events, vec![Seen::Regions(0)]);

    // too-small caller buffers
    let mut bufs = Buffers::new(48, 48, max_regions);
    bufs.labels.truncate(48 * 48 - 1);
    assert_eq!(
        run(&frame, &mut bufs).0.unwrap_err(),
        FrameError::Regions(RegionError::ScratchTooSmall {
            needed: 48 * 48,
            got: 48 * 48 - 1
        })
    );
    let mut bufs = Buffers::new(48, 48, max_regions);
    bufs.regions.truncate(max_regions - 1);
    assert_eq!(
        run(&frame, &mut bufs).0.unwrap_err(),
        FrameError::Regions(RegionError::OutputTooSmall {
            needed: max_regions,
            got: max_regions - 1
        })
    );
    let mut bufs = Buffers::new(48, 48, max_regions);
    bufs.features.truncate(max_regions * D_IN - 1);
    let (out, events) = run(&frame, &mut bufs);
    assert_eq!(
        out.unwrap_err(),
        FrameError::Regions(RegionError::OutputTooSmall {
            needed: max_regions * D_IN,
            got: max_regions * D_IN - 1
        })
    );
    assert!(events.is_empty());
    // more regions than the model takes are fine: the first max_regions are used
    let mut bufs = Buffers::new(48, 48, max_regions + 3);
    assert!(run(&frame, &mut bufs).0.is_ok());

    // a frame too large for the extractor (shrink it first)
    let big = vec![0u8; 300 * 300];
    let big = Frame::new(&big, 300, 300, 300).unwrap();
    assert_eq!(
        run(&big, &mut Buffers::new(300, 300, max_regions))
            .0
            .unwrap_err(),
        FrameError::Regions(RegionError::CanvasTooBig { w: 300, h: 300 })
    );
    let mut out = [0u8; 8];
    assert_eq!(
        downscale_into(&big, 0, &mut out).unwrap_err(),
        RegionError::ZeroFactor
    );
    assert!(matches!(
        downscale_into(&big, 2, &mut out),
        Err(RegionError::OutputTooSmall { .. })
    ));

    // search options the workspace was not planned for: refused before anything runs
    let mut events = Vec::new();
    let err = caption_frame(
        &model,
        &frame,
        Polarity::Auto,
        &Params::DEMO,
        Buffers::new(48, 48, max_regions).scratch(),
        &mut ws,
        &SearchOptions {
            beam: OPTS.beam + 1,
            max_len: OPTS.max_len,
        },
        |ev| events.push(seen(ev)),
    )
    .unwrap_err();
    assert!(matches!(
        err,
        FrameError::Engine(EngineError::PlanMismatch { .. })
    ));
    assert!(events.is_empty());
    for e in [
        FrameError::NoRegion,
        FrameError::Regions(RegionError::ZeroFactor),
        FrameError::Engine(EngineError::NotEncoded),
    ] {
        assert!(!e.to_string().is_empty());
        let _: &dyn std::error::Error = &e;
    }
}
