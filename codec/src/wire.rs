//! The data representations of MQTT section 1.5: Variable Byte Integers,
//! UTF-8 strings and binary data, read with `nom` and written with `bytes`.
//!
//! Readers work on a slice of a packet body and turn sub-slices back into
//! [`Bytes`] that share the body's memory, so strings and payloads are not
//! copied.

use bytes::{BufMut, Bytes, BytesMut};
use bytestring::ByteString;
use nom::error::{ErrorKind, ParseError};
use nom::{IResult, Parser};

use crate::error::DecodeError;
use crate::scan::is_ascii_without_nul;

/// The maximum value of a Variable Byte Integer (four bytes of 7 bits).
pub const VARIABLE_BYTE_INTEGER_MAX: u32 = 268_435_455;

/// The rule broken when the fields of a packet do not fill its remaining
/// length exactly.
pub(crate) const REMAINING_LENGTH_RULE: &str = "section 2.1.4";

/// A parse result whose error is already the codec's error.
pub(crate) type Res<'a, T> = IResult<&'a [u8], T, DecodeError>;

impl ParseError<&[u8]> for DecodeError {
    fn from_error_kind(_input: &[u8], _kind: ErrorKind) -> Self {
        // The readers use only complete-input parsers, so the one way for a
        // nom primitive to fail is to run out of packet.
        past_end()
    }

    fn append(_input: &[u8], _kind: ErrorKind, other: Self) -> Self {
        other
    }
}

/// Wraps an error so that nom stops at once instead of trying alternatives.
pub(crate) fn fail<T>(error: DecodeError) -> Result<T, nom::Err<DecodeError>> {
    Err(nom::Err::Failure(error))
}

/// Unwraps a nom error into the codec's error.
pub(crate) fn into_error(error: nom::Err<DecodeError>) -> DecodeError {
    match error {
        nom::Err::Error(error) | nom::Err::Failure(error) => error,
        nom::Err::Incomplete(_) => past_end(),
    }
}

/// Returns the error for a field that runs past the end of the packet.
#[cold]
pub(crate) fn past_end() -> DecodeError {
    DecodeError::Malformed {
        rule: REMAINING_LENGTH_RULE,
        detail: "a field runs past the end of the packet",
    }
}

/// Splits a Two Byte Integer off the front of `input`, or returns `None` if
/// `input` is shorter. A plain-slice reader for the PUBLISH path, which runs
/// for every message.
#[inline]
pub(crate) fn split_u16(input: &[u8]) -> Option<(u16, &[u8])> {
    let (bytes, rest) = input.split_first_chunk::<2>()?;
    Some((u16::from_be_bytes(*bytes), rest))
}

/// Splits a Two Byte Integer length and that many bytes off the front of
/// `input`, or returns `None` if `input` is shorter.
#[inline]
pub(crate) fn split_length_prefixed(input: &[u8]) -> Option<(&[u8], &[u8])> {
    let (length, rest) = split_u16(input)?;
    rest.split_at_checked(usize::from(length))
}

/// Outcome of reading a Variable Byte Integer from a stream.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum VarInt {
    /// The value and the number of bytes it took.
    Complete(u32, usize),
    /// The input ends before the last byte of the integer.
    Incomplete,
}

/// Reads a Variable Byte Integer from the front of `input`, which may end
/// early. Rejects a fifth byte (section 1.5.5) and encodings longer than
/// needed (MQTT-1.5.5-1).
#[inline]
pub(crate) fn read_var_int(input: &[u8]) -> Result<VarInt, DecodeError> {
    // A value below 128 takes one byte, as in every packet shorter than 130
    // bytes.
    if let Some(&byte) = input.first() {
        if byte & 0x80 == 0 {
            return Ok(VarInt::Complete(u32::from(byte), 1));
        }
    }
    let mut value: u32 = 0;
    for (index, byte) in input.iter().copied().enumerate().take(4) {
        value |= u32::from(byte & 0x7F) << (7 * index);
        if byte & 0x80 == 0 {
            // A last byte of 0 after other bytes adds nothing, so a shorter
            // encoding existed.
            if byte == 0 && index > 0 {
                return Err(DecodeError::Malformed {
                    rule: "MQTT-1.5.5-1",
                    detail: "Variable Byte Integer is not in its shortest form",
                });
            }
            return Ok(VarInt::Complete(value, index + 1));
        }
    }
    if input.len() >= 4 {
        return Err(DecodeError::Malformed {
            rule: "section 1.5.5",
            detail: "Variable Byte Integer is longer than 4 bytes",
        });
    }
    Ok(VarInt::Incomplete)
}

/// nom reader for a Variable Byte Integer inside a packet body.
pub(crate) fn var_int(input: &[u8]) -> Res<'_, u32> {
    match read_var_int(input) {
        Ok(VarInt::Complete(value, length)) => Ok((input.get(length..).unwrap_or(&[]), value)),
        Ok(VarInt::Incomplete) => fail(DecodeError::from_error_kind(input, ErrorKind::Eof)),
        Err(error) => fail(error),
    }
}

