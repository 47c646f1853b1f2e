//! The on-disk format of an indexed repo, and its one writer. A repo's data lives under
//! `<root>/<repo>/`: versioned [`manifest`]s naming Parquet chunk [`segment`]s, FAISS
//! [`vector`] artifacts, a tantivy [`lexical`] index and [`sparse`] documents. The [`build`]
//! drivers (full, incremental, compaction) write every artifact under a new name and publish a
//! version with one rename; the services read the format through this crate.
//!
//! Features: `vector` (FAISS artifacts), `lexical` (tantivy), `build` (both, and the drivers),
//! `remote` (a data root in an object store, mirrored locally).
//! The manifest, catalog, segment and sparse formats are always present.

#[cfg(feature = "build")]
pub mod build;
pub mod catalog;
pub mod error;
#[cfg(feature = "lexical")]
pub mod lexical;
pub mod lock;
pub mod manifest;
#[cfg(feature = "remote")]
pub mod remote;
pub mod segment;
pub mod sparse;
#[cfg(feature = "vector")]
pub mod vector;

pub use error::IndexError;
pub use manifest::{BuildSettings, EmbeddingContract, Manifest};
