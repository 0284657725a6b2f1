//! The substrate arena and the relationship store.
//!
//! Memory layout (why it is shaped this way: the per-record budgets are 64
//! bytes per substrate and 48 per relationship, both adjacency directions
//! included):
//!
//! * Records are fixed-size and live in [`SegVec`]s indexed by a `u32` slot.
//!   A deleted slot goes on a free list and is reused, so slots never move and
//!   edges can refer to their endpoints by slot (4 bytes, not an 8-byte id).
//!   A substrate record is 32 bytes and a relationship record 32, and neither
//!   changes on a read or an invoke: nothing is counted in them per request.
//! * Variable-length bytes (code, canonical code, metadata, constraints) are
//!   packed into a [`ByteSlab`] with varint length prefixes.
//! * Lookup by id is a `HashTable<u32>` of slots. The ids are already uniform
//!   64-bit hashes, so the id itself is the table hash; a relationship's id is
//!   not stored at all but recomputed from its endpoints and type.
//! * Adjacency is intrusive: each node holds the heads of its outgoing and
//!   incoming lists, each edge the links to the next edge in both lists.
//!   Lists are newest first. Unlinking one edge walks the list of its
//!   endpoint (O(degree)); listing neighbours walks it once.
//!
//! A bidirectional edge is stored once (source → target) and is reported as
//! outgoing and incoming of both of its ends.

use std::collections::{BinaryHeap, HashMap, HashSet};

use hashbrown::HashTable;

use crate::error::{CoreError, CoreResult, Kind};
use crate::identity::{relationship_id, substrate_id};
use crate::kinds::{ExprType, RelType};
use crate::segvec::SegVec;
use crate::slab::{get_varint, put_varint, try_get_varint, ByteSlab, HANDLE_BITS};

const NIL: u32 = u32::MAX;
/// `Node::data` of a free slot.
const FREE_NODE: u64 = u64::MAX;
const HANDLE_MASK: u64 = (1 << HANDLE_BITS) - 1;
/// `Edge::data` handle of an edge without constraints.
const NO_BLOB: u64 = HANDLE_MASK;
const BIDIRECTIONAL: u64 = 1 << 63;
/// Compact a slab once its garbage exceeds both its live bytes and this.
const COMPACT_MIN_GARBAGE: usize = 16 << 20;

/// A substrate record: 32 bytes. It holds nothing that changes per request
/// (invocation counts live with the Python metrics, `bfx.invocations`): a
/// record is written only when the substrate or one of its relationships is,
/// so pages of records that worker processes may come to share stay clean
/// under read traffic.
#[derive(Clone, Copy)]
struct Node {
    id: u64,
    created_at: i64,
    /// Slab handle (low 48 bits) | expression type << 48; `FREE_NODE` if free.
    data: u64,
    /// Head of the outgoing list; the next free slot when the slot is free.
    head_out: u32,
    head_in: u32,
}

const _: () = assert!(std::mem::size_of::<Node>() == 32);
const _: () = assert!(std::mem::size_of::<Edge>() == 32);

#[derive(Clone, Copy)]
struct Edge {
    /// `NIL` when the slot is free.
    src: u32,
    dst: u32,
    /// Next in the source's outgoing list; the next free slot when free.
    next_out: u32,
    next_in: u32,
    created_at: i64,
    /// Constraints handle (low 48 bits, `NO_BLOB` if empty) | type << 48 |
    /// `BIDIRECTIONAL`.
    data: u64,
}

impl Edge {
    #[inline]
    fn rel(&self) -> RelType {
        RelType::from_index(((self.data >> HANDLE_BITS) & 0xFF) as u8).expect("valid type index")
    }
    #[inline]
    fn bidirectional(&self) -> bool {
        self.data & BIDIRECTIONAL != 0
    }
}

/// A substrate to insert. `created_at` is microseconds since the Unix epoch.
#[derive(Debug, Clone)]
pub struct NewSubstrate<'a> {
    pub expr_type: ExprType,
    pub code: &'a str,
    pub canonical: &'a str,
    pub metadata: &'a [u8],
    pub created_at: i64,
    /// When restoring records: the id they were stored under, checked.
    pub expected_id: Option<u64>,
}

#[derive(Debug, Clone)]
pub struct NewEdge<'a> {
    pub rel: RelType,
    pub source: u64,
    pub target: u64,
    pub bidirectional: bool,
    pub constraints: &'a [u8],
    pub created_at: i64,
}

/// A [`NewSubstrate`] that owns its text and bytes: a batch handed in by
/// Python, or rows read from a store, held while the arena's lock is taken.
#[derive(Debug, Clone)]
pub struct OwnedSubstrate {
    pub expr_type: ExprType,
    pub code: String,
    pub canonical: String,
    pub metadata: Vec<u8>,
    pub created_at: i64,
    pub expected_id: Option<u64>,
}

impl OwnedSubstrate {
    pub fn as_new(&self) -> NewSubstrate<'_> {
        NewSubstrate {
            expr_type: self.expr_type,
            code: &self.code,
            canonical: &self.canonical,
            metadata: &self.metadata,
            created_at: self.created_at,
            expected_id: self.expected_id,
        }
    }
}

/// A [`NewEdge`] that owns its constraints, as [`OwnedSubstrate`].
#[derive(Debug, Clone)]
pub struct OwnedEdge {
    pub rel: RelType,
    pub source: u64,
    pub target: u64,
    pub bidirectional: bool,
    pub constraints: Vec<u8>,
    pub created_at: i64,
}

impl OwnedEdge {
    pub fn as_new(&self) -> NewEdge<'_> {
        NewEdge {
            rel: self.rel,
            source: self.source,
            target: self.target,
            bidirectional: self.bidirectional,
            constraints: &self.constraints,
            created_at: self.created_at,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubstrateView<'a> {
    pub id: u64,
    pub expr_type: ExprType,
    pub code: &'a str,
    pub canonical: &'a str,
    pub metadata: &'a [u8],
    pub created_at: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EdgeView<'a> {
    pub id: u64,
    pub rel: RelType,
    pub source: u64,
    pub target: u64,
    pub bidirectional: bool,
    pub constraints: &'a [u8],
    pub created_at: i64,
}

/// Bytes held by each part of the arena.
#[derive(Debug, Clone, Copy, Default)]
pub struct MemoryReport {
    pub node_records: usize,
    pub node_index: usize,
    pub node_bytes: usize,
    pub edge_records: usize,
    pub edge_index: usize,
    pub edge_bytes: usize,
}

#[derive(Default)]
pub struct Arena {
    nodes: SegVec<Node>,
    node_free: Option<u32>,
    node_count: usize,
    node_index: HashTable<u32>,
    node_data: ByteSlab,
    edges: SegVec<Edge>,
    edge_free: Option<u32>,
    edge_count: usize,
    edge_index: HashTable<u32>,
    edge_data: ByteSlab,
}

#[inline]
fn edge_id(nodes: &SegVec<Node>, edge: &Edge) -> u64 {
    relationship_id(
        nodes.get(edge.src as usize).id,
        nodes.get(edge.dst as usize).id,
        edge.rel(),
    )
}

/// Decodes a node blob: (code, canonical, metadata, total blob length).
fn node_blob(slab: &ByteSlab, handle: u64) -> (&str, &str, &[u8], usize) {
    let bytes = slab.tail(handle);
    let (code_len, a) = get_varint(bytes);
    let (canon_tag, b) = get_varint(&bytes[a..]);
    let (meta_len, c) = get_varint(&bytes[a + b..]);
    let mut at = a + b + c;
    let code = &bytes[at..at + code_len as usize];
    at += code_len as usize;
    // A canonical length of 0 means "the same as the code", the common case.
    let canonical = if canon_tag == 0 {
        code
    } else {
        let len = canon_tag as usize - 1;
        let canon = &bytes[at..at + len];
        at += len;
        canon
    };
    let metadata = &bytes[at..at + meta_len as usize];
    at += meta_len as usize;
    // Only this module writes blobs, from `&str`s.
    let code = std::str::from_utf8(code).expect("slab holds UTF-8 code");
    let canonical = std::str::from_utf8(canonical).expect("slab holds UTF-8 code");
    (code, canonical, metadata, at)
}

fn edge_blob(slab: &ByteSlab, data: u64) -> (&[u8], usize) {
    let handle = data & HANDLE_MASK;
    if handle == NO_BLOB {
        return (&[], 0);
    }
    let bytes = slab.tail(handle);
    let (len, used) = get_varint(bytes);
    (&bytes[used..used + len as usize], used + len as usize)
}

fn check_len(len: usize, field: &'static str) -> CoreResult<()> {
    if len > u32::MAX as usize {
        Err(CoreError::TooLarge(field))
    } else {
        Ok(())
    }
}

impl Arena {
    pub fn new() -> Self {
        Self::default()
    }

