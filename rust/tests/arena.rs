#![allow(clippy::map_entry)] // the model checks read clearer as contains/insert
//! Behaviour of the arena through its public API, and the identity vectors.

use std::collections::{BTreeMap, BTreeSet};

use bfx_core::dump;
use bfx_core::{
    format_id, parse_id, relationship_id, substrate_id, Arena, CoreError, ExprType, NewEdge,
    NewSubstrate, RelType,
};

fn sub<'a>(code: &'a str, meta: &'a [u8]) -> NewSubstrate<'a> {
    NewSubstrate {
        expr_type: ExprType::Expression,
        code,
        canonical: code,
        metadata: meta,
        created_at: 1_700_000_000_000_000,
        expected_id: None,
    }
}

fn edge(rel: RelType, source: u64, target: u64, bidirectional: bool) -> NewEdge<'static> {
    NewEdge {
        rel,
        source,
        target,
        bidirectional,
        constraints: b"",
        created_at: 5,
    }
}

#[test]
fn identity_vectors_match_the_published_file() {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../tests/identity_vectors.json"
    ))
    .expect("vectors file");
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let subs = v["substrates"].as_array().unwrap();
    assert!(subs.len() >= 5);
    for s in subs {
        let t = ExprType::parse(s["expression_type"].as_str().unwrap()).unwrap();
        let id = substrate_id(t, s["canonical_code"].as_str().unwrap());
        assert_eq!(format_id(id), s["id"].as_str().unwrap(), "{s}");
    }
    for r in v["relationships"].as_array().unwrap() {
        let id = relationship_id(
            parse_id(r["source_id"].as_str().unwrap()).unwrap(),
            parse_id(r["target_id"].as_str().unwrap()).unwrap(),
            RelType::parse(r["rel_type"].as_str().unwrap()).unwrap(),
        );
        assert_eq!(format_id(id), r["id"].as_str().unwrap(), "{r}");
    }
}

#[test]
fn insert_get_duplicate_collision_and_remove() {
    let mut a = Arena::new();
    let id = a.insert(&sub("x + 1", b"{\"name\":\"inc\"}")).unwrap();
    assert_eq!(id, substrate_id(ExprType::Expression, "x + 1"));
    let got = a.get(id).unwrap();
    assert_eq!(
        (got.code, got.canonical, got.metadata),
        ("x + 1", "x + 1", &b"{\"name\":\"inc\"}"[..])
    );
    assert_eq!(
        a.insert(&sub("x + 1", b"")),
        Err(CoreError::Duplicate {
            kind: bfx_core::error::Kind::Substrate,
            id
        })
    );
    // A different code with the same canonical form is the same substrate.
    let spaced = NewSubstrate {
        code: "x+1",
        ..sub("x + 1", b"")
    };
    assert!(matches!(
        a.insert(&spaced),
        Err(CoreError::Duplicate { .. })
    ));
    // The code as submitted is kept beside the canonical form.
    let other = NewSubstrate {
        code: "y  *2",
        canonical: "y * 2",
        ..sub("", b"")
    };
    let oid = a.insert(&other).unwrap();
    assert_eq!(a.get(oid).unwrap().code, "y  *2");
    assert_eq!(a.get(oid).unwrap().canonical, "y * 2");
    // An id handed in that does not match the content is refused.
    let forged = NewSubstrate {
        expected_id: Some(id),
        ..sub("x + 2", b"")
    };
    assert!(matches!(
        a.insert(&forged),
        Err(CoreError::IdMismatch { .. })
    ));
    assert_eq!(a.len(), 2);
    assert_eq!(a.remove(id), Ok(0));
    assert!(a.get(id).is_none());
    assert!(matches!(a.remove(id), Err(CoreError::NotFound { .. })));
    // The freed slot is reused and the record is whole.
    let again = a.insert(&sub("z", b"m")).unwrap();
    assert_eq!(a.get(again).unwrap().metadata, b"m");
    assert_eq!(a.len(), 2);
}

