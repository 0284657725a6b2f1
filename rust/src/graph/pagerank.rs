//! PageRank by power iteration, and the ranking of its scores.

use super::Digraph;

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
pub fn pagerank<G: Digraph + ?Sized>(g: &G, damping: f64, tol: f64, max_iter: u32) -> PageRank {
    let n = g.node_count();
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
    for v in 0..n as u32 {
        for &u in g.predecessors(v) {
            inv_deg[u as usize] += 1.0;
        }
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
            let s: f64 = g
                .predecessors(v as u32)
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
pub fn top_ranked<G: Digraph + ?Sized>(
    g: &G,
    scores: &[f64],
    offset: usize,
    limit: usize,
) -> Vec<u32> {
    let n = scores.len();
    let want = offset.saturating_add(limit).min(n);
    if want == 0 || offset >= n {
        return Vec::new();
    }
    let better = |a: &u32, b: &u32| {
        scores[*b as usize]
            .total_cmp(&scores[*a as usize])
            .then_with(|| g.node_id(*a).cmp(&g.node_id(*b)))
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
