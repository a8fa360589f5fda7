//! Header-only parsing of PNG and JPEG: the format, the declared dimensions and what a full
//! decode of them would cost in memory, read without decoding a pixel.
//!
//! **Invariant:** nothing here allocates in proportion to a declared dimension or a length
//! field; every read is bounds-checked against the input and a short input is a typed error.
//! The declared dimensions are what the decoders will allocate for, so they are the numbers the
//! budget is checked against, before any decoder runs.

use super::{ImageHeader, ResizeError, SourceFormat};

const PNG_SIGNATURE: [u8; 8] = [0x89, b'P', b'N', b'G', b'\r', b'\n', 0x1a, b'\n'];
const JPEG_SOI: [u8; 2] = [0xff, 0xd8];

/// The most header segments a JPEG may have before its first scan. Real files have a dozen
/// (APPn, DQT, DHT, SOF, DRI, COM); a limit keeps a hostile run of tiny segments cheap.
const JPEG_HEADER_SEGMENTS_MAX: usize = 1024;
/// The most chunks a PNG may have before its first IDAT, for the same reason.
const PNG_HEADER_CHUNKS_MAX: usize = 1024;
/// Decoder bookkeeping beyond the pixel buffers (zlib window and tables, Huffman tables, row
/// buffers of a few KB): a constant so small images are not estimated at zero.
const DECODER_OVERHEAD_BYTES: u64 = 64 * 1024;

/// Names the format from the first bytes, also for formats this build cannot decode (so the
/// error can say what was sent).
pub(super) fn sniff(input: &[u8]) -> Result<SourceFormat, ResizeError> {
    if input.is_empty() {
        return Err(ResizeError::Empty);
    }
    if input.starts_with(&PNG_SIGNATURE) {
        return Ok(SourceFormat::Png);
    }
    if input.starts_with(&JPEG_SOI) {
        return Ok(SourceFormat::Jpeg);
    }
    let known: &[(&[u8], &'static str)] = &[
        (b"GIF87a", "gif"),
        (b"GIF89a", "gif"),
        (b"BM", "bmp"),
        (b"II*\0", "tiff"),
        (b"MM\0*", "tiff"),
        (b"\0\0\x01\0", "ico"),
        (b"qoif", "qoi"),
        (b"8BPS", "psd"),
    ];
    for (magic, name) in known {
        if input.starts_with(magic) {
            return Err(ResizeError::UnsupportedFormat { detail: (*name).to_string() });
        }
    }
    if input.len() >= 12 && &input[..4] == b"RIFF" && &input[8..12] == b"WEBP" {
        return Err(ResizeError::UnsupportedFormat { detail: "webp".to_string() });
    }
    if input.len() >= 12 && &input[4..8] == b"ftyp" {
        return Err(ResizeError::UnsupportedFormat { detail: "ISO media (avif/heif)".to_string() });
    }
    let shown = input.len().min(4);
    Err(ResizeError::UnsupportedFormat {
        detail: format!("unknown signature {:02x?}", &input[..shown]),
    })
}

pub(super) fn probe(input: &[u8]) -> Result<ImageHeader, ResizeError> {
    match sniff(input)? {
        SourceFormat::Png => probe_png(input),
        SourceFormat::Jpeg => probe_jpeg(input),
    }
}

fn corrupt(format: SourceFormat, reason: impl Into<String>) -> ResizeError {
    ResizeError::Corrupt { format, reason: reason.into() }
}

fn read_u16_be(input: &[u8], at: usize) -> Option<u16> {
    let bytes = input.get(at..at.checked_add(2)?)?;
    Some(u16::from_be_bytes([bytes[0], bytes[1]]))
}

fn read_u32_be(input: &[u8], at: usize) -> Option<u32> {
    let bytes = input.get(at..at.checked_add(4)?)?;
    Some(u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]))
}

/// Width x height x bytes per pixel, saturating: declared sizes can overflow nothing here.
fn pixel_bytes(width: u32, height: u32, bytes_per_pixel: u64) -> u64 {
    u64::from(width).saturating_mul(u64::from(height)).saturating_mul(bytes_per_pixel)
}