    /// An arena with its id indices sized for this many records.
    pub fn with_capacity(substrates: usize, relationships: usize) -> Self {
        Arena {
            node_index: HashTable::with_capacity(substrates),
            edge_index: HashTable::with_capacity(relationships),
            ..Self::default()
        }
    }

    /// Makes room in the id indices for this many more records, so that a
    /// bulk load never rehashes them while it grows (a rehash of the
    /// relationship index recomputes every relationship's id).
    pub fn reserve(&mut self, substrates: usize, relationships: usize) {
        let nodes = &self.nodes;
        self.node_index
            .reserve(substrates, |&s| nodes.get(s as usize).id);
        let edges = &self.edges;
        self.edge_index
            .reserve(relationships, |&s| edge_id(nodes, edges.get(s as usize)));
    }

    pub fn len(&self) -> usize {
        self.node_count
    }

    pub fn is_empty(&self) -> bool {
        self.node_count == 0
    }

    pub fn edge_count(&self) -> usize {
        self.edge_count
    }

    #[inline]
    fn slot_of(&self, id: u64) -> Option<u32> {
        let nodes = &self.nodes;
        self.node_index
            .find(id, |&s| nodes.get(s as usize).id == id)
            .copied()
    }

    fn required_slot(&self, id: u64) -> CoreResult<u32> {
        self.slot_of(id).ok_or(CoreError::NotFound {
            kind: Kind::Substrate,
            id,
        })
    }

    fn view(&self, slot: u32) -> SubstrateView<'_> {
        let node = self.nodes.get(slot as usize);
        let (code, canonical, metadata, _) = node_blob(&self.node_data, node.data & HANDLE_MASK);
        SubstrateView {
            id: node.id,
            expr_type: ExprType::from_u8((node.data >> HANDLE_BITS) as u8).expect("valid type"),
            code,
            canonical,
            metadata,
            created_at: node.created_at,
        }
    }

    pub fn contains(&self, id: u64) -> bool {
        self.slot_of(id).is_some()
    }

