//! The `Arena` class: the substrate arena and relationship store, with the
//! lock discipline of the binding layer (see [`super`]).

use std::ffi::CString;
use std::fs::{File, OpenOptions};
use std::path::PathBuf;

use parking_lot::RwLock;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList, PyTuple};

use super::convert::{
    edge_items, edge_list_into_py, edge_rows, edges_into_py, id_arg, now_micros, opt_id_arg,
    records_into_py, rel_arg, results_into_py, substrate_items, substrate_rows, EdgeOut, OwnedEdge,
    OwnedSubstrate, SubstrateOut,
};
use super::errors::{error_instance, not_found, CoreResultExt};
use crate::arena::{Arena as CoreArena, EdgeView, NewEdge, NewSubstrate};
use crate::dump;
use crate::error::{CoreError, Kind};
use crate::kinds::{ExprType, RelType};
use crate::record_json::substrate_json;
use crate::sqlite_load;

/// `CoreArena::outgoing` or `CoreArena::incoming`.
type Neighbours = for<'a> fn(
    &'a CoreArena,
    u64,
    Option<RelType>,
    usize,
    usize,
) -> Result<(usize, Vec<EdgeView<'a>>), CoreError>;

/// The in-memory substrate arena and relationship store. Thread-safe: reads
/// share a lock, writes take it alone.
#[pyclass(frozen, module = "bfx._core")]
pub struct Arena {
    pub(super) inner: RwLock<CoreArena>,
}

/// Rows a check converted, with the ids it computed, waiting for `Arena.apply`
/// (which takes them, once).
#[pyclass(frozen, module = "bfx._core")]
pub struct Prepared {
    rows: parking_lot::Mutex<Option<PreparedRows>>,
}

enum PreparedRows {
    Substrates(Vec<(usize, u64, OwnedSubstrate)>),
    Edges(Vec<(usize, u64, OwnedEdge)>),
}

impl Prepared {
    fn new(rows: PreparedRows) -> Self {
        Prepared {
            rows: parking_lot::Mutex::new(Some(rows)),
        }
    }
}

/// `load_substrates`/`load_relationships`'s answer: None, or the failed
/// row's index and the error instance.
fn load_answer(
    py: Python<'_>,
    failed: Result<(), (usize, CoreError)>,
) -> PyResult<Option<(usize, Bound<'_, PyAny>)>> {
    match failed {
        Ok(()) => Ok(None),
        Err((i, err)) => Ok(Some((i, error_instance(py, &err)?))),
    }
}

impl Arena {
    /// Runs `f` under the read lock. If the lock is not free at once, the
    /// wait happens with the GIL released: no thread ever waits for the
    /// arena's lock while holding the GIL, so lock and GIL cannot deadlock,
    /// and a long writer does not stall every other Python thread.
    fn with_read<R: Send>(&self, py: Python<'_>, f: impl FnOnce(&CoreArena) -> R + Send) -> R {
        if let Some(guard) = self.inner.try_read() {
            return f(&guard);
        }
        py.detach(|| f(&self.inner.read()))
    }

    /// A page of one adjacency direction (`list` is `CoreArena::outgoing` or
    /// `CoreArena::incoming`), listed with the GIL released.
    fn neighbours<'py>(
        &self,
        py: Python<'py>,
        list: Neighbours,
        id: &Bound<'py, PyAny>,
        rel_type: Option<&str>,
        offset: usize,
        limit: Option<usize>,
    ) -> PyResult<(usize, Bound<'py, PyList>)> {
        let (id, rel) = (id_arg(id)?, rel_arg(py, rel_type)?);
        let limit = limit.unwrap_or(usize::MAX);
        let (total, edges) = py
            .detach(|| {
                let arena = self.inner.read();
                list(&arena, id, rel, offset, limit)
                    .map(|(t, page)| (t, page.into_iter().map(EdgeOut::from).collect::<Vec<_>>()))
            })
            .py_err(py)?;
        edges_into_py(py, total, edges)
    }

    /// Like [`Arena::with_read`], under the write lock.
    fn with_write<R: Send>(&self, py: Python<'_>, f: impl FnOnce(&mut CoreArena) -> R + Send) -> R {
        if let Some(mut guard) = self.inner.try_write() {
            return f(&mut guard);
        }
        py.detach(|| f(&mut self.inner.write()))
    }
}

