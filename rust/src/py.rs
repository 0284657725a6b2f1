//! The PyO3 binding layer: `bfx._core`.
//!
//! Thin by design. Each call converts its Python arguments to Rust values,
//! does the work (with the GIL released where it can take more than a few
//! microseconds), and converts the answer back. The arena holds only Rust
//! data. Core errors become `bfx.errors` classes in [`error_instance`], the
//! one place that maps them.
//!
//! Lock discipline, which rules out deadlocks between the arena's lock and the
//! GIL:
//! * no thread waits for the lock while holding the GIL: long calls release
//!   the GIL first, short ones try the lock and otherwise wait detached
//!   ([`Arena::with_read`], [`Arena::with_write`]);
//! * no Python code runs while the lock is held: results are copied out, the
//!   lock is released, and only then are Python objects (and exceptions, whose
//!   constructors are Python code that may hand the GIL to another thread)
//!   built.

use std::fs::{File, OpenOptions};
use std::io::{Seek, SeekFrom};
use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use parking_lot::RwLock;
use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyBool, PyBytes, PyDict, PyList, PyString, PyTuple};

use crate::arena::{Arena as CoreArena, EdgeView, NewEdge, NewSubstrate, SubstrateView};
use crate::error::CoreError;
use crate::identity::{format_id, parse_id};
use crate::kinds::{ExprType, RelType};
use crate::{dump, identity};

// ---------------------------------------------------------------- errors

static ERRORS_MODULE: PyOnceLock<Py<PyModule>> = PyOnceLock::new();

fn error_class(err: &CoreError) -> &'static str {
    match err {
        CoreError::InvalidId(_) => "InvalidIdError",
        CoreError::NotFound { .. } => "NotFoundError",
        CoreError::Duplicate { .. } => "DuplicateError",
        CoreError::Collision { .. } => "CollisionError",
        CoreError::IdMismatch { .. } | CoreError::InvalidExprType(_) => "ValidationError",
        CoreError::InvalidRelType(_) => "InvalidRelationshipTypeError",
        CoreError::TooLarge(_) => "LimitExceededError",
        CoreError::CorruptDump(_) => "StorageError",
    }
}

fn error_details<'py>(py: Python<'py>, err: &CoreError) -> PyResult<Bound<'py, PyDict>> {
    let details = PyDict::new(py);
    match err {
        CoreError::InvalidId(text) => details.set_item("value", text)?,
        CoreError::NotFound { kind, id } | CoreError::Duplicate { kind, id } => {
            details.set_item(kind.id_field(), format_id(*id))?
        }
        CoreError::Collision { id } => details.set_item("id", format_id(*id))?,
        CoreError::IdMismatch { given, computed } => {
            details.set_item("given", format_id(*given))?;
            details.set_item("computed", format_id(*computed))?;
        }
        CoreError::InvalidRelType(name) => {
            details.set_item("rel_type", name)?;
            let allowed: Vec<&str> = RelType::ALL.iter().map(|t| t.name()).collect();
            details.set_item("allowed", allowed)?;
        }
        CoreError::InvalidExprType(name) => details.set_item("expression_type", name)?,
        CoreError::TooLarge(field) => details.set_item("field", *field)?,
        CoreError::CorruptDump(_) => {}
    }
    Ok(details)
}

/// The `bfx.errors` exception instance for a core error (not raised).
fn error_instance<'py>(py: Python<'py>, err: &CoreError) -> PyResult<Bound<'py, PyAny>> {
    let module =
        ERRORS_MODULE.get_or_try_init(py, || py.import("bfx.errors").map(Bound::unbind))?;
    let class = module.bind(py).getattr(error_class(err))?;
    class.call1((err.to_string(), error_details(py, err)?))
}

pub(crate) fn to_pyerr(py: Python<'_>, err: CoreError) -> PyErr {
    match error_instance(py, &err) {
        Ok(instance) => PyErr::from_value(instance),
        Err(failure) => failure,
    }
}

