//! The mission engine: runs missions (one wasmtime cell per task, each
//! model call metered against the ledger before it runs), journals every
//! action, decides gates, recovers and replays, and reads the journal
//! back for summaries, reports and provenance.
//!
//! **Invariant:** knows no command line (clap), no HTTP (actix-web) and
//! no model runtime (mistral.rs): models are reached only through
//! [`models::Models`], progress is reported only through
//! [`run::Observer`], and nothing here prints to stdout.

pub mod budget;
pub mod clock;
pub mod data;
pub mod decisions;
pub mod delegation;
pub mod documents;
pub mod entries;
pub mod facts;
pub mod files;
pub mod gates;
pub mod gateway;
pub mod health;
pub mod host;
pub mod intake;
pub mod keys;
pub mod metering;
pub mod modules;
pub mod provenance;
pub mod replay;
pub mod report;
pub mod run;
pub mod series;
pub mod state;
pub mod summary;
pub mod text;
pub mod tokens;
