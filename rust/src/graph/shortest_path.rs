//! The fewest-steps path between two substrates: a breadth-first search on
//! the arena's adjacency lists that stops as soon as it reaches the target.

use super::walk::{expand_level, required, SlotBits, SlotMap};
use super::{Direction, TypeMask};
use crate::arena::Arena;
use crate::error::CoreResult;

/// The fewest-steps path from `src` to `dst` as node ids (both included), or
/// None when there is none. `src == dst` is the one-node path.
pub fn shortest_path(
    arena: &Arena,
    src: u64,
    dst: u64,
    dir: Direction,
    types: TypeMask,
) -> CoreResult<Option<Vec<u64>>> {
    let from = required(arena, src)?;
    let to = required(arena, dst)?;
    if from == to {
        return Ok(Some(vec![src]));
    }
    let mut seen = SlotBits::new(arena.node_slot_bound());
    seen.insert(from);
    let mut parent: SlotMap<u32> = SlotMap::default();
    let mut frontier = vec![from];
    let mut found = false;
    while !frontier.is_empty() && !found {
        let mut next = Vec::new();
        expand_level(arena, &frontier, dir, types, |i, a| {
            if seen.insert(a.other) {
                parent.insert(a.other, frontier[i]);
                if a.other == to {
                    found = true;
                    return false;
                }
                next.push(a.other);
            }
            true
        });
        frontier = next;
    }
    if !found {
        return Ok(None);
    }
    let mut path = vec![dst];
    let mut at = to;
    while at != from {
        at = parent[&at];
        path.push(arena.node_id_at(at));
    }
    path.reverse();
    Ok(Some(path))
}
