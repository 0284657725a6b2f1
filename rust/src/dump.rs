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

use xxhash_rust::xxh3::xxh3_64;

use crate::arena::{Arena, NewEdge, NewSubstrate};
use crate::error::{CoreError, CoreResult};
use crate::kinds::{ExprType, RelType};

const MAGIC: &[u8; 8] = b"BFXARENA";
const VERSION: u32 = 1;

pub fn dump(arena: &Arena) -> Vec<u8> {
    let mut out = Vec::with_capacity(32 + arena.len() * 64 + arena.edge_count() * 40);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&VERSION.to_le_bytes());
    out.extend_from_slice(&(arena.len() as u64).to_le_bytes());
    out.extend_from_slice(&(arena.edge_count() as u64).to_le_bytes());
    for s in arena.iter() {
        out.extend_from_slice(&s.id.to_le_bytes());
        out.extend_from_slice(&s.created_at.to_le_bytes());
        out.extend_from_slice(&s.invocations.to_le_bytes());
        out.push(s.expr_type as u8);
        for part in [s.code.as_bytes(), s.canonical.as_bytes(), s.metadata] {
            out.extend_from_slice(&(part.len() as u32).to_le_bytes());
        }
        for part in [s.code.as_bytes(), s.canonical.as_bytes(), s.metadata] {
            out.extend_from_slice(part);
        }
    }
    for e in arena.iter_edges() {
        out.extend_from_slice(&e.source.to_le_bytes());
        out.extend_from_slice(&e.target.to_le_bytes());
        out.push(e.rel.index());
        out.push(u8::from(e.bidirectional));
        out.extend_from_slice(&e.created_at.to_le_bytes());
        out.extend_from_slice(&(e.constraints.len() as u32).to_le_bytes());
        out.extend_from_slice(e.constraints);
    }
    let checksum = xxh3_64(&out);
    out.extend_from_slice(&checksum.to_le_bytes());
    out
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> CoreResult<&'a [u8]> {
        let end = self
            .at
            .checked_add(n)
            .filter(|&end| end <= self.bytes.len());
        let end = end.ok_or_else(|| CoreError::CorruptDump("truncated".into()))?;
        let slice = &self.bytes[self.at..end];
        self.at = end;
        Ok(slice)
    }
    fn u8(&mut self) -> CoreResult<u8> {
        Ok(self.take(1)?[0])
    }
    fn u32(&mut self) -> CoreResult<u32> {
        Ok(u32::from_le_bytes(
            self.take(4)?.try_into().expect("4 bytes"),
        ))
    }
    fn u64(&mut self) -> CoreResult<u64> {
        Ok(u64::from_le_bytes(
            self.take(8)?.try_into().expect("8 bytes"),
        ))
    }
    fn str(&mut self, len: u32) -> CoreResult<&'a str> {
        std::str::from_utf8(self.take(len as usize)?)
            .map_err(|_| CoreError::CorruptDump("code is not UTF-8".into()))
    }
}

pub fn load(bytes: &[u8]) -> CoreResult<Arena> {
    let corrupt = |why: &str| CoreError::CorruptDump(why.to_owned());
    if bytes.len() < MAGIC.len() + 4 + 16 + 8 || &bytes[..8] != MAGIC {
        return Err(corrupt("not an arena dump"));
    }
    let (body, tail) = bytes.split_at(bytes.len() - 8);
    if xxh3_64(body) != u64::from_le_bytes(tail.try_into().expect("8 bytes")) {
        return Err(corrupt("checksum mismatch"));
    }
    let mut r = Reader {
        bytes: body,
        at: MAGIC.len(),
    };
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
    let room = body.len() / 33;
    let mut arena = Arena::with_capacity(
        (substrates as usize).min(room),
        (relationships as usize).min(room),
    );
    for _ in 0..substrates {
        let id = r.u64()?;
        let created_at = r.u64()? as i64;
        let invocations = r.u32()?;
        let expr_type = ExprType::from_u8(r.u8()?).ok_or_else(|| corrupt("bad expression type"))?;
        let (code_len, canon_len, meta_len) = (r.u32()?, r.u32()?, r.u32()?);
        let code = r.str(code_len)?;
        let canonical = r.str(canon_len)?;
        let metadata = r.take(meta_len as usize)?;
        let record = NewSubstrate {
            expr_type,
            code,
            canonical,
            metadata,
            created_at,
            expected_id: Some(id),
        };
        arena.restore(&record, invocations)?;
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
        let constraints = r.take(len as usize)?;
        arena.link(&NewEdge {
            rel,
            source,
            target,
            bidirectional,
            constraints,
            created_at,
        })?;
    }
    if r.at != body.len() {
        return Err(corrupt("trailing bytes"));
    }
    Ok(arena)
}
