//! Generators of real hostile inputs (poison pills) and of valid test images, all drawn from
//! the caller's seeded RNG: the same RNG state gives the same bytes.
//!
//! The pills are real files, not flags: a worker meets them through the same [`super::probe`]
//! and decoders as any upload.
//!
//! | kind | what it is | what [`super::thumbnail`] answers |
//! |---|---|---|
//! | `png_declares_13000` | a few-KB PNG whose IHDR declares 13000x13000 (valid CRCs) | over budget (about 0.5 GB) below that, [`super::ResizeError::WouldExhaustMemory`] with limits off |
//! | `png_declares_50000` | the same at 50000x50000 (7.5 GB) | dimensions over limit, or would exhaust memory |
//! | `jpeg_lying_header` | a small JPEG whose frame header claims 65000x65000 | dimensions over limit, or would exhaust memory |
//! | `truncated_jpeg` | a valid JPEG cut inside its scan data | corrupt (no end-of-image marker) |
//! | `corrupted_image` | a valid JPEG or PNG with a few random bytes overwritten | anything typed: corrupt, or a damaged but decodable picture |
//! | `crash_trigger` | a valid JPEG carrying [`super::CRASH_TRIGGER_MARKER`] in a comment | a thumbnail: the crash is the worker's model of a decoder bug |
//! | `jpeg_scan_bomb` | a progressive JPEG of 1536 to 2048 a side with 1500 to 2500 empty AC scans (tens of KB; one of [`SCAN_BOMBS`]) | refused as over the work budget (the default's); decoded without one, seconds of CPU for a grey picture |
//! | `png_decompression_bomb` | an 8-bit gray PNG of 10000 to 12000 a side, all zero, deflated to a few hundred KB | a black thumbnail after a few hundred ms of inflating and resizing (the memory budget bounds it), or refused by a work budget below that |
//! | `png_huge_text_chunk` | a valid 32x32 PNG carrying a text chunk of 100 to 190 KB | a thumbnail: metadata counts in the memory estimate |
//! | `jpeg_no_scan_data` | a JPEG whose frame header declares 8000x8000 followed by 10 bytes of scan data | corrupt: far less scan data than its blocks need |

use image::ImageEncoder;
use rand::Rng;
use serde::{Deserialize, Serialize};

use super::header;

/// The side a lying JPEG header claims (the largest a JPEG can declare is 65535).
pub const JPEG_LYING_SIDE: u32 = 65_000;

/// The kinds of poison pill a scenario can name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PillKind {
    #[serde(rename = "png_declares_13000")]
    PngDeclares13000,
    #[serde(rename = "png_declares_50000")]
    PngDeclares50000,
    JpegLyingHeader,
    TruncatedJpeg,
    CorruptedImage,
    CrashTrigger,
    JpegScanBomb,
    PngDecompressionBomb,
    PngHugeTextChunk,
    JpegNoScanData,
}

impl PillKind {
    pub const ALL: [PillKind; 10] = [
        PillKind::PngDeclares13000,
        PillKind::PngDeclares50000,
        PillKind::JpegLyingHeader,
        PillKind::TruncatedJpeg,
        PillKind::CorruptedImage,
        PillKind::CrashTrigger,
        PillKind::JpegScanBomb,
        PillKind::PngDecompressionBomb,
        PillKind::PngHugeTextChunk,
        PillKind::JpegNoScanData,
    ];

    /// The kinds a workload draws unless a scenario names its own: the first six, so the
    /// scenarios written before the others replay as they did. The CPU bombs are asked for by
    /// name: where no budget refuses them their real decode costs the simulation wall-clock
    /// time as well as simulated time.
    pub const DEFAULT_MIX: [PillKind; 6] = [
        PillKind::PngDeclares13000,
        PillKind::PngDeclares50000,
        PillKind::JpegLyingHeader,
        PillKind::TruncatedJpeg,
        PillKind::CorruptedImage,
        PillKind::CrashTrigger,
    ];

    /// The kinds whose harm is CPU time rather than a crash or a refusal: decoded without a
    /// work budget they make a picture, slowly.
    pub const CPU_BOMBS: [PillKind; 2] = [PillKind::JpegScanBomb, PillKind::PngDecompressionBomb];

