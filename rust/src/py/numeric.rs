//! The sandbox's fast path (`bfx.sandbox.compiled`): a compiled expression
//! called with a flat dict of numbers and answering a number, the checks on
//! both sides made here in one call rather than in a loop of interpreted ones
//! (an invoke's checks cost more than evaluating `x * y`).
//!
//! Anything these functions do not take — a value that is not a plain number,
//! a name the expression does not have, an answer that is not a plain number,
//! any exception the expression raised — is handed back untouched: the caller's
//! general path evaluates it again (expressions are pure) and reports it in full.

use pyo3::exceptions::PyException;
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyDict, PyFloat, PyFrozenSet, PyInt, PyList};

/// `|value| < 2**bits` for an int (the sandbox's `lo < value < hi`).
fn int_fits(value: &Bound<'_, PyAny>, bits: u32) -> PyResult<bool> {
    let mut overflow = 0;
    // SAFETY: `value` is a live int (checked by the caller) and the GIL is held.
    let small = unsafe { ffi::PyLong_AsLongLongAndOverflow(value.as_ptr(), &raw mut overflow) };
    if overflow == 0 {
        if small == -1 && PyErr::occurred(value.py()) {
            return Err(PyErr::fetch(value.py()));
        }
        return Ok(bits >= 64 || small.unsigned_abs() < 1u64 << bits);
    }
    // Past 64 bits: rare, and then the method is fine.
    Ok(value.call_method0("bit_length")?.extract::<u64>()? <= u64::from(bits))
}

/// A parameter the fast variant takes: an int that fits, any float, a bool, None.
fn takes(value: &Bound<'_, PyAny>, bits: u32) -> PyResult<bool> {
    if value.is_exact_instance_of::<PyInt>() {
        return int_fits(value, bits);
    }
    Ok(value.is_exact_instance_of::<PyFloat>()
        || value.is_exact_instance_of::<PyBool>()
        || value.is_none())
}

/// An answer returned as it is: an int that fits, a finite float, a bool, None.
fn returns(value: &Bound<'_, PyAny>, bits: u32) -> PyResult<bool> {
    if value.is_exact_instance_of::<PyInt>() {
        return int_fits(value, bits);
    }
    if let Ok(float) = value.cast_exact::<PyFloat>() {
        return Ok(float.value().is_finite());
    }
    Ok(value.is_exact_instance_of::<PyBool>() || value.is_none())
}

/// Whether `params` is a dict the fast variant takes: at most `max_items` entries,
/// every value taken, every name in `allowed` (when given).
fn flat_numbers<'a, 'py>(
    params: &'a Bound<'py, PyAny>,
    bits: u32,
    max_items: usize,
    allowed: Option<&Bound<'py, PyFrozenSet>>,
) -> PyResult<Option<&'a Bound<'py, PyDict>>> {
    let Ok(dict) = params.cast_exact::<PyDict>() else {
        return Ok(None);
    };
    if dict.len() > max_items {
        return Ok(None);
    }
    for (name, value) in dict.iter() {
        if !takes(&value, bits)? {
            return Ok(None);
        }
        if let Some(allowed) = allowed {
            if !allowed.contains(&name)? {
                return Ok(None);
            }
        }
    }
    Ok(Some(dict))
}

/// The answer of `function`, called with `params` (the dict itself when
/// `by_dict`, else as keywords), when it is returned as it is; None when the call
/// raised an `Exception` (anything else, such as KeyboardInterrupt, propagates).
fn answer<'py>(
    function: &Bound<'py, PyAny>,
    params: &Bound<'py, PyDict>,
    by_dict: bool,
    bits: u32,
) -> PyResult<Option<Bound<'py, PyAny>>> {
    let called = if by_dict {
        function.call1((params,))
    } else {
        function.call((), Some(params))
    };
    match called {
        Ok(result) => Ok(returns(&result, bits)?.then_some(result)),
        Err(err) if err.is_instance_of::<PyException>(function.py()) => Ok(None),
        Err(err) => Err(err),
    }
}

/// `function(params)` for a dict of at most `max_items` numbers whose names are
/// in `allowed` (None: any), when the answer is a number too; `miss` otherwise.
#[pyfunction]
#[pyo3(signature = (function, params, bits, max_items, allowed, miss))]
fn call_numeric<'py>(
    function: &Bound<'py, PyAny>,
    params: &Bound<'py, PyAny>,
    bits: u32,
    max_items: usize,
    allowed: Option<&Bound<'py, PyFrozenSet>>,
    miss: Bound<'py, PyAny>,
) -> PyResult<Bound<'py, PyAny>> {
    if let Some(dict) = flat_numbers(params, bits, max_items, allowed)? {
        if let Some(result) = answer(function, dict, true, bits)? {
            return Ok(result);
        }
    }
    Ok(miss)
}

/// The batch's fast path: from `start`, each item of `batch` that
/// [`call_numeric`] would take is called (with the dict itself when `by_dict`,
/// else as keywords) and its answer appended to `out`; returns the index of the
/// first item it could not take (`len(batch)` when there is none).
#[pyfunction]
#[pyo3(signature = (function, by_dict, batch, start, out, bits, max_items, allowed))]
#[allow(clippy::too_many_arguments)] // the Python signature
fn call_numeric_many(
    function: &Bound<'_, PyAny>,
    by_dict: bool,
    batch: &Bound<'_, PyList>,
    start: usize,
    out: &Bound<'_, PyList>,
    bits: u32,
    max_items: usize,
    allowed: Option<&Bound<'_, PyFrozenSet>>,
) -> PyResult<usize> {
    // The length is read each time round: the expression is sandboxed Python, but
    // nothing here relies on the list keeping its size.
    let mut index = start;
    while index < batch.len() {
        let item = batch.get_item(index)?;
        let Some(dict) = flat_numbers(&item, bits, max_items, allowed)? else {
            break;
        };
        let Some(result) = answer(function, dict, by_dict, bits)? else {
            break;
        };
        out.append(result)?;
        index += 1;
    }
    Ok(index)
}

pub(super) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(call_numeric, m)?)?;
    m.add_function(wrap_pyfunction!(call_numeric_many, m)?)?;
    Ok(())
}
