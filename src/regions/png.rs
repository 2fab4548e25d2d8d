//! PNG scenes on the host (`std`): decode to grayscale within a pixel budget, shrink to what the
//! extractor takes, and run the one extractor ([`crate::frame::frame_features`]) on it. The
//! no_std extractor itself is in the parent module.

use super::{Params, Region, D_IN};
use std::string::ToString;

/// Largest PNG (width × height) `m2 caption --image` decodes: 50 megapixels (a 48 MP phone
/// photo fits). Checked from the header before any pixel buffer is allocated, so a small file
/// declaring a huge canvas costs nothing; the decode buffer is at most 4 bytes per pixel
/// (16-bit samples are stripped to 8) = 200 MB, plus 1 byte per pixel of grayscale.
pub const MAX_PNG_PIXELS: u64 = 50_000_000;

/// A decoded 8-bit grayscale image.
#[derive(Clone, Debug)]
pub struct Gray {
    pub width: usize,
    pub height: usize,
    pub pixels: std::vec::Vec<u8>,
}

/// Decode a PNG (any colour type / bit depth) to 8-bit grayscale (ITU-R 601 luma for colour,
/// alpha composited over black). Host only.
pub fn from_png(bytes: &[u8]) -> Result<Gray, std::string::String> {
    let mut dec = ::png::Decoder::new(std::io::Cursor::new(bytes));
    dec.set_transformations(::png::Transformations::EXPAND | ::png::Transformations::STRIP_16);
    let mut reader = dec.read_info().map_err(|e| e.to_string())?;
    let (hw, hh) = (reader.info().width, reader.info().height);
    if u64::from(hw) * u64::from(hh) > MAX_PNG_PIXELS {
        return Err(std::format!(
            "PNG of {hw}x{hh} pixels is larger than the {MAX_PNG_PIXELS}-pixel limit"
        ));
    }
    // The palette, checked before the decoder expands it: png 0.17 indexes a PLTE chunk whose
    // length is not whole RGB triples out of bounds (a panic, found by the png_regions fuzz
    // target); the PNG spec makes such a file invalid anyway.
    let info = reader.info();
    if let Some(plte) = info.palette.as_deref() {
        if plte.is_empty() || plte.len() % 3 != 0 || plte.len() > 3 * 256 {
            return Err(std::format!(
                "invalid PNG palette of {} bytes (whole RGB entries, at most 256)",
                plte.len()
            ));
        }
        if info
            .trns
            .as_deref()
            .is_some_and(|t| t.len() > plte.len() / 3)
        {
            return Err("invalid PNG: more transparency entries than palette entries".into());
        }
    } else if info.color_type == ::png::ColorType::Indexed {
        return Err("invalid PNG: an indexed image without a palette".into());
    }
    let mut buf = std::vec![0u8; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).map_err(|e| e.to_string())?;
    let (w, h) = (info.width as usize, info.height as usize);
    let ch = match info.color_type {
        ::png::ColorType::Grayscale => 1,
        ::png::ColorType::GrayscaleAlpha => 2,
        ::png::ColorType::Rgb => 3,
        ::png::ColorType::Rgba => 4,
        ::png::ColorType::Indexed => return Err("indexed PNG was not expanded".into()),
    };
    if info.bit_depth != ::png::BitDepth::Eight {
        return Err(std::format!(
            "unsupported PNG bit depth {:?}",
            info.bit_depth
        ));
    }
    let stride = info.line_size;
    let mut pixels = std::vec::Vec::with_capacity(w * h);
    for y in 0..h {
        let row = &buf[y * stride..y * stride + w * ch];
        for x in 0..w {
            let p = &row[x * ch..(x + 1) * ch];
            let (v, a) = match ch {
                1 => (p[0] as u32, 255u32),
                2 => (p[0] as u32, p[1] as u32),
                3 => (
                    (299 * p[0] as u32 + 587 * p[1] as u32 + 114 * p[2] as u32 + 500) / 1000,
                    255,
                ),
                _ => (
                    (299 * p[0] as u32 + 587 * p[1] as u32 + 114 * p[2] as u32 + 500) / 1000,
                    p[3] as u32,
                ),
            };
            pixels.push(((v * a + 127) / 255) as u8);
        }
    }
    Ok(Gray {
        width: w,
        height: h,
        pixels,
    })
}

