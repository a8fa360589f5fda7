//! The resize worker's image work: probe a source image's header, decode it under a memory
//! budget, shrink it into a bounding box and encode a JPEG thumbnail. Pure and deterministic:
//! no I/O, no threads, no clock, no randomness (the [`pills`] generators take the caller's RNG).
//!
//! The worker calls [`thumbnail`] with the job's bytes, the requested [`ResizeSpec`] and its
//! [`DecodeBudget`]:
//!
//! 1. [`probe`] reads the format and the *declared* dimensions from the header alone, and what
//!    a full decode would need in memory ([`ImageHeader::decode_bytes_needed`]).
//! 2. The budget is checked before any decoder runs. With limits enabled, a source wider or
//!    taller than [`SOURCE_SIDE_MAX`] is [`ResizeError::DimensionsOverLimit`] and one that
//!    needs more than the budget is [`ResizeError::OverBudget`]. With limits disabled (the
//!    design variant a scenario compares against) an over-budget decode is
//!    [`ResizeError::WouldExhaustMemory`]: the worker turns it into a simulated out-of-memory
//!    kill of its process. The memory is never actually allocated.
//! 3. A JPEG without an end-of-image marker after its scan is reported corrupt (truncated):
//!    `image`'s JPEG decoder would otherwise fill the missing part with grey and succeed.
//! 4. A JPEG at least 4 times the thumbnail's size on both sides is decoded shrunk
//!    (shrink-on-load, as libvips does): jpeg-decoder inverse-transforms only the low
//!    frequencies of each 8x8 block, giving the image at 1/4 or 1/8 of its size, the most
//!    reduction that still leaves the thumbnail's size. Any other image is decoded whole by
//!    `image` under [`image::Limits`]. Then `fast_image_resize` shrinks (Lanczos3 convolution,
//!    never upscaling, aspect kept) and `image` encodes a JPEG at [`THUMBNAIL_JPEG_QUALITY`].
//!    The scaled decode costs less quality than the thumbnail's own JPEG encoding (tested).
//!
//! **Invariants:** every failure is a typed [`ResizeError`] with a precise message, never a
//! panic (fuzzed with random and mutated inputs below, on both decoders). Nothing is allocated
//! in proportion to a declared size before the budget check accepts it; the check is for a
//! whole decode, which bounds a scaled one. Both decoders must read exactly the probed
//! dimensions (`image`'s runs under limits that allow no more, even when the budget's limits
//! are disabled), so a header that lies cannot make the process allocate more than the check
//! saw. The same input, spec and budget give byte-identical output on every run and in both
//! builds (simulated and real): the decoders, the resizer's fixed-point convolution and the
//! encoder are integer code with no threads (jpeg-decoder is vendored single-threaded, without
//! its SIMD paths), and the resizer's SIMD paths give the same bytes as its scalar one (tested).
//!
//! The crash trigger ([`CRASH_TRIGGER_MARKER`]) models an unknown decoder bug. This module only
//! detects it ([`contains_crash_trigger`]); crashing the worker is the worker's business, and
//! [`thumbnail`] itself treats a marked image like any other.

mod cost;
mod header;
pub mod memo;
pub mod pills;

pub use cost::{check_work, estimate_work, DecodeWork};

use std::io::Cursor;

use fast_image_resize as fir;
use serde::{Deserialize, Serialize};

/// The largest bounding box side a request may ask for.
pub const SPEC_SIDE_MAX: u32 = 4096;
/// The largest source width or height decoded when the budget's limits are enabled. Memory is
/// bounded by the budget; this bounds the per-row work and buffers of a degenerate image (one
/// pixel tall and a million wide fits any budget).
pub const SOURCE_SIDE_MAX: u32 = 16384;
/// The thumbnail's JPEG quality (1-100), fixed so a thumbnail can be recomputed and compared.
pub const THUMBNAIL_JPEG_QUALITY: u8 = 85;
/// Bytes that mark an otherwise valid image as a crash trigger (the workload puts them in a
/// JPEG comment segment). Long and unlikely enough never to occur by chance in an image.
pub const CRASH_TRIGGER_MARKER: &[u8] = b"pessimist/crash-trigger/v1:7f3a91c2";

