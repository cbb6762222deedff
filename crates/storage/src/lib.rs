//! # meshgate-storage
//!
//! Each data product lives in its own lake: its own bucket, its own credentials, possibly its
//! own endpoint (AWS S3, MinIO, Ceph, any S3-compatible server, or a local directory for
//! development). This crate opens one object store per product from the gateway's storage
//! configuration ([`config`]), holding that product's credentials, and puts them all behind
//! one read-only [`MeshStore`] whose paths are `<product>/<key>`: a product's tables can only
//! resolve into its own bucket, every request is counted per query ([`io`]), every failure
//! names its product ([`error`]), and a write never leaves the gateway.
//!
//! It also decides which files of a table are served: the listing is cached for a bounded
//! time (new files appear without a restart), and each file's footer is checked against the
//! manifest once per file version; a file that does not match, or is not readable Parquet,
//! is refused by name while the rest of the product keeps serving ([`Lakes::check_file`],
//! [`Lakes::status`]).

pub mod config;
pub mod error;
pub mod io;
mod lake;
mod mesh_store;
pub mod units;

pub use config::{ProductStorage, StaticCredentials, StorageConfig, StorageKind};
pub use error::{Problem, ProductStorageError, StorageError, find_storage_error};
pub use io::{IoCounters, IoReport, ProductIo};
pub use lake::{FileVerdict, LakeStatus, Lakes, ProductLake, TableFiles, key_of};
pub use mesh_store::MeshStore;
pub use units::{parse_duration, parse_size};
