//! A compact binary image of a whole arena, for fast restarts.
//!
//! Layout (all integers little-endian):
//! ```text
//! magic "BFXARENA" | version u32 = 1 | substrates u64 | relationships u64
//! per substrate:   id u64 | created_at i64 | invocations u32 | type u8 |
//!                  code_len u32 | canonical_len u32 | metadata_len u32 | bytes
//! per relationship: source u64 | target u64 | type u8 | bidirectional u8 |
//!                  created_at i64 | constraints_len u32 | bytes
//! checksum u64 = XXH3-64 of everything before it
//! ```
//! Loading recomputes every id from the content and checks it, so a dump can
//! neither smuggle in a record under a wrong id nor load half of itself.
//!
//! Both directions stream (`dump_to`, `load_from`) with the checksum computed
//! on the way through: a snapshot of tens of millions of records never exists
//! as one buffer beside the arena it describes, which would double the memory a
//! server needs while it starts or stops.

use std::io::{self, Read, Write};

use xxhash_rust::xxh3::Xxh3;

use crate::arena::{Arena, NewEdge, NewSubstrate};
use crate::error::{CoreError, CoreResult};
use crate::kinds::{ExprType, RelType};

const MAGIC: &[u8; 8] = b"BFXARENA";
const VERSION: u32 = 1;
const HEADER_LEN: u64 = 8 + 4 + 16;
const CHECKSUM_LEN: u64 = 8;
/// The smallest a substrate or relationship record can be, which bounds how
/// many records a dump of a given length can hold.
const MIN_RECORD_LEN: u64 = 33;

/// The dump as one buffer (small arenas, tests, `Arena.dump()`).
pub fn dump(arena: &Arena) -> Vec<u8> {
    let mut out = Vec::with_capacity(32 + arena.len() * 64 + arena.edge_count() * 40);
    dump_to(arena, &mut out).expect("writing to a Vec cannot fail");
    out
}

/// Writes the dump to `out`. Give it a buffered writer: it writes field by field.
pub fn dump_to<W: Write>(arena: &Arena, out: W) -> io::Result<()> {
    let mut w = HashingWriter {
        inner: out,
        hasher: Xxh3::new(),
    };
    w.write_all(MAGIC)?;
    w.write_all(&VERSION.to_le_bytes())?;
    w.write_all(&(arena.len() as u64).to_le_bytes())?;
    w.write_all(&(arena.edge_count() as u64).to_le_bytes())?;
    for s in arena.iter() {
        w.write_all(&s.id.to_le_bytes())?;
        w.write_all(&s.created_at.to_le_bytes())?;
        w.write_all(&s.invocations.to_le_bytes())?;
        w.write_all(&[s.expr_type as u8])?;
        for part in [s.code.as_bytes(), s.canonical.as_bytes(), s.metadata] {
            w.write_all(&(part.len() as u32).to_le_bytes())?;
        }
        for part in [s.code.as_bytes(), s.canonical.as_bytes(), s.metadata] {
            w.write_all(part)?;
        }
    }
    for e in arena.iter_edges() {
        w.write_all(&e.source.to_le_bytes())?;
        w.write_all(&e.target.to_le_bytes())?;
        w.write_all(&[e.rel.index(), u8::from(e.bidirectional)])?;
        w.write_all(&e.created_at.to_le_bytes())?;
        w.write_all(&(e.constraints.len() as u32).to_le_bytes())?;
        w.write_all(e.constraints)?;
    }
    let checksum = w.hasher.digest();
    w.inner.write_all(&checksum.to_le_bytes())?;
    w.inner.flush()
}

