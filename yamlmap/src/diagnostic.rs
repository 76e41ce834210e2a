use std::fmt;

use serde::Serialize;

/// A 1-based line and column in a source file.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Pos {
    pub line: usize,
    pub column: usize,
}

impl Pos {
    pub const START: Pos = Pos { line: 1, column: 1 };

    pub fn new(line: usize, column: usize) -> Self {
        Pos { line, column }
    }
}

impl fmt::Display for Pos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.column)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
        })
    }
}

/// One finding about an input file: where it is, how bad it is, what is
/// wrong and (when we know) what to change.
///
/// `Display` renders the conventional one-line form
/// `FILE:LINE:COL: error: MESSAGE`, followed by an indented `help:` line when
/// there is a hint.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Diagnostic {
    pub file: String,
    pub line: usize,
    pub column: usize,
    pub severity: Severity,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub help: Option<String>,
}

impl Diagnostic {
    pub fn error(file: impl Into<String>, pos: Pos, message: impl Into<String>) -> Self {
        Self::new(Severity::Error, file, pos, message)
    }

    pub fn warning(file: impl Into<String>, pos: Pos, message: impl Into<String>) -> Self {
        Self::new(Severity::Warning, file, pos, message)
    }

    fn new(
        severity: Severity,
        file: impl Into<String>,
        pos: Pos,
        message: impl Into<String>,
    ) -> Self {
        Diagnostic {
            file: file.into(),
            line: pos.line,
            column: pos.column,
            severity,
            message: message.into(),
            help: None,
        }
    }

    /// Attach a hint saying what to change.
    pub fn with_help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }

    pub fn pos(&self) -> Pos {
        Pos::new(self.line, self.column)
    }

    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }

    /// Turn a `serde_yaml` error into a diagnostic, keeping its position
    /// (serde_yaml reports 1-based lines and columns).
    pub fn from_serde(file: impl Into<String>, err: &serde_yaml::Error) -> Self {
        let pos = err
            .location()
            .map(|l| Pos::new(l.line(), l.column()))
            .unwrap_or(Pos::START);
        let mut message = err.to_string();
        // serde_yaml appends " at line L column C"; the position is already in front.
        if let Some(i) = message.rfind(" at line ") {
            message.truncate(i);
        }
        Diagnostic::error(file, pos, message)
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}: {}",
            self.file, self.line, self.column, self.severity, self.message
        )?;
        if let Some(help) = &self.help {
            write!(f, "\n  help: {help}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Diagnostic {}

/// Most diagnostics a parser returns for one file; the rest are summed up in
/// one final "and N more" diagnostic (see [`cap_diagnostics`]).
pub const MAX_DIAGNOSTICS: usize = 100;

/// Diagnostics a collector did not keep (it stopped storing them), so the
/// final "and N more" can count them too.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Dropped {
    pub count: usize,
    pub any_error: bool,
    /// Where the first dropped one was.
    pub first: Option<Pos>,
}

impl Dropped {
    pub fn add(&mut self, d: &Diagnostic) {
        self.count += 1;
        self.any_error |= d.is_error();
        self.first.get_or_insert(d.pos());
    }
}

/// Keep the first `max` of `diags` and replace the rest (plus `dropped`,
/// which a collector counted without storing) by one final diagnostic
/// "… and N more". That diagnostic is an error when any removed one was, so
/// a capped list still fails when the full one would. A list of `max + 1`
/// (one already capped) is left as it is, so capping twice changes nothing.
pub fn cap_diagnostics(diags: &mut Vec<Diagnostic>, max: usize, dropped: Dropped) {
    let mut removed = dropped;
    let mut file = diags.first().map(|d| d.file.clone()).unwrap_or_default();
    if diags.len() > max + 1 || (diags.len() == max + 1 && dropped.count > 0) {
        for d in &diags[max..] {
            removed.count += 1;
            removed.any_error |= d.is_error();
        }
        file = diags[max].file.clone();
        removed.first = Some(diags[max].pos());
        diags.truncate(max);
    }
    if removed.count == 0 {
        return;
    }
    let pos = removed.first.unwrap_or(Pos::START);
    let message = format!(
        "and {} more {} not shown (only the first {max} are listed)",
        removed.count,
        if removed.any_error {
            "errors and warnings"
        } else {
            "warnings"
        }
    );
    let d = if removed.any_error {
        Diagnostic::error(file, pos, message)
    } else {
        Diagnostic::warning(file, pos, message)
    };
    diags.push(d.with_help("fix the ones above first; the rest are often consequences of them"));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capping_keeps_the_first_and_counts_the_rest() {
        let mut diags: Vec<Diagnostic> = (1..=250)
            .map(|i| Diagnostic::error("f.yaml", Pos::new(i, 1), format!("e{i}")))
            .collect();
        cap_diagnostics(&mut diags, 100, Dropped::default());
        assert_eq!(diags.len(), 101);
        let once = diags.clone();
        cap_diagnostics(&mut diags, 100, Dropped::default());
        assert_eq!(diags, once, "capping twice changes nothing");
        let last = diags.last().unwrap();
        assert!(last.is_error());
        assert_eq!(last.pos(), Pos::new(101, 1));
        assert!(last.message.starts_with("and 150 more"), "{last}");

        let mut few = vec![Diagnostic::warning("f.yaml", Pos::START, "w")];
        cap_diagnostics(&mut few, 100, Dropped::default());
        assert_eq!(few.len(), 1);
    }
}
