//! Whether the numbers in a document mean exactly what the schema
//! validator saw (see the module above).

use std::fmt;

/// A number whose written decimal value is not what the schema validator
/// sees.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InexactNumber {
    offset: usize,
    len: usize,
}

impl InexactNumber {
    /// Byte offset of the number token in the document.
    pub fn offset(&self) -> usize {
        self.offset
    }

    /// Byte range of the number token, so a caller can report which value
    /// was refused.
    pub fn span(&self) -> std::ops::Range<usize> {
        self.offset..self.offset + self.len
    }
}

impl fmt::Display for InexactNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "number at byte {} is not exactly the value the schema validator checks",
            self.offset
        )
    }
}

impl std::error::Error for InexactNumber {}

/// Ok when every number token in the (already known valid) JSON document
/// denotes exactly the value serde_json parses it to.
///
/// "Exactly" means: an integer token that fits `i64` (negative) or `u64`
/// (serde_json keeps those as integers), or a token whose decimal value
/// equals the shortest round-trip decimal of the `f64` serde_json makes of
/// it. Why that rule: the validator checks the `f64`, and backends read the
/// text either as the nearest double (which is then that same `f64`) or as
/// an exact decimal (which is then the decimal the validator's value prints
/// as). Requiring equality with the double's own exact binary expansion
/// instead would refuse ordinary inputs such as `0.1`.
///
/// The value is taken from serde_json itself, not `str::parse`, because
/// without its `float_roundtrip` feature serde_json may round differently
/// from a correctly rounded parse; what matters is what the validator saw.
///
/// # Errors
/// [`InexactNumber`] for the first number whose text and checked value
/// differ: more digits than a double keeps, values that underflow to zero or
/// overflow to infinity, integers past `u64`. Malformed input is not
/// rejected as such (validate it first), but a malformed number counts as
/// inexact.
pub fn numbers_exact(bytes: &[u8]) -> Result<(), InexactNumber> {
    let mut i = 0;
    while let Some(&c) = bytes.get(i) {
        match c {
            b'"' => {
                i += 1;
                while let Some(&c) = bytes.get(i) {
                    i += 1;
                    match c {
                        b'"' => break,
                        b'\\' => i += 1,
                        _ => {}
                    }
                }
            }
            b'-' | b'0'..=b'9' => {
                let start = i;
                while let Some(b'0'..=b'9' | b'.' | b'e' | b'E' | b'+' | b'-') = bytes.get(i) {
                    i += 1;
                }
                let token = &bytes[start..i];
                if !json_number_exact(token) {
                    return Err(InexactNumber {
                        offset: start,
                        len: token.len(),
                    });
                }
            }
            _ => i += 1,
        }
    }
    Ok(())
}

/// The same rule as [`numbers_exact`] for one number written as text, as the
/// gateway reads query and path parameters that a schema types as numbers.
///
/// Those are read with `str::parse` (`i64`, then `u64`, then `f64`), so this
/// accepts that syntax (`+5`, `.5`, `5.`, leading zeros) and judges it
/// against that parse; `inf`, `NaN`, whitespace and anything else that is not
/// a finite decimal number are false.
pub fn number_text_exact(text: &str) -> bool {
    let Some(number) = Decimal::split(text.as_bytes(), true) else {
        return false;
    };
    if number.is_integer() && (text.parse::<i64>().is_ok() || text.parse::<u64>().is_ok()) {
        return true;
    }
    if number.plainly_exact() {
        return true;
    }
    match text.parse::<f64>() {
        Ok(value) => number.denotes(value),
        Err(_) => false,
    }
}

fn json_number_exact(token: &[u8]) -> bool {
    let Some(number) = Decimal::split(token, false) else {
        return false;
    };
    if number.is_integer() {
        let fits = std::str::from_utf8(token).is_ok_and(|text| {
            if number.negative {
                text.parse::<i64>().is_ok()
            } else {
                text.parse::<u64>().is_ok()
            }
        });
        if fits {
            return true;
        }
    }
    if number.plainly_exact() {
        return true;
    }
    match serde_json::from_slice::<f64>(token) {
        Ok(value) => number.denotes(value),
        Err(_) => false,
    }
}

/// A decimal number split into its written parts, never evaluated, so any
/// length costs linear time.
pub(super) struct Decimal<'a> {
    negative: bool,
    int: &'a [u8],
    frac: &'a [u8],
    exp_negative: bool,
    exp: &'a [u8],
    has_point_or_exp: bool,
}

/// The most significant digits a shortest round-trip `f64` decimal has.
const MAX_DIGITS: usize = 17;

/// A nonzero decimal as 0.DIGITS × 10^point, DIGITS without leading or
/// trailing zeros: equal numbers have equal forms, however they are written.
#[derive(PartialEq, Eq)]
struct Normal {
    digits: [u8; MAX_DIGITS],
    len: usize,
    point: i64,
}

