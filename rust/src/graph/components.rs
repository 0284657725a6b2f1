//! Strongly connected components (iterative Tarjan), all of them or one
//! page, largest first.

use super::{Digraph, NONE};

/// Strongly connected components (iterative Tarjan, on the out-rows): the
/// component number of
/// each node and how many there are. Components are numbered in reverse
/// topological order of the condensation; every node is in one (singletons
/// included).
pub fn strongly_connected<G: Digraph + ?Sized>(g: &G) -> (Vec<u32>, usize) {
    // One array read per edge: `index` is the visit number of a node on the
    // Tarjan stack, NONE before its visit, DONE once in a component; `low`
    // lives in the call frames, the only place it is used.
    const DONE: u32 = u32::MAX - 1;
    let n = g.node_count();
    let mut comp = vec![NONE; n];
    let mut index = vec![NONE; n];
    let mut stack: Vec<u32> = Vec::new();
    // (node, next position in its successor row, low)
    let mut calls: Vec<(u32, usize, u32)> = Vec::new();
    let mut counter = 0u32;
    let mut count = 0usize;
    for root in 0..n as u32 {
        if index[root as usize] != NONE {
            continue;
        }
        index[root as usize] = counter;
        stack.push(root);
        calls.push((root, 0, counter));
        counter += 1;
        while let Some(&mut (v, ref mut pos, ref mut low)) = calls.last_mut() {
            let row = g.successors(v);
            if *pos < row.len() {
                let w = row[*pos];
                *pos += 1;
                let iw = index[w as usize];
                if iw == NONE {
                    index[w as usize] = counter;
                    stack.push(w);
                    calls.push((w, 0, counter));
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
pub fn components<G: Digraph + ?Sized>(g: &G) -> Vec<Vec<u32>> {
    let (comp, count) = strongly_connected(g);
    let mut groups: Vec<Vec<u32>> = vec![Vec::new(); count];
    for (v, &c) in comp.iter().enumerate() {
        groups[c as usize].push(v as u32);
    }
    for grp in &mut groups {
        grp.sort_unstable_by_key(|&v| g.node_id(v));
    }
    groups.sort_unstable_by(|a, b| {
        b.len()
            .cmp(&a.len())
            .then_with(|| g.node_id(a[0]).cmp(&g.node_id(b[0])))
    });
    groups
}

/// One page of [`components`] without building them all: the number of
/// components, and for ranks `offset..offset + limit` each component's size
/// and its `member_limit` smallest ids, ascending. O(V + E) plus sorting the
/// component order and the returned ids only.
pub fn components_page<G: Digraph + ?Sized>(
    g: &G,
    offset: usize,
    limit: usize,
    member_limit: usize,
) -> (usize, Vec<(usize, Vec<u64>)>) {
    let (comp, count) = strongly_connected(g);
    let mut size = vec![0usize; count];
    let mut min_id = vec![u64::MAX; count];
    for (v, &c) in comp.iter().enumerate() {
        size[c as usize] += 1;
        min_id[c as usize] = min_id[c as usize].min(g.node_id(v as u32));
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
            members[at as usize].push(g.node_id(v as u32));
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
