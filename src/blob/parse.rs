//! PLACEHOLDER with the contract's signatures; the real reader replaces this file.
use super::{BlobError, Matrix, TensorKind};
use crate::config::Config;

/// A validated blob viewed in place.
#[derive(Clone, Copy, Debug)]
pub struct Blob<'a> {
    config: Config,
    bytes: &'a [u8],
}

impl<'a> Blob<'a> {
    /// Validate `bytes` and view them as a blob.
    pub fn parse(bytes: &'a [u8]) -> Result<Blob<'a>, BlobError> {
        let _ = bytes;
        Err(BlobError::Todo)
    }
    /// The model's hyper-parameters.
    pub fn config(&self) -> &Config {
        &self.config
    }
    /// A weight matrix (`layer` is 0 for non-layer tensors).
    pub fn matrix(&self, kind: TensorKind, layer: usize) -> Matrix<'a> {
        let _ = (kind, layer, self.bytes);
        unimplemented!()
    }
    /// An f32 vector or f32 table (biases, LayerNorm, memory slots, positional table).
    pub fn vector(&self, kind: TensorKind, layer: usize) -> &'a [f32] {
        let _ = (kind, layer);
        unimplemented!()
    }
    /// The bytes of token `id`.
    pub fn token(&self, id: u32) -> Option<&'a [u8]> {
        let _ = id;
        None
    }
}