#[test]
fn bidirectional_edges_are_listed_both_ways_and_self_loops_once() {
    let mut a = Arena::new();
    let x = a.insert(&sub("x", b"")).unwrap();
    let y = a.insert(&sub("y", b"")).unwrap();
    let z = a.insert(&sub("z", b"")).unwrap();
    let xy = a.link(&edge(RelType::Dependency, x, y, false)).unwrap();
    let yz = a.link(&edge(RelType::Sibling, y, z, true)).unwrap();
    let zz = a.link(&edge(RelType::Recursion, z, z, true)).unwrap();
    let ids = |r: (usize, Vec<bfx_core::EdgeView<'_>>)| -> BTreeSet<u64> {
        assert_eq!(r.0, r.1.len());
        r.1.iter().map(|e| e.id).collect()
    };
    assert_eq!(
        ids(a.outgoing(x, None, 0, usize::MAX).unwrap()),
        BTreeSet::from([xy])
    );
    assert_eq!(
        ids(a.incoming(x, None, 0, usize::MAX).unwrap()),
        BTreeSet::new()
    );
    assert_eq!(
        ids(a.outgoing(y, None, 0, usize::MAX).unwrap()),
        BTreeSet::from([yz])
    );
    assert_eq!(
        ids(a.incoming(y, None, 0, usize::MAX).unwrap()),
        BTreeSet::from([xy, yz])
    );
    assert_eq!(
        ids(a.outgoing(z, None, 0, usize::MAX).unwrap()),
        BTreeSet::from([yz, zz])
    );
    assert_eq!(
        ids(a.incoming(z, None, 0, usize::MAX).unwrap()),
        BTreeSet::from([yz, zz])
    );
    assert_eq!(
        ids(a
            .outgoing(z, Some(RelType::Sibling), 0, usize::MAX)
            .unwrap()),
        BTreeSet::from([yz])
    );
    // Pages: the total counts every match, the page only what was asked.
    let (total, page) = a.incoming(y, None, 1, 1).unwrap();
    assert_eq!((total, page.len()), (2, 1));
    assert!(matches!(
        a.link(&edge(RelType::Dependency, x, y, true)),
        Err(CoreError::Duplicate { .. })
    ));
    // The same pair with another type is another edge.
    a.link(&edge(RelType::Lineage, x, y, false)).unwrap();
    assert!(matches!(
        a.link(&edge(RelType::Lineage, x, 12345, false)),
        Err(CoreError::NotFound { id: 12345, .. })
    ));
    assert_eq!(a.edges_matching(None, Some(x), Some(y), 0, 10).0, 2);
    assert_eq!(
        a.edges_matching(Some(RelType::Lineage), None, None, 0, 10)
            .0,
        1
    );
    assert_eq!(a.edges_matching(None, Some(999), None, 0, 10).0, 0);
    // Deleting z takes its two edges and leaves the rest intact.
    assert_eq!(a.remove(z), Ok(2));
    assert!(a.edge(yz).is_none() && a.edge(zz).is_none());
    assert_eq!(a.edge_count(), 2);
    assert_eq!(
        ids(a.outgoing(y, None, 0, usize::MAX).unwrap()),
        BTreeSet::new()
    );
    a.unlink(xy).unwrap();
    assert!(matches!(a.unlink(xy), Err(CoreError::NotFound { .. })));
    assert_eq!(a.outgoing(x, None, 0, 10).unwrap().0, 1);
}

