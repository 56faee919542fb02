//! The journal's vocabulary: every kind of entry format 1 knows, with the
//! one role allowed to sign it.
//!
//! This enum is the single source of the format's table of kinds
//! (`docs/journal-format.md`, section 5): [`crate::rules::signer_role`]
//! and [`crate::rules::kinds`] are read from it, and writers and readers
//! name kinds through it instead of repeating string literals. A kind
//! added here is signable; one removed is invalid in every journal.

use std::fmt;

use identity::Role;

/// Declares [`Kind`] from one list of `Variant = "text" => Role`, so the
/// variants, their names and their signers cannot drift apart.
macro_rules! kinds {
    ($($(#[$doc:meta])* $variant:ident = $text:literal => $role:ident,)+) => {
        /// One kind of journal entry of format 1.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum Kind {
            $($(#[$doc])* $variant,)+
        }

        impl Kind {
            /// Every kind of format 1, in the order of the format's table.
            pub const ALL: &'static [Kind] = &[$(Kind::$variant,)+];

            /// The kind as the journal spells it (`task.started`).
            pub const fn as_str(self) -> &'static str {
                match self {
                    $(Kind::$variant => $text,)+
                }
            }

            /// The one role whose keys may sign entries of this kind.
            pub const fn signer(self) -> Role {
                match self {
                    $(Kind::$variant => Role::$role,)+
                }
            }

            /// The kind spelled `text`, or `None` for a kind format 1 lacks.
            pub fn parse(text: &str) -> Option<Kind> {
                match text {
                    $($text => Some(Kind::$variant),)+
                    _ => None,
                }
            }
        }
    };
}

kinds! {
    /// Entry 0: the first conductor key.
    Genesis = "conductor.genesis" => Conductor,
    KeyRegistered = "key.registered" => Conductor,
    KeyRevoked = "key.revoked" => Conductor,
    KeyRotated = "key.rotated" => Conductor,
    JournalCheckpoint = "journal.checkpoint" => Conductor,
    MissionDeclared = "mission.declared" => Conductor,
    MissionFinished = "mission.finished" => Conductor,
    MissionCompleted = "mission.completed" => Conductor,
    MissionResumed = "mission.resumed" => Conductor,
    MissionRecovered = "mission.recovered" => Conductor,
    BudgetOpened = "budget.opened" => Conductor,
    BudgetReserved = "budget.reserved" => Conductor,
    BudgetSettled = "budget.settled" => Conductor,
    BudgetVoided = "budget.voided" => Conductor,
    BudgetExpired = "budget.expired" => Conductor,
    BudgetRefused = "budget.refused" => Conductor,
    BudgetBatch = "budget.batch" => Conductor,
    MemoryAsserted = "memory.asserted" => Conductor,
    TaskStarted = "task.started" => Conductor,
    TaskDecided = "task.decided" => Conductor,
    TaskFailed = "task.failed" => Conductor,
    TaskSkipped = "task.skipped" => Conductor,
    TaskDeferred = "task.deferred" => Conductor,
    TaskRecovered = "task.recovered" => Conductor,
    TaskParked = "task.parked" => Conductor,
    /// The last child of a delegation ended: the children's results, which
    /// the parent's `delegate` call returns when it resumes. Written in the
    /// same transaction as (after) that child's terminal entry.
    TaskJoined = "task.joined" => Conductor,
    GateRequested = "gate.requested" => Conductor,
    GateReminder = "gate.reminder" => Conductor,
    GateEscalated = "gate.escalated" => Conductor,
    GateTimedOut = "gate.timed_out" => Conductor,
    GateRefused = "gate.refused" => Conductor,
    HostInfer = "host.infer" => Agent,
    HostRecall = "host.recall" => Agent,
    HostRemember = "host.remember" => Agent,
    HostQuery = "host.query" => Agent,
    HostLog = "host.log" => Agent,
    HostReview = "host.review" => Agent,
    HostAwait = "host.await" => Agent,
    /// A task's `delegate` host call: the sub-tasks it asked other agents
    /// of the mission to run, and the children created (or the refusal).
    /// Signed by the parent task's agent key, like its other host calls.
    TaskDelegated = "task.delegated" => Agent,
    TaskProposed = "task.proposed" => Agent,
    GateDecided = "gate.decided" => Reviewer,
    GateVoted = "gate.voted" => Reviewer,
    BudgetExtended = "budget.extended" => Reviewer,
    /// A data subject's values made unreadable (crypto-shredding), on an
    /// operator's own key: a person answers for every erasure.
    MemoryErased = "memory.erased" => Operator,
    /// The metered OpenAI-compatible gateway (`conductor serve`): an
    /// operator issues each client key, bound to a budget account; the
    /// conductor records every call it served or refused.
    GatewayKeyIssued = "gateway.key_issued" => Operator,
    GatewayCompletion = "gateway.completion" => Conductor,
    GatewayRefused = "gateway.refused" => Conductor,
    GatewayKeyRevoked = "gateway.key_revoked" => Operator,
    GatewayStarted = "gateway.started" => Conductor,
    GatewayInterrupted = "gateway.interrupted" => Conductor,
    GatewayRefusals = "gateway.refusals" => Conductor,
    /// A prompt sent to a frontier (non-local) model: data left the host.
    DataLeftHost = "data.left_host" => Conductor,
    /// A case taken into an open mission (API, command line or inbox),
    /// naming who submitted it and its documents' hashes. It is
    /// acknowledged only once this entry is durable.
    CaseReceived = "case.received" => Conductor,
    /// An operator paused, resumed, cancelled or closed a mission. The
    /// server signs it (it never holds a person's key), naming the
    /// operator's key or token.
    MissionControl = "mission.control" => Conductor,
    /// An API token issued to a script, scoped to a role (and perhaps one
    /// mission); only the token secret's hash is kept, here and in the
    /// database.
    TokenIssued = "token.issued" => Conductor,
    TokenRevoked = "token.revoked" => Conductor,
    /// A request by a known identity (a session or a token) that the
    /// server refused: wrong role or mission, a full queue, bad input.
    RequestRefused = "request.refused" => Conductor,
    /// A task read one of its case's documents (the `read-document` host
    /// call), by hash: replay gets the same bytes from the document store.
    HostDocument = "host.document" => Agent,
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl PartialEq<Kind> for str {
    fn eq(&self, kind: &Kind) -> bool {
        self == kind.as_str()
    }
}

impl PartialEq<Kind> for &str {
    fn eq(&self, kind: &Kind) -> bool {
        *self == kind.as_str()
    }
}

impl PartialEq<Kind> for String {
    fn eq(&self, kind: &Kind) -> bool {
        self.as_str() == kind.as_str()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_parses_back_from_its_name_and_names_are_unique() {
        let mut seen = std::collections::HashSet::new();
        for kind in Kind::ALL {
            assert_eq!(Kind::parse(kind.as_str()), Some(*kind));
            assert_eq!(kind.to_string(), kind.as_str());
            assert!(seen.insert(kind.as_str()), "{kind} listed twice");
        }
        assert_eq!(Kind::ALL.len(), 58, "format 1 has 58 kinds");
        assert_eq!(Kind::parse("task.Started"), None);
        assert_eq!(Kind::parse(""), None);
    }

    #[test]
    fn signers_follow_the_format_table() {
        assert_eq!(Kind::TaskStarted.signer(), Role::Conductor);
        assert_eq!(Kind::TaskProposed.signer(), Role::Agent);
        assert_eq!(Kind::TaskDelegated.signer(), Role::Agent);
        assert_eq!(Kind::TaskJoined.signer(), Role::Conductor);
        assert_eq!(Kind::GateDecided.signer(), Role::Reviewer);
        assert_eq!(Kind::MemoryErased.signer(), Role::Operator);
        assert!(Kind::ALL.iter().all(|k| k.signer() != Role::Auditor), "auditors sign no kind yet");
    }
}
