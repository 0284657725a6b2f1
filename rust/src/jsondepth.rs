//! How deeply a JSON text nests, found in one pass over its bytes.
//!
//! Request bodies are checked against a depth limit before any decoder builds
//! objects from them: a decoder recursing 1,000 levels deep fails with a
//! `RecursionError` (or worse) long before the limit would have refused it.
//! This scan is not a validator — malformed JSON is the decoder's to report —
//! it only counts brackets outside strings, so it never allocates and costs
//! about a millisecond per megabyte.

/// Whether `text` opens more than `limit` arrays/objects inside one another.
///
/// Brackets inside strings (escapes honoured) do not count. Stops at the first
/// bracket past the limit.
pub fn nesting_exceeds(text: &[u8], limit: usize) -> bool {
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for &byte in text {
        if in_string {
            if escaped {
                escaped = false;
            } else if byte == b'\\' {
                escaped = true;
            } else if byte == b'"' {
                in_string = false;
            }
            continue;
        }
        match byte {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > limit {
                    return true;
                }
            }
            // Unbalanced closers are malformed JSON: the decoder says so.
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::nesting_exceeds;

    #[test]
    fn counts_arrays_and_objects_together() {
        assert!(!nesting_exceeds(b"{}", 1));
        assert!(nesting_exceeds(b"{\"a\":[1]}", 1));
        assert!(!nesting_exceeds(b"{\"a\":[1]}", 2));
        assert!(!nesting_exceeds(b"[1,[2],[3],{\"x\":[4]}]", 3));
        assert!(nesting_exceeds(b"[1,[2],[3],{\"x\":[4]}]", 2));
    }

    #[test]
    fn brackets_in_strings_do_not_count() {
        assert!(!nesting_exceeds(b"{\"a\":\"[[[[{{{{\"}", 1));
        assert!(!nesting_exceeds(b"[\"\\\"[[[\"]", 1));
        assert!(nesting_exceeds(b"[\"\\\\\",[[1]]]", 2));
    }

    #[test]
    fn deep_input_stops_at_the_limit() {
        let mut deep = vec![b'['; 1_000_000];
        deep.extend(vec![b']'; 1_000_000]);
        assert!(nesting_exceeds(&deep, 32));
        assert!(!nesting_exceeds(&deep, 1_000_000));
        let mut flat = Vec::new();
        for _ in 0..10_000 {
            flat.extend_from_slice(b"[],");
        }
        assert!(!nesting_exceeds(&flat, 1));
    }

    #[test]
    fn unbalanced_closers_never_underflow() {
        assert!(!nesting_exceeds(b"]]]]}}}}[", 1));
        assert!(nesting_exceeds(b"]]]][[", 1));
    }
}
