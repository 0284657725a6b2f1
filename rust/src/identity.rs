//! Stable 64-bit content identities.
//!
//! The hash is XXH3-64 with seed 0 (the xxHash specification, version 0.8),
//! a documented non-cryptographic hash with published reference
//! implementations in many languages, so an id can be recomputed anywhere:
//!
//! * substrate id = XXH3-64( expression_type ‖ 0x00 ‖ canonical_code ), both
//!   UTF-8; the expression type is its lower-case name (`lambda`, `constant`,
//!   `expression`).
//! * relationship id = XXH3-64( source_id as u64 little-endian ‖
//!   target_id as u64 little-endian ‖ type name in upper case, ASCII ).
//!
//! Test vectors live in `tests/identity_vectors.json` at the repository root
//! and are checked from Rust and from Python (against an independent
//! implementation of XXH3).

use xxhash_rust::xxh3::xxh3_64;

use crate::error::{CoreError, CoreResult};
use crate::kinds::{ExprType, RelType};

pub fn substrate_id(expression_type: ExprType, canonical_code: &str) -> u64 {
    let name = expression_type.name().as_bytes();
    let mut buf = Vec::with_capacity(name.len() + 1 + canonical_code.len());
    buf.extend_from_slice(name);
    buf.push(0);
    buf.extend_from_slice(canonical_code.as_bytes());
    xxh3_64(&buf)
}

pub fn relationship_id(source: u64, target: u64, rel_type: RelType) -> u64 {
    let name = rel_type.name().as_bytes();
    let mut buf = [0u8; 16 + 16];
    buf[..8].copy_from_slice(&source.to_le_bytes());
    buf[8..16].copy_from_slice(&target.to_le_bytes());
    buf[16..16 + name.len()].copy_from_slice(name);
    xxh3_64(&buf[..16 + name.len()])
}

/// `0x` followed by 16 upper-case hex digits.
pub fn format_id(id: u64) -> String {
    id_text(id).iter().map(|&b| char::from(b)).collect()
}

/// [`format_id`]'s text on the stack (ASCII): the form every answer writes, made
/// without the formatting machinery (a fifth of what `format!` costs).
pub fn id_text(id: u64) -> [u8; 18] {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = [b'0'; 18];
    out[1] = b'x';
    for (i, slot) in out[2..].iter_mut().enumerate() {
        *slot = HEX[((id >> ((15 - i) * 4)) & 0xF) as usize];
    }
    out
}

/// 1 to 16 hex digits in any case, with or without a `0x`/`0X` prefix.
pub fn parse_id(text: &str) -> CoreResult<u64> {
    let digits = text
        .strip_prefix("0x")
        .or_else(|| text.strip_prefix("0X"))
        .unwrap_or(text);
    if digits.is_empty() || digits.len() > 16 || !digits.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(CoreError::InvalidId(text.to_owned()));
    }
    u64::from_str_radix(digits, 16).map_err(|_| CoreError::InvalidId(text.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_accepts_documented_forms() {
        assert_eq!(parse_id("0x1A").unwrap(), 26);
        assert_eq!(parse_id("0X1a").unwrap(), 26);
        assert_eq!(parse_id("1a").unwrap(), 26);
        assert_eq!(parse_id("FFFFFFFFFFFFFFFF").unwrap(), u64::MAX);
        assert_eq!(parse_id("0x0000000000000000").unwrap(), 0);
    }

    #[test]
    fn parse_rejects_everything_else() {
        for bad in [
            "",
            "0x",
            "x1",
            "0x1g",
            "10000000000000000",
            "+1",
            "-1",
            " 1",
            "1 ",
            "0x-1",
            "é",
        ] {
            assert!(parse_id(bad).is_err(), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn the_id_text_is_what_format_writes() {
        for id in [0, 1, 0x0D20_BC49_9503_01AD, 0xDEAD_BEEF, u64::MAX] {
            assert_eq!(&id_text(id)[..], format!("0x{id:016X}").as_bytes());
        }
    }

    #[test]
    fn format_round_trips() {
        for id in [0, 1, 0xDEAD_BEEF, u64::MAX] {
            let text = format_id(id);
            assert_eq!(text.len(), 18);
            assert_eq!(parse_id(&text).unwrap(), id);
        }
    }

    #[test]
    fn the_type_and_code_are_separated() {
        // "lambda" + "\0" + "x" must differ from a hypothetical split elsewhere.
        assert_ne!(
            substrate_id(ExprType::Lambda, "x"),
            substrate_id(ExprType::Expression, "x")
        );
        assert_ne!(
            relationship_id(1, 2, RelType::Sibling),
            relationship_id(2, 1, RelType::Sibling)
        );
    }
}