trait IntoPy<T> {
    fn py_err(self, py: Python<'_>) -> PyResult<T>;
}

impl<T> IntoPy<T> for Result<T, CoreError> {
    fn py_err(self, py: Python<'_>) -> PyResult<T> {
        self.map_err(|e| to_pyerr(py, e))
    }
}

// ---------------------------------------------------------------- arguments

/// An id given as an int in u64 range, or as text in the documented form.
pub(crate) fn id_arg(obj: &Bound<'_, PyAny>) -> PyResult<u64> {
    let py = obj.py();
    if obj.is_instance_of::<PyBool>() {
        return Err(to_pyerr(py, CoreError::InvalidId(obj.repr()?.to_string())));
    }
    if let Ok(id) = obj.extract::<u64>() {
        return Ok(id);
    }
    if let Ok(text) = obj.cast::<PyString>() {
        return parse_id(text.to_str()?).py_err(py);
    }
    Err(to_pyerr(py, CoreError::InvalidId(obj.repr()?.to_string())))
}

fn opt_id_arg(obj: Option<&Bound<'_, PyAny>>) -> PyResult<Option<u64>> {
    obj.filter(|o| !o.is_none()).map(id_arg).transpose()
}

fn rel_arg(py: Python<'_>, name: Option<&str>) -> PyResult<Option<RelType>> {
    name.map(RelType::parse).transpose().py_err(py)
}

fn now_micros() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0)
}

/// `CoreArena::outgoing` or `CoreArena::incoming`.
type Neighbours = for<'a> fn(
    &'a CoreArena,
    u64,
    Option<RelType>,
    usize,
    usize,
) -> Result<(usize, Vec<EdgeView<'a>>), CoreError>;

/// One `insert_many` item as Python hands it in.
type SubstrateItem<'py> = (
    String,
    String,
    String,
    Vec<u8>,
    Option<i64>,
    Option<Bound<'py, PyAny>>,
);

/// `(rel_type, source, target, bidirectional, constraints, created_at)`.
type EdgeItem<'py> = (
    String,
    Bound<'py, PyAny>,
    Bound<'py, PyAny>,
    Bound<'py, PyAny>,
    Vec<u8>,
    Option<i64>,
);

/// A substrate as handed in by a batch call, owned so the GIL can be released.
struct OwnedSubstrate {
    expr_type: ExprType,
    code: String,
    canonical: String,
    metadata: Vec<u8>,
    created_at: i64,
    expected_id: Option<u64>,
}

impl OwnedSubstrate {
    fn as_new(&self) -> NewSubstrate<'_> {
        NewSubstrate {
            expr_type: self.expr_type,
            code: &self.code,
            canonical: &self.canonical,
            metadata: &self.metadata,
            created_at: self.created_at,
            expected_id: self.expected_id,
        }
    }
}

struct OwnedEdgeIn {
    rel: RelType,
    source: u64,
    target: u64,
    bidirectional: bool,
    constraints: Vec<u8>,
    created_at: i64,
}

// ---------------------------------------------------------------- results

/// A record copied out of the arena so the lock can be released before
/// Python objects are built.
struct SubstrateOut {
    id: u64,
    expr_type: ExprType,
    code: String,
    canonical: Option<String>,
    metadata: Vec<u8>,
    created_at: i64,
    invocations: u32,
}

impl From<SubstrateView<'_>> for SubstrateOut {
    fn from(v: SubstrateView<'_>) -> Self {
        SubstrateOut {
            id: v.id,
            expr_type: v.expr_type,
            code: v.code.to_owned(),
            canonical: (v.canonical != v.code).then(|| v.canonical.to_owned()),
            metadata: v.metadata.to_vec(),
            created_at: v.created_at,
            invocations: v.invocations,
        }
    }
}

impl SubstrateOut {
    fn into_py(self, py: Python<'_>) -> PyResult<Bound<'_, PyTuple>> {
        let code = PyString::new(py, &self.code);
        let canonical = match &self.canonical {
            Some(c) => PyString::new(py, c),
            None => code.clone(),
        };
        (
            self.id,
            self.expr_type.name(),
            code,
            canonical,
            PyBytes::new(py, &self.metadata),
            self.created_at,
            self.invocations,
        )
            .into_pyobject(py)
    }
}

struct EdgeOut {
    id: u64,
    rel: RelType,
    source: u64,
    target: u64,
    bidirectional: bool,
    constraints: Vec<u8>,
    created_at: i64,
}

impl From<EdgeView<'_>> for EdgeOut {
    fn from(v: EdgeView<'_>) -> Self {
        EdgeOut {
            id: v.id,
            rel: v.rel,
            source: v.source,
            target: v.target,
            bidirectional: v.bidirectional,
            constraints: v.constraints.to_vec(),
            created_at: v.created_at,
        }
    }
}

