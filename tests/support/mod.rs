//! What the test modules share: the Flight SQL test server and clients, access grants
//! through the workflow, the raw files and protections re-implemented independently,
//! each principal's policy as literal views, a test certificate authority, and Substrait plans
//! made and sent as clients make and send them.

pub mod cluster;
pub mod flight;
pub mod grants;
pub mod pki;
pub mod postgres;
pub mod substrait;
pub mod truth;
pub mod views;