#[test]
fn pages_walk_every_id_in_order_once() {
    let mut a = Arena::new();
    let codes: Vec<String> = (0..1000).map(|i| format!("x + {i}")).collect();
    let mut all: Vec<u64> = codes
        .iter()
        .map(|c| a.insert(&sub(c, b"")).unwrap())
        .collect();
    all.sort_unstable();
    let mut seen = Vec::new();
    let mut cursor = None;
    loop {
        let (ids, next) = a.page(cursor, 128);
        seen.extend(ids);
        match next {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    assert_eq!(seen, all);
    // scan visits the same set in storage order.
    let (scanned, next) = a.scan(0, 10_000);
    assert!(next.is_none());
    assert_eq!(scanned.len(), 1000);
}

#[test]
fn dump_round_trips_and_rejects_damage() {
    let mut a = Arena::new();
    let x = a.insert(&sub("x", b"{\"k\":1}")).unwrap();
    let y = a
        .insert(&NewSubstrate {
            code: "y   ",
            canonical: "y",
            ..sub("", b"")
        })
        .unwrap();
    let e = a
        .link(&NewEdge {
            constraints: b"{\"w\":2}",
            ..edge(RelType::Composition, x, y, true)
        })
        .unwrap();
    let bytes = dump::dump(&a);
    let b = dump::load(&bytes).unwrap();
    assert_eq!(b.get(x), a.get(x));
    assert_eq!(b.get(y), a.get(y));
    assert_eq!(b.edge(e), a.edge(e));
    for cut in [0, 10, bytes.len() / 2, bytes.len() - 1] {
        assert!(matches!(
            dump::load(&bytes[..cut]),
            Err(CoreError::CorruptDump(_))
        ));
    }
    let mut flipped = bytes.clone();
    flipped[40] ^= 1;
    assert!(matches!(
        dump::load(&flipped),
        Err(CoreError::CorruptDump(_))
    ));
}

/// Re-seals a hand-edited dump with a valid checksum, as a forger would.
fn reseal(body: &[u8]) -> Vec<u8> {
    let mut out = body.to_vec();
    out.extend_from_slice(&xxhash_rust::xxh3::xxh3_64(body).to_le_bytes());
    out
}

/// `bytes` written to a file after a header of its own (as snapshots are), then
/// loaded by `dump::load_file` as `len` bytes from the header's end.
fn via_file(bytes: &[u8], len: u64) -> Result<Arena, CoreError> {
    use std::io::Write;
    use std::sync::atomic::{AtomicUsize, Ordering};
    static FILES: AtomicUsize = AtomicUsize::new(0);
    let n = FILES.fetch_add(1, Ordering::Relaxed);
    let path = std::env::temp_dir().join(format!("bfx-dump-{}-{n}", std::process::id()));
    let header = b"a header of the caller's own\n";
    let mut file = std::fs::File::create(&path).unwrap();
    file.write_all(header).unwrap();
    file.write_all(bytes).unwrap();
    drop(file);
    let file = std::fs::File::open(&path).unwrap();
    std::fs::remove_file(&path).unwrap();
    dump::load_file(&file, header.len() as u64, len)
}

#[test]
fn streamed_dump_matches_the_buffer_and_loads_from_a_reader() {
    let mut a = Arena::new();
    let ids: Vec<u64> = (0..200)
        .map(|i| {
            let code = format!("x + {i}");
            let meta = format!("{{\"i\":{i}}}");
            a.insert(&sub(&code, meta.as_bytes())).unwrap()
        })
        .collect();
    for pair in ids.windows(2) {
        a.link(&edge(RelType::Lineage, pair[0], pair[1], false))
            .unwrap();
    }
    // Fields larger than the 1 MiB stream buffer, and a dump spanning several.
    let big_meta = vec![b'7'; 3 << 20];
    let big_code = "y".repeat((1 << 20) + 5);
    let big = a.insert(&sub(&big_code, &big_meta)).unwrap();
    let bytes = dump::dump(&a);
    assert!(bytes.len() > 4 << 20);
    let mut streamed = Vec::new();
    dump::dump_to(&a, &mut streamed).unwrap();
    assert_eq!(streamed, bytes);

    // A reader that hands out a few bytes at a time, like a slow file.
    struct Dribble<'a>(&'a [u8]);
    impl std::io::Read for Dribble<'_> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            let n = buf.len().min(self.0.len()).min(3);
            buf[..n].copy_from_slice(&self.0[..n]);
            self.0 = &self.0[n..];
            Ok(n)
        }
    }
    let b = dump::load_from(Dribble(&bytes), bytes.len() as u64).unwrap();
    assert_eq!(b.len(), 201);
    assert_eq!(b.edge_count(), 199);
    assert_eq!(b.get(big), a.get(big));
    for id in &ids {
        assert_eq!(b.get(*id), a.get(*id));
    }
    // From a file, in two streams (the edges read on a thread of their own).
    let c = via_file(&bytes, bytes.len() as u64).unwrap();
    assert_eq!(everything(&c), everything(&a));
    // The stated length is the dump: more input, or less, is refused.
    let mut longer = bytes.clone();
    longer.push(0);
    for (input, len) in [
        (&longer[..], bytes.len() as u64),
        (&longer[..], longer.len() as u64),
        (&bytes[..], bytes.len() as u64 - 1),
        (&bytes[..], bytes.len() as u64 + 1),
    ] {
        assert!(
            matches!(dump::load_from(input, len), Err(CoreError::CorruptDump(_))),
            "len {len} of {}",
            input.len()
        );
        assert!(
            matches!(via_file(input, len), Err(CoreError::CorruptDump(_))),
            "len {len} of a file of {}",
            input.len()
        );
    }
}