    pub fn get(&self, id: u64) -> Option<SubstrateView<'_>> {
        self.slot_of(id).map(|slot| self.view(slot))
    }

    /// The id `s` would get, or why it cannot be inserted. Changes nothing.
    pub fn check_insert(&self, s: &NewSubstrate<'_>) -> CoreResult<u64> {
        check_len(s.code.len(), "expression_code")?;
        check_len(s.canonical.len(), "canonical_code")?;
        check_len(s.metadata.len(), "metadata")?;
        let id = substrate_id(s.expr_type, s.canonical);
        if let Some(expected) = s.expected_id {
            if expected != id {
                return Err(CoreError::IdMismatch {
                    given: expected,
                    computed: id,
                });
            }
        }
        if let Some(existing) = self.get(id) {
            return Err(
                if existing.expr_type == s.expr_type && existing.canonical == s.canonical {
                    CoreError::Duplicate {
                        kind: Kind::Substrate,
                        id,
                    }
                } else {
                    CoreError::Collision { id }
                },
            );
        }
        Ok(id)
    }

    pub fn insert(&mut self, s: &NewSubstrate<'_>) -> CoreResult<u64> {
        let id = self.check_insert(s)?;
        self.insert_unchecked(id, s);
        Ok(id)
    }

    fn insert_unchecked(&mut self, id: u64, s: &NewSubstrate<'_>) {
        let mut prefix = Vec::with_capacity(12);
        put_varint(&mut prefix, s.code.len() as u64);
        let same = s.code == s.canonical;
        put_varint(
            &mut prefix,
            if same {
                0
            } else {
                s.canonical.len() as u64 + 1
            },
        );
        put_varint(&mut prefix, s.metadata.len() as u64);
        let canonical: &[u8] = if same { b"" } else { s.canonical.as_bytes() };
        let handle = self
            .node_data
            .push(&[&prefix, s.code.as_bytes(), canonical, s.metadata]);
        let node = Node {
            id,
            created_at: s.created_at,
            data: handle | (s.expr_type as u64) << HANDLE_BITS,
            head_out: NIL,
            head_in: NIL,
        };
        let slot = match self.node_free {
            Some(free) => {
                let cell = self.nodes.get_mut(free as usize);
                self.node_free = (cell.head_out != NIL).then_some(cell.head_out);
                *cell = node;
                free
            }
            None => self.nodes.push(node) as u32,
        };
        let nodes = &self.nodes;
        self.node_index
            .insert_unique(id, slot, |&s| nodes.get(s as usize).id);
        self.node_count += 1;
    }

    /// What [`Arena::insert_many`] would answer for each item, writing
    /// nothing. A repeat inside the batch is a duplicate (or a collision) of
    /// the earlier item.
    pub fn check_many(&self, items: &[NewSubstrate<'_>]) -> Vec<CoreResult<u64>> {
        let mut seen: HashMap<u64, usize> = HashMap::new();
        items
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let id = self.check_insert(s)?;
                match seen.get(&id) {
                    Some(&first) => Err(
                        if items[first].expr_type == s.expr_type
                            && items[first].canonical == s.canonical
                        {
                            CoreError::Duplicate {
                                kind: Kind::Substrate,
                                id,
                            }
                        } else {
                            CoreError::Collision { id }
                        },
                    ),
                    None => {
                        seen.insert(id, i);
                        Ok(id)
                    }
                }
            })
            .collect()
    }

    /// Inserts records read from a store, in order, stopping at the first
    /// that cannot be inserted: `Err((its index, why))`. The load of every
    /// substrate at start-up: each is checked as [`Arena::insert`] checks it
    /// (its stored id against the one computed), without per-item answers.
    pub fn load_substrates(
        &mut self,
        items: &[NewSubstrate<'_>],
    ) -> Result<(), (usize, CoreError)> {
        for (i, s) in items.iter().enumerate() {
            self.insert(s).map_err(|err| (i, err))?;
        }
        Ok(())
    }

    /// Inserts in order. With `atomic`, nothing is inserted unless every item
    /// can be; the second value says whether anything was written.
    pub fn insert_many(
        &mut self,
        items: &[NewSubstrate<'_>],
        atomic: bool,
    ) -> (Vec<CoreResult<u64>>, bool) {
        if !atomic {
            return (items.iter().map(|s| self.insert(s)).collect(), true);
        }
        let results = self.check_many(items);
        let ok = results.iter().all(Result::is_ok);
        if ok {
            for (s, id) in items.iter().zip(&results) {
                self.insert_unchecked(*id.as_ref().expect("checked"), s);
            }
        }
        (results, ok)
    }

    /// Removes a substrate and every relationship that touches it; returns
    /// how many relationships went with it.
    pub fn remove(&mut self, id: u64) -> CoreResult<usize> {
        let slot = self.required_slot(id)?;
        let node = *self.nodes.get(slot as usize);
        let mut incident = Vec::new();
        let mut e = node.head_out;
        while e != NIL {
            incident.push(e);
            e = self.edges.get(e as usize).next_out;
        }
        let mut e = node.head_in;
        while e != NIL {
            let edge = self.edges.get(e as usize);
            // A self-loop is in both lists of this node: take it once.
            if edge.src != slot {
                incident.push(e);
            }
            e = edge.next_in;
        }
        for &e in &incident {
            self.drop_edge(e, Some(slot));
        }
        let (_, _, _, blob_len) = node_blob(&self.node_data, node.data & HANDLE_MASK);
        self.node_data.release(blob_len);
        if let Ok(entry) = self.node_index.find_entry(id, |&s| s == slot) {
            entry.remove();
        }
        let free_next = self.node_free.unwrap_or(NIL);
        *self.nodes.get_mut(slot as usize) = Node {
            id: 0,
            created_at: 0,
            data: FREE_NODE,
            head_out: free_next,
            head_in: NIL,
        };
        self.node_free = Some(slot);
        self.node_count -= 1;
        self.maybe_compact();
        Ok(incident.len())
    }

    /// Unlinks edge slot `e` from its endpoints' lists (but not from the lists
    /// of `dying`, a node being removed whole), from the index, and frees it.
    fn drop_edge(&mut self, e: u32, dying: Option<u32>) {
        let edge = *self.edges.get(e as usize);
        let rid = edge_id(&self.nodes, &edge);
        if let Ok(entry) = self.edge_index.find_entry(rid, |&s| s == e) {
            entry.remove();
        }
        if Some(edge.src) != dying {
            self.unlink_out(edge.src, e);
        }
        if Some(edge.dst) != dying {
            self.unlink_in(edge.dst, e);
        }
        let (_, blob_len) = edge_blob(&self.edge_data, edge.data);
        if blob_len > 0 {
            self.edge_data.release(blob_len);
        }
        let free_next = self.edge_free.unwrap_or(NIL);
        *self.edges.get_mut(e as usize) = Edge {
            src: NIL,
            dst: NIL,
            next_out: free_next,
            next_in: NIL,
            created_at: 0,
            data: NO_BLOB,
        };
        self.edge_free = Some(e);
        self.edge_count -= 1;
    }

    fn unlink_out(&mut self, node: u32, e: u32) {
        let next = self.edges.get(e as usize).next_out;
        let head = self.nodes.get(node as usize).head_out;
        if head == e {
            self.nodes.get_mut(node as usize).head_out = next;
            return;
        }
        let mut prev = head;
        loop {
            let cur = self.edges.get(prev as usize).next_out;
            if cur == e {
                self.edges.get_mut(prev as usize).next_out = next;
                return;
            }
            if cur == NIL {
                // Only a damaged image could get here (see `ImageBuilder::finish`).
                debug_assert!(false, "edge missing from its source's list");
                return;
            }
            prev = cur;
        }
    }

    fn unlink_in(&mut self, node: u32, e: u32) {
        let next = self.edges.get(e as usize).next_in;
        let head = self.nodes.get(node as usize).head_in;
        if head == e {
            self.nodes.get_mut(node as usize).head_in = next;
            return;
        }
        let mut prev = head;
        loop {
            let cur = self.edges.get(prev as usize).next_in;
            if cur == e {
                self.edges.get_mut(prev as usize).next_in = next;
                return;
            }
            if cur == NIL {
                debug_assert!(false, "edge missing from its target's list");
                return;
            }
            prev = cur;
        }
    }

    /// Live node slots in slot order.
    fn live_slots(&self) -> impl Iterator<Item = u32> + '_ {
        self.nodes
            .iter()
            .enumerate()
            .filter(|(_, n)| n.data != FREE_NODE)
            .map(|(i, _)| i as u32)
    }

    /// Every substrate, in storage order (not sorted).
    pub fn iter(&self) -> impl Iterator<Item = SubstrateView<'_>> + '_ {
        self.live_slots().map(|s| self.view(s))
    }

    /// Up to `limit` substrates in storage order from slot position `from`,
    /// and the position to continue from (None at the end). For full scans:
    /// each call costs only what it returns.
    pub fn scan(&self, from: usize, limit: usize) -> (Vec<SubstrateView<'_>>, Option<usize>) {
        let mut out = Vec::with_capacity(limit.min(4096));
        let mut pos = from;
        while pos < self.nodes.len() && out.len() < limit {
            if self.nodes.get(pos).data != FREE_NODE {
                out.push(self.view(pos as u32));
            }
            pos += 1;
        }
        (out, (pos < self.nodes.len()).then_some(pos))
    }

    /// Like [`Arena::scan`] for relationships.
    pub fn scan_edges(&self, from: usize, limit: usize) -> (Vec<EdgeView<'_>>, Option<usize>) {
        let mut out = Vec::with_capacity(limit.min(4096));
        let mut pos = from;
        while pos < self.edges.len() && out.len() < limit {
            if self.edges.get(pos).src != NIL {
                out.push(self.edge_view(pos as u32));
            }
            pos += 1;
        }
        (out, (pos < self.edges.len()).then_some(pos))
    }

    /// Up to `limit` ids greater than `after`, ascending, and the cursor for
    /// the next page (the last id returned) if more follow. Pages by id keep
    /// their meaning while records are inserted and deleted between calls.
    pub fn page(&self, after: Option<u64>, limit: usize) -> (Vec<u64>, Option<u64>) {
        if limit == 0 {
            return (Vec::new(), None);
        }
        let mut heap: BinaryHeap<u64> = BinaryHeap::with_capacity(limit + 1);
        let mut matching = 0usize;
        for n in self.nodes.iter() {
            if n.data == FREE_NODE || after.is_some_and(|a| n.id <= a) {
                continue;
            }
            matching += 1;
            if heap.len() < limit {
                heap.push(n.id);
            } else if heap.peek().is_some_and(|&top| n.id < top) {
                heap.pop();
                heap.push(n.id);
            }
        }
        let ids = heap.into_sorted_vec();
        let next = (matching > ids.len()).then(|| *ids.last().expect("non-empty"));
        (ids, next)
    }

    // ---- relationships ----

    fn find_edge(&self, rid: u64) -> Option<u32> {
        let (nodes, edges) = (&self.nodes, &self.edges);
        self.edge_index
            .find(rid, |&s| edge_id(nodes, edges.get(s as usize)) == rid)
            .copied()
    }

    fn edge_view(&self, e: u32) -> EdgeView<'_> {
        let edge = self.edges.get(e as usize);
        let (constraints, _) = edge_blob(&self.edge_data, edge.data);
        EdgeView {
            id: edge_id(&self.nodes, edge),
            rel: edge.rel(),
            source: self.nodes.get(edge.src as usize).id,
            target: self.nodes.get(edge.dst as usize).id,
            bidirectional: edge.bidirectional(),
            constraints,
            created_at: edge.created_at,
        }
    }

    pub fn edge(&self, rid: u64) -> Option<EdgeView<'_>> {
        self.find_edge(rid).map(|e| self.edge_view(e))
    }

    /// The id `e` would get, or why it cannot be linked. Changes nothing.
    pub fn check_link(&self, e: &NewEdge<'_>) -> CoreResult<u64> {
        self.check_link_slots(e).map(|(rid, _, _)| rid)
    }

    /// [`Arena::check_link`], also answering the endpoints' slots.
    fn check_link_slots(&self, e: &NewEdge<'_>) -> CoreResult<(u64, u32, u32)> {
        check_len(e.constraints.len(), "constraints")?;
        let src = self.required_slot(e.source)?;
        let dst = self.required_slot(e.target)?;
        let rid = relationship_id(e.source, e.target, e.rel);
        if let Some(existing) = self.edge(rid) {
            return Err(
                if (existing.source, existing.target, existing.rel) == (e.source, e.target, e.rel) {
                    CoreError::Duplicate {
                        kind: Kind::Relationship,
                        id: rid,
                    }
                } else {
                    CoreError::Collision { id: rid }
                },
            );
        }
        Ok((rid, src, dst))
    }

    pub fn link(&mut self, e: &NewEdge<'_>) -> CoreResult<u64> {
        let rid = self.check_link(e)?;
        self.link_unchecked(rid, e);
        Ok(rid)
    }

    /// Links relationships read from a store, in order, stopping at the first
    /// that cannot be linked: `Err((its index, why))`. Checked as
    /// [`Arena::link`] checks, but each endpoint is looked up once (a link
    /// looks it up again to write): the load of every relationship at start-up.
    pub fn load_edges(&mut self, items: &[NewEdge<'_>]) -> Result<(), (usize, CoreError)> {
        for (i, e) in items.iter().enumerate() {
            let (rid, src, dst) = self.check_link_slots(e).map_err(|err| (i, err))?;
            self.link_at(rid, src, dst, e);
        }
        Ok(())
    }

    fn link_unchecked(&mut self, rid: u64, e: &NewEdge<'_>) {
        let src = self.slot_of(e.source).expect("checked source");
        let dst = self.slot_of(e.target).expect("checked target");
        self.link_at(rid, src, dst, e);
    }

    /// Links `e` between node slots `src` and `dst` under `rid`, all checked.
    fn link_at(&mut self, rid: u64, src: u32, dst: u32, e: &NewEdge<'_>) {
        let handle = if e.constraints.is_empty() {
            NO_BLOB
        } else {
            let mut prefix = Vec::with_capacity(5);
            put_varint(&mut prefix, e.constraints.len() as u64);
            self.edge_data.push(&[&prefix, e.constraints])
        };
        let edge = Edge {
            src,
            dst,
            next_out: self.nodes.get(src as usize).head_out,
            next_in: self.nodes.get(dst as usize).head_in,
            created_at: e.created_at,
            data: handle
                | u64::from(e.rel.index()) << HANDLE_BITS
                | if e.bidirectional { BIDIRECTIONAL } else { 0 },
        };
        let slot = match self.edge_free {
            Some(free) => {
                let cell = self.edges.get_mut(free as usize);
                self.edge_free = (cell.next_out != NIL).then_some(cell.next_out);
                free
            }
            None => self.edges.push(edge) as u32,
        };
        // Both list links were read from the nodes before either head moves,
        // which keeps a self-loop (src == dst) consistent in both lists.
        self.nodes.get_mut(src as usize).head_out = slot;
        self.nodes.get_mut(dst as usize).head_in = slot;
        *self.edges.get_mut(slot as usize) = edge;
        let (nodes, edges) = (&self.nodes, &self.edges);
        self.edge_index
            .insert_unique(rid, slot, |&s| edge_id(nodes, edges.get(s as usize)));
        self.edge_count += 1;
    }

    /// What [`Arena::link_many`] would answer for each item, writing nothing.
    pub fn check_links(&self, items: &[NewEdge<'_>]) -> Vec<CoreResult<u64>> {
        let mut seen = HashSet::new();
        items
            .iter()
            .map(|e| {
                let rid = self.check_link(e)?;
                if seen.insert(rid) {
                    Ok(rid)
                } else {
                    Err(CoreError::Duplicate {
                        kind: Kind::Relationship,
                        id: rid,
                    })
                }
            })
            .collect()
    }

    /// Links in order; like [`Arena::insert_many`] for relationships.
    pub fn link_many(
        &mut self,
        items: &[NewEdge<'_>],
        atomic: bool,
    ) -> (Vec<CoreResult<u64>>, bool) {
        if !atomic {
            return (items.iter().map(|e| self.link(e)).collect(), true);
        }
        let results = self.check_links(items);
        let ok = results.iter().all(Result::is_ok);
        if ok {
            for (e, rid) in items.iter().zip(&results) {
                self.link_unchecked(*rid.as_ref().expect("checked"), e);
            }
        }
        (results, ok)
    }

    /// Inserts `s` under the id [`Arena::check_insert`] computed for it, without
    /// computing it again (the engine's apply after commit); refuses only an id
    /// taken since the check.
    pub fn insert_checked(&mut self, id: u64, s: &NewSubstrate<'_>) -> CoreResult<()> {
        if self.contains(id) {
            return Err(CoreError::Duplicate {
                kind: Kind::Substrate,
                id,
            });
        }
        self.insert_unchecked(id, s);
        Ok(())
    }

    /// Links `e` under the id [`Arena::check_link`] computed for it; refuses a
    /// missing endpoint or an id taken since the check.
    pub fn link_checked(&mut self, rid: u64, e: &NewEdge<'_>) -> CoreResult<()> {
        self.required_slot(e.source)?;
        self.required_slot(e.target)?;
        if self.find_edge(rid).is_some() {
            return Err(CoreError::Duplicate {
                kind: Kind::Relationship,
                id: rid,
            });
        }
        self.link_unchecked(rid, e);
        Ok(())
    }

    pub fn unlink(&mut self, rid: u64) -> CoreResult<()> {
        let e = self.find_edge(rid).ok_or(CoreError::NotFound {
            kind: Kind::Relationship,
            id: rid,
        })?;
        self.drop_edge(e, None);
        self.maybe_compact();
        Ok(())
    }

    /// Edge slots leaving `slot` (its outgoing list, then the bidirectional
    /// edges that arrive at it), newest first within each part.
    fn out_slots(&self, slot: u32) -> impl Iterator<Item = u32> + '_ {
        let node = self.nodes.get(slot as usize);
        let own = ListIter {
            arena: self,
            next: node.head_out,
            outgoing: true,
        };
        let reverse = ListIter {
            arena: self,
            next: node.head_in,
            outgoing: false,
        }
        .filter(move |&e| {
            let edge = self.edges.get(e as usize);
            edge.bidirectional() && edge.src != slot
        });
        own.chain(reverse)
    }

    fn in_slots(&self, slot: u32) -> impl Iterator<Item = u32> + '_ {
        let node = self.nodes.get(slot as usize);
        let own = ListIter {
            arena: self,
            next: node.head_in,
            outgoing: false,
        };
        let reverse = ListIter {
            arena: self,
            next: node.head_out,
            outgoing: true,
        }
        .filter(move |&e| {
            let edge = self.edges.get(e as usize);
            edge.bidirectional() && edge.dst != slot
        });
        own.chain(reverse)
    }

    fn collect_page(
        &self,
        slots: impl Iterator<Item = u32>,
        rel: Option<RelType>,
        offset: usize,
        limit: usize,
    ) -> (usize, Vec<EdgeView<'_>>) {
        let mut total = 0;
        let mut page = Vec::new();
        for e in slots {
            if rel.is_some_and(|r| self.edges.get(e as usize).rel() != r) {
                continue;
            }
            if total >= offset && page.len() < limit {
                page.push(self.edge_view(e));
            }
            total += 1;
        }
        (total, page)
    }

    /// Relationships leaving `id` (bidirectional ones from either end): the
    /// total that match and the page `offset..offset + limit`.
    pub fn outgoing(
        &self,
        id: u64,
        rel: Option<RelType>,
        offset: usize,
        limit: usize,
    ) -> CoreResult<(usize, Vec<EdgeView<'_>>)> {
        let slot = self.required_slot(id)?;
        Ok(self.collect_page(self.out_slots(slot), rel, offset, limit))
    }

    pub fn incoming(
        &self,
        id: u64,
        rel: Option<RelType>,
        offset: usize,
        limit: usize,
    ) -> CoreResult<(usize, Vec<EdgeView<'_>>)> {
        let slot = self.required_slot(id)?;
        Ok(self.collect_page(self.in_slots(slot), rel, offset, limit))
    }

    /// Relationships filtered by type, stored source and stored target (each
    /// optional). An unknown source or target matches nothing.
    pub fn edges_matching(
        &self,
        rel: Option<RelType>,
        source: Option<u64>,
        target: Option<u64>,
        offset: usize,
        limit: usize,
    ) -> (usize, Vec<EdgeView<'_>>) {
        let src_slot = source.map(|id| self.slot_of(id));
        let dst_slot = target.map(|id| self.slot_of(id));
        if matches!(src_slot, Some(None)) || matches!(dst_slot, Some(None)) {
            return (0, Vec::new());
        }
        let (src_slot, dst_slot) = (src_slot.flatten(), dst_slot.flatten());
        let keep = move |e: &u32| {
            let edge = self.edges.get(*e as usize);
            src_slot.is_none_or(|s| edge.src == s) && dst_slot.is_none_or(|d| edge.dst == d)
        };
        let slots: Box<dyn Iterator<Item = u32> + '_> = match (src_slot, dst_slot) {
            (Some(s), _) => Box::new(
                ListIter {
                    arena: self,
                    next: self.nodes.get(s as usize).head_out,
                    outgoing: true,
                }
                .filter(keep),
            ),
            (None, Some(d)) => Box::new(
                ListIter {
                    arena: self,
                    next: self.nodes.get(d as usize).head_in,
                    outgoing: false,
                }
                .filter(keep),
            ),
            (None, None) => Box::new(self.live_edge_slots()),
        };
        self.collect_page(slots, rel, offset, limit)
    }

    fn live_edge_slots(&self) -> impl Iterator<Item = u32> + '_ {
        self.edges
            .iter()
            .enumerate()
            .filter(|(_, e)| e.src != NIL)
            .map(|(i, _)| i as u32)
    }

    /// Every relationship, in storage order.
    pub fn iter_edges(&self) -> impl Iterator<Item = EdgeView<'_>> + '_ {
        self.live_edge_slots().map(|e| self.edge_view(e))
    }

    // ---- upkeep ----

    fn maybe_compact(&mut self) {
        let garbage = self.node_data.garbage_bytes();
        if garbage > COMPACT_MIN_GARBAGE && garbage > self.node_data.live_bytes() {
            let mut fresh = ByteSlab::new();
            for i in 0..self.nodes.len() {
                let node = *self.nodes.get(i);
                if node.data == FREE_NODE {
                    continue;
                }
                let handle = node.data & HANDLE_MASK;
                let (_, _, _, len) = node_blob(&self.node_data, handle);
                let new = fresh.push(&[self.node_data.get(handle, len)]);
                self.nodes.get_mut(i).data = (node.data & !HANDLE_MASK) | new;
            }
            self.node_data = fresh;
        }
        let garbage = self.edge_data.garbage_bytes();
        if garbage > COMPACT_MIN_GARBAGE && garbage > self.edge_data.live_bytes() {
            let mut fresh = ByteSlab::new();
            for i in 0..self.edges.len() {
                let edge = *self.edges.get(i);
                let handle = edge.data & HANDLE_MASK;
                if edge.src == NIL || handle == NO_BLOB {
                    continue;
                }
                let (_, len) = edge_blob(&self.edge_data, edge.data);
                let new = fresh.push(&[self.edge_data.get(handle, len)]);
                self.edges.get_mut(i).data = (edge.data & !HANDLE_MASK) | new;
            }
            self.edge_data = fresh;
        }
    }

    pub fn memory(&self) -> MemoryReport {
        let slot = std::mem::size_of::<u32>() + 1; // a bucket and its control byte
        MemoryReport {
            node_records: self.nodes.heap_bytes(),
            node_index: self.node_index.capacity() * slot,
            node_bytes: self.node_data.heap_bytes(),
            edge_records: self.edges.heap_bytes(),
            edge_index: self.edge_index.capacity() * slot,
            edge_bytes: self.edge_data.heap_bytes(),
        }
    }
}

