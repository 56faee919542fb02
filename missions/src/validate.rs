//! Rules about values: turns a [`RawMission`] into a [`Mission`], reporting
//! every broken rule (not just the first) at the offending value.

use std::collections::{BTreeMap, BTreeSet, btree_map::Entry};
use std::path::Path;

use serde_saphyr::Spanned;

use crate::cases;
use crate::condition::{Condition, FieldPath, Test};
use crate::diagnostic::{Diagnostics, Pos, Report, quoted};
use crate::fields::{self, CaseFields};
use crate::mission::{
    Agent, AgentBudget, Budget, DELEGATION_CHILDREN_MAX, DELEGATION_DEPTH_MAX, DELEGATION_FAN_OUT_MAX,
    DELEGATION_INPUT_BYTES_MAX, DELEGATION_INPUT_BYTES_MIN, DOCUMENT_BYTES_DEFAULT, DOCUMENT_BYTES_MAX,
    DOCUMENTS_PER_CASE_DEFAULT, DOCUMENTS_PER_CASE_MAX, DataTier, Deadline, Decisions, Delegation, DocumentLimits,
    Extension, Failover, FieldType, Gate, INTAKE_QUEUE_DEFAULT, INTAKE_QUEUE_MAX, Intake, Limits, MAX_CASES,
    MemoryLimits, MemoryScope, Mission, ModelPrice, OWN_SPACE, OnExhausted, OnTimeout, QUORUM_MAX, Routing, SeedFact,
    TaskSource, Trust,
};
use crate::raw::{
    RawAgent, RawAgentBudget, RawBudget, RawCondition, RawDecisions, RawDelegation, RawGate, RawIntake, RawLimits,
    RawMemoryLimits, RawMemoryScope, RawMission, RawModelPrice, RawPrice, RawRouting, RawSeedFact, RawTaskGroups,
    RawTasks, RawTrust,
};
use crate::schema::CasesSchema;
use crate::time::parse_rfc3339;

/// Longest mission, agent or gate name. Names are identifiers that other
/// tools print and store; a short, plain alphabet keeps them safe anywhere.
const MAX_NAME_LEN: usize = 64;

const NAME_HELP: &str = "use 1 to 64 lowercase letters (a-z), digits and `-`";

const ON_EXHAUSTED_HELP: &str = "use `stop` (end the mission), `pause` (resume on the next run) or `gate` (wait for a reviewer to extend the budget)";

const TIMESTAMP_HELP: &str = "write an RFC 3339 timestamp such as 2026-01-01T00:00:00Z or 2026-01-01T02:00:00+02:00";

/// Where a value was written; aliases report the place they are used.
pub(crate) fn pos<T>(value: &Spanned<T>) -> Pos {
    Pos::from_location(value.referenced)
}

/// The mission file being validated and where its relative paths start.
pub(crate) struct Source<'a> {
    pub file: &'a str,
    pub base_dir: &'a Path,
}

pub(crate) fn validate(raw: RawMission, source: &Source<'_>) -> Result<Mission, Diagnostics> {
    let mut check = Checker { source, report: Report::default() };
    check.name("mission", &raw.name);
    let budget = check.budget(&raw.budget);
    let models = check.models(&raw.models);
    let agents = check.agents(&raw.agents, &models, &budget);
    let cases_schema = raw.cases_schema.as_ref().map(|path| CasesSchema::load(&mut check.report, source, path));
    let tasks = match &raw.tasks {
        Some(tasks) => check.tasks(tasks, &agents, cases_schema.as_ref().and_then(Option::as_ref)),
        None => {
            if raw.intake.is_none() {
                check.error(
                    Pos::START,
                    "the mission has neither `tasks` nor `intake`",
                    "add `tasks:` with the cases to work, or `intake:` to take cases as they arrive (or both)",
                );
            }
            TaskSource { cases: Vec::new() }
        }
    };
    let intake = raw.intake.as_ref().map(|i| check.intake(i, &agents));
    let memory = raw.memory.iter().flatten().filter_map(|fact| check.seed_fact(fact)).collect();
    let memory_limits = check.memory_limits(raw.memory_limits.as_ref());
    let reviewer_groups = check.reviewer_groups(raw.reviewer_groups.as_ref());
    let gates = check.gates(raw.gates.as_deref().unwrap_or_default(), &reviewer_groups);
    let mut budget = budget;
    budget.extension = check.extension(&raw.budget, &budget, &reviewer_groups);
    let trust = check.trust(raw.trust.as_ref());
    let routing = check.routing(raw.routing.as_ref(), &models);
    let decisions = raw.decisions.as_ref().map(|d| check.decisions(d));
    let delegation = raw.delegation.as_ref().map_or(Delegation::DEFAULT, |d| check.delegation(d));
    // Fields are checked against the schema when there is one, else the
    // cases; with neither (a schema or every case failed to load, which
    // is reported on its own) there is nothing to check against.
    let case_fields = match &cases_schema {
        Some(Some(schema)) => CaseFields::Schema(schema),
        Some(None) => CaseFields::Unknown,
        None if tasks.cases.is_empty() => CaseFields::Unknown,
        None => CaseFields::Cases(&tasks.cases),
    };
    for gate in raw.gates.iter().flatten() {
        let reader = format!("gate {}", quoted(&gate.name.value));
        check.condition_fields(&reader, &gate.when, &case_fields, decisions.as_ref());
    }
    for rule in raw.routing.iter().flat_map(|r| r.failover.iter().flatten()) {
        check.failover_fields(&rule.when, &case_fields);
    }
    check.report.finish(Mission {
        name: raw.name.value,
        description: raw.description,
        budget,
        models,
        agents,
        tasks,
        memory,
        memory_limits,
        reviewer_groups,
        gates,
        trust,
        routing,
        decisions,
        cases_schema: raw.cases_schema.map(|path| source.base_dir.join(path.value)),
        delegation,
        intake,
    })
}

/// `type/subtype`, lowercase ASCII letters, digits and `.+-` only.
fn media_type_ok(text: &str) -> bool {
    let part = |p: &str| {
        !p.is_empty()
            && p.len() <= 64
            && p.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'+' | b'-'))
    };
    text.split_once('/').is_some_and(|(kind, sub)| part(kind) && part(sub))
}

/// Longest outcome label or details field name: labels a reviewer picks
/// from a list and a gate tests, short like every name in a mission.
const DECISION_NAME_LEN_MAX: usize = 64;

const DECISION_NAME_HELP: &str = "use 1 to 64 ASCII letters, digits, `_`, `-` or `.`";

