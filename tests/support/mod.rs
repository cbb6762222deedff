//! What the test modules share: the Flight SQL test server and clients, access grants
//! through the workflow, the raw files and protections re-implemented independently, and
//! each principal's policy as literal views, and a test certificate authority.

pub mod cluster;
pub mod flight;
pub mod grants;
pub mod pki;
pub mod postgres;
pub mod truth;
pub mod views;
