//! A full load read straight from a bfx SQLite database into the arena.
//!
//! Through Python's `sqlite3`, every row of a full load became a tuple of Python
//! objects that the core then took apart again, both under the GIL: most of a
//! full load's time at 1M substrates + 3M relationships. Here the core steps the
//! same queries itself and loads what it reads, with no Python object per row.
//!
//! It calls the very SQLite library Python's `sqlite3` module runs on, found
//! through that module's own shared object (`dlopen` with `RTLD_NOLOAD`, then
//! `dlsym`, which searches the module and the libraries it links). Two copies of
//! SQLite in one process must never open the same database: each keeps its own
//! table of POSIX locks, and one closing its file would drop the other's locks
//! (<https://www.sqlite.org/howtocorrupt.html>, section 2.2.1). So when the module
//! does not expose SQLite's functions (a build that links SQLite in and hides
//! it), this path is not taken at all.
//!
//! Whatever this path does not like — no library, a different head than the
//! caller's snapshot, a row of an unexpected type, a row the arena refuses — it
//! answers as a [`Fallback`] with its reason, having loaded nothing the caller
//! keeps: the caller starts again on the Python path, which reads the same rows
//! and names a bad one precisely.

use std::ffi::{c_char, c_int, c_void, CStr, CString};
use std::ptr;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};

use crate::arena::{Arena, NewEdge, NewSubstrate, OwnedEdge, OwnedSubstrate};
use crate::kinds::{ExprType, RelType};

const SQLITE_OK: c_int = 0;
const SQLITE_ROW: c_int = 100;
const SQLITE_DONE: c_int = 101;
const SQLITE_OPEN_READONLY: c_int = 0x0000_0001;
const SQLITE_OPEN_URI: c_int = 0x0000_0040;
// One thread uses the connection: no mutex around every call (9% of a load's time).
const SQLITE_OPEN_NOMUTEX: c_int = 0x0000_8000;

const INTEGER: c_int = 1;
const TEXT: c_int = 3;
const BLOB: c_int = 4;
const NULL: c_int = 5;

/// Rows in one chunk: read, then handed to the loading thread whole.
const CHUNK: usize = 8192;

/// Why the load was not done here; the caller loads through Python instead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fallback(pub String);

type Result<T> = std::result::Result<T, Fallback>;

fn fallback<T>(why: impl Into<String>) -> Result<T> {
    Err(Fallback(why.into()))
}

enum Db {}
enum Stmt {}

/// The SQLite functions this module uses, from the library Python's runs on.
struct Api {
    open_v2: unsafe extern "C" fn(*const c_char, *mut *mut Db, c_int, *const c_char) -> c_int,
    close_v2: unsafe extern "C" fn(*mut Db) -> c_int,
    busy_timeout: unsafe extern "C" fn(*mut Db, c_int) -> c_int,
    errmsg: unsafe extern "C" fn(*mut Db) -> *const c_char,
    prepare_v2: unsafe extern "C" fn(
        *mut Db,
        *const c_char,
        c_int,
        *mut *mut Stmt,
        *mut *const c_char,
    ) -> c_int,
    step: unsafe extern "C" fn(*mut Stmt) -> c_int,
    finalize: unsafe extern "C" fn(*mut Stmt) -> c_int,
    column_count: unsafe extern "C" fn(*mut Stmt) -> c_int,
    column_type: unsafe extern "C" fn(*mut Stmt, c_int) -> c_int,
    column_int64: unsafe extern "C" fn(*mut Stmt, c_int) -> i64,
    column_text: unsafe extern "C" fn(*mut Stmt, c_int) -> *const u8,
    column_blob: unsafe extern "C" fn(*mut Stmt, c_int) -> *const c_void,
    column_bytes: unsafe extern "C" fn(*mut Stmt, c_int) -> c_int,
}

/// A `dlopen` handle, closed when dropped (the module stays loaded: Python holds it).
struct Library(*mut c_void);

impl Drop for Library {
    fn drop(&mut self) {
        // SAFETY: a handle dlopen gave, closed once.
        unsafe { libc::dlclose(self.0) };
    }
}

impl Library {
    /// The already loaded shared object at `path`; never loads one.
    fn loaded(path: &CStr) -> Result<Self> {
        // SAFETY: a NUL-terminated path; RTLD_NOLOAD only looks the object up.
        let handle = unsafe { libc::dlopen(path.as_ptr(), libc::RTLD_NOLOAD | libc::RTLD_LAZY) };
        if handle.is_null() {
            return fallback("Python's sqlite3 module is not a loaded shared object");
        }
        Ok(Library(handle))
    }

