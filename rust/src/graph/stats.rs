//! Relationship statistics: counts by type and the degree distribution.

use crate::arena::Arena;
use crate::kinds::RelType;

#[derive(Debug, Clone, Default, PartialEq)]
pub struct RelationshipStats {
    pub total_relationships: usize,
    pub total_substrates: usize,
    /// Counts of the types in use, in type order.
    pub by_type: Vec<(RelType, usize)>,
    /// Relationship ends per substrate: each relationship adds one to the
    /// degree of its source and one to that of its target (a self-loop two),
    /// bidirectional or not.
    pub avg_degree: f64,
    pub max_degree: usize,
    /// Substrates with no relationship at all.
    pub isolated_substrates: usize,
}

pub fn relationship_stats(arena: &Arena) -> RelationshipStats {
    let mut degree = vec![0u32; arena.node_slot_bound()];
    let mut by_type = [0usize; 32];
    let mut total = 0usize;
    for e in arena.live_slot_edges() {
        total += 1;
        by_type[e.rel.index() as usize] += 1;
        degree[e.src as usize] += 1;
        degree[e.dst as usize] += 1;
    }
    let n = arena.len();
    let (mut max_degree, mut isolated) = (0usize, 0usize);
    for (slot, _) in arena.live_node_ids() {
        let d = degree[slot as usize] as usize;
        max_degree = max_degree.max(d);
        if d == 0 {
            isolated += 1;
        }
    }
    RelationshipStats {
        total_relationships: total,
        total_substrates: n,
        by_type: RelType::ALL
            .iter()
            .filter(|t| by_type[t.index() as usize] > 0)
            .map(|&t| (t, by_type[t.index() as usize]))
            .collect(),
        avg_degree: if n == 0 {
            0.0
        } else {
            2.0 * total as f64 / n as f64
        },
        max_degree,
        isolated_substrates: isolated,
    }
}