/// The resampling filter: Lanczos3 convolution, the quality reference (libvips' and `image`'s
/// thumbnail default).
const RESIZE_ALGORITHM: fir::ResizeAlg = fir::ResizeAlg::Convolution(fir::FilterType::Lanczos3);

/// The formats this build decodes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SourceFormat {
    Png,
    Jpeg,
}

impl SourceFormat {
    pub fn name(self) -> &'static str {
        match self {
            SourceFormat::Png => "png",
            SourceFormat::Jpeg => "jpeg",
        }
    }

    fn to_image(self) -> image::ImageFormat {
        match self {
            SourceFormat::Png => image::ImageFormat::Png,
            SourceFormat::Jpeg => image::ImageFormat::Jpeg,
        }
    }
}

impl std::fmt::Display for SourceFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The thumbnail's bounding box: the output fits inside `max_width` x `max_height` with the
/// source's aspect ratio, and is never larger than the source.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ResizeSpec {
    pub max_width: u32,
    pub max_height: u32,
}

impl ResizeSpec {
    /// A validated spec: both sides in `1..=SPEC_SIDE_MAX`.
    pub fn new(max_width: u32, max_height: u32) -> Result<ResizeSpec, ResizeError> {
        let spec = ResizeSpec { max_width, max_height };
        spec.validate()?;
        Ok(spec)
    }

    pub fn validate(&self) -> Result<(), ResizeError> {
        let side_valid = |side: u32| (1..=SPEC_SIDE_MAX).contains(&side);
        if side_valid(self.max_width) && side_valid(self.max_height) {
            Ok(())
        } else {
            Err(ResizeError::InvalidSpec { max_width: self.max_width, max_height: self.max_height })
        }
    }

    /// The output size for a `width` x `height` source: the largest size with the source's
    /// aspect ratio (rounded to the nearest pixel, at least 1) that fits the box, or the source's
    /// own size when it already fits. Integer arithmetic only, so it is the same everywhere.
    pub fn fit(&self, width: u32, height: u32) -> (u32, u32) {
        assert!(width > 0 && height > 0, "fit needs a non-empty source, got {width}x{height}");
        self.validate().expect("fit needs a validated spec");
        if width <= self.max_width && height <= self.max_height {
            return (width, height);
        }
        let (width, height) = (u64::from(width), u64::from(height));
        let (box_width, box_height) = (u64::from(self.max_width), u64::from(self.max_height));
        // width / height >= box_width / box_height: the width is the binding side.
        let (fit_width, fit_height) = if width * box_height >= height * box_width {
            (box_width, (height * box_width * 2 + width) / (width * 2))
        } else {
            ((width * box_height * 2 + height) / (height * 2), box_height)
        };
        let fit = (fit_width.max(1) as u32, fit_height.max(1) as u32);
        assert!(fit.0 <= self.max_width && fit.1 <= self.max_height);
        fit
    }
}

/// The worker's memory budget for one decode, and whether the decoder enforces it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct DecodeBudget {
    pub memory_bytes_max: u64,
    /// With limits disabled nothing refuses an over-budget image: the decode is attempted and
    /// the process runs out of memory (modelled by [`ResizeError::WouldExhaustMemory`]).
    pub limits_enabled: bool,
}

impl DecodeBudget {
    /// The `image::Limits` a worker with this budget configures: sources up to
    /// [`SOURCE_SIDE_MAX`] on each side and at most `memory_bytes_max` allocated by the decoder;
    /// no limits at all when they are disabled.
    pub fn limits(&self) -> image::Limits {
        decode_limits(self)
    }
}

/// The `image::Limits` derived from `budget` (see [`DecodeBudget::limits`]).
pub fn decode_limits(budget: &DecodeBudget) -> image::Limits {
    let mut limits = image::Limits::no_limits();
    if budget.limits_enabled {
        limits.max_image_width = Some(SOURCE_SIDE_MAX);
        limits.max_image_height = Some(SOURCE_SIDE_MAX);
        limits.max_alloc = Some(budget.memory_bytes_max);
    }
    limits
}

