//! The command line of `conductor serve` and `conductor gateway`: the
//! server's arguments and the gateway's key commands.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Result;
use clap::{Args, Subcommand};

use engine::{data, gateway, run};
use inference::Router;
use models::Registry;
use server::gateway as http_gateway;

use crate::cli::{DataArg, ModelArgs};
use crate::exit;
use crate::stdout::{errln, outln};

#[derive(Debug, Subcommand)]
pub(crate) enum GatewayCommand {
    /// Issue a client key bound to a new budget account `gateway:NAME`
    /// with LIMIT units, signed by an operator. The key is printed once;
    /// the database keeps only its hash. Clients use it as an OpenAI API
    /// key against `http://HOST:PORT/v1`; each call is metered against the
    /// account (prices from the model registry) and journaled.
    #[command(
        after_help = "Example:\n  conductor gateway issue --data ./data --name claims-app --limit 100000 --key operator.key\n  \
        OPENAI_BASE_URL=http://127.0.0.1:8080/v1 OPENAI_API_KEY=cgw_… python client.py"
    )]
    Issue {
        #[command(flatten)]
        data: DataArg,
        /// The client's name (letters, digits, `-`, `_`).
        #[arg(long)]
        name: String,
        /// Budget units the key may spend.
        #[arg(long, value_parser = clap::value_parser!(u64).range(1..=(1u64 << 53)))]
        limit: u64,
        /// Your operator key file.
        #[arg(long, value_name = "FILE")]
        key: PathBuf,
        /// Print the key and its record as JSON.
        #[arg(long)]
        json: bool,
    },
    /// List the client keys issued here: name, key id, account, the
    /// account's limit, settled and pending spend, when it was issued and
    /// whether it was revoked. Reads only.
    List {
        #[command(flatten)]
        data: DataArg,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Revoke a client key, signed by an operator and journaled
    /// (`gateway.key_revoked`, with the reason). Servers started after
    /// this refuse the key (401); its account and spend stay on record.
    /// Stop the server first: one process holds a data directory.
    #[command(after_help = "Example:
  conductor gateway revoke claims-app --data ./data --key operator.key --reason 'laptop lost, ticket 4411'")]
    Revoke {
        #[command(flatten)]
        data: DataArg,
        /// The key's name or its key id (as `gateway list` shows them).
        #[arg(value_name = "NAME_OR_KEY_ID")]
        which: String,
        /// Your operator key file.
        #[arg(long, value_name = "FILE")]
        key: PathBuf,
        /// Why, recorded in the journal.
        #[arg(long)]
        reason: String,
    },
}

#[derive(Debug, Args)]
pub(crate) struct ServeArgs {
    #[command(flatten)]
    data: DataArg,
    /// Address to listen on (port 0: any free port; the chosen address is
    /// printed as `listening on http://ADDR`).
    #[arg(long, default_value = "127.0.0.1:8080")]
    bind: std::net::SocketAddr,
    /// Allow an address other hosts can reach. Without TLS in front,
    /// session cookies would cross the network in clear.
    #[arg(long)]
    allow_remote: bool,
    /// A mission file to run once the server is up (repeat for several;
    /// they run one after another).
    #[arg(long = "run", value_name = "MISSION")]
    run: Vec<PathBuf>,
    #[command(flatten)]
    models: ModelArgs,
    /// How long a gateway call's reservation stays open, in seconds; a
    /// call is given this long, less 10 s to settle it. Reservations that
    /// a stopped server left open are returned (or, for a streamed call
    /// that had started sending, charged) when the next server starts.
    #[arg(
        long,
        value_name = "SECONDS",
        default_value_t = http_gateway::RESERVATION_TTL_DEFAULT_S,
        value_parser = clap::value_parser!(u64).range(http_gateway::RESERVATION_TTL_MIN_S..=http_gateway::RESERVATION_TTL_MAX_S)
    )]
    gateway_reservation_ttl_s: u64,
}

