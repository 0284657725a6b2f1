//! Graph algorithms over the relationship store, one file per family.
//!
//! Two kinds of algorithm, two representations:
//!
//! * Local walks ([`traverse`](fn@traverse), [`bfs_depths`],
//!   [`shortest_path`](fn@shortest_path)) run directly on the arena's
//!   intrusive adjacency lists (through `walk.rs`), so their cost is what
//!   they explore, not the size of the graph.
//! * Whole-graph algorithms ([`components`](fn@components),
//!   [`cycles`](fn@cycles), [`pagerank`](fn@pagerank)) are written
//!   against the small [`Digraph`] trait: dense node indices `0..n`, each
//!   with its sorted successor and predecessor rows. The [`Csr`] snapshot
//!   implements it, built from the arena in O(V + E).
//!
//! Semantics shared by all of them (see `docs/graph.md`):
//!
//! * A bidirectional relationship `a <-> b` is stored once and counts as both
//!   `a -> b` and `b -> a`.
//! * The snapshot is a *simple* directed graph: several relationships between
//!   the same ordered pair (different types, or a bidirectional edge next to a
//!   plain one) collapse into one link, as in a NetworkX `DiGraph` built from
//!   the unique `(u, v)` pairs. Self-loops are kept (one per node at most).
//! * Traverse and shortest path walk relationships, not links: traverse
//!   reports every relationship it crossed, once, by id.
//! * An optional relationship-type filter restricts every algorithm to the
//!   relationships of those types.
//!
//! Where things go: a new whole-graph algorithm is a new file here written
//! over [`Digraph`]; a new local walk uses the level expansion of
//! `walk.rs`.

mod components;
mod csr;
mod cycles;
mod pagerank;
mod shortest_path;
mod stats;
mod traverse;
mod walk;

pub use components::{components, components_page, strongly_connected};
pub use csr::{Csr, Rows};
pub use cycles::{cycles, cycles_with, CycleLimits, Cycles};
pub use pagerank::{pagerank, top_ranked, PageRank};
pub use shortest_path::shortest_path;
pub use stats::{relationship_stats, RelationshipStats};
pub use traverse::{bfs_depths, traverse, Crossed, Reached, Traversal};
pub use walk::{SlotHash, SlotHasher};

use crate::kinds::RelType;

/// "No node / no edge" in dense and slot indices.
const NONE: u32 = u32::MAX;

/// Read access to a simple directed graph over dense node indices `0..n`:
/// what the whole-graph algorithms need, and all they may assume.
pub trait Digraph {
    /// The number of nodes; indices are `0..node_count()`.
    fn node_count(&self) -> usize;
    /// The substrate id of node `u`.
    fn node_id(&self, u: u32) -> u64;
    /// The nodes `u` links to, ascending, without repeats (a self-loop
    /// included). May be empty if the graph was built without out-rows.
    fn successors(&self, u: u32) -> &[u32];
    /// The nodes linking to `v`, ascending, without repeats. May be empty if
    /// the graph was built without in-rows.
    fn predecessors(&self, v: u32) -> &[u32];
}

/// Which way a walk follows relationships.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// From source to target (and both ways along a bidirectional edge).
    Outgoing,
    /// From target to source (and both ways along a bidirectional edge).
    Incoming,
    /// Either way: the relationships as an undirected graph.
    Both,
}

impl Direction {
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "outgoing" | "out" => Some(Direction::Outgoing),
            "incoming" | "in" => Some(Direction::Incoming),
            "both" | "any" => Some(Direction::Both),
            _ => None,
        }
    }
}

/// A set of relationship types (all when built from `None`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TypeMask(u32);

impl TypeMask {
    pub const ALL: TypeMask = TypeMask(u32::MAX);

    pub fn new(types: Option<&[RelType]>) -> Self {
        match types {
            None => Self::ALL,
            Some(ts) => TypeMask(ts.iter().fold(0, |m, t| m | 1 << t.index())),
        }
    }

    #[inline]
    pub fn contains(self, rel: RelType) -> bool {
        self.0 & (1 << rel.index()) != 0
    }
}
