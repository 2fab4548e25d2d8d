//! Shared helpers of the blob/pack tests: fixtures, packing, re-signing, field patching.
#![allow(dead_code)]

use m2::blob::{self, entry, hdr, AlignedBuf, DType, TensorKind, ENTRY_LEN};
use m2::pack::{pack, read_vocab_json, PackOptions};
use safetensors::{Dtype, SafeTensors};
use std::path::PathBuf;

pub const FIXTURES: [&str; 3] = ["tiny-s0", "tiny-s2-masked", "small-s3"];
pub const DTYPES: [DType; 4] = [DType::F32, DType::F16, DType::I8, DType::I8A16];

pub fn fixture_dir(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

pub fn checkpoint(name: &str) -> Vec<u8> {
    std::fs::read(fixture_dir(name).join("model.safetensors")).expect("fixture checkpoint")
}

pub fn vocab(name: &str) -> Vec<Vec<u8>> {
    read_vocab_json(&std::fs::read(fixture_dir(name).join("vocab.json")).unwrap()).unwrap()
}

/// The options the fixture needs (tiny: 4 heads, 10 regions; small: 8 heads, 50 regions).
pub fn options(name: &str, dtype: DType) -> PackOptions {
    if name.starts_with("tiny") {
        PackOptions {
            dtype,
            heads: 4,
            max_regions: 10,
            ..PackOptions::default()
        }
    } else {
        PackOptions {
            dtype,
            heads: 8,
            max_regions: 50,
            ..PackOptions::default()
        }
    }
}

/// Pack a fixture into an aligned buffer.
pub fn packed(name: &str, dtype: DType) -> AlignedBuf {
    let bytes = pack(&checkpoint(name), &vocab(name), &options(name, dtype)).expect("pack");
    AlignedBuf::from_bytes(&bytes)
}

/// The tiny-s0 blob at f32 — the small valid blob most rejection tests corrupt.
pub fn tiny() -> AlignedBuf {
    packed("tiny-s0", DType::F32)
}

/// A checkpoint tensor as f32 values and its shape.
pub fn tensor_f32(st: &SafeTensors<'_>, key: &str) -> (Vec<f32>, Vec<usize>) {
    let t = st.tensor(key).unwrap_or_else(|_| panic!("missing {key}"));
    assert_eq!(t.dtype(), Dtype::F32);
    let v = t
        .data()
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    (v, t.shape().to_vec())
}

/// Re-sign after editing.
pub fn resign(b: &mut [u8]) {
    blob::sign(b);
}

pub fn put_u16(b: &mut [u8], off: usize, v: u16) {
    b[off..off + 2].copy_from_slice(&v.to_le_bytes());
}
pub fn put_u32(b: &mut [u8], off: usize, v: u32) {
    b[off..off + 4].copy_from_slice(&v.to_le_bytes());
}
pub fn put_u64(b: &mut [u8], off: usize, v: u64) {
    b[off..off + 8].copy_from_slice(&v.to_le_bytes());
}
pub fn get_u32(b: &[u8], off: usize) -> u32 {
    u32::from_le_bytes(b[off..off + 4].try_into().unwrap())
}
pub fn get_u64(b: &[u8], off: usize) -> u64 {
    u64::from_le_bytes(b[off..off + 8].try_into().unwrap())
}

pub fn table_off(b: &[u8]) -> usize {
    get_u64(b, hdr::TABLE_OFF) as usize
}

/// Absolute offset of field `field` (an `entry::*` constant) of table entry `i`.
pub fn entry_field(b: &[u8], i: usize, field: usize) -> usize {
    table_off(b) + i * ENTRY_LEN + field
}

/// Index of the table entry of `(kind, layer)`.
pub fn entry_index(b: &[u8], kind: TensorKind, layer: u16) -> usize {
    let n = get_u32(b, hdr::N_TENSORS) as usize;
    (0..n)
        .find(|&i| {
            let k =
                u16::from_le_bytes(b[entry_field(b, i, entry::KIND)..][..2].try_into().unwrap());
            let l = u16::from_le_bytes(
                b[entry_field(b, i, entry::LAYER)..][..2]
                    .try_into()
                    .unwrap(),
            );
            k == kind.code() && l == layer
        })
        .expect("entry")
}

/// Apply `edit` to a copy of `base`, re-sign, and parse.
pub fn edited(base: &[u8], edit: impl FnOnce(&mut Vec<u8>)) -> Result<(), m2::BlobError> {
    let mut v = base.to_vec();
    edit(&mut v);
    resign(&mut v);
    let buf = AlignedBuf::from_bytes(&v);
    m2::Blob::parse(&buf).map(|_| ())
}

/// A very small valid config (a few KB blob) for fast fuzzing.
pub fn micro_config() -> m2::Config {
    m2::Config {
        d_in: 8,
        d_model: 8,
        h: 2,
        d_k: 4,
        d_v: 4,
        d_ff: 16,
        n_enc: 3,
        n_dec: 1,
        m: 2,
        vocab: 6,
        pos_rows: 4,
        max_regions: 3,
        pad: 0,
        unk: 1,
        bos: 2,
        eos: 3,
        enc_pad_value: 0.0,
    }
}

/// A micro blob; `mixed` cycles weights through f32/f16/int8.
pub fn micro(mixed: bool) -> Vec<u8> {
    micro_with(mixed, |_, _, _| {})
}

/// A micro blob whose tensor values `edit(kind, layer, values)` may change before packing.
pub fn micro_with(mixed: bool, edit: impl Fn(TensorKind, u16, &mut [f32])) -> Vec<u8> {
    use m2::blob::{BlobWriter, Class, TensorData};
    let cfg = micro_config();
    let mut w = BlobWriter::new(cfg);
    for (i, (kind, layer)) in TensorKind::required(&cfg).enumerate() {
        let (r, c) = kind.shape(&cfg);
        let n = r as usize * c as usize;
        let mut vals: Vec<f32> = (0..n)
            .map(|j| ((j * 5 + i) % 11) as f32 * 0.25 - 1.0)
            .collect();
        edit(kind, layer, &mut vals);
        let dtype = if mixed && kind.class() == Class::Weight {
            DTYPES[i % 3]
        } else {
            DType::F32
        };
        w.add(kind, layer, TensorData::from_f32(&vals, c as usize, dtype));
    }
    w.vocab(vec![
        b"<pad>".to_vec(),
        b"<unk>".to_vec(),
        b"<bos>".to_vec(),
        b"<eos>".to_vec(),
        b" ".to_vec(),
        b"\n".to_vec(),
    ]);
    w.finish().expect("micro blob")
}
