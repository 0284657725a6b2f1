//! Per-request bookkeeping of the HTTP service: the request counters behind
//! `GET /metrics` and the Prometheus exposition, and the access log's lines.
//!
//! Both run once for every request on the event loop, where a Python function
//! call alone costs about a thousand instructions; recording a request here is
//! one call from Python and a few hundred instructions in all (two binary
//! searches, a hash lookup, a line formatted into a buffer). The Python side
//! (`bfx.asgi.metrics`, `bfx.asgi.middleware.access_log`) reads the counters
//! out when asked and schedules the buffer's write.

use std::fmt::Write as _;
use std::io::Write as _;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hashbrown::HashMap;
use xxhash_rust::xxh3::Xxh3DefaultBuilder;

use crate::log_writer::LogWriter;

type Map<K, V> = HashMap<K, V, Xxh3DefaultBuilder>;

/// Upper bounds (seconds) of the Prometheus request-duration buckets, the last
/// one infinite: a cached GET answers in tens of microseconds, a heavy batch in
/// seconds.
pub const BUCKETS: [f64; 19] = [
    0.000025,
    0.00005,
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    f64::INFINITY,
];
/// A cell: the bucket counts, then the sum of seconds.
pub const CELL: usize = BUCKETS.len() + 1;
/// The fine histogram's bounds: 116 buckets 15% apart from 10 µs (~100 s).
pub const FINE: usize = 116;

/// The fine histogram's upper bounds, in seconds: 0.01 ms × 1.15^i.
pub fn fine_bounds() -> [f64; FINE] {
    let mut bounds = [0.0; FINE];
    for (i, b) in bounds.iter_mut().enumerate() {
        *b = 0.01 * 1.15f64.powi(i as i32) / 1000.0;
    }
    bounds
}
/// The seconds of the request-rate ring.
pub const WINDOW: usize = 60;
/// The method labels; any other token a client sends is counted as `other`,
/// so that nobody can grow the series without bound.
pub const METHODS: [&str; 8] = [
    "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "other",
];
/// The route id of a request no route matched.
pub const UNMATCHED: u32 = u32::MAX;

/// The monotonic clock Python's `time.perf_counter` reads on Linux
/// (`clock_gettime(CLOCK_MONOTONIC)`), in seconds.
pub fn monotonic() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid pointer to a timespec; CLOCK_MONOTONIC always exists on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9
}

fn method_label(method: &str) -> u8 {
    METHODS[..7].iter().position(|m| *m == method).unwrap_or(7) as u8
}

/// The request counters of one worker.
pub struct Counters {
    fine_bounds: [f64; FINE],
    hist: [u64; FINE + 1],
    ring: [u64; WINDOW],
    ring_sec: i64,
    routes: Map<String, u32>,
    route_names: Vec<String>,
    cells: Map<(u32, u8, u16), [f64; CELL]>,
}

impl Default for Counters {
    fn default() -> Self {
        Self::new(monotonic())
    }
}

/// One Prometheus cell as read out: route (None: unmatched), method label,
/// status, and the bucket counts followed by the sum of seconds.
pub struct Cell<'a> {
    pub route: Option<&'a str>,
    pub method: &'static str,
    pub status: u16,
    pub values: &'a [f64; CELL],
}

impl Counters {
    pub fn new(now: f64) -> Self {
        Counters {
            fine_bounds: fine_bounds(),
            hist: [0; FINE + 1],
            ring: [0; WINDOW],
            ring_sec: now as i64,
            routes: Map::default(),
            route_names: Vec::new(),
            cells: Map::default(),
        }
    }

    fn route_id(&mut self, route: Option<&str>) -> u32 {
        let Some(route) = route else {
            return UNMATCHED;
        };
        if let Some(id) = self.routes.get(route) {
            return *id;
        }
        let id = self.route_names.len() as u32;
        self.route_names.push(route.to_owned());
        self.routes.insert(route.to_owned(), id);
        id
    }

    /// One finished request: its status and time taken (`now` from the
    /// monotonic clock), under its route template and method.
    pub fn record(
        &mut self,
        status: u16,
        elapsed: f64,
        now: f64,
        route: Option<&str>,
        method: &str,
    ) {
        let key = (self.route_id(route), method_label(method), status);
        let cell = self.cells.entry(key).or_insert([0.0; CELL]);
        cell[BUCKETS.partition_point(|b| *b < elapsed)] += 1.0;
        cell[CELL - 1] += elapsed;
        self.hist[self.fine_bounds.partition_point(|b| *b < elapsed)] += 1;
        let sec = now as i64;
        if sec != self.ring_sec {
            self.advance(sec);
        }
        self.ring[sec.rem_euclid(WINDOW as i64) as usize] += 1;
    }

