//! Sealed segments: immutable, compressed, indexed column files read through memory
//! maps. [`writer::write_segment`] lays out the bytes; [`reader::SealedSegment`]
//! opens and decodes them. The layout is specified in docs/format.md.

pub mod bitpack;
pub mod cache;
pub mod format;
pub mod reader;
pub mod writer;

pub use format::{Footer, FORMAT_VERSION};
pub use reader::{BlockCodes, KeyDirectory, SealedSegment};
pub use writer::{write_segment, write_segment_ordered, SEALED_BLOCK_ROWS};

#[cfg(test)]
mod tests;
