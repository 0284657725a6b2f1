//! A vector of fixed-size chunks.
//!
//! A `Vec` that doubles leaves up to half its capacity unused, which at a
//! million records is most of a per-record memory budget. Chunks bound the
//! slack to one chunk and never move existing records when growing.

const SHIFT: u32 = 14;
const CHUNK: usize = 1 << SHIFT;
const MASK: usize = CHUNK - 1;

pub struct SegVec<T> {
    chunks: Vec<Vec<T>>,
    len: usize,
}

impl<T: Copy> SegVec<T> {
    pub fn new() -> Self {
        SegVec {
            chunks: Vec::new(),
            len: 0,
        }
    }

    #[inline]
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn push(&mut self, value: T) -> usize {
        let index = self.len;
        if index & MASK == 0 {
            self.chunks.push(Vec::with_capacity(CHUNK));
        }
        self.chunks[index >> SHIFT].push(value);
        self.len += 1;
        index
    }

    #[inline]
    pub fn get(&self, index: usize) -> &T {
        &self.chunks[index >> SHIFT][index & MASK]
    }

    #[inline]
    pub fn get_mut(&mut self, index: usize) -> &mut T {
        &mut self.chunks[index >> SHIFT][index & MASK]
    }

    pub fn iter(&self) -> impl Iterator<Item = &T> + '_ {
        self.chunks.iter().flat_map(|c| c.iter())
    }

    /// Bytes held by the chunks (capacity, not length).
    pub fn heap_bytes(&self) -> usize {
        self.chunks.len() * CHUNK * std::mem::size_of::<T>()
            + self.chunks.capacity() * std::mem::size_of::<Vec<T>>()
    }
}

impl<T: Copy> Default for SegVec<T> {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn push_and_index_across_chunks() {
        let mut v = SegVec::new();
        for i in 0..(CHUNK * 2 + 5) {
            assert_eq!(v.push(i as u64 * 3), i);
        }
        assert_eq!(v.len(), CHUNK * 2 + 5);
        assert_eq!(*v.get(CHUNK), CHUNK as u64 * 3);
        *v.get_mut(CHUNK + 1) = 7;
        assert_eq!(*v.get(CHUNK + 1), 7);
        assert_eq!(v.iter().count(), CHUNK * 2 + 5);
    }
}