/// Walks one intrusive adjacency list.
struct ListIter<'a> {
    arena: &'a Arena,
    next: u32,
    outgoing: bool,
}

impl Iterator for ListIter<'_> {
    type Item = u32;

    #[inline]
    fn next(&mut self) -> Option<u32> {
        if self.next == NIL {
            return None;
        }
        let e = self.next;
        let edge = self.arena.edges.get(e as usize);
        self.next = if self.outgoing {
            edge.next_out
        } else {
            edge.next_in
        };
        Some(e)
    }
}

// ---- read-only accessors for the graph algorithms (`crate::graph`) ----

/// One entry of an adjacency list as the graph algorithms see it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Adj {
    /// The edge slot.
    pub edge: u32,
    /// The node slot at the other end of the list entry (the stored target
    /// for an outgoing list, the stored source for an incoming list).
    pub other: u32,
    pub bidirectional: bool,
}

/// A live edge by slots: `(source slot, target slot, type, bidirectional)`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SlotEdge {
    pub src: u32,
    pub dst: u32,
    pub rel: RelType,
    pub bidirectional: bool,
}

impl Arena {
    /// One past the highest node slot ever used (live or free).
    pub(crate) fn node_slot_bound(&self) -> usize {
        self.nodes.len()
    }

    /// Live nodes as `(slot, id)`, in slot order.
    pub(crate) fn live_node_ids(&self) -> impl Iterator<Item = (u32, u64)> + '_ {
        self.nodes
            .iter()
            .enumerate()
            .filter(|(_, n)| n.data != FREE_NODE)
            .map(|(i, n)| (i as u32, n.id))
    }

    /// The slot of a live substrate.
    pub(crate) fn node_slot(&self, id: u64) -> Option<u32> {
        self.slot_of(id)
    }

    /// The id of the substrate in a live slot.
    pub(crate) fn node_id_at(&self, slot: u32) -> u64 {
        self.nodes.get(slot as usize).id
    }

    /// Every live edge by slots, in storage order.
    pub(crate) fn live_slot_edges(&self) -> impl Iterator<Item = SlotEdge> + '_ {
        self.edges
            .iter()
            .filter(|e| e.src != NIL)
            .map(|e| SlotEdge {
                src: e.src,
                dst: e.dst,
                rel: e.rel(),
                bidirectional: e.bidirectional(),
            })
    }

    /// The relationship in a live edge slot.
    pub(crate) fn edge_at(&self, e: u32) -> EdgeView<'_> {
        self.edge_view(e)
    }

    /// The heads of a node slot's outgoing and incoming lists (`u32::MAX`
    /// when empty): for walks that follow several lists at once.
    #[inline]
    pub(crate) fn list_heads(&self, slot: u32) -> (u32, u32) {
        let node = self.nodes.get(slot as usize);
        (node.head_out, node.head_in)
    }

    /// A live edge slot's links: `(src, dst, next_out, next_in, rel,
    /// bidirectional)`, the `next_*` being `u32::MAX` at the end of a list.
    #[inline]
    pub(crate) fn edge_links(&self, e: u32) -> (u32, u32, u32, u32, RelType, bool) {
        let edge = self.edges.get(e as usize);
        (
            edge.src,
            edge.dst,
            edge.next_out,
            edge.next_in,
            edge.rel(),
            edge.bidirectional(),
        )
    }
}

