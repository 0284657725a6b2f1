//! The module functions of `bfx._core` that need no arena: identities, id
//! text, relationship-type names, the clock and stored times as datetimes, the
//! JSON nesting check and the invocation counter's add.

use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyInt, PyString};

use super::convert::{id_arg, now_micros};
use super::errors::CoreResultExt;
use crate::civil::civil_from_micros;
use crate::identity;
use crate::kinds::{ExprType, RelType};

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
fn py_format_id<'py>(id: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyString>> {
    let text = identity::id_text(id_arg(id)?);
    Ok(PyString::new(
        id.py(),
        std::str::from_utf8(&text).unwrap_or_default(),
    ))
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

/// Adds `n` to `counts[key]` (0 when absent) and returns the new count, in one
/// step under the GIL: between the read and the write no Python code runs (the
/// keys are ints, whose hash and comparison are C, and an int count is not
/// tracked by the collector), so threads adding at once lose nothing. Python's
/// `d[k] = d.get(k, 0) + n` may switch threads between the two, and a lock
/// around it cost an invoke more than the rest of the count (`bfx.invocations`).
#[pyfunction]
#[pyo3(signature = (counts, key, n = 1))]
fn add_count(counts: &Bound<'_, PyDict>, key: &Bound<'_, PyAny>, n: u64) -> PyResult<u64> {
    let count = match counts.get_item(key)? {
        Some(value) => value.extract::<u64>()? + n,
        None => n,
    };
    counts.set_item(key, count)?;
    Ok(count)
}

/// Now, in microseconds since the Unix epoch.
#[pyfunction]
fn now_us() -> i64 {
    now_micros()
}

/// `datetime.datetime` and `datetime.timezone.utc`, looked up once.
static DATETIME: PyOnceLock<(Py<PyAny>, Py<PyAny>)> = PyOnceLock::new();

/// Microseconds since the Unix epoch -> an aware UTC `datetime`, clamped to
/// the first or last instant a `datetime` holds (a stored value out of range
/// reads as that, never fails). `datetime`'s own constructor is called with the
/// fields (the limited API has no C constructor to call instead).
#[pyfunction]
fn utc_datetime(py: Python<'_>, us: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
    let us = match us.extract::<i64>() {
        Ok(us) => us,
        // An int past i64 is past either bound: clamped like the rest.
        Err(_) if us.is_instance_of::<PyInt>() => {
            if us.gt(0)? {
                i64::MAX
            } else {
                i64::MIN
            }
        }
        Err(err) => return Err(err),
    };
    let (class, utc) = DATETIME.get_or_try_init(py, || -> PyResult<_> {
        let module = py.import("datetime")?;
        let utc = module.getattr("timezone")?.getattr("utc")?;
        Ok((module.getattr("datetime")?.unbind(), utc.unbind()))
    })?;
    let c = civil_from_micros(us);
    let fields = (
        c.year,
        c.month,
        c.day,
        c.hour,
        c.minute,
        c.second,
        c.microsecond,
        utc.bind(py),
    );
    class.call1(py, fields)
}

pub(super) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(substrate_id, m)?)?;
    m.add_function(wrap_pyfunction!(relationship_id, m)?)?;
    m.add_function(wrap_pyfunction!(py_format_id, m)?)?;
    m.add_function(wrap_pyfunction!(py_parse_id, m)?)?;
    m.add_function(wrap_pyfunction!(normalize_rel_type, m)?)?;
    m.add_function(wrap_pyfunction!(now_us, m)?)?;
    m.add_function(wrap_pyfunction!(utc_datetime, m)?)?;
    m.add_function(wrap_pyfunction!(json_nesting_exceeds, m)?)?;
    m.add_function(wrap_pyfunction!(add_count, m)?)?;
    Ok(())
}
