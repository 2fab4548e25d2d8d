//! f32 engine against the reference implementation's recorded outputs, on every fixture:
//! encoder levels, region mask, teacher-forced log-probs, beam search (tokens, captions, all
//! five scores, per-token log-probs), greedy decoding.

mod common;

use common::*;
use m2::blob::DType;
use m2::kernels::Kernels;
use m2::model::M2;
use m2::search::{beam_search, greedy, SearchOptions};
use m2::workspace::Workspace;
use m2::Blob;

fn image(feats: &Array<f32>, k: usize, valid: usize) -> &[f32] {
    let (r, d_in) = (feats.shape[1], feats.shape[2]);
    &feats.data[k * r * d_in..(k * r + valid) * d_in]
}

fn valid_regions(name: &str) -> Vec<usize> {
    expected(name)["valid_regions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as usize)
        .collect()
}

#[test]
fn encoder_levels_and_region_mask_match_reference() {
    for name in FIXTURES {
        let buf = packed(name, DType::F32);
        let blob = Blob::parse(&buf).unwrap();
        let model = M2::new(&blob, Kernels::SCALAR);
        let mut mem = WorkspaceBuf::new(&model, 1, 1);
        let mut ws = mem.workspace();
        let feats = npy_f32(name, "features.npy");
        let enc = npy_f32(name, "enc_outputs.npy");
        let mask = npy_bool(name, "enc_mask.npy");
        let (kk, r, d) = (enc.shape[0], enc.shape[2], enc.shape[3]);
        let valid = valid_regions(name);
        let mut worst = 0f32;
        for k in 0..kk {
            // both the valid rows alone (engine pads) and the file's zero-padded rows
            for n in [valid[k], r] {
                model.encode(image(&feats, k, n), &mut ws).unwrap();
                // one row stands for all padding rows: valid regions + 1 distinct rows
                let rows = valid[k] + usize::from(valid[k] < r);
                assert_eq!(ws.encoder_rows(), rows, "{name} image {k}: encoder rows");
                for l in 0..3 {
                    for i in 0..r {
                        let want = &enc.data[((k * 3 + l) * r + i) * d..][..d];
                        worst = worst.max(max_abs_diff(ws.encoder_row(l, i), want));
                    }
                }
                let got: Vec<bool> = (0..r).map(|i| ws.region_masked(i)).collect();
                assert_eq!(
                    got,
                    mask.data[k * r..(k + 1) * r],
                    "{name} image {k}: region mask"
                );
            }
        }
        assert!(worst < 1e-4, "{name}: encoder max abs diff {worst}");
        eprintln!("{name}: encoder max abs diff {worst:.2e}");
    }
}

#[test]
fn teacher_forced_logprobs_match_reference() {
    for name in FIXTURES {
        let buf = packed(name, DType::F32);
        let blob = Blob::parse(&buf).unwrap();
        let model = M2::new(&blob, Kernels::SCALAR);
        let feats = npy_f32(name, "features.npy");
        let tokens = npy_i64(name, "tf_tokens.npy");
        let want = npy_f32(name, "tf_logprobs.npy");
        let (kk, t_len, v) = (want.shape[0], want.shape[1], want.shape[2]);
        let mut mem = WorkspaceBuf::new(&model, 1, t_len);
        let mut ws = mem.workspace();
        let valid = valid_regions(name);
        let mut out = vec![0f32; t_len * v];
        let mut worst = 0f32;
        for k in 0..kk {
            let toks: Vec<u32> = tokens.data[k * t_len..(k + 1) * t_len]
                .iter()
                .map(|&t| t as u32)
                .collect();
            model
                .score(image(&feats, k, valid[k]), &toks, &mut ws, &mut out)
                .unwrap();
            worst = worst.max(max_abs_diff(
                &out,
                &want.data[k * t_len * v..(k + 1) * t_len * v],
            ));
        }
        assert!(
            worst < 1e-4,
            "{name}: teacher-forced log-prob max abs diff {worst}"
        );
        eprintln!("{name}: teacher-forced max abs diff {worst:.2e}");
    }
}

#[test]
fn beam_search_matches_reference() {
    for name in FIXTURES {
        let buf = packed(name, DType::F32);
        let blob = Blob::parse(&buf).unwrap();
        let model = M2::new(&blob, Kernels::SCALAR);
        let exp = expected(name);
        let feats = npy_f32(name, "features.npy");
        let best = npy_i64(name, "bs_tokens.npy");
        let best_lp = npy_f32(name, "bs_token_logprobs.npy");
        let all_tokens = npy_i64(name, "bs_all_tokens.npy");
        let all_scores = npy_f32(name, "bs_all_scores.npy");
        let opts = SearchOptions {
            beam: 5,
            max_len: 20,
        };
        let mut mem = WorkspaceBuf::new(&model, opts.beam, opts.max_len);
        let mut ws = mem.workspace();
        let valid = valid_regions(name);
        let word = |id: u32| blob.token(id);
        for k in 0..best.shape[0] {
            let mut steps = 0;
            let out = beam_search(&model, image(&feats, k, valid[k]), &mut ws, &opts, |e| {
                assert_eq!(e.step, steps);
                assert_eq!(e.best_tokens.len(), steps + 1);
                steps += 1;
            })
            .unwrap();
            assert_eq!(steps, 20);
            let top = out.best().unwrap();
            let want: Vec<u32> = best.data[k * 20..(k + 1) * 20]
                .iter()
                .map(|&t| t as u32)
                .collect();
            assert_eq!(
                top.tokens.as_slice(),
                want.as_slice(),
                "{name} image {k}: best beam"
            );
            let lp_err = max_abs_diff(&top.logprobs, &best_lp.data[k * 20..(k + 1) * 20]);
            assert!(
                lp_err < 1e-4,
                "{name} image {k}: per-token log-prob error {lp_err}"
            );
            for (b, beam) in out.beams.iter().enumerate() {
                let s = all_scores.data[k * 5 + b];
                assert!(
                    (beam.score - s).abs() < 1e-3,
                    "{name} image {k} beam {b}: {} vs {s}",
                    beam.score
                );
                let want: Vec<u32> = all_tokens.data[(k * 5 + b) * 20..(k * 5 + b + 1) * 20]
                    .iter()
                    .map(|&t| t as u32)
                    .collect();
                assert_eq!(
                    beam.tokens.as_slice(),
                    want.as_slice(),
                    "{name} image {k} beam {b}"
                );
            }
            let text = m2::text::caption_string(&top.tokens, word, false).unwrap();
            assert_eq!(
                text,
                exp["bs_captions_eval"][k].as_str().unwrap(),
                "{name} image {k}"
            );
            let raw = m2::text::caption_string(&top.tokens, word, true).unwrap();
            assert_eq!(
                raw,
                exp["bs_captions"][k].as_str().unwrap(),
                "{name} image {k} raw"
            );
        }
    }
}

#[test]
fn greedy_matches_reference() {
    for name in FIXTURES {
        let buf = packed(name, DType::F32);
        let blob = Blob::parse(&buf).unwrap();
        let model = M2::new(&blob, Kernels::SCALAR);
        let exp = expected(name);
        let feats = npy_f32(name, "features.npy");
        let mut mem = WorkspaceBuf::new(&model, 1, 20);
        let mut ws = mem.workspace();
        let valid = valid_regions(name);
        for (k, want) in exp["greedy_tokens"].as_array().unwrap().iter().enumerate() {
            let want: Vec<u32> = want
                .as_array()
                .unwrap()
                .iter()
                .map(|t| t.as_u64().unwrap() as u32)
                .collect();
            let out = greedy(&model, image(&feats, k, valid[k]), &mut ws, 20, |_, _| {}).unwrap();
            assert_eq!(
                out.tokens.as_slice(),
                want.as_slice(),
                "{name} image {k}: greedy"
            );
            let text = m2::text::caption_string(&out.tokens, |id| blob.token(id), true).unwrap();
            assert_eq!(text, exp["greedy_captions"][k].as_str().unwrap());
        }
    }
}

/// The padding rows are encoded once: passing an image's valid regions alone or zero-padded to
/// R gives the same bits; a zero row among the regions is a region of its own; an image of
/// zero rows only is one padding row.
#[test]
fn padding_rows_are_encoded_once() {
    let name = "small-s3";
    let buf = packed(name, DType::F32);
    let blob = Blob::parse(&buf).unwrap();
    let model = M2::new(&blob, Kernels::detect());
    let mut mem = WorkspaceBuf::new(&model, 5, 20);
    let mut ws = mem.workspace();
    let feats = npy_f32(name, "features.npy");
    let (r, d_in) = (feats.shape[1], feats.shape[2]);
    let k = 2; // 10 valid regions of 50
    let valid = valid_regions(name)[k];
    assert!(valid < r);
    let opts = SearchOptions {
        beam: 5,
        max_len: 20,
    };
    let run = |ws: &mut Workspace, x: &[f32]| {
        let out = beam_search(&model, x, ws, &opts, |_| {}).unwrap();
        let enc: Vec<f32> = (0..3).flat_map(|l| ws.encoder_output(l).to_vec()).collect();
        (ws.encoder_rows(), enc, out.best().unwrap().tokens.to_vec())
    };
    let alone = run(&mut ws, image(&feats, k, valid));
    let padded = run(&mut ws, image(&feats, k, r));
    assert_eq!(alone.0, valid + 1);
    assert_eq!(alone, padded, "valid rows alone vs zero-padded to R");
    let want: Vec<u32> = npy_i64(name, "bs_tokens.npy").data[k * 20..(k + 1) * 20]
        .iter()
        .map(|&t| t as u32)
        .collect();
    assert_eq!(alone.2, want);

    // a zero row before the last region is a region: valid + 1 regions, then the padding row
    let mut x = image(&feats, k, valid).to_vec();
    x.splice(d_in..d_in, std::iter::repeat_n(0.0, d_in));
    let (rows, _, _) = run(&mut ws, &x);
    assert_eq!(rows, valid + 2);

    // only zero rows: a single encoder row standing for all R
    let zeros = vec![0f32; 3 * d_in];
    let (rows, enc, tokens) = run(&mut ws, &zeros);
    assert_eq!(rows, 1);
    assert!(enc.iter().all(|v| v.is_finite()));
    assert!(!tokens.is_empty());
}

/// int8 GEMMs give the same bits on every kernel path, and so does everything around them
/// (attention scores eight keys at a time, softmax, log-softmax and LayerNorm rows in lockstep,
/// AVX-512-wide code on the avx512 path, the beam's top-k): every path's teacher-forced
/// log-probs and beams equal the scalar path's, bit for bit.
#[test]
fn int8_engine_is_the_same_bits_on_every_kernel_path() {
    for name in FIXTURES {
        let buf = packed(name, DType::I8);
        let blob = Blob::parse(&buf).unwrap();
        let feats = npy_f32(name, "features.npy");
        let valid = valid_regions(name);
        let toks: Vec<u32> = npy_i64(name, "bs_tokens.npy").data[..20]
            .iter()
            .map(|&t| t as u32)
            .collect();
        let v = blob.config().vocab as usize;
        let opts = SearchOptions {
            beam: 5,
            max_len: 20,
        };
        let run = |kernels: Kernels| {
            let model = M2::new(&blob, kernels);
            let mut mem = WorkspaceBuf::new(&model, opts.beam, opts.max_len);
            let mut ws = mem.workspace();
            let mut lp = vec![0f32; toks.len() * v];
            model
                .score(image(&feats, 0, valid[0]), &toks, &mut ws, &mut lp)
                .unwrap();
            let beams: Vec<_> = (0..valid.len())
                .map(|k| {
                    let out =
                        beam_search(&model, image(&feats, k, valid[k]), &mut ws, &opts, |_| {})
                            .unwrap();
                    beam_bits(&out)
                })
                .collect();
            (lp.iter().map(|x| x.to_bits()).collect::<Vec<_>>(), beams)
        };
        let want = run(Kernels::SCALAR);
        for isa in Kernels::available() {
            let got = run(Kernels::with_isa(isa).unwrap());
            assert!(
                got.0 == want.0,
                "{name}: {isa} teacher-forced log-probs differ"
            );
            assert!(got.1 == want.1, "{name}: {isa} beams differ");
        }
    }
}
