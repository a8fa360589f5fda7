//! Benchmark: thumbnails per second on one core, 1600x1200 JPEGs of about 256 KB (generated
//! from fixed seeds by `pills::photo_like_jpeg`) to a JPEG bounded by 256x256 (256x192).
//!
//! Rows: the `image`-only path (decode, `imageops` Lanczos3 resize, encode), `image` with
//! `fast_image_resize` (whole decode, Lanczos3, encode: the worker's path before
//! shrink-on-load), the worker's path (`resize::thumbnail`: header probe and budget check,
//! jpeg-decoder's decode at 1/4 scale, `fast_image_resize` Lanczos3 from 400x300, encode), the
//! worker's stages alone, and alternatives (other decode scales and decoders, other resize
//! filters on the same decoded pixels). Every row shows its ratio to libvips' in-process
//! thumbnail and to the target, 1.2x libvips; the reference figures were measured on this
//! machine (DESIGN.md section 7).
//!
//! Run: `cargo bench -p pessimist-core --bench resize` (release build, one thread). Name rows
//! after `--` to run only those, e.g. `-- worker`. The machine is shared: check its load
//! (`uptime`), run it three times and quote the median.

use std::hint::black_box;
use std::time::{Duration, Instant};

use fast_image_resize as fir;
use image::ImageEncoder;
use pessimist_core::resize::{self, pills, DecodeBudget, ResizeSpec, THUMBNAIL_JPEG_QUALITY};
use pessimist_core::seams::rng::rng_for;

const SOURCE_WIDTH: u32 = 1600;
const SOURCE_HEIGHT: u32 = 1200;
/// Quality 80 makes the four sources 268 KB on average (215 to 320 KB).
const SOURCE_QUALITY: u8 = 80;
const SOURCES: usize = 4;
const BOUND: u32 = 256;
const MEASURE_FOR: Duration = Duration::from_secs(3);
const ROUNDS: u32 = 6;
const CONVERSIONS_MIN_PER_ROUND: u64 = 4;

const IMAGE_ONLY_REFERENCE_PER_S: f64 = 35.0;
const IMAGE_FAST_RESIZE_REFERENCE_PER_S: f64 = 115.0;
const LIBVIPS_REFERENCE_PER_S: f64 = 94.0;
const TARGET_PER_S: f64 = 1.2 * LIBVIPS_REFERENCE_PER_S;

/// A row: its name, and one conversion of the source with the given index.
type Row<'a> = (&'static str, Box<dyn FnMut(usize) + 'a>);

/// Measures every row for about [`MEASURE_FOR`] in all, in [`ROUNDS`] interleaved slices, so a
/// change in the machine's load (it is shared) hits every row alike and their ratios hold.
/// Conversions per second per row.
fn rates(rows: &mut [Row<'_>]) -> Vec<f64> {
    for (_, convert) in rows.iter_mut() {
        for index in 0..SOURCES {
            convert(index); // warm up caches and the allocator
        }
    }
    let slice = MEASURE_FOR / ROUNDS;
    let mut totals = vec![(0u64, Duration::ZERO); rows.len()];
    for _ in 0..ROUNDS {
        for ((_, convert), (conversions, elapsed)) in rows.iter_mut().zip(totals.iter_mut()) {
            let started = Instant::now();
            let mut in_slice = 0u64;
            while started.elapsed() < slice || in_slice < CONVERSIONS_MIN_PER_ROUND {
                convert((*conversions + in_slice) as usize % SOURCES);
                in_slice += 1;
            }
            *conversions += in_slice;
            *elapsed += started.elapsed();
        }
    }
    totals
        .iter()
        .map(|(conversions, elapsed)| *conversions as f64 / elapsed.as_secs_f64())
        .collect()
}

fn encode_jpeg(rgb: &[u8], width: u32, height: u32) -> Vec<u8> {
    let mut jpeg = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpeg, THUMBNAIL_JPEG_QUALITY)
        .write_image(rgb, width, height, image::ExtendedColorType::Rgb8)
        .expect("encode");
    jpeg
}

