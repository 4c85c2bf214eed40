//! Comparison of a presented bearer secret with the configured one.

use sha2::{Digest, Sha256};

/// Compares `presented` with `expected` in time that does not depend on
/// where they differ. Both are hashed first, so neither their contents nor
/// the expected length leak through timing.
pub fn secrets_equal(expected: &[u8], presented: &[u8]) -> bool {
    let expected = Sha256::digest(expected);
    let presented = Sha256::digest(presented);
    let difference = expected
        .iter()
        .zip(presented.iter())
        .fold(0u8, |acc, (a, b)| acc | (a ^ b));
    difference == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_comparison() {
        assert!(secrets_equal(b"abc", b"abc"));
        assert!(!secrets_equal(b"abc", b"abd"));
        assert!(!secrets_equal(b"abc", b"ab"));
        assert!(!secrets_equal(b"abc", b""));
    }
}
