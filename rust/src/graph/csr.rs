//! The compressed-sparse-row snapshot of the relationship graph: the
//! [`Digraph`] the whole-graph algorithms run on.

use super::{Digraph, TypeMask, NONE};
use crate::arena::Arena;
use crate::kinds::RelType;

/// A compressed-sparse-row snapshot of the relationship graph as a simple
/// directed graph over dense node indices `0..n` (slot order).
#[derive(Debug, Clone, Default)]
pub struct Csr {
    /// Dense index -> substrate id.
    pub ids: Vec<u64>,
    /// Row `u` of the out-links is `out_adj[out_off[u]..out_off[u + 1]]`,
    /// sorted and without repeats.
    pub out_off: Vec<usize>,
    pub out_adj: Vec<u32>,
    pub in_off: Vec<usize>,
    pub in_adj: Vec<u32>,
}

impl Csr {
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// Number of distinct links (self-loops included).
    pub fn link_count(&self) -> usize {
        self.out_adj.len().max(self.in_adj.len())
    }

    #[inline]
    pub fn out(&self, u: u32) -> &[u32] {
        &self.out_adj[self.out_off[u as usize]..self.out_off[u as usize + 1]]
    }

    #[inline]
    pub fn inn(&self, v: u32) -> &[u32] {
        &self.in_adj[self.in_off[v as usize]..self.in_off[v as usize + 1]]
    }

    /// Builds the snapshot with rows in both directions: O(V + E) plus
    /// sorting each row.
    pub fn build(arena: &Arena, types: TypeMask) -> Csr {
        Csr::build_rows(arena, types, Rows::Both)
    }

    /// Builds the snapshot with the rows an algorithm needs (the others are
    /// left empty): each direction costs a pass of random writes over the
    /// links, so a one-direction algorithm skips the other.
    pub fn build_rows(arena: &Arena, types: TypeMask, rows: Rows) -> Csr {
        let bound = arena.node_slot_bound();
        let mut ids = Vec::with_capacity(arena.len());
        // Without free slots the slots are the dense indices already.
        let dense: Option<Vec<u32>> = if arena.len() == bound {
            ids.extend(arena.live_node_ids().map(|(_, id)| id));
            None
        } else {
            let mut dense = vec![NONE; bound];
            for (slot, id) in arena.live_node_ids() {
                dense[slot as usize] = ids.len() as u32;
                ids.push(id);
            }
            Some(dense)
        };
        let n = ids.len();
        let (out_off, out_adj, in_off, in_adj) = match rows {
            Rows::Out => {
                let (off, adj) = link_rows(arena, dense.as_deref(), n, types, false);
                (off, adj, vec![0; n + 1], Vec::new())
            }
            Rows::In => {
                let (off, adj) = link_rows(arena, dense.as_deref(), n, types, true);
                (vec![0; n + 1], Vec::new(), off, adj)
            }
            Rows::Both => {
                let (off, adj) = link_rows(arena, dense.as_deref(), n, types, false);
                let (in_off, in_adj) = transpose(n, &off, &adj);
                (off, adj, in_off, in_adj)
            }
        };
        Csr {
            ids,
            out_off,
            out_adj,
            in_off,
            in_adj,
        }
    }

    /// Builds a snapshot from explicit links over nodes `0..n` (for tests
    /// and benchmarks); `ids[i]` names node `i`.
    pub fn from_links(ids: Vec<u64>, links: &[(u32, u32)]) -> Csr {
        let n = ids.len();
        let mut rows: Vec<Vec<u32>> = vec![Vec::new(); n];
        for &(u, v) in links {
            rows[u as usize].push(v);
        }
        let mut out_off = vec![0usize; n + 1];
        let mut out_adj = Vec::new();
        for (u, row) in rows.iter_mut().enumerate() {
            row.sort_unstable();
            row.dedup();
            out_adj.extend_from_slice(row);
            out_off[u + 1] = out_adj.len();
        }
        let (in_off, in_adj) = transpose(n, &out_off, &out_adj);
        Csr {
            ids,
            out_off,
            out_adj,
            in_off,
            in_adj,
        }
    }
}