const TIER_HELP: &str = "a data tier is `public`, `internal` or `restricted` (the default)";

/// A gate's deadline fields, from a gate or a budget extension.
#[derive(Clone, Copy)]
struct DeadlineFields<'a> {
    deadline: Option<&'a Spanned<String>>,
    on_timeout: Option<&'a Spanned<String>>,
    escalate_to: Option<&'a Spanned<String>>,
    remind_before: Option<&'a Spanned<String>>,
}

/// The largest amount the ledger accepts (2^53, `ledger::AMOUNT_MAX`),
/// restated here: the missions crate does not depend on the ledger.
fn ledger_amount_max() -> u64 {
    1 << 53
}

/// Carries the report through the checks; each check records what is wrong
/// and still returns a value so later checks can run.
struct Checker<'a> {
    source: &'a Source<'a>,
    report: Report,
}

impl Checker<'_> {
    fn error(&mut self, at: Pos, message: impl Into<String>, help: impl Into<String>) {
        self.report.error(self.source.file, at, message, help);
    }

    fn name(&mut self, what: &str, name: &Spanned<String>) {
        let text = &name.value;
        let well_formed = (1..=MAX_NAME_LEN).contains(&text.len())
            && text.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if !well_formed {
            self.error(pos(name), format!("{what} name {} is not valid", quoted(text)), NAME_HELP);
        }
    }

    /// Reports a name seen before; `seen` maps names to where they were first written.
    fn unique(&mut self, what: &str, name: &Spanned<String>, seen: &mut BTreeMap<String, Pos>) {
        match seen.entry(name.value.clone()) {
            Entry::Vacant(slot) => {
                slot.insert(pos(name));
            }
            Entry::Occupied(first) => {
                let first = *first.get();
                self.error(
                    pos(name),
                    format!("duplicate {what} name {}", quoted(&name.value)),
                    format!(
                        "{what} names must be unique; the first is at line {}, column {}",
                        first.line, first.column
                    ),
                );
            }
        }
    }

    fn budget(&mut self, raw: &RawBudget) -> Budget {
        if raw.limit.value == 0 {
            self.error(
                pos(&raw.limit),
                "budget limit is zero",
                "set `limit` to the most budget units the mission may spend",
            );
        }
        let on_exhausted = match &raw.on_exhausted {
            None => OnExhausted::default(),
            Some(policy) => match policy.value.as_str() {
                "stop" => OnExhausted::Stop,
                "pause" => OnExhausted::Pause,
                "gate" => OnExhausted::Gate,
                other => {
                    self.error(
                        pos(policy),
                        format!("unknown `on_exhausted` policy {}", quoted(other)),
                        ON_EXHAUSTED_HELP,
                    );
                    OnExhausted::default()
                }
            },
        };
        let reservation_ttl_ms = self.bounded(
            "reservation_ttl_ms",
            &raw.reservation_ttl_ms,
            Budget::DEFAULT_RESERVATION_TTL_MS,
            Budget::MIN_RESERVATION_TTL_MS,
            Budget::MAX_RESERVATION_TTL_MS,
        );
        Budget { limit: raw.limit.value, on_exhausted, reservation_ttl_ms, extension: None }
    }

    /// Frontier failover rules: each condition valid, each target priced.
    fn routing(&mut self, raw: Option<&RawRouting>, models: &BTreeMap<String, ModelPrice>) -> Routing {
        let mut failover = Vec::new();
        for rule in raw.and_then(|r| r.failover.as_ref()).into_iter().flatten() {
            if !models.contains_key(&rule.to.value) {
                self.error(
                    pos(&rule.to),
                    format!("failover goes to model {}, which is not in `models`", quoted(&rule.to.value)),
                    "price the frontier model under `models` like any other (and register it with an `endpoint`)",
                );
            }
            if let Some(when) = self.condition(&rule.when) {
                failover.push(Failover { when, to: rule.to.value.clone() });
            }
        }
        Routing { failover }
    }

    /// The budget gate's policy (once reviewer groups are known).
    fn extension(
        &mut self,
        raw: &RawBudget,
        budget: &Budget,
        groups: &BTreeMap<String, Vec<String>>,
    ) -> Option<Extension> {
        if budget.on_exhausted != OnExhausted::Gate {
            if let Some(ext) = &raw.extension {
                self.error(
                    pos(ext),
                    "`extension` is only used with `on_exhausted: gate`",
                    "set `on_exhausted: gate`, or remove the `extension` block",
                );
            }
            return None;
        }
        let Some(ext) = &raw.extension else {
            return Some(Extension { amount: budget.limit, reviewers: Vec::new(), quorum: 1, deadline: None });
        };
        let name = Spanned { value: "budget".to_owned(), referenced: ext.referenced, defined: ext.defined };
        let ext = &ext.value;
        let amount = match &ext.amount {
            None => budget.limit,
            Some(a) if a.value == 0 || a.value > ledger_amount_max() => {
                self.error(
                    pos(a),
                    format!("extension amount {} is out of range", a.value),
                    "ask for a positive amount of budget units, at most 2^53",
                );
                budget.limit
            }
            Some(a) => a.value,
        };
        let (reviewers, quorum) =
            self.reviewers_and_quorum(&name, ext.reviewers.as_deref(), ext.quorum.as_ref(), groups);
        let fields = DeadlineFields {
            deadline: ext.deadline.as_ref(),
            on_timeout: ext.on_timeout.as_ref(),
            escalate_to: ext.escalate_to.as_ref(),
            remind_before: ext.remind_before.as_ref(),
        };
        let deadline = self.deadline(fields, groups);
        if let (Some(Deadline { on_timeout: OnTimeout::Approve, .. }), Some(t)) = (&deadline, &ext.on_timeout) {
            self.error(
                pos(t),
                "a budget extension cannot be approved by a timeout",
                "an extension is a reviewer's signed posting: use `on_timeout: deny` or `escalate`",
            );
        }
        Some(Extension { amount, reviewers, quorum, deadline })
    }

    fn models(&mut self, raw: &Spanned<BTreeMap<String, Spanned<RawModelPrice>>>) -> BTreeMap<String, ModelPrice> {
        if raw.value.is_empty() {
            self.error(
                pos(raw),
                "no models are defined",
                "add a model under `models` with `prompt_price` and `completion_price`",
            );
        }
        let mut models = BTreeMap::new();
        for (name, price) in &raw.value {
            let prompt_price = self.price("prompt_price", &price.value.prompt_price);
            let completion_price = self.price("completion_price", &price.value.completion_price);
            if prompt_price == Some(0) && completion_price == Some(0) {
                self.error(
                    pos(price),
                    format!("model {} costs nothing: both prices are zero", quoted(name)),
                    "set `prompt_price` or `completion_price` above zero so its use counts against the budget",
                );
            }
            models.insert(
                name.clone(),
                ModelPrice {
                    prompt_price: prompt_price.unwrap_or_default(),
                    completion_price: completion_price.unwrap_or_default(),
                },
            );
        }
        models
    }

    /// A price in budget units per token, or `None` once reported.
    fn price(&mut self, field: &str, raw: &Spanned<RawPrice>) -> Option<u64> {
        let max = ModelPrice::MAX_PER_TOKEN;
        let (message, help) = match &raw.value {
            RawPrice::Whole(price) if *price <= max => return Some(*price),
            RawPrice::Whole(price) => (
                format!("`{field}` is {price} units per token; it must be at most {max}"),
                "a price this high is most likely a typo (an extra zero or three); prices are budget units per token".to_owned(),
            ),
            // Fractions are shown with Debug, not Display, which prints 1.0 as "1".
            RawPrice::Fraction(price) if *price > max as f64 => (
                format!("`{field}` is {price:?} units per token; it must be at most {max}"),
                "a price this high is most likely a typo; write a whole number of budget units per token".to_owned(),
            ),
            RawPrice::Fraction(price) => (
                format!("`{field}` must be an integer, not {price:?}"),
                "prices are integer budget units per token; scale your budget instead, e.g. count in thousandths: a price of 1.5 becomes 1500 and `budget.limit` is multiplied by 1000".to_owned(),
            ),
            RawPrice::Negative(price) => (
                format!("`{field}` is {price}; a price cannot be negative"),
                format!("write a whole number of budget units per token, from 0 to {max}"),
            ),
            RawPrice::Text(text) => (
                format!("`{field}` is {}, not a whole number", quoted(text)),
                format!("write a whole number of budget units per token without quotes or units, e.g. `{field}: 1`"),
            ),
            RawPrice::Empty => (
                format!("`{field}` has no value"),
                format!("write a whole number of budget units per token, e.g. `{field}: 1`"),
            ),
        };
        self.error(pos(raw), message, help);
        None
    }

    fn agents(
        &mut self,
        raw: &Spanned<Vec<Spanned<RawAgent>>>,
        models: &BTreeMap<String, ModelPrice>,
        budget: &Budget,
    ) -> Vec<Agent> {
        if raw.value.is_empty() {
            self.error(
                pos(raw),
                "no agents are defined",
                "add an agent with `name`, `module` and `model` under `agents`",
            );
        }
        // Every agent's name, for `delegates_to`, which may name an agent
        // defined further down.
        let names: BTreeSet<&String> = raw.value.iter().map(|a| &a.value.name.value).collect();
        let mut seen = BTreeMap::new();
        let mut agents = Vec::with_capacity(raw.value.len());
        for agent in &raw.value {
            let RawAgent { name, module, model, models: may_use, limits, budget: agent_budget, memory, delegates_to } =
                &agent.value;
            self.name("agent", name);
            self.unique("agent", name, &mut seen);
            if !models.contains_key(&model.value) {
                self.error(
                    pos(model),
                    format!(
                        "agent {} uses model {}, which is not in `models`",
                        quoted(&name.value),
                        quoted(&model.value)
                    ),
                    one_of_help("models", models.keys()),
                );
            }
            let module_path = self.source.base_dir.join(&module.value);
            if !module_path.is_file() {
                self.error(
                    pos(module),
                    format!("agent module not found: {}", quoted(&module_path.display().to_string())),
                    "build the agent modules with `cargo xtask build-agents`; `module` is relative to the mission file's directory",
                );
            }
            let mut usable = vec![model.value.clone()];
            for other in may_use.iter().flatten() {
                if !models.contains_key(&other.value) {
                    self.error(
                        pos(other),
                        format!(
                            "agent {} may use model {}, which is not in `models`",
                            quoted(&name.value),
                            quoted(&other.value)
                        ),
                        one_of_help("models", models.keys()),
                    );
                } else if !usable.contains(&other.value) {
                    usable.push(other.value.clone());
                }
            }
            agents.push(Agent {
                name: name.value.clone(),
                module: module_path,
                model: model.value.clone(),
                models: usable,
                limits: self.limits(limits.as_ref().unwrap_or(&RawLimits::default())),
                budget: agent_budget
                    .as_ref()
                    .map_or_else(AgentBudget::default, |raw| self.agent_budget(&name.value, raw, budget)),
                memory: memory.as_ref().map_or_else(MemoryScope::default, |raw| self.memory_scope(raw)),
                delegates_to: self.delegates_to(&name.value, delegates_to.as_deref().unwrap_or_default(), &names),
            });
        }
        agents
    }

    /// An agent's `delegates_to`: agents of this mission, each once. The
    /// agent itself is allowed: the mission's `delegation.depth` bounds
    /// the recursion at run time.
    fn delegates_to(&mut self, agent: &str, raw: &[Spanned<String>], names: &BTreeSet<&String>) -> Vec<String> {
        let mut first_at: BTreeMap<&str, Pos> = BTreeMap::new();
        let mut targets = Vec::with_capacity(raw.len());
        for target in raw {
            if !names.contains(&target.value) {
                let all = one_of_help("agents", names.iter().copied());
                let help = match fields::nearest(&target.value, names.iter().map(|n| n.as_str())) {
                    Some(near) => format!("did you mean {}? Otherwise {all}", quoted(near)),
                    None => all,
                };
                self.error(
                    pos(target),
                    format!("agent {} delegates to {}, which is not in `agents`", quoted(agent), quoted(&target.value)),
                    help,
                );
                continue;
            }
            match first_at.entry(target.value.as_str()) {
                Entry::Vacant(slot) => {
                    slot.insert(pos(target));
                    targets.push(target.value.clone());
                }
                Entry::Occupied(first) => {
                    let first = *first.get();
                    self.error(
                        pos(target),
                        format!("agent {} lists {} in `delegates_to` twice", quoted(agent), quoted(&target.value)),
                        format!("list each agent once; the first is at line {}, column {}", first.line, first.column),
                    );
                }
            }
        }
        targets
    }

    /// `delegation:`: each limit in its range, and a call's fan-out within
    /// what one task may start in all.
    fn delegation(&mut self, raw: &RawDelegation) -> Delegation {
        let default = Delegation::DEFAULT;
        // The maxima fit in u32, so a failed conversion has already been
        // reported as out of range.
        let narrow = |n: u64, max: u32| u32::try_from(n).unwrap_or(max);
        let small = |check: &mut Self, field: &str, value: &Option<Spanned<u64>>, default: u32, max: u32| {
            narrow(check.bounded(field, value, default.into(), 1, max.into()), max)
        };
        let depth = small(self, "delegation.depth", &raw.depth, default.depth, DELEGATION_DEPTH_MAX);
        let fan_out = small(self, "delegation.fan_out", &raw.fan_out, default.fan_out, DELEGATION_FAN_OUT_MAX);
        let children_per_task = small(
            self,
            "delegation.children_per_task",
            &raw.children_per_task,
            default.children_per_task,
            DELEGATION_CHILDREN_MAX,
        );
        let input_bytes = self.bounded(
            "delegation.input_bytes",
            &raw.input_bytes,
            default.input_bytes,
            DELEGATION_INPUT_BYTES_MIN,
            DELEGATION_INPUT_BYTES_MAX,
        );
        // Compare only values that passed their own checks, so each wrong
        // value is reported once.
        let in_range = (1..=DELEGATION_FAN_OUT_MAX).contains(&fan_out)
            && (1..=DELEGATION_CHILDREN_MAX).contains(&children_per_task);
        if in_range && fan_out > children_per_task {
            // Where the written value is; with both left out there is no
            // conflict, as the defaults fit.
            let located = match (&raw.fan_out, &raw.children_per_task) {
                (Some(written), _) => Some((
                    pos(written),
                    format!(
                        "a call could never use its fan-out; lower `fan_out` to at most {children_per_task} or raise `children_per_task`"
                    ),
                )),
                (None, Some(written)) => Some((
                    pos(written),
                    format!(
                        "`fan_out` defaults to {fan_out}, which one task could never use; set `fan_out` to at most {children_per_task} too, or raise `children_per_task`"
                    ),
                )),
                (None, None) => None,
            };
            if let Some((at, help)) = located {
                self.error(
                    at,
                    format!(
                        "`delegation.fan_out` is {fan_out}, more than `delegation.children_per_task` of {children_per_task}"
                    ),
                    help,
                );
            }
        }
        Delegation { depth, fan_out, children_per_task, input_bytes }
    }

    /// `intake:`: a known agent, limits in range, an inbox directory that
    /// exists, and well-formed media types.
    fn intake(&mut self, raw: &Spanned<RawIntake>, agents: &[Agent]) -> Intake {
        let RawIntake { agent, queue, inbox, tier, documents } = &raw.value;
        if !agents.iter().any(|a| a.name == agent.value) {
            self.error(
                pos(agent),
                format!("`intake.agent` names {}, which is not in `agents`", quoted(&agent.value)),
                one_of_help("agents", agents.iter().map(|a| &a.name)),
            );
        }
        let queue = self.bounded("intake.queue", queue, INTAKE_QUEUE_DEFAULT.into(), 1, INTAKE_QUEUE_MAX.into());
        let tier = match tier {
            None => DataTier::default(),
            Some(t) => DataTier::parse(&t.value).unwrap_or_else(|| {
                self.error(pos(t), format!("`intake.tier` is {}", quoted(&t.value)), TIER_HELP);
                DataTier::default()
            }),
        };
        let inbox = inbox.as_ref().map(|dir| {
            let path = self.source.base_dir.join(&dir.value);
            if !path.is_dir() {
                self.error(
                    pos(dir),
                    format!("`intake.inbox` is {}, which is not a directory", quoted(&dir.value)),
                    format!("create {} (relative to the mission file), or leave `inbox` out", path.display()),
                );
            }
            path
        });
        let mut limits = DocumentLimits::default();
        if let Some(docs) = documents {
            limits.count = u32::try_from(self.bounded(
                "intake.documents.count",
                &docs.count,
                DOCUMENTS_PER_CASE_DEFAULT.into(),
                0,
                DOCUMENTS_PER_CASE_MAX.into(),
            ))
            .unwrap_or(DOCUMENTS_PER_CASE_MAX);
            limits.bytes =
                self.bounded("intake.documents.bytes", &docs.bytes, DOCUMENT_BYTES_DEFAULT, 1, DOCUMENT_BYTES_MAX);
            if let Some(types) = &docs.types {
                limits.types.clear();
                for t in types {
                    if media_type_ok(&t.value) {
                        limits.types.push(t.value.clone());
                    } else {
                        self.error(
                            pos(t),
                            format!("`intake.documents.types` lists {}, which is not a media type", quoted(&t.value)),
                            "write `type/subtype` in lowercase, such as `application/pdf` or `image/png`",
                        );
                    }
                }
            }
        }
        Intake {
            agent: agent.value.clone(),
            queue: u32::try_from(queue).unwrap_or(INTAKE_QUEUE_MAX),
            inbox,
            tier,
            documents: limits,
        }
    }

    fn agent_budget(&mut self, agent: &str, raw: &RawAgentBudget, mission: &Budget) -> AgentBudget {
        let agent = quoted(agent);
        let limit = raw.limit.as_ref();
        let task_limit = raw.task_limit.as_ref();
        for (field, value) in [("limit", limit), ("task_limit", task_limit)] {
            if let Some(value) = value {
                self.agent_cap(&agent, field, value, mission.limit);
            }
        }
        // Compare only caps that passed their own checks, so each wrong
        // value is reported once.
        let fits = |cap: &Spanned<u64>| cap.value > 0 && (mission.limit == 0 || cap.value <= mission.limit);
        if let (Some(limit), Some(task_limit)) = (limit, task_limit)
            && fits(limit)
            && fits(task_limit)
            && task_limit.value > limit.value
        {
            self.error(
                pos(task_limit),
                format!(
                    "agent {agent} budget `task_limit` is {}, more than its `limit` of {}",
                    task_limit.value, limit.value
                ),
                "one task cannot spend more than all of the agent's tasks together; lower `task_limit` or raise `limit`",
            );
        }
        AgentBudget { limit: limit.map(|v| v.value), task_limit: task_limit.map(|v| v.value) }
    }

    /// Checks one agent cap on its own: above zero, within the mission limit.
    fn agent_cap(&mut self, agent: &str, field: &str, cap: &Spanned<u64>, mission_limit: u64) {
        if cap.value == 0 {
            self.error(
                pos(cap),
                format!("agent {agent} budget `{field}` is zero"),
                format!("set `{field}` above zero, or leave it out so only the mission budget caps the agent"),
            );
        // A zero mission limit is reported on its own; comparing against it
        // would flag every cap again.
        } else if mission_limit > 0 && cap.value > mission_limit {
            self.error(
                pos(cap),
                format!(
                    "agent {agent} budget `{field}` is {}, more than the mission budget limit of {mission_limit}",
                    cap.value
                ),
                format!(
                    "an agent cannot spend more than the whole mission; lower `{field}` to at most {mission_limit} or raise `budget.limit`"
                ),
            );
        }
    }

    fn limits(&mut self, raw: &RawLimits) -> Limits {
        let (default, max) = (Limits::DEFAULT, Limits::MAX);
        // The bounds of the u32 limits fit in u32, so a failed conversion
        // has already been reported as out of range.
        let narrow = |n: u64, max: u32| u32::try_from(n).unwrap_or(max);
        Limits {
            memory_bytes: self.limit("memory_bytes", &raw.memory_bytes, default.memory_bytes, max.memory_bytes),
            fuel: self.limit("fuel", &raw.fuel, default.fuel, max.fuel),
            wall_ms: self.limit("wall_ms", &raw.wall_ms, default.wall_ms, max.wall_ms),
            host_calls: narrow(
                self.limit("host_calls", &raw.host_calls, default.host_calls.into(), max.host_calls.into()),
                max.host_calls,
            ),
            max_tokens: narrow(
                self.limit("max_tokens", &raw.max_tokens, default.max_tokens.into(), max.max_tokens.into()),
                max.max_tokens,
            ),
            call_arg_bytes: self.limit(
                "call_arg_bytes",
                &raw.call_arg_bytes,
                default.call_arg_bytes,
                max.call_arg_bytes,
            ),
            output_bytes: self.limit("output_bytes", &raw.output_bytes, default.output_bytes, max.output_bytes),
        }
    }

    fn trust(&mut self, raw: Option<&RawTrust>) -> Trust {
        let mut modules_signed_by = Vec::new();
        for key in raw.and_then(|t| t.modules_signed_by.as_deref()).unwrap_or_default() {
            let text = key.value.trim().to_ascii_lowercase();
            if text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit()) {
                modules_signed_by.push(text);
            } else {
                self.error(
                    pos(key),
                    format!("{} is not an Ed25519 public key", quoted(&key.value)),
                    "give the signer's public key as 64 hex characters (`conductor keys list` or the key file's `.pub` shows it)",
                );
            }
        }
        Trust { modules_signed_by }
    }

    fn limit(&mut self, field: &str, raw: &Option<Spanned<u64>>, default: u64, max: u64) -> u64 {
        self.bounded(field, raw, default, 1, max)
    }

    /// The value written, or `default` when left out; reported unless in `min..=max`.
    fn bounded(&mut self, field: &str, raw: &Option<Spanned<u64>>, default: u64, min: u64, max: u64) -> u64 {
        let Some(value) = raw else {
            return default;
        };
        if !(min..=max).contains(&value.value) {
            self.error(
                pos(value),
                format!("`{field}` is {}; it must be between {min} and {max}", value.value),
                format!("the default is {default}; leave `{field}` out to use it"),
            );
        }
        value.value
    }

    fn tasks(&mut self, raw: &Spanned<RawTaskGroups>, agents: &[Agent], schema: Option<&CasesSchema>) -> TaskSource {
        let mut located = Vec::new();
        match &raw.value {
            RawTaskGroups::One(group) => located.extend(self.task_group(group, pos(raw), "tasks", agents)),
            RawTaskGroups::Many(groups) if groups.is_empty() => self.error(
                pos(raw),
                "`tasks` is an empty list",
                "give one group (`agent` with `dir` or `inline`) or a list of them",
            ),
            RawTaskGroups::Many(groups) => {
                for (index, group) in groups.iter().enumerate() {
                    let name = format!("tasks[{index}]");
                    located.extend(self.task_group(&group.value, pos(group), &name, agents));
                }
            }
        }
        if located.len() > MAX_CASES {
            self.error(
                pos(raw),
                format!("the task groups hold {} cases, more than {MAX_CASES}", located.len()),
                "split the cases over several missions",
            );
        }
        if let Some(schema) = schema {
            for case in &located {
                schema.check(&mut self.report, case);
            }
        }
        TaskSource { cases: cases::unique_ids(&mut self.report, located) }
    }

    /// One `agent` with its `dir` or `inline` cases.
    fn task_group(&mut self, raw: &RawTasks, at: Pos, name: &str, agents: &[Agent]) -> Vec<cases::Located> {
        let RawTasks { agent, dir, inline, tier } = raw;
        let group_tier = match tier {
            None => DataTier::default(),
            Some(t) => DataTier::parse(&t.value).unwrap_or_else(|| {
                self.error(pos(t), format!("`tier` is {}", quoted(&t.value)), TIER_HELP);
                DataTier::default()
            }),
        };
        if !agents.iter().any(|a| a.name == agent.value) {
            self.error(
                pos(agent),
                format!("`{name}.agent` names {}, which is not in `agents`", quoted(&agent.value)),
                one_of_help("agents", agents.iter().map(|a| &a.name)),
            );
        }
        let mut located = match (dir, inline) {
            (Some(dir), None) => cases::from_dir(&mut self.report, self.source, dir, &agent.value),
            (None, Some(inline)) => cases::from_inline(&mut self.report, self.source.file, inline, &agent.value),
            (Some(_), Some(_)) => {
                self.error(
                    at,
                    format!("`{name}` has both `dir` and `inline`"),
                    "keep exactly one: `dir` for a directory of case files, or `inline` for cases written here",
                );
                Vec::new()
            }
            (None, None) => {
                self.error(
                    at,
                    format!("`{name}` has neither `dir` nor `inline`"),
                    "add `dir: <directory of *.json case files>` or `inline:` with a list of cases",
                );
                Vec::new()
            }
        };
        for located in &mut located {
            located.case.tier = match located.case.input.get("_tier") {
                None => group_tier,
                Some(serde_json::Value::String(t)) if DataTier::parse(t).is_some() => {
                    DataTier::parse(t).unwrap_or_default()
                }
                Some(other) => {
                    let at = located.at;
                    let file = located.file.clone();
                    self.report.error(
                        &file,
                        at,
                        format!("case {}: `_tier` is {other}", quoted(&located.case.id)),
                        TIER_HELP,
                    );
                    DataTier::default()
                }
            };
        }
        located
    }

    /// A space name: [`OWN_SPACE`] or a shared space (a name).
    fn space(&mut self, text: &Spanned<String>) -> String {
        if text.value != OWN_SPACE {
            self.name("memory space", text);
        }
        text.value.clone()
    }

    fn memory_scope(&mut self, raw: &RawMemoryScope) -> MemoryScope {
        let read = match &raw.read {
            None => MemoryScope::default().read,
            Some(spaces) => {
                let mut seen = BTreeMap::new();
                spaces
                    .iter()
                    .map(|space| {
                        self.unique("memory space", space, &mut seen);
                        self.space(space)
                    })
                    .collect()
            }
        };
        let write = match &raw.write {
            None => MemoryScope::default().write,
            Some(space) if space.value == "none" => None,
            Some(space) => Some(self.space(space)),
        };
        MemoryScope { read, write }
    }

    fn memory_limits(&mut self, raw: Option<&RawMemoryLimits>) -> MemoryLimits {
        let mut limits = MemoryLimits::DEFAULT;
        let Some(raw) = raw else { return limits };
        let fields = [
            ("facts", &raw.facts, &mut limits.facts, MemoryLimits::MAX.facts),
            ("bytes", &raw.bytes, &mut limits.bytes, MemoryLimits::MAX.bytes),
        ];
        for (field, value, slot, max) in fields {
            let Some(value) = value else { continue };
            if value.value == 0 || value.value > max {
                self.error(
                    pos(value),
                    format!("`memory_limits.{field}` is {}, outside 1..={max}", value.value),
                    format!("give a number from 1 to {max}, or leave `{field}` out for the default"),
                );
            } else {
                *slot = value.value;
            }
        }
        limits
    }

    fn seed_fact(&mut self, raw: &RawSeedFact) -> Option<SeedFact> {
        let required = [
            ("subject", &raw.subject, "policy:housing-support"),
            ("predicate", &raw.predicate, "income-limit-monthly"),
        ];
        for (field, text, example) in required {
            if text.value.trim().is_empty() {
                self.error(
                    pos(text),
                    format!("memory fact has an empty `{field}`"),
                    format!("fill in `{field}`, e.g. `{field}: {example}`"),
                );
            }
        }
        let valid_from = self.timestamp("valid_from", &raw.valid_from);
        let valid_to = match &raw.valid_to {
            None => None,
            Some(text) => {
                let valid_to = self.timestamp("valid_to", text)?;
                if valid_from.is_some_and(|from| valid_to <= from) {
                    self.error(
                        pos(text),
                        "`valid_to` is not after `valid_from`",
                        "a fact holds from `valid_from` up to `valid_to`; make `valid_to` later, or leave it out if the fact is still valid",
                    );
                }
                Some(valid_to)
            }
        };
        let space = raw.space.as_ref().map_or_else(|| OWN_SPACE.to_owned(), |space| self.space(space));
        Some(SeedFact {
            space,
            source: raw.source.clone(),
            subject: raw.subject.value.clone(),
            predicate: raw.predicate.value.clone(),
            value: raw.value.clone(),
            valid_from: valid_from?,
            valid_to,
        })
    }

    fn timestamp(&mut self, field: &str, text: &Spanned<String>) -> Option<i64> {
        match parse_rfc3339(&text.value) {
            Ok(micros) => Some(micros),
            Err(problem) => {
                self.error(pos(text), format!("`{field}`: {problem}"), TIMESTAMP_HELP);
                None
            }
        }
    }

    /// A reviewer key id as `conductor keys new` prints it.
    fn key_id(&mut self, text: &Spanned<String>) -> bool {
        let ok = text.value.len() == 32 && text.value.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        if !ok {
            self.error(
                pos(text),
                format!("{} is neither a reviewer group nor a key id", quoted(&text.value)),
                "a key id is the 32 hex characters `conductor keys new` prints (`key id ...`); a group is a name under `reviewer_groups`",
            );
        }
        ok
    }

    fn reviewer_groups(
        &mut self,
        raw: Option<&BTreeMap<String, Spanned<Vec<Spanned<String>>>>>,
    ) -> BTreeMap<String, Vec<String>> {
        let mut groups = BTreeMap::new();
        for (name, members) in raw.into_iter().flatten() {
            // The group's name is reported where its member list starts.
            let located = Spanned { value: name.clone(), referenced: members.referenced, defined: members.defined };
            self.name("reviewer group", &located);
            if members.value.is_empty() {
                self.error(
                    pos(members),
                    format!("reviewer group {} has no members", quoted(name)),
                    "list the key ids of its reviewers",
                );
            }
            let mut ids: Vec<String> = Vec::new();
            for member in &members.value {
                if self.key_id(member) && !ids.contains(&member.value) {
                    ids.push(member.value.clone());
                }
            }
            groups.insert(name.clone(), ids);
        }
        groups
    }

    fn gates(&mut self, raw: &[RawGate], groups: &BTreeMap<String, Vec<String>>) -> Vec<Gate> {
        let mut seen = BTreeMap::new();
        let mut gates = Vec::with_capacity(raw.len());
        for gate in raw {
            self.name("gate", &gate.name);
            self.unique("gate", &gate.name, &mut seen);
            let (reviewers, quorum) =
                self.reviewers_and_quorum(&gate.name, gate.reviewers.as_deref(), gate.quorum.as_ref(), groups);
            let fields = DeadlineFields {
                deadline: gate.deadline.as_ref(),
                on_timeout: gate.on_timeout.as_ref(),
                escalate_to: gate.escalate_to.as_ref(),
                remind_before: gate.remind_before.as_ref(),
            };
            let deadline = self.deadline(fields, groups);
            if let Some(when) = self.condition(&gate.when) {
                gates.push(Gate { name: gate.name.value.clone(), when, reviewers, quorum, deadline });
            }
        }
        gates
    }

    /// A gate's reviewers (key ids, groups expanded, deduplicated) and its
    /// quorum, checked against each other.
    fn reviewers_and_quorum(
        &mut self,
        name: &Spanned<String>,
        reviewers_raw: Option<&[Spanned<String>]>,
        quorum_raw: Option<&Spanned<u64>>,
        groups: &BTreeMap<String, Vec<String>>,
    ) -> (Vec<String>, u32) {
        let mut reviewers: Vec<String> = Vec::new();
        for who in reviewers_raw.into_iter().flatten() {
            let ids = match groups.get(&who.value) {
                Some(members) => members.clone(),
                None if self.key_id(who) => vec![who.value.clone()],
                None => Vec::new(),
            };
            for id in ids {
                if !reviewers.contains(&id) {
                    reviewers.push(id);
                }
            }
        }
        let quorum = match quorum_raw {
            None => 1,
            Some(q) => {
                let most = if reviewers.is_empty() {
                    QUORUM_MAX
                } else {
                    QUORUM_MAX.min(u32::try_from(reviewers.len()).unwrap_or(QUORUM_MAX))
                };
                if q.value == 0 || q.value > u64::from(most) {
                    self.error(
                        pos(q),
                        format!("gate {} asks for a quorum of {}, outside 1..={most}", quoted(&name.value), q.value),
                        if reviewers.is_empty() {
                            format!("a quorum is 1 to {QUORUM_MAX} approvals")
                        } else {
                            format!(
                                "the gate lists {} distinct reviewer(s); a quorum cannot need more",
                                reviewers.len()
                            )
                        },
                    );
                }
                u32::try_from(q.value).unwrap_or(1).clamp(1, most)
            }
        };
        (reviewers, quorum)
    }

    /// `30s`, `15m`, `48h`, `7d` as microseconds.
    fn duration(&mut self, field: &str, text: &Spanned<String>) -> Option<i64> {
        let t = text.value.trim();
        let unit_us: i64 = match t.chars().last() {
            Some('s') => 1_000_000,
            Some('m') => 60_000_000,
            Some('h') => 3_600_000_000,
            Some('d') => 86_400_000_000,
            _ => 0,
        };
        let n: Option<i64> = t.get(..t.len().saturating_sub(1)).and_then(|n| n.parse().ok()).filter(|n| *n > 0);
        match (unit_us, n) {
            // At most a year: a gate is a person's task, not an archive.
            (unit, Some(n)) if unit > 0 && n.checked_mul(unit).is_some_and(|us| us <= 366 * 86_400_000_000) => {
                Some(n * unit)
            }
            _ => {
                self.error(
                    pos(text),
                    format!("`{field}`: {} is not a duration", quoted(&text.value)),
                    "write a whole number and a unit: `90s`, `30m`, `48h` or `7d` (at most a year)",
                );
                None
            }
        }
    }

    fn deadline(&mut self, gate: DeadlineFields<'_>, groups: &BTreeMap<String, Vec<String>>) -> Option<Deadline> {
        let Some(text) = gate.deadline else {
            for (field, given) in [
                ("on_timeout", gate.on_timeout),
                ("escalate_to", gate.escalate_to),
                ("remind_before", gate.remind_before),
            ] {
                if let Some(given) = given {
                    self.error(
                        pos(given),
                        format!("`{field}` needs a `deadline`"),
                        "add `deadline: 48h` (or remove this line)",
                    );
                }
            }
            return None;
        };
        let after_us = self.duration("deadline", text);
        let on_timeout = match gate.on_timeout.as_ref().map(|t| t.value.as_str()) {
            None | Some("deny") => Some(OnTimeout::Deny),
            Some("approve") => Some(OnTimeout::Approve),
            Some("escalate") => match gate.escalate_to {
                Some(group) => match groups.get(&group.value) {
                    Some(members) => Some(OnTimeout::Escalate(members.clone())),
                    None => {
                        self.error(
                            pos(group),
                            format!("`escalate_to` names {}, which is not a reviewer group", quoted(&group.value)),
                            one_of_help("reviewer_groups", groups.keys()),
                        );
                        None
                    }
                },
                None => {
                    self.error(
                        pos(text),
                        "`on_timeout: escalate` needs `escalate_to: GROUP`",
                        "name the reviewer group that takes over",
                    );
                    None
                }
            },
            Some(other) => {
                if let Some(t) = gate.on_timeout {
                    self.error(
                        pos(t),
                        format!("`on_timeout` is {}", quoted(other)),
                        "use one of: deny, approve, escalate",
                    );
                }
                None
            }
        };
        if let (Some(group), Some(OnTimeout::Deny | OnTimeout::Approve)) = (gate.escalate_to, &on_timeout) {
            self.error(
                pos(group),
                "`escalate_to` is only used with `on_timeout: escalate`",
                "add `on_timeout: escalate` or remove it",
            );
        }
        let remind_before_us = match gate.remind_before {
            None => None,
            Some(text) => {
                let before = self.duration("remind_before", text)?;
                if after_us.is_some_and(|after| before >= after) {
                    self.error(
                        pos(text),
                        "`remind_before` is not shorter than the `deadline`",
                        "a reminder comes before the deadline: make it shorter",
                    );
                    return None;
                }
                Some(before)
            }
        };
        Some(Deadline { after_us: after_us?, on_timeout: on_timeout?, remind_before_us })
    }

    fn condition(&mut self, raw: &Spanned<RawCondition>) -> Option<Condition> {
        let RawCondition { field, equals, not_equals, greater_than, less_than, one_of } = &raw.value;
        let path = match FieldPath::parse(&field.value) {
            Ok(path) => Some(path),
            Err(problem) => {
                self.error(
                    pos(field),
                    problem.to_string(),
                    "use `case.<field>` for the case's data or `decision.<field>` for the agent's decision, e.g. `case.requested_amount`",
                );
                None
            }
        };
        let mut tests: Vec<(&str, Pos, Test)> = Vec::new();
        if let Some(v) = equals {
            tests.push(("equals", pos(v), Test::Equals(v.value.clone())));
        }
        if let Some(v) = not_equals {
            tests.push(("not_equals", pos(v), Test::NotEquals(v.value.clone())));
        }
        if let Some(v) = greater_than {
            self.finite("greater_than", v);
            tests.push(("greater_than", pos(v), Test::GreaterThan(v.value)));
        }
        if let Some(v) = less_than {
            self.finite("less_than", v);
            tests.push(("less_than", pos(v), Test::LessThan(v.value)));
        }
        if let Some(v) = one_of {
            if v.value.is_empty() {
                self.error(
                    pos(v),
                    "`one_of` lists no values",
                    "list at least one value, e.g. `one_of: [deny, undetermined]`",
                );
            }
            tests.push(("one_of", pos(v), Test::OneOf(v.value.clone())));
        }
        let mut tests = tests.into_iter();
        let Some((_, _, test)) = tests.next() else {
            self.error(
                pos(raw),
                "condition has no test",
                "add one of `equals`, `not_equals`, `greater_than`, `less_than` or `one_of`",
            );
            return None;
        };
        if let Some((extra, at, _)) = tests.next() {
            self.error(
                at,
                format!("condition has more than one test (`{extra}` is extra)"),
                "keep exactly one test per condition; add another gate for another test",
            );
            return None;
        }
        Some(Condition { field: path?, test })
    }

    /// `decisions:`: the outcomes (a non-empty set of labels) and the
    /// types of the decision's `details`.
    fn decisions(&mut self, raw: &Spanned<RawDecisions>) -> Decisions {
        let RawDecisions { outcomes: raw_outcomes, details: raw_details } = &raw.value;
        if raw_outcomes.value.is_empty() {
            self.error(
                pos(raw_outcomes),
                "`decisions.outcomes` lists no outcomes",
                "list the outcomes a decision may have, e.g. `outcomes: [eligible, ineligible, undetermined]`",
            );
        }
        if raw_outcomes.value.len() > Decisions::OUTCOMES_MAX {
            self.error(
                pos(raw_outcomes),
                format!(
                    "`decisions.outcomes` lists {} outcomes, more than {}",
                    raw_outcomes.value.len(),
                    Decisions::OUTCOMES_MAX
                ),
                "outcomes are a short closed set a reviewer picks from; put detail in `reason` or `details`",
            );
        }
        let mut seen = BTreeMap::new();
        let mut outcomes = Vec::with_capacity(raw_outcomes.value.len());
        for outcome in &raw_outcomes.value {
            self.decision_name("outcome", outcome);
            if Decisions::RESERVED_OUTCOMES.contains(&outcome.value.as_str()) {
                self.error(
                    pos(outcome),
                    format!("outcome {} is one the conductor records itself", quoted(&outcome.value)),
                    "`rejected` is what a reviewer's rejection records and `timed_out` what a gate nobody decided records; name the agent's outcome otherwise, e.g. `ineligible`",
                );
            }
            self.unique("outcome", outcome, &mut seen);
            if !outcomes.contains(&outcome.value) {
                outcomes.push(outcome.value.clone());
            }
        }
        let details = raw_details.as_ref().map(|raw_details| {
            if raw_details.value.len() > Decisions::DETAILS_FIELDS_MAX {
                self.error(
                    pos(raw_details),
                    format!(
                        "`decisions.details` declares {} fields, more than {}",
                        raw_details.value.len(),
                        Decisions::DETAILS_FIELDS_MAX
                    ),
                    "a decision's details are a few typed fields; keep documents out of decisions",
                );
            }
            let mut types = BTreeMap::new();
            for (name, type_name) in &raw_details.value {
                // The field's name is reported where its type is written.
                let located =
                    Spanned { value: name.clone(), referenced: type_name.referenced, defined: type_name.defined };
                self.decision_name("details field", &located);
                match FieldType::parse(&type_name.value) {
                    Some(field_type) => {
                        types.insert(name.clone(), field_type);
                    }
                    None => {
                        let choices: Vec<&str> = FieldType::ALL.iter().map(|t| t.as_str()).collect();
                        self.error(
                            pos(type_name),
                            format!(
                                "details field {} has type {}, which is not a type",
                                quoted(name),
                                quoted(&type_name.value)
                            ),
                            format!("use one of: {}", choices.join(", ")),
                        );
                    }
                }
            }
            types
        });
        Decisions { outcomes, details }
    }

    /// An outcome label or a details field name.
    fn decision_name(&mut self, what: &str, name: &Spanned<String>) {
        let text = &name.value;
        let well_formed = (1..=DECISION_NAME_LEN_MAX).contains(&text.len())
            && text.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
        if !well_formed {
            self.error(pos(name), format!("{what} {} is not a valid name", quoted(text)), DECISION_NAME_HELP);
        }
    }

    /// Refuses a gate condition's field that no case (or the cases schema)
    /// has, or that decisions do not have, and a comparison of
    /// `decision.outcome` with a value that is not an outcome.
    fn condition_fields(
        &mut self,
        reader: &str,
        raw: &Spanned<RawCondition>,
        cases: &CaseFields<'_>,
        decisions: Option<&Decisions>,
    ) {
        let field = &raw.value.field;
        // A path that does not parse is reported by `condition`.
        let Ok(path) = FieldPath::parse(&field.value) else { return };
        if path.reads_case() {
            if !cases.knows(path.keys()) {
                let (message, help) = cases.unknown(reader, path.as_str());
                self.error(pos(field), message, help);
            }
            return;
        }
        let Some(decisions) = decisions else { return };
        if !fields::decision_knows(decisions, path.keys()) {
            let (message, help) = fields::decision_unknown(decisions, reader, path.as_str());
            self.error(pos(field), message, help);
            return;
        }
        if path.keys() != ["outcome"] {
            return;
        }
        let RawCondition { equals, not_equals, one_of, .. } = &raw.value;
        let compared = equals.iter().chain(not_equals).map(|v| (pos(v), std::slice::from_ref(&v.value)));
        let listed = one_of.iter().map(|v| (pos(v), v.value.as_slice()));
        for (at, values) in compared.chain(listed).collect::<Vec<_>>() {
            for value in values {
                if let Some((message, help)) = fields::unknown_outcome(&decisions.outcomes, value) {
                    self.error(at, format!("{reader} compares `decision.outcome` with {message}"), help);
                }
            }
        }
    }

    /// A failover rule is applied before the agent runs: it can read the
    /// case only, and only fields the cases have.
    fn failover_fields(&mut self, raw: &Spanned<RawCondition>, cases: &CaseFields<'_>) {
        let field = &raw.value.field;
        let Ok(path) = FieldPath::parse(&field.value) else { return };
        if !path.reads_case() {
            self.error(
                pos(field),
                format!(
                    "a failover rule reads {}, but failover is chosen before the agent decides",
                    quoted(path.as_str())
                ),
                "test a `case.*` field",
            );
        } else if !cases.knows(path.keys()) {
            let (message, help) = cases.unknown("a failover rule", path.as_str());
            self.error(pos(field), message, help);
        }
    }

    fn finite(&mut self, field: &str, bound: &Spanned<f64>) {
        if !bound.value.is_finite() {
            self.error(
                pos(bound),
                format!("`{field}` is not a finite number"),
                "compare against an ordinary number such as 5000",
            );
        }
    }
}

fn one_of_help<'a>(section: &str, names: impl Iterator<Item = &'a String>) -> String {
    // A set: duplicate names are reported on their own and would only add noise here.
    let names: BTreeSet<&String> = names.collect();
    if names.is_empty() {
        format!("define it under `{section}`")
    } else {
        let names: Vec<String> = names.into_iter().map(|n| quoted(n)).collect();
        format!("use one of {} or define it under `{section}`", names.join(", "))
    }
}
