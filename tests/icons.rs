//! The tray's state icons: the PNGs the package installs under hicolor are
//! exactly what the agent draws, and a strip of all of them (in colour and
//! in grey, as a colour-blind user may see them) is kept at
//! `target/tmp/tray-icons.png` for a person to look at.
//!
//! After changing the drawing, write the packaged PNGs again with
//! `CERTAGENT_WRITE_ICONS=1 cargo nextest run -E 'binary(icons)'` (that run
//! fails on purpose: it wrote, it did not check), then run it without.

use std::path::{Path, PathBuf};

use certagent::agent::icons::{BADGES, SIZES, render, theme_name};

fn packaged(size: u32, name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(format!(
        "packaging/icons/hicolor/{size}x{size}/status/{name}.png"
    ))
}

fn write_png(path: &Path, width: u32, height: u32, rgba: &[u8]) {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).expect("dir");
    }
    let file = std::fs::File::create(path).expect("create png");
    let mut enc = png::Encoder::new(std::io::BufWriter::new(file), width, height);
    enc.set_color(png::ColorType::Rgba);
    enc.set_depth(png::BitDepth::Eight);
    let mut w = enc.write_header().expect("png header");
    w.write_image_data(rgba).expect("png data");
}

fn read_png(path: &Path) -> (u32, u32, Vec<u8>) {
    let file = std::fs::File::open(path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; write the icons with CERTAGENT_WRITE_ICONS=1",
            path.display()
        )
    });
    let mut dec = png::Decoder::new(std::io::BufReader::new(file))
        .read_info()
        .expect("png");
    let mut buf = vec![0; dec.output_buffer_size().expect("size")];
    let info = dec.next_frame(&mut buf).expect("frame");
    assert_eq!(info.color_type, png::ColorType::Rgba, "{}", path.display());
    buf.truncate(info.buffer_size());
    (info.width, info.height, buf)
}

#[test]
fn packaged_icons_are_the_rendered_ones_and_a_strip_shows_them() {
    // Writing is not checking: a run that writes the icons fails, so that
    // only a run without the variable can pass (it compares the packaged
    // files with the drawing).
    let write = std::env::var_os("CERTAGENT_WRITE_ICONS").is_some();
    for size in SIZES {
        for badge in BADGES {
            let path = packaged(size, theme_name(badge));
            let drawn = render(badge, size);
            if write {
                write_png(&path, size, size, &drawn);
            }
            let (w, h, data) = read_png(&path);
            assert_eq!((w, h), (size, size), "{}", path.display());
            assert!(
                data == drawn,
                "{} differs from the drawing; write it again with CERTAGENT_WRITE_ICONS=1",
                path.display()
            );
        }
    }

    // The strip: a row per size, a column per state, on a light panel; the
    // second half of the rows again in grey (luminance only).
    let cell = 72u32;
    let (width, height) = (cell * BADGES.len() as u32, cell * SIZES.len() as u32 * 2);
    let mut strip = vec![0xeeu8; (width * height * 4) as usize];
    for (row, size) in SIZES.iter().chain(SIZES.iter()).enumerate() {
        let grey = row >= SIZES.len();
        for (col, badge) in BADGES.iter().enumerate() {
            let icon = render(*badge, *size);
            for y in 0..*size {
                for x in 0..*size {
                    let i = ((y * size + x) * 4) as usize;
                    let (mut r, mut g, mut b, a) = (
                        f32::from(icon[i]),
                        f32::from(icon[i + 1]),
                        f32::from(icon[i + 2]),
                        f32::from(icon[i + 3]) / 255.0,
                    );
                    if grey {
                        let l = 0.2126 * r + 0.7152 * g + 0.0722 * b;
                        (r, g, b) = (l, l, l);
                    }
                    let ox = col as u32 * cell + (cell - size) / 2 + x;
                    let oy = row as u32 * cell + (cell - size) / 2 + y;
                    let o = ((oy * width + ox) * 4) as usize;
                    for (k, v) in [r, g, b].into_iter().enumerate() {
                        let bg = f32::from(strip[o + k]);
                        strip[o + k] = (v * a + bg * (1.0 - a)).round() as u8;
                    }
                    strip[o + 3] = 0xff;
                }
            }
        }
    }
    let out = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("tray-icons.png");
    write_png(&out, width, height, &strip);
    println!("strip of the tray icons: {}", out.display());
    assert!(
        !write,
        "the packaged icons were written, not checked: run the test again without CERTAGENT_WRITE_ICONS"
    );
}

/// The Windows icon (`packaging/windows/certagent.ico`, the installer's
/// and the Start-menu entry's): the "valid" glyph at 16, 24, 32, 48 and 64
/// pixels, each a PNG inside the .ico (as Windows Vista and later read
/// them). Written and checked as the PNGs are.
#[test]
fn the_windows_icon_holds_the_glyph_at_16_to_64_pixels() {
    use certagent::agent::icons::Badge;
    let sizes = [16u32, 24, 32, 48, 64];
    let pngs: Vec<Vec<u8>> = sizes
        .iter()
        .map(|&size| {
            let mut out = Vec::new();
            let mut enc = png::Encoder::new(&mut out, size, size);
            enc.set_color(png::ColorType::Rgba);
            enc.set_depth(png::BitDepth::Eight);
            let mut w = enc.write_header().expect("png header");
            w.write_image_data(&render(Badge::Valid, size))
                .expect("png data");
            w.finish().expect("png end");
            out
        })
        .collect();
    // ICONDIR, one ICONDIRENTRY per size, then the images.
    let mut ico = vec![0, 0, 1, 0];
    ico.extend_from_slice(&(sizes.len() as u16).to_le_bytes());
    let mut offset = 6 + 16 * sizes.len();
    for (size, png) in sizes.iter().zip(&pngs) {
        ico.extend_from_slice(&[*size as u8, *size as u8, 0, 0]);
        ico.extend_from_slice(&1u16.to_le_bytes()); // planes
        ico.extend_from_slice(&32u16.to_le_bytes()); // bits per pixel
        ico.extend_from_slice(&(png.len() as u32).to_le_bytes());
        ico.extend_from_slice(&(offset as u32).to_le_bytes());
        offset += png.len();
    }
    for png in &pngs {
        ico.extend_from_slice(png);
    }
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("packaging/windows/certagent.ico");
    let write = std::env::var_os("CERTAGENT_WRITE_ICONS").is_some();
    if write {
        std::fs::write(&path, &ico).expect("write the .ico");
    }
    let packaged = std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; write the icons with CERTAGENT_WRITE_ICONS=1",
            path.display()
        )
    });
    assert!(
        packaged == ico,
        "{} differs from the drawing; write it again with CERTAGENT_WRITE_ICONS=1",
        path.display()
    );
    // An independent reader sees the five sizes.
    let out = std::process::Command::new("identify")
        .arg(&path)
        .output()
        .expect("identify runs: apt-get install imagemagick (scripts/setup.sh installs it)");
    let seen = String::from_utf8_lossy(&out.stdout);
    for size in sizes {
        assert!(seen.contains(&format!(" {size}x{size} ")), "{seen}");
    }
    assert!(
        !write,
        "the .ico was written, not checked: run again without CERTAGENT_WRITE_ICONS"
    );
}