/// The bytes a full decode of a `width` x `height` image with `channels` samples of
/// `sample_bytes` each needs at its peak: the decoder's output, the conversion to the
/// resizer's 8-bit gray or RGB layout when the output is in another one (alpha flattened,
/// 16-bit narrowed), the decoder's own working memory, and a copy of the input (`image` reads
/// the whole input into a buffer of its own). Returns (decoded bytes, peak bytes).
fn decode_cost(
    width: u32,
    height: u32,
    channels: u64,
    sample_bytes: u64,
    working_bytes: u64,
    input_len: usize,
) -> (u64, u64) {
    let decoded_bytes = pixel_bytes(width, height, channels * sample_bytes);
    let resized_as_is = sample_bytes == 1 && (channels == 1 || channels == 3);
    let conversion_bytes = if resized_as_is {
        0
    } else {
        pixel_bytes(width, height, if channels <= 2 { 1 } else { 3 })
    };
    let needed = decoded_bytes
        .saturating_add(conversion_bytes)
        .saturating_add(working_bytes)
        .saturating_add(input_len as u64)
        .saturating_add(DECODER_OVERHEAD_BYTES);
    (decoded_bytes, needed)
}

/// PNG: the signature, then IHDR (checked against its CRC: a header that fails its own
/// checksum is corrupt, not a size to believe), then the chunks up to the first IDAT, read only
/// to see whether a tRNS chunk will make the decoder add an alpha channel.
fn probe_png(input: &[u8]) -> Result<ImageHeader, ResizeError> {
    let format = SourceFormat::Png;
    let ihdr_at = PNG_SIGNATURE.len();
    let length = read_u32_be(input, ihdr_at)
        .ok_or_else(|| corrupt(format, "truncated before the IHDR chunk"))?;
    let chunk_type = input
        .get(ihdr_at + 4..ihdr_at + 8)
        .ok_or_else(|| corrupt(format, "truncated before the IHDR chunk"))?;
    if chunk_type != b"IHDR" || length != 13 {
        return Err(corrupt(format, "the first chunk is not a 13-byte IHDR"));
    }
    let data = input
        .get(ihdr_at + 8..ihdr_at + 8 + 13)
        .ok_or_else(|| corrupt(format, "truncated inside the IHDR chunk"))?;
    let crc_stored = read_u32_be(input, ihdr_at + 8 + 13)
        .ok_or_else(|| corrupt(format, "truncated inside the IHDR chunk"))?;
    let crc_computed = crc32fast::hash(&input[ihdr_at + 4..ihdr_at + 8 + 13]);
    if crc_stored != crc_computed {
        return Err(corrupt(format, "IHDR checksum mismatch"));
    }
    let width = u32::from_be_bytes([data[0], data[1], data[2], data[3]]);
    let height = u32::from_be_bytes([data[4], data[5], data[6], data[7]]);
    let bit_depth = data[8];
    let color_type = data[9];
    let (compression, filter, interlace) = (data[10], data[11], data[12]);
    // PNG limits each dimension to 2^31 - 1.
    if width > i32::MAX as u32 || height > i32::MAX as u32 {
        return Err(corrupt(format, format!("IHDR dimensions {width}x{height} exceed 2^31-1")));
    }
    let depth_valid = match color_type {
        0 => matches!(bit_depth, 1 | 2 | 4 | 8 | 16),
        3 => matches!(bit_depth, 1 | 2 | 4 | 8),
        2 | 4 | 6 => matches!(bit_depth, 8 | 16),
        _ => return Err(corrupt(format, format!("IHDR color type {color_type} is not defined"))),
    };
    if !depth_valid {
        return Err(corrupt(
            format,
            format!("IHDR bit depth {bit_depth} is invalid for color type {color_type}"),
        ));
    }
    if compression != 0 || filter != 0 || interlace > 1 {
        return Err(corrupt(format, "IHDR compression, filter or interlace method is not defined"));
    }

    let transparency = png_has_trns_before_idat(input, ihdr_at + 8 + 13 + 4)?;
    let chunks = png_chunks(input);
    // What `image`'s PNG decoder outputs: depths below 8 expand to 8, a palette expands to RGB,
    // tRNS adds an alpha channel, 16-bit samples stay 16-bit.
    let sample_bytes: u64 = if bit_depth == 16 { 2 } else { 1 };
    let channels: u64 = match color_type {
        0 => 1 + u64::from(transparency),
        2 => 3 + u64::from(transparency),
        3 => 3 + u64::from(transparency),
        4 => 2,
        6 => 4,
        _ => unreachable!("color type validated above"),
    };
    // The png crate keeps the previous and the current raw row (1 filter byte each).
    let raw_row_bytes = (u64::from(width) * u64::from(bit_depth) * channels).div_ceil(8) + 1;
    // The png crate also charges every text and metadata chunk it reads against its memory
    // limit (which `decode` sets from this estimate): the chunk's buffer, grown by doubling
    // (up to twice its length, reserved cumulatively), then the parsed copy it keeps. So three
    // times the metadata: a 32x32 picture may carry 150 KB of text.
    let working_bytes =
        raw_row_bytes.saturating_mul(2).saturating_add(chunks.metadata_bytes.saturating_mul(3));
    let (decoded_bytes, decode_bytes_needed) =
        decode_cost(width, height, channels, sample_bytes, working_bytes, input.len());
    Ok(ImageHeader { format, width, height, decoded_bytes, decode_bytes_needed })
}

