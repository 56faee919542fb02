//! `conductor keys`: create people's keys; register, rotate and revoke
//! keys in a journal.

use anyhow::Result;

use engine::keys;

use crate::cli::KeysCommand;
use crate::exit;
use crate::stdout::outln;

pub(crate) fn command(command: KeysCommand) -> Result<u8> {
    match command {
        KeysCommand::New { out, role, passphrase } => {
            let role = identity::Role::from(role);
            let key = keys::create(&out, role, passphrase)?;
            outln!("created {role} key {}{}", out.display(), if passphrase { " (passphrase-sealed)" } else { "" })?;
            outln!("key id     {}", key.public().key_id())?;
            outln!("public key {}", key.public().to_hex())?;
            outln!(
                "register it: conductor keys register --data DIR {} (with --init if DIR is a new data directory)",
                out.display()
            )?;
        }
        KeysCommand::Register { data, key, role, name, init } => {
            let (public, role) = keys::register(&keys::Registration {
                data_dir: &data.data,
                spec: &key,
                role: role.map(Into::into),
                name: name.as_deref(),
                init,
            })?;
            let whose = name.map(|n| format!(" for {n}")).unwrap_or_default();
            outln!("registered {role} key {}{whose} ({})", public.key_id(), public.to_hex())?;
        }
        KeysCommand::Revoke { data, key, reason } => {
            let public = keys::revoke(&data.data, &key, &reason)?;
            outln!("revoked key {}; nothing it signs from now on verifies", public.key_id())?;
        }
        KeysCommand::Rotate { data, old, new, reason } => {
            let (old, new) = keys::rotate(&data.data, &old, &new, &reason)?;
            outln!("rotated key {} -> {}", old.key_id(), new.key_id())?;
        }
        KeysCommand::RotateConductor { data, reason } => {
            let (old, new) = keys::rotate_conductor(&data.data, &reason)?;
            outln!("conductor key rotated {} -> {}", old.key_id(), new.key_id())?;
        }
        KeysCommand::List { data, json } => {
            let keys = keys::list(&data.data)?;
            if json {
                outln!("{}", serde_json::to_string_pretty(&keys)?)?;
            } else {
                outln!("{:<10} {:<33} {:>11}  {:<17} name", "role", "key id", "registered", "status")?;
                for k in &keys {
                    let status = match k.record.revoked_seq {
                        Some(seq) => format!("revoked at {seq}"),
                        None => "in force".into(),
                    };
                    outln!(
                        "{:<10} {:<33} {:>11}  {status:<17} {}",
                        k.record.role.as_str(),
                        k.key_id,
                        k.record.registered_seq,
                        k.name.as_deref().unwrap_or("-")
                    )?;
                }
            }
        }
    }
    Ok(exit::OK)
}