#[pymethods]
impl Arena {
    #[new]
    #[pyo3(signature = (substrates = 0, relationships = 0))]
    fn new(substrates: usize, relationships: usize) -> Self {
        Arena {
            inner: RwLock::new(CoreArena::with_capacity(substrates, relationships)),
        }
    }

    /// Rebuilds an arena from bytes made by `dump()`.
    #[staticmethod]
    fn from_dump(py: Python<'_>, data: &[u8]) -> PyResult<Self> {
        // `bytes` are immutable and the caller holds them: read them in place.
        let arena = py.detach(|| dump::load(data)).py_err(py)?;
        Ok(Arena {
            inner: RwLock::new(arena),
        })
    }

    fn dump<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        let bytes = py.detach(|| dump::dump(&self.inner.read()));
        PyBytes::new(py, &bytes)
    }

    /// Loads the dump that fills `path` from byte `offset` to its end, streaming (an
    /// image in two streams at once, `dump::load_file`): no copy of the dump is held
    /// beside the arena it builds.
    #[staticmethod]
    #[pyo3(signature = (path, offset = 0))]
    fn load_file(py: Python<'_>, path: PathBuf, offset: u64) -> PyResult<Self> {
        let arena = py.detach(move || -> PyResult<Result<CoreArena, CoreError>> {
            let file = File::open(&path)?;
            let len = file.metadata()?.len().saturating_sub(offset);
            Ok(load_file(file, offset, len))
        })?;
        Ok(Arena {
            inner: RwLock::new(arena.py_err(py)?),
        })
    }

    /// Appends the dump to `path` (created if missing, so a caller can write its
    /// own header first), streaming, and syncs the file to disk.
    fn dump_file(&self, py: Python<'_>, path: PathBuf) -> PyResult<()> {
        py.detach(|| -> std::io::Result<()> {
            let file = OpenOptions::new().create(true).append(true).open(&path)?;
            // dump_to writes through its own 1 MiB buffer.
            dump::dump_to(&self.inner.read(), &file)?;
            file.sync_all()
        })?;
        Ok(())
    }

    fn __len__(&self, py: Python<'_>) -> usize {
        self.with_read(py, CoreArena::len)
    }

    fn __contains__(&self, py: Python<'_>, id: &Bound<'_, PyAny>) -> PyResult<bool> {
        let id = id_arg(id)?;
        Ok(self.with_read(py, |a| a.contains(id)))
    }

    #[getter]
    fn relationship_count(&self, py: Python<'_>) -> usize {
        self.with_read(py, CoreArena::edge_count)
    }

    #[pyo3(signature = (expression_type, code, canonical, metadata = b"".as_slice(), created_at = None, expected_id = None))]
    #[allow(clippy::too_many_arguments)] // the Python signature
    fn insert(
        &self,
        py: Python<'_>,
        expression_type: &str,
        code: &str,
        canonical: &str,
        metadata: &[u8],
        created_at: Option<i64>,
        expected_id: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<u64> {
        let record = NewSubstrate {
            expr_type: ExprType::parse(expression_type).py_err(py)?,
            code,
            canonical,
            metadata,
            created_at: created_at.unwrap_or_else(now_micros),
            expected_id: opt_id_arg(expected_id)?,
        };
        let result = self.with_write(py, |a| a.insert(&record));
        result.py_err(py)
    }

    /// Items are `(expression_type, code, canonical, metadata, created_at,
    /// expected_id)` tuples (the last two may be None). Returns the list of
    /// ids or error instances in input order, and whether anything was
    /// written (with `atomic`, nothing is unless every item can be; with
    /// `dry_run`, nothing is, and the answers say what would happen).
    #[pyo3(signature = (items, atomic = false, dry_run = false))]
    fn insert_many<'py>(
        &self,
        py: Python<'py>,
        items: &Bound<'py, PyAny>,
        atomic: bool,
        dry_run: bool,
    ) -> PyResult<(Bound<'py, PyList>, bool)> {
        let owned = substrate_items(items)?;
        let now = now_micros();
        let (results, written) = py.detach(|| {
            // Items with a bad expression type fail alone; the rest go through.
            let parsed: Vec<Result<OwnedSubstrate, CoreError>> =
                owned.into_iter().map(|item| item.parse(now)).collect();
            let valid: Vec<NewSubstrate<'_>> = parsed
                .iter()
                .filter_map(|p| p.as_ref().ok().map(OwnedSubstrate::as_new))
                .collect();
            let any_invalid = valid.len() != parsed.len();
            let (mut inserted, written) = if dry_run || (atomic && any_invalid) {
                // Report every item's own fate without writing anything.
                (self.inner.read().check_many(&valid), false)
            } else {
                self.inner.write().insert_many(&valid, atomic)
            };
            let mut inserted = inserted.drain(..);
            let results: Vec<Result<u64, CoreError>> = parsed
                .into_iter()
                .map(|p| match p {
                    Ok(_) => inserted.next().expect("one result per valid item"),
                    Err(e) => Err(e),
                })
                .collect();
            (results, written)
        });
        Ok((results_into_py(py, results)?, written))
    }

    /// The record `(id, expression_type, code, canonical, metadata,
    /// created_at_us)`; NotFoundError if absent.
    fn get<'py>(&self, py: Python<'py>, id: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyTuple>> {
        let id = id_arg(id)?;
        let out = self.with_read(py, |a| a.get(id).map(SubstrateOut::from));
        match out {
            Some(record) => record.into_py(py),
            None => Err(not_found(py, Kind::Substrate, id)),
        }
    }

    /// The record of `get` as the API's JSON (`SubstrateRecord`), with
    /// `invocations` as its count: what a `GET /substrates/{id}` answers.
    fn get_json<'py>(
        &self,
        py: Python<'py>,
        id: &Bound<'py, PyAny>,
        invocations: u64,
    ) -> PyResult<Bound<'py, PyBytes>> {
        let id = id_arg(id)?;
        let out = self.with_read(py, |a| a.get(id).map(|v| substrate_json(&v, invocations)));
        match out {
            Some(json) => Ok(PyBytes::new(py, &json)),
            None => Err(not_found(py, Kind::Substrate, id)),
        }
    }

    /// Like `get`, but None when absent.
    fn find<'py>(
        &self,
        py: Python<'py>,
        id: &Bound<'py, PyAny>,
    ) -> PyResult<Option<Bound<'py, PyTuple>>> {
        let id = id_arg(id)?;
        let out = self.with_read(py, |a| a.get(id).map(SubstrateOut::from));
        out.map(|r| r.into_py(py)).transpose()
    }

    fn get_many<'py>(
        &self,
        py: Python<'py>,
        ids: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyList>> {
        let ids = ids
            .try_iter()?
            .map(|i| id_arg(&i?))
            .collect::<PyResult<Vec<u64>>>()?;
        let found: Vec<Option<SubstrateOut>> = py.detach(|| {
            let arena = self.inner.read();
            ids.iter()
                .map(|&id| arena.get(id).map(SubstrateOut::from))
                .collect()
        });
        let items = found
            .into_iter()
            .map(|f| match f {
                Some(r) => r.into_py(py).map(Bound::into_any),
                None => Ok(py.None().into_bound(py)),
            })
            .collect::<PyResult<Vec<_>>>()?;
        PyList::new(py, items)
    }

    /// Deletes a substrate and its relationships; returns how many
    /// relationships were deleted with it.
    fn remove(&self, py: Python<'_>, id: &Bound<'_, PyAny>) -> PyResult<usize> {
        let id = id_arg(id)?;
        py.detach(|| self.inner.write().remove(id)).py_err(py)
    }

    /// Up to `limit` records with ids above `after`, ascending, and the
    /// cursor of the next page (None at the end).
    #[pyo3(signature = (after = None, limit = 100))]
    fn page<'py>(
        &self,
        py: Python<'py>,
        after: Option<&Bound<'py, PyAny>>,
        limit: usize,
    ) -> PyResult<(Bound<'py, PyList>, Option<u64>)> {
        let after = opt_id_arg(after)?;
        let (records, next) = py.detach(|| {
            let arena = self.inner.read();
            let (ids, next) = arena.page(after, limit);
            let records: Vec<SubstrateOut> = ids
                .iter()
                .filter_map(|&id| arena.get(id).map(SubstrateOut::from))
                .collect();
            (records, next)
        });
        Ok((records_into_py(py, records)?, next))
    }

    /// Up to `limit` records in storage order from position `position`, and
    /// the position to continue from (None at the end): for full scans.
    #[pyo3(signature = (position = 0, limit = 1000))]
    fn scan<'py>(
        &self,
        py: Python<'py>,
        position: usize,
        limit: usize,
    ) -> PyResult<(Bound<'py, PyList>, Option<usize>)> {
        let (records, next) = py.detach(|| {
            let arena = self.inner.read();
            let (views, next) = arena.scan(position, limit);
            (
                views
                    .into_iter()
                    .map(SubstrateOut::from)
                    .collect::<Vec<_>>(),
                next,
            )
        });
        Ok((records_into_py(py, records)?, next))
    }

    /// Like `scan`, for relationships.
    #[pyo3(signature = (position = 0, limit = 1000))]
    fn scan_edges<'py>(
        &self,
        py: Python<'py>,
        position: usize,
        limit: usize,
    ) -> PyResult<(Bound<'py, PyList>, Option<usize>)> {
        let (edges, next) = py.detach(|| {
            let arena = self.inner.read();
            let (views, next) = arena.scan_edges(position, limit);
            (
                views.into_iter().map(EdgeOut::from).collect::<Vec<_>>(),
                next,
            )
        });
        Ok((edge_list_into_py(py, edges)?, next))
    }

    /// Every substrate id, in storage order.
    fn ids<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let ids: Vec<u64> = py.detach(|| self.inner.read().iter().map(|s| s.id).collect());
        PyList::new(py, ids)
    }

    // ---- relationships ----

    #[pyo3(signature = (rel_type, source, target, bidirectional = false, constraints = b"".as_slice(), created_at = None))]
    #[allow(clippy::too_many_arguments)] // the Python signature
    fn link(
        &self,
        py: Python<'_>,
        rel_type: &str,
        source: &Bound<'_, PyAny>,
        target: &Bound<'_, PyAny>,
        bidirectional: bool,
        constraints: &[u8],
        created_at: Option<i64>,
    ) -> PyResult<u64> {
        let edge = NewEdge {
            rel: RelType::parse(rel_type).py_err(py)?,
            source: id_arg(source)?,
            target: id_arg(target)?,
            bidirectional,
            constraints,
            created_at: created_at.unwrap_or_else(now_micros),
        };
        let result = self.with_write(py, |a| a.link(&edge));
        result.py_err(py)
    }

    /// Items are `(rel_type, source, target, bidirectional, constraints,
    /// created_at)` tuples; answers like `insert_many`.
    #[pyo3(signature = (items, atomic = false, dry_run = false))]
    fn link_many<'py>(
        &self,
        py: Python<'py>,
        items: &Bound<'py, PyAny>,
        atomic: bool,
        dry_run: bool,
    ) -> PyResult<(Bound<'py, PyList>, bool)> {
        let now = now_micros();
        let parsed = edge_items(items, now)?;
        let (results, written) = py.detach(|| {
            let valid: Vec<NewEdge<'_>> = parsed
                .iter()
                .filter_map(|p| p.as_ref().ok().map(OwnedEdge::as_new))
                .collect();
            let any_invalid = valid.len() != parsed.len();
            let (mut linked, written) = if dry_run || (atomic && any_invalid) {
                (self.inner.read().check_links(&valid), false)
            } else {
                self.inner.write().link_many(&valid, atomic)
            };
            let mut linked = linked.drain(..);
            let results: Vec<Result<u64, CoreError>> = parsed
                .iter()
                .map(|p| match p {
                    Ok(_) => linked.next().expect("one result per valid item"),
                    Err(e) => Err(e.clone()),
                })
                .collect();
            (results, written)
        });
        Ok((results_into_py(py, results)?, written))
    }

    /// Makes room in the id indices for this many more records (before a
    /// full load: the indices then never rehash as they grow).
    fn reserve(&self, py: Python<'_>, substrates: usize, relationships: usize) {
        py.detach(|| self.inner.write().reserve(substrates, relationships));
    }

    /// A full load's substrate rows, as a store reads them:
    /// `(expression_type, code, canonical, metadata or None, created_at, id)`,
    /// the id the stored signed 64-bit integer. Loads them in order up to the
    /// first that cannot be loaded; answers None, or `(its index, the error
    /// instance)` (a row of the wrong shape: ValidationError). The core's work
    /// runs with the GIL released.
    fn load_substrates<'py>(
        &self,
        py: Python<'py>,
        rows: &Bound<'py, PyAny>,
    ) -> PyResult<Option<(usize, Bound<'py, PyAny>)>> {
        let items = match substrate_rows(rows)? {
            Ok(items) => items,
            Err((i, err)) => return Ok(Some((i, err.into_value(py).into_bound(py).into_any()))),
        };
        let failed = py.detach(|| {
            let new: Vec<NewSubstrate<'_>> = items.iter().map(OwnedSubstrate::as_new).collect();
            self.inner.write().load_substrates(&new)
        });
        load_answer(py, failed)
    }

    /// A full load's relationship rows: `(rel_type, source, target,
    /// bidirectional, constraints or None, created_at)`, the ids the stored
    /// signed 64-bit integers; answers like `load_substrates`.
    fn load_relationships<'py>(
        &self,
        py: Python<'py>,
        rows: &Bound<'py, PyAny>,
    ) -> PyResult<Option<(usize, Bound<'py, PyAny>)>> {
        let items = match edge_rows(rows)? {
            Ok(items) => items,
            Err((i, err)) => return Ok(Some((i, err.into_value(py).into_bound(py).into_any()))),
        };
        let failed = py.detach(|| {
            let new: Vec<NewEdge<'_>> = items.iter().map(OwnedEdge::as_new).collect();
            self.inner.write().load_edges(&new)
        });
        load_answer(py, failed)
    }

    /// A full load read by the core straight from a SQLite database
    /// (`sqlite_load`), through the SQLite library of Python's `_sqlite3`
    /// module at `module`, in a read transaction whose head must be `seq`.
    /// Answers None once every row is loaded, or why it did not load them: the
    /// arena is then empty again, for the Python path to fill.
    #[allow(clippy::too_many_arguments)]
    fn load_sqlite(
        &self,
        py: Python<'_>,
        module: &str,
        database: &str,
        seq_query: &str,
        substrates_query: &str,
        relationships_query: &str,
        seq: i64,
        busy_ms: i32,
    ) -> PyResult<Option<String>> {
        let (Ok(module), Ok(database)) = (CString::new(module), CString::new(database)) else {
            return Ok(Some("a path holds a NUL".to_owned()));
        };
        let queries = sqlite_load::Queries {
            seq: seq_query,
            substrates: substrates_query,
            relationships: relationships_query,
        };
        Ok(py.detach(|| {
            let mut arena = self.inner.write();
            match sqlite_load::load(&mut arena, &module, &database, &queries, seq, busy_ms) {
                Ok(_) => None,
                Err(sqlite_load::Fallback(why)) => {
                    *arena = CoreArena::new();
                    Some(why)
                }
            }
        }))
    }

    /// What `insert_many` would answer for each item, and a handle on the items
    /// that passed, converted and with their ids computed, for [`Arena::apply`]
    /// (the engine's write: check, commit, apply, converting and hashing once).
    /// Writes nothing.
    fn check_insert_many<'py>(
        &self,
        py: Python<'py>,
        items: &Bound<'py, PyAny>,
    ) -> PyResult<(Bound<'py, PyList>, Prepared)> {
        let owned = substrate_items(items)?;
        let now = now_micros();
        let (results, keep) = py.detach(|| {
            let parsed: Vec<Result<OwnedSubstrate, CoreError>> =
                owned.into_iter().map(|item| item.parse(now)).collect();
            let checked = {
                let valid: Vec<NewSubstrate<'_>> = parsed
                    .iter()
                    .filter_map(|p| p.as_ref().ok().map(OwnedSubstrate::as_new))
                    .collect();
                self.inner.read().check_many(&valid)
            };
            merge_checked(parsed, checked)
        });
        let prepared = Prepared::new(PreparedRows::Substrates(keep));
        Ok((results_into_py(py, results)?, prepared))
    }

    /// Like `check_insert_many`, for `link_many` items.
    fn check_link_many<'py>(
        &self,
        py: Python<'py>,
        items: &Bound<'py, PyAny>,
    ) -> PyResult<(Bound<'py, PyList>, Prepared)> {
        let now = now_micros();
        let parsed = edge_items(items, now)?;
        let (results, keep) = py.detach(|| {
            let checked = {
                let valid: Vec<NewEdge<'_>> = parsed
                    .iter()
                    .filter_map(|p| p.as_ref().ok().map(OwnedEdge::as_new))
                    .collect();
                self.inner.read().check_links(&valid)
            };
            merge_checked(parsed, checked)
        });
        let prepared = Prepared::new(PreparedRows::Edges(keep));
        Ok((results_into_py(py, results)?, prepared))
    }

    /// Applies a check's rows, once: those before input position `upto` (all by
    /// default), under the ids the check computed. Answers per applied row (an
    /// error only if the arena changed since the check).
    #[pyo3(signature = (prepared, upto = None))]
    fn apply<'py>(
        &self,
        py: Python<'py>,
        prepared: &Prepared,
        upto: Option<usize>,
    ) -> PyResult<Bound<'py, PyList>> {
        let rows = prepared.rows.lock().take().ok_or_else(|| {
            pyo3::exceptions::PyValueError::new_err("these rows were applied already")
        })?;
        let upto = upto.unwrap_or(usize::MAX);
        let results = py.detach(|| {
            let mut arena = self.inner.write();
            match &rows {
                PreparedRows::Substrates(items) => items
                    .iter()
                    .take_while(|(i, _, _)| *i < upto)
                    .map(|(_, id, row)| arena.insert_checked(*id, &row.as_new()).map(|()| *id))
                    .collect::<Vec<_>>(),
                PreparedRows::Edges(items) => items
                    .iter()
                    .take_while(|(i, _, _)| *i < upto)
                    .map(|(_, rid, e)| arena.link_checked(*rid, &e.as_new()).map(|()| *rid))
                    .collect(),
            }
        });
        results_into_py(py, results)
    }

    fn unlink(&self, py: Python<'_>, rid: &Bound<'_, PyAny>) -> PyResult<()> {
        let rid = id_arg(rid)?;
        let result = self.with_write(py, |a| a.unlink(rid));
        result.py_err(py)
    }

    /// The relationship `(id, rel_type, source, target, bidirectional,
    /// constraints, created_at_us)`; NotFoundError if absent.
    fn edge<'py>(&self, py: Python<'py>, rid: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyTuple>> {
        let rid = id_arg(rid)?;
        let out = self.with_read(py, |a| a.edge(rid).map(EdgeOut::from));
        match out {
            Some(e) => e.into_py(py),
            None => Err(not_found(py, Kind::Relationship, rid)),
        }
    }

    /// `(total, page)` of the relationships leaving a substrate.
    #[pyo3(signature = (id, rel_type = None, offset = 0, limit = None))]
    fn outgoing<'py>(
        &self,
        py: Python<'py>,
        id: &Bound<'py, PyAny>,
        rel_type: Option<&str>,
        offset: usize,
        limit: Option<usize>,
    ) -> PyResult<(usize, Bound<'py, PyList>)> {
        self.neighbours(py, CoreArena::outgoing, id, rel_type, offset, limit)
    }

    /// `(total, page)` of the relationships arriving at a substrate.
    #[pyo3(signature = (id, rel_type = None, offset = 0, limit = None))]
    fn incoming<'py>(
        &self,
        py: Python<'py>,
        id: &Bound<'py, PyAny>,
        rel_type: Option<&str>,
        offset: usize,
        limit: Option<usize>,
    ) -> PyResult<(usize, Bound<'py, PyList>)> {
        self.neighbours(py, CoreArena::incoming, id, rel_type, offset, limit)
    }

    /// `(total, page)` of relationships by type, stored source and target.
    #[pyo3(signature = (rel_type = None, source = None, target = None, offset = 0, limit = None))]
    fn edges<'py>(
        &self,
        py: Python<'py>,
        rel_type: Option<&str>,
        source: Option<&Bound<'py, PyAny>>,
        target: Option<&Bound<'py, PyAny>>,
        offset: usize,
        limit: Option<usize>,
    ) -> PyResult<(usize, Bound<'py, PyList>)> {
        let rel = rel_arg(py, rel_type)?;
        let (source, target) = (opt_id_arg(source)?, opt_id_arg(target)?);
        let limit = limit.unwrap_or(usize::MAX);
        let (total, edges) = py.detach(|| {
            let arena = self.inner.read();
            let (t, page) = arena.edges_matching(rel, source, target, offset, limit);
            (t, page.into_iter().map(EdgeOut::from).collect::<Vec<_>>())
        });
        edges_into_py(py, total, edges)
    }

    /// Bytes held by each part of the arena (capacity, not just length).
    fn memory<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let m = self.with_read(py, CoreArena::memory);
        let d = PyDict::new(py);
        d.set_item("substrate_records", m.node_records)?;
        d.set_item("substrate_index", m.node_index)?;
        d.set_item("substrate_bytes", m.node_bytes)?;
        d.set_item("relationship_records", m.edge_records)?;
        d.set_item("relationship_index", m.edge_index)?;
        d.set_item("relationship_bytes", m.edge_bytes)?;
        Ok(d)
    }
}

