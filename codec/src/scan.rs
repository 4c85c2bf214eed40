//! Byte scans of strings, eight bytes per step.
//!
//! Every PUBLISH topic and every topic filter is scanned for NUL, `+`, `#`
//! and non-ASCII bytes, so these checks read one `u64` at a time. They use
//! the "has zero byte" bit trick: `(word - 0x0101..) & !word & 0x8080..` sets
//! the high bit of the lowest zero byte of `word`, and of no byte below it.
//! Strings shorter than eight bytes are checked byte by byte.

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGH_BITS: u64 = 0x8080_8080_8080_8080;

/// Marks the high bit of the lowest zero byte of `word`. Bytes above it may
/// be marked too, so only the lowest mark gives a position.
fn zero_bytes(word: u64) -> u64 {
    word.wrapping_sub(ONES) & !word & HIGH_BITS
}

/// Marks NUL, `+` and `#` bytes of `word` as [`zero_bytes`] does.
fn nul_or_wildcard_bytes(word: u64) -> u64 {
    zero_bytes(word)
        | zero_bytes(word ^ (ONES * u64::from(b'+')))
        | zero_bytes(word ^ (ONES * u64::from(b'#')))
}

fn is_nul_or_wildcard(byte: u8) -> bool {
    byte == 0 || byte == b'+' || byte == b'#'
}

/// True if `word_ok` holds for every eight-byte word of `bytes` or, when
/// `bytes` is shorter than eight, `byte_ok` for every byte.
#[inline]
fn all_words(bytes: &[u8], word_ok: impl Fn(u64) -> bool, byte_ok: impl Fn(u8) -> bool) -> bool {
    let Some(last) = bytes.last_chunk::<8>() else {
        return bytes.iter().all(|&byte| byte_ok(byte));
    };
    let (chunks, _) = bytes.as_chunks::<8>();
    // The last word overlaps the chunks, so the tail needs no byte loop.
    chunks
        .iter()
        .all(|chunk| word_ok(u64::from_le_bytes(*chunk)))
        && word_ok(u64::from_le_bytes(*last))
}

/// True if every byte of `bytes` is ASCII other than NUL, `+` and `#`: a
/// topic name that is valid UTF-8 and needs no other check.
#[inline]
pub(crate) fn is_plain_ascii_topic(bytes: &[u8]) -> bool {
    all_words(
        bytes,
        |word| word & HIGH_BITS == 0 && nul_or_wildcard_bytes(word) == 0,
        |byte| byte.is_ascii() && !is_nul_or_wildcard(byte),
    )
}

/// True if every byte of `bytes` is ASCII other than NUL: a string that is
/// valid UTF-8 without U+0000.
#[inline]
pub(crate) fn is_ascii_without_nul(bytes: &[u8]) -> bool {
    all_words(
        bytes,
        |word| word & HIGH_BITS == 0 && zero_bytes(word) == 0,
        |byte| byte.is_ascii() && byte != 0,
    )
}

/// Returns the index of the first NUL, `+` or `#` in `bytes`.
pub(crate) fn find_nul_or_wildcard(bytes: &[u8]) -> Option<usize> {
    if bytes.len() < 8 {
        return bytes.iter().position(|&byte| is_nul_or_wildcard(byte));
    }
    let (chunks, _) = bytes.as_chunks::<8>();
    for (index, chunk) in chunks.iter().enumerate() {
        let marks = nul_or_wildcard_bytes(u64::from_le_bytes(*chunk));
        if marks != 0 {
            return Some(index * 8 + marks.trailing_zeros() as usize / 8);
        }
    }
    // The last word overlaps the chunks, which held none of the three bytes,
    // so its first mark is the first in the tail.
    let last_start = bytes.len() - 8;
    let last = bytes.last_chunk::<8>()?;
    let marks = nul_or_wildcard_bytes(u64::from_le_bytes(*last));
    (marks != 0).then(|| last_start + marks.trailing_zeros() as usize / 8)
}

/// True if `bytes` contains NUL, `+` or `#`.
pub(crate) fn has_nul_or_wildcard(bytes: &[u8]) -> bool {
    !all_words(
        bytes,
        |word| nul_or_wildcard_bytes(word) == 0,
        |byte| !is_nul_or_wildcard(byte),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Strings of up to 20 bytes of `a`, with each byte value in turn at
    /// each position, and with a second byte at the end.
    fn cases() -> impl Iterator<Item = Vec<u8>> {
        (0..20usize).flat_map(|length| {
            (0..length).flat_map(move |position| {
                (0..=u8::MAX).flat_map(move |byte| {
                    [b'a', b'+', 0, 0xC3].map(|last| {
                        let mut bytes = vec![b'a'; length];
                        bytes[position] = byte;
                        if position + 1 < length {
                            bytes[length - 1] = last;
                        }
                        bytes
                    })
                })
            })
        })
    }

    #[test]
    fn scans_match_byte_loops() {
        let special = |byte: &u8| [0, b'+', b'#'].contains(byte);
        for bytes in cases() {
            let plain_topic = bytes.iter().all(|&b| b.is_ascii() && !special(&b));
            let ascii_without_nul = bytes.iter().all(|&b| b.is_ascii() && b != 0);
            let first_special = bytes.iter().position(special);
            assert_eq!(is_plain_ascii_topic(&bytes), plain_topic, "{bytes:?}");
            assert_eq!(is_ascii_without_nul(&bytes), ascii_without_nul, "{bytes:?}");
            assert_eq!(find_nul_or_wildcard(&bytes), first_special, "{bytes:?}");
            assert_eq!(
                has_nul_or_wildcard(&bytes),
                first_special.is_some(),
                "{bytes:?}"
            );
        }
    }

    #[test]
    fn ascii_scans_imply_utf8() {
        // The decoder skips the UTF-8 check for strings these scans accept.
        for bytes in cases() {
            if is_ascii_without_nul(&bytes) || is_plain_ascii_topic(&bytes) {
                assert!(std::str::from_utf8(&bytes).is_ok(), "{bytes:?}");
            }
        }
    }

    #[test]
    fn empty_string_is_plain() {
        assert!(is_plain_ascii_topic(b""));
        assert!(is_ascii_without_nul(b""));
        assert_eq!(find_nul_or_wildcard(b""), None);
    }
}