/// Shrink an image by the smallest integer factor `f` that brings it within [`super::MAX_PIXELS`]
/// and [`super::MAX_SIDE`] ([`crate::frame::fit_factor`]; each output pixel = rounded mean of its `f × f`
/// block, clipped at the edges: [`crate::frame::downscale_into`]). Box geometry is normalised
/// by the canvas size, so a uniformly scaled scene keeps (nearly) the same features. Images that
/// already fit, and inconsistent ones (`pixels.len() != width * height`), are returned unchanged.
pub fn downscale_to_fit(g: Gray) -> Gray {
    use crate::frame::{downscale_into, downscaled_len, fit_factor, Frame};
    let f = fit_factor(g.width, g.height);
    if f == 1 || g.width.checked_mul(g.height) != Some(g.pixels.len()) {
        return g;
    }
    let mut pixels = std::vec![0u8; downscaled_len(g.width, g.height, f)];
    let shrunk = Frame::new(&g.pixels, g.width, g.height, g.width)
        .and_then(|frame| downscale_into(&frame, f, &mut pixels))
        .map(|s| (s.width(), s.height()));
    match shrunk {
        Ok((width, height)) => Gray {
            width,
            height,
            pixels,
        },
        Err(_) => g,
    }
}

/// Regions and features of a PNG scene, for `m2 caption --image` (host only): decode to
/// grayscale, shrink it if it is larger than the extractor takes ([`downscale_to_fit`]), run
/// [`crate::frame::frame_features`] with [`crate::frame::Polarity::Auto`] (dark ink on a light
/// background is read inverted) and [`Params::DEMO`]. Returns the regions found and their
/// features, `regions.len() * D_IN` values (no padding rows: the engine pads to its
/// `max_regions`). Errors if there is no region.
pub fn features_from_png(
    bytes: &[u8],
    max_regions: usize,
) -> Result<(std::vec::Vec<Region>, std::vec::Vec<f32>), std::string::String> {
    features_from_gray(from_png(bytes)?, max_regions)
}

