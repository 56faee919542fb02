//! `conductor serve`: the reviewer page and its API, mission events, and
//! the metered OpenAI-compatible gateway, over actix-web.
//!
//! **Invariant:** the only crate that knows actix-web. It holds no
//! business rules of its own: gates are decided, missions run and calls
//! metered by the `engine`; models are reached through
//! [`models::Models`].

pub mod gateway;
mod metrics;
pub mod serve;

pub use serve::{ServeConfig, serve};