struct HashingWriter<W> {
    inner: W,
    hasher: Xxh3,
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

fn corrupt(why: &str) -> CoreError {
    CoreError::CorruptDump(why.to_owned())
}

/// Reads the dump's body field by field, hashing what it reads and refusing to
/// read past the body, so a forged length can neither allocate beyond the
/// dump's real size nor reach into the checksum.
struct Reader<R> {
    inner: R,
    hasher: Xxh3,
    body_left: u64,
}

impl<R: Read> Reader<R> {
    fn fill(&mut self, buf: &mut [u8]) -> CoreResult<()> {
        if buf.len() as u64 > self.body_left {
            return Err(corrupt("truncated"));
        }
        self.inner.read_exact(buf).map_err(read_error)?;
        self.body_left -= buf.len() as u64;
        self.hasher.update(buf);
        Ok(())
    }
    fn array<const N: usize>(&mut self) -> CoreResult<[u8; N]> {
        let mut buf = [0u8; N];
        self.fill(&mut buf)?;
        Ok(buf)
    }
    fn u8(&mut self) -> CoreResult<u8> {
        Ok(self.array::<1>()?[0])
    }
    fn u32(&mut self) -> CoreResult<u32> {
        Ok(u32::from_le_bytes(self.array()?))
    }
    fn u64(&mut self) -> CoreResult<u64> {
        Ok(u64::from_le_bytes(self.array()?))
    }
    /// Reads `len` bytes into `buf`, reusing its allocation.
    fn bytes_into(&mut self, len: u32, buf: &mut Vec<u8>) -> CoreResult<()> {
        if u64::from(len) > self.body_left {
            return Err(corrupt("truncated"));
        }
        buf.clear();
        buf.resize(len as usize, 0);
        self.fill(buf)
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

/// Loads a dump held in memory.
pub fn load(bytes: &[u8]) -> CoreResult<Arena> {
    load_from(bytes, bytes.len() as u64)
}

/// Loads a dump of exactly `len` bytes from `input` (give it a buffered reader).
/// Records are checked as they arrive and the checksum at the end; on any
/// failure the partly built arena is dropped, never returned.
pub fn load_from<R: Read>(mut input: R, len: u64) -> CoreResult<Arena> {
    if len < HEADER_LEN + CHECKSUM_LEN {
        return Err(corrupt("not an arena dump"));
    }
    let mut r = Reader {
        inner: &mut input,
        hasher: Xxh3::new(),
        body_left: len - CHECKSUM_LEN,
    };
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
    let room = (r.body_left / MIN_RECORD_LEN) as usize;
    let mut arena = Arena::with_capacity(
        (substrates as usize).min(room),
        (relationships as usize).min(room),
    );
    let (mut code, mut canonical, mut metadata) = (Vec::new(), Vec::new(), Vec::new());
    // Inside a checksummed dump every record is valid; a record the arena
    // refuses (wrong id, duplicate, missing endpoint) means damage.
    let damaged = |err: CoreError| CoreError::CorruptDump(err.to_string());
    for _ in 0..substrates {
        let id = r.u64()?;
        let created_at = r.u64()? as i64;
        let invocations = r.u32()?;
        let expr_type = ExprType::from_u8(r.u8()?).ok_or_else(|| corrupt("bad expression type"))?;
        let (code_len, canon_len, meta_len) = (r.u32()?, r.u32()?, r.u32()?);
        r.bytes_into(code_len, &mut code)?;
        r.bytes_into(canon_len, &mut canonical)?;
        r.bytes_into(meta_len, &mut metadata)?;
        let record = NewSubstrate {
            expr_type,
            code: utf8(&code)?,
            canonical: utf8(&canonical)?,
            metadata: &metadata,
            created_at,
            expected_id: Some(id),
        };
        arena.restore(&record, invocations).map_err(damaged)?;
    }
    let mut constraints = Vec::new();
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
        r.bytes_into(len, &mut constraints)?;
        arena
            .link(&NewEdge {
                rel,
                source,
                target,
                bidirectional,
                constraints: &constraints,
                created_at,
            })
            .map_err(damaged)?;
    }
    if r.body_left != 0 {
        return Err(corrupt("trailing bytes"));
    }
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