/// Walks the chunks after IHDR up to the first IDAT; true when a tRNS chunk comes first.
fn png_has_trns_before_idat(input: &[u8], mut at: usize) -> Result<bool, ResizeError> {
    let format = SourceFormat::Png;
    for _ in 0..PNG_HEADER_CHUNKS_MAX {
        let length = read_u32_be(input, at)
            .ok_or_else(|| corrupt(format, "truncated before the image data (no IDAT chunk)"))?;
        let chunk_type = input
            .get(at + 4..at + 8)
            .ok_or_else(|| corrupt(format, "truncated inside a chunk header"))?;
        match chunk_type {
            b"IDAT" => return Ok(false),
            b"tRNS" => return Ok(true),
            b"IEND" => return Err(corrupt(format, "IEND before any image data")),
            _ => {}
        }
        // length + type + data + CRC; a length beyond the input is a truncation.
        at = (length as usize)
            .checked_add(at + 12)
            .filter(|next| *next <= input.len())
            .ok_or_else(|| corrupt(format, "a chunk's length runs past the end of the input"))?;
    }
    Err(corrupt(format, format!("more than {PNG_HEADER_CHUNKS_MAX} chunks before the image data")))
}

/// What a walk over every chunk of a PNG finds: the cheap scan the work estimate reads.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct PngChunks {
    /// Compressed image data, all IDAT chunks together.
    pub(super) idat_bytes: u64,
    /// Every other chunk's data but IHDR and IEND (text, ICC profiles, Exif, unknown chunks).
    pub(super) metadata_bytes: u64,
    pub(super) chunks: u64,
}

/// Walks a PNG's chunks from IHDR to IEND or to the end of the input, whichever comes first.
/// A chunk whose length runs past the input ends the walk: the decoder reports the
/// truncation with its own words. Linear in the input: each step moves 12 bytes or more.
pub(super) fn png_chunks(input: &[u8]) -> PngChunks {
    let mut chunks = PngChunks::default();
    let mut at = PNG_SIGNATURE.len();
    while let (Some(length), Some(chunk_type)) = (read_u32_be(input, at), input.get(at + 4..at + 8))
    {
        let next = (length as usize).checked_add(at + 12).filter(|next| *next <= input.len());
        let length = u64::from(length).min((input.len() - at) as u64);
        chunks.chunks += 1;
        match chunk_type {
            b"IDAT" => chunks.idat_bytes += length,
            b"IEND" => break,
            b"IHDR" => {}
            _ => chunks.metadata_bytes += length,
        }
        match next {
            Some(next) => at = next,
            None => break,
        }
    }
    chunks
}