    fn symbol(&self, name: &str) -> Result<*mut c_void> {
        let cname = CString::new(name).expect("symbol names have no NUL");
        // SAFETY: a live handle and a NUL-terminated name.
        let found = unsafe { libc::dlsym(self.0, cname.as_ptr()) };
        if found.is_null() {
            return fallback(format!(
                "Python's sqlite3 module does not expose SQLite's {name} (SQLite built into it)"
            ));
        }
        Ok(found)
    }

    /// SQLite's function `name` as the function pointer type `F`.
    ///
    /// # Safety
    /// `F` must be an `extern "C" fn` type of that function's C signature (sqlite3.h).
    unsafe fn function<F: Copy>(&self, name: &str) -> Result<F> {
        let found = self.symbol(name)?;
        assert_eq!(std::mem::size_of::<F>(), std::mem::size_of::<*mut c_void>());
        // SAFETY: the caller's promise, and a pointer-sized F.
        Ok(unsafe { std::mem::transmute_copy::<*mut c_void, F>(&found) })
    }
}

macro_rules! api {
    ($lib:expr, $($field:ident = $name:literal),+ $(,)?) => {
        Api {
            $(
                // SAFETY: each field's type is the C signature of SQLite's function
                // of that name (sqlite3.h).
                $field: unsafe { $lib.function($name)? },
            )+
        }
    };
}

impl Api {
    fn from(lib: &Library) -> Result<Self> {
        Ok(api!(
            lib,
            open_v2 = "sqlite3_open_v2",
            close_v2 = "sqlite3_close_v2",
            busy_timeout = "sqlite3_busy_timeout",
            errmsg = "sqlite3_errmsg",
            prepare_v2 = "sqlite3_prepare_v2",
            step = "sqlite3_step",
            finalize = "sqlite3_finalize",
            column_count = "sqlite3_column_count",
            column_type = "sqlite3_column_type",
            column_int64 = "sqlite3_column_int64",
            column_text = "sqlite3_column_text",
            column_blob = "sqlite3_column_blob",
            column_bytes = "sqlite3_column_bytes",
        ))
    }
}

/// A read-only connection, closed when dropped.
struct Connection<'a> {
    api: &'a Api,
    db: *mut Db,
}

impl Drop for Connection<'_> {
    fn drop(&mut self) {
        // SAFETY: the connection open_v2 gave; its statements are finalized first
        // (each `Statement` borrows the connection).
        unsafe { (self.api.close_v2)(self.db) };
    }
}

impl<'a> Connection<'a> {
    fn open(api: &'a Api, database: &CStr, busy_ms: c_int) -> Result<Self> {
        let mut db = ptr::null_mut();
        let flags = SQLITE_OPEN_READONLY | SQLITE_OPEN_URI | SQLITE_OPEN_NOMUTEX;
        // SAFETY: a NUL-terminated name and an out pointer; a handle comes back
        // even on failure, closed by the Drop below.
        let rc = unsafe { (api.open_v2)(database.as_ptr(), &mut db, flags, ptr::null()) };
        let conn = Connection { api, db };
        if rc != SQLITE_OK {
            return fallback(format!("cannot open the database: {}", conn.error()));
        }
        // SAFETY: a live connection.
        unsafe { (api.busy_timeout)(db, busy_ms) };
        Ok(conn)
    }

    fn error(&self) -> String {
        if self.db.is_null() {
            return "out of memory".to_owned();
        }
        // SAFETY: errmsg's text lives until the next call on this connection.
        unsafe { CStr::from_ptr((self.api.errmsg)(self.db)) }
            .to_string_lossy()
            .into_owned()
    }

    fn prepare(&self, sql: &str) -> Result<Statement<'_>> {
        let sql = CString::new(sql).map_err(|_| Fallback("a query holds a NUL".to_owned()))?;
        let mut stmt = ptr::null_mut();
        // SAFETY: a live connection, a NUL-terminated query (-1: read to the NUL).
        let rc =
            unsafe { (self.api.prepare_v2)(self.db, sql.as_ptr(), -1, &mut stmt, ptr::null_mut()) };
        if rc != SQLITE_OK || stmt.is_null() {
            return fallback(format!("cannot prepare a query: {}", self.error()));
        }
        Ok(Statement { conn: self, stmt })
    }

    /// Runs `sql` to its end (no rows wanted).
    fn run(&self, sql: &str) -> Result<()> {
        let mut stmt = self.prepare(sql)?;
        while stmt.next()? {}
        Ok(())
    }
}

struct Statement<'c> {
    conn: &'c Connection<'c>,
    stmt: *mut Stmt,
}

