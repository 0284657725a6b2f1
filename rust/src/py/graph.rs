//! Bindings of the graph algorithms ([`crate::graph`]) as `bfx._core`
//! functions taking an `Arena`.
//!
//! Same discipline as the rest of the layer: arguments are converted first,
//! the work runs with the GIL released and the arena's read lock held, and
//! Python objects are built only after the lock is gone. Big answers are cut
//! to the requested page inside the detached part, so a page of a
//! million-node result costs the page in Python objects, not the million.

use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyTuple};

use super::arena::Arena;
use super::convert::{direction_arg, id_arg, types_arg};
use super::errors::{validation_error, CoreResultExt};
use crate::graph::{self, Csr, Rows, TypeMask};

/// Breadth-first traversal. Returns `(nodes, edges, truncated)`: nodes as
/// `(id, depth, parent_index, via_relationship_id)` in BFS order (the start
/// first, with parent -1 and via None), edges as `(relationship_id,
/// rel_type, source, target, bidirectional)`, each crossed edge once.
#[pyfunction]
#[pyo3(signature = (arena, start, direction = "outgoing", max_depth = 3, rel_types = None, max_nodes = 10_000))]
fn graph_traverse<'py>(
    py: Python<'py>,
    arena: &Arena,
    start: &Bound<'py, PyAny>,
    direction: &str,
    max_depth: u32,
    rel_types: Option<Vec<String>>,
    max_nodes: usize,
) -> PyResult<(Bound<'py, PyList>, Bound<'py, PyList>, bool)> {
    let start = id_arg(start)?;
    let dir = direction_arg(py, direction)?;
    let mask = types_arg(py, rel_types)?;
    let t = py
        .detach(|| {
            let a = arena.inner.read();
            graph::traverse(&a, start, dir, max_depth, mask, max_nodes)
        })
        .py_err(py)?;
    let nodes = t
        .nodes
        .iter()
        .map(|n| {
            let parent: i64 = if n.depth == 0 { -1 } else { n.parent as i64 };
            let via = (n.depth > 0).then_some(n.via);
            (n.id, n.depth, parent, via).into_pyobject(py)
        })
        .collect::<PyResult<Vec<Bound<'py, PyTuple>>>>()?;
    let edges = t
        .edges
        .iter()
        .map(|e| (e.id, e.rel.name(), e.source, e.target, e.bidirectional).into_pyobject(py))
        .collect::<PyResult<Vec<Bound<'py, PyTuple>>>>()?;
    Ok((
        PyList::new(py, nodes)?,
        PyList::new(py, edges)?,
        t.truncated,
    ))
}

/// The lean traversal: the ids within `max_depth` as breadth-first layers
/// (`layers[d]` holds the ids at depth `d`, `layers[0] == [start]`), without
/// paths, edges or a node bound.
#[pyfunction]
#[pyo3(signature = (arena, start, direction = "outgoing", max_depth = 3, rel_types = None))]
fn graph_bfs(
    py: Python<'_>,
    arena: &Arena,
    start: &Bound<'_, PyAny>,
    direction: &str,
    max_depth: u32,
    rel_types: Option<Vec<String>>,
) -> PyResult<Vec<Vec<u64>>> {
    let start = id_arg(start)?;
    let dir = direction_arg(py, direction)?;
    let mask = types_arg(py, rel_types)?;
    py.detach(|| {
        let a = arena.inner.read();
        let reached = graph::bfs_depths(&a, start, dir, max_depth, mask)?;
        let mut layers: Vec<Vec<u64>> = Vec::new();
        for (id, depth) in reached {
            if depth as usize == layers.len() {
                layers.push(Vec::new());
            }
            layers[depth as usize].push(id);
        }
        Ok(layers)
    })
    .py_err(py)
}

/// The fewest-steps path as a list of ids, or None.
#[pyfunction]
#[pyo3(signature = (arena, source, target, direction = "outgoing", rel_types = None))]
fn graph_shortest_path(
    py: Python<'_>,
    arena: &Arena,
    source: &Bound<'_, PyAny>,
    target: &Bound<'_, PyAny>,
    direction: &str,
    rel_types: Option<Vec<String>>,
) -> PyResult<Option<Vec<u64>>> {
    let (src, dst) = (id_arg(source)?, id_arg(target)?);
    let dir = direction_arg(py, direction)?;
    let mask = types_arg(py, rel_types)?;
    py.detach(|| {
        let a = arena.inner.read();
        graph::shortest_path(&a, src, dst, dir, mask)
    })
    .py_err(py)
}

/// `(count, [(size, ids)])`.
type ComponentsPage = (usize, Vec<(usize, Vec<u64>)>);
/// `(node_count, [(id, score)], iterations, converged)`.
type PageRankPage = (usize, Vec<(u64, f64)>, u32, bool);

fn snapshot(arena: &Arena, mask: TypeMask, rows: Rows) -> Csr {
    let a = arena.inner.read();
    Csr::build_rows(&a, mask, rows)
}