#[test]
fn forged_dumps_with_valid_checksums_are_refused_without_huge_allocations() {
    let mut a = Arena::new();
    let x = a.insert(&sub("x", b"")).unwrap();
    let y = a.insert(&sub("y", b"")).unwrap();
    a.link(&edge(RelType::Dependency, x, y, false)).unwrap();
    // The previous format (version 2), which servers still load.
    let bytes = dump::dump_records(&a);
    let body = &bytes[..bytes.len() - 8];
    let first = 28; // magic, version, two counts

    // A wrong id for its content.
    let mut wrong_id = body.to_vec();
    wrong_id[first] ^= 1;
    // A code length of 4 GiB in a dump of a few dozen bytes.
    let mut huge = body.to_vec();
    huge[first + 17..first + 21].copy_from_slice(&u32::MAX.to_le_bytes());
    // Counts far beyond what the bytes could hold.
    let mut counts = body.to_vec();
    counts[12..20].copy_from_slice(&u64::MAX.to_le_bytes());
    // A relationship whose source was never stored.
    let mut dangling = body.to_vec();
    let edge_at = body.len() - (8 + 8 + 2 + 8 + 4);
    dangling[edge_at..edge_at + 8].copy_from_slice(&12345u64.to_le_bytes());
    // A newer format version.
    let mut version = body.to_vec();
    version[8] = 4;
    for (what, forged) in [
        ("wrong id", wrong_id),
        ("huge length", huge),
        ("huge counts", counts),
        ("dangling edge", dangling),
        ("version", version),
    ] {
        let sealed = reseal(&forged);
        assert!(
            matches!(dump::load(&sealed), Err(CoreError::CorruptDump(_))),
            "{what}"
        );
        assert!(
            matches!(
                dump::load_from(&sealed[..], sealed.len() as u64),
                Err(CoreError::CorruptDump(_))
            ),
            "{what}, streamed"
        );
        assert!(
            matches!(
                via_file(&sealed, sealed.len() as u64),
                Err(CoreError::CorruptDump(_))
            ),
            "{what}, from a file"
        );
    }
    assert!(dump::load(&reseal(body)).is_ok());
    assert!(dump::load_from(&bytes[..], bytes.len() as u64).is_ok());
}

/// Everything a reader can see of an arena, for comparing two of them.
fn everything(a: &Arena) -> (Vec<String>, Vec<String>) {
    let mut subs: Vec<String> = a.iter().map(|s| format!("{s:?}")).collect();
    let mut edges: Vec<String> = a.iter_edges().map(|e| format!("{e:?}")).collect();
    for s in a.iter() {
        for (total, page) in [
            a.outgoing(s.id, None, 0, usize::MAX).unwrap(),
            a.incoming(s.id, None, 0, usize::MAX).unwrap(),
        ] {
            edges.push(format!("{:x} {total} {:?}", s.id, page));
        }
    }
    subs.sort();
    edges.sort();
    (subs, edges)
}

