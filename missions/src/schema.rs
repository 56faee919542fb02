//! `cases_schema:`: a JSON Schema that every case must meet, checked when
//! the mission is loaded, and the fields it declares, which gate
//! conditions are checked against (so a mission can be checked on the
//! shape of its cases, not only on the cases it happens to hold).

use std::collections::BTreeSet;

use serde_json::Value;
use serde_saphyr::Spanned;

use crate::cases::{self, Located};
use crate::diagnostic::{Pos, Report, clipped, quoted};
use crate::mission::CASES_SCHEMA_FILE_BYTES_MAX;
use crate::read::read_regular;
use crate::validate::{Source, pos};

/// Where the schema is registered with the compiler: a fixed name rather
/// than its path, which may hold `#` or `%` that a URL would misread.
/// References resolve against it; any outside the document is refused
/// by [`NoLoader`].
const SCHEMA_URL: &str = "file:///cases.schema.json";

/// Problems reported per case: the first few say what is wrong; a case
/// that fails every rule would otherwise bury the rest of the report.
const SCHEMA_ERRORS_PER_CASE_MAX: usize = 4;

/// Longest validator message kept: its messages may quote a case's value
/// (`pattern`, `enum`), which may be a long text.
const SCHEMA_MESSAGE_CHARS_MAX: usize = 200;

/// How deep `$ref` / `allOf` / `anyOf` / `oneOf` are followed when looking
/// for declared properties, and how many schema nodes one look may visit:
/// a `$ref` may point back at itself, and branches may multiply.
const SCHEMA_DEPTH_MAX: usize = 32;
const SCHEMA_NODES_VISITED_MAX: usize = 10_000;

/// How deep, and how many, declared field paths are listed for a
/// "did you mean" suggestion.
const FIELD_DEPTH_MAX: usize = 8;
pub(crate) const FIELD_PATHS_MAX: usize = 10_000;

/// A compiled cases schema.
pub(crate) struct CasesSchema {
    /// The path, as messages show it.
    pub(crate) shown: String,
    root: Value,
    schemas: boon::Schemas,
    index: boon::SchemaIndex,
}

/// Loads nothing: a cases schema is one self-contained document. A
/// reference to another file or URL would read from anywhere on the host
/// (or try the network, which an air-gapped host does not have).
struct NoLoader;

impl boon::UrlLoader for NoLoader {
    fn load(&self, url: &str) -> Result<Value, Box<dyn std::error::Error>> {
        Err(format!("{url} is outside the schema; a cases schema may refer only within itself (`#/$defs/...`)").into())
    }
}

impl CasesSchema {
    /// Reads and compiles the schema the mission names; problems are
    /// reported at `cases_schema:` (or in the schema file, for its JSON).
    pub(crate) fn load(report: &mut Report, source: &Source<'_>, raw: &Spanned<String>) -> Option<CasesSchema> {
        let path = source.base_dir.join(&raw.value);
        let shown = path.display().to_string();
        let bytes = match read_regular(&path, CASES_SCHEMA_FILE_BYTES_MAX) {
            Ok(bytes) => bytes,
            Err(e) => {
                report.error(
                    source.file,
                    pos(raw),
                    format!("cannot read cases schema {}: {e}", quoted(&shown)),
                    "`cases_schema` is a JSON Schema file, relative to the mission file's directory",
                );
                return None;
            }
        };
        let root: Value = match serde_json::from_slice(&bytes) {
            Ok(root) => root,
            Err(e) => {
                cases::report_json_error(report, &shown, &e);
                return None;
            }
        };
        if !root.is_object() {
            report.plain_error(
                &shown,
                Pos::START,
                "a cases schema is a JSON object",
                "write a JSON Schema such as `{\"type\": \"object\", \"properties\": {...}}`",
            );
            return None;
        }
        let mut compiler = boon::Compiler::new();
        // A schema without `$schema` is read as the current draft, named
        // here so that a newer boon does not change what it means.
        compiler.set_default_draft(boon::Draft::V2020_12);
        compiler.use_loader(Box::new(NoLoader));
        let mut schemas = boon::Schemas::new();
        // Boxed: boon's error is large, and only its message is kept.
        let compiled = compiler
            .add_resource(SCHEMA_URL, root.clone())
            .map_err(Box::new)
            .and_then(|()| compiler.compile(SCHEMA_URL, &mut schemas).map_err(Box::new));
        match compiled {
            Ok(index) => Some(CasesSchema { shown, root, schemas, index }),
            Err(e) => {
                report.error(
                    source.file,
                    pos(raw),
                    format!(
                        "cases schema {} is not a valid JSON Schema: {}",
                        quoted(&shown),
                        clipped(&format!("{e:#}"), SCHEMA_MESSAGE_CHARS_MAX)
                    ),
                    "fix the schema (drafts 4 to 2020-12 are understood; `$ref` only within the file)",
                );
                None
            }
        }
    }