/// What a source image's header declares, and what decoding it would cost.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ImageHeader {
    pub format: SourceFormat,
    pub width: u32,
    pub height: u32,
    /// The decoder's output buffer: width x height x bytes per pixel, as `image` lays it out.
    pub decoded_bytes: u64,
    /// The peak memory of a full decode: the output buffer, its conversion to 8-bit gray or
    /// RGB when needed, the decoder's working memory (all coefficients of a progressive JPEG),
    /// and a copy of the input. This is what the budget is checked against.
    pub decode_bytes_needed: u64,
}

/// A finished thumbnail: a baseline JPEG and its size.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Thumbnail {
    pub jpeg: Vec<u8>,
    pub width: u32,
    pub height: u32,
    /// The source's header, as probed.
    pub source: ImageHeader,
}

/// Why an image could not be made into a thumbnail.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ResizeError {
    #[error("resize bounds {max_width}x{max_height} are outside 1..={max}", max = SPEC_SIDE_MAX)]
    InvalidSpec { max_width: u32, max_height: u32 },
    #[error("empty input")]
    Empty,
    #[error("unsupported format: {detail}")]
    UnsupportedFormat { detail: String },
    #[error("corrupt {format}: {reason}")]
    Corrupt { format: SourceFormat, reason: String },
    #[error("{format} declares an empty image ({width}x{height})")]
    ZeroDimensions { format: SourceFormat, width: u32, height: u32 },
    #[error("{format} of {width}x{height} exceeds the {side_max}-pixel side limit")]
    DimensionsOverLimit { format: SourceFormat, width: u32, height: u32, side_max: u32 },
    #[error("decoding needs {needed} bytes, over the budget of {budget} bytes")]
    OverBudget { needed: u64, budget: u64 },
    /// The decoder asked for more memory than the header's estimate, which is within the
    /// budget: the file is not what its header says (or the estimate misses a structure).
    #[error("the {format} decoder needed more than the {estimate} bytes its header accounts for")]
    MemoryOverEstimate { format: SourceFormat, estimate: u64 },
    /// The estimated CPU work ([`estimate_work`]) exceeds the worker's per-job budget.
    #[error(
        "{format} of {width}x{height}{scans} would take about {estimated_ms} ms of CPU, over \
         the budget of {budget_ms} ms",
        scans = if *scans > 1 { format!(" in {scans} scans") } else { String::new() }
    )]
    WorkOverBudget {
        format: SourceFormat,
        width: u32,
        height: u32,
        scans: u64,
        estimated_ms: u64,
        budget_ms: u64,
    },
    /// Only with limits disabled: the decode would have exhausted the worker's memory. The
    /// worker turns this into a simulated out-of-memory kill.
    #[error("decoding needs {needed} bytes and would exhaust the worker's memory")]
    WouldExhaustMemory { needed: u64 },
    #[error("encoding the thumbnail failed: {detail}")]
    Encode { detail: String },
}

impl ResizeError {
    /// A stable snake_case name for the kind of error, for histories and figures.
    pub fn kind(&self) -> &'static str {
        match self {
            ResizeError::InvalidSpec { .. } => "invalid_spec",
            ResizeError::Empty => "empty",
            ResizeError::UnsupportedFormat { .. } => "unsupported_format",
            ResizeError::Corrupt { .. } => "corrupt",
            ResizeError::ZeroDimensions { .. } => "zero_dimensions",
            ResizeError::DimensionsOverLimit { .. } => "dimensions_over_limit",
            ResizeError::OverBudget { .. } => "over_budget",
            ResizeError::MemoryOverEstimate { .. } => "memory_over_estimate",
            ResizeError::WorkOverBudget { .. } => "work_over_budget",
            ResizeError::WouldExhaustMemory { .. } => "would_exhaust_memory",
            ResizeError::Encode { .. } => "encode",
        }
    }
}