    /// The kind's name in scenario files.
    pub fn name(self) -> &'static str {
        match self {
            PillKind::PngDeclares13000 => "png_declares_13000",
            PillKind::PngDeclares50000 => "png_declares_50000",
            PillKind::JpegLyingHeader => "jpeg_lying_header",
            PillKind::TruncatedJpeg => "truncated_jpeg",
            PillKind::CorruptedImage => "corrupted_image",
            PillKind::CrashTrigger => "crash_trigger",
            PillKind::JpegScanBomb => "jpeg_scan_bomb",
            PillKind::PngDecompressionBomb => "png_decompression_bomb",
            PillKind::PngHugeTextChunk => "png_huge_text_chunk",
            PillKind::JpegNoScanData => "jpeg_no_scan_data",
        }
    }
}

/// The scan bombs a workload draws from (width, height, empty AC scans). A few fixed ones,
/// not a range: each takes seconds of real CPU to decode, and the simulation's content cache
/// of thumbnails (`resize::memo`) then decodes each once per process however many jobs and
/// seeds carry it, while a bomb's simulated cost is the same either way.
pub const SCAN_BOMBS: [(u16, u16, u32); 3] =
    [(1536, 2048, 1500), (2048, 1536, 2000), (2048, 2048, 2500)];

/// A pill of `kind`, drawn from `rng`.
pub fn generate<R: Rng + ?Sized>(kind: PillKind, rng: &mut R) -> Vec<u8> {
    match kind {
        PillKind::PngDeclares13000 => png_declaring(rng, 13_000, 13_000),
        PillKind::PngDeclares50000 => png_declaring(rng, 50_000, 50_000),
        PillKind::JpegLyingHeader => jpeg_lying_header(rng),
        PillKind::TruncatedJpeg => truncated_jpeg(rng),
        PillKind::CorruptedImage => corrupted_image(rng),
        PillKind::CrashTrigger => crash_trigger_jpeg(rng),
        PillKind::JpegScanBomb => {
            let (width, height, ac_scans) = SCAN_BOMBS[rng.random_range(0..SCAN_BOMBS.len())];
            jpeg_scan_bomb(width, height, ac_scans)
        }
        PillKind::PngDecompressionBomb => {
            let side = |rng: &mut R| rng.random_range(10_000..=12_000);
            let (width, height) = (side(rng), side(rng));
            png_decompression_bomb(width, height)
        }
        PillKind::PngHugeTextChunk => {
            let text_bytes = rng.random_range(100_000..=190_000);
            png_with_text_chunk(rng, text_bytes)
        }
        PillKind::JpegNoScanData => jpeg_no_scan_data(rng, 8000, 8000, 10),
    }
}

