//! Graph algorithms over the relationship store.
//!
//! Two kinds of algorithm, two representations:
//!
//! * Local walks (traverse, shortest path) run directly on the arena's
//!   intrusive adjacency lists, so their cost is what they explore, not the
//!   size of the graph. Visited sets are hash maps keyed by node slot.
//! * Whole-graph algorithms (strongly connected components, cycles, PageRank)
//!   first take a [`Csr`] snapshot: dense node indices and compressed sparse
//!   rows in both directions, O(V + E) to build.
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

use std::hash::{BuildHasher, Hasher};

use hashbrown::{HashMap, HashSet};

use crate::arena::{Adj, Arena};
use crate::error::{CoreError, CoreResult, Kind};
use crate::kinds::RelType;

const NONE: u32 = u32::MAX;

// ---------------------------------------------------------------- hashing

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

type SlotMap<V> = HashMap<u32, V, SlotHash>;
type SlotSet = HashSet<u32, SlotHash>;

/// A set of node slots as one bit each: a million slots are 128 KiB, cheaper
/// to clear than a hash set is to probe on a large walk.
struct SlotBits(Vec<u64>);

impl SlotBits {
    fn new(bound: usize) -> Self {
        SlotBits(vec![0; bound.div_ceil(64)])
    }

    /// Adds `slot`; false if it was there already.
    #[inline]
    fn insert(&mut self, slot: u32) -> bool {
        let (word, bit) = ((slot >> 6) as usize, 1u64 << (slot & 63));
        let fresh = self.0[word] & bit == 0;
        self.0[word] |= bit;
        fresh
    }

    #[inline]
    fn contains(&self, slot: u32) -> bool {
        self.0[(slot >> 6) as usize] & (1u64 << (slot & 63)) != 0
    }
}

// ---------------------------------------------------------------- arguments

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

fn required(arena: &Arena, id: u64) -> CoreResult<u32> {
    arena.node_slot(id).ok_or(CoreError::NotFound {
        kind: Kind::Substrate,
        id,
    })
}