/// The format, declared dimensions and decode cost of `input`, from its header alone.
pub fn probe(input: &[u8]) -> Result<ImageHeader, ResizeError> {
    header::probe(input)
}

/// Whether `input` carries [`CRASH_TRIGGER_MARKER`] anywhere.
pub fn contains_crash_trigger(input: &[u8]) -> bool {
    let (first, rest) = CRASH_TRIGGER_MARKER.split_first().expect("the marker is not empty");
    let mut at = 0;
    // Jump between occurrences of the marker's first byte (a byte rare in images), then compare.
    while let Some(offset) = input[at..].iter().position(|byte| byte == first) {
        let start = at + offset + 1;
        if input[start..].starts_with(rest) {
            return true;
        }
        at = start;
    }
    false
}

/// Makes a JPEG thumbnail of `input` bounded by `spec`, decoding within `budget`, with fresh
/// scratch memory. A worker that makes many keeps a [`Thumbnailer`] instead.
pub fn thumbnail(
    input: &[u8],
    spec: &ResizeSpec,
    budget: &DecodeBudget,
) -> Result<Thumbnail, ResizeError> {
    Thumbnailer::new().thumbnail(input, spec, budget)
}

/// Makes thumbnails, keeping its scratch memory (the decoded pixels, the resizer's buffers)
/// from one to the next: the same bytes as [`thumbnail`] without a fresh 5.8 MB zeroed buffer
/// per 1600x1200 image. (On the shared benchmark machine the gain was within the noise, 0-5%;
/// glibc already recycles blocks that size.) It holds at most the largest decode it was asked
/// for, which the budget bounds; one per concurrent decode.
#[derive(Debug, Default)]
pub struct Thumbnailer {
    decoded: Vec<u8>,
    resizer: fir::Resizer,
}

impl Thumbnailer {
    pub fn new() -> Thumbnailer {
        Thumbnailer::default()
    }

    /// See [`thumbnail`].
    pub fn thumbnail(
        &mut self,
        input: &[u8],
        spec: &ResizeSpec,
        budget: &DecodeBudget,
    ) -> Result<Thumbnail, ResizeError> {
        spec.validate()?;
        let source = probe(input)?;
        check_budget(&source, budget)?;
        if source.format == SourceFormat::Jpeg && !header::jpeg_has_end_marker(input)? {
            return Err(ResizeError::Corrupt {
                format: SourceFormat::Jpeg,
                reason: "truncated: no end-of-image marker after the scan data".to_string(),
            });
        }
        if source.format == SourceFormat::Jpeg {
            check_jpeg_scan_data(input)?;
        }

        let (width, height) = spec.fit(source.width, source.height);
        let shrunk = match jpeg_shrink_denominator(input, &source, width, height)? {
            Some(denominator) => decode_jpeg_shrunk(input, &source, denominator)?,
            None => None,
        };
        let pixels = match shrunk {
            Some(pixels) => pixels,
            None => decode(&mut self.decoded, input, &source, budget)?,
        };
        let jpeg = if (width, height) == (pixels.width, pixels.height) {
            encode(&pixels)?
        } else {
            encode(&resize_with(&mut self.resizer, &pixels, width, height))?
        };
        Ok(Thumbnail { jpeg, width, height, source })
    }
}

/// The budget check, before any decoder runs.
fn check_budget(source: &ImageHeader, budget: &DecodeBudget) -> Result<(), ResizeError> {
    let ImageHeader { format, width, height, .. } = *source;
    if width == 0 || height == 0 {
        return Err(ResizeError::ZeroDimensions { format, width, height });
    }
    let needed = source.decode_bytes_needed;
    if !budget.limits_enabled {
        if needed > budget.memory_bytes_max {
            return Err(ResizeError::WouldExhaustMemory { needed });
        }
        return Ok(());
    }
    if width > SOURCE_SIDE_MAX || height > SOURCE_SIDE_MAX {
        return Err(ResizeError::DimensionsOverLimit {
            format,
            width,
            height,
            side_max: SOURCE_SIDE_MAX,
        });
    }
    if needed > budget.memory_bytes_max {
        return Err(ResizeError::OverBudget { needed, budget: budget.memory_bytes_max });
    }
    Ok(())
}