/// A progressive gray JPEG of `width` x `height` whose first scan codes every block's DC
/// coefficient as zero and which then has `ac_scans` empty scans of the AC band (1..=63): a
/// header of 10 bytes each and no entropy-coded data. A decoder reads a missing scan's bits as
/// zeros (libjpeg warns "premature end of data segment" and goes on; so do jpeg-decoder and
/// zune-jpeg), and the one-bit AC code `0` is end-of-band, so every block of every scan is
/// decoded: `ac_scans` passes over the whole image from a file of about `10 * ac_scans` bytes.
/// The picture itself is flat grey. Deterministic: the arguments decide every byte.
pub fn jpeg_scan_bomb(width: u16, height: u16, ac_scans: u32) -> Vec<u8> {
    assert!(width > 0 && height > 0, "a scan bomb has pixels");
    let blocks = usize::from(width.div_ceil(8)) * usize::from(height.div_ceil(8));
    let mut jpeg = Vec::with_capacity(200 + blocks / 8 + 10 * ac_scans as usize);
    jpeg.extend_from_slice(&[0xff, 0xd8]);
    // One quantization table of ones.
    jpeg.extend_from_slice(&[0xff, 0xdb, 0, 67, 0x00]);
    jpeg.extend_from_slice(&[1; 64]);
    // SOF2 (progressive, Huffman): 8-bit samples, one component, 1x1 sampling, table 0.
    jpeg.extend_from_slice(&[0xff, 0xc2, 0, 11, 8]);
    jpeg.extend_from_slice(&height.to_be_bytes());
    jpeg.extend_from_slice(&width.to_be_bytes());
    jpeg.extend_from_slice(&[1, 1, 0x11, 0]);
    // Two Huffman tables, DC 0 and AC 0, each one code of one bit (`0`) for symbol 0: a DC
    // difference of zero, and end-of-band.
    jpeg.extend_from_slice(&[0xff, 0xc4, 0, 38]);
    for class_and_id in [0x00, 0x10] {
        jpeg.push(class_and_id);
        let mut counts = [0u8; 16];
        counts[0] = 1;
        jpeg.extend_from_slice(&counts);
        jpeg.push(0x00);
    }
    // The DC scan: one zero bit per block, padded with ones.
    jpeg.extend_from_slice(&[0xff, 0xda, 0, 8, 1, 1, 0x00, 0, 0, 0x00]);
    jpeg.extend(std::iter::repeat_n(0x00, blocks / 8));
    if blocks % 8 != 0 {
        jpeg.push(0xff >> (blocks % 8));
    }
    // The empty AC scans: spectral selection 1..=63, no successive approximation.
    for _ in 0..ac_scans {
        jpeg.extend_from_slice(&[0xff, 0xda, 0, 8, 1, 1, 0x00, 1, 63, 0x00]);
    }
    jpeg.extend_from_slice(&[0xff, 0xd9]);
    jpeg
}

/// An 8-bit gray PNG of `width` x `height`, every pixel zero: a decompression bomb. Its IDAT
/// holds one deflated mebibyte of zeros, sync-flushed so that it ends on a byte boundary and
/// can be repeated as many times as the image needs (a back-reference into the previous copy
/// finds zeros there too), then the rest, deflated on its own, as the final block. So the file
/// is about a thousandth of the decoded size and is made without ever holding the image.
pub fn png_decompression_bomb(width: u32, height: u32) -> Vec<u8> {
    use miniz_oxide::deflate::core::{
        compress, create_comp_flags_from_zip_params, CompressorOxide, TDEFLFlush, TDEFLStatus,
    };
    assert!(width > 0 && height > 0 && width <= i32::MAX as u32 && height <= i32::MAX as u32);
    const SEGMENT_BYTES: u64 = 1 << 20;
    // Each row: a filter byte (0, none) and `width` samples.
    let raw_bytes = (u64::from(width) + 1) * u64::from(height);
    let deflate = |bytes: u64, flush: TDEFLFlush| -> Vec<u8> {
        let zeros = vec![0u8; bytes as usize];
        // Level 9, raw deflate (no zlib wrapper: it is written below, once).
        let mut compressor = CompressorOxide::new(create_comp_flags_from_zip_params(9, -15, 0));
        let mut out = vec![0u8; 64 * 1024];
        let (status, consumed, written) = compress(&mut compressor, &zeros, &mut out, flush);
        assert!(
            consumed == zeros.len() && matches!(status, TDEFLStatus::Okay | TDEFLStatus::Done),
            "a mebibyte of zeros deflates into 64 KiB in one call"
        );
        out.truncate(written);
        out
    };
    let mut zlib = vec![0x78, 0xda];
    let segment = deflate(SEGMENT_BYTES, TDEFLFlush::Sync);
    for _ in 0..raw_bytes / SEGMENT_BYTES {
        zlib.extend_from_slice(&segment);
    }
    zlib.extend_from_slice(&deflate(raw_bytes % SEGMENT_BYTES, TDEFLFlush::Finish));
    // Adler-32 of n zero bytes: A stays 1, B adds A once per byte.
    let adler = ((raw_bytes % 65_521) << 16 | 1) as u32;
    zlib.extend_from_slice(&adler.to_be_bytes());

    let mut png = PNG_SIGNATURE.to_vec();
    let mut ihdr = Vec::with_capacity(13);
    ihdr.extend_from_slice(&width.to_be_bytes());
    ihdr.extend_from_slice(&height.to_be_bytes());
    ihdr.extend_from_slice(&[8, 0, 0, 0, 0]); // 8-bit gray, deflate, adaptive filters, no interlace
    push_png_chunk(&mut png, b"IHDR", &ihdr);
    push_png_chunk(&mut png, b"IDAT", &zlib);
    push_png_chunk(&mut png, b"IEND", &[]);
    png
}