// ---------------------------------------------------------------- traverse

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
fn expand_level(
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

/// The ids of node slots.
fn ids_of(arena: &Arena, slots: &[u32]) -> Vec<u64> {
    slots.iter().map(|&s| arena.node_id_at(s)).collect()
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

// ---------------------------------------------------------------- shortest path

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

// ---------------------------------------------------------------- snapshot

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
        let mut in_rows: Vec<Vec<u32>> = vec![Vec::new(); n];
        for (u, row) in rows.iter().enumerate() {
            for &v in row {
                in_rows[v as usize].push(u as u32);
            }
        }
        let mut in_off = vec![0usize; n + 1];
        let mut in_adj = Vec::new();
        for (v, row) in in_rows.iter().enumerate() {
            in_adj.extend_from_slice(row);
            in_off[v + 1] = in_adj.len();
        }
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

// ---------------------------------------------------------------- SCC

/// Strongly connected components (iterative Tarjan, on the out-rows): the
/// component number of
/// each node and how many there are. Components are numbered in reverse
/// topological order of the condensation; every node is in one (singletons
/// included).
pub fn strongly_connected(g: &Csr) -> (Vec<u32>, usize) {
    // One array read per edge: `index` is the visit number of a node on the
    // Tarjan stack, NONE before its visit, DONE once in a component; `low`
    // lives in the call frames, the only place it is used.
    const DONE: u32 = u32::MAX - 1;
    let n = g.len();
    let mut comp = vec![NONE; n];
    let mut index = vec![NONE; n];
    let mut stack: Vec<u32> = Vec::new();
    // (node, next out position, low)
    let mut calls: Vec<(u32, usize, u32)> = Vec::new();
    let mut counter = 0u32;
    let mut count = 0usize;
    for root in 0..n as u32 {
        if index[root as usize] != NONE {
            continue;
        }
        index[root as usize] = counter;
        stack.push(root);
        calls.push((root, g.out_off[root as usize], counter));
        counter += 1;
        while let Some(&mut (v, ref mut pos, ref mut low)) = calls.last_mut() {
            if *pos < g.out_off[v as usize + 1] {
                let w = g.out_adj[*pos];
                *pos += 1;
                let iw = index[w as usize];
                if iw == NONE {
                    index[w as usize] = counter;
                    stack.push(w);
                    calls.push((w, g.out_off[w as usize], counter));
                    counter += 1;
                } else if iw != DONE {
                    *low = (*low).min(iw);
                }
                continue;
            }
            let low_v = *low;
            calls.pop();
            if let Some(parent) = calls.last_mut() {
                parent.2 = parent.2.min(low_v);
            }
            if low_v == index[v as usize] {
                loop {
                    let w = stack.pop().expect("tarjan stack holds the root");
                    index[w as usize] = DONE;
                    comp[w as usize] = count as u32;
                    if w == v {
                        break;
                    }
                }
                count += 1;
            }
        }
    }
    (comp, count)
}

/// Components as lists of dense node indices (each sorted), in the order:
/// largest first, then by smallest substrate id.
pub fn components(g: &Csr) -> Vec<Vec<u32>> {
    let (comp, count) = strongly_connected(g);
    let mut groups: Vec<Vec<u32>> = vec![Vec::new(); count];
    for (v, &c) in comp.iter().enumerate() {
        groups[c as usize].push(v as u32);
    }
    for grp in &mut groups {
        grp.sort_unstable_by_key(|&v| g.ids[v as usize]);
    }
    groups.sort_unstable_by(|a, b| {
        b.len()
            .cmp(&a.len())
            .then_with(|| g.ids[a[0] as usize].cmp(&g.ids[b[0] as usize]))
    });
    groups
}

/// One page of [`components`] without building them all: the number of
/// components, and for ranks `offset..offset + limit` each component's size
/// and its `member_limit` smallest ids, ascending. O(V + E) plus sorting the
/// component order and the returned ids only.
pub fn components_page(
    g: &Csr,
    offset: usize,
    limit: usize,
    member_limit: usize,
) -> (usize, Vec<(usize, Vec<u64>)>) {
    let (comp, count) = strongly_connected(g);
    let mut size = vec![0usize; count];
    let mut min_id = vec![u64::MAX; count];
    for (v, &c) in comp.iter().enumerate() {
        size[c as usize] += 1;
        min_id[c as usize] = min_id[c as usize].min(g.ids[v]);
    }
    let mut order: Vec<u32> = (0..count as u32).collect();
    order.sort_unstable_by(|&a, &b| {
        size[b as usize]
            .cmp(&size[a as usize])
            .then(min_id[a as usize].cmp(&min_id[b as usize]))
    });
    let page: Vec<u32> = order.iter().skip(offset).take(limit).copied().collect();
    // Position of each component on the page (NONE when not on it).
    let mut slot_of = vec![NONE; count];
    for (i, &c) in page.iter().enumerate() {
        slot_of[c as usize] = i as u32;
    }
    let mut members: Vec<Vec<u64>> = vec![Vec::new(); page.len()];
    for (v, &c) in comp.iter().enumerate() {
        let at = slot_of[c as usize];
        if at != NONE {
            members[at as usize].push(g.ids[v]);
        }
    }
    let out = page
        .iter()
        .zip(members)
        .map(|(&c, mut ids)| {
            if ids.len() > member_limit {
                if member_limit == 0 {
                    ids.clear();
                } else {
                    ids.select_nth_unstable(member_limit - 1);
                    ids.truncate(member_limit);
                }
            }
            ids.sort_unstable();
            (size[c as usize], ids)
        })
        .collect();
    (count, out)
}

// ---------------------------------------------------------------- cycles

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Cycles {
    /// Whether the graph has any cycle (exact, whatever the limits).
    pub has_cycle: bool,
    /// Simple cycles as dense node indices, each starting at its smallest
    /// index; a self-loop is a one-node cycle.
    pub cycles: Vec<Vec<u32>>,
    /// True when more cycles may exist than were reported (the limit or the
    /// work bound was reached).
    pub truncated: bool,
}

/// Whether there is a cycle and up to `limit` simple cycles, spending at most
/// about `max_work` edge inspections on the enumeration.
///
/// Johnson's algorithm: for each start `s` in index order, the cycles whose
/// smallest node is `s` lie in the strongly connected component of `s` in
/// the subgraph of nodes `>= s` (found as forward ∩ backward reachability,
/// the two searches interleaved so that a dead end costs little); a
/// backtracking search with Johnson's blocking then finds each of them once,
/// at a cost linear in the region per cycle.
pub fn cycles(g: &Csr, limit: usize, max_work: u64) -> Cycles {
    cycles_with(
        g,
        CycleLimits {
            limit,
            max_work,
            ..CycleLimits::default()
        },
    )
}

/// The bounds of a cycle enumeration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CycleLimits {
    /// Cycles to report at most.
    pub limit: usize,
    /// Edge inspections (and ids copied) to spend at most, roughly.
    pub max_work: u64,
    /// Only cycles of at most this many nodes (`usize::MAX`: any length).
    /// Short cycles are what a big graph's answer is useful for: without a
    /// bound, the first cycles found in a large component can be as long as
    /// the component.
    pub max_len: usize,
    /// Node ids to report at most, over all cycles.
    pub max_ids: usize,
}

impl Default for CycleLimits {
    fn default() -> Self {
        CycleLimits {
            limit: 100,
            max_work: 20_000_000,
            max_len: usize::MAX,
            max_ids: usize::MAX,
        }
    }
}

/// [`cycles`] with every bound. With `max_len` bounded the search from each
/// start is a depth-limited backtracking search (Johnson's blocking is only
/// sound without a length bound).
pub fn cycles_with(g: &Csr, lim: CycleLimits) -> Cycles {
    let limit = lim.limit;
    let n = g.len();
    let (comp, count) = strongly_connected(g);
    let mut size = vec![0u32; count];
    for &c in &comp {
        size[c as usize] += 1;
    }
    let self_loop = |u: u32| g.out(u).binary_search(&u).is_ok();
    let cyclic = |u: u32| size[comp[u as usize] as usize] > 1 || self_loop(u);
    let has_cycle = (0..n as u32).any(cyclic);
    let mut out = Cycles {
        has_cycle,
        ..Cycles::default()
    };
    if !has_cycle {
        return out;
    }
    let mut j = Johnson {
        g,
        comp: &comp,
        work: 0,
        max_work: lim.max_work,
        max_len: lim.max_len.max(1),
        max_ids: lim.max_ids,
        ids_out: 0,
        fwd: vec![NONE; n],
        bwd: vec![NONE; n],
        blocked: vec![false; n],
        b: vec![Vec::new(); n],
        region: Vec::new(),
    };
    for s in 0..n as u32 {
        if !cyclic(s) {
            continue;
        }
        let done = j.region_of(s) && j.circuits(s, limit, &mut out);
        if j.work > j.max_work {
            out.truncated = true;
        }
        if out.truncated || done {
            break;
        }
    }
    out
}

struct Johnson<'a> {
    g: &'a Csr,
    comp: &'a [u32],
    work: u64,
    max_work: u64,
    max_len: usize,
    max_ids: usize,
    ids_out: usize,
    /// `fwd[v] == s`: reached from `s` forwards in this start's search.
    fwd: Vec<u32>,
    bwd: Vec<u32>,
    blocked: Vec<bool>,
    b: Vec<Vec<u32>>,
    /// Nodes of the current region (forward and backward reached).
    region: Vec<u32>,
}

