//! A file descriptor written by a thread of its own, so that the event loop hands the
//! access log's lines over and goes on: it neither makes the `write` itself nor waits
//! for a reader that is slow or stopped (a pipe nobody drains, a paused terminal, a log
//! collector applying back-pressure). Before this, a full pipe on stderr stopped every
//! request of the worker at its next log write.
//!
//! At most [`HELD_MAX`] bytes wait for the reader; the lines that arrive while that
//! much waits are dropped and counted, and once the writer gets through again it
//! writes a notice of how many (in the log's own format), so the gap is visible where
//! the lines would have been.
//!
//! The thread starts with the first lines handed over, and again in a forked child
//! (threads do not survive a fork; the parent's state is left untouched, since its
//! mutex may have been held at the fork).

use std::io::Write as _;
use std::mem::ManuallyDrop;
use std::os::fd::FromRawFd;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::observe::utc_stamp;

/// Bytes that may wait for a slow reader before lines are dropped.
pub const HELD_MAX: usize = 4 << 20;

/// After each write the thread lets lines gather this long: under load a write carries
/// many passes' lines, and the loop rarely has a sleeping writer to wake.
const GATHER: Duration = Duration::from_millis(5);

/// The writer of one descriptor (borrowed: never closed here).
pub struct LogWriter {
    fd: i32,
    json: bool,
    held_max: usize,
    shared: Option<Arc<Shared>>,
    /// The process that started the thread (a forked child starts its own).
    pid: u32,
}

struct Shared {
    state: Mutex<State>,
    /// The thread waits here for lines.
    wake: Condvar,
    /// [`LogWriter::drain`] waits here for the thread to have written everything.
    written: Condvar,
}

#[derive(Default)]
struct State {
    held: Vec<u8>,
    /// Lines dropped since the last notice.
    dropped: u64,
    /// Lines dropped since the start (tests, figures).
    dropped_total: u64,
    /// The thread is waiting for lines (the next hand-over wakes it).
    idle: bool,
    /// The thread is writing what it took.
    writing: bool,
    /// The writer is gone: the thread writes what is held and ends.
    closed: bool,
}

impl LogWriter {
    pub fn new(fd: i32, json: bool) -> Self {
        Self::with_bound(fd, json, HELD_MAX)
    }

    pub fn with_bound(fd: i32, json: bool, held_max: usize) -> Self {
        LogWriter {
            fd,
            json,
            held_max,
            shared: None,
            pid: 0,
        }
    }

    /// Hands `bytes` (`lines` whole lines) to the thread; drops them, counted, when
    /// more than the bound already waits. Never blocks on the descriptor.
    pub fn submit(&mut self, bytes: &[u8], lines: u64) {
        if bytes.is_empty() {
            return;
        }
        let shared = self.shared();
        let mut state = lock(&shared.state);
        if !state.held.is_empty() && state.held.len() + bytes.len() > self.held_max {
            state.dropped += lines;
            state.dropped_total += lines;
            return;
        }
        state.held.extend_from_slice(bytes);
        if state.idle {
            state.idle = false;
            shared.wake.notify_one();
        }
    }

