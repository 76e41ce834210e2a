//! `cove run reports RUN`: a run's test and coverage reports as text.

use std::io::Write;

use anyhow::Result;
use cove_api::RunReport;

/// Files listed per coverage report in text output (all of them are in `--output json`).
const FILES_SHOWN: usize = 50;

pub fn print(reports: &[RunReport], out: &mut impl Write) -> Result<()> {
    if reports.is_empty() {
        writeln!(out, "no reports")?;
        return Ok(());
    }
    for r in reports {
        writeln!(
            out,
            "{} / {} ({}, {} file{})",
            r.action,
            r.name,
            r.format,
            r.files,
            if r.files == 1 { "" } else { "s" }
        )?;
        if let Some(t) = &r.tests {
            writeln!(
                out,
                "  tests: {} total, {} passed, {} failed, {} skipped (pass rate {:.1}%)",
                t.total, t.passed, t.failed, t.skipped, t.pass_rate
            )?;
            for f in &t.failures {
                let who = if f.suite.is_empty() {
                    f.name.clone()
                } else {
                    format!("{}.{}", f.suite, f.name)
                };
                let first = f.message.lines().next().unwrap_or_default();
                writeln!(out, "  FAILED {who}: {first}")?;
            }
            if t.failed > t.failures.len() as u64 {
                writeln!(
                    out,
                    "  … and {} more failed",
                    t.failed - t.failures.len() as u64
                )?;
            }
        }
        if let Some(c) = &r.coverage {
            writeln!(
                out,
                "  coverage: lines {}/{} ({:.1}%), branches {}/{} ({:.1}%)",
                c.lines_covered,
                c.lines_total,
                c.line_rate,
                c.branches_covered,
                c.branches_total,
                c.branch_rate
            )?;
            for f in c.files.iter().take(FILES_SHOWN) {
                writeln!(
                    out,
                    "    {:<50} lines {}/{}  branches {}/{}",
                    f.path, f.lines_covered, f.lines_total, f.branches_covered, f.branches_total
                )?;
            }
            if c.files.len() > FILES_SHOWN {
                writeln!(
                    out,
                    "    … {} more files (--output json)",
                    c.files.len() - FILES_SHOWN
                )?;
            }
        }
        for why in &r.criteria_failed {
            writeln!(out, "  criterion failed: {why}")?;
        }
        for e in &r.errors {
            writeln!(out, "  error: {e}")?;
        }
    }
    Ok(())
}
