//! # meshgate-protect
//!
//! A policy that says "consumers see `card_number` only as a token" is worthless unless
//! something turns values into tokens fast, identically for every consumer, and without ever
//! exposing the key. This crate is that something: vectorised Arrow kernels for every mask
//! kind and for keyed tokenization ([`kernels`]), key derivation from one master secret
//! ([`keys`]), and DataFusion scalar functions wrapping them ([`udf`]) for the engine to
//! place beneath every user operator.
//!
//! Tokens are `tok_` + URL-safe base64 (no padding) of HMAC-SHA256 under the token domain's
//! key: deterministic (joins and group-bys on tokens work), keyed (no offline dictionary
//! attack without the master secret), and domain-separated (no linking across domains).

pub mod kernels;
pub mod keys;
mod token;
pub mod udf;

pub use kernels::{MaskKind, TOKEN_PREFIX, tokenize, tokenized_type};
pub use keys::{KeyError, KeyOrigin, MASTER_KEY_ENV, MasterKey, TokenKey};
pub use udf::{MaskUdf, TokenizeUdf};
