//! Conversions between Python values and the core's: ids and other
//! arguments in, batch items in (owned, so the GIL can be released while the
//! core works on them), records and answers out.
//!
//! Records are copied out of the arena into the `*Out` types while its lock
//! is held; Python objects are built from them only after the lock is gone.

use std::time::{SystemTime, UNIX_EPOCH};

use pyo3::exceptions::PyTypeError;
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyBytes, PyInt, PyList, PyString, PyTuple};

use super::errors::{error_instance, to_pyerr, validation_error, CoreResultExt};
use crate::arena::{EdgeView, SubstrateView};
pub(crate) use crate::arena::{OwnedEdge, OwnedSubstrate};
use crate::error::{CoreError, CoreResult};
use crate::graph::{Direction, TypeMask};
use crate::identity::parse_id;
use crate::kinds::{ExprType, RelType};

// ---------------------------------------------------------------- arguments

/// An id given as an int in u64 range, or as text in the documented form.
pub(crate) fn id_arg(obj: &Bound<'_, PyAny>) -> PyResult<u64> {
    let py = obj.py();
    if obj.is_exact_instance_of::<PyInt>() {
        // Below 2**63 (most ids) without CPython's byte-by-byte conversion, which
        // its u64 conversion takes for any int of more than one digit.
        let mut overflow = 0;
        // SAFETY: `obj` is a live int and the GIL is held.
        let small = unsafe { ffi::PyLong_AsLongLongAndOverflow(obj.as_ptr(), &raw mut overflow) };
        if overflow == 0 && small >= 0 {
            return Ok(small as u64);
        }
    }
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

/// An optional id: None (or absent) stays None.
pub(crate) fn opt_id_arg(obj: Option<&Bound<'_, PyAny>>) -> PyResult<Option<u64>> {
    obj.filter(|o| !o.is_none()).map(id_arg).transpose()
}

/// An optional relationship type, in any case.
pub(crate) fn rel_arg(py: Python<'_>, name: Option<&str>) -> PyResult<Option<RelType>> {
    name.map(RelType::parse).transpose().py_err(py)
}

/// A walk direction: outgoing, incoming or both.
pub(crate) fn direction_arg(py: Python<'_>, text: &str) -> PyResult<Direction> {
    Direction::parse(text).ok_or_else(|| {
        validation_error(
            py,
            format!("direction must be outgoing, incoming or both, not {text:?}"),
            "direction",
        )
    })
}

/// A relationship-type filter: None is every type.
pub(crate) fn types_arg(py: Python<'_>, names: Option<Vec<String>>) -> PyResult<TypeMask> {
    match names {
        None => Ok(TypeMask::ALL),
        Some(names) => {
            let types = names
                .iter()
                .map(|n| RelType::parse(n))
                .collect::<Result<Vec<_>, CoreError>>()
                .py_err(py)?;
            Ok(TypeMask::new(Some(&types)))
        }
    }
}

/// Now, in microseconds since the Unix epoch: the default `created_at`.
pub(crate) fn now_micros() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0)
}

// ---------------------------------------------------------------- batch items in

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

/// An `insert_many` item, owned and with its id checked, its expression
/// type not yet parsed (that happens with the GIL released, per item).
pub(crate) struct SubstrateIn {
    expr_type: String,
    code: String,
    canonical: String,
    metadata: Vec<u8>,
    created_at: Option<i64>,
    expected_id: Option<u64>,
}

impl SubstrateIn {
    /// The item with its expression type parsed; `now` stands in for a
    /// missing `created_at`.
    pub(crate) fn parse(self, now: i64) -> CoreResult<OwnedSubstrate> {
        Ok(OwnedSubstrate {
            expr_type: ExprType::parse(&self.expr_type)?,
            code: self.code,
            canonical: self.canonical,
            metadata: self.metadata,
            created_at: self.created_at.unwrap_or(now),
            expected_id: self.expected_id,
        })
    }
}

