//! The commands' handlers, one module per command family.

pub(crate) mod audit;
pub(crate) mod cases;
pub(crate) mod gates;
pub(crate) mod keys;
pub(crate) mod ledger;
pub(crate) mod memory;
pub(crate) mod mission;
pub(crate) mod models;
pub(crate) mod modules;
pub(crate) mod tokens;