/// What a walk over a JPEG's whole stream finds: every scan and its entropy-coded data. The
/// cheap scan the work estimate reads, and the test for a header that promises blocks its
/// data cannot hold.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct JpegStream {
    pub(super) scans: u64,
    /// Per scan, the 8x8 blocks of the components it codes, summed over the scans: the
    /// entropy decoder visits each (a progressive scan with no data still visits them all).
    pub(super) scan_blocks: u64,
    /// Entropy-coded bytes, every scan's together.
    pub(super) entropy_bytes: u64,
    /// The blocks of the frame's largest component (the luma plane of a colour image): every
    /// one needs at least one bit of some scan for its DC coefficient.
    pub(super) frame_blocks: u64,
}

/// Blocks of `width` x `height` at sampling (`horizontal`, `vertical`) out of the frame's
/// largest factors.
fn component_blocks(frame: &JpegFrame, horizontal: u8, vertical: u8) -> u64 {
    let (horizontal_max, vertical_max) = frame.sampling[..usize::from(frame.components)]
        .iter()
        .fold((1, 1), |(h, v), &(_, ch, cv)| (h.max(ch), v.max(cv)));
    let side = |side: u32, factor: u8, factor_max: u8| {
        u64::from((side * u32::from(factor)).div_ceil(u32::from(factor_max)).div_ceil(8))
    };
    side(frame.width, horizontal, horizontal_max) * side(frame.height, vertical, vertical_max)
}

/// Walks a JPEG from its first scan to its end-of-image marker (or the input's end): each scan
/// header's components and each scan's entropy-coded bytes, up to the next marker that is not
/// a stuffed byte, a fill byte or a restart. Linear in the input.
pub(super) fn jpeg_stream(input: &[u8]) -> Result<JpegStream, ResizeError> {
    let layout = jpeg_layout(input)?;
    let frame = &layout.frame;
    let blocks_of = |id: u8| {
        frame.sampling[..usize::from(frame.components)]
            .iter()
            .find(|(component, ..)| *component == id)
            .map_or(0, |&(_, horizontal, vertical)| component_blocks(frame, horizontal, vertical))
    };
    let frame_blocks = frame.sampling[..usize::from(frame.components)]
        .iter()
        .map(|&(_, horizontal, vertical)| component_blocks(frame, horizontal, vertical))
        .max()
        .unwrap_or(0);
    let mut stream = JpegStream { frame_blocks, ..JpegStream::default() };
    // A scan header's fields: the component count, then (id, tables) per component.
    let scan_header_blocks = |header: &[u8]| -> u64 {
        let count = usize::from(header.first().copied().unwrap_or(0));
        (0..count).filter_map(|index| header.get(1 + 2 * index)).map(|&id| blocks_of(id)).sum()
    };
    stream.scans = 1;
    stream.scan_blocks = scan_header_blocks(&input[layout.scan_header_at..layout.scan_data_at]);
    let mut at = layout.scan_data_at;
    loop {
        // Entropy-coded data up to the next real marker.
        let data_start = at;
        while at + 1 < input.len()
            && !(input[at] == 0xff && !matches!(input[at + 1], 0x00 | 0xd0..=0xd7 | 0xff))
        {
            at += 1;
        }
        stream.entropy_bytes += (at - data_start) as u64;
        if at + 1 >= input.len() {
            return Ok(stream);
        }
        let marker = input[at + 1];
        at += 2;
        if marker == 0xd9 {
            return Ok(stream);
        }
        let Some(length) = read_u16_be(input, at).map(usize::from).filter(|length| *length >= 2)
        else {
            return Ok(stream);
        };
        let Some(segment) = input.get(at + 2..at + length) else { return Ok(stream) };
        if marker == 0xda {
            stream.scans += 1;
            stream.scan_blocks += scan_header_blocks(segment);
        }
        at += length;
    }
}

/// The parts of a JPEG's frame header a probe needs.
struct JpegFrame {
    width: u32,
    height: u32,
    components: u8,
    progressive: bool,
    /// Each component's id and horizontal and vertical sampling factors, in frame order.
    sampling: [(u8, u8, u8); 4],
}

/// Where the first scan's entropy-coded data starts, with the frame header before it.
pub(super) struct JpegLayout {
    frame: JpegFrame,
    /// Offset of the frame header's fields (precision, height, width...), after its length.
    pub(super) frame_at: usize,
    /// Offset of the first scan header's fields (the component count), after its length.
    pub(super) scan_header_at: usize,
    /// Offset of the first scan's entropy-coded data.
    pub(super) scan_data_at: usize,
}