/// A valid 32x32 RGB PNG with a `tEXt` chunk of `text_bytes` printable characters (keyword
/// `Comment`) before its image data: oversized metadata on a tiny picture.
pub fn png_with_text_chunk<R: Rng + ?Sized>(rng: &mut R, text_bytes: usize) -> Vec<u8> {
    let png = photo_like_png(rng, 32, 32);
    let mut text = b"Comment\0".to_vec();
    text.extend((0..text_bytes).map(|_| rng.random_range(b' '..=b'~')));
    // Signature (8) and IHDR (4 + 4 + 13 + 4): the text chunk goes right after them.
    let after_ihdr = 8 + 25;
    assert_eq!(&png[12..16], b"IHDR", "the encoder writes IHDR first");
    let mut marked = png[..after_ihdr].to_vec();
    push_png_chunk(&mut marked, b"tEXt", &text);
    marked.extend_from_slice(&png[after_ihdr..]);
    marked
}

/// A real 64x48 baseline JPEG whose frame header now declares `width` x `height` and whose
/// scan data is cut to its first `scan_bytes` bytes, with the end-of-image marker kept: a
/// header that lies, with almost no data behind it.
pub fn jpeg_no_scan_data<R: Rng + ?Sized>(
    rng: &mut R,
    width: u16,
    height: u16,
    scan_bytes: usize,
) -> Vec<u8> {
    let jpeg = photo_like_jpeg(rng, 64, 48, 80);
    let layout = header::jpeg_layout(&jpeg).expect("a generated JPEG has a scan");
    let mut lying = jpeg[..layout.scan_data_at + scan_bytes].to_vec();
    // Frame header fields: precision (1), height (2), width (2).
    let at = layout.frame_at;
    lying[at + 1..at + 3].copy_from_slice(&height.to_be_bytes());
    lying[at + 3..at + 5].copy_from_slice(&width.to_be_bytes());
    // No 0xff in the kept scan data may start a marker with the EOI's first byte.
    if lying.last() == Some(&0xff) {
        lying.push(0x00);
    }
    lying.extend_from_slice(&[0xff, 0xd9]);
    lying
}

const PNG_SIGNATURE: [u8; 8] = [0x89, b'P', b'N', b'G', b'\r', b'\n', 0x1a, b'\n'];

/// Appends a chunk: length, type, data, and the CRC of type and data.
fn push_png_chunk(png: &mut Vec<u8>, chunk_type: &[u8; 4], data: &[u8]) {
    let length = u32::try_from(data.len()).expect("a generated chunk fits in 2^32 bytes");
    png.extend_from_slice(&length.to_be_bytes());
    png.extend_from_slice(chunk_type);
    png.extend_from_slice(data);
    let mut crc = crc32fast::Hasher::new();
    crc.update(chunk_type);
    crc.update(data);
    png.extend_from_slice(&crc.finalize().to_be_bytes());
}

/// A PNG of a few KB whose IHDR declares `width` x `height` (with a valid CRC): a real 32x32
/// noise image whose header was rewritten. A decoder without limits allocates the declared
/// size, then runs out of image data.
pub fn png_declaring<R: Rng + ?Sized>(rng: &mut R, width: u32, height: u32) -> Vec<u8> {
    assert!(width > 0 && height > 0 && width <= i32::MAX as u32 && height <= i32::MAX as u32);
    let side = 32;
    let noise: Vec<u8> = (0..side * side * 3).map(|_| rng.random()).collect();
    let mut png = encode_png(&noise, side, side);
    // Signature (8), IHDR length (4), "IHDR" (4), then width and height; the CRC covers the
    // type and the 13 data bytes and follows them.
    assert_eq!(&png[12..16], b"IHDR", "the encoder writes IHDR first");
    png[16..20].copy_from_slice(&width.to_be_bytes());
    png[20..24].copy_from_slice(&height.to_be_bytes());
    let crc = crc32fast::hash(&png[12..29]);
    png[29..33].copy_from_slice(&crc.to_be_bytes());
    png
}