impl<'a> Decimal<'a> {
    /// Splits `text` by the JSON number grammar, or with `lenient` by the one
    /// `str::parse` accepts for finite numbers (a `+` sign, leading zeros,
    /// and digits missing on one side of the point).
    pub(super) fn split(text: &'a [u8], lenient: bool) -> Option<Self> {
        let mut i = 0;
        let mut negative = false;
        match text.first() {
            Some(b'-') => {
                negative = true;
                i = 1;
            }
            Some(b'+') if lenient => i = 1,
            _ => {}
        }
        let run = |from: usize| {
            from + text
                .get(from..)
                .map_or(0, |t| t.iter().take_while(|c| c.is_ascii_digit()).count())
        };
        let int_end = run(i);
        let int = &text[i..int_end];
        if !lenient && (int.is_empty() || (int.len() > 1 && int[0] == b'0')) {
            return None;
        }
        i = int_end;
        let mut frac: &[u8] = &[];
        let mut has_point_or_exp = false;
        if text.get(i) == Some(&b'.') {
            has_point_or_exp = true;
            let end = run(i + 1);
            frac = &text[i + 1..end];
            if frac.is_empty() && !lenient {
                return None;
            }
            i = end;
        }
        if int.is_empty() && frac.is_empty() {
            return None;
        }
        let mut exp: &[u8] = &[];
        let mut exp_negative = false;
        if let Some(b'e' | b'E') = text.get(i) {
            has_point_or_exp = true;
            i += 1;
            match text.get(i) {
                Some(b'-') => {
                    exp_negative = true;
                    i += 1;
                }
                Some(b'+') => i += 1,
                _ => {}
            }
            let end = run(i);
            exp = &text[i..end];
            if exp.is_empty() {
                return None;
            }
            i = end;
        }
        if i != text.len() {
            return None;
        }
        Some(Decimal {
            negative,
            int,
            frac,
            exp_negative,
            exp,
            has_point_or_exp,
        })
    }

    fn is_integer(&self) -> bool {
        !self.has_point_or_exp
    }

    /// True when the text has at most 15 digits once leading zeros are gone
    /// (so the integer significand is exact in an `f64`) and is scaled by at
    /// most 10^22 either way (an exact `f64` too). Then one multiplication or
    /// division rounds correctly, which is what serde_json (with or without
    /// `float_roundtrip`) and `str::parse` compute, and a decimal of at most
    /// 15 digits is always the shortest one of its double. Nearly all real
    /// numbers (prices, quantities) qualify, and this costs a scan where the
    /// general check parses and formats.
    pub(super) fn plainly_exact(&self) -> bool {
        let digits = self.int.iter().chain(self.frac);
        let significant = digits.skip_while(|&&c| c == b'0').count();
        if significant == 0 || significant > 15 || self.exp.len() > 4 {
            return false;
        }
        let exp = self
            .exp
            .iter()
            .fold(0i64, |e, &c| e * 10 + i64::from(c - b'0'));
        let exp = if self.exp_negative { -exp } else { exp };
        i64::try_from(self.frac.len()).is_ok_and(|frac| (-22..=22).contains(&(exp - frac)))
    }

    /// Whether this text is exactly the shortest round-trip decimal of
    /// `value`.
    pub(super) fn denotes(&self, value: f64) -> bool {
        if !value.is_finite() {
            return false;
        }
        let written = self.normal();
        if value == 0.0 {
            // Both signs of zero are zero to a decimal reader.
            return written.is_none() && self.all_zero();
        }
        if self.negative != value.is_sign_negative() {
            return false;
        }
        let mut buf = Buf::default();
        if fmt::Write::write_fmt(&mut buf, format_args!("{:e}", value.abs())).is_err() {
            return false;
        }
        let shortest = Decimal::split(buf.as_bytes(), false).and_then(|d| d.normal());
        match (written, shortest) {
            (Some(written), Some(shortest)) => written == shortest,
            _ => false,
        }
    }

    fn all_zero(&self) -> bool {
        self.int.iter().chain(self.frac).all(|&c| c == b'0')
    }

    /// None when zero, when longer than any shortest `f64` decimal, or when
    /// the exponent is too large to matter for a finite nonzero double.
    fn normal(&self) -> Option<Normal> {
        let digit = |k: usize| -> u8 {
            match self.int.get(k) {
                Some(&c) => c,
                None => self.frac.get(k - self.int.len()).copied().unwrap_or(b'0'),
            }
        };
        let total = self.int.len() + self.frac.len();
        let first = (0..total).find(|&k| digit(k) != b'0')?;
        let last = (first..total).rev().find(|&k| digit(k) != b'0')?;
        let len = last - first + 1;
        if len > MAX_DIGITS {
            return None;
        }
        let mut digits = [0u8; MAX_DIGITS];
        for (slot, k) in digits.iter_mut().zip(first..=last) {
            *slot = digit(k);
        }
        let mut exp: i64 = 0;
        for &c in self.exp {
            exp = exp.checked_mul(10)?.checked_add(i64::from(c - b'0'))?;
        }
        if self.exp_negative {
            exp = -exp;
        }
        let point = i64::try_from(self.int.len())
            .ok()?
            .checked_sub(i64::try_from(first).ok()?)?
            .checked_add(exp)?;
        Some(Normal { digits, len, point })
    }
}

/// Stack buffer for formatting one `f64`, so checking numbers allocates
/// nothing.
#[derive(Default)]
struct Buf {
    bytes: [u8; 32],
    len: usize,
}

impl Buf {
    fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

impl fmt::Write for Buf {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let end = self.len + s.len();
        let slot = self.bytes.get_mut(self.len..end).ok_or(fmt::Error)?;
        slot.copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}