    /// Reports each way `located` fails the schema, in the case's file
    /// (or at the inline case).
    pub(crate) fn check(&self, report: &mut Report, located: &Located) {
        let Err(error) = self.schemas.validate(&located.case.input, self.index) else {
            return;
        };
        let mut leaves = Vec::new();
        collect_leaves(&error, &mut leaves);
        for leaf in leaves.iter().take(SCHEMA_ERRORS_PER_CASE_MAX) {
            let at = leaf.instance_location.to_string();
            let at = if at.is_empty() { "the top level".to_owned() } else { quoted(&at) };
            report.error(
                &located.file,
                located.at,
                format!(
                    "case {} does not match the cases schema at {at}: {}",
                    quoted(&located.case.id),
                    clipped(&leaf.kind.to_string(), SCHEMA_MESSAGE_CHARS_MAX)
                ),
                format!("fix the case, or the schema {} if the case is right", quoted(&self.shown)),
            );
        }
        if leaves.len() > SCHEMA_ERRORS_PER_CASE_MAX {
            report.plain_error(
                &located.file,
                located.at,
                format!("... and {} more schema problem(s) in this case", leaves.len() - SCHEMA_ERRORS_PER_CASE_MAX),
                "fix the ones above first",
            );
        }
    }

    /// Whether the schema declares the field at `keys` (each key a
    /// property of the object the one before it names).
    pub(crate) fn declares(&self, keys: &[String]) -> bool {
        let mut budget = SCHEMA_NODES_VISITED_MAX;
        let mut nodes = vec![&self.root];
        for key in keys {
            let next: Vec<&Value> = nodes
                .iter()
                .flat_map(|node| properties(&self.root, node, &mut budget))
                .filter(|(name, _)| *name == key)
                .map(|(_, schema)| schema)
                .collect();
            if next.is_empty() {
                return false;
            }
            nodes = next;
        }
        true
    }

    /// Every field path the schema declares (`case.a`, `case.a.b`), for
    /// suggestions; bounded in depth and number.
    pub(crate) fn field_paths(&self) -> BTreeSet<String> {
        let mut budget = SCHEMA_NODES_VISITED_MAX;
        let mut paths = BTreeSet::new();
        let mut stack: Vec<(String, &Value, usize)> = vec![("case".to_owned(), &self.root, 0)];
        while let Some((prefix, node, depth)) = stack.pop() {
            if depth >= FIELD_DEPTH_MAX || paths.len() >= FIELD_PATHS_MAX {
                continue;
            }
            for (name, schema) in properties(&self.root, node, &mut budget) {
                let path = format!("{prefix}.{name}");
                if paths.insert(path.clone()) {
                    stack.push((path, schema, depth + 1));
                }
            }
        }
        paths
    }
}

/// The errors at the tips of boon's tree: the specific ones.
fn collect_leaves<'e, 's, 'v>(
    error: &'e boon::ValidationError<'s, 'v>,
    out: &mut Vec<&'e boon::ValidationError<'s, 'v>>,
) {
    if error.causes.is_empty() {
        out.push(error);
    } else {
        for cause in &error.causes {
            collect_leaves(cause, out);
        }
    }
}

/// The properties `node` declares, directly or through the schemas that
/// apply with it (`$ref` within the document, `allOf`, `anyOf`, `oneOf`).
fn properties<'a>(root: &'a Value, node: &'a Value, budget: &mut usize) -> Vec<(&'a String, &'a Value)> {
    let mut applicable = Vec::new();
    collect_applicable(root, node, 0, budget, &mut applicable);
    applicable.into_iter().filter_map(|schema| schema.get("properties").and_then(Value::as_object)).flatten().collect()
}

fn collect_applicable<'a>(
    root: &'a Value,
    node: &'a Value,
    depth: usize,
    budget: &mut usize,
    out: &mut Vec<&'a Value>,
) {
    if depth > SCHEMA_DEPTH_MAX || *budget == 0 || !node.is_object() {
        return;
    }
    *budget -= 1;
    out.push(node);
    if let Some(target) = node
        .get("$ref")
        .and_then(Value::as_str)
        .and_then(|r| r.strip_prefix('#'))
        .and_then(|pointer| root.pointer(pointer))
    {
        collect_applicable(root, target, depth + 1, budget, out);
    }
    for combinator in ["allOf", "anyOf", "oneOf"] {
        for branch in node.get(combinator).and_then(Value::as_array).into_iter().flatten() {
            collect_applicable(root, branch, depth + 1, budget, out);
        }
    }
}