impl EdgeOut {
    fn into_py(self, py: Python<'_>) -> PyResult<Bound<'_, PyTuple>> {
        (
            self.id,
            self.rel.name(),
            self.source,
            self.target,
            self.bidirectional,
            PyBytes::new(py, &self.constraints),
            self.created_at,
        )
            .into_pyobject(py)
    }
}

fn edges_into_py(
    py: Python<'_>,
    total: usize,
    edges: Vec<EdgeOut>,
) -> PyResult<(usize, Bound<'_, PyList>)> {
    let items = edges
        .into_iter()
        .map(|e| e.into_py(py))
        .collect::<PyResult<Vec<_>>>()?;
    Ok((total, PyList::new(py, items)?))
}

fn results_into_py<'py>(
    py: Python<'py>,
    results: Vec<Result<u64, CoreError>>,
) -> PyResult<Bound<'py, PyList>> {
    let items = results
        .iter()
        .map(|r| match r {
            Ok(id) => Ok(id.into_pyobject(py)?.into_any()),
            Err(e) => error_instance(py, e),
        })
        .collect::<PyResult<Vec<_>>>()?;
    PyList::new(py, items)
}

// ---------------------------------------------------------------- the class

/// The in-memory substrate arena and relationship store. Thread-safe: reads
/// share a lock, writes take it alone.
#[pyclass(frozen, module = "bfx._core")]
pub struct Arena {
    pub(crate) inner: RwLock<CoreArena>,
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

