//! The graph algorithms: hand-made cases and random graphs against
//! brute-force references (the Python suite compares with NetworkX).

use std::collections::{BTreeSet, HashSet, VecDeque};

use bfx_core::graph::{
    bfs_depths, components, components_page, cycles, cycles_with, pagerank, relationship_stats,
    shortest_path, strongly_connected, top_ranked, traverse, Csr, CycleLimits, Direction, Rows,
    TypeMask,
};
use bfx_core::{Arena, CoreError, ExprType, NewEdge, NewSubstrate, RelType};

fn arena_with(n: usize) -> (Arena, Vec<u64>) {
    let mut arena = Arena::new();
    let ids = (0..n)
        .map(|i| {
            let code = format!("{i}");
            arena
                .insert(&NewSubstrate {
                    expr_type: ExprType::Constant,
                    code: &code,
                    canonical: &code,
                    metadata: b"",
                    created_at: 1,
                    expected_id: None,
                })
                .unwrap()
        })
        .collect();
    (arena, ids)
}

fn link(arena: &mut Arena, rel: RelType, s: u64, t: u64, bidirectional: bool) -> u64 {
    arena
        .link(&NewEdge {
            rel,
            source: s,
            target: t,
            bidirectional,
            constraints: b"",
            created_at: 1,
        })
        .unwrap()
}

const DEP: RelType = RelType::Dependency;
const SIB: RelType = RelType::Sibling;

#[test]
fn traverse_follows_direction_depth_and_reports_paths_and_edges() {
    let (mut a, n) = arena_with(5);
    let e01 = link(&mut a, DEP, n[0], n[1], false);
    let e12 = link(&mut a, DEP, n[1], n[2], false);
    let e23 = link(&mut a, DEP, n[2], n[3], false);
    let e02 = link(&mut a, SIB, n[0], n[2], false);
    let t = traverse(&a, n[0], Direction::Outgoing, 2, TypeMask::ALL, 100).unwrap();
    let got: Vec<(u64, u32)> = t.nodes.iter().map(|r| (r.id, r.depth)).collect();
    assert_eq!(got[0], (n[0], 0));
    let set: BTreeSet<(u64, u32)> = got.iter().copied().collect();
    assert_eq!(
        set,
        BTreeSet::from([(n[0], 0), (n[1], 1), (n[2], 1), (n[3], 2)])
    );
    let edges: BTreeSet<u64> = t.edges.iter().map(|e| e.id).collect();
    assert_eq!(edges, BTreeSet::from([e01, e12, e23, e02]));
    assert!(!t.truncated);
    let i3 = t.nodes.iter().position(|r| r.id == n[3]).unwrap();
    assert_eq!(t.path(i3), vec![n[0], n[2], n[3]]);
    assert_eq!(t.nodes[i3].via, e23);

    // Depth 0 is the start alone; incoming from 3 walks back.
    let t = traverse(&a, n[0], Direction::Outgoing, 0, TypeMask::ALL, 100).unwrap();
    assert_eq!(t.nodes.len(), 1);
    assert!(t.edges.is_empty());
    let t = traverse(&a, n[3], Direction::Incoming, 1, TypeMask::ALL, 100).unwrap();
    let ids: Vec<u64> = t.nodes.iter().map(|r| r.id).collect();
    assert_eq!(ids, vec![n[3], n[2]]);
    assert_eq!(t.path(1), vec![n[3], n[2]]);

    // The type filter.
    let only = TypeMask::new(Some(&[SIB]));
    let t = traverse(&a, n[0], Direction::Outgoing, 3, only, 100).unwrap();
    let ids: Vec<u64> = t.nodes.iter().map(|r| r.id).collect();
    assert_eq!(ids, vec![n[0], n[2]]);

    // max_nodes truncates and keeps only edges between kept nodes.
    let t = traverse(&a, n[0], Direction::Outgoing, 3, TypeMask::ALL, 2).unwrap();
    assert_eq!(t.nodes.len(), 2);
    assert!(t.truncated);
    assert_eq!(t.edges.len(), 1);

    // Unknown start.
    assert!(matches!(
        traverse(&a, 12345, Direction::Both, 1, TypeMask::ALL, 10),
        Err(CoreError::NotFound { .. })
    ));
}

