//! A compact binary image of a whole arena, for fast restarts.
//!
//! Layout (all integers little-endian):
//! ```text
//! magic "BFXARENA" | version u32 = 2 | substrates u64 | relationships u64
//! per substrate:   id u64 | created_at i64 | type u8 |
//!                  code_len u32 | canonical_len u32 | metadata_len u32 | bytes
//! per relationship: source u64 | target u64 | type u8 | bidirectional u8 |
//!                  created_at i64 | constraints_len u32 | bytes
//! checksum u64 = XXH3-64 of everything before it
//! ```
//! Loading recomputes every id from the content and checks it, so a dump can
//! neither smuggle in a record under a wrong id nor load half of itself.
//!
//! Version 1 also held a per-substrate invocation count; the counts left the
//! arena (they are per-process statistics, not records), and a version-1 dump
//! is refused as unsupported before any record is read, so the storage layer
//! falls back to a full load from its database.
//!
//! Files go through `dump_to` / `load_from`, which stream through a 1 MiB buffer
//! with the checksum computed a buffer at a time: a snapshot of tens of
//! millions of records never exists as one buffer beside the arena it
//! describes, which would double the memory a server needs while it starts or
//! stops. `dump` / `load` work on one buffer (the checksum checked before any
//! record is read); both paths share the record writer and parser, and cost the
//! same within the noise (100k substrates + 300k relationships: load 60–78 ms,
//! dump 20–28 ms either way).

use std::io::{self, Read, Write};

use xxhash_rust::xxh3::{xxh3_64, Xxh3};

use crate::arena::{Arena, NewEdge, NewSubstrate};
use crate::error::{CoreError, CoreResult};
use crate::kinds::{ExprType, RelType};

const MAGIC: &[u8; 8] = b"BFXARENA";
/// 2: substrates without the invocation count of version 1.
const VERSION: u32 = 2;
const HEADER_LEN: u64 = 8 + 4 + 16;
const CHECKSUM_LEN: u64 = 8;
/// The smallest a substrate (29 bytes) or relationship (30) record can be,
/// which bounds how many records a dump of a given length can hold.
const MIN_RECORD_LEN: u64 = 29;

/// The dump as one buffer (small arenas, tests, `Arena.dump()`).
pub fn dump(arena: &Arena) -> Vec<u8> {
    let mut out = Vec::with_capacity(32 + arena.len() * 64 + arena.edge_count() * 40);
    write_body(arena, &mut out).expect("writing to a Vec cannot fail");
    let checksum = xxh3_64(&out);
    out.extend_from_slice(&checksum.to_le_bytes());
    out
}

/// Writes the dump to `out`, through its own buffer: records are copied into
/// the buffer field by field and hashed a whole buffer at a time, which keeps
/// the checksum as fast as hashing one big slice.
pub fn dump_to<W: Write>(arena: &Arena, out: W) -> io::Result<()> {
    let mut w = HashingWriter {
        inner: out,
        buf: Vec::with_capacity(BUFFER),
        hasher: Xxh3::new(),
    };
    write_body(arena, &mut w)?;
    w.drain()?;
    let checksum = w.hasher.digest();
    w.inner.write_all(&checksum.to_le_bytes())?;
    w.inner.flush()
}

/// Where a dump's body goes: a `Vec` (hashed once at the end) or a stream.
trait Sink {
    fn put(&mut self, bytes: &[u8]) -> io::Result<()>;
}

impl Sink for Vec<u8> {
    #[inline]
    fn put(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.extend_from_slice(bytes);
        Ok(())
    }
}

fn write_body<S: Sink>(arena: &Arena, w: &mut S) -> io::Result<()> {
    w.put(MAGIC)?;
    w.put(&VERSION.to_le_bytes())?;
    w.put(&(arena.len() as u64).to_le_bytes())?;
    w.put(&(arena.edge_count() as u64).to_le_bytes())?;
    for s in arena.iter() {
        w.put(&s.id.to_le_bytes())?;
        w.put(&s.created_at.to_le_bytes())?;
        w.put(&[s.expr_type as u8])?;
        for part in [s.code.as_bytes(), s.canonical.as_bytes(), s.metadata] {
            w.put(&(part.len() as u32).to_le_bytes())?;
        }
        for part in [s.code.as_bytes(), s.canonical.as_bytes(), s.metadata] {
            w.put(part)?;
        }
    }
    for e in arena.iter_edges() {
        w.put(&e.source.to_le_bytes())?;
        w.put(&e.target.to_le_bytes())?;
        w.put(&[e.rel.index(), u8::from(e.bidirectional)])?;
        w.put(&e.created_at.to_le_bytes())?;
        w.put(&(e.constraints.len() as u32).to_le_bytes())?;
        w.put(e.constraints)?;
    }
    Ok(())
}