/// An arena with deletes behind it (free slots in both lists, garbage in the slabs).
fn churned() -> (Arena, Vec<u64>) {
    let mut a = Arena::new();
    let ids: Vec<u64> = (0..300)
        .map(|i| {
            let code = format!("x * {i}");
            a.insert(&sub(&code, format!("{{\"i\":{i}}}").as_bytes()))
                .unwrap()
        })
        .collect();
    for (i, pair) in ids.windows(2).enumerate() {
        let rel = RelType::from_index((i % 17) as u8).unwrap();
        a.link(&NewEdge {
            constraints: if i % 3 == 0 { b"{\"w\":1}" } else { b"" },
            ..edge(rel, pair[0], pair[1], i % 5 == 0)
        })
        .unwrap();
        a.link(&edge(RelType::Lineage, pair[1], pair[1], false))
            .ok();
    }
    for id in ids.iter().step_by(7) {
        a.remove(*id).unwrap();
    }
    (a, ids)
}

#[test]
fn an_image_round_trips_exactly_and_both_copies_go_on_alike() {
    let (a, ids) = churned();
    let bytes = dump::dump(&a);
    assert_eq!(&bytes[8..12], &3u32.to_le_bytes());
    let mut b = dump::load(&bytes).unwrap();
    let streamed = dump::load_from(&bytes[..], bytes.len() as u64).unwrap();
    let from_file = via_file(&bytes, bytes.len() as u64).unwrap();
    assert_eq!(everything(&a), everything(&b));
    assert_eq!(everything(&a), everything(&streamed));
    assert_eq!(everything(&a), everything(&from_file));
    assert_eq!(dump::dump(&from_file), bytes);
    assert_eq!((a.len(), a.edge_count()), (b.len(), b.edge_count()));
    // The free lists came back too: the same writes land in the same slots.
    let mut a = a;
    for arena in [&mut a, &mut b] {
        let n = arena.insert(&sub("fresh", b"")).unwrap();
        arena
            .link(&edge(RelType::Dependency, n, ids[1], false))
            .unwrap();
        arena.remove(ids[2]).unwrap();
    }
    assert_eq!(everything(&a), everything(&b));
    assert_eq!(dump::dump(&a), dump::dump(&b));
    // And the previous format still loads into the same records, from a file too.
    let v2 = dump::dump_records(&a);
    let old = dump::load(&v2).unwrap();
    assert_eq!(everything(&a).0, everything(&old).0);
    let old = via_file(&v2, v2.len() as u64).unwrap();
    assert_eq!(everything(&a).0, everything(&old).0);
}