/// The items of `insert_many`: `(expression_type, code, canonical, metadata,
/// created_at, expected_id)` tuples, the last two possibly None.
pub(crate) fn substrate_items(items: &Bound<'_, PyAny>) -> PyResult<Vec<SubstrateIn>> {
    let mut owned = Vec::new();
    for item in items.try_iter()? {
        let item = item?;
        let (expr_type, code, canonical, metadata, created_at, expected): SubstrateItem<'_> =
            item.extract().map_err(|_| {
                PyTypeError::new_err(
                    "each item must be (expression_type, code, canonical, metadata: bytes, created_at, expected_id)",
                )
            })?;
        owned.push(SubstrateIn {
            expr_type,
            code,
            canonical,
            metadata,
            created_at,
            expected_id: opt_id_arg(expected.as_ref())?,
        });
    }
    Ok(owned)
}

/// The items of `link_many`: `(rel_type, source, target, bidirectional,
/// constraints, created_at)` tuples. An item with an unknown type is its own
/// error; `now` stands in for a missing `created_at`.
pub(crate) fn edge_items(
    items: &Bound<'_, PyAny>,
    now: i64,
) -> PyResult<Vec<CoreResult<OwnedEdge>>> {
    let mut parsed = Vec::new();
    for item in items.try_iter()? {
        let item = item?;
        // `bidirectional` is read for its truth, so database rows (0/1) load as-is.
        let (rel, source, target, bidirectional, constraints, created_at): EdgeItem<'_> =
            item.extract().map_err(|_| {
                PyTypeError::new_err(
                    "each item must be (rel_type, source, target, bidirectional, constraints: bytes, created_at)",
                )
            })?;
        let (source, target) = (id_arg(&source)?, id_arg(&target)?);
        let bidirectional = bidirectional.is_truthy()?;
        parsed.push(RelType::parse(&rel).map(|rel| OwnedEdge {
            rel,
            source,
            target,
            bidirectional,
            constraints,
            created_at: created_at.unwrap_or(now),
        }));
    }
    Ok(parsed)
}

// ---------------------------------------------------------------- store rows in

/// What a substrate row of a full load must be.
const SUBSTRATE_ROW: &str = "a stored substrate row must be (expression_type: text, \
expression_code: text, canonical_code: text, metadata: blob or NULL, created_us: integer, \
id: integer)";

/// What a relationship row of a full load must be.
const EDGE_ROW: &str = "a stored relationship row must be (rel_type: text, source_id: integer, \
target_id: integer, bidirectional: integer, constraints: blob or NULL, created_us: integer)";

/// The row's fields, or a ValidationError saying what a row must be.
fn row_fields<'py>(row: &Bound<'py, PyAny>, shape: &str) -> PyResult<Bound<'py, PyTuple>> {
    match row.cast::<PyTuple>() {
        Ok(t) if t.len() == 6 => Ok(t.clone()),
        _ => Err(validation_error(row.py(), shape.to_owned(), "row")),
    }
}

/// A blob column that may be NULL (read as empty).
fn blob_or_null(value: &Bound<'_, PyAny>) -> PyResult<Vec<u8>> {
    if value.is_none() {
        return Ok(Vec::new());
    }
    Ok(value.cast::<PyBytes>()?.as_bytes().to_vec())
}

/// A store's 64-bit id column: the u64 id's two's complement, as stored.
fn stored_id(value: &Bound<'_, PyAny>) -> PyResult<u64> {
    if value.is_instance_of::<PyBool>() {
        return Err(PyTypeError::new_err("an id is an integer"));
    }
    Ok(value.extract::<i64>()? as u64)
}

fn substrate_row(row: &Bound<'_, PyAny>) -> PyResult<OwnedSubstrate> {
    let py = row.py();
    let t = row_fields(row, SUBSTRATE_ROW)?;
    let shape = |_| validation_error(py, SUBSTRATE_ROW.to_owned(), "row");
    let expr_type = t
        .get_item(0)?
        .cast::<PyString>()
        .map_err(|_| shape(()))?
        .to_str()?
        .to_owned();
    let expr_type = ExprType::parse(&expr_type).py_err(py)?;
    Ok(OwnedSubstrate {
        expr_type,
        code: t
            .get_item(1)?
            .cast::<PyString>()
            .map_err(|_| shape(()))?
            .to_str()?
            .to_owned(),
        canonical: t
            .get_item(2)?
            .cast::<PyString>()
            .map_err(|_| shape(()))?
            .to_str()?
            .to_owned(),
        metadata: blob_or_null(&t.get_item(3)?).map_err(|_| shape(()))?,
        created_at: t.get_item(4)?.extract::<i64>().map_err(|_| shape(()))?,
        expected_id: Some(stored_id(&t.get_item(5)?).map_err(|_| shape(()))?),
    })
}