pub(crate) fn gateway_command(command: GatewayCommand) -> Result<u8> {
    match command {
        GatewayCommand::Issue { data, name, limit, key, json } => {
            let issued = gateway::issue(&data.data, &name, limit, &key)?;
            if json {
                outln!(
                    "{}",
                    serde_json::json!({"key": issued.key, "key_id": issued.record.key_id,
                                                  "account": issued.record.account, "limit": issued.limit})
                )?;
            } else {
                outln!("gateway key for `{name}` (shown once; keep it secret):\n{}", issued.key)?;
                outln!(
                    "key id   {}\naccount  {} (limit {})",
                    issued.record.key_id,
                    issued.record.account,
                    issued.limit
                )?;
            }
            Ok(exit::OK)
        }
        GatewayCommand::List { data, json } => {
            let keys = gateway::list(&data.data)?;
            if json {
                outln!("{}", serde_json::to_string_pretty(&keys)?)?;
                return Ok(exit::OK);
            }
            outln!(
                "{:<20} {:<16} {:<28} {:>10} {:>10} {:>10}  {:<27} status",
                "name",
                "key id",
                "account",
                "limit",
                "settled",
                "pending",
                "issued"
            )?;
            for k in &keys {
                let limit = k.limit.map_or_else(|| "-".to_owned(), |l| l.to_string());
                let status = match &k.revoked {
                    Some(r) => format!("revoked {} ({})", r.at, r.reason),
                    None => "in force".to_owned(),
                };
                outln!(
                    "{:<20} {:<16} {:<28} {limit:>10} {:>10} {:>10}  {:<27} {status}",
                    k.name,
                    k.key_id,
                    k.account,
                    k.settled,
                    k.pending,
                    k.issued
                )?;
            }
            Ok(exit::OK)
        }
        GatewayCommand::Revoke { data, which, key, reason } => {
            let revoked = gateway::revoke(&data.data, &which, &reason, &key)?;
            let seq = revoked.revoked.as_ref().map_or(0, |r| r.seq);
            outln!("revoked gateway key `{}` ({}) at journal entry {seq}", revoked.name, revoked.key_id)?;
            Ok(exit::OK)
        }
    }
}

pub(crate) fn serve(args: ServeArgs) -> Result<u8> {
    if !args.allow_remote && !server::serve::is_loopback(&args.bind) {
        errln!(
            "error: {} is reachable from other hosts; serve on loopback (127.0.0.1), or put TLS in front and pass --allow-remote",
            args.bind
        );
        return Ok(exit::INVALID);
    }
    for path in &args.run {
        // Refuse a bad mission file before anything starts.
        if let Err(d) = missions::load(path) {
            errln!("{d}");
            return Ok(exit::INVALID);
        }
    }
    let data = data::DataDir::open_or_create(&args.data.data)?;
    // Every other command naming this directory runs here while it serves.
    let _beside = crate::local::serve_beside(&data)?;
    // Before any call: no process holds the previous server's gateway
    // reservations any more (redb lets one process open the directory).
    let recovered = gateway::recover(&data)?;
    if !recovered.interrupted.is_empty() || !recovered.voided.is_empty() {
        errln!(
            "gateway: the previous server stopped with calls open: {} streamed call(s) charged as interrupted, \
             {} reservation(s) returned",
            recovered.interrupted.len(),
            recovered.voided.len()
        );
    }
    let registry = match &args.models.models {
        Some(path) => Registry::from_file(path, args.models.air_gap)?,
        None => Registry::embedded(&args.models.model_dir)?,
    };
    server::serve(server::ServeConfig {
        data,
        bind: args.bind,
        run: args.run,
        run_config: run::RunConfig {
            data: args.data.data.clone(),
            concurrency: usize::from(args.models.concurrency),
            module_cache: run::module_cache_dir(args.models.module_cache.as_deref()),
            open: None,
            again: run::Again::Refuse,
        },
        router: Arc::new(Router::new(registry)),
        observer: Arc::new(crate::progress::Progress::new()),
        gateway: http_gateway::GatewayConfig {
            reservation_ttl: std::time::Duration::from_secs(args.gateway_reservation_ttl_s),
        },
    })?;
    Ok(exit::OK)
}