// ---- the arena's image (dump format v3, `crate::dump`) ----
//
// The image holds the records as they lie in memory (slots, free lists, adjacency
// links, slab chunks) and each relationship's id, so a load copies them back and
// rebuilds the two id indices without re-deriving anything: no id is hashed again
// from content, no endpoint looked up, no list relinked. The checksum vouches that
// the bytes are the ones written; `ImageBuilder::finish` still checks, in sequential
// passes (the nodes on one thread, the edges on another), everything a later read or
// write relies on not to go out of bounds or loop (slots, handles, blob encodings,
// types, counts, free lists, and that every live edge is linked into exactly one
// outgoing and one incoming list). The passes read memory in order; what they look
// up at random (is a slot a live node, was an edge linked already) is a bitmap that
// stays in cache.

/// Slot counts, record counts and free-list heads (`u32::MAX`: none).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct ImageHeader {
    pub node_slots: u64,
    pub node_count: u64,
    pub node_free: u32,
    pub edge_slots: u64,
    pub edge_count: u64,
    pub edge_free: u32,
}

/// A node record as the image stores it (32 bytes, little-endian).
#[derive(Debug, Clone, Copy)]
pub(crate) struct RawNode {
    pub id: u64,
    pub created_at: i64,
    pub data: u64,
    pub head_out: u32,
    pub head_in: u32,
}