/// Refuses a JPEG whose scans hold less entropy-coded data than its blocks need: at least one
/// bit per block of its largest component, for that block's DC coefficient (no Huffman code is
/// shorter, and the DC coefficient of each block is coded in some scan, never run-length
/// skipped). A header declaring 8000x8000 followed by 10 bytes of data fails this.
///
/// Why an error and not a thumbnail: the decoders fill missing data with grey and report
/// success, so the job would be `done` with a picture that is not in the file, after a full
/// decode's CPU time spent on filler. Telling the client its file holds no picture is the
/// answer that is true; a file that holds one in part (cut inside its data) is caught by the
/// end-of-image check, and damage that keeps enough bytes still decodes as before.
fn check_jpeg_scan_data(input: &[u8]) -> Result<(), ResizeError> {
    let stream = header::jpeg_stream(input)?;
    let bits = stream.entropy_bytes.saturating_mul(8);
    if bits < stream.frame_blocks {
        return Err(ResizeError::Corrupt {
            format: SourceFormat::Jpeg,
            reason: format!(
                "{} bytes of scan data cannot code {} blocks (at least one bit each)",
                stream.entropy_bytes, stream.frame_blocks
            ),
        });
    }
    Ok(())
}

/// Decoded pixels in the resizer's layout: 8-bit gray or 8-bit RGB, rows packed.
struct Pixels<'a> {
    width: u32,
    height: u32,
    gray: bool,
    bytes: std::borrow::Cow<'a, [u8]>,
}

impl Pixels<'_> {
    fn channels(&self) -> usize {
        if self.gray {
            1
        } else {
            3
        }
    }

    fn assert_consistent(&self) {
        let expected = self.width as usize * self.height as usize * self.channels();
        assert_eq!(self.bytes.len(), expected, "pixel buffer does not match its dimensions");
    }
}

/// The scales at which a JPEG may be decoded in the DCT domain, as denominators, most reduction
/// first. 1/2 is not among them: jpeg-decoder's entropy decoding is slower than zune-jpeg's,
/// and at 1/2 the inverse transforms it saves do not make up for it. `benches/resize.rs`, a
/// 1600x1200 JPEG on one core: against zune-jpeg's whole decode, jpeg-decoder decodes at 1/2
/// at 0.65x the speed, at 1/4 at 1.05x, at 1/8 at 1.15x; the gain is in the resize after it
/// (Lanczos3 to 256x192 takes 0.3 ms from 400x300, 1.9 ms from 1600x1200).
const JPEG_SHRINK_DENOMINATORS: [u32; 2] = [8, 4];

/// The scale denominator to decode a JPEG at for a `width` x `height` thumbnail: the most
/// reduction that still leaves at least the thumbnail's size on both sides, so the resize that
/// follows only ever shrinks. `None` for a PNG, for a JPEG too small for any scale, and for a
/// four-component JPEG (CMYK or YCCK: jpeg-decoder gives CMYK, `image` converts it to RGB).
fn jpeg_shrink_denominator(
    input: &[u8],
    source: &ImageHeader,
    width: u32,
    height: u32,
) -> Result<Option<u32>, ResizeError> {
    if source.format != SourceFormat::Jpeg || header::jpeg_layout(input)?.components() == 4 {
        return Ok(None);
    }
    Ok(JPEG_SHRINK_DENOMINATORS.into_iter().find(|&denominator| {
        // Both sides over the denominator: jpeg-decoder picks the scale at which *either*
        // side reaches the requested size, and a side of `denominator` pixels or fewer reaches
        // one pixel at a smaller scale too. Over it, the requested scale is the only one.
        source.width > denominator
            && source.height > denominator
            && source.width.div_ceil(denominator) >= width
            && source.height.div_ceil(denominator) >= height
    }))
}

