//! Sluice ingestion. Kafka consumers, decoders and the seal/commit loop arrive with
//! the Kafka change; today every writer uses [`sluice_storage::Table::append`], the
//! one append path this crate will feed too.

pub use sluice_storage::Table;
