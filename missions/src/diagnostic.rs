//! Located, human-readable problems, and the collector validation writes into.

use std::fmt;

use serde_saphyr::{Location, MessageFormatter, UserMessageFormatter};

/// One problem in a mission file (or a file it refers to), with where it is
/// and what to do about it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{line}:{column}: error: {message}{help_line}", help_line = HelpLine(.help.as_deref()))]
pub struct Diagnostic {
    /// The file the problem is in: the mission file or a case file.
    pub file: String,
    /// 1-based line.
    pub line: usize,
    /// 1-based column: characters in the mission file; bytes in a JSON
    /// case file (as serde_json counts).
    pub column: usize,
    /// What is wrong.
    pub message: String,
    /// What to do about it.
    pub help: Option<String>,
    /// Whether `message` or `help` may quote text read from a file (a
    /// value, a key, the parser's view of a line): see
    /// [`Diagnostics::without_source_text`].
    echoes_input: bool,
}

impl Diagnostic {
    /// Whether this problem's text may quote what a file contains.
    pub fn echoes_input(&self) -> bool {
        self.echoes_input
    }
}

/// Renders the optional second line of a diagnostic.
struct HelpLine<'a>(Option<&'a str>);

impl fmt::Display for HelpLine<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(help) => write!(f, "\n  help: {help}"),
            None => Ok(()),
        }
    }
}

/// Every problem found in a mission; never empty.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", Blocks(&.0))]
pub struct Diagnostics(Vec<Diagnostic>);

/// Renders diagnostics one block each, separated by newlines.
struct Blocks<'a>(&'a [Diagnostic]);

impl fmt::Display for Blocks<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, diagnostic) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{diagnostic}")?;
        }
        Ok(())
    }
}

// `len` without `is_empty` is deliberate: a `Diagnostics` is never empty.
#[allow(clippy::len_without_is_empty)]
impl Diagnostics {
    /// The problems, in the order they were found.
    pub fn iter(&self) -> std::slice::Iter<'_, Diagnostic> {
        self.0.iter()
    }

    /// How many problems were found (at least one).
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// For failures that stop everything else, such as a parse error;
    /// the text may quote the file.
    pub(crate) fn one(file: &str, pos: Pos, message: impl Into<String>, help: impl Into<String>) -> Diagnostics {
        let mut report = Report::default();
        report.error(file, pos, message, help);
        Diagnostics(report.found)
    }

    /// As [`Diagnostics::one`], for text that quotes nothing from any file
    /// (an unreadable file, a missing field named by the format).
    pub(crate) fn one_plain(file: &str, pos: Pos, message: impl Into<String>, help: impl Into<String>) -> Diagnostics {
        let mut report = Report::default();
        report.plain_error(file, pos, message, help);
        Diagnostics(report.found)
    }

    /// The same problems, where each one whose text may quote a file's
    /// contents says only where it is. For a caller who named a file they
    /// may not be able to read (a server asked to load a path): a parse
    /// error would otherwise show them part of it, e.g. the first line of
    /// `/etc/shadow` as an "unknown field". The command line, whose user
    /// can read the file anyway, shows everything.
    pub fn without_source_text(&self) -> Diagnostics {
        self.withholding(|_| true)
    }

    /// As [`Diagnostics::without_source_text`], except for problems in
    /// `own_file`, which are shown in full: for a mission the caller sent
    /// as text (its own words), whose case files or schema are read from
    /// the host.
    pub fn without_source_text_except(&self, own_file: &str) -> Diagnostics {
        self.withholding(|d| d.file != own_file)
    }

    fn withholding(&self, applies: impl Fn(&Diagnostic) -> bool) -> Diagnostics {
        let shown = self
            .0
            .iter()
            .map(|d| {
                if !d.echoes_input || !applies(d) {
                    return d.clone();
                }
                Diagnostic { message: WITHHELD_MESSAGE.to_owned(), help: Some(WITHHELD_HELP.to_owned()), ..d.clone() }
            })
            .collect();
        Diagnostics(shown)
    }
}

/// What [`Diagnostics::without_source_text`] says instead of the problem.
const WITHHELD_MESSAGE: &str = "this is not valid here (the details are withheld: they would quote the file)";
const WITHHELD_HELP: &str = "run `conductor mission validate` on the file on its host to see the problem";

impl<'a> IntoIterator for &'a Diagnostics {
    type Item = &'a Diagnostic;
    type IntoIter = std::slice::Iter<'a, Diagnostic>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

/// A position in some file, 1-based.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Pos {
    pub line: usize,
    pub column: usize,
}

impl Pos {
    /// The start of a file: where problems with a whole file are reported.
    pub const START: Pos = Pos { line: 1, column: 1 };

    /// Positions the parser could not determine are reported at the start
    /// of the file rather than at an impossible line 0.
    pub fn from_location(location: Location) -> Pos {
        let to_usize = |n: u64| usize::try_from(n).unwrap_or(usize::MAX).max(1);
        Pos { line: to_usize(location.line()), column: to_usize(location.column()) }
    }
}