impl JpegLayout {
    /// The frame's color components: 1 (gray), 3 (YCbCr or RGB) or 4 (CMYK or YCCK).
    pub(super) fn components(&self) -> u8 {
        self.frame.components
    }
}

fn jpeg_marker_name(marker: u8) -> String {
    match marker {
        0xc3 => "lossless (SOF3)".to_string(),
        0xc5..=0xc7 => format!("hierarchical (SOF{})", marker - 0xc0),
        0xc9..=0xcb | 0xcd..=0xcf => format!("arithmetic-coded (SOF{})", marker - 0xc0),
        _ => format!("marker {marker:02x}"),
    }
}

/// Walks the marker segments from SOI to the first SOS. Exactly one frame header (SOF) must
/// come before the scan: a second one could declare other dimensions than the ones the budget
/// was checked against.
pub(super) fn jpeg_layout(input: &[u8]) -> Result<JpegLayout, ResizeError> {
    let format = SourceFormat::Jpeg;
    let mut at = JPEG_SOI.len();
    let mut frame: Option<(JpegFrame, usize)> = None;
    for _ in 0..JPEG_HEADER_SEGMENTS_MAX {
        // A marker is 0xff, optional 0xff fill bytes, then the code.
        if input.get(at) != Some(&0xff) {
            return match input.get(at) {
                None => Err(corrupt(format, "truncated in the header (before the first scan)")),
                Some(byte) => Err(corrupt(
                    format,
                    format!("expected a marker at byte {at}, found {byte:#04x}"),
                )),
            };
        }
        while input.get(at) == Some(&0xff) {
            at += 1;
        }
        let marker = *input
            .get(at)
            .ok_or_else(|| corrupt(format, "truncated in the header (before the first scan)"))?;
        at += 1;
        match marker {
            // Standalone markers: no length.
            0x01 | 0xd0..=0xd7 => continue,
            0xd8 => return Err(corrupt(format, "a second start-of-image marker in the header")),
            0xd9 => return Err(corrupt(format, "end of image before any scan")),
            0x00 => {
                return Err(corrupt(format, format!("invalid marker 0xff00 at byte {}", at - 2)))
            }
            _ => {}
        }
        let length = read_u16_be(input, at)
            .ok_or_else(|| corrupt(format, "truncated in the header (before the first scan)"))?
            as usize;
        if length < 2 {
            return Err(corrupt(format, format!("segment length {length} at byte {at}")));
        }
        let segment = input
            .get(at + 2..at + length)
            .ok_or_else(|| corrupt(format, "a header segment runs past the end of the input"))?;
        match marker {
            0xc0..=0xc2 => {
                if frame.is_some() {
                    return Err(corrupt(format, "more than one frame header (SOF)"));
                }
                if segment.len() < 6 {
                    return Err(corrupt(format, "frame header (SOF) too short"));
                }
                let precision = segment[0];
                let height = u16::from_be_bytes([segment[1], segment[2]]);
                let width = u16::from_be_bytes([segment[3], segment[4]]);
                let components = segment[5];
                if precision != 8 {
                    return Err(ResizeError::UnsupportedFormat {
                        detail: format!("{precision}-bit JPEG"),
                    });
                }
                if !matches!(components, 1 | 3 | 4) {
                    return Err(corrupt(format, format!("{components} components in the frame")));
                }
                if segment.len() < 6 + 3 * usize::from(components) {
                    return Err(corrupt(format, "frame header (SOF) shorter than its components"));
                }
                let mut sampling = [(0, 1, 1); 4];
                for (index, slot) in sampling.iter_mut().take(usize::from(components)).enumerate() {
                    let at = 6 + 3 * index;
                    let factors = segment[at + 1];
                    // Sampling factors are 1 to 4; a zero would make a component of no blocks.
                    let (horizontal, vertical) = ((factors >> 4).max(1), (factors & 0x0f).max(1));
                    *slot = (segment[at], horizontal, vertical);
                }
                let declared = JpegFrame {
                    width: u32::from(width),
                    height: u32::from(height),
                    components,
                    progressive: marker == 0xc2,
                    sampling,
                };
                frame = Some((declared, at + 2));
            }
            0xc3 | 0xc5..=0xc7 | 0xc9..=0xcb | 0xcd..=0xcf => {
                return Err(ResizeError::UnsupportedFormat {
                    detail: format!("{} JPEG", jpeg_marker_name(marker)),
                });
            }
            0xda => {
                let (frame, frame_at) = frame
                    .ok_or_else(|| corrupt(format, "a scan (SOS) before the frame header (SOF)"))?;
                return Ok(JpegLayout {
                    frame,
                    frame_at,
                    scan_header_at: at + 2,
                    scan_data_at: at + length,
                });
            }
            _ => {}
        }
        at += length;
    }
    Err(corrupt(
        format,
        format!("more than {JPEG_HEADER_SEGMENTS_MAX} segments before the first scan"),
    ))
}

