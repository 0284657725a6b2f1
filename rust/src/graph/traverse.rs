//! Breadth-first traversal from one substrate: the full form (nodes with
//! their parents and the relationships crossed) and the lean one (ids and
//! depths only).

use super::walk::{expand_level, ids_of, required, SlotBits, SlotSet};
use super::{Direction, TypeMask, NONE};
use crate::arena::Arena;
use crate::error::CoreResult;
use crate::kinds::RelType;

/// A node reached by a traversal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reached {
    pub id: u64,
    pub depth: u32,
    /// Index in [`Traversal::nodes`] of the node it was reached from
    /// (`u32::MAX` for the start).
    pub parent: u32,
    /// The relationship it was first reached by (0 for the start).
    pub via: u64,
}

/// A relationship a traversal crossed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Crossed {
    pub id: u64,
    pub rel: RelType,
    /// As stored (not as walked).
    pub source: u64,
    pub target: u64,
    pub bidirectional: bool,
}

#[derive(Debug, Clone, Default)]
pub struct Traversal {
    /// Breadth-first order; `nodes[0]` is the start at depth 0.
    pub nodes: Vec<Reached>,
    /// Each relationship crossed from a node at depth < `max_depth` to a node
    /// in `nodes`, once, in the order first crossed.
    pub edges: Vec<Crossed>,
    /// True when `max_nodes` stopped the walk before it reached every node
    /// within `max_depth`.
    pub truncated: bool,
}

impl Traversal {
    /// The node ids from the start to `nodes[index]`.
    pub fn path(&self, index: usize) -> Vec<u64> {
        let mut out = Vec::with_capacity(self.nodes[index].depth as usize + 1);
        let mut i = index as u32;
        while i != NONE {
            let n = &self.nodes[i as usize];
            out.push(n.id);
            i = n.parent;
        }
        out.reverse();
        out
    }
}

/// Breadth-first walk from `start` to at most `max_depth` steps, keeping at
/// most `max_nodes` nodes (the start included; at least 1).
pub fn traverse(
    arena: &Arena,
    start: u64,
    dir: Direction,
    max_depth: u32,
    types: TypeMask,
    max_nodes: usize,
) -> CoreResult<Traversal> {
    let root = required(arena, start)?;
    let max_nodes = max_nodes.max(1);
    let mut seen = SlotBits::new(arena.node_slot_bound());
    seen.insert(root);
    // Slots and edge slots during the walk; ids and relationship ids after
    // it, as independent lookups rather than inside the list walks.
    let mut slots: Vec<u32> = vec![root];
    let mut depths: Vec<u32> = vec![0];
    let mut parents: Vec<u32> = vec![NONE];
    let mut vias: Vec<u32> = vec![NONE];
    let mut crossed: Vec<u32> = Vec::new();
    let mut seen_edges: SlotSet = SlotSet::default();
    let mut truncated = false;
    let mut level_start = 0;
    for depth in 1..=max_depth {
        let level_end = slots.len();
        if level_start == level_end {
            break;
        }
        let mut next: Vec<u32> = Vec::new();
        let frontier = &slots[level_start..level_end];
        expand_level(arena, frontier, dir, types, |i, a| {
            if !seen.contains(a.other) {
                if level_end + next.len() >= max_nodes {
                    truncated = true;
                    return true;
                }
                seen.insert(a.other);
                next.push(a.other);
                depths.push(depth);
                parents.push((level_start + i) as u32);
                // The edge that found a node is new to `crossed` (it was
                // never crossed from the other end, which is only now
                // reached), so it is the one pushed next.
                vias.push(crossed.len() as u32);
            }
            // A relationship can come up twice only from its two ends: when
            // it is bidirectional or the walk goes both ways.
            if (!a.bidirectional && dir != Direction::Both) || seen_edges.insert(a.edge) {
                crossed.push(a.edge);
            }
            true
        });
        slots.extend_from_slice(&next);
        level_start = level_end;
    }
    let edges: Vec<Crossed> = crossed
        .iter()
        .map(|&e| {
            let e = arena.edge_at(e);
            Crossed {
                id: e.id,
                rel: e.rel,
                source: e.source,
                target: e.target,
                bidirectional: e.bidirectional,
            }
        })
        .collect();
    let ids = ids_of(arena, &slots);
    let nodes = (0..slots.len())
        .map(|i| Reached {
            id: ids[i],
            depth: depths[i],
            parent: parents[i],
            via: if vias[i] == NONE {
                0
            } else {
                edges[vias[i] as usize].id
            },
        })
        .collect();
    Ok(Traversal {
        nodes,
        edges,
        truncated,
    })
}

/// Node ids at distance at most `max_depth` from `start` and their depths,
/// breadth-first, without paths or edges: the lean form of [`traverse`].
pub fn bfs_depths(
    arena: &Arena,
    start: u64,
    dir: Direction,
    max_depth: u32,
    types: TypeMask,
) -> CoreResult<Vec<(u64, u32)>> {
    let root = required(arena, start)?;
    let mut seen = SlotBits::new(arena.node_slot_bound());
    seen.insert(root);
    let mut order: Vec<u32> = vec![root];
    let mut depths: Vec<u32> = vec![0];
    let mut level_start = 0;
    for depth in 1..=max_depth {
        let level_end = order.len();
        if level_start == level_end {
            break;
        }
        let mut next: Vec<u32> = Vec::new();
        expand_level(arena, &order[level_start..level_end], dir, types, |_, a| {
            if seen.insert(a.other) {
                next.push(a.other);
            }
            true
        });
        depths.resize(depths.len() + next.len(), depth);
        order.extend_from_slice(&next);
        level_start = level_end;
    }
    Ok(ids_of(arena, &order).into_iter().zip(depths).collect())
}
