//! bfx core: the substrate arena, 64-bit content identities, the relationship
//! store with its adjacency indices, and bulk dump/load.
//!
//! Everything here is plain Rust and never touches Python; the PyO3 binding
//! layer lives in `py/` and is compiled only with the `python` feature.

pub mod arena;
pub mod civil;
pub mod dump;
pub mod error;
pub mod graph;
pub mod identity;
pub mod jsondepth;
pub mod kinds;
pub mod log_writer;
pub mod observe;
pub mod record_json;
mod segvec;
mod slab;
pub mod sqlite_load;

#[cfg(feature = "python")]
mod py;

pub use arena::{Arena, EdgeView, NewEdge, NewSubstrate, OwnedEdge, OwnedSubstrate, SubstrateView};
pub use error::{CoreError, CoreResult};
pub use identity::{format_id, parse_id, relationship_id, substrate_id};
pub use kinds::{ExprType, RelType};