/// A small valid JPEG whose frame header claims [`JPEG_LYING_SIDE`] on both sides.
pub fn jpeg_lying_header<R: Rng + ?Sized>(rng: &mut R) -> Vec<u8> {
    let mut jpeg = photo_like_jpeg(rng, 64, 48, 80);
    let layout = header::jpeg_layout(&jpeg).expect("a generated JPEG has a frame header");
    let side = u16::try_from(JPEG_LYING_SIDE).expect("a JPEG side fits in 16 bits");
    // Frame header fields: precision (1), height (2), width (2).
    let at = layout.frame_at;
    jpeg[at + 1..at + 3].copy_from_slice(&side.to_be_bytes());
    jpeg[at + 3..at + 5].copy_from_slice(&side.to_be_bytes());
    jpeg
}

/// A valid JPEG cut somewhere inside its scan data, so it has no end-of-image marker.
pub fn truncated_jpeg<R: Rng + ?Sized>(rng: &mut R) -> Vec<u8> {
    let mut jpeg = photo_like_jpeg(rng, 320, 240, 80);
    let layout = header::jpeg_layout(&jpeg).expect("a generated JPEG has a scan");
    // Keep at least one byte of scan data; drop at least the EOI marker.
    let cut = rng.random_range(layout.scan_data_at + 1..jpeg.len() - 2);
    jpeg.truncate(cut);
    jpeg
}

/// A small valid JPEG or PNG with 1 to 16 random bytes overwritten (the signature kept, so the
/// damage reaches the decoders rather than the format check).
pub fn corrupted_image<R: Rng + ?Sized>(rng: &mut R) -> Vec<u8> {
    let (width, height) = (rng.random_range(16..=200), rng.random_range(16..=200));
    let mut image = if rng.random_bool(0.5) {
        photo_like_jpeg(rng, width, height, 80)
    } else {
        photo_like_png(rng, width, height)
    };
    let damaged_bytes = rng.random_range(1..=16);
    for _ in 0..damaged_bytes {
        let at = rng.random_range(8..image.len());
        image[at] = rng.random();
    }
    image
}

/// A valid JPEG with [`super::CRASH_TRIGGER_MARKER`] in a comment (COM) segment right after the
/// start-of-image marker. Decoders skip comments: only the worker's crash model reacts.
pub fn crash_trigger_jpeg<R: Rng + ?Sized>(rng: &mut R) -> Vec<u8> {
    let (width, height) = (rng.random_range(64..=400), rng.random_range(64..=400));
    let jpeg = photo_like_jpeg(rng, width, height, 80);
    let marker = super::CRASH_TRIGGER_MARKER;
    let length = u16::try_from(marker.len() + 2).expect("the marker fits in one segment");
    let mut marked = Vec::with_capacity(jpeg.len() + marker.len() + 4);
    marked.extend_from_slice(&jpeg[..2]); // SOI
    marked.extend_from_slice(&[0xff, 0xfe]);
    marked.extend_from_slice(&length.to_be_bytes());
    marked.extend_from_slice(marker);
    marked.extend_from_slice(&jpeg[2..]);
    marked
}

/// The noise amplitude of [`photo_like_rgb`] (each sample moves by up to this much either
/// way): with it a 1600x1200 image at quality 80 is about 256 KB, the seed's average upload
/// (215 to 320 KB over the benchmark's four seeds, 268 KB on average).
const PHOTO_NOISE_AMPLITUDE: i32 = 6;

