//! The CPU work of a thumbnail, estimated from the bytes alone: what [`super::probe`] reads in
//! the header and what a cheap walk over the stream finds (every JPEG scan and the blocks it
//! codes, a PNG's compressed data and metadata), before any decoder runs.
//!
//! The simulation charges this estimate as the conversion's CPU time (its own CPU is free), and
//! the worker refuses a job whose estimate exceeds its work budget. A pure function of the
//! input and the spec: the same bytes cost the same on every run and in both builds.
//!
//! The model is linear in what the decoders and the resizer do per unit:
//!
//! - **scan blocks** (JPEG): the entropy decoder visits every 8x8 block of every component of
//!   every scan, even a scan with no data (it reads the missing bits as zeros). This is the term
//!   that makes a progressive JPEG with thousands of empty scans cost seconds from tens of KB.
//! - **inflated bytes** (PNG): every byte of every row, filter byte included, is inflated and
//!   unfiltered (Adam7 interlacing: seven passes over the same bytes, and a de-interlacing
//!   copy). This is the term of a decompression bomb.
//! - **decoded samples**: the inverse transform and colour conversion (JPEG, at the scale it is
//!   decoded at: shrink-on-load), the conversion to the resizer's layout, and the Lanczos3
//!   resize, whose cost per source sample is about constant whatever the ratio.
//! - **input bytes** (JPEG): Huffman decoding of real coefficient data.
//! - a **fixed** part: the probe, the thumbnail's encoding, allocations.
//!
//! **Calibration.** The constants below were fitted once on the project's benchmark machine
//! (2 shared cores) by `cargo run --release --example decode_cost -p pessimist-core`, which
//! measures the real thumbnail of each of its files (photos of 160 to 1600 pixels a side as
//! JPEG and PNG, scan bombs of two sizes and scan counts, decompression bombs, an interlaced
//! PNG) and prints estimate, measurement and their ratio: each constant from the files one
//! term dominates (scan blocks from the scan bombs, inflated bytes from the decompression
//! bombs, samples from the photos), then checked on all. Re-run it on another machine and
//! scale the constants by its ratios; the figures belong in its output, not here.
//!
//! What the estimate cannot see: a decoder's pathological path that the stream's shape does
//! not show (a decoder bug, say). The real build measures each decode's time and records the
//! ones that ran past the budget (`decode_over_budget`), so such a file shows up.

use super::header;
use super::{probe, ImageHeader, ResizeError, ResizeSpec, SourceFormat};

/// Nanoseconds per 8x8 block an entropy decoder visits in a scan: the scan bombs' time over
/// their scans x blocks (four bombs, 1,000 to 5,000 scans; the term is all of their cost).
const NS_PER_SCAN_BLOCK: u64 = 12;
/// Nanoseconds per byte inflated and unfiltered, and per decoded sample (inverse transform or
/// copy, colour conversion, the resize): from the decompression bombs (where both terms count
/// the same bytes) and the PNG photos; one nanosecond each. Large images cost more per byte
/// than small ones (caches), so small ones are over-estimated: the budget errs on refusing.
const NS_PER_INFLATED_BYTE: u64 = 1;
const NS_PER_DECODED_SAMPLE: u64 = 1;
/// Nanoseconds per byte of a JPEG's input: Huffman decoding of real coefficient data, the
/// bulk of a photo's time at 1/8 scale (the JPEG photos, 160x120 to 3000x2000). A PNG's
/// compressed bytes are paid for by the inflated ones.
const NS_PER_JPEG_INPUT_BYTE: u64 = 16;
/// The fixed part of a conversion: the smallest photos' time.
const NS_FIXED: u64 = 100_000;
/// Adam7's cost over a plain decode of the same bytes (seven passes, de-interlacing).
const INTERLACED_FACTOR_PERCENT: u64 = 150;

/// What a thumbnail of an input will cost, and why.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DecodeWork {
    pub format: SourceFormat,
    pub width: u32,
    pub height: u32,
    /// JPEG: the scans, and the blocks they code summed over the scans.
    pub scans: u64,
    pub scan_blocks: u64,
    /// PNG: the bytes inflated (rows with their filter bytes), and whether Adam7 interlaced.
    pub inflated_bytes: u64,
    pub interlaced: bool,
    /// Samples decoded and resized: at the JPEG's decode scale (1/8 or 1/4 when shrunk on
    /// load), else the whole image.
    pub decoded_samples: u64,
    pub input_bytes: u64,
}

