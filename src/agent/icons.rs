//! The tray's state icons, drawn here at any size: one glyph per state,
//! different in shape as well as colour, so the state reads without
//! telling colours apart (about one man in twenty does not).
//!
//! | state | shape | mark |
//! |---|---|---|
//! | valid | green disc | check |
//! | renewal due | amber triangle | exclamation mark |
//! | expired | red octagon | cross |
//! | lapsed | dark red square | bar |
//! | no certificate (no token, or none of the bank's on it) | grey ring | slash |
//! | renewing | blue diamond | three dots |
//!
//! Shapes are described in a unit square and rasterised with 4×4
//! supersampling, so they stay crisp from 16 to 64 pixels. The packaged
//! PNGs (`packaging/icons/hicolor/`) are these renderings; a test keeps them
//! in step. Drawn by hand because an SVG rasteriser would be a large
//! dependency for six small glyphs.

/// The state the icon shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Badge {
    Valid,
    RenewalDue,
    Expired,
    Lapsed,
    /// No usable bank certificate: no token, or none of the bank's on it.
    NoCertificate,
    Working,
}

/// Every state, in the order a strip shows them.
pub const BADGES: [Badge; 6] = [
    Badge::Valid,
    Badge::RenewalDue,
    Badge::Expired,
    Badge::Lapsed,
    Badge::NoCertificate,
    Badge::Working,
];

/// The sizes the packaged icons come in (hicolor `NxN/status`).
pub const SIZES: [u32; 6] = [16, 22, 24, 32, 48, 64];

/// The icon theme name of a state's icon (hicolor, context `status`).
pub fn theme_name(badge: Badge) -> &'static str {
    match badge {
        Badge::Valid => "certagent-valid",
        Badge::RenewalDue => "certagent-renewal-due",
        Badge::Expired => "certagent-expired",
        Badge::Lapsed => "certagent-lapsed",
        // The packaged name, kept: themes and packages know it.
        Badge::NoCertificate => "certagent-no-token",
        Badge::Working => "certagent-renewing",
    }
}

type Rgb = [u8; 3];
const WHITE: Rgb = [0xff, 0xff, 0xff];
const INK: Rgb = [0x21, 0x21, 0x21];

/// What covers a point: nothing, the shape, or the mark on it.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Cover {
    None,
    Shape,
    Mark,
}

/// Distance from `p` to the segment `a`–`b`.
fn segment(p: (f32, f32), a: (f32, f32), b: (f32, f32)) -> f32 {
    let (px, py) = (p.0 - a.0, p.1 - a.1);
    let (bx, by) = (b.0 - a.0, b.1 - a.1);
    let t = ((px * bx + py * by) / (bx * bx + by * by)).clamp(0.0, 1.0);
    let (dx, dy) = (px - t * bx, py - t * by);
    (dx * dx + dy * dy).sqrt()
}

fn dist(p: (f32, f32), c: (f32, f32)) -> f32 {
    ((p.0 - c.0).powi(2) + (p.1 - c.1).powi(2)).sqrt()
}

/// Which side of the edge `a`→`b` `p` lies on (positive: left).
fn edge(p: (f32, f32), a: (f32, f32), b: (f32, f32)) -> f32 {
    (b.0 - a.0) * (p.1 - a.1) - (b.1 - a.1) * (p.0 - a.0)
}

/// The shape's colour and the mark's.
fn colours(badge: Badge) -> (Rgb, Rgb) {
    match badge {
        Badge::Valid => ([0x2e, 0x7d, 0x32], WHITE),
        Badge::RenewalDue => ([0xf9, 0xa8, 0x25], INK),
        Badge::Expired => ([0xc6, 0x28, 0x28], WHITE),
        Badge::Lapsed => ([0x6a, 0x1b, 0x1b], WHITE),
        Badge::NoCertificate => ([0x75, 0x75, 0x75], WHITE),
        Badge::Working => ([0x15, 0x65, 0xc0], WHITE),
    }
}