    /// Waits until everything handed over is written, at most `timeout`; true if it
    /// was (at exit, and for a caller outside an event loop that reads the file next).
    pub fn drain(&self, timeout: Duration) -> bool {
        let Some(shared) = self.live() else {
            return true;
        };
        let deadline = Instant::now() + timeout;
        let mut state = lock(&shared.state);
        while !state.held.is_empty() || state.writing {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            state = shared
                .written
                .wait_timeout(state, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        true
    }

    /// Lines dropped since the start because the reader was behind.
    pub fn dropped(&self) -> u64 {
        self.live().map_or(0, |s| lock(&s.state).dropped_total)
    }

    fn live(&self) -> Option<&Arc<Shared>> {
        self.shared
            .as_ref()
            .filter(|_| self.pid == std::process::id())
    }

    fn shared(&mut self) -> Arc<Shared> {
        let pid = std::process::id();
        if self.pid != pid || self.shared.is_none() {
            // A forked child: the parent's state stays as the fork left it (its mutex may
            // be held by a thread that does not exist here), never touched again.
            if let Some(old) = self.shared.take() {
                std::mem::forget(old);
            }
            let shared = Arc::new(Shared {
                state: Mutex::new(State::default()),
                wake: Condvar::new(),
                written: Condvar::new(),
            });
            let (fd, json, theirs) = (self.fd, self.json, Arc::clone(&shared));
            // Without a thread (none to be had) lines are held up to the bound, then
            // dropped and counted: requests are still never held up.
            let _ = thread::Builder::new()
                .name("bfx-access-log".into())
                .stack_size(256 << 10)
                .spawn(move || run(fd, json, &theirs));
            self.shared = Some(shared);
            self.pid = pid;
        }
        Arc::clone(self.shared.as_ref().expect("set above"))
    }
}

impl Drop for LogWriter {
    fn drop(&mut self) {
        if let Some(shared) = self.live() {
            lock(&shared.state).closed = true;
            shared.wake.notify_one();
        }
    }
}

fn lock(m: &Mutex<State>) -> MutexGuard<'_, State> {
    // A panic while holding it leaves plain bytes and counts behind: still usable.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn run(fd: i32, json: bool, shared: &Shared) {
    // SAFETY: the descriptor is borrowed for the process's life, never closed here.
    let mut file = ManuallyDrop::new(unsafe { std::fs::File::from_raw_fd(fd) });
    let mut batch = Vec::new();
    loop {
        let dropped = {
            let mut state = lock(&shared.state);
            while state.held.is_empty() {
                if state.closed {
                    return;
                }
                state.idle = true;
                state = shared.wake.wait(state).unwrap_or_else(|e| e.into_inner());
            }
            state.idle = false;
            state.writing = true;
            std::mem::swap(&mut batch, &mut state.held);
            std::mem::take(&mut state.dropped)
        };
        // A closed descriptor loses the lines: it must not fail anything.
        let _ = file.write_all(&batch);
        if dropped > 0 {
            let _ = file.write_all(&notice(json, dropped));
        }
        batch.clear();
        if batch.capacity() > 1 << 20 {
            batch = Vec::new(); // a burst's buffer is not kept for ever
        }
        lock(&shared.state).writing = false;
        shared.written.notify_all();
        thread::sleep(GATHER);
    }
}

/// The line that tells of dropped lines, in the log's format.
fn notice(json: bool, dropped: u64) -> Vec<u8> {
    let second = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let stamp = utc_stamp(second);
    if json {
        format!("{{\"ts\":\"{stamp}\",\"dropped_lines\":{dropped}}}\n").into_bytes()
    } else {
        format!(
            "{stamp} bfx: {dropped} access-log lines dropped: the log's reader did not keep up\n"
        )
        .into_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read as _;

    fn pipe() -> (std::fs::File, i32) {
        let mut fds = [0i32; 2];
        // SAFETY: a plain pipe(2) into a two-element array.
        assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
        // SAFETY: both descriptors were just created and are owned here.
        let reader = unsafe { std::fs::File::from_raw_fd(fds[0]) };
        (reader, fds[1])
    }

    #[test]
    fn lines_reach_the_descriptor_in_order() {
        let (mut reader, w) = pipe();
        let mut log = LogWriter::new(w, false);
        log.submit(b"one\n", 1);
        log.submit(b"two\n", 1);
        assert!(log.drain(Duration::from_secs(5)));
        // SAFETY: the write end, closed once drained so that the read ends.
        drop(unsafe { std::fs::File::from_raw_fd(w) });
        let mut text = String::new();
        reader.read_to_string(&mut text).unwrap();
        assert_eq!(text, "one\ntwo\n");
        assert_eq!(log.dropped(), 0);
    }

    #[test]
    fn a_reader_that_stops_costs_lines_not_time() {
        let (mut reader, w) = pipe();
        let mut log = LogWriter::with_bound(w, true, 1 << 16);
        let mut line = vec![b'x'; 99];
        line.push(b'\n');
        let started = Instant::now();
        // Ten times what the pipe and the bound hold, and nobody reading.
        for _ in 0..10_000 {
            log.submit(&line, 1);
        }
        assert!(started.elapsed() < Duration::from_secs(5), "submit waited");
        assert!(!log.drain(Duration::from_millis(50)));
        let dropped = log.dropped();
        assert!(dropped > 5_000, "{dropped}");
        // The reader catches up: everything held arrives whole, with a notice of the
        // lines dropped after each batch the writer took while some were: one notice
        // when the writer first ran after the loop, more when it ran during it (a busy
        // machine), and lines held after the last drop may follow the last notice.
        let reading = thread::spawn(move || {
            let mut text = String::new();
            reader.read_to_string(&mut text).unwrap();
            text
        });
        assert!(log.drain(Duration::from_secs(10)), "not written");
        drop(log);
        // SAFETY: the write end, owned by this test; the writer is gone. Closing it ends
        // the reader's read.
        drop(unsafe { std::fs::File::from_raw_fd(w) });
        let text = reading.join().unwrap();
        let notices: Vec<&str> = text
            .lines()
            .filter(|l| l.contains("dropped_lines"))
            .collect();
        let noticed: u64 = notices
            .iter()
            .map(|l| {
                let n = l.split("\"dropped_lines\":").nth(1).unwrap();
                n.trim_end_matches('}').parse::<u64>().unwrap()
            })
            .sum();
        assert!(!notices.is_empty());
        assert_eq!(noticed, dropped, "{notices:?}");
        assert!(text
            .lines()
            .filter(|l| !l.contains("dropped_lines"))
            .all(|l| l.len() == 99 && l.bytes().all(|b| b == b'x')));
        assert_eq!(
            text.lines().count() as u64,
            10_000 - dropped + notices.len() as u64
        );
    }
}
