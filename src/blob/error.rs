//! Errors of the blob reader.

/// Why a byte string is not a valid M2 blob.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum BlobError {
    /// Placeholder while the reader is written.
    Todo,
}