    fn advance(&mut self, sec: i64) {
        // Zero the seconds that passed without traffic (at most the whole ring).
        for s in (self.ring_sec + 1).max(sec - WINDOW as i64 + 1)..=sec {
            self.ring[s.rem_euclid(WINDOW as i64) as usize] = 0;
        }
        self.ring_sec = sec;
    }

    pub fn cells(&self) -> impl Iterator<Item = Cell<'_>> {
        self.cells
            .iter()
            .map(|(&(route, method, status), values)| Cell {
                route: (route != UNMATCHED).then(|| self.route_names[route as usize].as_str()),
                method: METHODS[method as usize],
                status,
                values,
            })
    }

    pub fn hist(&self) -> &[u64] {
        &self.hist
    }

    pub fn ring(&self) -> (&[u64], i64) {
        (&self.ring, self.ring_sec)
    }
}

/// The access log's lines of one event-loop pass, handed in one piece to the
/// descriptor's writing thread ([`LogWriter`]).
pub struct LineBuffer {
    json: bool,
    writer: LogWriter,
    pending: Vec<u8>,
    lines: usize,
    stamp_sec: i64,
    stamp: String,
}

/// Lines held before a write whatever the loop does (a burst in one pass).
pub const BATCH: usize = 256;

/// One access-log line's fields.
pub struct Line<'a> {
    pub client: &'a str,
    pub method: &'a str,
    pub route: &'a str,
    pub status: u16,
    pub seconds: f64,
    pub bytes: u64,
    pub principal: &'a str,
}

impl LineBuffer {
    pub fn new(json: bool, fd: i32) -> Self {
        Self::with_bound(json, fd, crate::log_writer::HELD_MAX)
    }

    /// With at most `held_max` bytes waiting for a slow reader ([`LogWriter`]).
    pub fn with_bound(json: bool, fd: i32, held_max: usize) -> Self {
        LineBuffer {
            json,
            writer: LogWriter::with_bound(fd, json, held_max),
            pending: Vec::with_capacity(1 << 14),
            lines: 0,
            stamp_sec: -1,
            stamp: String::new(),
        }
    }

    /// Adds a line; true when it is the first one held (the caller schedules a
    /// [`flush`](Self::flush) at the end of the loop's pass). A full batch is
    /// written at once.
    pub fn push(&mut self, line: &Line<'_>) -> bool {
        let second = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        if second != self.stamp_sec {
            self.stamp_sec = second;
            self.stamp = utc_stamp(second);
        }
        // Whole microseconds, printed as milliseconds with three decimals.
        let us = (line.seconds * 1e6).round().max(0.0) as u64;
        // Pieces copied in, numbers written digit by digit: `write!` cost several times
        // the rest of the call (callgrind).
        let out = &mut self.pending;
        if self.json {
            out.extend_from_slice(b"{\"ts\":\"");
            out.extend_from_slice(self.stamp.as_bytes());
            out.extend_from_slice(b"\",\"client\":");
            json_str(out, line.client);
            out.extend_from_slice(b",\"method\":");
            json_str(out, line.method);
            out.extend_from_slice(b",\"route\":");
            json_str(out, line.route);
            out.extend_from_slice(b",\"status\":");
            put_u64(out, u64::from(line.status));
            out.extend_from_slice(b",\"duration_ms\":");
            put_millis(out, us);
            out.extend_from_slice(b",\"bytes\":");
            put_u64(out, line.bytes);
            out.extend_from_slice(b",\"principal\":");
            json_str(out, line.principal);
            out.extend_from_slice(b"}\n");
        } else {
            out.extend_from_slice(self.stamp.as_bytes());
            out.push(b' ');
            out.extend_from_slice(line.client.as_bytes());
            out.extend_from_slice(b" \"");
            out.extend_from_slice(line.method.as_bytes());
            out.push(b' ');
            out.extend_from_slice(line.route.as_bytes());
            out.extend_from_slice(b"\" ");
            put_u64(out, u64::from(line.status));
            out.push(b' ');
            put_millis(out, us);
            out.extend_from_slice(b"ms ");
            put_u64(out, line.bytes);
            out.extend_from_slice(b"B ");
            out.extend_from_slice(line.principal.as_bytes());
            out.push(b'\n');
        }
        self.lines += 1;
        if self.lines >= BATCH {
            self.flush();
            return false;
        }
        self.lines == 1
    }