impl DecodeWork {
    /// The estimated CPU time in nanoseconds, saturating.
    pub fn cpu_ns(&self) -> u64 {
        let inflate = self.inflated_bytes.saturating_mul(NS_PER_INFLATED_BYTE);
        let inflate = if self.interlaced {
            inflate.saturating_mul(INTERLACED_FACTOR_PERCENT) / 100
        } else {
            inflate
        };
        NS_FIXED
            .saturating_add(self.scan_blocks.saturating_mul(NS_PER_SCAN_BLOCK))
            .saturating_add(inflate)
            .saturating_add(self.decoded_samples.saturating_mul(NS_PER_DECODED_SAMPLE))
            .saturating_add(match self.format {
                SourceFormat::Jpeg => self.input_bytes.saturating_mul(NS_PER_JPEG_INPUT_BYTE),
                SourceFormat::Png => 0,
            })
    }

    /// The estimated CPU time in whole milliseconds, rounded up.
    pub fn cpu_ms(&self) -> u64 {
        self.cpu_ns().div_ceil(1_000_000)
    }
}

/// The estimated work of a thumbnail of `input` into `spec`. An input [`super::probe`]
/// refuses is refused here with the same error; a header that declares nothing costs only the
/// fixed part (the budget check refuses it).
pub fn estimate_work(input: &[u8], spec: &ResizeSpec) -> Result<DecodeWork, ResizeError> {
    spec.validate()?;
    let source = probe(input)?;
    let ImageHeader { format, width, height, .. } = source;
    let mut work = DecodeWork {
        format,
        width,
        height,
        scans: 0,
        scan_blocks: 0,
        inflated_bytes: 0,
        interlaced: false,
        decoded_samples: 0,
        input_bytes: input.len() as u64,
    };
    if width == 0 || height == 0 {
        return Ok(work);
    }
    let pixels = u64::from(width) * u64::from(height);
    match format {
        SourceFormat::Jpeg => {
            let stream = header::jpeg_stream(input)?;
            work.scans = stream.scans;
            work.scan_blocks = stream.scan_blocks;
            let channels: u64 = if header::jpeg_layout(input)?.components() == 1 { 1 } else { 3 };
            let (fit_width, fit_height) = spec.fit(width, height);
            let decoded_pixels =
                match super::jpeg_shrink_denominator(input, &source, fit_width, fit_height)? {
                    Some(denominator) => {
                        u64::from(width.div_ceil(denominator))
                            * u64::from(height.div_ceil(denominator))
                    }
                    None => pixels,
                };
            work.decoded_samples = decoded_pixels.saturating_mul(channels);
        }
        SourceFormat::Png => {
            // IHDR's fields (validated by the probe): bit depth, colour type, interlace.
            let (bit_depth, color_type, interlace) = (input[24], input[25], input[28]);
            let samples_per_pixel: u64 = match color_type {
                0 | 3 => 1,
                4 => 2,
                2 => 3,
                _ => 4,
            };
            let row_bytes =
                (u64::from(width) * samples_per_pixel * u64::from(bit_depth)).div_ceil(8) + 1;
            work.inflated_bytes = row_bytes.saturating_mul(u64::from(height));
            work.interlaced = interlace == 1;
            // A palette expands to RGB before the resize.
            let decoded_channels = if color_type == 3 { 3 } else { samples_per_pixel };
            work.decoded_samples = pixels.saturating_mul(decoded_channels);
        }
    }
    Ok(work)
}

/// The work of a thumbnail of `input` into `spec`, refused with
/// [`ResizeError::WorkOverBudget`] when its estimate exceeds `budget_ms` (0: no budget).
pub fn check_work(
    input: &[u8],
    spec: &ResizeSpec,
    budget_ms: u64,
) -> Result<DecodeWork, ResizeError> {
    let work = estimate_work(input, spec)?;
    if budget_ms > 0 && work.cpu_ms() > budget_ms {
        return Err(ResizeError::WorkOverBudget {
            format: work.format,
            width: work.width,
            height: work.height,
            scans: work.scans,
            estimated_ms: work.cpu_ms(),
            budget_ms,
        });
    }
    Ok(work)
}
