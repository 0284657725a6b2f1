//! The one error enum of the core. The binding layer maps each variant onto a
//! class of the Python `bfx.errors` hierarchy in a single function.

use std::fmt;

/// What a record is, for messages and error details.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Substrate,
    Relationship,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Substrate => "substrate",
            Kind::Relationship => "relationship",
        }
    }
    /// The name of the id field for this kind in the public API.
    pub fn id_field(self) -> &'static str {
        match self {
            Kind::Substrate => "substrate_id",
            Kind::Relationship => "relationship_id",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CoreError {
    /// Text that is not an id (1-16 hex digits, optional 0x) or outside u64.
    InvalidId(String),
    /// No record with this id.
    NotFound {
        kind: Kind,
        id: u64,
    },
    /// The same record exists already.
    Duplicate {
        kind: Kind,
        id: u64,
    },
    /// A different canonical form has the same 64-bit id.
    Collision {
        id: u64,
    },
    /// An id handed in with a record does not match the record's content.
    IdMismatch {
        given: u64,
        computed: u64,
    },
    InvalidRelType(String),
    InvalidExprType(String),
    /// A field is larger than the arena can hold (4 GiB per field).
    TooLarge(&'static str),
    /// A dump that cannot be read back.
    CorruptDump(String),
}

pub type CoreResult<T> = Result<T, CoreError>;

impl fmt::Display for CoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use crate::identity::format_id;
        match self {
            CoreError::InvalidId(text) => write!(
                f,
                "invalid id {text:?}: expected 1 to 16 hexadecimal digits, optionally prefixed by 0x"
            ),
            CoreError::NotFound { kind, id } => {
                write!(f, "{} {} not found", kind.as_str(), format_id(*id))
            }
            CoreError::Duplicate { kind, id } => {
                write!(f, "{} {} already exists", kind.as_str(), format_id(*id))
            }
            CoreError::Collision { id } => write!(
                f,
                "identity collision: a different expression already has id {}",
                format_id(*id)
            ),
            CoreError::IdMismatch { given, computed } => write!(
                f,
                "id {} does not match the record's content (its id is {})",
                format_id(*given),
                format_id(*computed)
            ),
            CoreError::InvalidRelType(name) => write!(
                f,
                "invalid relationship type {name:?}; expected one of {}",
                crate::kinds::RelType::ALL
                    .iter()
                    .map(|t| t.name())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            CoreError::InvalidExprType(name) => write!(
                f,
                "invalid expression type {name:?}; expected one of lambda, constant, expression"
            ),
            CoreError::TooLarge(field) => write!(f, "{field} is too large"),
            CoreError::CorruptDump(why) => write!(f, "corrupt arena dump: {why}"),
        }
    }
}

impl std::error::Error for CoreError {}