/// An edge record as the image stores it, with its id (40 bytes; 0 for a free slot).
#[derive(Debug, Clone, Copy)]
pub(crate) struct RawEdge {
    pub src: u32,
    pub dst: u32,
    pub next_out: u32,
    pub next_in: u32,
    pub created_at: i64,
    pub data: u64,
    pub id: u64,
}

impl Arena {
    pub(crate) fn image_header(&self) -> ImageHeader {
        ImageHeader {
            node_slots: self.nodes.len() as u64,
            node_count: self.node_count as u64,
            node_free: self.node_free.unwrap_or(NIL),
            edge_slots: self.edges.len() as u64,
            edge_count: self.edge_count as u64,
            edge_free: self.edge_free.unwrap_or(NIL),
        }
    }

    pub(crate) fn node_slab(&self) -> &ByteSlab {
        &self.node_data
    }

    pub(crate) fn edge_slab(&self) -> &ByteSlab {
        &self.edge_data
    }

    /// Every node slot, free ones included, in slot order.
    pub(crate) fn raw_nodes(&self) -> impl Iterator<Item = RawNode> + '_ {
        self.nodes.iter().map(|n| RawNode {
            id: n.id,
            created_at: n.created_at,
            data: n.data,
            head_out: n.head_out,
            head_in: n.head_in,
        })
    }

    /// Every edge slot, free ones included, in slot order.
    pub(crate) fn raw_edges(&self) -> impl Iterator<Item = RawEdge> + '_ {
        self.edges.iter().map(|e| RawEdge {
            src: e.src,
            dst: e.dst,
            next_out: e.next_out,
            next_in: e.next_in,
            created_at: e.created_at,
            data: e.data,
            id: if e.src == NIL {
                0
            } else {
                edge_id(&self.nodes, e)
            },
        })
    }
}

/// Room left in a rebuilt index: a worker forked after the load inserts into the
/// index it shares with its siblings, and an index that grows is copied whole into
/// that worker's private memory; the headroom defers that past the first writes.
fn with_headroom(count: usize) -> usize {
    count + (count / 16).max(4096)
}

/// The buckets hashbrown gives a table made `with_capacity(capacity)` (its
/// `capacity_to_buckets`): only a guess that decides how ids are grouped for speed
/// (`IdGroups`); a wrong guess would cost time, never correctness.
fn table_buckets(capacity: usize) -> usize {
    if capacity < 8 {
        return if capacity < 4 { 4 } else { 8 };
    }
    (capacity.saturating_mul(8) / 7).next_power_of_two()
}

/// Each group of `IdGroups` spans at most this many buckets of the index (2^16: 256
/// KiB of slots and 64 KiB of control bytes, which stay in a core's cache).
const GROUP_SPAN_BITS: u32 = 16;

/// An id and its slot (12 bytes: ids are sorted by the million).
#[derive(Clone, Copy)]
#[repr(C, packed(4))]
struct IdSlot {
    id: u64,
    slot: u32,
}

/// Live records' ids and slots, grouped by the bits of the id that pick its place in
/// the index: hashbrown starts an entry's probe at `hash & bucket_mask`, and an id is
/// its own hash. Inserting one group after another then works on one small stretch of
/// the table at a time, in cache, instead of a random place in a table of hundreds of
/// MiB per insert (at 10M + 30M: 0.6 s for the relationships' index against 1.5–1.8 s
/// inserting in slot order, 0.2 s against 0.6–0.8 s for the substrates').
struct IdGroups {
    mask: u64,
    shift: u32,
    groups: Vec<Vec<IdSlot>>,
    count: usize,
}

impl IdGroups {
    /// For about `expected` ids (a header's count, bounded by the file's size).
    fn new(expected: u64) -> Self {
        let expected = usize::try_from(expected).unwrap_or(usize::MAX);
        let buckets = table_buckets(with_headroom(expected));
        let bits = buckets.trailing_zeros();
        let group_bits = bits.saturating_sub(GROUP_SPAN_BITS);
        let n = 1usize << group_bits;
        // Ids are uniform, so groups are within a few percent of the mean.
        let each = expected / n;
        let groups = (0..n)
            .map(|_| Vec::with_capacity(each + each / 16 + 16))
            .collect();
        IdGroups {
            mask: (buckets - 1) as u64,
            shift: bits - group_bits,
            groups,
            count: 0,
        }
    }