/// [`features_from_png`] after the decode: regions and features of an 8-bit grayscale image
/// (a camera frame converted to gray, say), shrunk first if it is larger than the extractor
/// takes. Errors if `pixels.len() != width * height` or there is no region.
pub fn features_from_gray(
    g: Gray,
    max_regions: usize,
) -> Result<(std::vec::Vec<Region>, std::vec::Vec<f32>), std::string::String> {
    use crate::frame::{frame_features, labels_len, Frame, Polarity};
    if g.width.checked_mul(g.height) != Some(g.pixels.len()) {
        return Err(std::format!(
            "a {}x{} image needs {} pixels, got {}",
            g.width,
            g.height,
            g.width.saturating_mul(g.height),
            g.pixels.len()
        ));
    }
    let g = downscale_to_fit(g);
    // the extractor never finds more than MAX_COMPONENTS: a larger ask allocates nothing more
    let max_regions = max_regions.min(super::MAX_COMPONENTS);
    let mut labels = std::vec![0u16; labels_len(g.width, g.height)];
    let mut regions = std::vec![Region::default(); max_regions];
    let mut feats = std::vec![0f32; max_regions.saturating_mul(D_IN)];
    let n = Frame::new(&g.pixels, g.width, g.height, g.width)
        .and_then(|frame| {
            frame_features(
                &frame,
                Polarity::Auto,
                &Params::DEMO,
                &mut labels,
                &mut regions,
                &mut feats,
            )
        })
        .map_err(|e| e.to_string())?;
    if n == 0 {
        return Err("no digit found in the image (no bright strokes on a dark background)".into());
    }
    regions.truncate(n);
    feats.truncate(n * D_IN);
    Ok((regions, feats))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A PNG whose header declares `w × h` 16-bit RGBA pixels, with one empty IDAT chunk: a few
    /// dozen bytes that would ask for `w · h · 8` bytes if decoded.
    fn png_header_only(w: u32, h: u32) -> std::vec::Vec<u8> {
        png_of(w, h, [16, 6, 0, 0, 0], &[], &[])
    }

    /// A PNG of `w × h` (IHDR depth/colour/… bytes `kind`), with `extra` chunks before the one
    /// IDAT holding `idat` (zlib-wrapped as a stored deflate block; empty: no data at all).
    fn png_of(
        w: u32,
        h: u32,
        kind: [u8; 5],
        extra: &[(&[u8; 4], &[u8])],
        idat: &[u8],
    ) -> std::vec::Vec<u8> {
        let mut out = std::vec![0x89, b'P', b'N', b'G', 0x0d, 0x0a, 0x1a, 0x0a];
        let mut chunk = |kind: &[u8; 4], data: &[u8]| {
            out.extend_from_slice(&(data.len() as u32).to_be_bytes());
            let mut crc = crc32fast::Hasher::new();
            crc.update(kind);
            crc.update(data);
            out.extend_from_slice(kind);
            out.extend_from_slice(data);
            out.extend_from_slice(&crc.finalize().to_be_bytes());
        };
        let mut ihdr = std::vec::Vec::new();
        ihdr.extend_from_slice(&w.to_be_bytes());
        ihdr.extend_from_slice(&h.to_be_bytes());
        ihdr.extend_from_slice(&kind);
        chunk(b"IHDR", &ihdr);
        for (k, d) in extra {
            chunk(k, d);
        }
        let mut z = std::vec::Vec::new();
        if !idat.is_empty() {
            z.extend_from_slice(&[0x78, 0x01, 0x01]);
            z.extend_from_slice(&(idat.len() as u16).to_le_bytes());
            z.extend_from_slice(&(!(idat.len() as u16)).to_le_bytes());
            z.extend_from_slice(idat);
            let (mut a, mut b) = (1u32, 0u32);
            for &x in idat {
                a = (a + x as u32) % 65521;
                b = (b + a) % 65521;
            }
            z.extend_from_slice(&((b << 16) | a).to_be_bytes());
        }
        chunk(b"IDAT", &z);
        chunk(b"IEND", &[]);
        out
    }

    #[test]
    fn a_palette_that_is_not_whole_rgb_entries_is_an_error_not_a_panic() {
        // 2x2 8-bit indexed, every pixel index 2: rows are filter byte 0 + 2 indices
        let rows = [0, 2, 2, 0, 2, 2];
        let indexed = [8, 3, 0, 0, 0];
        let ok = png_of(
            2,
            2,
            indexed,
            &[(b"PLTE", &[0, 0, 0, 9, 9, 9, 200, 200, 200])],
            &rows,
        );
        let g = from_png(&ok).unwrap();
        assert_eq!((g.width, g.height, g.pixels[0]), (2, 2, 200));
        // what the fuzzer found: a 7-byte palette (png 0.17 panicked expanding it)
        let bad = png_of(2, 2, indexed, &[(b"PLTE", &[0, 0, 0, 9, 9, 9, 200])], &rows);
        assert!(from_png(&bad).unwrap_err().contains("palette"));
        let trns = [(b"PLTE", &[0u8, 0, 0][..]), (b"tRNS", &[1u8, 2][..])];
        assert!(from_png(&png_of(2, 2, indexed, &trns, &[0, 0, 0, 0, 0, 0])).is_err());
    }

    #[test]
    fn a_huge_declared_canvas_is_refused_before_decoding() {
        let err = from_png(&png_header_only(30_000, 30_000)).unwrap_err();
        assert!(
            err.contains("30000x30000") && err.contains("limit"),
            "{err}"
        );
        // Just over the limit in one dimension product; just under is not refused for size.
        let err = from_png(&png_header_only(50_000_001, 1)).unwrap_err();
        assert!(err.contains("limit"), "{err}");
        let err = from_png(&png_header_only(10, 10)).unwrap_err();
        assert!(!err.contains("limit"), "{err}");
    }
}