#[test]
fn damaged_images_are_refused_even_with_a_valid_checksum() {
    let (a, _) = churned();
    let bytes = dump::dump(&a);
    let body = &bytes[..bytes.len() - 8];
    let u64_at = |at: usize| u64::from_le_bytes(body[at..at + 8].try_into().unwrap());
    let (node_slots, edge_slots) = (u64_at(12) as usize, u64_at(32) as usize);
    let edges_at = body.len() - edge_slots * 40;
    let nodes_at = edges_at - node_slots * 32;
    let live_edge = (0..edge_slots)
        .map(|i| edges_at + i * 40)
        .find(|&at| body[at..at + 4] != [0xFF; 4])
        .unwrap();
    let live_node = (0..node_slots)
        .map(|i| nodes_at + i * 32)
        .find(|&at| body[at + 16..at + 24] != [0xFF; 8])
        .unwrap();
    let u32_at = |at: usize| u32::from_le_bytes(body[at..at + 4].try_into().unwrap());
    // A substrate with outgoing edges, and an edge that another edge's list continues to.
    let node_with_out = (0..node_slots)
        .map(|i| nodes_at + i * 32)
        .find(|&at| body[at + 16..at + 24] != [0xFF; 8] && u32_at(at + 24) != u32::MAX)
        .unwrap();
    let next_of_an_edge = (0..edge_slots)
        .map(|i| u32_at(edges_at + i * 40 + 8))
        .find(|&next| next != u32::MAX)
        .unwrap();
    let edit = |at: usize, bytes: &[u8]| {
        let mut out = body.to_vec();
        out[at..at + bytes.len()].copy_from_slice(bytes);
        out
    };
    let cases = [
        (
            "endpoint out of range",
            edit(live_edge, &u32::MAX.wrapping_sub(1).to_le_bytes()),
        ),
        (
            "link out of range",
            edit(live_edge + 8, &(edge_slots as u32 + 5).to_le_bytes()),
        ),
        // A list that loops back on itself.
        (
            "edge linked to itself",
            edit(
                live_edge + 8,
                &(((live_edge - edges_at) / 40) as u32).to_le_bytes(),
            ),
        ),
        // Edges no list reaches any more, and an edge in two substrates' lists (the
        // heads and the edges' links are checked on different threads).
        (
            "outgoing list cut off",
            edit(node_with_out + 24, &u32::MAX.to_le_bytes()),
        ),
        (
            "edge linked by a head and by an edge",
            edit(node_with_out + 24, &next_of_an_edge.to_le_bytes()),
        ),
        (
            "slab handle out of range",
            edit(live_node + 16, &[0xEE, 0xEE, 0xEE, 0xEE]),
        ),
        ("bad expression type", edit(live_node + 22, &[0x7F, 0x00])),
        ("bad relationship type", edit(live_edge + 30, &[0xF0])),
        ("node count", edit(20, &(u64_at(20) + 1).to_le_bytes())),
        ("free list", edit(28, &u32::MAX.to_le_bytes())),
        ("huge slot count", edit(12, &u64::MAX.to_le_bytes())),
        ("huge chunk count", edit(52, &u64::MAX.to_le_bytes())),
        ("truncated records", body[..body.len() - 40].to_vec()),
        ("version", edit(8, &9u32.to_le_bytes())),
    ];
    for (what, forged) in cases {
        let sealed = reseal(&forged);
        assert!(
            matches!(dump::load(&sealed), Err(CoreError::CorruptDump(_))),
            "{what}"
        );
        assert!(
            matches!(
                dump::load_from(&sealed[..], sealed.len() as u64),
                Err(CoreError::CorruptDump(_))
            ),
            "{what}, streamed"
        );
        assert!(
            matches!(
                via_file(&sealed, sealed.len() as u64),
                Err(CoreError::CorruptDump(_))
            ),
            "{what}, from a file"
        );
    }
    // Unsealed damage anywhere is the checksum's to catch.
    for at in [0, 12, 60, nodes_at + 3, edges_at + 17, body.len() - 1] {
        let mut flipped = bytes.clone();
        flipped[at] ^= 0x10;
        assert!(dump::load(&flipped).is_err(), "flip at {at}");
        assert!(
            dump::load_from(&flipped[..], flipped.len() as u64).is_err(),
            "flip at {at}, streamed"
        );
        assert!(
            via_file(&flipped, flipped.len() as u64).is_err(),
            "flip at {at}, from a file"
        );
    }
    assert!(dump::load(&reseal(body)).is_ok());
    assert!(via_file(&reseal(body), body.len() as u64 + 8).is_ok());
}

/// A version-1 dump (substrates carried an invocation count) is refused as
/// unsupported, before any record is read, whichever way it is loaded: the
/// storage layer then loads in full from its database.
#[test]
fn a_version_1_dump_is_refused_as_unsupported() {
    let (code, canonical) = ("x", "x");
    let id = substrate_id(ExprType::Expression, canonical);
    let mut body = Vec::new();
    body.extend_from_slice(b"BFXARENA");
    body.extend_from_slice(&1u32.to_le_bytes());
    body.extend_from_slice(&1u64.to_le_bytes());
    body.extend_from_slice(&0u64.to_le_bytes());
    body.extend_from_slice(&id.to_le_bytes());
    body.extend_from_slice(&1i64.to_le_bytes());
    body.extend_from_slice(&7u32.to_le_bytes()); // the old invocation count
    body.push(ExprType::Expression as u8);
    for part in [code, canonical, ""] {
        body.extend_from_slice(&(part.len() as u32).to_le_bytes());
    }
    body.extend_from_slice(code.as_bytes());
    body.extend_from_slice(canonical.as_bytes());
    let sealed = reseal(&body);
    let unsupported = |r: Result<Arena, CoreError>| matches!(r, Err(CoreError::CorruptDump(why)) if why == "unsupported dump version 1");
    assert!(unsupported(dump::load(&sealed)));
    assert!(unsupported(dump::load_from(
        &sealed[..],
        sealed.len() as u64
    )));
}

