//! Half-precision inputs (IEEE binary16 and bfloat16) widened to f32 on load: the engines compute
//! in f32 or f64 only. Both conversions are exact (every half value is an f32 value) and written
//! without branches on the data, so the loops vectorize.

/// The f32 value of an IEEE binary16 bit pattern: normals and subnormals by one multiply that
/// rebiases the exponent (2^112 = 2^(127 − 15)), infinities and NaNs by forcing the f32 exponent.
#[inline]
pub fn f16_to_f32(bits: u16) -> f32 {
    let h = u32::from(bits);
    let magnitude = f32::from_bits((h & 0x7fff) << 13) * f32::from_bits(0x7780_0000);
    let inf_or_nan = if h & 0x7c00 == 0x7c00 { 0x7f80_0000 } else { 0 };
    f32::from_bits(magnitude.to_bits() | inf_or_nan | ((h & 0x8000) << 16))
}

/// The f32 value of a bfloat16 bit pattern: its upper half.
#[inline]
pub fn bf16_to_f32(bits: u16) -> f32 {
    f32::from_bits(u32::from(bits) << 16)
}

/// Which 16-bit format a buffer holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Half {
    /// IEEE binary16 (`.npy` `<f2`, safetensors `F16`).
    F16,
    /// bfloat16 (safetensors `BF16`).
    Bf16,
}

/// Widens 16-bit values stored as bytes (`little_endian` or big) to f32.
pub fn widen(bytes: &[u8], format: Half, little_endian: bool) -> Vec<f32> {
    let word = |b: &[u8]| {
        let pair = [b[0], b[1]];
        if little_endian {
            u16::from_le_bytes(pair)
        } else {
            u16::from_be_bytes(pair)
        }
    };
    match format {
        Half::F16 => bytes.chunks_exact(2).map(|b| f16_to_f32(word(b))).collect(),
        Half::Bf16 => bytes
            .chunks_exact(2)
            .map(|b| bf16_to_f32(word(b)))
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The value of a binary16 pattern from its definition, in f64.
    fn f16_reference(bits: u16) -> f64 {
        let sign = if bits & 0x8000 != 0 { -1.0 } else { 1.0 };
        let exponent = i32::from((bits >> 10) & 0x1f);
        let mantissa = f64::from(bits & 0x3ff);
        match exponent {
            0 => sign * mantissa / 1024.0 * 2f64.powi(-14),
            31 if mantissa == 0.0 => sign * f64::INFINITY,
            31 => f64::NAN,
            e => sign * (1.0 + mantissa / 1024.0) * 2f64.powi(e - 15),
        }
    }

    #[test]
    fn every_binary16_pattern_widens_to_its_value() {
        for bits in 0..=u16::MAX {
            let (got, want) = (f16_to_f32(bits), f16_reference(bits));
            if want.is_nan() {
                assert!(got.is_nan(), "{bits:#06x}");
            } else {
                assert_eq!(f64::from(got), want, "{bits:#06x}");
                assert_eq!(got.is_sign_negative(), bits & 0x8000 != 0, "{bits:#06x}");
            }
        }
    }

    #[test]
    fn every_bfloat16_pattern_widens_to_its_value() {
        for bits in 0..=u16::MAX {
            let got = bf16_to_f32(bits);
            let sign = if bits & 0x8000 != 0 { -1.0 } else { 1.0 };
            let exponent = i32::from((bits >> 7) & 0xff);
            let mantissa = f64::from(bits & 0x7f);
            let want = match exponent {
                0 => sign * mantissa / 128.0 * 2f64.powi(-126),
                255 if mantissa == 0.0 => sign * f64::INFINITY,
                255 => f64::NAN,
                e => sign * (1.0 + mantissa / 128.0) * 2f64.powi(e - 127),
            };
            if want.is_nan() {
                assert!(got.is_nan(), "{bits:#06x}");
            } else {
                assert_eq!(f64::from(got), want, "{bits:#06x}");
            }
        }
    }

    #[test]
    fn byte_order_is_respected() {
        // 1.5 in binary16 is 0x3e00.
        assert_eq!(widen(&[0x00, 0x3e], Half::F16, true), [1.5]);
        assert_eq!(widen(&[0x3e, 0x00], Half::F16, false), [1.5]);
        // 1.5 in bfloat16 is 0x3fc0.
        assert_eq!(widen(&[0xc0, 0x3f], Half::Bf16, true), [1.5]);
    }
}