/// nom reader for a Two Byte Integer length followed by that many bytes.
pub(crate) fn length_prefixed(input: &[u8]) -> Res<'_, &[u8]> {
    nom::multi::length_data(nom::number::complete::be_u16).parse_complete(input)
}

/// Turns `raw`, a sub-slice of `body`, into a string sharing `body`'s memory.
#[inline]
pub(crate) fn to_string(body: &Bytes, raw: &[u8]) -> Result<ByteString, DecodeError> {
    if is_ascii_without_nul(raw) {
        // SAFETY: every byte of `raw` is below 0x80, and ASCII is valid UTF-8.
        // The unit tests of `scan` check the scan against a byte loop.
        return Ok(unsafe { ByteString::from_bytes_unchecked(body.slice_ref(raw)) });
    }
    into_string(body.slice_ref(raw))
}

/// Turns bytes into a string without copying them. Rejects ill-formed UTF-8,
/// including encoded surrogates (MQTT-1.5.4-1), and U+0000 (MQTT-1.5.4-2).
pub(crate) fn into_string(raw: Bytes) -> Result<ByteString, DecodeError> {
    check_no_nul(&raw)?;
    ByteString::try_from(raw).map_err(|_| not_utf8())
}

/// Checks `raw` as [`into_string`] does and returns it as a `str`.
pub(crate) fn to_str(raw: &[u8]) -> Result<&str, DecodeError> {
    check_no_nul(raw)?;
    utf8(raw)
}

/// Rejects U+0000 in a string (MQTT-1.5.4-2). Rust's UTF-8 check rejects
/// surrogates and overlong forms, so 0x00 can only be the encoding of U+0000.
fn check_no_nul(raw: &[u8]) -> Result<(), DecodeError> {
    if raw.contains(&0) {
        return Err(DecodeError::Malformed {
            rule: "MQTT-1.5.4-2",
            detail: "string contains U+0000",
        });
    }
    Ok(())
}

/// Checks that `raw` is well-formed UTF-8 (MQTT-1.5.4-1), and nothing else.
pub(crate) fn utf8(raw: &[u8]) -> Result<&str, DecodeError> {
    std::str::from_utf8(raw).map_err(|_| not_utf8())
}

/// Returns the error for a string that is not well-formed UTF-8
/// (MQTT-1.5.4-1).
#[cold]
pub(crate) fn not_utf8() -> DecodeError {
    DecodeError::Malformed {
        rule: "MQTT-1.5.4-1",
        detail: "string is not well-formed UTF-8",
    }
}

/// nom reader for a UTF-8 Encoded String.
#[inline]
pub(crate) fn string<'a>(body: &Bytes, input: &'a [u8]) -> Res<'a, ByteString> {
    let Some((raw, rest)) = split_length_prefixed(input) else {
        return fail(past_end());
    };
    match to_string(body, raw) {
        Ok(value) => Ok((rest, value)),
        Err(error) => fail(error),
    }
}

/// nom reader for Binary Data.
#[inline]
pub(crate) fn binary<'a>(body: &Bytes, input: &'a [u8]) -> Res<'a, Bytes> {
    let Some((raw, rest)) = split_length_prefixed(input) else {
        return fail(past_end());
    };
    Ok((rest, body.slice_ref(raw)))
}

/// Returns the number of bytes `value` takes as a Variable Byte Integer.
#[inline]
pub(crate) fn var_int_len(value: usize) -> usize {
    match value {
        0..=127 => 1,
        128..=16_383 => 2,
        16_384..=2_097_151 => 3,
        _ => 4,
    }
}

/// Appends `value` as a Variable Byte Integer. Values above
/// [`VARIABLE_BYTE_INTEGER_MAX`] are a caller bug.
#[inline]
pub(crate) fn put_var_int(out: &mut BytesMut, value: usize) {
    debug_assert!(value <= VARIABLE_BYTE_INTEGER_MAX as usize);
    let mut value = value;
    loop {
        let byte = (value % 128) as u8;
        value /= 128;
        if value == 0 {
            out.put_u8(byte);
            return;
        }
        out.put_u8(byte | 0x80);
    }
}

/// Appends a Two Byte Integer length and the bytes. Fields longer than
/// 65535 bytes are a caller bug.
#[inline]
pub(crate) fn put_binary(out: &mut BytesMut, data: &[u8]) {
    debug_assert!(data.len() <= usize::from(u16::MAX));
    out.put_u16(data.len() as u16);
    out.put_slice(data);
}

/// Returns the encoded length of a string or binary field.
#[inline]
pub(crate) fn binary_len(data: &[u8]) -> usize {
    2 + data.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn var_int_round_trips_at_boundaries() {
        for value in [
            0,
            127,
            128,
            16_383,
            16_384,
            2_097_151,
            2_097_152,
            268_435_455,
        ] {
            let mut out = BytesMut::new();
            put_var_int(&mut out, value);
            assert_eq!(out.len(), var_int_len(value), "{value}");
            let decoded = read_var_int(&out).unwrap();
            assert_eq!(
                decoded,
                VarInt::Complete(value as u32, out.len()),
                "{value}"
            );
        }
    }
}