/// Collects problems while validation carries on, so one run reports all of them.
#[derive(Debug, Default)]
pub(crate) struct Report {
    found: Vec<Diagnostic>,
}

impl Report {
    pub fn error(&mut self, file: &str, pos: Pos, message: impl Into<String>, help: impl Into<String>) {
        self.push(file, pos, message.into(), help.into(), true);
    }

    /// As [`Report::error`], for text that quotes nothing read from a file
    /// (only what the mission format itself names, counts and sizes).
    pub fn plain_error(&mut self, file: &str, pos: Pos, message: impl Into<String>, help: impl Into<String>) {
        self.push(file, pos, message.into(), help.into(), false);
    }

    fn push(&mut self, file: &str, pos: Pos, message: String, help: String, echoes_input: bool) {
        self.found.push(Diagnostic {
            file: file.to_owned(),
            line: pos.line,
            column: pos.column,
            message,
            help: Some(help),
            echoes_input,
        });
    }

    /// `Ok(value)` when nothing was reported, otherwise every problem.
    pub fn finish<T>(self, value: T) -> Result<T, Diagnostics> {
        if self.found.is_empty() { Ok(value) } else { Err(Diagnostics(self.found)) }
    }
}

/// A mission that does not deserialize yields exactly one problem: the
/// parser stops at the first syntax or shape error.
pub(crate) fn from_yaml_error(file: &str, error: &serde_saphyr::Error) -> Diagnostics {
    let original = unwrap_yaml_error(error);
    let pos = error.location().map_or(Pos::START, Pos::from_location);
    let (message, help) = describe_yaml_error(original);
    // These name only what the format expects, never the text found.
    let plain = matches!(
        original,
        serde_saphyr::Error::SerdeMissingField { .. }
            | serde_saphyr::Error::InvalidScalar { .. }
            | serde_saphyr::Error::Eof { .. }
    );
    if plain { Diagnostics::one_plain(file, pos, message, help) } else { Diagnostics::one(file, pos, message, help) }
}

/// Peels the wrappers that only add a snippet or alias context.
fn unwrap_yaml_error(mut error: &serde_saphyr::Error) -> &serde_saphyr::Error {
    use serde_saphyr::Error;
    while let Error::AliasError { error: inner, .. } | Error::WithSnippet { error: inner, .. } = error {
        error = inner;
    }
    error
}

fn describe_yaml_error(error: &serde_saphyr::Error) -> (String, String) {
    use serde_saphyr::Error;
    match error {
        Error::SerdeUnknownField { field, expected, .. } => (
            format!("unknown field {}", quoted(field)),
            if expected.is_empty() {
                "remove it: this mapping takes no fields".to_owned()
            } else {
                format!("expected one of: {}", expected.join(", "))
            },
        ),
        Error::SerdeMissingField { field, .. } => {
            (format!("missing required field `{field}`"), format!("add `{field}:` to the mapping this position is in"))
        }
        Error::DuplicateMappingKey { .. } => (
            sanitize(&UserMessageFormatter.format_message(error)),
            "each key may appear once in a mapping; remove or merge the repeated one".to_owned(),
        ),
        Error::InvalidScalar { ty, .. } => {
            // The mission's scalar fields are all `u64` or `f64`.
            let wanted = match *ty {
                "u64" => "a non-negative whole number",
                "f64" => "a number",
                other => other,
            };
            (format!("expected {wanted} here"), format!("write {wanted}, without quotes or units"))
        }
        Error::Eof { .. } => (
            "the mission file is empty or ends too early".to_owned(),
            "a mission is a YAML mapping with `name`, `budget`, `models`, `agents` and `tasks`".to_owned(),
        ),
        other => (
            sanitize(&UserMessageFormatter.format_message(other)),
            "fix the YAML at this position; see the `missions` crate docs for the mission format".to_owned(),
        ),
    }
}

/// Parser messages may quote input text; keep control characters (which
/// could break the one-line layout or drive a terminal) out of the output.
pub(crate) fn sanitize(text: &str) -> String {
    let mut clean = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_control() {
            clean.extend(c.escape_debug());
        } else {
            clean.push(c);
        }
    }
    clean
}

/// Longest user-written text echoed back in a message.
const MAX_QUOTED_CHARS: usize = 80;

/// User text as it appears in a message: backquoted, control characters
/// escaped, and cut short so one pasted blob cannot flood the report.
pub(crate) fn quoted(text: &str) -> String {
    format!("`{}`", clipped(text, MAX_QUOTED_CHARS))
}

/// Text from elsewhere (another library's message, which may quote input)
/// as it appears in a message: control characters escaped, cut short
/// after `max_chars`.
pub(crate) fn clipped(text: &str, max_chars: usize) -> String {
    let mut shown: String = text.chars().take(max_chars).collect();
    if shown.len() < text.len() {
        shown.push('…');
    }
    sanitize(&shown)
}