fn image_only(source: &[u8]) -> Vec<u8> {
    let decoded =
        image::load_from_memory_with_format(source, image::ImageFormat::Jpeg).expect("decode");
    let small = decoded.resize(BOUND, BOUND, image::imageops::FilterType::Lanczos3).into_rgb8();
    encode_jpeg(small.as_raw(), small.width(), small.height())
}

fn fir_resize(rgb: &[u8], algorithm: fir::ResizeAlg) -> Vec<u8> {
    fir_resize_from(rgb, SOURCE_WIDTH, SOURCE_HEIGHT, algorithm)
}

fn fir_resize_from(
    rgb: &[u8],
    from_width: u32,
    from_height: u32,
    algorithm: fir::ResizeAlg,
) -> Vec<u8> {
    let source = fir::images::ImageRef::new(from_width, from_height, rgb, fir::PixelType::U8x3)
        .expect("source image");
    let (width, height) = ResizeSpec::new(BOUND, BOUND).unwrap().fit(SOURCE_WIDTH, SOURCE_HEIGHT);
    let mut destination = fir::images::Image::new(width, height, fir::PixelType::U8x3);
    fir::Resizer::new()
        .resize(&source, &mut destination, &fir::ResizeOptions::new().resize_alg(algorithm))
        .expect("resize");
    destination.into_vec()
}