impl Drop for Statement<'_> {
    fn drop(&mut self) {
        // SAFETY: the statement prepare_v2 gave, finalized once.
        unsafe { (self.conn.api.finalize)(self.stmt) };
    }
}

impl Statement<'_> {
    /// Steps to the next row: false at the end.
    fn next(&mut self) -> Result<bool> {
        // SAFETY: a live statement.
        match unsafe { (self.conn.api.step)(self.stmt) } {
            SQLITE_ROW => Ok(true),
            SQLITE_DONE => Ok(false),
            _ => fallback(format!("a read failed: {}", self.conn.error())),
        }
    }

    fn columns(&self) -> c_int {
        // SAFETY: a live statement.
        unsafe { (self.conn.api.column_count)(self.stmt) }
    }

    fn kind(&self, col: c_int) -> c_int {
        // SAFETY: a live statement on a row; col < columns() (checked at prepare).
        unsafe { (self.conn.api.column_type)(self.stmt, col) }
    }

    fn int(&self, col: c_int) -> Option<i64> {
        // SAFETY: as `kind`.
        (self.kind(col) == INTEGER).then(|| unsafe { (self.conn.api.column_int64)(self.stmt, col) })
    }

    /// A TEXT column's UTF-8 (valid UTF-8, as Python's `sqlite3` requires).
    fn text(&self, col: c_int) -> Option<&str> {
        if self.kind(col) != TEXT {
            return None;
        }
        // SAFETY: column_text then column_bytes (in that order, as SQLite asks)
        // give the value's bytes, valid until the next step, which needs `&mut self`.
        let bytes = unsafe {
            let data = (self.conn.api.column_text)(self.stmt, col);
            let len = (self.conn.api.column_bytes)(self.stmt, col);
            if data.is_null() {
                &[][..]
            } else {
                std::slice::from_raw_parts(data, len as usize)
            }
        };
        std::str::from_utf8(bytes).ok()
    }

    /// A BLOB column, or NULL read as empty; None for any other type.
    fn blob_or_null(&self, col: c_int) -> Option<&[u8]> {
        match self.kind(col) {
            NULL => Some(&[]),
            BLOB => {
                // SAFETY: as `text`, for a blob (NULL data for an empty one).
                Some(unsafe {
                    let data = (self.conn.api.column_blob)(self.stmt, col).cast::<u8>();
                    let len = (self.conn.api.column_bytes)(self.stmt, col);
                    if data.is_null() {
                        &[][..]
                    } else {
                        std::slice::from_raw_parts(data, len as usize)
                    }
                })
            }
            _ => None,
        }
    }
}

/// The queries of a full load, in the caller's dialect: the head's seq, then
/// `(expression_type, code, canonical, metadata, created_us, id)` rows and
/// `(rel_type, source, target, bidirectional, constraints, created_us)` rows,
/// in the order the Python path reads them (adjacency order follows it).
pub struct Queries<'q> {
    pub seq: &'q str,
    pub substrates: &'q str,
    pub relationships: &'q str,
}

/// What a load read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Loaded {
    pub substrates: usize,
    pub relationships: usize,
}

/// Chunks read ahead of the arena's loading, at most.
const READ_AHEAD: usize = 4;

/// Loads every substrate and relationship of the database at `database` (a URI
/// or path SQLite opens read-only) into `arena`, in one read transaction whose
/// head must be `seq` (the caller's own snapshot). `module` is the path of
/// Python's `_sqlite3` shared object. A thread of its own reads the rows while
/// this one loads them (two cores: the reading and the arena's checks overlap).
/// On a [`Fallback`] the arena may hold part of the rows: the caller empties it.
pub fn load(
    arena: &mut Arena,
    module: &CStr,
    database: &CStr,
    queries: &Queries<'_>,
    seq: i64,
    busy_ms: c_int,
) -> Result<Loaded> {
    let lib = Library::loaded(module)?;
    let api = Api::from(&lib)?;
    let (chunks, arriving) = sync_channel::<Chunk>(READ_AHEAD);
    std::thread::scope(|scope| {
        let reader = std::thread::Builder::new()
            .name("bfx-full-load".to_owned())
            .spawn_scoped(scope, || {
                read(&api, database, queries, seq, busy_ms, chunks)
            })
            .map_err(|e| Fallback(format!("cannot start the reading thread: {e}")))?;
        // Returning drops `arriving`: a reader still sending stops at its next chunk.
        let loaded = apply(arena, arriving);
        let read = reader
            .join()
            .unwrap_or_else(|_| fallback("the reading thread panicked"));
        let loaded = loaded?;
        read?;
        Ok(loaded)
    })
}

