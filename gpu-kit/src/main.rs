//! `gpu-kit`: the tools a GPU host needs beside the conductor to measure
//! it, carried in the same package (`cargo xtask build-cuda --package`).
//! Nothing here links mistral.rs, so the binary stays small; with the
//! `cuda` feature it links cudarc's driver calls (loaded at run time) for
//! the bandwidth probe.

use clap::{Parser, Subcommand};

mod bandwidth;
mod gguf;
mod load;
mod make_model;
mod table;

#[derive(Debug, Parser)]
#[command(name = "gpu-kit", about = "Model-maker, load generator and bandwidth probe for a GPU host")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Write a Llama-architecture GGUF with random weights and a tokenizer
    /// copied from another GGUF file.
    MakeModel(make_model::Args),
    /// Drive `conductor serve`'s gateway at several concurrencies and print
    /// decode tokens/s (one JSON object per level).
    Load(load::Args),
    /// Send the same greedy prompts to two models through the gateway and
    /// check that their answers agree (the GPU against the CPU).
    Compare(load::CompareArgs),
    /// Bytes of weights a GGUF model reads per decoded token.
    Weights(bandwidth::WeightsArgs),
    /// GPU 0's device-to-device copy bandwidth (builds with `cuda` only).
    Bandwidth(bandwidth::BandwidthArgs),
    /// The device script's table, from the results it wrote.
    Table(table::Args),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Cmd::MakeModel(args) => make_model::run(&args),
        Cmd::Load(args) => load::run(&args),
        Cmd::Compare(args) => load::compare(&args),
        Cmd::Weights(args) => bandwidth::weights(&args),
        Cmd::Bandwidth(args) => bandwidth::bandwidth(&args),
        Cmd::Table(args) => table::run(&args),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
