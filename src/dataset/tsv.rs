//! The original bottom-up-attention `.tsv` (Anderson et al.'s `generate_tsv.py`): one line per
//! image, tab-separated `image_id, image_w, image_h, num_boxes, boxes, features`, where
//! `boxes` and `features` are base64 of little-endian float32 arrays `[num_boxes, 4]` and
//! `[num_boxes, d_in]`. One pass at open records where each line starts; each image is then
//! read with one positioned read of its line.

use super::{decode_floats, open_file, ImageId, Raw, Source};
use crate::input::InputError;
use base64::Engine as _;
use std::io::{BufRead, BufReader};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// Longest line taken (1,000 regions × 2048 f32 in base64 is 11 MB).
const MAX_LINE: u64 = super::MAX_RECORD;

pub struct Tsv {
    path: PathBuf,
    file: std::fs::File,
    /// Each image's id, line offset and length (without the line feed).
    lines: Vec<(ImageId, u64, u64)>,
}

impl Tsv {
    pub fn open(path: &Path) -> Result<Tsv, InputError> {
        let file = open_file(path)?;
        let io = |source| InputError::Open {
            path: path.into(),
            source,
        };
        let mut r = BufReader::with_capacity(1 << 20, open_file(path)?);
        let mut lines = Vec::new();
        let mut seen = std::collections::HashSet::new();
        // one pass: each line's first field (the id, up to 64 bytes) and its extent
        let (mut off, mut start, mut head, mut in_head) = (0u64, 0u64, Vec::new(), true);
        let mut has_tab = false;
        loop {
            let buf = r.fill_buf().map_err(io)?;
            if buf.is_empty() {
                if off > start {
                    let (l, h, t) = (off - start, std::mem::take(&mut head), has_tab);
                    record_line(path, &mut lines, &mut seen, start, l, &h, t)?;
                }
                break;
            }
            let mut used = 0;
            for &b in buf {
                used += 1;
                if b == b'\n' {
                    let end = off + used as u64;
                    let (l, h, t) = (end - 1 - start, std::mem::take(&mut head), has_tab);
                    record_line(path, &mut lines, &mut seen, start, l, &h, t)?;
                    start = end;
                    in_head = true;
                    has_tab = false;
                } else if in_head {
                    if b == b'\t' {
                        in_head = false;
                        has_tab = true;
                    } else if head.len() < 64 {
                        head.push(b);
                    }
                }
            }
            r.consume(used);
            off += used as u64;
            if off - start > MAX_LINE {
                // a line this long is refused whatever follows (and an endless stream such as
                // /dev/zero ends here instead of never)
                return Err(InputError::Format {
                    path: path.into(),
                    why: format!("line {} is longer than {MAX_LINE} bytes", lines.len() + 1),
                });
            }
        }
        Ok(Tsv {
            path: path.into(),
            file,
            lines,
        })
    }
}

/// Note one line `[start, start + len)` whose first field is `head`.
fn record_line(
    path: &Path,
    lines: &mut Vec<(ImageId, u64, u64)>,
    seen: &mut std::collections::HashSet<ImageId>,
    start: u64,
    len: u64,
    head: &[u8],
    has_tab: bool,
) -> Result<(), InputError> {
    if !has_tab {
        if head.iter().all(|b| b.is_ascii_whitespace()) {
            return Ok(()); // a blank line (e.g. a trailing one)
        }
        return Err(InputError::Format {
            path: path.into(),
            why: format!(
                "line {} is not a bottom-up-attention record (no tab after the image id)",
                lines.len() + 1
            ),
        });
    }
    let id = ImageId::parse(std::str::from_utf8(head).unwrap_or("?"));
    let record = |why: String| InputError::Record {
        path: path.into(),
        image: id.to_string(),
        why,
    };
    if len > MAX_LINE {
        return Err(record(format!(
            "a line of {len} bytes (at most {MAX_LINE})"
        )));
    }
    if !seen.insert(id.clone()) {
        return Err(record("appears twice".into()));
    }
    lines.push((id, start, len));
    Ok(())
}

impl Source for Tsv {
    fn path(&self) -> &Path {
        &self.path
    }
    fn len(&self) -> usize {
        self.lines.len()
    }
    fn id(&self, k: usize) -> ImageId {
        self.lines[k].0.clone()
    }
    fn read_raw(&self, k: usize, max_rows: usize, out: &mut Vec<f32>) -> Result<Raw, InputError> {
        let (id, off, len) = &self.lines[k];
        let record = |why: String| InputError::Record {
            path: self.path.clone(),
            image: id.to_string(),
            why,
        };
        let mut line = vec![0u8; *len as usize];
        self.file
            .read_exact_at(&mut line, *off)
            .map_err(|e| record(format!("cannot read its line ({e})")))?;
        if line.last() == Some(&b'\r') {
            line.pop();
        }
        let cols: Vec<&[u8]> = line.split(|&b| b == b'\t').collect();
        let [_, _, _, num_boxes, _, features] = cols[..] else {
            return Err(record(format!(
                "{} columns, expected 6 (image_id, image_w, image_h, num_boxes, boxes, features)",
                cols.len()
            )));
        };
        let n: usize = std::str::from_utf8(num_boxes)
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .ok_or_else(|| record("num_boxes is not a number".into()))?;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(features)
            .map_err(|e| record(format!("features are not base64: {e}")))?;
        // num_boxes is untrusted: 4·n may not fit (2⁶² would wrap to 0, 2⁶² + 1 to 4)
        // (`column`: one float32 of every region, in bytes)
        let column = n.checked_mul(4).filter(|&c| c > 0 && bytes.len() % c == 0);
        let Some(column) = column else {
            return Err(record(format!(
                "{} feature bytes do not divide into {n} regions of float32",
                bytes.len()
            )));
        };
        let width = bytes.len() / column;
        let rows = n.min(max_rows);
        decode_floats(&bytes[..rows * width * 4], false, out);
        Ok(Raw { regions: n, width })
    }
}