    /// Hands the lines held to the writing thread: no system call here, and no wait
    /// for a slow reader (past the writer's bound they are dropped and counted). A
    /// closed descriptor loses them: it must not fail a request.
    pub fn flush(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        self.writer.submit(&self.pending, self.lines as u64);
        self.pending.clear();
        self.lines = 0;
    }

    /// Waits at most `timeout` for every line handed over to be written.
    pub fn drain(&self, timeout: Duration) -> bool {
        self.writer.drain(timeout)
    }

    /// Lines dropped because the reader was behind.
    pub fn dropped(&self) -> u64 {
        self.writer.dropped()
    }

    /// The bytes held (tests).
    pub fn pending(&self) -> &[u8] {
        &self.pending
    }
}

/// `YYYY-MM-DDTHH:MM:SSZ` of a Unix second (civil date from days: Howard Hinnant's algorithm).
pub fn utc_stamp(second: i64) -> String {
    let days = second.div_euclid(86_400);
    let rem = second.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let mut out = String::with_capacity(20);
    let _ = write!(
        out,
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    );
    out
}

/// `n` in decimal (also the record JSON's writer of ids and counts).
pub(crate) fn put_u64(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
}

/// Microseconds as milliseconds with three decimals (`1.234`).
fn put_millis(out: &mut Vec<u8>, us: u64) {
    put_u64(out, us / 1000);
    let frac = us % 1000;
    out.extend_from_slice(&[
        b'.',
        b'0' + (frac / 100) as u8,
        b'0' + (frac / 10 % 10) as u8,
        b'0' + (frac % 10) as u8,
    ]);
}

fn json_str(out: &mut Vec<u8>, text: &str) {
    out.push(b'"');
    if !text
        .bytes()
        .any(|b| b < 0x20 || b == b'"' || b == b'\\' || b == 0x7f)
    {
        out.extend_from_slice(text.as_bytes());
        out.push(b'"');
        return;
    }
    for &b in text.as_bytes() {
        match b {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            0..=0x1f | 0x7f => {
                let _ = write!(out, "\\u{b:04x}");
            }
            _ => out.push(b),
        }
    }
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_match_known_dates() {
        assert_eq!(utc_stamp(0), "1970-01-01T00:00:00Z");
        assert_eq!(utc_stamp(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(utc_stamp(1_796_083_199), "2026-11-30T23:59:59Z");
    }

    #[test]
    fn a_request_lands_in_its_buckets_cell_and_second() {
        let mut c = Counters::new(100.0);
        c.record(200, 0.00003, 100.5, Some("/a"), "GET");
        c.record(200, 0.00003, 101.5, Some("/a"), "GET");
        c.record(404, 20.0, 101.5, None, "BREW");
        let cells: Vec<_> = c.cells().collect();
        assert_eq!(cells.len(), 2);
        let a = cells.iter().find(|x| x.route == Some("/a")).unwrap();
        assert_eq!(a.values[1], 2.0); // (25 µs, 50 µs]
        assert!((a.values[CELL - 1] - 0.00006).abs() < 1e-12);
        let other = cells.iter().find(|x| x.route.is_none()).unwrap();
        assert_eq!((other.method, other.status), ("other", 404));
        assert_eq!(other.values[BUCKETS.len() - 1], 1.0); // +Inf
        let (ring, sec) = c.ring();
        assert_eq!((ring[100 % WINDOW], ring[101 % WINDOW], sec), (1, 2, 101));
        assert_eq!(c.hist().iter().sum::<u64>(), 3);
    }

    #[test]
    fn lines_escape_json_and_batch() {
        let mut buf = LineBuffer::new(true, -1);
        let line = Line {
            client: "1.2.3.4",
            method: "GET",
            route: "/x\"\n",
            status: 200,
            seconds: 0.0012346,
            bytes: 7,
            principal: "-",
        };
        assert!(buf.push(&line));
        assert!(!buf.push(&line));
        let text = String::from_utf8(buf.pending().to_vec()).unwrap();
        let first: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
        assert_eq!(first["route"], "/x\"\n");
        assert_eq!(first["duration_ms"], 1.235);
        let mut text_buf = LineBuffer::new(false, -1);
        text_buf.push(&Line {
            route: "/r",
            seconds: 12.0000004,
            bytes: 0,
            ..line
        });
        let text = String::from_utf8(text_buf.pending().to_vec()).unwrap();
        assert!(
            text.ends_with(" 1.2.3.4 \"GET /r\" 200 12000.000ms 0B -\n"),
            "{text}"
        );
    }
}