/// Which rows of a [`Csr`] to build.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rows {
    Out,
    In,
    Both,
}

/// The rows of the distinct links by source (or by target with `reverse`),
/// each sorted, as offsets and entries.
fn link_rows(
    arena: &Arena,
    dense: Option<&[u32]>,
    n: usize,
    types: TypeMask,
    reverse: bool,
) -> (Vec<usize>, Vec<u32>) {
    let at = |slot: u32| dense.map_or(slot, |d| d[slot as usize]);
    // Count, then fill, every direction a relationship counts in; repeats go
    // afterwards.
    let mut off = vec![0usize; n + 1];
    for e in arena.live_slot_edges() {
        if !types.contains(e.rel) {
            continue;
        }
        let (u, v) = (at(e.src), at(e.dst));
        off[if reverse { v } else { u } as usize + 1] += 1;
        if e.bidirectional && u != v {
            off[if reverse { u } else { v } as usize + 1] += 1;
        }
    }
    for u in 0..n {
        off[u + 1] += off[u];
    }
    let mut fill = off.clone();
    let mut adj = vec![0u32; off[n]];
    let mut put = |row: u32, x: u32| {
        adj[fill[row as usize]] = x;
        fill[row as usize] += 1;
    };
    for e in arena.live_slot_edges() {
        if !types.contains(e.rel) {
            continue;
        }
        let (u, v) = (at(e.src), at(e.dst));
        if reverse {
            put(v, u);
        } else {
            put(u, v);
        }
        if e.bidirectional && u != v {
            if reverse {
                put(u, v);
            } else {
                put(v, u);
            }
        }
    }
    drop(fill);
    // Sort each row and drop repeats, compacting in place.
    let mut row_off = vec![0usize; n + 1];
    let mut w = 0;
    for u in 0..n {
        let (a, b) = (off[u], off[u + 1]);
        let row = &mut adj[a..b];
        if row.len() > 1 {
            row.sort_unstable();
        }
        let mut last = NONE;
        for i in a..b {
            let v = adj[i];
            if v != last {
                adj[w] = v;
                w += 1;
                last = v;
            }
        }
        row_off[u + 1] = w;
    }
    adj.truncate(w);
    adj.shrink_to_fit();
    (row_off, adj)
}

/// The rows of the other direction: scanning rows in order keeps them sorted.
fn transpose(n: usize, off: &[usize], adj: &[u32]) -> (Vec<usize>, Vec<u32>) {
    let mut t_off = vec![0usize; n + 1];
    for &v in adj {
        t_off[v as usize + 1] += 1;
    }
    for v in 0..n {
        t_off[v + 1] += t_off[v];
    }
    let mut fill = t_off.clone();
    let mut t_adj = vec![0u32; adj.len()];
    for u in 0..n {
        for &v in &adj[off[u]..off[u + 1]] {
            t_adj[fill[v as usize]] = u as u32;
            fill[v as usize] += 1;
        }
    }
    (t_off, t_adj)
}

impl Arena {
    /// The [`Csr`] snapshot of the relationships of the given types (all
    /// when None).
    pub fn graph_snapshot(&self, rel_filter: Option<&[RelType]>) -> Csr {
        Csr::build(self, TypeMask::new(rel_filter))
    }
}

impl Digraph for Csr {
    #[inline]
    fn node_count(&self) -> usize {
        self.ids.len()
    }

    #[inline]
    fn node_id(&self, u: u32) -> u64 {
        self.ids[u as usize]
    }

    #[inline]
    fn successors(&self, u: u32) -> &[u32] {
        self.out(u)
    }

    #[inline]
    fn predecessors(&self, v: u32) -> &[u32] {
        self.inn(v)
    }
}
