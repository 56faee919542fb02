//! `conductor modules`: sign and verify agent modules.

use anyhow::Result;

use engine::{keys, modules};

use crate::cli::ModulesCommand;
use crate::exit;
use crate::stdout::{errln, outln};

pub(crate) fn command(command: ModulesCommand) -> Result<u8> {
    match command {
        ModulesCommand::Sign { module, key } => {
            let key = keys::load_human_key(&key)?;
            let path = modules::sign(&module, &key)?;
            outln!("{}: signed by {} ({})", module.display(), key.public().to_hex(), path.display())?;
            Ok(exit::OK)
        }
        ModulesCommand::Verify { module, trusted } => match modules::verify(&module) {
            Ok(signer) if trusted.is_empty() || trusted.iter().any(|t| t.eq_ignore_ascii_case(&signer.to_hex())) => {
                outln!("{}: signature ok, signed by {}", module.display(), signer.to_hex())?;
                Ok(exit::OK)
            }
            Ok(signer) => {
                errln!("{}: signed by {}, which is not among the trusted keys", module.display(), signer.to_hex());
                Ok(exit::TAMPERED)
            }
            Err(e) => {
                errln!("{e:#}");
                Ok(exit::TAMPERED)
            }
        },
    }
}
