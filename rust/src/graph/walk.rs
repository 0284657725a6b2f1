//! What the local walks share: slot sets and maps, and the level expansion
//! that follows the arena's intrusive adjacency lists several at a time.
//! Local walks cost what they explore, not the size of the graph.

use std::hash::{BuildHasher, Hasher};

use hashbrown::{HashMap, HashSet};

use super::{Direction, TypeMask, NONE};
use crate::arena::{Adj, Arena};
use crate::error::{CoreError, CoreResult, Kind};

/// A multiplicative hasher for small integer keys (node and edge slots):
/// the keys are not attacker-chosen hashes but dense slot numbers, and the
/// maps live for one call.
#[derive(Clone, Copy, Default)]
pub struct SlotHash;

pub struct SlotHasher(u64);

const K: u64 = 0x9E37_79B9_7F4A_7C15;

impl Hasher for SlotHasher {
    #[inline]
    fn finish(&self) -> u64 {
        self.0
    }
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(5) ^ u64::from(b)).wrapping_mul(K);
        }
    }
    #[inline]
    fn write_u32(&mut self, i: u32) {
        self.0 = (self.0.rotate_left(5) ^ u64::from(i)).wrapping_mul(K);
    }
    #[inline]
    fn write_u64(&mut self, i: u64) {
        self.0 = (self.0.rotate_left(5) ^ i).wrapping_mul(K);
    }
}

impl BuildHasher for SlotHash {
    type Hasher = SlotHasher;
    #[inline]
    fn build_hasher(&self) -> SlotHasher {
        SlotHasher(0)
    }
}

pub(super) type SlotMap<V> = HashMap<u32, V, SlotHash>;
pub(super) type SlotSet = HashSet<u32, SlotHash>;

/// A set of node slots as one bit each: a million slots are 128 KiB, cheaper
/// to clear than a hash set is to probe on a large walk.
pub(super) struct SlotBits(Vec<u64>);

impl SlotBits {
    pub(super) fn new(bound: usize) -> Self {
        SlotBits(vec![0; bound.div_ceil(64)])
    }

    /// Adds `slot`; false if it was there already.
    #[inline]
    pub(super) fn insert(&mut self, slot: u32) -> bool {
        let (word, bit) = ((slot >> 6) as usize, 1u64 << (slot & 63));
        let fresh = self.0[word] & bit == 0;
        self.0[word] |= bit;
        fresh
    }

    #[inline]
    pub(super) fn contains(&self, slot: u32) -> bool {
        self.0[(slot >> 6) as usize] & (1u64 << (slot & 63)) != 0
    }
}

/// The slot of a substrate a walk starts from or goes to; NotFound if absent.
pub(super) fn required(arena: &Arena, id: u64) -> CoreResult<u32> {
    arena.node_slot(id).ok_or(CoreError::NotFound {
        kind: Kind::Substrate,
        id,
    })
}

/// The ids of node slots.
pub(super) fn ids_of(arena: &Arena, slots: &[u32]) -> Vec<u64> {
    slots.iter().map(|&s| arena.node_id_at(s)).collect()
}

/// How many adjacency lists a level of a walk follows at once. Each list is a
/// chain of dependent loads through the edge records; walking independent
/// chains side by side lets the memory system serve several misses at a time.
const LANES: usize = 16;

#[derive(Clone, Copy)]
struct Lane {
    edge: u32,
    /// Index in the frontier of the node whose list this is.
    node: u32,
    outgoing: bool,
}

/// Calls `f(i, adj)` for each relationship a walk may follow from each node
/// `frontier[i]`, walking up to
/// [`LANES`] lists at once; the order within the level is unspecified. `f`
/// answers false to stop; then so does this, answering false.
pub(super) fn expand_level(
    arena: &Arena,
    frontier: &[u32],
    dir: Direction,
    mask: TypeMask,
    mut f: impl FnMut(usize, Adj) -> bool,
) -> bool {
    let total = frontier.len() * 2;
    let mut job = 0usize;
    let next_job = |job: &mut usize| -> Option<Lane> {
        while *job < total {
            let (i, outgoing) = (*job / 2, *job % 2 == 0);
            *job += 1;

            let (head_out, head_in) = arena.list_heads(frontier[i]);
            let head = if outgoing { head_out } else { head_in };
            if head != NONE {
                return Some(Lane {
                    edge: head,
                    node: i as u32,
                    outgoing,
                });
            }
        }
        None
    };
    let mut lanes: Vec<Lane> = Vec::with_capacity(LANES);
    while lanes.len() < LANES {
        match next_job(&mut job) {
            Some(lane) => lanes.push(lane),
            None => break,
        }
    }
    while !lanes.is_empty() {
        let mut k = 0;
        while k < lanes.len() {
            let lane = lanes[k];
            let slot = frontier[lane.node as usize];
            let (src, dst, next_out, next_in, rel, bidirectional) = arena.edge_links(lane.edge);
            let (other, next, follow) = if lane.outgoing {
                (
                    dst,
                    next_out,
                    dir != Direction::Incoming || (bidirectional && dst != slot),
                )
            } else {
                let follow = match dir {
                    Direction::Incoming => true,
                    Direction::Outgoing => bidirectional && src != slot,
                    // A self-loop is in both lists: take it from the outgoing one.
                    Direction::Both => src != slot,
                };
                (src, next_in, follow)
            };
            if follow && mask.contains(rel) {
                let adj = Adj {
                    edge: lane.edge,
                    other,
                    bidirectional,
                };
                if !f(lane.node as usize, adj) {
                    return false;
                }
            }
            if next != NONE {
                lanes[k].edge = next;
                k += 1;
            } else if let Some(fresh) = next_job(&mut job) {
                lanes[k] = fresh;
                k += 1;
            } else {
                lanes.swap_remove(k);
            }
        }
    }
    true
}
