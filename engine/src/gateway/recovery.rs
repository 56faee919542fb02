//! What a stopped server left open: streamed calls it had started, and
//! reservations no process holds any more.
//!
//! A streamed call is journaled (`gateway.started`: the request and its
//! reservation) and recorded in [`OPEN_STREAMS`] in one durable commit
//! before its first byte is sent, and removed from there in the commit
//! that settles it. So whatever [`OPEN_STREAMS`] holds when a server
//! starts is exactly the streamed calls a crash (or a stop) interrupted.

use anyhow::{Context, Result};
use identity::Keypair;
use ledger::{BudgetError, LedgerError, ReservationId, Txn};
use redb::ReadableTable as _;
use serde::{Deserialize, Serialize};

use super::ACCOUNT_PREFIX;
use super::tables::OPEN_STREAMS;
use crate::clock::now_us;
use crate::data::DataDir;
use crate::entries;

/// A streamed call that has sent, or may have sent, text to its client.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OpenStream {
    /// The call's `gateway.started` entry.
    pub started_seq: u64,
    pub key_id: String,
    pub account: String,
    /// What was reserved: the most the call can cost.
    pub reserved: u64,
}

/// Records a streamed call as started, in the transaction of its
/// `gateway.started` entry.
pub fn opened(txn: &redb::WriteTransaction, reservation: ReservationId, call: &OpenStream) -> Result<()> {
    txn.open_table(OPEN_STREAMS)?.insert(reservation.0, serde_json::to_string(call)?.as_str())?;
    Ok(())
}

/// Records a streamed call as closed, in the transaction that settles it.
pub fn closed(txn: &redb::WriteTransaction, reservation: ReservationId) -> Result<()> {
    txn.open_table(OPEN_STREAMS)?.remove(reservation.0)?;
    Ok(())
}

/// Charges a streamed call that ended without a completion its whole
/// reservation, and journals `gateway.interrupted`: its client received
/// an unknown part of the answer, so the most it could cost is what it
/// costs. Returns the charge. A reservation that already expired (the
/// server was down past its deadline) can no longer be settled: the
/// entry then says so, with a charge of 0.
pub fn charge_interrupted(
    t: &mut Txn,
    conductor: &Keypair,
    reservation: ReservationId,
    call: &OpenStream,
    reason: &str,
) -> Result<u64> {
    let now = now_us();
    let (cost, expired) = match t.settle(conductor, reservation, call.reserved, now) {
        Ok(_) => (call.reserved, false),
        Err(LedgerError::Budget(BudgetError::AlreadyClosed { state: "expired", .. })) => (0, true),
        Err(e) => return Err(e.into()),
    };
    let interrupted = entries::GatewayInterrupted {
        key_id: call.key_id.clone(),
        account: call.account.clone(),
        reservation: reservation.0,
        started_seq: call.started_seq,
        reserved: call.reserved,
        cost,
        expired,
        reason: reason.to_owned(),
    };
    entries::append(t, conductor, &interrupted, now)?;
    closed(t.redb(), reservation)?;
    Ok(cost)
}

/// What [`recover`] did.
#[derive(Debug, Default)]
pub struct Recovered {
    /// Streamed calls charged as interrupted: (reservation, charge).
    pub interrupted: Vec<(u64, u64)>,
    /// Other gateway reservations returned.
    pub voided: Vec<u64>,
}

/// Run by `conductor serve` before it takes a call. Only one process can
/// open a data directory (redb's lock), so no live process holds any
/// gateway reservation now: each streamed call left open is charged as
/// interrupted ([`charge_interrupted`]), and every other pending
/// reservation of a `gateway:` account (a whole call, whose client got
/// nothing) is voided, in one durable commit. Missions' reservations are
/// left to `run`'s own recovery.
pub fn recover(data: &DataDir) -> Result<Recovered> {
    let open: Vec<(ReservationId, OpenStream)> = {
        let read = data.ledger.read()?;
        match read.open_table(OPEN_STREAMS) {
            Ok(table) => {
                let mut open = Vec::new();
                for row in table.iter()? {
                    let (id, call) = row?;
                    let call: OpenStream =
                        serde_json::from_str(call.value()).context("a gateway open-stream record is corrupt")?;
                    open.push((ReservationId(id.value()), call));
                }
                open
            }
            Err(redb::TableError::TableDoesNotExist(_)) => Vec::new(),
            Err(e) => return Err(e.into()),
        }
    };
    let orphaned: Vec<ReservationId> = data
        .ledger
        .pending_reservations()?
        .into_iter()
        .filter(|(id, account, ..)| account.starts_with(ACCOUNT_PREFIX) && !open.iter().any(|(o, _)| o == id))
        .map(|(id, ..)| id)
        .collect();
    if open.is_empty() && orphaned.is_empty() {
        return Ok(Recovered::default());
    }
    let conductor = data.conductor.clone();
    data.ledger
        .write(|t| -> Result<Recovered> {
            let mut recovered = Recovered::default();
            for (id, call) in &open {
                let cost = charge_interrupted(t, &conductor, *id, call, "the server stopped during the call")?;
                recovered.interrupted.push((id.0, cost));
            }
            let now = now_us();
            for id in &orphaned {
                t.void(&conductor, *id, now)?;
                recovered.voided.push(id.0);
            }
            Ok(recovered)
        })
        .context("returning the gateway reservations of the previous server")
}
