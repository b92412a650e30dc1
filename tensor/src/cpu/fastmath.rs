//! Branch-free f32 `exp` and the functions built on it, written so that LLVM vectorises the loops
//! that call them (libm's scalar `expf`/`tanhf` cost 10–30 ns per element and dominated the gate
//! arithmetic of a ConvRNN step). Cephes' range reduction and minimax polynomial for `expf`
//! (≤ 2 ulp on the reduced range).

const LOG2E: f32 = std::f32::consts::LOG2_E;
// ln 2 split in two so that n·ln2 is subtracted without rounding error.
const LN2_HI: f32 = 0.693_359_4;
const LN2_LO: f32 = -2.121_944_4e-4;
const ROUND_MAGIC: f32 = 12_582_912.0;

/// `e^x`; +inf above 88.72 like `f32::exp`, but 0 below −87.34 where `f32::exp` returns
/// subnormals (flushed here); NaN propagates.
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    let xc = x.clamp(-87.336_54, 88.722_84);
    // Round to nearest by adding and subtracting 1.5·2^23: `f32::round` is a libm call on
    // baseline x86-64 and would keep every loop that calls `exp` scalar.
    let t = xc * LOG2E + ROUND_MAGIC;
    let n = t - ROUND_MAGIC;
    let r = xc - n * LN2_HI - n * LN2_LO;
    let mut p = 1.987_569_1e-4f32;
    p = p * r + 1.398_199_9e-3;
    p = p * r + 8.333_452e-3;
    p = p * r + 4.166_579_6e-2;
    p = p * r + 1.666_666_5e-1;
    p = p * r + 0.5;
    let e = p * r * r + r + 1.0;
    // 2^n in two halves, so n = 128 (x near the top of the range) does not overflow the exponent.
    // n as an integer from t's low mantissa bits (t = 1.5·2^23 + n exactly): `n as i32` is a
    // saturating conversion that LLVM leaves scalar.
    let ni = (t.to_bits() as i32).wrapping_sub(ROUND_MAGIC.to_bits() as i32);
    let (a, b) = (ni >> 1, ni - (ni >> 1));
    let v = e * f32::from_bits(((a + 127) as u32) << 23) * f32::from_bits(((b + 127) as u32) << 23);
    // Outside the clamped range the true result under- or overflows; NaN stays NaN.
    if x > 88.722_84 {
        f32::INFINITY
    } else if x < -87.336_54 {
        0.0
    } else if x.is_nan() {
        x
    } else {
        v
    }
}

/// `1 / (1 + e^−x)`.
#[inline(always)]
pub fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + exp(-x))
}

/// `tanh x = 1 − 2 / (e^{2x} + 1)`; exact ±1 in the tails, and near 0 (where that form cancels)
/// the odd Taylor polynomial, accurate to ~1e-8 for |x| < 0.0625.
#[inline(always)]
pub fn tanh(x: f32) -> f32 {
    let big = 1.0 - 2.0 / (exp(2.0 * x) + 1.0);
    let x2 = x * x;
    let small = x * (1.0 - x2 * (1.0 / 3.0 - x2 * (2.0 / 15.0)));
    if x.abs() < 0.0625 {
        small
    } else {
        big
    }
}

/// `e^x − 1`, with the Taylor series near 0 where the subtraction would cancel.
#[inline(always)]
pub fn exp_m1(x: f32) -> f32 {
    let big = exp(x) - 1.0;
    let small = x * (1.0 + x * (0.5 + x * (1.0 / 6.0 + x * (1.0 / 24.0))));
    if x.abs() < 0.0625 {
        small
    } else {
        big
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rel(a: f32, b: f32) -> f32 {
        (a - b).abs() / b.abs().max(1e-30)
    }

    #[test]
    fn close_to_libm_everywhere() {
        let mut worst = [0f32; 4];
        let mut x = -87.3f32;
        while x < 90.0 {
            worst[0] = worst[0].max(rel(exp(x), x.exp()));
            if x.abs() < 20.0 {
                worst[1] = worst[1].max((sigmoid(x) - 1.0 / (1.0 + (-x).exp())).abs());
                worst[2] = worst[2].max((tanh(x) - x.tanh()).abs());
                worst[3] =
                    worst[3].max((exp_m1(x) - x.exp_m1()).abs() / x.exp_m1().abs().max(1e-3));
            }
            x += 0.000_731;
        }
        assert!(worst[0] < 5e-7, "exp {worst:?}");
        // exp_m1 = exp − 1 for |x| ≥ 1/16 inherits exp's relative error times e^x/(e^x − 1) ≤ 16.5.
        assert!(
            worst[1] < 3e-7 && worst[2] < 5e-7 && worst[3] < 2e-6,
            "{worst:?}"
        );
        assert_eq!(exp(-100.0), 0.0);
        assert_eq!(exp(100.0), f32::INFINITY);
        assert!(exp(f32::NAN).is_nan() && tanh(f32::NAN).is_nan());
        assert_eq!(tanh(30.0), 1.0);
        assert_eq!(tanh(-30.0), -1.0);
    }
}
