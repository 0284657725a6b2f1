//! The published pipeline vectors (`tests/pipeline_vectors.json`): the canonical JSON
//! is computed in Python (`bfx.domain.pipelines`); its id is the core's hash, checked here.

use bfx_core::{format_id, substrate_id, ExprType};

#[test]
fn pipeline_vectors_match_the_published_file() {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../tests/pipeline_vectors.json"
    ))
    .expect("vectors file");
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let pipelines = v["pipelines"].as_array().unwrap();
    assert!(pipelines.len() >= 5);
    for p in pipelines {
        let canonical = p["canonical_code"].as_str().unwrap();
        let mut input = b"pipeline\0".to_vec();
        input.extend_from_slice(canonical.as_bytes());
        assert_eq!(hex(&input), p["input_hex"].as_str().unwrap(), "{p}");
        let id = substrate_id(ExprType::parse("pipeline").unwrap(), canonical);
        assert_eq!(format_id(id), p["id"].as_str().unwrap(), "{p}");
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