/// Bytes moved per read or write of a streamed dump.
const BUFFER: usize = 1 << 20;

struct HashingWriter<W> {
    inner: W,
    buf: Vec<u8>,
    hasher: Xxh3,
}

impl<W: Write> Sink for HashingWriter<W> {
    #[inline]
    fn put(&mut self, bytes: &[u8]) -> io::Result<()> {
        if self.buf.len() + bytes.len() > BUFFER {
            self.drain()?;
            if bytes.len() > BUFFER {
                self.hasher.update(bytes);
                return self.inner.write_all(bytes);
            }
        }
        self.buf.extend_from_slice(bytes);
        Ok(())
    }
}

impl<W: Write> HashingWriter<W> {
    fn drain(&mut self) -> io::Result<()> {
        self.hasher.update(&self.buf);
        self.inner.write_all(&self.buf)?;
        self.buf.clear();
        Ok(())
    }
}

fn corrupt(why: &str) -> CoreError {
    CoreError::CorruptDump(why.to_owned())
}

/// Where a dump's body is read from. `take` hands out the next `len` bytes and
/// refuses to read past the body, so a forged length can neither allocate
/// beyond the dump's real size nor reach into the checksum.
trait Source {
    /// Body bytes not yet handed out.
    fn body_left(&self) -> u64;
    fn take(&mut self, len: u64) -> CoreResult<&[u8]>;

    #[inline(always)]
    fn array<const N: usize>(&mut self) -> CoreResult<[u8; N]> {
        Ok(self.take(N as u64)?.try_into().expect("N bytes"))
    }
    #[inline(always)]
    fn u8(&mut self) -> CoreResult<u8> {
        Ok(self.array::<1>()?[0])
    }
    #[inline(always)]
    fn u32(&mut self) -> CoreResult<u32> {
        Ok(u32::from_le_bytes(self.array()?))
    }
    #[inline(always)]
    fn u64(&mut self) -> CoreResult<u64> {
        Ok(u64::from_le_bytes(self.array()?))
    }
}

/// A body in memory, its checksum already verified.
struct SliceSource<'a> {
    body: &'a [u8],
    at: usize,
}

impl Source for SliceSource<'_> {
    #[inline(always)]
    fn body_left(&self) -> u64 {
        (self.body.len() - self.at) as u64
    }
    #[inline(always)]
    fn take(&mut self, len: u64) -> CoreResult<&[u8]> {
        if len > self.body_left() {
            return Err(corrupt("truncated"));
        }
        let (at, len) = (self.at, len as usize);
        self.at += len;
        Ok(&self.body[at..at + len])
    }
}

/// A body streamed through a buffer, each buffer hashed as it is filled.
struct StreamSource<R> {
    inner: R,
    buf: Box<[u8]>,
    at: usize,
    end: usize,
    hasher: Xxh3,
    /// Body bytes not yet read from `inner`.
    unread: u64,
    /// Where a field that straddles two fills (or outgrows the buffer) is gathered.
    scratch: Vec<u8>,
}

impl<R: Read> StreamSource<R> {
    #[cold]
    #[inline(never)]
    fn gather(&mut self, len: usize) -> CoreResult<&[u8]> {
        let mut scratch = std::mem::take(&mut self.scratch);
        scratch.clear();
        scratch.reserve(len);
        while scratch.len() < len {
            if self.at == self.end {
                let want = (self.buf.len() as u64).min(self.unread) as usize;
                self.inner
                    .read_exact(&mut self.buf[..want])
                    .map_err(read_error)?;
                self.hasher.update(&self.buf[..want]);
                self.unread -= want as u64;
                (self.at, self.end) = (0, want);
            }
            let n = (len - scratch.len()).min(self.end - self.at);
            scratch.extend_from_slice(&self.buf[self.at..self.at + n]);
            self.at += n;
        }
        self.scratch = scratch;
        Ok(&self.scratch)
    }
}

impl<R: Read> Source for StreamSource<R> {
    #[inline(always)]
    fn body_left(&self) -> u64 {
        self.unread + (self.end - self.at) as u64
    }
    #[inline(always)]
    fn take(&mut self, len: u64) -> CoreResult<&[u8]> {
        // The buffer only ever holds body bytes, so a field inside it needs no
        // further bound check.
        let at = self.at;
        if len <= (self.end - at) as u64 {
            self.at += len as usize;
            return Ok(&self.buf[at..self.at]);
        }
        if len > self.body_left() {
            return Err(corrupt("truncated"));
        }
        self.gather(len as usize)
    }
}

fn read_error(err: io::Error) -> CoreError {
    if err.kind() == io::ErrorKind::UnexpectedEof {
        corrupt("truncated")
    } else {
        CoreError::CorruptDump(format!("read failed: {err}"))
    }
}

