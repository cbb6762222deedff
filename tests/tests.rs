//! Every integration test of meshgate, as one binary of modules (one link instead of one
//! per file), sharing `support/`. Run one module with `cargo test -p meshgate-cli --test tests
//! attacks::`.

// Helpers panic to fail the test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

mod attacks;
mod cli;
mod console;
mod deploy;
mod differential;
mod distributed;
mod flight;
mod flight_security;
mod flight_sql;
mod fuzz;
mod golden;
mod governance;
mod lakes;
mod layers;
mod lint;
mod policies;
mod publish;
mod quality;
mod reference_mesh;
mod replicas;
mod store;
mod substrait;
mod traces;
