//! `gpu-kit`: the tools a GPU host needs beside the conductor to measure
//! it, carried in the same package (`cargo xtask build-cuda --package`).
//! Nothing here links mistral.rs, so the binary stays small.

use clap::{Parser, Subcommand};

mod gguf;
mod make_model;

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
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Cmd::MakeModel(args) => make_model::run(&args),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