/// `(has_cycle, cycles, truncated)`: up to `limit` simple cycles as lists of
/// ids, of at most `max_length` nodes each (any length when None), at most
/// `max_ids` ids in all, with at most about `max_work` steps of enumeration.
#[pyfunction]
#[pyo3(signature = (arena, limit = 100, max_work = 20_000_000, rel_types = None, max_length = None, max_ids = None))]
fn graph_cycles(
    py: Python<'_>,
    arena: &Arena,
    limit: usize,
    max_work: u64,
    rel_types: Option<Vec<String>>,
    max_length: Option<usize>,
    max_ids: Option<usize>,
) -> PyResult<(bool, Vec<Vec<u64>>, bool)> {
    let mask = types_arg(py, rel_types)?;
    let lim = graph::CycleLimits {
        limit,
        max_work,
        max_len: max_length.unwrap_or(usize::MAX),
        max_ids: max_ids.unwrap_or(usize::MAX),
    };
    Ok(py.detach(|| {
        let g = snapshot(arena, mask, Rows::Both);
        let c = graph::cycles_with(&g, lim);
        let cycles = c
            .cycles
            .iter()
            .map(|cy| cy.iter().map(|&v| g.ids[v as usize]).collect())
            .collect();
        (c.has_cycle, cycles, c.truncated)
    }))
}

/// `(count, page)`: the number of strongly connected components and the
/// page `offset..offset + limit` of them (largest first, then by smallest
/// id), each as `(size, ids)` with ids ascending and cut to `member_limit`.
#[pyfunction]
#[pyo3(signature = (arena, offset = 0, limit = 100, member_limit = 1000, rel_types = None))]
fn graph_components(
    py: Python<'_>,
    arena: &Arena,
    offset: usize,
    limit: usize,
    member_limit: usize,
    rel_types: Option<Vec<String>>,
) -> PyResult<ComponentsPage> {
    let mask = types_arg(py, rel_types)?;
    Ok(py.detach(|| {
        let g = snapshot(arena, mask, Rows::Out);
        graph::components_page(&g, offset, limit, member_limit)
    }))
}

/// `(node_count, page, iterations, converged)`: PageRank over the whole
/// graph, and the page `offset..offset + limit` of `(id, score)` ranked by
/// score (highest first, ties by smaller id); `limit=None` is everything.
#[pyfunction]
#[pyo3(signature = (arena, damping = 0.85, tol = 1e-6, max_iter = 100, offset = 0, limit = None, rel_types = None))]
#[allow(clippy::too_many_arguments)]
fn graph_pagerank(
    py: Python<'_>,
    arena: &Arena,
    damping: f64,
    tol: f64,
    max_iter: u32,
    offset: usize,
    limit: Option<usize>,
    rel_types: Option<Vec<String>>,
) -> PyResult<PageRankPage> {
    let mask = types_arg(py, rel_types)?;
    if !(0.0..=1.0).contains(&damping) {
        return Err(validation_error(
            py,
            "damping must be within [0, 1]".into(),
            "damping",
        ));
    }
    if !(tol > 0.0 && tol.is_finite()) {
        return Err(validation_error(
            py,
            "tol must be a positive number".into(),
            "tol",
        ));
    }
    Ok(py.detach(|| {
        let g = snapshot(arena, mask, Rows::In);
        let pr = graph::pagerank(&g, damping, tol, max_iter);
        let page = graph::top_ranked(&g, &pr.scores, offset, limit.unwrap_or(usize::MAX))
            .into_iter()
            .map(|v| (g.ids[v as usize], pr.scores[v as usize]))
            .collect();
        (g.len(), page, pr.iterations, pr.converged)
    }))
}

/// Relationship statistics: `total_relationships`, `total_substrates`,
/// `by_type`, `avg_degree`, `max_degree`, `isolated_substrates`.
#[pyfunction]
fn graph_stats<'py>(py: Python<'py>, arena: &Arena) -> PyResult<Bound<'py, PyDict>> {
    let s = py.detach(|| graph::relationship_stats(&arena.inner.read()));
    let d = PyDict::new(py);
    d.set_item("total_relationships", s.total_relationships)?;
    d.set_item("total_substrates", s.total_substrates)?;
    let by_type = PyDict::new(py);
    for (t, count) in &s.by_type {
        by_type.set_item(t.name(), count)?;
    }
    d.set_item("by_type", by_type)?;
    d.set_item("avg_degree", s.avg_degree)?;
    d.set_item("max_degree", s.max_degree)?;
    d.set_item("isolated_substrates", s.isolated_substrates)?;
    Ok(d)
}

pub(super) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(graph_traverse, m)?)?;
    m.add_function(wrap_pyfunction!(graph_bfs, m)?)?;
    m.add_function(wrap_pyfunction!(graph_shortest_path, m)?)?;
    m.add_function(wrap_pyfunction!(graph_cycles, m)?)?;
    m.add_function(wrap_pyfunction!(graph_components, m)?)?;
    m.add_function(wrap_pyfunction!(graph_pagerank, m)?)?;
    m.add_function(wrap_pyfunction!(graph_stats, m)?)?;
    Ok(())
}