#[test]
fn bidirectional_edges_and_self_loops_are_walked_both_ways_and_reported_once() {
    let (mut a, n) = arena_with(3);
    let bi = link(&mut a, SIB, n[0], n[1], true);
    let lp = link(&mut a, DEP, n[1], n[1], false);
    for dir in [Direction::Outgoing, Direction::Incoming, Direction::Both] {
        let t = traverse(&a, n[1], dir, 3, TypeMask::ALL, 100).unwrap();
        let ids: Vec<u64> = t.nodes.iter().map(|r| r.id).collect();
        assert_eq!(ids, vec![n[1], n[0]], "{dir:?}");
        let mut edges: Vec<u64> = t.edges.iter().map(|e| e.id).collect();
        edges.sort_unstable();
        let mut want = vec![bi, lp];
        want.sort_unstable();
        assert_eq!(edges, want, "{dir:?}");
    }
    assert_eq!(
        shortest_path(&a, n[1], n[0], Direction::Outgoing, TypeMask::ALL).unwrap(),
        Some(vec![n[1], n[0]])
    );
    assert_eq!(
        shortest_path(&a, n[0], n[2], Direction::Both, TypeMask::ALL).unwrap(),
        None
    );
    assert_eq!(
        shortest_path(&a, n[2], n[2], Direction::Both, TypeMask::ALL).unwrap(),
        Some(vec![n[2]])
    );
    // A bidirectional edge is a 2-cycle; the self-loop a 1-cycle.
    let g = a.graph_snapshot(None);
    let c = cycles(&g, 10, u64::MAX);
    assert!(c.has_cycle);
    assert_eq!(c.cycles.len(), 2);
    assert!(!c.truncated);
    let g = a.graph_snapshot(Some(&[DEP]));
    assert_eq!(cycles(&g, 10, u64::MAX).cycles.len(), 1);
}

#[test]
fn shortest_path_is_direction_aware() {
    let (mut a, n) = arena_with(4);
    link(&mut a, DEP, n[0], n[1], false);
    link(&mut a, DEP, n[1], n[2], false);
    link(&mut a, DEP, n[3], n[2], false);
    let all = TypeMask::ALL;
    assert_eq!(
        shortest_path(&a, n[0], n[2], Direction::Outgoing, all).unwrap(),
        Some(vec![n[0], n[1], n[2]])
    );
    assert_eq!(
        shortest_path(&a, n[2], n[0], Direction::Outgoing, all).unwrap(),
        None
    );
    assert_eq!(
        shortest_path(&a, n[2], n[0], Direction::Incoming, all).unwrap(),
        Some(vec![n[2], n[1], n[0]])
    );
    assert_eq!(
        shortest_path(&a, n[0], n[3], Direction::Both, all).unwrap(),
        Some(vec![n[0], n[1], n[2], n[3]])
    );
    assert_eq!(
        shortest_path(
            &a,
            n[0],
            n[2],
            Direction::Outgoing,
            TypeMask::new(Some(&[SIB]))
        )
        .unwrap(),
        None
    );
    assert!(shortest_path(&a, n[0], 99, Direction::Both, all).is_err());
}

#[test]
fn deleted_nodes_leave_the_snapshot_dense() {
    let (mut a, n) = arena_with(4);
    link(&mut a, DEP, n[0], n[1], false);
    link(&mut a, DEP, n[1], n[0], false);
    link(&mut a, DEP, n[2], n[3], false);
    a.remove(n[1]).unwrap();
    let g = a.graph_snapshot(None);
    assert_eq!(g.len(), 3);
    assert_eq!(g.link_count(), 1);
    assert!(!cycles(&g, 10, u64::MAX).has_cycle);
    let (_, count) = strongly_connected(&g);
    assert_eq!(count, 3);
    let pr = pagerank(&g, 0.85, 1e-6, 100);
    assert!((pr.scores.iter().sum::<f64>() - 1.0).abs() < 1e-9);
}

