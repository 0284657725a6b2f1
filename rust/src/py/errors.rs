//! The one place where the core's errors become Python exceptions: each
//! [`CoreError`] variant is mapped, by its type, onto a class of the
//! `bfx.errors` hierarchy, with the details the API reports. The binding's
//! own argument checks (directions, PageRank bounds) go through here too.
//!
//! The classes are looked up by name in `bfx.errors` (imported once), so
//! the Python package stays the owner of the hierarchy.

use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::PyDict;

use crate::error::{CoreError, Kind};
use crate::identity::format_id;
use crate::kinds::RelType;

static ERRORS_MODULE: PyOnceLock<Py<PyModule>> = PyOnceLock::new();

/// The `bfx.errors` class of each core error.
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

/// An instance (not raised) of the `bfx.errors` class `class`.
fn instance<'py>(
    py: Python<'py>,
    class: &str,
    message: String,
    details: Bound<'py, PyDict>,
) -> PyResult<Bound<'py, PyAny>> {
    let module =
        ERRORS_MODULE.get_or_try_init(py, || py.import("bfx.errors").map(Bound::unbind))?;
    module.bind(py).getattr(class)?.call1((message, details))
}

/// The `bfx.errors` exception instance for a core error (not raised): what
/// a batch answers in place of an id for an item that failed.
pub(crate) fn error_instance<'py>(py: Python<'py>, err: &CoreError) -> PyResult<Bound<'py, PyAny>> {
    instance(
        py,
        error_class(err),
        err.to_string(),
        error_details(py, err)?,
    )
}

/// The Python exception for a core error.
pub(crate) fn to_pyerr(py: Python<'_>, err: CoreError) -> PyErr {
    match error_instance(py, &err) {
        Ok(instance) => PyErr::from_value(instance),
        Err(failure) => failure,
    }
}

/// NotFoundError for a substrate or relationship id.
pub(crate) fn not_found(py: Python<'_>, kind: Kind, id: u64) -> PyErr {
    to_pyerr(py, CoreError::NotFound { kind, id })
}

/// `bfx.errors.ValidationError` for a bad argument of the bindings' own
/// (one the core has no error variant for), naming the field.
pub(crate) fn validation_error(py: Python<'_>, message: String, field: &str) -> PyErr {
    let make = || -> PyResult<PyErr> {
        let details = PyDict::new(py);
        details.set_item("field", field)?;
        Ok(PyErr::from_value(instance(
            py,
            "ValidationError",
            message,
            details,
        )?))
    };
    make().unwrap_or_else(|e| e)
}

/// `result.py_err(py)?`: a core result as a Python one.
pub(crate) trait CoreResultExt<T> {
    fn py_err(self, py: Python<'_>) -> PyResult<T>;
}

impl<T> CoreResultExt<T> for Result<T, CoreError> {
    fn py_err(self, py: Python<'_>) -> PyResult<T> {
        self.map_err(|e| to_pyerr(py, e))
    }
}
