//! Cycles: whether there is one (exact), and a bounded enumeration of
//! simple cycles (Johnson's algorithm, or a depth-limited search when the
//! length is bounded).

use super::components::strongly_connected;
use super::{Digraph, NONE};

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
pub fn cycles<G: Digraph + ?Sized>(g: &G, limit: usize, max_work: u64) -> Cycles {
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
pub fn cycles_with<G: Digraph + ?Sized>(g: &G, lim: CycleLimits) -> Cycles {
    let limit = lim.limit;
    let n = g.node_count();
    let (comp, count) = strongly_connected(g);
    let mut size = vec![0u32; count];
    for &c in &comp {
        size[c as usize] += 1;
    }
    let self_loop = |u: u32| g.successors(u).binary_search(&u).is_ok();
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

struct Johnson<'a, G: Digraph + ?Sized> {
    g: &'a G,
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

impl<G: Digraph + ?Sized> Johnson<'_, G> {
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
                for &w in g.successors(u) {
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
                for &w in g.predecessors(u) {
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
        // Frames: (node, next position in its successor row, found a cycle below).
        let mut frames: Vec<(u32, usize, bool)> = vec![(s, 0, false)];
        self.blocked[s as usize] = true;
        let mut full = false;
        while let Some(&mut (v, ref mut pos, ref mut found)) = frames.last_mut() {
            let row = g.successors(v);
            if *pos < row.len() {
                let w = row[*pos];
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
                    frames.push((w, 0, false));
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
                for &w in g.successors(v) {
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
