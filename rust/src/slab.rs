//! Append-only storage for the variable-length bytes of records (code,
//! canonical code, metadata, constraints).
//!
//! Blobs are packed into 1 MiB chunks (a larger blob gets a chunk of its own)
//! and addressed by a 48-bit handle: chunk index << 24 | offset. Packing avoids
//! one heap allocation (and its allocator header) per record. Freed blobs are
//! counted as garbage; the arena compacts when garbage outweighs live bytes.

const CHUNK_BYTES: usize = 1 << 20;
const OFFSET_BITS: u32 = 24;
const OFFSET_MASK: u64 = (1 << OFFSET_BITS) - 1;
/// Handles use at most 48 bits, so callers may keep flags in the top 16.
pub const HANDLE_BITS: u32 = 48;

pub struct ByteSlab {
    chunks: Vec<Vec<u8>>,
    live: usize,
    garbage: usize,
}

impl ByteSlab {
    pub fn new() -> Self {
        ByteSlab {
            chunks: Vec::new(),
            live: 0,
            garbage: 0,
        }
    }

    /// Stores the concatenation of `parts` as one blob; returns its handle.
    pub fn push(&mut self, parts: &[&[u8]]) -> u64 {
        let size: usize = parts.iter().map(|p| p.len()).sum();
        let fits = self
            .chunks
            .last()
            .is_some_and(|c| c.capacity() - c.len() >= size && c.capacity() == CHUNK_BYTES);
        if !fits {
            let cap = size.max(CHUNK_BYTES);
            // An oversized blob gets an exact chunk of its own; a normal chunk
            // keeps the standard capacity so later blobs can share it.
            self.chunks.push(Vec::with_capacity(cap));
        }
        let chunk_index = self.chunks.len() - 1;
        let chunk = &mut self.chunks[chunk_index];
        let offset = chunk.len();
        for p in parts {
            chunk.extend_from_slice(p);
        }
        self.live += size;
        debug_assert!(offset as u64 <= OFFSET_MASK);
        ((chunk_index as u64) << OFFSET_BITS) | offset as u64
    }

    /// The `len` bytes at `handle`.
    #[inline]
    pub fn get(&self, handle: u64, len: usize) -> &[u8] {
        let chunk = &self.chunks[(handle >> OFFSET_BITS) as usize];
        let offset = (handle & OFFSET_MASK) as usize;
        &chunk[offset..offset + len]
    }

    /// Everything from `handle` to the end of its chunk: blobs are read by
    /// decoding their own length prefix.
    #[inline]
    pub fn tail(&self, handle: u64) -> &[u8] {
        let chunk = &self.chunks[(handle >> OFFSET_BITS) as usize];
        &chunk[(handle & OFFSET_MASK) as usize..]
    }

    pub fn release(&mut self, len: usize) {
        self.live -= len;
        self.garbage += len;
    }

    pub fn live_bytes(&self) -> usize {
        self.live
    }

    pub fn garbage_bytes(&self) -> usize {
        self.garbage
    }

    /// The chunks' used bytes, in handle order (for the arena's image, dump v3).
    pub fn chunks(&self) -> impl Iterator<Item = &[u8]> + '_ {
        self.chunks.iter().map(|c| c.as_slice())
    }

    /// Appends a chunk read back from an image, with the capacity `push` gave it: a
    /// standard one keeps room to grow, an oversized one is exact.
    pub fn restore_chunk(&mut self, bytes: &[u8]) {
        let mut chunk = Vec::with_capacity(bytes.len().max(CHUNK_BYTES));
        chunk.extend_from_slice(bytes);
        self.chunks.push(chunk);
    }

    /// After a restore: `live` bytes are referenced, the rest of what the chunks
    /// hold is garbage.
    pub fn set_live(&mut self, live: usize) {
        let used: usize = self.chunks.iter().map(Vec::len).sum();
        self.live = live;
        self.garbage = used.saturating_sub(live);
    }

    /// Like [`ByteSlab::tail`] for a handle that may be damaged: None when it points
    /// outside the chunks.
    pub fn try_tail(&self, handle: u64) -> Option<&[u8]> {
        let chunk = self.chunks.get((handle >> OFFSET_BITS) as usize)?;
        chunk.get((handle & OFFSET_MASK) as usize..)
    }

    pub fn heap_bytes(&self) -> usize {
        self.chunks.iter().map(|c| c.capacity()).sum::<usize>()
            + self.chunks.capacity() * std::mem::size_of::<Vec<u8>>()
    }
}

impl Default for ByteSlab {
    fn default() -> Self {
        Self::new()
    }
}

/// LEB128 varint, used as the length prefixes inside blobs.
pub fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Decodes a varint at the start of `bytes`; returns (value, bytes used).
#[inline]
pub fn get_varint(bytes: &[u8]) -> (u64, usize) {
    let mut value = 0u64;
    let mut shift = 0;
    for (i, &b) in bytes.iter().enumerate() {
        value |= u64::from(b & 0x7F) << shift;
        if b & 0x80 == 0 {
            return (value, i + 1);
        }
        shift += 7;
    }
    // Blobs are written by this module only, so a truncated varint is a bug.
    unreachable!("truncated varint in slab")
}

/// Like [`get_varint`] for bytes that may be damaged: None when truncated or longer
/// than a u64.
pub fn try_get_varint(bytes: &[u8]) -> Option<(u64, usize)> {
    let mut value = 0u64;
    for (i, &b) in bytes.iter().enumerate().take(10) {
        value |= u64::from(b & 0x7F).checked_shl(7 * i as u32)?;
        if b & 0x80 == 0 {
            return Some((value, i + 1));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blobs_round_trip_and_oversized_blobs_get_their_own_chunk() {
        let mut slab = ByteSlab::new();
        let a = slab.push(&[b"hello", b" ", b"world"]);
        let big = vec![7u8; CHUNK_BYTES + 3];
        let b = slab.push(&[&big]);
        let c = slab.push(&[b"after"]);
        assert_eq!(slab.get(a, 11), b"hello world");
        assert_eq!(slab.get(b, big.len()), &big[..]);
        assert_eq!(slab.get(c, 5), b"after");
        assert_eq!(slab.live_bytes(), 11 + big.len() + 5);
        slab.release(11);
        assert_eq!(slab.garbage_bytes(), 11);
    }

    #[test]
    fn varints_round_trip() {
        for v in [0u64, 1, 127, 128, 300, u32::MAX as u64, u64::MAX] {
            let mut buf = Vec::new();
            put_varint(&mut buf, v);
            assert_eq!(get_varint(&buf), (v, buf.len()));
            assert_eq!(try_get_varint(&buf), Some((v, buf.len())));
            assert_eq!(try_get_varint(&buf[..buf.len() - 1]), None);
        }
    }
}