/// What covers the point `p` of the unit square (y grows downwards).
fn cover(badge: Badge, p: (f32, f32)) -> Cover {
    let c = (0.5, 0.5);
    let (x, y) = (p.0 - 0.5, p.1 - 0.5);
    const LINE: f32 = 0.05; // half the mark's stroke
    let (shape, mark) = match badge {
        Badge::Valid => (
            dist(p, c) <= 0.47,
            segment(p, (0.27, 0.52), (0.43, 0.68)) <= LINE
                || segment(p, (0.43, 0.68), (0.74, 0.35)) <= LINE,
        ),
        Badge::RenewalDue => {
            let (a, b, d) = ((0.5, 0.04), (0.97, 0.92), (0.03, 0.92));
            (
                edge(p, a, b) >= 0.0 && edge(p, b, d) >= 0.0 && edge(p, d, a) >= 0.0,
                segment(p, (0.5, 0.38), (0.5, 0.64)) <= LINE || dist(p, (0.5, 0.78)) <= 0.06,
            )
        }
        Badge::Expired => {
            let a = 0.45;
            (
                x.abs() <= a && y.abs() <= a && x.abs() + y.abs() <= a * std::f32::consts::SQRT_2,
                segment(p, (0.33, 0.33), (0.67, 0.67)) <= LINE
                    || segment(p, (0.67, 0.33), (0.33, 0.67)) <= LINE,
            )
        }
        Badge::Lapsed => {
            // A square with rounded corners.
            let (h, r) = (0.43, 0.08);
            let (qx, qy) = ((x.abs() - (h - r)).max(0.0), (y.abs() - (h - r)).max(0.0));
            (
                x.abs() <= h && y.abs() <= h && (qx * qx + qy * qy).sqrt() <= r,
                segment(p, (0.27, 0.5), (0.73, 0.5)) <= 0.07,
            )
        }
        Badge::NoCertificate => {
            let d = dist(p, c);
            let ring = (0.35..=0.47).contains(&d);
            let slash = d <= 0.47 && segment(p, (0.22, 0.22), (0.78, 0.78)) <= 0.06;
            (ring || slash, false)
        }
        Badge::Working => (
            x.abs() + y.abs() <= 0.49,
            [0.31, 0.5, 0.69]
                .iter()
                .any(|&cx| dist(p, (cx, 0.5)) <= 0.065),
        ),
    };
    match (shape, mark) {
        (true, true) => Cover::Mark,
        (true, false) => Cover::Shape,
        _ => Cover::None,
    }
}

/// The state's icon, `size`×`size` RGBA (straight alpha), row by row.
pub fn render(badge: Badge, size: u32) -> Vec<u8> {
    const SS: u32 = 4;
    let (shape_rgb, mark_rgb) = colours(badge);
    let n = size.max(1);
    let mut out = Vec::with_capacity((n * n * 4) as usize);
    for py in 0..n {
        for px in 0..n {
            // Premultiplied sums over the subsamples.
            let mut sum = [0u32; 3];
            let mut covered = 0u32;
            for sy in 0..SS {
                for sx in 0..SS {
                    let p = (
                        (px as f32 + (sx as f32 + 0.5) / SS as f32) / n as f32,
                        (py as f32 + (sy as f32 + 0.5) / SS as f32) / n as f32,
                    );
                    let rgb = match cover(badge, p) {
                        Cover::None => continue,
                        Cover::Shape => shape_rgb,
                        Cover::Mark => mark_rgb,
                    };
                    covered += 1;
                    for (s, v) in sum.iter_mut().zip(rgb) {
                        *s += u32::from(v);
                    }
                }
            }
            if covered == 0 {
                out.extend_from_slice(&[0, 0, 0, 0]);
                continue;
            }
            let alpha = covered * 255 / (SS * SS);
            for s in sum {
                out.push((s / covered) as u8);
            }
            out.push(alpha as u8);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What a person who cannot tell the colours apart sees in each
    /// pixel: nothing (0), the mark (1) or the shape (2), by alpha and by
    /// which of the two colours the pixel is nearer.
    fn classes(badge: Badge, size: u32) -> Vec<u8> {
        let (shape, mark) = colours(badge);
        let near = |px: &[u8], c: Rgb| -> u32 {
            px.iter()
                .zip(c)
                .map(|(a, b)| u32::from(a.abs_diff(b)))
                .sum()
        };
        render(badge, size)
            .chunks(4)
            .map(|px| match (px.get(..3), px.get(3)) {
                (Some(rgb), Some(a)) if *a >= 128 => {
                    if near(rgb, mark) < near(rgb, shape) {
                        1
                    } else {
                        2
                    }
                }
                _ => 0,
            })
            .collect()
    }

    #[test]
    fn every_size_has_the_right_length_and_a_clear_border() {
        for badge in BADGES {
            for size in SIZES {
                let rgba = render(badge, size);
                assert_eq!(rgba.len(), (size * size * 4) as usize);
                // The corner pixel is transparent for every shape.
                assert_eq!(rgba.get(3), Some(&0), "{badge:?} at {size}");
            }
        }
    }

    /// Outline and mark alone (no colour) tell every two states apart,
    /// even at 16 pixels: at least 8% of the pixels differ.
    #[test]
    fn states_differ_by_shape_without_colour() {
        for size in [16, 22, 32] {
            for (i, a) in BADGES.iter().enumerate() {
                for b in BADGES.iter().skip(i + 1) {
                    let (ma, mb) = (classes(*a, size), classes(*b, size));
                    let differ = ma.iter().zip(&mb).filter(|(x, y)| x != y).count();
                    assert!(
                        differ * 100 >= ma.len() * 8,
                        "{a:?} and {b:?} at {size}px differ in only {differ} of {} pixels",
                        ma.len()
                    );
                }
            }
        }
    }

    /// The mark shows at the smallest size (not lost in the rounding).
    #[test]
    fn the_mark_survives_at_16_pixels() {
        for badge in BADGES.iter().filter(|l| **l != Badge::NoCertificate) {
            let marked = classes(*badge, 16).iter().filter(|c| **c == 1).count();
            assert!(marked >= 6, "{badge:?}: {marked} mark pixels");
        }
    }
}
