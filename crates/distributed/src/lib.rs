//! Workers for meshgate: the process that runs stages of large queries, and the channel
//! between gateways and workers.
//!
//! Why a crate of its own: DataFusion Distributed cuts a plan into stages and ships them to
//! worker processes, trusting the network. meshgate does not: every request to a worker is
//! signed with a key derived from the master secret gateways and workers share
//! ([`signing`]), and a worker refuses anything unsigned, forged, altered or replayed with
//! PERMISSION_DENIED before decoding it ([`guard`]); with TLS configured, only holders of a
//! certificate from the mesh's CA connect at all. What a stage may read and show was decided
//! by the gateway and travels sealed (`meshgate_engine`'s seal codec); the worker re-checks the
//! policy version and master key, reads with its own credentials and derives its own keys.
//!
//! - [`network`]: the gateway's channels to its workers ([`Network`], the engine's
//!   `WorkerNetwork`), probing which answer, failures that name the worker.
//! - [`worker`]: `meshgate worker` ([`WorkerServer`]).

mod client;
mod frames;
pub mod guard;
pub mod network;
pub mod signing;
pub mod worker;

pub use network::{ClientTls, Network};
pub use signing::{DEFAULT_TTL, DemoKey, Refusal, StageSigner};
pub use worker::{ServerTls, WorkerServer};