/// Decodes a JPEG at 1/`denominator` of its size in the DCT domain (shrink-on-load): only the
/// low-frequency coefficients of each 8x8 block are inverse-transformed, into a 2x2 (1/4) or
/// 1x1 (1/8) block, so the image is never decoded at full size. `None` when jpeg-decoder does
/// not support the file (a chroma subsampling ratio, say): the whole decode takes it instead.
///
/// The budget check already accepted a full decode, which bounds this one: the output and the
/// component planes are 1/16 or 1/64 of a full decode's, a progressive image's coefficients are
/// the working memory the probe counted, and the input is read in place.
fn decode_jpeg_shrunk(
    input: &[u8],
    source: &ImageHeader,
    denominator: u32,
) -> Result<Option<Pixels<'static>>, ResizeError> {
    assert!(JPEG_SHRINK_DENOMINATORS.contains(&denominator), "no DCT scale 1/{denominator}");
    let mut decoder = jpeg_decoder::Decoder::new(input);
    match decoder.read_info() {
        Err(jpeg_decoder::Error::Unsupported(_)) => return Ok(None),
        result => result.map_err(jpeg_decoder_error)?,
    }
    let info = decoder.info().expect("read_info succeeded, so the frame header was read");
    let (declared_width, declared_height) = (u32::from(info.width), u32::from(info.height));
    if (declared_width, declared_height) != (source.width, source.height) {
        return Err(ResizeError::Corrupt {
            format: SourceFormat::Jpeg,
            reason: format!(
                "decoded {declared_width}x{declared_height} but the header declares {}x{}",
                source.width, source.height
            ),
        });
    }
    let gray = match info.pixel_format {
        jpeg_decoder::PixelFormat::L8 => true,
        jpeg_decoder::PixelFormat::RGB24 => false,
        _ => return Ok(None),
    };
    let (width, height) = (source.width.div_ceil(denominator), source.height.div_ceil(denominator));
    let side = |side: u32| u16::try_from(side).expect("a JPEG side fits in 16 bits");
    let scaled = decoder.scale(side(width), side(height)).map_err(jpeg_decoder_error)?;
    assert_eq!(
        (u32::from(scaled.0), u32::from(scaled.1)),
        (width, height),
        "jpeg-decoder scales to the requested size when both sides exceed the denominator"
    );
    let channels = if gray { 1 } else { 3 };
    decoder.set_max_decoding_buffer_size(width as usize * height as usize * channels);
    let bytes = match decoder.decode() {
        Err(jpeg_decoder::Error::Unsupported(_)) => return Ok(None),
        result => result.map_err(jpeg_decoder_error)?,
    };
    let pixels = Pixels { width, height, gray, bytes: std::borrow::Cow::Owned(bytes) };
    pixels.assert_consistent();
    Ok(Some(pixels))
}

fn jpeg_decoder_error(error: jpeg_decoder::Error) -> ResizeError {
    let format = SourceFormat::Jpeg;
    match error {
        jpeg_decoder::Error::Format(reason) => ResizeError::Corrupt { format, reason },
        jpeg_decoder::Error::Io(io) if io.kind() == std::io::ErrorKind::UnexpectedEof => {
            ResizeError::Corrupt { format, reason: "truncated".to_string() }
        }
        jpeg_decoder::Error::Unsupported(feature) => {
            ResizeError::UnsupportedFormat { detail: format!("{format}: {feature:?}") }
        }
        other => ResizeError::Corrupt { format, reason: other.to_string() },
    }
}

