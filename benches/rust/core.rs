//! Criterion benchmarks of the core, paired with benches/python/bench_core.py
//! so the cost of the Python boundary is visible.
//!
//! Group `pair`: the same operations, on the same data, as the Python tests
//! marked with `extra_info["pair"]`; each benchmark's throughput (elements)
//! is the number of operations per iteration, so `benches/summary.py` can
//! compare nanoseconds per operation. Group `rust_only`: operations without
//! a Python counterpart of the same shape.
//!
//! The fixture (both sides): 100,000 lambdas `lambda **kw: kw.get('x', 0) * i`
//! with metadata `{"name":"bench"}`; three relationships from each substrate
//! i to `(i * 31 + k * 7919) % N` of type `REL_TYPES[k]` (k = 1..3, the third
//! bidirectional); a hub (the first substrate) with 10,000 DEPENDENCY edges.

use criterion::{black_box, criterion_group, criterion_main, BatchSize, Criterion, Throughput};

use bfx_core::{dump, Arena, ExprType, NewEdge, NewSubstrate, RelType};

const N: usize = 100_000;
/// Records per iteration of the insert and get_many benchmarks (as in Python).
const CALLS: usize = 1000;
const METADATA: &[u8] = b"{\"name\":\"bench\"}";
/// The stride through the ids (Python: `ids[(j * STRIDE) % N]`).
const STRIDE: usize = 7919;

fn codes(from: usize, n: usize) -> Vec<String> {
    (from..from + n)
        .map(|i| format!("lambda **kw: kw.get('x', 0) * {i}"))
        .collect()
}

fn sub(code: &str) -> NewSubstrate<'_> {
    NewSubstrate {
        expr_type: ExprType::Lambda,
        code,
        canonical: code,
        metadata: METADATA,
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
        created_at: 1_700_000_000_000_000,
    }
}

/// The shared fixture: N substrates, 3 relationships each, and a hub.
fn fixture(codes: &[String]) -> (Arena, Vec<u64>) {
    let n = codes.len();
    let mut arena = Arena::with_capacity(n, 3 * n + 10_000);
    let ids: Vec<u64> = codes
        .iter()
        .map(|c| arena.insert(&sub(c)).unwrap())
        .collect();
    for (i, &s) in ids.iter().enumerate() {
        for k in 1..=3 {
            let t = ids[(i * 31 + k * 7919) % n];
            arena.link(&edge(RelType::ALL[k], s, t, k == 3)).unwrap();
        }
    }
    for &t in &ids[1..10_001] {
        arena
            .link(&edge(RelType::Dependency, ids[0], t, false))
            .unwrap();
    }
    (arena, ids)
}

/// Every id once, in a scattered order (STRIDE is prime to N), as in Python: the
/// per-call benchmarks visit all of them, so each call pays the cache misses
/// of a random lookup rather than hitting a small hot set.
fn strided(ids: &[u64]) -> Vec<u64> {
    (0..ids.len())
        .map(|j| ids[(j * STRIDE) % ids.len()])
        .collect()
}

fn bench_pairs(c: &mut Criterion) {
    let all_codes = codes(0, N);
    let (mut arena, ids) = fixture(&all_codes);
    let visit = strided(&ids);
    let hub = ids[0];
    let mut group = c.benchmark_group("pair");

    group.throughput(Throughput::Elements(CALLS as u64));
    let batch = &visit[..CALLS];
    group.bench_function("get_many", |b| {
        b.iter(|| {
            let found: Vec<_> = batch.iter().map(|&id| arena.get(id)).collect();
            black_box(found.len())
        })
    });
    let fresh = codes(10_000_000, CALLS);
    group.bench_function("insert", |b| {
        b.iter_batched(
            Arena::new,
            |mut a| {
                for code in &fresh {
                    black_box(a.insert(&sub(code)).unwrap());
                }
                a
            },
            BatchSize::SmallInput,
        )
    });

    group.throughput(Throughput::Elements(N as u64));
    group.sample_size(20);
    group.bench_function("get", |b| {
        b.iter(|| {
            for &id in &visit {
                black_box(arena.get(id).map(|s| s.code.len()));
            }
        })
    });
    group.bench_function("outgoing", |b| {
        b.iter(|| {
            for &id in &visit {
                black_box(arena.outgoing(id, None, 0, usize::MAX).unwrap().1.len());
            }
        })
    });

    group.sample_size(100);
    group.throughput(Throughput::Elements(1));
    group.bench_function("outgoing_hub_page", |b| {
        b.iter(|| black_box(arena.outgoing(hub, None, 0, 100).unwrap().1.len()))
    });
    group.bench_function("link_unlink", |b| {
        b.iter(|| {
            let rid = arena
                .link(&edge(RelType::Orthogonal, ids[1], ids[2], false))
                .unwrap();
            arena.unlink(rid).unwrap();
        })
    });

    group.throughput(Throughput::Elements(N as u64));
    group.sample_size(20);
    group.bench_function("insert_many", |b| {
        let items: Vec<NewSubstrate<'_>> = all_codes.iter().map(|c| sub(c)).collect();
        b.iter_batched(
            || Arena::with_capacity(N, 0),
            |mut a| {
                let (results, _) = a.insert_many(&items, false);
                black_box(results.len());
                a
            },
            BatchSize::PerIteration,
        )
    });

    // link_many: 30,000 relationships into a fresh arena of 10,000 substrates.
    let small_codes = codes(0, 10_000);
    group.throughput(Throughput::Elements(30_000));
    group.bench_function("link_many", |b| {
        b.iter_batched(
            || {
                let mut a = Arena::with_capacity(10_000, 30_000);
                let sids: Vec<u64> = small_codes
                    .iter()
                    .map(|c| a.insert(&sub(c)).unwrap())
                    .collect();
                let rows: Vec<NewEdge<'static>> = (0..30_000)
                    .map(|j| {
                        let (i, k) = (j / 3, j % 3 + 1);
                        edge(
                            RelType::ALL[k],
                            sids[i],
                            sids[(i * 31 + k * 7919) % 10_000],
                            k == 3,
                        )
                    })
                    .collect();
                (a, rows)
            },
            |(mut a, rows)| {
                let (results, _) = a.link_many(&rows, false);
                black_box(results.len());
                a
            },
            BatchSize::PerIteration,
        )
    });

    group.sample_size(10);
    group.throughput(Throughput::Elements(1));
    group.bench_function("dump", |b| b.iter(|| black_box(dump::dump(&arena).len())));
    let bytes = dump::dump(&arena);
    group.bench_function("load", |b| {
        b.iter(|| black_box(dump::load(&bytes).unwrap().len()))
    });
    group.finish();
}

fn bench_rust_only(c: &mut Criterion) {
    let all_codes = codes(0, N);
    let (arena, ids) = fixture(&all_codes);
    let mut group = c.benchmark_group("rust_only");
    // Python's page() answers records; Rust's answers ids only (not the same work).
    group.bench_function("page of 100 ids (scans all 100k)", |b| {
        b.iter(|| black_box(arena.page(Some(ids[5]), 100)))
    });
    group.bench_function("get one id (no loop)", |b| {
        b.iter(|| black_box(arena.get(black_box(ids[12_345])).map(|s| s.code.len())))
    });
    group.finish();
}

criterion_group!(benches, bench_pairs, bench_rust_only);
criterion_main!(benches);