#[test]
fn scc_is_iterative_on_a_million_node_path_and_cycle() {
    let n = 1_000_000u32;
    let ids: Vec<u64> = (0..n as u64).collect();
    let mut links: Vec<(u32, u32)> = (0..n - 1).map(|i| (i, i + 1)).collect();
    let g = Csr::from_links(ids.clone(), &links);
    let (_, count) = strongly_connected(&g);
    assert_eq!(count, n as usize);
    links.push((n - 1, 0));
    let g = Csr::from_links(ids, &links);
    let (comp, count) = strongly_connected(&g);
    assert_eq!(count, 1);
    assert!(comp.iter().all(|&c| c == 0));
    let c = cycles(&g, 5, 10_000_000);
    assert_eq!(c.cycles.len(), 1);
    assert_eq!(c.cycles[0].len(), n as usize);
    assert!(!c.truncated);
}

#[test]
fn cycles_respect_the_limit_and_the_work_bound() {
    // The complete digraph on 5 nodes has 84 simple cycles (no self-loops).
    let ids: Vec<u64> = (0..5).collect();
    let links: Vec<(u32, u32)> = (0..5)
        .flat_map(|u| (0..5).filter(move |&v| v != u).map(move |v| (u, v)))
        .collect();
    let g = Csr::from_links(ids, &links);
    let all = cycles(&g, 1000, u64::MAX);
    assert_eq!(all.cycles.len(), 84);
    assert!(!all.truncated);
    let some = cycles(&g, 84, u64::MAX);
    assert!(!some.truncated);
    let some = cycles(&g, 10, u64::MAX);
    assert_eq!(some.cycles.len(), 10);
    assert!(some.truncated && some.has_cycle);
    let bounded = cycles(&g, 1000, 20);
    assert!(bounded.truncated && bounded.has_cycle);
    assert!(bounded.cycles.len() < 84);
}

#[test]
fn pagerank_handles_dangling_nodes_and_ranks() {
    // 0 -> 1 -> 2, 2 dangling; 3 isolated.
    let g = Csr::from_links(vec![10, 11, 12, 13], &[(0, 1), (1, 2)]);
    let pr = pagerank(&g, 0.85, 1e-10, 1000);
    assert!(pr.converged);
    assert!((pr.scores.iter().sum::<f64>() - 1.0).abs() < 1e-9);
    assert!(pr.scores[2] > pr.scores[1] && pr.scores[1] > pr.scores[0]);
    assert!((pr.scores[0] - pr.scores[3]).abs() < 1e-12);
    let top = top_ranked(&g, &pr.scores, 0, 2);
    assert_eq!(top, vec![2, 1]);
    // Ties by smaller id: 0 (id 10) before 3 (id 13).
    assert_eq!(top_ranked(&g, &pr.scores, 2, 10), vec![0, 3]);
    assert!(top_ranked(&g, &pr.scores, 4, 10).is_empty());
    let fail = pagerank(&g, 0.85, 1e-300, 3);
    assert!(!fail.converged);
    assert_eq!(fail.iterations, 3);
    assert!(pagerank(&Csr::default(), 0.85, 1e-6, 100).scores.is_empty());
}

#[test]
fn stats_count_ends_and_isolated_nodes() {
    let (mut a, n) = arena_with(4);
    link(&mut a, DEP, n[0], n[1], false);
    link(&mut a, DEP, n[1], n[2], false);
    link(&mut a, SIB, n[0], n[2], true);
    let s = relationship_stats(&a);
    assert_eq!(s.total_relationships, 3);
    assert_eq!(s.total_substrates, 4);
    assert_eq!(s.by_type, vec![(SIB, 1), (DEP, 2)]);
    assert_eq!(s.max_degree, 2);
    assert_eq!(s.isolated_substrates, 1);
    assert!((s.avg_degree - 1.5).abs() < 1e-12);
}

// ---- random graphs against brute force ----

struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// A random arena, and its links as an adjacency matrix over dense indices.
fn random_graph(rng: &mut Lcg) -> (Arena, Vec<u64>, Vec<Vec<bool>>) {
    let size = 1 + rng.below(9) as usize;
    let (mut a, mut ids) = arena_with(size);
    let edges = rng.below(3 * size as u64 + 1);
    for _ in 0..edges {
        let (s, t) = (rng.below(size as u64), rng.below(size as u64));
        let rel = [DEP, SIB, RelType::Cycle][rng.below(3) as usize];
        let _ = a.link(&NewEdge {
            rel,
            source: ids[s as usize],
            target: ids[t as usize],
            bidirectional: rng.below(4) == 0,
            constraints: b"",
            created_at: 1,
        });
    }
    if size > 2 && rng.below(2) == 0 {
        let gone = ids.remove(rng.below(size as u64) as usize);
        a.remove(gone).unwrap();
    }
    let g = a.graph_snapshot(None);
    assert_eq!(g.ids, ids);
    let mut m = vec![vec![false; ids.len()]; ids.len()];
    for e in a.iter_edges() {
        let s = ids.iter().position(|&i| i == e.source).unwrap();
        let t = ids.iter().position(|&i| i == e.target).unwrap();
        m[s][t] = true;
        if e.bidirectional {
            m[t][s] = true;
        }
    }
    (a, ids, m)
}

fn dist_from(m: &[Vec<bool>], s: usize) -> Vec<Option<usize>> {
    let mut d = vec![None; m.len()];
    d[s] = Some(0);
    let mut q = VecDeque::from([s]);
    while let Some(u) = q.pop_front() {
        for v in 0..m.len() {
            if m[u][v] && d[v].is_none() {
                d[v] = Some(d[u].unwrap() + 1);
                q.push_back(v);
            }
        }
    }
    d
}

fn count_cycles(m: &[Vec<bool>]) -> usize {
    count_cycles_upto(m, usize::MAX)
}

/// Simple cycles of at most `max_len` nodes, by brute force.
fn count_cycles_upto(m: &[Vec<bool>], max_len: usize) -> usize {
    fn go(m: &[Vec<bool>], s: usize, u: usize, len: usize, max: usize, on: &mut [bool]) -> usize {
        let mut c = 0;
        for v in 0..m.len() {
            if !m[u][v] {
                continue;
            }
            if v == s {
                c += 1;
            } else if v > s && !on[v] && len < max {
                on[v] = true;
                c += go(m, s, v, len + 1, max, on);
                on[v] = false;
            }
        }
        c
    }
    (0..m.len())
        .map(|s| {
            let mut on = vec![false; m.len()];
            on[s] = true;
            go(m, s, s, 1, max_len, &mut on)
        })
        .sum()
}