impl Johnson<'_> {
    #[inline]
    fn member(&self, s: u32, v: u32) -> bool {
        self.fwd[v as usize] == s && self.bwd[v as usize] == s
    }

    /// Finds the strongly connected component of `s` among the nodes `>= s`
    /// of its component, into `region`. False when the work bound ran out.
    fn region_of(&mut self, s: u32) -> bool {
        let (g, comp) = (self.g, self.comp);
        let c = comp[s as usize];
        let ok = |w: u32| w >= s && comp[w as usize] == c;
        self.fwd[s as usize] = s;
        self.bwd[s as usize] = s;
        let mut fq = vec![s];
        let mut bq = vec![s];
        let mut freached = vec![s];
        let mut breached = vec![s];
        // Interleave the two searches a node at a time; if either runs dry
        // having reached only `s`, the region is `s` alone.
        loop {
            if let Some(u) = fq.pop() {
                for &w in g.out(u) {
                    self.work += 1;
                    if ok(w) && self.fwd[w as usize] != s {
                        self.fwd[w as usize] = s;
                        fq.push(w);
                        freached.push(w);
                    }
                }
            } else if freached.len() == 1 {
                break;
            }
            if let Some(u) = bq.pop() {
                for &w in g.inn(u) {
                    self.work += 1;
                    if ok(w) && self.bwd[w as usize] != s {
                        self.bwd[w as usize] = s;
                        bq.push(w);
                        breached.push(w);
                    }
                }
            } else if breached.len() == 1 {
                break;
            }
            if fq.is_empty() && bq.is_empty() {
                break;
            }
            if self.work > self.max_work {
                return false;
            }
        }
        self.region.clear();
        let (small, _) = if freached.len() <= breached.len() {
            (&freached, &breached)
        } else {
            (&breached, &freached)
        };
        for &v in small {
            if self.member(s, v) {
                self.region.push(v);
            }
        }
        true
    }

    /// Johnson's circuit search from `s` in `region`; true once `out` is full
    /// (then `truncated` is set if another cycle was found).
    fn circuits(&mut self, s: u32, limit: usize, out: &mut Cycles) -> bool {
        for i in 0..self.region.len() {
            let v = self.region[i] as usize;
            self.blocked[v] = false;
            self.b[v].clear();
        }
        let g = self.g;
        let mut path: Vec<u32> = vec![s];
        // Frames: (node, next out position, found a cycle below).
        let mut frames: Vec<(u32, usize, bool)> = vec![(s, g.out_off[s as usize], false)];
        self.blocked[s as usize] = true;
        let mut full = false;
        while let Some(&mut (v, ref mut pos, ref mut found)) = frames.last_mut() {
            if *pos < g.out_off[v as usize + 1] {
                let w = g.out_adj[*pos];
                *pos += 1;
                self.work += 1;
                if self.work > self.max_work {
                    full = false;
                    break;
                }
                if w == s {
                    if out.cycles.len() == limit || self.ids_out + path.len() > self.max_ids {
                        out.truncated = true;
                        full = true;
                        break;
                    }
                    self.work += path.len() as u64;
                    self.ids_out += path.len();
                    out.cycles.push(path.clone());
                    *found = true;
                } else if path.len() < self.max_len
                    && self.member(s, w)
                    && !self.blocked[w as usize]
                {
                    self.blocked[w as usize] = true;
                    path.push(w);
                    frames.push((w, g.out_off[w as usize], false));
                }
                continue;
            }
            let found = *found;
            frames.pop();
            path.pop();
            if self.max_len != usize::MAX {
                // Depth-limited: a node blocks only while on the path.
                self.blocked[v as usize] = false;
            } else if found {
                self.unblock(v);
            } else {
                for &w in g.out(v) {
                    self.work += 1;
                    if w != s && self.member(s, w) && !self.b[w as usize].contains(&v) {
                        self.b[w as usize].push(v);
                    }
                }
            }
            if let Some(parent) = frames.last_mut() {
                parent.2 |= found;
            }
        }
        full
    }

    fn unblock(&mut self, u: u32) {
        let mut stack = vec![u];
        while let Some(x) = stack.pop() {
            self.blocked[x as usize] = false;
            let waiting = std::mem::take(&mut self.b[x as usize]);
            self.work += waiting.len() as u64;
            for w in waiting {
                if self.blocked[w as usize] {
                    stack.push(w);
                }
            }
        }
    }
}