    #[inline]
    fn push(&mut self, id: u64, slot: u32) {
        let group = ((id & self.mask) >> self.shift) as usize;
        self.groups[group].push(IdSlot { id, slot });
        self.count += 1;
    }

    /// The index of every id pushed, sized for all of them plus headroom, so `hasher`
    /// (for a later growth) is never called while building it.
    fn build(self, hasher: impl Fn(&u32) -> u64) -> HashTable<u32> {
        let mut index = HashTable::with_capacity(with_headroom(self.count));
        for group in self.groups {
            for entry in group {
                let IdSlot { id, slot } = entry;
                index.insert_unique(id, slot, &hasher);
            }
        }
        index
    }
}

/// One bit per slot.
struct Bits(Vec<u64>);

impl Bits {
    fn new(len: usize) -> Self {
        Bits(vec![0; len.div_ceil(64)])
    }
    #[inline]
    fn get(&self, i: usize) -> bool {
        self.0[i / 64] & (1 << (i % 64)) != 0
    }
    #[inline]
    fn set(&mut self, i: usize) {
        self.0[i / 64] |= 1 << (i % 64);
    }
    /// Sets bit `i`; false when it was set already.
    #[inline]
    fn mark(&mut self, i: usize) -> bool {
        let (word, bit) = (&mut self.0[i / 64], 1u64 << (i % 64));
        let fresh = *word & bit == 0;
        *word |= bit;
        fresh
    }
}

/// Rebuilds an arena from its image, record by record, then checks it.
pub(crate) struct ImageBuilder {
    header: ImageHeader,
    arena: Arena,
    /// Which node slots hold a substrate (the edge checks ask, in cache).
    live_nodes: Bits,
    node_ids: IdGroups,
    edges: EdgePart,
}

/// The edge records of an image, which may be read on a thread of their own (they
/// lie at the end of the image, at an offset its header gives) and handed to the
/// builder with [`ImageBuilder::put_edges`].
pub(crate) struct EdgePart {
    edges: SegVec<Edge>,
    ids: IdGroups,
}

impl EdgePart {
    pub fn new(header: &ImageHeader) -> Self {
        EdgePart {
            edges: SegVec::new(),
            ids: IdGroups::new(header.edge_count),
        }
    }

    #[inline]
    pub fn push(&mut self, e: RawEdge) {
        let slot = self.edges.push(Edge {
            src: e.src,
            dst: e.dst,
            next_out: e.next_out,
            next_in: e.next_in,
            created_at: e.created_at,
            data: e.data,
        });
        if e.src != NIL {
            self.ids.push(e.id, slot as u32);
        }
    }
}

/// What the check of one kind of record found.
struct Checked {
    live: usize,
    bytes: usize,
    /// The edge slots that this kind's links point to, once each.
    out_links: Bits,
    in_links: Bits,
    index: HashTable<u32>,
}

impl ImageBuilder {
    /// `header` must already be bounded by the image's size (see `dump::parse_image`):
    /// what is reserved here follows its counts.
    pub fn new(header: ImageHeader) -> CoreResult<Self> {
        // Slots are u32 and u32::MAX means "none".
        if header.node_slots >= u64::from(NIL)
            || header.edge_slots >= u64::from(NIL)
            || header.node_count > header.node_slots
            || header.edge_count > header.edge_slots
        {
            return Err(CoreError::CorruptDump("impossible record counts".into()));
        }
        Ok(ImageBuilder {
            header,
            arena: Arena::default(),
            live_nodes: Bits::new(header.node_slots as usize),
            node_ids: IdGroups::new(header.node_count),
            edges: EdgePart::new(&header),
        })
    }

    pub fn node_slab(&mut self) -> &mut ByteSlab {
        &mut self.arena.node_data
    }

    pub fn edge_slab(&mut self) -> &mut ByteSlab {
        &mut self.arena.edge_data
    }

    /// The caller pushes at most `header.node_slots` nodes (`finish` checks the count).
    #[inline]
    pub fn push_node(&mut self, n: RawNode) {
        let slot = self.arena.nodes.push(Node {
            id: n.id,
            created_at: n.created_at,
            data: n.data,
            head_out: n.head_out,
            head_in: n.head_in,
        });
        if n.data != FREE_NODE {
            self.live_nodes.set(slot);
            self.node_ids.push(n.id, slot as u32);
        }
    }

    #[inline]
    pub fn push_edge(&mut self, e: RawEdge) {
        self.edges.push(e);
    }

    /// The edge records, read elsewhere, in place of any pushed here.
    pub fn put_edges(&mut self, part: EdgePart) {
        self.edges = part;
    }

    /// The arena, once its records pass the checks; the id indices rebuilt. Nodes and
    /// edges are checked and indexed on one thread each: an index is built only from
    /// records that passed their checks.
    pub fn finish(self) -> CoreResult<Arena> {
        let ImageBuilder {
            header,
            mut arena,
            live_nodes,
            node_ids,
            edges:
                EdgePart {
                    edges: edge_records,
                    ids: edge_ids,
                },
        } = self;
        arena.edges = edge_records;
        let bad = |why: &str| CoreError::CorruptDump(why.to_owned());
        let (ns, es) = (arena.nodes.len(), arena.edges.len());
        if ns as u64 != header.node_slots || es as u64 != header.edge_slots {
            return Err(bad("truncated"));
        }
        let (nodes, edges) = (&arena.nodes, &arena.edges);
        let (node_data, edge_data) = (&arena.node_data, &arena.edge_data);
        let (checked_nodes, checked_edges) = std::thread::scope(|scope| {
            let node_job = scope.spawn(|| check_nodes(nodes, node_data, es, node_ids));
            let checked_edges = check_edges(nodes, edges, edge_data, &live_nodes, edge_ids);
            (node_job.join().expect("node check thread"), checked_edges)
        });
        let (n, e) = (checked_nodes?, checked_edges?);
        drop(live_nodes);
        // Each live edge linked exactly once per direction (by a node's head or by
        // another edge) and no free one at all: a walk from a list head then meets
        // every edge at most once and ends.
        let mut live_edges = arena.edges.iter().map(|edge| edge.src != NIL);
        for w in 0..es.div_ceil(64) {
            let live = (0..64).fold(0u64, |acc, bit| {
                acc | (u64::from(live_edges.next() == Some(true)) << bit)
            });
            let (out_a, out_b) = (n.out_links.0[w], e.out_links.0[w]);
            let (in_a, in_b) = (n.in_links.0[w], e.in_links.0[w]);
            if out_a & out_b != 0
                || out_a | out_b != live
                || in_a & in_b != 0
                || in_a | in_b != live
            {
                return Err(bad("bad adjacency lists"));
            }
        }
        drop(live_edges);
        if n.live as u64 != header.node_count || e.live as u64 != header.edge_count {
            return Err(bad("record counts do not match"));
        }
        arena.node_free = free_list(ns - n.live, header.node_free, |s| {
            let node = arena.nodes.get(s as usize);
            (node.data == FREE_NODE).then_some(node.head_out)
        })
        .ok_or_else(|| bad("bad free list"))?;
        arena.edge_free = free_list(es - e.live, header.edge_free, |s| {
            let edge = arena.edges.get(s as usize);
            (edge.src == NIL).then_some(edge.next_out)
        })
        .ok_or_else(|| bad("bad free list"))?;
        arena.node_count = n.live;
        arena.edge_count = e.live;
        arena.node_data.set_live(n.bytes);
        arena.edge_data.set_live(e.bytes);
        arena.node_index = n.index;
        arena.edge_index = e.index;
        Ok(arena)
    }
}