fn edge_row(row: &Bound<'_, PyAny>) -> PyResult<OwnedEdge> {
    let py = row.py();
    let t = row_fields(row, EDGE_ROW)?;
    let shape = |_| validation_error(py, EDGE_ROW.to_owned(), "row");
    let rel = t.get_item(0)?;
    let rel =
        RelType::parse(rel.cast::<PyString>().map_err(|_| shape(()))?.to_str()?).py_err(py)?;
    let bidirectional = t.get_item(3)?;
    if !bidirectional.is_instance_of::<PyInt>() {
        return Err(shape(()));
    }
    Ok(OwnedEdge {
        rel,
        source: stored_id(&t.get_item(1)?).map_err(|_| shape(()))?,
        target: stored_id(&t.get_item(2)?).map_err(|_| shape(()))?,
        bidirectional: bidirectional.is_truthy()?,
        constraints: blob_or_null(&t.get_item(4)?).map_err(|_| shape(()))?,
        created_at: t.get_item(5)?.extract::<i64>().map_err(|_| shape(()))?,
    })
}

/// Rows of a full load, converted until the first that cannot be: then
/// `Err((its index, the exception))`.
pub(crate) fn store_rows<T>(
    rows: &Bound<'_, PyAny>,
    convert: fn(&Bound<'_, PyAny>) -> PyResult<T>,
) -> PyResult<Result<Vec<T>, (usize, PyErr)>> {
    let mut out = Vec::new();
    for (i, row) in rows.try_iter()?.enumerate() {
        match convert(&row?) {
            Ok(item) => out.push(item),
            Err(err) => return Ok(Err((i, err))),
        }
    }
    Ok(Ok(out))
}

pub(crate) fn substrate_rows(
    rows: &Bound<'_, PyAny>,
) -> PyResult<Result<Vec<OwnedSubstrate>, (usize, PyErr)>> {
    store_rows(rows, substrate_row)
}

pub(crate) fn edge_rows(
    rows: &Bound<'_, PyAny>,
) -> PyResult<Result<Vec<OwnedEdge>, (usize, PyErr)>> {
    store_rows(rows, edge_row)
}

// ---------------------------------------------------------------- records out

/// A substrate record copied out of the arena so the lock can be released
/// before Python objects are built.
pub(crate) struct SubstrateOut {
    id: u64,
    expr_type: ExprType,
    code: String,
    canonical: Option<String>,
    metadata: Vec<u8>,
    created_at: i64,
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
        }
    }
}

impl SubstrateOut {
    /// `(id, expression_type, code, canonical, metadata, created_at_us)`;
    /// `canonical` is the very `code` string when they agree.
    pub(crate) fn into_py(self, py: Python<'_>) -> PyResult<Bound<'_, PyTuple>> {
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
        )
            .into_pyobject(py)
    }
}

/// A relationship copied out of the arena.
pub(crate) struct EdgeOut {
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
    /// `(id, rel_type, source, target, bidirectional, constraints,
    /// created_at_us)`.
    pub(crate) fn into_py(self, py: Python<'_>) -> PyResult<Bound<'_, PyTuple>> {
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

/// Substrate records as a list of tuples.
pub(crate) fn records_into_py(
    py: Python<'_>,
    records: Vec<SubstrateOut>,
) -> PyResult<Bound<'_, PyList>> {
    let items = records
        .into_iter()
        .map(|r| r.into_py(py))
        .collect::<PyResult<Vec<_>>>()?;
    PyList::new(py, items)
}

/// Relationships as a list of tuples.
pub(crate) fn edge_list_into_py(
    py: Python<'_>,
    edges: Vec<EdgeOut>,
) -> PyResult<Bound<'_, PyList>> {
    let items = edges
        .into_iter()
        .map(|e| e.into_py(py))
        .collect::<PyResult<Vec<_>>>()?;
    PyList::new(py, items)
}

/// `(total, page)` of relationships.
pub(crate) fn edges_into_py(
    py: Python<'_>,
    total: usize,
    edges: Vec<EdgeOut>,
) -> PyResult<(usize, Bound<'_, PyList>)> {
    Ok((total, edge_list_into_py(py, edges)?))
}

/// A batch's answers in input order: each id, or the error instance for an
/// item that failed.
pub(crate) fn results_into_py<'py>(
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