#[test]
fn atomic_batches_write_all_or_nothing() {
    let mut a = Arena::new();
    let items = [sub("a", b""), sub("b", b""), sub("a", b"")];
    let (results, written) = a.insert_many(&items, true);
    assert!(!written);
    assert!(results[0].is_ok() && results[1].is_ok());
    assert!(matches!(results[2], Err(CoreError::Duplicate { .. })));
    assert_eq!(a.len(), 0);
    let (results, written) = a.insert_many(&items, false);
    assert!(written);
    assert!(matches!(results[2], Err(CoreError::Duplicate { .. })));
    assert_eq!(a.len(), 2);
}

/// A small deterministic generator, so the model test needs no dependency.
struct Lcg(u64);
impl Lcg {
    fn next(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % n
    }
}

#[test]
fn random_operations_agree_with_a_plain_model() {
    let mut rng = Lcg(42);
    let mut a = Arena::new();
    let mut nodes: BTreeMap<u64, String> = BTreeMap::new();
    // rid -> (source, target, rel, bidirectional)
    let mut edges: BTreeMap<u64, (u64, u64, RelType, bool)> = BTreeMap::new();
    let codes: Vec<String> = (0..60).map(|i| format!("n{i}")).collect();
    for step in 0..20_000 {
        match rng.next(10) {
            0..=2 => {
                let code = &codes[rng.next(60) as usize];
                let r = a.insert(&sub(code, code.as_bytes()));
                let id = substrate_id(ExprType::Expression, code);
                if nodes.contains_key(&id) {
                    assert!(matches!(r, Err(CoreError::Duplicate { .. })), "step {step}");
                } else {
                    assert_eq!(r, Ok(id));
                    nodes.insert(id, code.clone());
                }
            }
            3 => {
                let code = &codes[rng.next(60) as usize];
                let id = substrate_id(ExprType::Expression, code);
                let r = a.remove(id);
                if nodes.remove(&id).is_some() {
                    let before = edges.len();
                    edges.retain(|_, (s, t, _, _)| *s != id && *t != id);
                    assert_eq!(r, Ok(before - edges.len()), "step {step}");
                } else {
                    assert!(r.is_err());
                }
            }
            4..=6 => {
                let s = substrate_id(ExprType::Expression, &codes[rng.next(60) as usize]);
                let t = substrate_id(ExprType::Expression, &codes[rng.next(60) as usize]);
                let rel = RelType::ALL[rng.next(3) as usize];
                let bidi = rng.next(2) == 0;
                let r = a.link(&edge(rel, s, t, bidi));
                let rid = relationship_id(s, t, rel);
                if !nodes.contains_key(&s) || !nodes.contains_key(&t) {
                    assert!(matches!(r, Err(CoreError::NotFound { .. })));
                } else if edges.contains_key(&rid) {
                    assert!(matches!(r, Err(CoreError::Duplicate { .. })));
                } else {
                    assert_eq!(r, Ok(rid));
                    edges.insert(rid, (s, t, rel, bidi));
                }
            }
            7 => {
                if let Some((&rid, _)) = edges
                    .iter()
                    .nth(rng.next(edges.len().max(1) as u64) as usize)
                {
                    a.unlink(rid).unwrap();
                    edges.remove(&rid);
                }
            }
            _ => {
                let id = substrate_id(ExprType::Expression, &codes[rng.next(60) as usize]);
                match a.outgoing(id, None, 0, usize::MAX) {
                    Err(_) => assert!(!nodes.contains_key(&id)),
                    Ok((_, page)) => {
                        let got: BTreeSet<u64> = page.iter().map(|e| e.id).collect();
                        let want: BTreeSet<u64> = edges
                            .iter()
                            .filter(|(_, (s, t, _, b))| *s == id || (*b && *t == id))
                            .map(|(r, _)| *r)
                            .collect();
                        assert_eq!(got, want, "outgoing at step {step}");
                        let got_in: BTreeSet<u64> = a
                            .incoming(id, None, 0, usize::MAX)
                            .unwrap()
                            .1
                            .iter()
                            .map(|e| e.id)
                            .collect();
                        let want_in: BTreeSet<u64> = edges
                            .iter()
                            .filter(|(_, (s, t, _, b))| *t == id || (*b && *s == id))
                            .map(|(r, _)| *r)
                            .collect();
                        assert_eq!(got_in, want_in, "incoming at step {step}");
                    }
                }
            }
        }
        assert_eq!(a.len(), nodes.len());
        assert_eq!(a.edge_count(), edges.len());
    }
    for (id, code) in &nodes {
        assert_eq!(a.get(*id).unwrap().metadata, code.as_bytes());
    }
    let reloaded = dump::load(&dump::dump(&a)).unwrap();
    assert_eq!(reloaded.len(), nodes.len());
    assert_eq!(reloaded.edge_count(), edges.len());
}

