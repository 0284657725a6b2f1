//! A compact binary image of a whole arena, for fast restarts.
//!
//! Version 3, written now (all integers little-endian):
//! ```text
//! magic "BFXARENA" | version u32 = 3 |
//! node_slots u64 | node_count u64 | node_free u32 |
//! edge_slots u64 | edge_count u64 | edge_free u32 |
//! node slab: chunks u64, per chunk: len u64 | bytes
//! edge slab: the same
//! per node slot (32 bytes): id u64 | created_at i64 | data u64 | head_out u32 | head_in u32
//! per edge slot (40 bytes): src u32 | dst u32 | next_out u32 | next_in u32 |
//!                           created_at i64 | data u64 | id u64
//! checksum u64 = XXH3-64 of everything before it
//! ```
//! It is the arena as it lies in memory (see `arena.rs`, the arena's image): a load
//! copies the records back and rebuilds the two id indices from the stored ids, so it
//! re-derives nothing the checksum already vouches for (version 2 recomputed every id
//! from the content, looked up both endpoints of every relationship and relinked it:
//! about 60 s for 10M substrates + 30M relationships). What a later read or write
//! relies on not to go out of bounds or loop is still checked, in sequential passes
//! over the nodes on one thread and the edges on another (`ImageBuilder::finish`).
//! Because the image ends with its edge records, at an offset the header gives, a
//! file is read in two streams at once (`load_file`).
//!
//! Version 2 (still read; a record per substrate and relationship, ids re-verified):
//! ```text
//! magic "BFXARENA" | version u32 = 2 | substrates u64 | relationships u64
//! per substrate:   id u64 | created_at i64 | type u8 |
//!                  code_len u32 | canonical_len u32 | metadata_len u32 | bytes
//! per relationship: source u64 | target u64 | type u8 | bidirectional u8 |
//!                  created_at i64 | constraints_len u32 | bytes
//! checksum u64 = XXH3-64 of everything before it
//! ```
//! Version 1 also held a per-substrate invocation count; the counts left the
//! arena (they are per-process statistics, not records), and a version-1 dump
//! is refused as unsupported before any record is read, so the storage layer
//! falls back to a full load from its database.
//!
//! Files go through `dump_to` / `load_from` (and `load_file`, an image's two
//! streams), which stream through a 1 MiB buffer each with the checksum computed a
//! buffer at a time: a snapshot of tens of millions of records never exists as one
//! buffer beside the arena it describes, which would double the memory a server
//! needs while it starts or stops. `dump` / `load` work on one buffer (the checksum
//! checked before any record is read); all paths share the record writer and parser.

#[cfg(unix)]
use std::fs::File;
use std::io::{self, Read, Write};

use xxhash_rust::xxh3::{xxh3_64, Xxh3};

#[cfg(unix)]
use crate::arena::EdgePart;
use crate::arena::{Arena, ImageBuilder, ImageHeader, NewEdge, NewSubstrate, RawEdge, RawNode};
use crate::error::{CoreError, CoreResult};
use crate::kinds::{ExprType, RelType};

const MAGIC: &[u8; 8] = b"BFXARENA";
/// 3: the arena's image; 2: a record per substrate and relationship, without the
/// invocation count of version 1 (still read).
const VERSION: u32 = 3;
const VERSION_RECORDS: u32 = 2;
/// The shortest header of any version (version 2's).
const HEADER_LEN: u64 = 8 + 4 + 16;
const NODE_LEN: u64 = 32;
const EDGE_LEN: u64 = 40;
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
    let h = arena.image_header();
    w.put(&h.node_slots.to_le_bytes())?;
    w.put(&h.node_count.to_le_bytes())?;
    w.put(&h.node_free.to_le_bytes())?;
    w.put(&h.edge_slots.to_le_bytes())?;
    w.put(&h.edge_count.to_le_bytes())?;
    w.put(&h.edge_free.to_le_bytes())?;
    for slab in [arena.node_slab(), arena.edge_slab()] {
        w.put(&(slab.chunks().count() as u64).to_le_bytes())?;
        for chunk in slab.chunks() {
            w.put(&(chunk.len() as u64).to_le_bytes())?;
            w.put(chunk)?;
        }
    }
    let mut rec = [0u8; EDGE_LEN as usize];
    for n in arena.raw_nodes() {
        rec[0..8].copy_from_slice(&n.id.to_le_bytes());
        rec[8..16].copy_from_slice(&n.created_at.to_le_bytes());
        rec[16..24].copy_from_slice(&n.data.to_le_bytes());
        rec[24..28].copy_from_slice(&n.head_out.to_le_bytes());
        rec[28..32].copy_from_slice(&n.head_in.to_le_bytes());
        w.put(&rec[..NODE_LEN as usize])?;
    }
    for e in arena.raw_edges() {
        rec[0..4].copy_from_slice(&e.src.to_le_bytes());
        rec[4..8].copy_from_slice(&e.dst.to_le_bytes());
        rec[8..12].copy_from_slice(&e.next_out.to_le_bytes());
        rec[12..16].copy_from_slice(&e.next_in.to_le_bytes());
        rec[16..24].copy_from_slice(&e.created_at.to_le_bytes());
        rec[24..32].copy_from_slice(&e.data.to_le_bytes());
        rec[32..40].copy_from_slice(&e.id.to_le_bytes());
        w.put(&rec)?;
    }
    Ok(())
}

