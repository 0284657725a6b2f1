//! `RequestCounters` and `AccessLines`: the per-request bookkeeping of
//! [`crate::observe`], one call from Python per request.

use std::time::Duration;

use pyo3::prelude::*;
use pyo3::types::{PyList, PyString, PyTuple};

use crate::log_writer::HELD_MAX;
use crate::observe::{fine_bounds, monotonic, Counters, Line, LineBuffer, BUCKETS, METHODS};

/// The peer's host from a server's client value (`(host, port)`, a list, or
/// None): `-` when there is none.
fn host_of<'py>(client: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyString>> {
    if client.is_none() || !client.is_truthy()? {
        return Ok(PyString::new(client.py(), "-"));
    }
    let host = client.get_item(0)?;
    match host.cast_into::<PyString>() {
        Ok(text) => Ok(text),
        Err(err) => err.into_inner().str(),
    }
}

/// The request counters of one worker (`bfx.asgi.metrics.RequestMetrics`
/// reads them out).
#[pyclass(module = "bfx._core")]
pub struct RequestCounters {
    inner: Counters,
    /// Requests begun and not yet finished.
    #[pyo3(get)]
    active: i64,
}

impl RequestCounters {
    /// Counts a begun request finished now; its time taken.
    fn finish_now(&mut self, status: u16, started: f64, route: Option<&str>, method: &str) -> f64 {
        self.active -= 1;
        let now = monotonic();
        let elapsed = now - started;
        self.inner.record(status, elapsed, now, route, method);
        elapsed
    }
}

#[pymethods]
impl RequestCounters {
    #[new]
    fn new() -> Self {
        RequestCounters {
            inner: Counters::default(),
            active: 0,
        }
    }

    /// A request begins (the metrics middleware's `enter` hook itself: a call to a
    /// builtin costs a fraction of a Python function's). `call` is not read.
    fn begin(&mut self, call: &Bound<'_, PyAny>) {
        let _ = call;
        self.active += 1;
    }

    /// One finished request, its time given (`now` from `time.perf_counter`).
    #[pyo3(signature = (status, elapsed, now, route = None, method = "GET"))]
    fn record(&mut self, status: u16, elapsed: f64, now: f64, route: Option<&str>, method: &str) {
        self.inner.record(status, elapsed, now, route, method);
    }

    /// A request [`begin`](Self::begin) counted finished now; `started` is its
    /// `time.perf_counter()`.
    fn finish(&mut self, status: u16, started: f64, route: Option<&str>, method: &str) {
        self.finish_now(status, started, route, method);
    }

    /// [`finish`](Self::finish) and the request's access-log line, in one
    /// call; true when the line is the first one `lines` holds (schedule its
    /// flush).
    #[allow(clippy::too_many_arguments)]
    fn finish_logged(
        &mut self,
        status: u16,
        started: f64,
        route: Option<&str>,
        method: &str,
        mut lines: PyRefMut<'_, AccessLines>,
        client: &Bound<'_, PyAny>,
        nbytes: u64,
        principal: &str,
    ) -> PyResult<bool> {
        let elapsed = self.finish_now(status, started, route, method);
        lines.push(
            client,
            method,
            route.unwrap_or("-"),
            status,
            elapsed,
            nbytes,
            principal,
        )
    }

    /// The Prometheus cells: `(route or None, method, status, [bucket counts..., sum])`.
    fn cells<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let out = PyList::empty(py);
        for cell in self.inner.cells() {
            let values: Vec<f64> = cell.values.to_vec();
            out.append(PyTuple::new(
                py,
                [
                    cell.route.into_pyobject(py)?.into_any(),
                    cell.method.into_pyobject(py)?.into_any(),
                    cell.status.into_pyobject(py)?.into_any(),
                    values.into_pyobject(py)?.into_any(),
                ],
            )?)?;
        }
        Ok(out)
    }

    /// The fine histogram's counts (15% buckets from 10 µs; the last unbounded).
    fn hist(&self) -> Vec<u64> {
        self.inner.hist().to_vec()
    }

    /// The last minute's requests per second, and the second last written.
    fn ring(&self) -> (Vec<u64>, i64) {
        let (ring, sec) = self.inner.ring();
        (ring.to_vec(), sec)
    }
}

/// The access log's pending lines, written to a descriptor in one `write`.
#[pyclass(module = "bfx._core")]
pub struct AccessLines {
    inner: LineBuffer,
}

#[pymethods]
impl AccessLines {
    #[new]
    #[pyo3(signature = (json, fd = 2, held_max = HELD_MAX))]
    fn new(json: bool, fd: i32, held_max: usize) -> Self {
        AccessLines {
            inner: LineBuffer::with_bound(json, fd, held_max),
        }
    }

    /// Adds a line; true when it is the first one held (schedule a flush).
    #[allow(clippy::too_many_arguments)]
    #[pyo3(signature = (client, method, route, status, seconds, nbytes, principal = "-"))]
    fn push(
        &mut self,
        client: &Bound<'_, PyAny>,
        method: &str,
        route: &str,
        status: u16,
        seconds: f64,
        nbytes: u64,
        principal: &str,
    ) -> PyResult<bool> {
        let host = host_of(client)?;
        Ok(self.inner.push(&Line {
            client: host.to_str()?,
            method,
            route,
            status,
            seconds,
            bytes: nbytes,
            principal,
        }))
    }

    /// Hands the lines held to the descriptor's writing thread (never waits for the
    /// descriptor; errors are dropped: a closed stderr must not fail a request).
    fn flush(&mut self) {
        self.inner.flush();
    }

    /// Waits at most ``timeout`` seconds (the GIL released) for every line handed
    /// over to be written; true if it was.
    fn drain(&self, py: Python<'_>, timeout: f64) -> bool {
        let wait = Duration::from_secs_f64(timeout.clamp(0.0, 3600.0));
        let inner = &self.inner;
        py.detach(|| inner.drain(wait))
    }

    /// Lines dropped because the descriptor's reader did not keep up.
    #[getter]
    fn dropped(&self) -> u64 {
        self.inner.dropped()
    }
}

pub(super) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    // The bounds the counters record into, for the Python side that reads them out.
    m.add("REQUEST_BUCKETS", PyTuple::new(m.py(), BUCKETS)?)?;
    m.add("REQUEST_FINE_BOUNDS", PyTuple::new(m.py(), fine_bounds())?)?;
    m.add("REQUEST_METHODS", PyTuple::new(m.py(), METHODS)?)?;
    m.add("ACCESS_LOG_HELD_MAX", HELD_MAX)?;
    m.add_class::<RequestCounters>()?;
    m.add_class::<AccessLines>()?;
    Ok(())
}
