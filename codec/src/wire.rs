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
        DecodeError::Malformed {
            rule: REMAINING_LENGTH_RULE,
            detail: "a field runs past the end of the packet",
        }
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
        nom::Err::Incomplete(_) => DecodeError::Malformed {
            rule: REMAINING_LENGTH_RULE,
            detail: "a field runs past the end of the packet",
        },
    }
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
pub(crate) fn read_var_int(input: &[u8]) -> Result<VarInt, DecodeError> {
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
pub(crate) fn to_string(body: &Bytes, raw: &[u8]) -> Result<ByteString, DecodeError> {
    into_string(body.slice_ref(raw))
}

/// Turns bytes into a string without copying them. Rejects ill-formed UTF-8,
/// including encoded surrogates (MQTT-1.5.4-1), and U+0000 (MQTT-1.5.4-2).
pub(crate) fn into_string(raw: Bytes) -> Result<ByteString, DecodeError> {
    // Rust's UTF-8 check rejects surrogates and overlong forms, so 0x00 can
    // only be the encoding of U+0000.
    if raw.contains(&0) {
        return Err(DecodeError::Malformed {
            rule: "MQTT-1.5.4-2",
            detail: "string contains U+0000",
        });
    }
    ByteString::try_from(raw).map_err(|_| DecodeError::Malformed {
        rule: "MQTT-1.5.4-1",
        detail: "string is not well-formed UTF-8",
    })
}

/// True if `bytes` contains 0x00, `+` or `#`. Checks eight bytes per step
/// with the "has zero byte" bit trick, because PUBLISH topics are scanned on
/// every packet.
pub(crate) fn has_nul_or_wildcard(bytes: &[u8]) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH_BITS: u64 = 0x8080_8080_8080_8080;
    let has_zero_byte = |word: u64| word.wrapping_sub(ONES) & !word & HIGH_BITS != 0;

    let mut chunks = bytes.chunks_exact(8);
    for chunk in &mut chunks {
        let mut word = [0; 8];
        word.copy_from_slice(chunk);
        let word = u64::from_le_bytes(word);
        if has_zero_byte(word)
            || has_zero_byte(word ^ (ONES * u64::from(b'+')))
            || has_zero_byte(word ^ (ONES * u64::from(b'#')))
        {
            return true;
        }
    }
    chunks
        .remainder()
        .iter()
        .any(|&byte| byte == 0 || byte == b'+' || byte == b'#')
}

/// nom reader for a UTF-8 Encoded String.
pub(crate) fn string<'a>(body: &Bytes, input: &'a [u8]) -> Res<'a, ByteString> {
    let (rest, raw) = length_prefixed(input)?;
    match to_string(body, raw) {
        Ok(value) => Ok((rest, value)),
        Err(error) => fail(error),
    }
}

/// nom reader for Binary Data.
pub(crate) fn binary<'a>(body: &Bytes, input: &'a [u8]) -> Res<'a, Bytes> {
    let (rest, raw) = length_prefixed(input)?;
    Ok((rest, body.slice_ref(raw)))
}

/// Returns the number of bytes `value` takes as a Variable Byte Integer.
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
pub(crate) fn put_binary(out: &mut BytesMut, data: &[u8]) {
    debug_assert!(data.len() <= usize::from(u16::MAX));
    out.put_u16(data.len() as u16);
    out.put_slice(data);
}

/// Returns the encoded length of a string or binary field.
pub(crate) fn binary_len(data: &[u8]) -> usize {
    2 + data.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nul_or_wildcard_scan_matches_byte_loop() {
        // Every special byte at every position of strings up to 20 bytes,
        // among bytes that differ from it by one bit.
        for length in 0..20 {
            for position in 0..length {
                for special in [0u8, b'+', b'#', b'*', b'"', b'\x01', 0x80, 0xff] {
                    let mut bytes = vec![b'a'; length];
                    bytes[position] = special;
                    let expected = bytes.iter().any(|&b| b == 0 || b == b'+' || b == b'#');
                    assert_eq!(has_nul_or_wildcard(&bytes), expected, "{bytes:?}");
                }
            }
        }
    }

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