/// A deterministic synthetic photograph, packed 8-bit RGB rows: a two-colour gradient, soft
/// discs of colour (the subjects), a striped texture and per-pixel noise. Compresses like a
/// photo (the gradients and discs are cheap, the texture and noise are not), so JPEG sizes and
/// decode times are realistic. Integer arithmetic only.
pub fn photo_like_rgb<R: Rng + ?Sized>(rng: &mut R, width: u32, height: u32) -> Vec<u8> {
    assert!((1..=8192).contains(&width) && (1..=8192).contains(&height));
    let (w, h) = (width as i64, height as i64);
    let color = |rng: &mut R| -> [i64; 3] { [0, 1, 2].map(|_| rng.random_range(0..=255)) };
    let top_left = color(rng);
    let bottom_right = color(rng);
    let short_side = w.min(h);
    let discs: Vec<([i64; 2], i64, [i64; 3])> = (0..rng.random_range(6..=14))
        .map(|_| {
            let center = [rng.random_range(0..w), rng.random_range(0..h)];
            let radius = rng.random_range((short_side / 16).max(1)..=(short_side / 3).max(1));
            (center, radius, color(rng))
        })
        .collect();
    let stripe_period = rng.random_range(6..=40_i64);
    let stripe_direction = [rng.random_range(1..=5_i64), rng.random_range(-5..=5_i64)];
    let stripe_amplitude = rng.random_range(4..=14_i64);
    // Per-pixel noise from a xorshift seeded once: millions of draws, cheap and platform-free.
    let mut state: u64 = rng.random::<u64>() | 1;

    let mut rgb = Vec::with_capacity(width as usize * height as usize * 3);
    for y in 0..h {
        for x in 0..w {
            // Gradient along the diagonal, in 1/1024ths.
            let t = (x * 1024 / w + y * 1024 / h) / 2;
            let mut pixel =
                [0, 1, 2].map(|c| (top_left[c] * (1024 - t) + bottom_right[c] * t) / 1024);
            for (center, radius, disc_color) in &discs {
                let (dx, dy) = (x - center[0], y - center[1]);
                let distance_squared = dx * dx + dy * dy;
                let radius_squared = radius * radius;
                if distance_squared < radius_squared {
                    // Opaque in the middle, fading out over the outer part.
                    let weight =
                        ((radius_squared - distance_squared) * 2048 / radius_squared).min(1024);
                    for c in 0..3 {
                        pixel[c] = (pixel[c] * (1024 - weight) + disc_color[c] * weight) / 1024;
                    }
                }
            }
            let phase =
                (x * stripe_direction[0] + y * stripe_direction[1]).rem_euclid(stripe_period);
            let triangle = (phase * 2 - stripe_period).abs() * 2 * stripe_amplitude / stripe_period
                - stripe_amplitude;
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            for (c, sample) in pixel.iter().enumerate() {
                let noise_byte = ((state >> (c * 8)) & 0xff) as i32 - 128;
                let noise = i64::from(noise_byte * PHOTO_NOISE_AMPLITUDE / 128);
                rgb.push((sample + triangle + noise).clamp(0, 255) as u8);
            }
        }
    }
    rgb
}

/// [`photo_like_rgb`] encoded as a baseline JPEG at `quality` by `image`'s encoder (4:4:4).
pub fn photo_like_jpeg<R: Rng + ?Sized>(
    rng: &mut R,
    width: u32,
    height: u32,
    quality: u8,
) -> Vec<u8> {
    let rgb = photo_like_rgb(rng, width, height);
    let mut jpeg = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpeg, quality)
        .write_image(&rgb, width, height, image::ExtendedColorType::Rgb8)
        .expect("encoding a well-formed RGB buffer into memory cannot fail");
    jpeg
}

/// [`photo_like_rgb`] encoded as an 8-bit RGB PNG.
pub fn photo_like_png<R: Rng + ?Sized>(rng: &mut R, width: u32, height: u32) -> Vec<u8> {
    let rgb = photo_like_rgb(rng, width, height);
    encode_png(&rgb, width, height)
}

fn encode_png(rgb: &[u8], width: u32, height: u32) -> Vec<u8> {
    let mut png = Vec::new();
    image::codecs::png::PngEncoder::new(&mut png)
        .write_image(rgb, width, height, image::ExtendedColorType::Rgb8)
        .expect("encoding a well-formed RGB buffer into memory cannot fail");
    png
}
