//! Criterion benchmarks of the core, paired with benches/python/bench_core.py
//! so the cost of the Python boundary is visible.

use criterion::{black_box, criterion_group, criterion_main, BatchSize, Criterion, Throughput};

use bfx_core::{dump, Arena, ExprType, NewEdge, NewSubstrate, RelType};

fn codes(n: usize) -> Vec<String> {
    (0..n)
        .map(|i| format!("lambda **kw: kw.get('x', 0) * {i}"))
        .collect()
}

fn sub(code: &str) -> NewSubstrate<'_> {
    NewSubstrate {
        expr_type: ExprType::Lambda,
        code,
        canonical: code,
        metadata: b"{\"name\":\"bench\"}",
        created_at: 1_700_000_000_000_000,
        expected_id: None,
    }
}

fn filled(n: usize, codes: &[String]) -> (Arena, Vec<u64>) {
    let mut arena = Arena::with_capacity(n, 3 * n);
    let ids = codes
        .iter()
        .map(|c| arena.insert(&sub(c)).unwrap())
        .collect();
    (arena, ids)
}

fn bench_substrates(c: &mut Criterion) {
    let n = 100_000;
    let codes = codes(n);
    let mut group = c.benchmark_group("substrates");
    group.throughput(Throughput::Elements(n as u64));
    group.bench_function("insert_many 100k", |b| {
        let items: Vec<NewSubstrate<'_>> = codes.iter().map(|c| sub(c)).collect();
        b.iter_batched(
            || Arena::with_capacity(n, 0),
            |mut arena| {
                let (results, _) = arena.insert_many(&items, false);
                black_box(results.len())
            },
            BatchSize::LargeInput,
        )
    });
    let (arena, ids) = filled(n, &codes);
    group.throughput(Throughput::Elements(1));
    group.bench_function("get", |b| {
        let mut i = 0usize;
        b.iter(|| {
            i = (i + 7919) % n;
            black_box(arena.get(ids[i]).map(|s| s.code.len()))
        })
    });
    group.bench_function("page of 100", |b| {
        b.iter(|| black_box(arena.page(Some(ids[5]), 100)))
    });
    group.finish();
}

fn bench_relationships(c: &mut Criterion) {
    let n = 100_000;
    let codes = codes(n);
    let (mut arena, ids) = filled(n, &codes);
    for (i, &s) in ids.iter().enumerate() {
        for k in 1..=3 {
            let t = ids[(i * 31 + k * 7919) % n];
            let _ = arena.link(&NewEdge {
                rel: RelType::ALL[k],
                source: s,
                target: t,
                bidirectional: k == 3,
                constraints: b"",
                created_at: 1,
            });
        }
    }
    // A hub with 10,000 outgoing edges.
    let hub = ids[0];
    for &t in &ids[1..10_001] {
        let _ = arena.link(&NewEdge {
            rel: RelType::Dependency,
            source: hub,
            target: t,
            bidirectional: false,
            constraints: b"",
            created_at: 1,
        });
    }
    let mut group = c.benchmark_group("relationships");
    group.bench_function("outgoing (degree ~4)", |b| {
        let mut i = 0usize;
        b.iter(|| {
            i = (i + 7919) % n;
            black_box(arena.outgoing(ids[i], None, 0, usize::MAX).unwrap().0)
        })
    });
    group.bench_function("outgoing hub 10k, page of 100", |b| {
        b.iter(|| black_box(arena.outgoing(hub, None, 0, 100).unwrap().0))
    });
    group.bench_function("link + unlink", |b| {
        b.iter(|| {
            let e = NewEdge {
                rel: RelType::Orthogonal,
                source: ids[1],
                target: ids[2],
                bidirectional: false,
                constraints: b"",
                created_at: 1,
            };
            let rid = arena.link(&e).unwrap();
            arena.unlink(rid).unwrap();
        })
    });
    group.sample_size(10);
    group.bench_function("dump 100k + 310k edges", |b| {
        b.iter(|| black_box(dump::dump(&arena).len()))
    });
    let bytes = dump::dump(&arena);
    group.bench_function("load 100k + 310k edges", |b| {
        b.iter(|| black_box(dump::load(&bytes).unwrap().len()))
    });
    group.finish();
}

criterion_group!(benches, bench_substrates, bench_relationships);
criterion_main!(benches);