fn utf8(bytes: &[u8]) -> CoreResult<&str> {
    std::str::from_utf8(bytes).map_err(|_| corrupt("code is not UTF-8"))
}

/// Loads a dump held in memory: the checksum first, then the records.
pub fn load(bytes: &[u8]) -> CoreResult<Arena> {
    if (bytes.len() as u64) < HEADER_LEN + CHECKSUM_LEN {
        return Err(corrupt("not an arena dump"));
    }
    let (body, tail) = bytes.split_at(bytes.len() - CHECKSUM_LEN as usize);
    if xxh3_64(body) != u64::from_le_bytes(tail.try_into().expect("8 bytes")) {
        // Say what it is before calling it damaged.
        if &body[..MAGIC.len()] != MAGIC {
            return Err(corrupt("not an arena dump"));
        }
        return Err(corrupt("checksum mismatch"));
    }
    parse(&mut SliceSource { body, at: 0 })
}

/// Loads a dump of exactly `len` bytes from `input`, streaming through a 1 MiB
/// buffer: records are checked as they arrive and the checksum at the end; on
/// any failure the partly built arena is dropped, never returned.
pub fn load_from<R: Read>(mut input: R, len: u64) -> CoreResult<Arena> {
    if len < HEADER_LEN + CHECKSUM_LEN {
        return Err(corrupt("not an arena dump"));
    }
    let body = len - CHECKSUM_LEN;
    let mut r = StreamSource {
        inner: &mut input,
        buf: vec![0u8; (body as usize).min(BUFFER)].into_boxed_slice(),
        at: 0,
        end: 0,
        hasher: Xxh3::new(),
        unread: body,
        scratch: Vec::new(),
    };
    let arena = parse(&mut r)?;
    let computed = r.hasher.digest();
    let mut stored = [0u8; 8];
    input.read_exact(&mut stored).map_err(read_error)?;
    if computed != u64::from_le_bytes(stored) {
        return Err(corrupt("checksum mismatch"));
    }
    // `len` said where the dump ends; a longer input is not this dump.
    if input.read(&mut [0u8; 1]).map_err(read_error)? != 0 {
        return Err(corrupt("trailing bytes"));
    }
    Ok(arena)
}

/// The records of a dump's body, each checked as the arena takes it.
fn parse<S: Source>(r: &mut S) -> CoreResult<Arena> {
    if &r.array::<8>()? != MAGIC {
        return Err(corrupt("not an arena dump"));
    }
    let version = r.u32()?;
    if version != VERSION {
        return Err(CoreError::CorruptDump(format!(
            "unsupported dump version {version}"
        )));
    }
    let substrates = r.u64()?;
    let relationships = r.u64()?;
    // Counts come from the file: bound the up-front reservation by what the
    // remaining bytes could hold, so a forged count cannot exhaust memory.
    let room = (r.body_left() / MIN_RECORD_LEN) as usize;
    let mut arena = Arena::with_capacity(
        (substrates as usize).min(room),
        (relationships as usize).min(room),
    );
    // Inside a checksummed dump every record is valid; a record the arena
    // refuses (wrong id, duplicate, missing endpoint) means damage.
    let damaged = |err: CoreError| CoreError::CorruptDump(err.to_string());
    for _ in 0..substrates {
        let id = r.u64()?;
        let created_at = r.u64()? as i64;
        let expr_type = ExprType::from_u8(r.u8()?).ok_or_else(|| corrupt("bad expression type"))?;
        let (code_len, canon_len, meta_len) =
            (r.u32()? as usize, r.u32()? as usize, r.u32()? as usize);
        let parts = r.take((code_len + canon_len + meta_len) as u64)?;
        let (code, rest) = parts.split_at(code_len);
        let (canonical, metadata) = rest.split_at(canon_len);
        let record = NewSubstrate {
            expr_type,
            code: utf8(code)?,
            canonical: utf8(canonical)?,
            metadata,
            created_at,
            expected_id: Some(id),
        };
        arena.insert(&record).map_err(damaged)?;
    }
    for _ in 0..relationships {
        let source = r.u64()?;
        let target = r.u64()?;
        let rel = RelType::from_index(r.u8()?).ok_or_else(|| corrupt("bad relationship type"))?;
        let bidirectional = match r.u8()? {
            0 => false,
            1 => true,
            _ => return Err(corrupt("bad bidirectional flag")),
        };
        let created_at = r.u64()? as i64;
        let len = r.u32()?;
        let constraints = r.take(u64::from(len))?;
        arena
            .link(&NewEdge {
                rel,
                source,
                target,
                bidirectional,
                constraints,
                created_at,
            })
            .map_err(damaged)?;
    }
    if r.body_left() != 0 {
        return Err(corrupt("trailing bytes"));
    }
    Ok(arena)
}