fn main() {
    let filters: Vec<String> =
        std::env::args().skip(1).filter(|arg| !arg.starts_with('-')).collect();
    let wanted =
        |name: &str| filters.is_empty() || filters.iter().any(|f| name.contains(f.as_str()));

    let sources: Vec<Vec<u8>> = (0..SOURCES)
        .map(|i| {
            let mut rng = rng_for(i as u64, "bench/resize/source");
            pills::photo_like_jpeg(&mut rng, SOURCE_WIDTH, SOURCE_HEIGHT, SOURCE_QUALITY)
        })
        .collect();
    let mean_kb = sources.iter().map(Vec::len).sum::<usize>() as f64 / SOURCES as f64 / 1024.0;
    let spec = ResizeSpec::new(BOUND, BOUND).unwrap();
    let budget = DecodeBudget { memory_bytes_max: 256 * 1024 * 1024, limits_enabled: true };
    let decoded: Vec<Vec<u8>> = sources
        .iter()
        .map(|s| image::load_from_memory(s).expect("decode").into_rgb8().into_raw())
        .collect();
    let (width, height) = spec.fit(SOURCE_WIDTH, SOURCE_HEIGHT);
    let small = fir_resize(&decoded[0], fir::ResizeAlg::Convolution(fir::FilterType::Lanczos3));
    let jpeg_decoder_at = |source: &[u8], denominator: u16| {
        let mut decoder = jpeg_decoder::Decoder::new(source);
        let side = |side: u32| side.div_ceil(u32::from(denominator)) as u16;
        decoder.scale(side(SOURCE_WIDTH), side(SOURCE_HEIGHT)).expect("scale");
        decoder.decode().expect("decode")
    };
    let quarter: Vec<Vec<u8>> = sources.iter().map(|s| jpeg_decoder_at(s, 4)).collect();

    println!(
        "resize benchmark: {SOURCES} sources {SOURCE_WIDTH}x{SOURCE_HEIGHT} JPEG q{SOURCE_QUALITY} \
         (mean {mean_kb:.0} KB) -> {width}x{height} JPEG q{THUMBNAIL_JPEG_QUALITY}; \
         build: {}, one thread",
        if cfg!(debug_assertions) { "debug (figures meaningless)" } else { "release" },
    );
    println!(
        "{:<50} {:>10} {:>16} {:>17}",
        "row",
        "per s",
        format!("vs libvips {LIBVIPS_REFERENCE_PER_S}/s"),
        format!("vs target {TARGET_PER_S:.1}/s"),
    );
    let report = |name: &str, per_s: f64| {
        println!(
            "{name:<50} {per_s:>10.1} {:>15.2}x {:>16.2}x",
            per_s / LIBVIPS_REFERENCE_PER_S,
            per_s / TARGET_PER_S
        );
    };

    let mut rows: Vec<Row<'_>> = vec![
        (
            "image_only (decode + imageops Lanczos3 + encode)",
            Box::new(|i| {
                black_box(image_only(&sources[i]));
            }),
        ),
        (
            "image + fir (whole decode, Lanczos3, encode)",
            Box::new(|i| {
                let decoded = image::load_from_memory(&sources[i]).expect("decode").into_rgb8();
                let small = fir_resize(
                    decoded.as_raw(),
                    fir::ResizeAlg::Convolution(fir::FilterType::Lanczos3),
                );
                black_box(encode_jpeg(&small, width, height));
            }),
        ),
        (
            "worker, fresh (resize::thumbnail)",
            Box::new(|i| {
                black_box(resize::thumbnail(&sources[i], &spec, &budget).expect("thumbnail"));
            }),
        ),
        (
            "worker, reused (resize::Thumbnailer)",
            Box::new({
                let mut thumbnailer = resize::Thumbnailer::new();
                let (spec, budget) = (&spec, &budget);
                let sources = &sources;
                move |i| {
                    black_box(thumbnailer.thumbnail(&sources[i], spec, budget).expect("thumbnail"));
                }
            }),
        ),
        (
            "stage: probe",
            Box::new(|i| {
                black_box(resize::probe(&sources[i]).expect("probe"));
            }),
        ),
        (
            "stage: jpeg-decoder decode at 1/4 (400x300)",
            Box::new(|i| {
                black_box(jpeg_decoder_at(&sources[i], 4));
            }),
        ),
        (
            "stage: fir Lanczos3 from 400x300",
            Box::new(|i| {
                black_box(fir_resize_from(
                    &quarter[i],
                    SOURCE_WIDTH / 4,
                    SOURCE_HEIGHT / 4,
                    fir::ResizeAlg::Convolution(fir::FilterType::Lanczos3),
                ));
            }),
        ),
        (
            "stage: encode 256x192",
            Box::new(|_| {
                black_box(encode_jpeg(&small, width, height));
            }),
        ),
        (
            "alt: image decode (whole, zune-jpeg)",
            Box::new(|i| {
                black_box(image::load_from_memory(&sources[i]).expect("decode"));
            }),
        ),
        (
            "alt: jpeg-decoder decode at 1/2",
            Box::new(|i| {
                black_box(jpeg_decoder_at(&sources[i], 2));
            }),
        ),
        (
            "alt: jpeg-decoder decode at 1/8",
            Box::new(|i| {
                black_box(jpeg_decoder_at(&sources[i], 8));
            }),
        ),
        (
            "alt: fir Lanczos3 from 1600x1200",
            Box::new(|i| {
                black_box(fir_resize(
                    &decoded[i],
                    fir::ResizeAlg::Convolution(fir::FilterType::Lanczos3),
                ));
            }),
        ),
        (
            "alt: fir SuperSampling(Lanczos3, 2)",
            Box::new(|i| {
                black_box(fir_resize(
                    &decoded[i],
                    fir::ResizeAlg::SuperSampling(fir::FilterType::Lanczos3, 2),
                ));
            }),
        ),
        (
            "alt: fir Box to 2x the bound, then Lanczos3",
            Box::new(|i| {
                let source = fir::images::ImageRef::new(
                    SOURCE_WIDTH,
                    SOURCE_HEIGHT,
                    &decoded[i],
                    fir::PixelType::U8x3,
                )
                .unwrap();
                let mut halfway =
                    fir::images::Image::new(width * 2, height * 2, fir::PixelType::U8x3);
                let mut resizer = fir::Resizer::new();
                let boxed = fir::ResizeOptions::new()
                    .resize_alg(fir::ResizeAlg::Convolution(fir::FilterType::Box));
                resizer.resize(&source, &mut halfway, &boxed).unwrap();
                let mut destination = fir::images::Image::new(width, height, fir::PixelType::U8x3);
                resizer.resize(&halfway, &mut destination, &fir::ResizeOptions::new()).unwrap();
                black_box(destination.into_vec());
            }),
        ),
        (
            "alt: zune-jpeg decode, RGB out",
            Box::new(|i| {
                let options = zune_core::options::DecoderOptions::default()
                    .jpeg_set_out_colorspace(zune_core::colorspace::ColorSpace::RGB);
                let mut decoder = zune_jpeg::JpegDecoder::new_with_options(
                    zune_core::bytestream::ZCursor::new(&sources[i][..]),
                    options,
                );
                black_box(decoder.decode().unwrap());
            }),
        ),
        (
            "alt: zune-jpeg decode, YCbCr out",
            Box::new(|i| {
                let options = zune_core::options::DecoderOptions::default()
                    .jpeg_set_out_colorspace(zune_core::colorspace::ColorSpace::YCbCr);
                let mut decoder = zune_jpeg::JpegDecoder::new_with_options(
                    zune_core::bytestream::ZCursor::new(&sources[i][..]),
                    options,
                );
                black_box(decoder.decode().unwrap());
            }),
        ),
        (
            "alt: zune-jpeg decode into a reused buffer",
            Box::new({
                let mut buffer = vec![0u8; (SOURCE_WIDTH * SOURCE_HEIGHT * 3) as usize];
                let sources = &sources;
                move |i| {
                    let options = zune_core::options::DecoderOptions::default()
                        .jpeg_set_out_colorspace(zune_core::colorspace::ColorSpace::RGB);
                    let mut decoder = zune_jpeg::JpegDecoder::new_with_options(
                        zune_core::bytestream::ZCursor::new(&sources[i][..]),
                        options,
                    );
                    decoder.decode_into(&mut buffer).unwrap();
                    black_box(&buffer);
                }
            }),
        ),
        (
            "alt: fir Convolution(CatmullRom)",
            Box::new(|i| {
                black_box(fir_resize(
                    &decoded[i],
                    fir::ResizeAlg::Convolution(fir::FilterType::CatmullRom),
                ));
            }),
        ),
    ];
    rows.retain(|(name, _)| wanted(name));
    let per_s = rates(&mut rows);
    for ((name, _), per_s) in rows.iter().zip(&per_s) {
        report(name, *per_s);
    }
    if let (Some(image_only), Some(worker)) = (
        rows.iter().position(|(name, _)| name.starts_with("image_only")),
        rows.iter().position(|(name, _)| name.starts_with("worker, reused")),
    ) {
        // The reference figures come from an idle machine; this one may be shared. Scaling by
        // the image-only row's ratio to its reference estimates the idle figure.
        let scale = IMAGE_ONLY_REFERENCE_PER_S / per_s[image_only];
        println!(
            "worker (reused) scaled to an idle machine by image_only's ratio: {:.1}/s \
             (x{scale:.2}); libvips {LIBVIPS_REFERENCE_PER_S}/s, target {TARGET_PER_S:.1}/s",
            per_s[worker] * scale
        );
    }
    println!(
        "reference (this machine): image alone {IMAGE_ONLY_REFERENCE_PER_S}/s, image + \
         fast_image_resize {IMAGE_FAST_RESIZE_REFERENCE_PER_S}/s, libvips in-process \
         {LIBVIPS_REFERENCE_PER_S}/s; target for the worker: >= {TARGET_PER_S:.1}/s"
    );
}