// ---------------------------------------------------------------- PageRank

#[derive(Debug, Clone, Default)]
pub struct PageRank {
    /// Score of each dense node index; sums to 1.
    pub scores: Vec<f64>,
    pub iterations: u32,
    pub converged: bool,
}

/// PageRank by power iteration, as NetworkX's `pagerank` on the simple
/// digraph: uniform start and teleport, dangling nodes' rank spread
/// uniformly, stop when the L1 change is below `n * tol`. When `max_iter`
/// runs out first, the last iterate comes back with `converged: false`.
/// Needs the in-rows only.
pub fn pagerank(g: &Csr, damping: f64, tol: f64, max_iter: u32) -> PageRank {
    let n = g.len();
    if n == 0 {
        return PageRank {
            scores: Vec::new(),
            iterations: 0,
            converged: true,
        };
    }
    let nf = n as f64;
    // Out-degrees from the in-rows, so that only those need building.
    let mut inv_deg = vec![0.0f64; n];
    for &u in &g.in_adj {
        inv_deg[u as usize] += 1.0;
    }
    for d in &mut inv_deg {
        if *d > 0.0 {
            *d = 1.0 / *d;
        }
    }
    let dangling: Vec<u32> = (0..n as u32)
        .filter(|&u| inv_deg[u as usize] == 0.0)
        .collect();
    let mut x = vec![1.0 / nf; n];
    let mut next = vec![0.0f64; n];
    let mut contrib = vec![0.0f64; n];
    let mut iterations = 0;
    while iterations < max_iter {
        iterations += 1;
        let dangle: f64 = dangling.iter().map(|&u| x[u as usize]).sum();
        for u in 0..n {
            contrib[u] = x[u] * inv_deg[u];
        }
        let base = (damping * dangle + (1.0 - damping)) / nf;
        let mut err = 0.0;
        for v in 0..n {
            let s: f64 = g.in_adj[g.in_off[v]..g.in_off[v + 1]]
                .iter()
                .map(|&u| contrib[u as usize])
                .sum();
            let value = damping * s + base;
            err += (value - x[v]).abs();
            next[v] = value;
        }
        std::mem::swap(&mut x, &mut next);
        if err < nf * tol {
            return PageRank {
                scores: x,
                iterations,
                converged: true,
            };
        }
    }
    PageRank {
        scores: x,
        iterations,
        converged: false,
    }
}

/// Indices of the scores ranked `offset..offset + limit` (highest first,
/// ties by smaller id), without sorting the whole list.
pub fn top_ranked(g: &Csr, scores: &[f64], offset: usize, limit: usize) -> Vec<u32> {
    let n = scores.len();
    let want = offset.saturating_add(limit).min(n);
    if want == 0 || offset >= n {
        return Vec::new();
    }
    let better = |a: &u32, b: &u32| {
        scores[*b as usize]
            .total_cmp(&scores[*a as usize])
            .then_with(|| g.ids[*a as usize].cmp(&g.ids[*b as usize]))
    };
    let mut idx: Vec<u32> = (0..n as u32).collect();
    if want < n {
        idx.select_nth_unstable_by(want - 1, better);
        idx.truncate(want);
    }
    idx.sort_unstable_by(better);
    idx.drain(..offset);
    idx
}

// ---------------------------------------------------------------- statistics

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