#[test]
fn bulk_load_matches_insert_and_link_and_stops_at_the_first_bad_row() {
    let codes: Vec<String> = (0..200).map(|i| format!("(x) => x + {i}")).collect();
    let subs: Vec<NewSubstrate<'_>> = codes.iter().map(|c| sub(c, b"m")).collect();
    let ids: Vec<u64> = subs
        .iter()
        .map(|s| substrate_id(s.expr_type, s.canonical))
        .collect();
    let rels = &RelType::ALL[..3];
    let edges: Vec<NewEdge<'static>> = (0..1000)
        .map(|i| {
            let (a, b) = (ids[i % 200], ids[(i * 7 + 3) % 200]);
            edge(rels[i % 3], a, b, i % 4 == 0)
        })
        .filter({
            let mut seen = BTreeSet::new();
            move |e| seen.insert((e.source, e.target, e.rel))
        })
        .collect();

    let mut one_by_one = Arena::new();
    for s in &subs {
        one_by_one.insert(s).unwrap();
    }
    for e in &edges {
        one_by_one.link(e).unwrap();
    }
    let mut bulk = Arena::new();
    bulk.reserve(subs.len(), edges.len());
    bulk.load_substrates(&subs).unwrap();
    bulk.load_edges(&edges).unwrap();
    assert_eq!(everything(&bulk), everything(&one_by_one));
    for &id in &ids {
        let out = |a: &Arena| format!("{:?}", a.outgoing(id, None, 0, usize::MAX).unwrap());
        let inc = |a: &Arena| format!("{:?}", a.incoming(id, None, 0, usize::MAX).unwrap());
        assert_eq!(out(&bulk), out(&one_by_one));
        assert_eq!(inc(&bulk), inc(&one_by_one));
    }

    // The first bad row stops the load: its index and why; the rows before it stay.
    let mut bad = edges[..5].to_vec();
    bad.push(edge(rels[0], ids[0], 12345, false));
    bad.push(edge(rels[0], ids[1], ids[2], false));
    let mut partial = Arena::new();
    partial.load_substrates(&subs).unwrap();
    let (at, why) = partial.load_edges(&bad).unwrap_err();
    assert_eq!(at, 5);
    assert!(matches!(why, CoreError::NotFound { .. }), "{why:?}");
    assert_eq!(partial.edge_count(), 5);
    let (at, why) = partial.load_edges(&edges[..1]).unwrap_err();
    assert_eq!(at, 0);
    assert!(matches!(why, CoreError::Duplicate { .. }), "{why:?}");
    let mut wrong = sub(&codes[0], b"");
    wrong.expected_id = Some(ids[0] ^ 1);
    let (at, why) = Arena::new()
        .load_substrates(&[subs[1].clone(), wrong])
        .unwrap_err();
    assert_eq!(at, 1);
    assert!(matches!(why, CoreError::IdMismatch { .. }), "{why:?}");
}