fn check_nodes(
    nodes: &SegVec<Node>,
    data: &ByteSlab,
    es: usize,
    ids: IdGroups,
) -> CoreResult<Checked> {
    let bad = |why: &str| CoreError::CorruptDump(why.to_owned());
    let ns = nodes.len();
    let slot_ok = |s: u32, bound: usize| s == NIL || (s as usize) < bound;
    let (mut out_links, mut in_links) = (Bits::new(es), Bits::new(es));
    let (mut live, mut bytes) = (0usize, 0usize);
    for n in nodes.iter() {
        if n.data == FREE_NODE {
            if !slot_ok(n.head_out, ns) {
                return Err(bad("bad free list"));
            }
            continue;
        }
        live += 1;
        if ExprType::from_u8((n.data >> HANDLE_BITS) as u8).is_none() {
            return Err(bad("bad expression type"));
        }
        bytes += check_node_blob(data, n.data & HANDLE_MASK)
            .ok_or_else(|| bad("bad substrate bytes"))?;
        if !slot_ok(n.head_out, es) || !slot_ok(n.head_in, es) {
            return Err(bad("bad adjacency link"));
        }
        if (n.head_out != NIL && !out_links.mark(n.head_out as usize))
            || (n.head_in != NIL && !in_links.mark(n.head_in as usize))
        {
            return Err(bad("bad adjacency lists"));
        }
    }
    // Every pushed slot is a node slot, so the hasher (never called: see `build`) is safe.
    let index = ids.build(|&s| nodes.get(s as usize).id);
    Ok(Checked {
        live,
        bytes,
        out_links,
        in_links,
        index,
    })
}

fn check_edges(
    nodes: &SegVec<Node>,
    edges: &SegVec<Edge>,
    data: &ByteSlab,
    live_nodes: &Bits,
    ids: IdGroups,
) -> CoreResult<Checked> {
    let bad = |why: &str| CoreError::CorruptDump(why.to_owned());
    let (ns, es) = (nodes.len(), edges.len());
    let slot_ok = |s: u32, bound: usize| s == NIL || (s as usize) < bound;
    let live_node = |s: u32| (s as usize) < ns && live_nodes.get(s as usize);
    let (mut out_links, mut in_links) = (Bits::new(es), Bits::new(es));
    let (mut live, mut bytes) = (0usize, 0usize);
    for e in edges.iter() {
        if e.src == NIL {
            if !slot_ok(e.next_out, es) {
                return Err(bad("bad free list"));
            }
            continue;
        }
        live += 1;
        if !live_node(e.src) || !live_node(e.dst) {
            return Err(bad("relationship endpoint is not a substrate"));
        }
        if RelType::from_index(((e.data >> HANDLE_BITS) & 0xFF) as u8).is_none() {
            return Err(bad("bad relationship type"));
        }
        if e.data & HANDLE_MASK != NO_BLOB {
            bytes += check_edge_blob(data, e.data & HANDLE_MASK)
                .ok_or_else(|| bad("bad constraints bytes"))?;
        }
        if !slot_ok(e.next_out, es) || !slot_ok(e.next_in, es) {
            return Err(bad("bad adjacency link"));
        }
        if (e.next_out != NIL && !out_links.mark(e.next_out as usize))
            || (e.next_in != NIL && !in_links.mark(e.next_in as usize))
        {
            return Err(bad("bad adjacency lists"));
        }
    }
    // Every live edge's endpoints and type were checked above, so the hasher (never
    // called: see `build`) can compute any pushed edge's id.
    let index = ids.build(|&s| edge_id(nodes, edges.get(s as usize)));
    Ok(Checked {
        live,
        bytes,
        out_links,
        in_links,
        index,
    })
}

/// The head of a free list of `free` slots, each taken by `next` (None when the slot
/// is not free); None when the chain is not exactly that long.
fn free_list(free: usize, head: u32, next: impl Fn(u32) -> Option<u32>) -> Option<Option<u32>> {
    let mut at = head;
    for _ in 0..free {
        if at == NIL {
            return None;
        }
        at = next(at)?;
    }
    (at == NIL).then_some((free > 0).then_some(head))
}

/// The length of a node blob if it decodes inside its chunk as valid UTF-8 code.
fn check_node_blob(slab: &ByteSlab, handle: u64) -> Option<usize> {
    let bytes = slab.try_tail(handle)?;
    let (code_len, a) = try_get_varint(bytes)?;
    let (canon_tag, b) = try_get_varint(bytes.get(a..)?)?;
    let (meta_len, c) = try_get_varint(bytes.get(a + b..)?)?;
    let mut at = a + b + c;
    let code = bytes.get(at..at.checked_add(usize::try_from(code_len).ok()?)?)?;
    std::str::from_utf8(code).ok()?;
    at += code.len();
    if canon_tag != 0 {
        let len = usize::try_from(canon_tag - 1).ok()?;
        std::str::from_utf8(bytes.get(at..at.checked_add(len)?)?).ok()?;
        at += len;
    }
    at = at.checked_add(usize::try_from(meta_len).ok()?)?;
    (at <= bytes.len()).then_some(at)
}

fn check_edge_blob(slab: &ByteSlab, handle: u64) -> Option<usize> {
    let bytes = slab.try_tail(handle)?;
    let (len, used) = try_get_varint(bytes)?;
    let end = used.checked_add(usize::try_from(len).ok()?)?;
    (end <= bytes.len()).then_some(end)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Enough ids for several groups: every id is found at its slot, whatever group
    /// it went through, and the table holds them without growing.
    #[test]
    fn grouped_ids_build_the_same_index() {
        let count = 300_000u64;
        let ids: Vec<u64> = (0..count)
            .map(|i| xxhash_rust::xxh3::xxh3_64(&i.to_le_bytes()))
            .collect();
        let mut groups = IdGroups::new(count);
        assert!(groups.groups.len() > 1, "{} groups", groups.groups.len());
        for (slot, &id) in ids.iter().enumerate() {
            groups.push(id, slot as u32);
        }
        let index = groups.build(|_| unreachable!("the index never grows while built"));
        assert_eq!(index.len(), ids.len());
        assert!(index.capacity() >= with_headroom(ids.len()));
        for (slot, &id) in ids.iter().enumerate() {
            assert_eq!(
                index.find(id, |&s| ids[s as usize] == id),
                Some(&(slot as u32))
            );
        }
        // A header that undercounts only makes the groups uneven.
        let mut few = IdGroups::new(10);
        for (slot, &id) in ids.iter().enumerate().take(50_000) {
            few.push(id, slot as u32);
        }
        assert_eq!(few.build(|_| unreachable!()).len(), 50_000);
    }

    #[test]
    fn bits_mark_once() {
        let mut bits = Bits::new(130);
        assert!(bits.mark(129));
        assert!(!bits.mark(129));
        assert!(bits.get(129) && !bits.get(128));
        bits.set(0);
        assert!(bits.get(0));
    }
}