#[test]
fn random_graphs_match_brute_force() {
    let mut rng = Lcg(7);
    for _ in 0..400 {
        let (a, ids, m) = random_graph(&mut rng);
        let n = ids.len();
        let g = a.graph_snapshot(None);
        let links: usize = m.iter().flatten().filter(|&&b| b).count();
        assert_eq!(g.link_count(), links);
        let dist: Vec<Vec<Option<usize>>> = (0..n).map(|s| dist_from(&m, s)).collect();
        // SCC: same component iff mutually reachable.
        let (comp, count) = strongly_connected(&g);
        for u in 0..n {
            for v in 0..n {
                let mutual = dist[u][v].is_some() && dist[v][u].is_some();
                assert_eq!(comp[u] == comp[v], mutual);
            }
        }
        let groups = components(&g);
        assert_eq!(groups.len(), count);
        // Pages agree with the full list, whatever the page and member bounds.
        let full: Vec<(usize, Vec<u64>)> = groups
            .iter()
            .map(|grp| (grp.len(), grp.iter().map(|&v| g.ids[v as usize]).collect()))
            .collect();
        assert_eq!(
            components_page(&g, 0, usize::MAX, usize::MAX),
            (count, full.clone())
        );
        let (k, limit) = ((rng.below(3)) as usize, 1 + rng.below(3) as usize);
        let (_, page) = components_page(&g, k, 2, limit);
        for (got, want) in page.iter().zip(full.iter().skip(k)) {
            assert_eq!(got.0, want.0);
            assert_eq!(got.1[..], want.1[..limit.min(want.1.len())]);
        }
        assert_eq!(groups.iter().map(Vec::len).sum::<usize>(), n);
        // Shortest paths and traversals: lengths are BFS distances, and every
        // step is a link.
        let transposed: Vec<Vec<bool>> =
            (0..n).map(|u| (0..n).map(|v| m[v][u]).collect()).collect();
        let undirected: Vec<Vec<bool>> = (0..n)
            .map(|u| (0..n).map(|v| m[u][v] || m[v][u]).collect())
            .collect();
        for (dir, mm) in [
            (Direction::Outgoing, &m),
            (Direction::Incoming, &transposed),
            (Direction::Both, &undirected),
        ] {
            for s in 0..n {
                let d = dist_from(mm, s);
                for t in 0..n {
                    let p = shortest_path(&a, ids[s], ids[t], dir, TypeMask::ALL).unwrap();
                    match (p, d[t]) {
                        (None, None) => {}
                        (Some(p), Some(k)) => {
                            assert_eq!(p.len(), k + 1);
                            for w in p.windows(2) {
                                let x = ids.iter().position(|&i| i == w[0]).unwrap();
                                let y = ids.iter().position(|&i| i == w[1]).unwrap();
                                assert!(mm[x][y]);
                            }
                        }
                        other => panic!("{dir:?} {s}->{t}: {other:?}"),
                    }
                }
                for depth in 0..3u32 {
                    let t = traverse(&a, ids[s], dir, depth, TypeMask::ALL, 1000).unwrap();
                    let got: HashSet<(u64, u32)> =
                        t.nodes.iter().map(|r| (r.id, r.depth)).collect();
                    let want: HashSet<(u64, u32)> = (0..n)
                        .filter_map(|v| {
                            d[v].filter(|&k| k <= depth as usize)
                                .map(|k| (ids[v], k as u32))
                        })
                        .collect();
                    assert_eq!(got, want);
                    let lean: HashSet<(u64, u32)> =
                        bfs_depths(&a, ids[s], dir, depth, TypeMask::ALL)
                            .unwrap()
                            .into_iter()
                            .collect();
                    assert_eq!(lean, want);
                    for i in 0..t.nodes.len() {
                        assert_eq!(t.path(i).len(), t.nodes[i].depth as usize + 1);
                    }
                }
            }
        }
        // Cycles: the count of simple cycles, and has_cycle.
        let total = count_cycles(&m);
        let c = cycles(&g, 10_000, u64::MAX);
        assert_eq!(c.cycles.len(), total);
        assert_eq!(c.has_cycle, total > 0);
        let uniq: HashSet<Vec<u32>> = c.cycles.iter().cloned().collect();
        assert_eq!(uniq.len(), total);
        for max_len in 1..=4 {
            let lim = CycleLimits {
                limit: 10_000,
                max_work: u64::MAX,
                max_len,
                max_ids: usize::MAX,
            };
            let short = cycles_with(&g, lim);
            assert_eq!(short.cycles.len(), count_cycles_upto(&m, max_len));
            assert!(short.cycles.iter().all(|c| c.len() <= max_len));
            assert!(!short.truncated);
        }
        let budget = cycles_with(
            &g,
            CycleLimits {
                limit: 10_000,
                max_work: u64::MAX,
                max_len: usize::MAX,
                max_ids: 5,
            },
        );
        assert!(budget.cycles.iter().map(Vec::len).sum::<usize>() <= 5);
        assert_eq!(budget.truncated, budget.cycles.len() < total);
        // PageRank sums to 1, and one-direction snapshots answer the same.
        if n > 0 {
            let pr = pagerank(&g, 0.85, 1e-8, 200);
            assert!((pr.scores.iter().sum::<f64>() - 1.0).abs() < 1e-9);
            let only_in = Csr::build_rows(&a, TypeMask::ALL, Rows::In);
            assert_eq!(pagerank(&only_in, 0.85, 1e-8, 200).scores, pr.scores);
        }
        let only_out = Csr::build_rows(&a, TypeMask::ALL, Rows::Out);
        assert_eq!(only_out.out_adj, g.out_adj);
        assert_eq!(strongly_connected(&only_out), strongly_connected(&g));
    }
}
