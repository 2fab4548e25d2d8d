//! From word ids to caption text, exactly as the reference prints it (docs/SPEC.md §11):
//! map ids through the vocabulary, stop at the first token whose string is `<eos>`, then
//! (evaluation form) collapse runs of identical consecutive words, join with single spaces and
//! strip surrounding whitespace; the raw form only joins. Nothing else is filtered: `<unk>`,
//! `<pad>` and whitespace tokens such as `" "` or `"\n"` pass through verbatim.

/// The `<eos>` token string.
pub const EOS: &[u8] = b"<eos>";

/// Why a caption could not be written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TextError {
    /// The output buffer is too small; `needed` bytes would fit the caption.
    BufferTooSmall { needed: usize },
    /// An id has no vocabulary entry.
    UnknownId(u32),
}

impl core::fmt::Display for TextError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            TextError::BufferTooSmall { needed } => write!(f, "caption needs {needed} bytes"),
            TextError::UnknownId(id) => write!(f, "word id {id} is not in the vocabulary"),
        }
    }
}

#[cfg(feature = "std")]
impl std::error::Error for TextError {}

/// Python's `str.isspace` on ASCII: `\t \n \v \f \r`, `\x1c..\x1f` and space.
fn is_py_space(b: u8) -> bool {
    matches!(b, b'\t' | b'\n' | 0x0b | 0x0c | b'\r' | 0x1c..=0x1f | b' ')
}

/// Write the caption of `ids` into `out`, returning its length. `word(id)` looks a token up.
/// `raw = false` gives test.py's form (collapse + strip), `raw = true` the plain join.
pub fn caption<'v>(
    ids: &[u32],
    word: impl Fn(u32) -> Option<&'v [u8]>,
    raw: bool,
    out: &mut [u8],
) -> Result<usize, TextError> {
    let mut len = 0usize;
    let mut prev: Option<&[u8]> = None;
    let mut first = true;
    let mut push = |bytes: &[u8], len: &mut usize| {
        let end = *len + bytes.len();
        if end <= out.len() {
            out[*len..end].copy_from_slice(bytes);
        }
        *len = end;
    };
    for &id in ids {
        let w = word(id).ok_or(TextError::UnknownId(id))?;
        if w == EOS {
            break;
        }
        if !raw && prev == Some(w) {
            continue;
        }
        if !first {
            push(b" ", &mut len);
        }
        push(w, &mut len);
        first = false;
        prev = Some(w);
    }
    if len > out.len() {
        return Err(TextError::BufferTooSmall { needed: len });
    }
    if raw {
        return Ok(len);
    }
    // strip: move the trimmed range to the front
    let s = &out[..len];
    let start = s.iter().position(|&b| !is_py_space(b)).unwrap_or(len);
    let end = s
        .iter()
        .rposition(|&b| !is_py_space(b))
        .map_or(start, |e| e + 1);
    out.copy_within(start..end, 0);
    Ok(end - start)
}

/// [`caption`] into a `String` (std).
#[cfg(feature = "std")]
pub fn caption_string<'v>(
    ids: &[u32],
    word: impl Fn(u32) -> Option<&'v [u8]> + Copy,
    raw: bool,
) -> Result<std::string::String, TextError> {
    let needed = match caption(ids, word, raw, &mut []) {
        Ok(n) => n,
        Err(TextError::BufferTooSmall { needed }) => needed,
        Err(e) => return Err(e),
    };
    let mut buf = std::vec![0u8; needed];
    let n = caption(ids, word, raw, &mut buf)?;
    buf.truncate(n);
    Ok(std::string::String::from_utf8_lossy(&buf).into_owned())
}

#[cfg(all(test, feature = "std"))]
mod tests {
    use super::*;

    const VOCAB: [&str; 8] = ["<unk>", "<pad>", "<bos>", "<eos>", "a", "dog", " ", "\n"];

    fn word(id: u32) -> Option<&'static [u8]> {
        VOCAB.get(id as usize).map(|s| s.as_bytes())
    }

    fn text(ids: &[u32], raw: bool) -> std::string::String {
        caption_string(ids, word, raw).unwrap()
    }

    #[test]
    fn stops_at_eos_and_collapses_repeats() {
        assert_eq!(text(&[4, 4, 5, 3, 5, 5], false), "a dog");
        assert_eq!(text(&[4, 4, 5, 3, 5, 5], true), "a a dog");
    }

    #[test]
    fn specials_and_whitespace_tokens_pass_through() {
        assert_eq!(text(&[0, 1, 2, 4], false), "<unk> <pad> <bos> a");
        // " " and "\n" tokens survive inside, and strip removes them at the ends
        assert_eq!(text(&[6, 4, 7, 5, 7], true), "  a \n dog \n");
        assert_eq!(text(&[6, 4, 7, 5, 7], false), "a \n dog");
        assert_eq!(text(&[6, 6], false), "");
    }

    #[test]
    fn small_buffer_and_unknown_ids_are_errors() {
        let mut b = [0u8; 3];
        assert_eq!(
            caption(&[4, 5], word, false, &mut b),
            Err(TextError::BufferTooSmall { needed: 5 })
        );
        assert_eq!(
            caption(&[99], word, false, &mut b),
            Err(TextError::UnknownId(99))
        );
    }
}