enum Chunk {
    Substrates(Vec<OwnedSubstrate>),
    Relationships(Vec<OwnedEdge>),
}

/// Loads the chunks as they arrive, until the reader is done.
fn apply(arena: &mut Arena, arriving: Receiver<Chunk>) -> Result<Loaded> {
    let mut loaded = Loaded {
        substrates: 0,
        relationships: 0,
    };
    for chunk in arriving {
        match chunk {
            Chunk::Substrates(rows) => {
                let new: Vec<NewSubstrate<'_>> = rows.iter().map(OwnedSubstrate::as_new).collect();
                if let Err((i, _)) = arena.load_substrates(&new) {
                    return refused("substrate", loaded.substrates + i);
                }
                loaded.substrates += rows.len();
            }
            Chunk::Relationships(rows) => {
                let new: Vec<NewEdge<'_>> = rows.iter().map(OwnedEdge::as_new).collect();
                if let Err((i, _)) = arena.load_edges(&new) {
                    return refused("relationship", loaded.relationships + i);
                }
                loaded.relationships += rows.len();
            }
        }
    }
    Ok(loaded)
}

/// The reading thread: opens its own connection, checks the head, and sends
/// the rows in chunks.
fn read(
    api: &Api,
    database: &CStr,
    queries: &Queries<'_>,
    seq: i64,
    busy_ms: c_int,
    chunks: SyncSender<Chunk>,
) -> Result<()> {
    let conn = Connection::open(api, database, busy_ms)?;
    conn.run("BEGIN")?;
    let head = {
        let mut stmt = conn.prepare(queries.seq)?;
        if !stmt.next()? {
            return fallback("the database has no head");
        }
        stmt.int(0)
    };
    if head != Some(seq) {
        return fallback(format!(
            "the database moved on between two reads (head {head:?}, expected {seq})"
        ));
    }
    read_rows(
        &conn,
        queries.substrates,
        "substrate",
        substrate_row,
        &chunks,
        Chunk::Substrates,
    )?;
    read_rows(
        &conn,
        queries.relationships,
        "relationship",
        edge_row,
        &chunks,
        Chunk::Relationships,
    )?;
    conn.run("COMMIT")
}

fn refused<T>(kind: &str, at: usize) -> Result<T> {
    fallback(format!("{kind} row {at} is not one this path loads"))
}

/// Reads `sql`'s rows through `convert`, sending them `CHUNK` at a time.
fn read_rows<T>(
    conn: &Connection<'_>,
    sql: &str,
    kind: &str,
    convert: fn(&Statement<'_>) -> Option<T>,
    chunks: &SyncSender<Chunk>,
    wrap: fn(Vec<T>) -> Chunk,
) -> Result<()> {
    let mut stmt = conn.prepare(sql)?;
    if stmt.columns() != 6 {
        return fallback(format!("the {kind} query does not answer 6 columns"));
    }
    let mut rows = Vec::with_capacity(CHUNK);
    let mut read = 0;
    while stmt.next()? {
        match convert(&stmt) {
            Some(row) => rows.push(row),
            None => return refused(kind, read + rows.len()),
        }
        if rows.len() == CHUNK {
            read += rows.len();
            let full = std::mem::replace(&mut rows, Vec::with_capacity(CHUNK));
            if chunks.send(wrap(full)).is_err() {
                return fallback("the loading stopped");
            }
        }
    }
    if !rows.is_empty() && chunks.send(wrap(rows)).is_err() {
        return fallback("the loading stopped");
    }
    Ok(())
}

/// `(expression_type, code, canonical, metadata, created_us, id)`, of the
/// types the Python path takes.
fn substrate_row(stmt: &Statement<'_>) -> Option<OwnedSubstrate> {
    Some(OwnedSubstrate {
        expr_type: ExprType::parse(stmt.text(0)?).ok()?,
        code: stmt.text(1)?.to_owned(),
        canonical: stmt.text(2)?.to_owned(),
        metadata: stmt.blob_or_null(3)?.to_vec(),
        created_at: stmt.int(4)?,
        expected_id: Some(stmt.int(5)? as u64),
    })
}

/// `(rel_type, source, target, bidirectional, constraints, created_us)`.
fn edge_row(stmt: &Statement<'_>) -> Option<OwnedEdge> {
    Some(OwnedEdge {
        rel: RelType::parse(stmt.text(0)?).ok()?,
        source: stmt.int(1)? as u64,
        target: stmt.int(2)? as u64,
        bidirectional: stmt.int(3)? != 0,
        constraints: stmt.blob_or_null(4)?.to_vec(),
        created_at: stmt.int(5)?,
    })
}
