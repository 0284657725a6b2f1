//! The closed vocabularies: expression types and relationship types.

use crate::error::{CoreError, CoreResult};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum ExprType {
    Lambda = 0,
    Constant = 1,
    Expression = 2,
    /// A composition of other substrates (its code is canonical JSON; see
    /// `docs/domain.md`, Pipelines). Stored as 3 in the arena and in dumps.
    Pipeline = 3,
}

impl ExprType {
    pub const ALL: [ExprType; 4] = [
        ExprType::Lambda,
        ExprType::Constant,
        ExprType::Expression,
        ExprType::Pipeline,
    ];

    pub fn name(self) -> &'static str {
        match self {
            ExprType::Lambda => "lambda",
            ExprType::Constant => "constant",
            ExprType::Expression => "expression",
            ExprType::Pipeline => "pipeline",
        }
    }

    /// Exact, lower-case names only: the expression type is part of the identity.
    pub fn parse(text: &str) -> CoreResult<Self> {
        Self::ALL
            .into_iter()
            .find(|t| t.name() == text)
            .ok_or_else(|| CoreError::InvalidExprType(text.to_owned()))
    }

    pub fn from_u8(v: u8) -> Option<Self> {
        Self::ALL.get(v as usize).copied()
    }
}

macro_rules! rel_types {
    ($($variant:ident => $name:literal),+ $(,)?) => {
        /// The 17 relationship types of the contract, in a fixed order whose
        /// index is stored in the arena and in dumps: append, never reorder.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[repr(u8)]
        pub enum RelType { $($variant),+ }

        impl RelType {
            pub const ALL: &'static [RelType] = &[$(RelType::$variant),+];

            pub fn name(self) -> &'static str {
                match self { $(RelType::$variant => $name),+ }
            }
        }
    };
}

rel_types! {
    PartToWhole => "PART_TO_WHOLE",
    WholeToPart => "WHOLE_TO_PART",
    Sibling => "SIBLING",
    Containment => "CONTAINMENT",
    Attribute => "ATTRIBUTE",
    Dependency => "DEPENDENCY",
    Adjacency => "ADJACENCY",
    Aggregation => "AGGREGATION",
    Boundary => "BOUNDARY",
    Cycle => "CYCLE",
    Recursion => "RECURSION",
    Lineage => "LINEAGE",
    Embedding => "EMBEDDING",
    Extraction => "EXTRACTION",
    Orthogonal => "ORTHOGONAL",
    Composition => "COMPOSITION",
    Inheritance => "INHERITANCE",
}

impl RelType {
    /// Accepts the name in any case (`dependency`, `Dependency`, `DEPENDENCY`).
    pub fn parse(text: &str) -> CoreResult<Self> {
        Self::ALL
            .iter()
            .copied()
            .find(|t| t.name().eq_ignore_ascii_case(text))
            .ok_or_else(|| CoreError::InvalidRelType(text.to_owned()))
    }

    pub fn index(self) -> u8 {
        self as u8
    }

    pub fn from_index(v: u8) -> Option<Self> {
        Self::ALL.get(v as usize).copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rel_types_round_trip_in_any_case() {
        assert_eq!(RelType::ALL.len(), 17);
        for (i, t) in RelType::ALL.iter().enumerate() {
            assert_eq!(t.index() as usize, i);
            assert_eq!(RelType::parse(&t.name().to_lowercase()).unwrap(), *t);
            assert_eq!(RelType::from_index(i as u8), Some(*t));
        }
        assert!(matches!(
            RelType::parse("FRIEND"),
            Err(CoreError::InvalidRelType(_))
        ));
        assert!(RelType::parse("").is_err());
    }

    #[test]
    fn expr_types_are_exact() {
        assert_eq!(ExprType::parse("lambda").unwrap(), ExprType::Lambda);
        assert!(ExprType::parse("Lambda").is_err());
        assert!(ExprType::parse("function").is_err());
        assert_eq!(ExprType::parse("pipeline").unwrap(), ExprType::Pipeline);
        for (i, t) in ExprType::ALL.iter().enumerate() {
            assert_eq!(ExprType::from_u8(i as u8), Some(*t));
        }
        assert_eq!(ExprType::from_u8(4), None);
    }
}