    /// Loads the dump that fills `path` from byte `offset` to its end, streaming:
    /// no copy of the dump is held beside the arena it builds.
    #[staticmethod]
    #[pyo3(signature = (path, offset = 0))]
    fn load_file(py: Python<'_>, path: PathBuf, offset: u64) -> PyResult<Self> {
        let arena = py.detach(move || -> PyResult<Result<CoreArena, CoreError>> {
            let mut file = File::open(&path)?;
            let len = file.metadata()?.len().saturating_sub(offset);
            file.seek(SeekFrom::Start(offset))?;
            // load_from reads through its own 1 MiB buffer.
            Ok(dump::load_from(file, len))
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
        let mut owned = Vec::new();
        for item in items.try_iter()? {
            let item = item?;
            let (t, code, canonical, metadata, created_at, expected): SubstrateItem<'py> = item.extract().map_err(|_| {
                PyTypeError::new_err(
                    "each item must be (expression_type, code, canonical, metadata: bytes, created_at, expected_id)",
                )
            })?;
            owned.push((
                t,
                code,
                canonical,
                metadata,
                created_at,
                opt_id_arg(expected.as_ref())?,
            ));
        }
        let now = now_micros();
        let (results, written) = py.detach(|| {
            // Items with a bad expression type fail alone; the rest go through.
            let parsed: Vec<Result<OwnedSubstrate, CoreError>> = owned
                .into_iter()
                .map(|(t, code, canonical, metadata, created_at, expected_id)| {
                    Ok(OwnedSubstrate {
                        expr_type: ExprType::parse(&t)?,
                        code,
                        canonical,
                        metadata,
                        created_at: created_at.unwrap_or(now),
                        expected_id,
                    })
                })
                .collect();
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
    /// created_at_us, invocations)`; NotFoundError if absent.
    fn get<'py>(&self, py: Python<'py>, id: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyTuple>> {
        let id = id_arg(id)?;
        let out = self.with_read(py, |a| a.get(id).map(SubstrateOut::from));
        match out {
            Some(record) => record.into_py(py),
            None => Err(to_pyerr(
                py,
                CoreError::NotFound {
                    kind: crate::error::Kind::Substrate,
                    id,
                },
            )),
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
        let items = records
            .into_iter()
            .map(|r| r.into_py(py))
            .collect::<PyResult<Vec<_>>>()?;
        Ok((PyList::new(py, items)?, next))
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
        let items = records
            .into_iter()
            .map(|r| r.into_py(py))
            .collect::<PyResult<Vec<_>>>()?;
        Ok((PyList::new(py, items)?, next))
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
        let items = edges
            .into_iter()
            .map(|e| e.into_py(py))
            .collect::<PyResult<Vec<_>>>()?;
        Ok((PyList::new(py, items)?, next))
    }

    /// Every substrate id, in storage order.
    fn ids<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let ids: Vec<u64> = py.detach(|| self.inner.read().iter().map(|s| s.id).collect());
        PyList::new(py, ids)
    }

    #[pyo3(signature = (id, count = 1))]
    fn record_invocations(
        &self,
        py: Python<'_>,
        id: &Bound<'_, PyAny>,
        count: u32,
    ) -> PyResult<u32> {
        let id = id_arg(id)?;
        let result = self.with_write(py, |a| a.record_invocations(id, count));
        result.py_err(py)
    }

    #[pyo3(signature = (k = 5))]
    fn top_invoked(&self, py: Python<'_>, k: usize) -> Vec<(u64, u32)> {
        py.detach(|| self.inner.read().top_invoked(k))
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
        let mut parsed: Vec<Result<OwnedEdgeIn, CoreError>> = Vec::new();
        for item in items.try_iter()? {
            let item = item?;
            // `bidirectional` is read for its truth, so database rows (0/1) load as-is.
            let (rel, source, target, bidirectional, constraints, created_at): EdgeItem<'py> =
                item.extract().map_err(|_| {
                PyTypeError::new_err(
                    "each item must be (rel_type, source, target, bidirectional, constraints: bytes, created_at)",
                )
            })?;
            let (source, target) = (id_arg(&source)?, id_arg(&target)?);
            let bidirectional = bidirectional.is_truthy()?;
            parsed.push(RelType::parse(&rel).map(|rel| OwnedEdgeIn {
                rel,
                source,
                target,
                bidirectional,
                constraints,
                created_at: created_at.unwrap_or(now),
            }));
        }
        let (results, written) = py.detach(|| {
            let valid: Vec<NewEdge<'_>> = parsed
                .iter()
                .filter_map(|p| p.as_ref().ok())
                .map(|e| NewEdge {
                    rel: e.rel,
                    source: e.source,
                    target: e.target,
                    bidirectional: e.bidirectional,
                    constraints: &e.constraints,
                    created_at: e.created_at,
                })
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
            None => Err(to_pyerr(
                py,
                CoreError::NotFound {
                    kind: crate::error::Kind::Relationship,
                    id: rid,
                },
            )),
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

// ---------------------------------------------------------------- functions

/// The 64-bit id of a substrate: XXH3-64 of `expression_type ‖ 0x00 ‖ canonical`.
#[pyfunction]
fn substrate_id(py: Python<'_>, expression_type: &str, canonical: &str) -> PyResult<u64> {
    Ok(identity::substrate_id(
        ExprType::parse(expression_type).py_err(py)?,
        canonical,
    ))
}

/// The 64-bit id of a relationship: XXH3-64 of `source_le ‖ target_le ‖ TYPE`.
#[pyfunction]
fn relationship_id(
    py: Python<'_>,
    source: &Bound<'_, PyAny>,
    target: &Bound<'_, PyAny>,
    rel_type: &str,
) -> PyResult<u64> {
    let rel = RelType::parse(rel_type).py_err(py)?;
    Ok(identity::relationship_id(
        id_arg(source)?,
        id_arg(target)?,
        rel,
    ))
}

#[pyfunction(name = "format_id")]
fn py_format_id(id: &Bound<'_, PyAny>) -> PyResult<String> {
    Ok(format_id(id_arg(id)?))
}

/// Accepts an int in u64 range or text of 1-16 hex digits (optional 0x).
#[pyfunction(name = "parse_id")]
fn py_parse_id(id: &Bound<'_, PyAny>) -> PyResult<u64> {
    id_arg(id)
}

/// The upper-case name of a relationship type given in any case.
#[pyfunction]
fn normalize_rel_type(py: Python<'_>, name: &str) -> PyResult<&'static str> {
    Ok(RelType::parse(name).py_err(py)?.name())
}

/// Whether a JSON text nests arrays/objects more than `limit` deep (brackets in
/// strings do not count); large texts are scanned with the GIL released.
#[pyfunction]
fn json_nesting_exceeds(py: Python<'_>, text: &[u8], limit: usize) -> bool {
    if text.len() < 1 << 16 {
        return crate::jsondepth::nesting_exceeds(text, limit);
    }
    py.detach(|| crate::jsondepth::nesting_exceeds(text, limit))
}

#[pyfunction]
fn now_us() -> i64 {
    now_micros()
}

#[pymodule]
#[pyo3(name = "_core")]
fn core_module(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Arena>()?;
    m.add_function(wrap_pyfunction!(substrate_id, m)?)?;
    m.add_function(wrap_pyfunction!(relationship_id, m)?)?;
    m.add_function(wrap_pyfunction!(py_format_id, m)?)?;
    m.add_function(wrap_pyfunction!(py_parse_id, m)?)?;
    m.add_function(wrap_pyfunction!(normalize_rel_type, m)?)?;
    m.add_function(wrap_pyfunction!(now_us, m)?)?;
    m.add_function(wrap_pyfunction!(json_nesting_exceeds, m)?)?;
    crate::py_graph::register(m)?;
    let rel_types: Vec<&str> = RelType::ALL.iter().map(|t| t.name()).collect();
    m.add("REL_TYPES", PyTuple::new(m.py(), rel_types)?)?;
    let expr_types: Vec<&str> = ExprType::ALL.iter().map(|t| t.name()).collect();
    m.add("EXPRESSION_TYPES", PyTuple::new(m.py(), expr_types)?)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
