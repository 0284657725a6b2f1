//! The PyO3 binding layer: `bfx._core`.
//!
//! Thin by design, and split by job:
//!
//! | file | job |
//! |---|---|
//! | `mod.rs` | registers the module: the class, the functions, the constants |
//! | [`errors`] | the one mapping of [`CoreError`](crate::CoreError) onto `bfx.errors` |
//! | [`convert`] | arguments, batch items and records between Python and Rust |
//! | [`arena`] | the `Arena` class and its lock discipline |
//! | [`graph`] | the graph algorithms as functions taking an `Arena` |
//! | [`functions`] | the module functions that need no arena |
//! | [`observe`] | the request counters and access-log lines of the HTTP service |
//! | [`numeric`] | the sandbox's fast path: numbers in, a compiled expression called, a number out |
//!
//! The binding files use `errors` and `convert`; `graph` also names the
//! `Arena` class it takes. Nothing else crosses between them, and nothing
//! outside this directory imports pyo3.
//!
//! Each call converts its Python arguments to Rust values, does the work
//! (with the GIL released where it can take more than a few microseconds),
//! and converts the answer back. The arena holds only Rust data.
//!
//! Lock discipline, which rules out deadlocks between the arena's lock and the
//! GIL:
//! * no thread waits for the lock while holding the GIL: long calls release
//!   the GIL first, short ones try the lock and otherwise wait detached
//!   (`Arena::with_read`, `Arena::with_write`);
//! * no Python code runs while the lock is held: results are copied out, the
//!   lock is released, and only then are Python objects (and exceptions, whose
//!   constructors are Python code that may hand the GIL to another thread)
//!   built.

mod arena;
mod convert;
mod errors;
mod functions;
mod graph;
mod numeric;
mod observe;

use pyo3::prelude::*;
use pyo3::types::PyTuple;

use crate::kinds::{ExprType, RelType};

#[pymodule]
#[pyo3(name = "_core")]
fn core_module(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<arena::Arena>()?;
    functions::register(m)?;
    graph::register(m)?;
    numeric::register(m)?;
    observe::register(m)?;
    let rel_types: Vec<&str> = RelType::ALL.iter().map(|t| t.name()).collect();
    m.add("REL_TYPES", PyTuple::new(m.py(), rel_types)?)?;
    let expr_types: Vec<&str> = ExprType::ALL.iter().map(|t| t.name()).collect();
    m.add("EXPRESSION_TYPES", PyTuple::new(m.py(), expr_types)?)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