fn probe_jpeg(input: &[u8]) -> Result<ImageHeader, ResizeError> {
    let JpegLayout { frame, .. } = jpeg_layout(input)?;
    let JpegFrame { width, height, components, progressive, .. } = frame;
    // zune-jpeg (inside `image`) outputs L8 for one component and RGB8 otherwise (CMYK and
    // YCCK are converted).
    let channels: u64 = if components == 1 { 1 } else { 3 };
    // A progressive decode keeps every coefficient (i16) of every component until the last
    // scan; the planes are padded to whole 16x16 MCUs at worst. A baseline decode works an MCU
    // row at a time.
    let working_bytes = if progressive {
        pixel_bytes(width.div_ceil(16) * 16, height.div_ceil(16) * 16, 2 * u64::from(components))
    } else {
        u64::from(width.div_ceil(16) * 16).saturating_mul(16 * 3 * u64::from(components))
    };
    let (decoded_bytes, decode_bytes_needed) =
        decode_cost(width, height, channels, 1, working_bytes, input.len());
    Ok(ImageHeader {
        format: SourceFormat::Jpeg,
        width,
        height,
        decoded_bytes,
        decode_bytes_needed,
    })
}

/// Whether a JPEG's scan data is followed by an end-of-image marker (0xffd9).
///
/// zune-jpeg, which `image` runs in its lenient mode, fills whatever a truncated stream does
/// not cover with grey and reports success. A JPEG cut short loses its EOI marker, so its
/// absence after the first scan is the truncation test. Inside entropy-coded data 0xff is
/// always followed by 0x00 (stuffing) or a restart marker, so a 0xffd9 there is a real EOI.
/// Trailing bytes after the EOI (camera trailers) are accepted. Not caught: a stream cut inside
/// a progressive image's later scans that happens to keep a 0xffd9 pair in a table segment,
/// and data that is damaged but complete; both decode to something rather than crash.
pub(super) fn jpeg_has_end_marker(input: &[u8]) -> Result<bool, ResizeError> {
    let layout = jpeg_layout(input)?;
    let scan = &input[layout.scan_data_at.min(input.len())..];
    // Almost every JPEG ends with its EOI: look there before scanning the whole stream.
    Ok(scan.ends_with(&[0xff, 0xd9]) || scan.windows(2).any(|pair| pair == [0xff, 0xd9]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sniff_names_formats_it_cannot_decode() {
        let check = |input: &[u8], expect: &str| {
            let error = sniff(input).unwrap_err();
            assert_eq!(error.to_string(), expect, "input {input:02x?}");
        };
        check(b"", "empty input");
        check(b"GIF89a....", "unsupported format: gif");
        check(b"RIFF\0\0\0\0WEBPVP8 ", "unsupported format: webp");
        check(b"hello", "unsupported format: unknown signature [68, 65, 6c, 6c]");
    }

    #[test]
    fn short_inputs_are_corrupt_not_panics() {
        for length in 0..64 {
            let png: Vec<u8> =
                PNG_SIGNATURE.iter().copied().chain(std::iter::repeat(0)).take(length).collect();
            let _ = probe(&png);
            let jpeg: Vec<u8> =
                JPEG_SOI.iter().copied().chain(std::iter::repeat(0xff)).take(length).collect();
            let _ = probe(&jpeg);
        }
    }
}