/// Decodes under limits into `scratch` (8-bit gray and RGB sources, nearly all of them) or into
/// a new buffer converted to one of those layouts.
fn decode<'s>(
    scratch: &'s mut Vec<u8>,
    input: &[u8],
    source: &ImageHeader,
    budget: &DecodeBudget,
) -> Result<Pixels<'s>, ResizeError> {
    use image::ImageDecoder;
    // The budget's limits, narrowed to exactly what the probe accepted: a decoder that read
    // other dimensions than the probe, or wanted more memory than it estimated, stops with a
    // limit error instead of allocating. This applies with limits disabled too: there the
    // over-budget case never reaches the decoder (it is WouldExhaustMemory, simulated).
    let mut limits = decode_limits(budget);
    limits.max_image_width = Some(source.width);
    limits.max_image_height = Some(source.height);
    limits.max_alloc =
        Some(limits.max_alloc.map_or(source.decode_bytes_needed, |max_alloc| {
            max_alloc.min(source.decode_bytes_needed)
        }));
    let as_error = |error| decode_error(error, source, budget);
    let mut reader = image::ImageReader::with_format(Cursor::new(input), source.format.to_image());
    reader.limits(limits.clone());
    let mut decoder = reader.into_decoder().map_err(as_error)?;
    let (width, height) = decoder.dimensions();
    if (width, height) != (source.width, source.height) {
        return Err(ResizeError::Corrupt {
            format: source.format,
            reason: format!(
                "decoded {width}x{height} but the header declares {}x{}",
                source.width, source.height
            ),
        });
    }
    // As `ImageReader::decode` does: the output buffer counts against the allocation limit,
    // and the decoder gets what remains.
    let total_bytes = decoder.total_bytes();
    limits.reserve(total_bytes).map_err(as_error)?;
    decoder.set_limits(limits).map_err(as_error)?;
    let gray = match decoder.color_type() {
        image::ColorType::L8 => true,
        image::ColorType::Rgb8 => false,
        _ => {
            let decoded = image::DynamicImage::from_decoder(decoder).map_err(as_error)?;
            let pixels = to_gray_or_rgb8(decoded);
            pixels.assert_consistent();
            return Ok(pixels);
        }
    };
    let total_bytes = usize::try_from(total_bytes).expect("the budget check bounds the decode");
    // Grown once to the largest image seen; never re-zeroed (the decoder overwrites it all).
    if scratch.len() < total_bytes {
        scratch.resize(total_bytes, 0);
    }
    decoder.read_image(&mut scratch[..total_bytes]).map_err(as_error)?;
    let pixels =
        Pixels { width, height, gray, bytes: std::borrow::Cow::Borrowed(&scratch[..total_bytes]) };
    pixels.assert_consistent();
    Ok(pixels)
}

fn decode_error(
    error: image::ImageError,
    source: &ImageHeader,
    budget: &DecodeBudget,
) -> ResizeError {
    use image::error::LimitErrorKind;
    let ImageHeader { format, width, height, .. } = *source;
    match error {
        image::ImageError::Limits(limit) => match limit.kind() {
            LimitErrorKind::DimensionError => ResizeError::DimensionsOverLimit {
                format,
                width,
                height,
                side_max: SOURCE_SIDE_MAX,
            },
            // `decode` narrows the allocation limit to the smaller of the budget and the
            // header's estimate: name whichever of the two the decoder ran into.
            LimitErrorKind::InsufficientMemory
                if source.decode_bytes_needed > budget.memory_bytes_max =>
            {
                ResizeError::OverBudget {
                    needed: source.decode_bytes_needed,
                    budget: budget.memory_bytes_max,
                }
            }
            LimitErrorKind::InsufficientMemory => {
                ResizeError::MemoryOverEstimate { format, estimate: source.decode_bytes_needed }
            }
            LimitErrorKind::Unsupported { .. } => ResizeError::UnsupportedFormat {
                detail: format!("{format}: a limit the decoder does not support"),
            },
            _ => ResizeError::UnsupportedFormat { detail: format!("{format}: {limit}") },
        },
        image::ImageError::Unsupported(unsupported) => {
            ResizeError::UnsupportedFormat { detail: format!("{format}: {unsupported}") }
        }
        image::ImageError::IoError(io) if io.kind() == std::io::ErrorKind::UnexpectedEof => {
            ResizeError::Corrupt { format, reason: "truncated".to_string() }
        }
        other => ResizeError::Corrupt { format, reason: other.to_string() },
    }
}

/// 16-bit samples to 8 bits, rounded.
fn narrow(sample: u16) -> u8 {
    ((u32::from(sample) * 255 + 32_767) / 65_535) as u8
}

