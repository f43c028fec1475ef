//! Placeholder until the family is written: records a failure, never a fact.

use wire::catalogue::DistributionCell;

use super::{Facts, Lab, Measured};

pub fn run(_cell: &DistributionCell, _lab: &Lab) -> Measured {
    Facts::default().ended(wire::Status::Failed {
        error: "family not implemented yet".into(),
    })
}