/// A version-2 dump (the previous format), as one buffer: what servers of earlier
/// releases left behind, for the tests that prove it still loads.
#[doc(hidden)]
pub fn dump_records(arena: &Arena) -> Vec<u8> {
    let mut out = Vec::new();
    write_body_v2(arena, &mut out).expect("writing to a Vec cannot fail");
    let checksum = xxh3_64(&out);
    out.extend_from_slice(&checksum.to_le_bytes());
    out
}

fn write_body_v2<S: Sink>(arena: &Arena, w: &mut S) -> io::Result<()> {
    w.put(MAGIC)?;
    w.put(&VERSION_RECORDS.to_le_bytes())?;
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

/// A body streamed through a buffer, each buffer hashed as it is filled (unless it
/// is a part of the body that another reader hashes).
struct StreamSource<R> {
    inner: R,
    buf: Box<[u8]>,
    at: usize,
    end: usize,
    hasher: Option<Xxh3>,
    /// Body bytes not yet read from `inner`.
    unread: u64,
    /// Where a field that straddles two fills (or outgrows the buffer) is gathered.
    scratch: Vec<u8>,
}

impl<R: Read> StreamSource<R> {
    /// Reads `body` bytes from `inner`, hashing them when `hash`.
    fn new(inner: R, body: u64, hash: bool) -> Self {
        StreamSource {
            inner,
            buf: vec![0u8; usize::try_from(body).unwrap_or(BUFFER).min(BUFFER)].into_boxed_slice(),
            at: 0,
            end: 0,
            hasher: hash.then(Xxh3::new),
            unread: body,
            scratch: Vec::new(),
        }
    }

    /// Reads the next buffer of the body.
    fn fill(&mut self) -> CoreResult<()> {
        let want = (self.buf.len() as u64).min(self.unread) as usize;
        self.inner
            .read_exact(&mut self.buf[..want])
            .map_err(read_error)?;
        if let Some(hasher) = &mut self.hasher {
            hasher.update(&self.buf[..want]);
        }
        self.unread -= want as u64;
        (self.at, self.end) = (0, want);
        Ok(())
    }

    /// Reads (and hashes) the rest of the body without parsing it.
    fn skip_rest(&mut self) -> CoreResult<()> {
        self.at = self.end;
        while self.unread > 0 {
            self.fill()?;
            self.at = self.end;
        }
        Ok(())
    }

    /// The hash of everything read (None when not hashing).
    fn digest(&self) -> Option<u64> {
        self.hasher.as_ref().map(Xxh3::digest)
    }

    #[cold]
    #[inline(never)]
    fn gather(&mut self, len: usize) -> CoreResult<&[u8]> {
        let mut scratch = std::mem::take(&mut self.scratch);
        scratch.clear();
        scratch.reserve(len);
        while scratch.len() < len {
            if self.at == self.end {
                self.fill()?;
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
    let mut r = StreamSource::new(&mut input, len - CHECKSUM_LEN, true);
    let arena = parse(&mut r)?;
    let computed = r.digest().expect("hashing");
    check_end(&mut input, computed)?;
    Ok(arena)
}

/// After a body hashing to `computed`: the stored checksum, then nothing.
fn check_end<R: Read>(input: &mut R, computed: u64) -> CoreResult<()> {
    let mut stored = [0u8; 8];
    input.read_exact(&mut stored).map_err(read_error)?;
    if computed != u64::from_le_bytes(stored) {
        return Err(corrupt("checksum mismatch"));
    }
    // `len` said where the dump ends; a longer input is not this dump.
    if input.read(&mut [0u8; 1]).map_err(read_error)? != 0 {
        return Err(corrupt("trailing bytes"));
    }
    Ok(())
}

/// `len` bytes of `file` from `at` on, read with positional reads, so that two
/// threads can read one open file (one inode, whatever renames happen meanwhile).
#[cfg(unix)]
struct ReadAt<'a> {
    file: &'a File,
    at: u64,
    end: u64,
}

#[cfg(unix)]
impl Read for ReadAt<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        use std::os::unix::fs::FileExt;
        let room = usize::try_from(self.end - self.at).unwrap_or(usize::MAX);
        let want = buf.len().min(room);
        if want == 0 {
            return Ok(0);
        }
        let got = self.file.read_at(&mut buf[..want], self.at)?;
        self.at += got as u64;
        Ok(got)
    }
}

/// Loads the dump that fills `file` from `offset` to its end (`len` bytes), like
/// [`load_from`] but in two streams at once for an image (version 3): this thread
/// reads the whole dump, hashing it, and parses everything but the edge records,
/// which another thread parses from their own offset (the image ends with them, so
/// the header says where they start). Nothing is returned before the checksum of
/// every byte has matched. Both threads read the same open file, so they read the
/// same bytes: snapshots are replaced by renaming a new file over them, never
/// rewritten in place. Anything but a well-formed image header is left to
/// [`load_from`], which says what is wrong with it.
#[cfg(unix)]
pub fn load_file(file: &File, offset: u64, len: u64) -> CoreResult<Arena> {
    let at = |start: u64, end: u64| ReadAt {
        file,
        at: offset + start,
        end: offset.saturating_add(end),
    };
    let header = match peek_image_header(&mut at(0, len), len) {
        Some(header) => header,
        None => return load_from(at(0, u64::MAX), len),
    };
    let body = len - CHECKSUM_LEN;
    let edges_at = body - header.edge_slots * EDGE_LEN;
    let (main, edges) = std::thread::scope(|scope| {
        let edge_job = scope.spawn(|| -> CoreResult<EdgePart> {
            let mut r = StreamSource::new(at(edges_at, body), body - edges_at, false);
            let mut part = EdgePart::new(&header);
            read_edges(&mut r, header.edge_slots, |e| part.push(e))?;
            Ok(part)
        });
        let main = || -> CoreResult<ImageBuilder> {
            // Unbounded: a file longer than `len` has trailing bytes.
            let mut input = at(0, u64::MAX);
            let mut r = StreamSource::new(&mut input, body, true);
            let _magic_and_version = r.array::<12>()?;
            if read_image_header(&mut r)? != header {
                return Err(corrupt("changed while read"));
            }
            let mut b = ImageBuilder::new(header)?;
            read_slabs_and_nodes(&mut r, &mut b, &header)?;
            // The edge records are the other thread's to parse, but this one's to hash.
            r.skip_rest()?;
            let computed = r.digest().expect("hashing");
            check_end(&mut input, computed)?;
            Ok(b)
        };
        let main = main();
        (main, edge_job.join().expect("edge reader thread"))
    });
    let mut b = main?;
    b.put_edges(edges?);
    b.finish()
}

/// The header of an image (version 3) whose counts and records fit in `len` bytes;
/// None for anything else.
#[cfg(unix)]
fn peek_image_header<R: Read>(input: &mut R, len: u64) -> Option<ImageHeader> {
    const LEN: u64 = 8 + 4 + 8 + 8 + 4 + 8 + 8 + 4;
    let body = len.checked_sub(CHECKSUM_LEN)?;
    let mut r = StreamSource::new(input, body.min(LEN), false);
    if &r.array::<8>().ok()? != MAGIC || r.u32().ok()? != VERSION {
        return None;
    }
    let header = read_image_header(&mut r).ok()?;
    let records = header
        .node_slots
        .checked_mul(NODE_LEN)?
        .checked_add(header.edge_slots.checked_mul(EDGE_LEN)?)?;
    let fits = records <= body - LEN
        && header.node_count <= header.node_slots
        && header.edge_count <= header.edge_slots;
    fits.then_some(header)
}

/// The records of a dump's body, each checked as the arena takes it.
fn parse<S: Source>(r: &mut S) -> CoreResult<Arena> {
    if &r.array::<8>()? != MAGIC {
        return Err(corrupt("not an arena dump"));
    }
    let version = r.u32()?;
    let arena = match version {
        VERSION => parse_image(r)?,
        VERSION_RECORDS => parse_records(r)?,
        _ => {
            return Err(CoreError::CorruptDump(format!(
                "unsupported dump version {version}"
            )))
        }
    };
    if r.body_left() != 0 {
        return Err(corrupt("trailing bytes"));
    }
    Ok(arena)
}

#[inline(always)]
fn le_u32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

#[inline(always)]
fn le_u64(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

/// Version 3: the records as they lay in memory, then the checks and the indices.
fn parse_image<S: Source>(r: &mut S) -> CoreResult<Arena> {
    let header = read_image_header(r)?;
    // The records alone must fit in what is left (the slab chunks come first): bounds
    // what the builder reserves for the counts by the file's real size.
    let records = header
        .node_slots
        .checked_mul(NODE_LEN)
        .zip(header.edge_slots.checked_mul(EDGE_LEN))
        .and_then(|(n, e)| n.checked_add(e));
    if records.is_none_or(|len| len > r.body_left()) {
        return Err(corrupt("truncated"));
    }
    let mut b = ImageBuilder::new(header)?;
    read_slabs_and_nodes(r, &mut b, &header)?;
    read_edges(r, header.edge_slots, |e| b.push_edge(e))?;
    b.finish()
}

/// The image's header, after its magic and version.
fn read_image_header<S: Source>(r: &mut S) -> CoreResult<ImageHeader> {
    Ok(ImageHeader {
        node_slots: r.u64()?,
        node_count: r.u64()?,
        node_free: r.u32()?,
        edge_slots: r.u64()?,
        edge_count: r.u64()?,
        edge_free: r.u32()?,
    })
}

/// The slab chunks and the node records, up to the edge records.
fn read_slabs_and_nodes<S: Source>(
    r: &mut S,
    b: &mut ImageBuilder,
    header: &ImageHeader,
) -> CoreResult<()> {
    for which in 0..2 {
        let chunks = r.u64()?;
        // Every chunk costs at least its 8-byte length: bounds the loop by the file.
        if chunks > r.body_left() / 8 {
            return Err(corrupt("truncated"));
        }
        for _ in 0..chunks {
            let len = r.u64()?;
            let bytes = r.take(len)?;
            let slab = if which == 0 {
                b.node_slab()
            } else {
                b.edge_slab()
            };
            slab.restore_chunk(bytes);
        }
    }
    let records = header
        .node_slots
        .checked_mul(NODE_LEN)
        .zip(header.edge_slots.checked_mul(EDGE_LEN))
        .and_then(|(n, e)| n.checked_add(e));
    if records != Some(r.body_left()) {
        return Err(corrupt("truncated"));
    }
    for _ in 0..header.node_slots {
        let rec = r.take(NODE_LEN)?;
        b.push_node(RawNode {
            id: le_u64(rec, 0),
            created_at: le_u64(rec, 8) as i64,
            data: le_u64(rec, 16),
            head_out: le_u32(rec, 24),
            head_in: le_u32(rec, 28),
        });
    }
    Ok(())
}

/// `slots` edge records.
fn read_edges<S: Source>(r: &mut S, slots: u64, mut push: impl FnMut(RawEdge)) -> CoreResult<()> {
    for _ in 0..slots {
        let rec = r.take(EDGE_LEN)?;
        push(RawEdge {
            src: le_u32(rec, 0),
            dst: le_u32(rec, 4),
            next_out: le_u32(rec, 8),
            next_in: le_u32(rec, 12),
            created_at: le_u64(rec, 16) as i64,
            data: le_u64(rec, 24),
            id: le_u64(rec, 32),
        });
    }
    Ok(())
}

/// Version 2: a record per substrate and relationship, each checked as the arena
/// takes it (ids recomputed, endpoints looked up).
fn parse_records<S: Source>(r: &mut S) -> CoreResult<Arena> {
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
    Ok(arena)
}
