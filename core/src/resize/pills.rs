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
}

impl PillKind {
    pub const ALL: [PillKind; 6] = [
        PillKind::PngDeclares13000,
        PillKind::PngDeclares50000,
        PillKind::JpegLyingHeader,
        PillKind::TruncatedJpeg,
        PillKind::CorruptedImage,
        PillKind::CrashTrigger,
    ];

    /// The kind's name in scenario files.
    pub fn name(self) -> &'static str {
        match self {
            PillKind::PngDeclares13000 => "png_declares_13000",
            PillKind::PngDeclares50000 => "png_declares_50000",
            PillKind::JpegLyingHeader => "jpeg_lying_header",
            PillKind::TruncatedJpeg => "truncated_jpeg",
            PillKind::CorruptedImage => "corrupted_image",
            PillKind::CrashTrigger => "crash_trigger",
        }
    }
}

/// A pill of `kind`, drawn from `rng`.
pub fn generate<R: Rng + ?Sized>(kind: PillKind, rng: &mut R) -> Vec<u8> {
    match kind {
        PillKind::PngDeclares13000 => png_declaring(rng, 13_000, 13_000),
        PillKind::PngDeclares50000 => png_declaring(rng, 50_000, 50_000),
        PillKind::JpegLyingHeader => jpeg_lying_header(rng),
        PillKind::TruncatedJpeg => truncated_jpeg(rng),
        PillKind::CorruptedImage => corrupted_image(rng),
        PillKind::CrashTrigger => crash_trigger_jpeg(rng),
    }
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
