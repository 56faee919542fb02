//! What `gpu-kit`'s binary and the project's benchmarks (xtask) share: a
//! minimal HTTP/1.1 client for driving `conductor serve`.

pub mod http;