/// A color sample composited over white with its alpha (the thumbnail is a JPEG: no alpha).
fn over_white(sample: u8, alpha: u8) -> u8 {
    let (sample, alpha) = (u32::from(sample), u32::from(alpha));
    ((sample * alpha + 255 * (255 - alpha) + 127) / 255) as u8
}

/// The decoder's output in the resizer's layout. Gray stays gray (a gray thumbnail is a third
/// of the work), alpha is flattened over white, 16-bit samples are narrowed to 8 bits.
fn to_gray_or_rgb8(decoded: image::DynamicImage) -> Pixels<'static> {
    use image::DynamicImage as D;
    let (width, height) = (decoded.width(), decoded.height());
    let (gray, bytes) = match decoded {
        D::ImageLuma8(buffer) => (true, buffer.into_raw()),
        D::ImageRgb8(buffer) => (false, buffer.into_raw()),
        D::ImageLumaA8(buffer) => {
            (true, buffer.pixels().map(|p| over_white(p.0[0], p.0[1])).collect())
        }
        D::ImageRgba8(buffer) => (
            false,
            buffer
                .pixels()
                .flat_map(|p| [0, 1, 2].map(|channel| over_white(p.0[channel], p.0[3])))
                .collect(),
        ),
        D::ImageLuma16(buffer) => (true, buffer.pixels().map(|p| narrow(p.0[0])).collect()),
        D::ImageLumaA16(buffer) => {
            (true, buffer.pixels().map(|p| over_white(narrow(p.0[0]), narrow(p.0[1]))).collect())
        }
        D::ImageRgb16(buffer) => (false, buffer.into_raw().into_iter().map(narrow).collect()),
        D::ImageRgba16(buffer) => (
            false,
            buffer
                .pixels()
                .flat_map(|p| {
                    let alpha = narrow(p.0[3]);
                    [0, 1, 2].map(|channel| over_white(narrow(p.0[channel]), alpha))
                })
                .collect(),
        ),
        // PNG and JPEG never decode to floating point; convert rather than fail if one did.
        other => (false, other.into_rgb8().into_raw()),
    };
    Pixels { width, height, gray, bytes: std::borrow::Cow::Owned(bytes) }
}

/// Shrinks `pixels` to `width` x `height` with [`RESIZE_ALGORITHM`].
fn resize_with(
    resizer: &mut fir::Resizer,
    pixels: &Pixels<'_>,
    width: u32,
    height: u32,
) -> Pixels<'static> {
    assert!(width <= pixels.width && height <= pixels.height, "a thumbnail never upscales");
    let pixel_type = if pixels.gray { fir::PixelType::U8 } else { fir::PixelType::U8x3 };
    let source = fir::images::ImageRef::new(pixels.width, pixels.height, &pixels.bytes, pixel_type)
        .expect("the pixel buffer matches its dimensions (asserted when decoded)");
    let mut destination = fir::images::Image::new(width, height, pixel_type);
    let options = fir::ResizeOptions::new().resize_alg(RESIZE_ALGORITHM);
    resizer
        .resize(&source, &mut destination, &options)
        .expect("same pixel type on both sides, non-empty images");
    let bytes = std::borrow::Cow::Owned(destination.into_vec());
    let resized = Pixels { width, height, gray: pixels.gray, bytes };
    resized.assert_consistent();
    resized
}

fn encode(pixels: &Pixels<'_>) -> Result<Vec<u8>, ResizeError> {
    pixels.assert_consistent();
    let color =
        if pixels.gray { image::ExtendedColorType::L8 } else { image::ExtendedColorType::Rgb8 };
    let mut jpeg = Vec::with_capacity(pixels.bytes.len() / 4);
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpeg, THUMBNAIL_JPEG_QUALITY)
        .encode(&pixels.bytes, pixels.width, pixels.height, color)
        .map_err(|error| ResizeError::Encode { detail: error.to_string() })?;
    Ok(jpeg)
}

#[cfg(test)]
mod tests;