/// Each item's answer in input order — its own parse error, else the arena's check — and
/// the items that passed, with their position and id, to apply after the commit.
#[allow(clippy::type_complexity)]
fn merge_checked<T>(
    parsed: Vec<Result<T, CoreError>>,
    checked: Vec<Result<u64, CoreError>>,
) -> (Vec<Result<u64, CoreError>>, Vec<(usize, u64, T)>) {
    let mut checked = checked.into_iter();
    let (mut results, mut keep) = (Vec::with_capacity(parsed.len()), Vec::new());
    for (index, p) in parsed.into_iter().enumerate() {
        match p {
            Ok(item) => {
                let r = checked.next().expect("one result per valid item");
                if let Ok(id) = r {
                    keep.push((index, id, item));
                }
                results.push(r);
            }
            Err(e) => results.push(Err(e)),
        }
    }
    (results, keep)
}

/// Each stream reads through its own 1 MiB buffer.
#[cfg(unix)]
fn load_file(file: File, offset: u64, len: u64) -> Result<CoreArena, CoreError> {
    dump::load_file(&file, offset, len)
}

#[cfg(not(unix))]
fn load_file(mut file: File, offset: u64, len: u64) -> Result<CoreArena, CoreError> {
    use std::io::{Seek, SeekFrom};
    if let Err(err) = file.seek(SeekFrom::Start(offset)) {
        return Err(CoreError::CorruptDump(format!("read failed: {err}")));
    }
    dump::load_from(file, len)
}
