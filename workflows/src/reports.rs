//! Test and code-coverage report files (CodeCatalyst `Outputs.Reports`,
//! buildspec `reports:`) → totals, failed cases and coverage per file, and
//! CodeCatalyst `SuccessCriteria`. Pure: the caller hands in the bytes of
//! one file (the server reads them from what the agent collected, bounded).
//!
//! XML formats are read with quick-xml as a stream of events (no DTDs or
//! external entities are ever loaded), Cucumber with serde_json, LCOV line
//! by line. Time and memory are linear in the input; what is kept is
//! bounded ([`MAX_FAILURES`] cases, [`MAX_FILES`] files, [`MAX_MESSAGE`]
//! bytes per message), the rest only counted.

use std::collections::BTreeMap;

use quick_xml::events::{BytesStart, Event};
use serde::{Deserialize, Serialize};

/// Failed cases kept per report; the rest are counted in `failed`.
pub const MAX_FAILURES: usize = 200;
/// Files kept per coverage report; totals still count every file.
pub const MAX_FILES: usize = 5000;
/// Bytes of a failure message kept.
pub const MAX_MESSAGE: usize = 4096;
/// Deepest XML nesting read.
const MAX_DEPTH: usize = 256;

/// Test report formats Cove reads.
pub const TEST_FORMATS: &[&str] = &[
    "JUNITXML",
    "TESTNGXML",
    "NUNITXML",
    "NUNIT3XML",
    "VISUALSTUDIOTRX",
    "CUCUMBERJSON",
];
/// Coverage report formats Cove reads.
pub const COVERAGE_FORMATS: &[&str] = &["COBERTURAXML", "JACOCOXML", "CLOVERXML", "LCOV"];
/// `SuccessCriteria` keys Cove evaluates.
pub const CRITERIA: &[&str] = &["PassRate", "LineCoverage", "BranchCoverage"];

/// True when Cove reads this (upper-case) format.
pub fn supported(format: &str) -> bool {
    TEST_FORMATS.contains(&format) || COVERAGE_FORMATS.contains(&format)
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TestSummary {
    pub total: u64,
    pub passed: u64,
    pub failed: u64,
    pub skipped: u64,
    /// The first [`MAX_FAILURES`] failed cases.
    pub failures: Vec<FailedCase>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct FailedCase {
    /// Suite or class, when the format names one.
    pub suite: String,
    pub name: String,
    pub message: String,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct CoverageSummary {
    pub lines_covered: u64,
    pub lines_total: u64,
    pub branches_covered: u64,
    pub branches_total: u64,
    /// Per file, sorted by path; at most [`MAX_FILES`].
    pub files: Vec<FileCoverage>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct FileCoverage {
    pub path: String,
    pub lines_covered: u64,
    pub lines_total: u64,
    pub branches_covered: u64,
    pub branches_total: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ReportData {
    Test(TestSummary),
    Coverage(CoverageSummary),
}

impl TestSummary {
    fn add(&mut self, suite: &str, name: &str, outcome: Outcome, message: &str) {
        self.total += 1;
        match outcome {
            Outcome::Passed => self.passed += 1,
            Outcome::Skipped => self.skipped += 1,
            Outcome::Failed => {
                self.failed += 1;
                if self.failures.len() < MAX_FAILURES {
                    self.failures.push(FailedCase {
                        suite: suite.to_string(),
                        name: name.to_string(),
                        message: cap(message.trim()),
                    });
                }
            }
        }
    }

    /// Adds another file's results.
    pub fn merge(&mut self, other: TestSummary) {
        self.total += other.total;
        self.passed += other.passed;
        self.failed += other.failed;
        self.skipped += other.skipped;
        let room = MAX_FAILURES.saturating_sub(self.failures.len());
        self.failures.extend(other.failures.into_iter().take(room));
    }

    /// Passed / (total − skipped), in percent; 100 when nothing ran.
    pub fn pass_rate(&self) -> f64 {
        percent(self.passed, self.total - self.skipped)
    }
}

impl CoverageSummary {
    fn finish(mut files: BTreeMap<String, FileCoverage>) -> Self {
        let mut out = CoverageSummary::default();
        for (path, mut f) in std::mem::take(&mut files) {
            out.lines_covered += f.lines_covered;
            out.lines_total += f.lines_total;
            out.branches_covered += f.branches_covered;
            out.branches_total += f.branches_total;
            if out.files.len() < MAX_FILES {
                f.path = path;
                out.files.push(f);
            }
        }
        out
    }

    /// Adds another file's coverage (files with the same path are summed).
    pub fn merge(&mut self, other: CoverageSummary) {
        let mut files: BTreeMap<String, FileCoverage> = BTreeMap::new();
        for f in std::mem::take(&mut self.files)
            .into_iter()
            .chain(other.files)
        {
            let e = files.entry(f.path.clone()).or_default();
            e.lines_covered += f.lines_covered;
            e.lines_total += f.lines_total;
            e.branches_covered += f.branches_covered;
            e.branches_total += f.branches_total;
        }
        let (lc, lt, bc, bt) = (
            self.lines_covered + other.lines_covered,
            self.lines_total + other.lines_total,
            self.branches_covered + other.branches_covered,
            self.branches_total + other.branches_total,
        );
        *self = CoverageSummary::finish(files);
        (
            self.lines_covered,
            self.lines_total,
            self.branches_covered,
            self.branches_total,
        ) = (lc, lt, bc, bt);
    }

    pub fn line_rate(&self) -> f64 {
        percent(self.lines_covered, self.lines_total)
    }

    pub fn branch_rate(&self) -> f64 {
        percent(self.branches_covered, self.branches_total)
    }
}

fn percent(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        100.0
    } else {
        part as f64 * 100.0 / whole as f64
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Passed,
    Failed,
    Skipped,
}

fn cap(s: &str) -> String {
    if s.len() <= MAX_MESSAGE {
        return s.to_string();
    }
    let mut end = MAX_MESSAGE;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

/// Reads one report file of `format` (upper case, as in the workflow).
pub fn parse(format: &str, bytes: &[u8]) -> Result<ReportData, String> {
    match format {
        "JUNITXML" => junit(bytes).map(ReportData::Test),
        "TESTNGXML" => testng(bytes).map(ReportData::Test),
        "NUNITXML" | "NUNIT3XML" => nunit(bytes).map(ReportData::Test),
        "VISUALSTUDIOTRX" => trx(bytes).map(ReportData::Test),
        "CUCUMBERJSON" => cucumber(bytes).map(ReportData::Test),
        "COBERTURAXML" => cobertura(bytes).map(ReportData::Coverage),
        "JACOCOXML" => jacoco(bytes).map(ReportData::Coverage),
        "CLOVERXML" => clover(bytes).map(ReportData::Coverage),
        "LCOV" => lcov(bytes).map(ReportData::Coverage),
        other => Err(format!(
            "the report format {other} is not supported by Cove"
        )),
    }
}

// ---------------------------------------------------------------------------------------
// A small event walk over quick-xml

enum Ev<'a> {
    /// An element opened (`<x/>` is an `Open` and a `Close`).
    Open {
        name: &'a str,
        attrs: &'a Attrs,
    },
    Close {
        name: &'a str,
    },
    Text(&'a str),
}

#[derive(Default)]
struct Attrs(Vec<(String, String)>);

impl Attrs {
    fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    fn str(&self, key: &str) -> &str {
        self.get(key).unwrap_or_default()
    }

    fn num(&self, key: &str) -> u64 {
        self.get(key)
            .and_then(|v| v.trim().parse::<f64>().ok())
            .filter(|v| v.is_finite() && *v >= 0.0)
            .map_or(0, |v| v as u64)
    }
}

fn local(name: &[u8]) -> String {
    let s = String::from_utf8_lossy(name);
    match s.rsplit_once(':') {
        Some((_, l)) => l.to_string(),
        None => s.into_owned(),
    }
}

fn attrs_of(e: &BytesStart) -> Result<Attrs, String> {
    let mut out = Vec::new();
    for a in e.attributes().with_checks(false) {
        let a = a.map_err(|e| format!("bad attribute: {e}"))?;
        let v = a
            .unescape_value()
            .map(|v| v.into_owned())
            .unwrap_or_else(|_| String::from_utf8_lossy(&a.value).into_owned());
        out.push((local(a.key.as_ref()), v));
    }
    Ok(Attrs(out))
}

fn walk(bytes: &[u8], mut f: impl FnMut(Ev)) -> Result<(), String> {
    let mut reader = quick_xml::Reader::from_reader(bytes);
    reader.config_mut().check_end_names = false;
    let mut buf = Vec::new();
    let mut depth = 0usize;
    let mut seen_element = false;
    loop {
        let ev = reader
            .read_event_into(&mut buf)
            .map_err(|e| format!("not valid XML at byte {}: {e}", reader.buffer_position()))?;
        match ev {
            Event::Start(e) => {
                depth += 1;
                if depth > MAX_DEPTH {
                    return Err(format!("XML nested deeper than {MAX_DEPTH} elements"));
                }
                seen_element = true;
                let name = local(e.name().as_ref());
                let attrs = attrs_of(&e)?;
                f(Ev::Open {
                    name: &name,
                    attrs: &attrs,
                });
            }
            Event::Empty(e) => {
                seen_element = true;
                let name = local(e.name().as_ref());
                let attrs = attrs_of(&e)?;
                f(Ev::Open {
                    name: &name,
                    attrs: &attrs,
                });
                f(Ev::Close { name: &name });
            }
            Event::End(e) => {
                depth = depth.saturating_sub(1);
                let name = local(e.name().as_ref());
                f(Ev::Close { name: &name });
            }
            Event::Text(t) => {
                let text = t
                    .unescape()
                    .map(|c| c.into_owned())
                    .unwrap_or_else(|_| String::from_utf8_lossy(&t).into_owned());
                f(Ev::Text(&text));
            }
            Event::CData(t) => f(Ev::Text(&String::from_utf8_lossy(&t))),
            Event::Eof => break,
            _ => {}
        }
        buf.clear();
    }
    if !seen_element {
        return Err("no XML element found".into());
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Test reports

/// JUnit XML: `<testcase>` with `<failure>`/`<error>` (failed) or `<skipped>`.
fn junit(bytes: &[u8]) -> Result<TestSummary, String> {
    let mut out = TestSummary::default();
    let mut suites: Vec<String> = Vec::new();
    // (suite, name, outcome, message) of the open test case
    let mut case: Option<(String, String, Outcome, String)> = None;
    let mut in_failure = false;
    let mut root_ok = false;
    walk(bytes, |ev| match ev {
        Ev::Open { name, attrs } => match name {
            "testsuites" => root_ok = true,
            "testsuite" => {
                root_ok = true;
                suites.push(attrs.str("name").to_string());
            }
            "testcase" => {
                let suite = attrs
                    .get("classname")
                    .map(str::to_string)
                    .or_else(|| suites.last().cloned())
                    .unwrap_or_default();
                case = Some((
                    suite,
                    attrs.str("name").to_string(),
                    Outcome::Passed,
                    String::new(),
                ));
            }
            "failure" | "error" => {
                if let Some(c) = case.as_mut() {
                    c.2 = Outcome::Failed;
                    c.3 = attrs.str("message").to_string();
                    in_failure = true;
                }
            }
            "skipped" => {
                if let Some(c) = case.as_mut().filter(|c| c.2 != Outcome::Failed) {
                    c.2 = Outcome::Skipped;
                }
            }
            _ => {}
        },
        Ev::Text(t) => {
            if let Some(c) = case.as_mut().filter(|_| in_failure) {
                if c.3.trim().is_empty() && c.3.len() < MAX_MESSAGE {
                    c.3.push_str(t);
                }
            }
        }
        Ev::Close { name } => match name {
            "failure" | "error" => in_failure = false,
            "testcase" => {
                if let Some((suite, n, o, m)) = case.take() {
                    out.add(&suite, &n, o, &m);
                }
            }
            "testsuite" => {
                suites.pop();
            }
            _ => {}
        },
    })?;
    if !root_ok {
        return Err("not a JUnit report: no <testsuite> or <testsuites> element".into());
    }
    Ok(out)
}

/// TestNG: `<test-method status="PASS|FAIL|SKIP">` (configuration methods
/// are not tests), the message in `<exception><message>`.
fn testng(bytes: &[u8]) -> Result<TestSummary, String> {
    let mut out = TestSummary::default();
    let mut class = String::new();
    let mut case: Option<(String, Outcome, String)> = None;
    let mut in_message = false;
    let mut root_ok = false;
    walk(bytes, |ev| match ev {
        Ev::Open { name, attrs } => match name {
            "testng-results" => root_ok = true,
            "class" => class = attrs.str("name").to_string(),
            "test-method" if attrs.str("is-config") != "true" => {
                let outcome = match attrs.str("status") {
                    "PASS" => Outcome::Passed,
                    "SKIP" => Outcome::Skipped,
                    _ => Outcome::Failed,
                };
                case = Some((attrs.str("name").to_string(), outcome, String::new()));
            }
            "message" => in_message = case.is_some(),
            _ => {}
        },
        Ev::Text(t) => {
            if let Some(c) = case.as_mut().filter(|_| in_message) {
                if c.2.len() < MAX_MESSAGE {
                    c.2.push_str(t);
                }
            }
        }
        Ev::Close { name } => match name {
            "message" => in_message = false,
            "test-method" => {
                if let Some((n, o, m)) = case.take() {
                    out.add(&class, &n, o, &m);
                }
            }
            _ => {}
        },
    })?;
    if !root_ok {
        return Err("not a TestNG report: no <testng-results> element".into());
    }
    Ok(out)
}

/// NUnit 2 (`result="Success|Failure|Error|Ignored…"`) and NUnit 3
/// (`result="Passed|Failed|Skipped|Inconclusive"`) `<test-case>`s.
fn nunit(bytes: &[u8]) -> Result<TestSummary, String> {
    let mut out = TestSummary::default();
    let mut case: Option<(String, String, Outcome, String)> = None;
    let mut in_message = false;
    let mut root_ok = false;
    walk(bytes, |ev| match ev {
        Ev::Open { name, attrs } => match name {
            "test-results" | "test-run" => root_ok = true,
            "test-case" => {
                let outcome = match attrs.str("result") {
                    "Success" | "Passed" => Outcome::Passed,
                    "Failure" | "Error" | "Failed" | "NotRunnable" => Outcome::Failed,
                    _ => Outcome::Skipped,
                };
                // NUnit 3 names the class; NUnit 2's name is `Ns.Class.Method`
                let name = attrs.str("name");
                let (suite, short) = match attrs.get("classname") {
                    Some(c) => (c.to_string(), name.to_string()),
                    None => match name.rsplit_once('.') {
                        Some((s, n)) => (s.to_string(), n.to_string()),
                        None => (String::new(), name.to_string()),
                    },
                };
                case = Some((suite, short, outcome, String::new()));
            }
            "message" => in_message = case.is_some(),
            _ => {}
        },
        Ev::Text(t) => {
            if let Some(c) = case.as_mut().filter(|_| in_message) {
                if c.3.len() < MAX_MESSAGE {
                    c.3.push_str(t);
                }
            }
        }
        Ev::Close { name } => match name {
            "message" => in_message = false,
            "test-case" => {
                if let Some((s, n, o, m)) = case.take() {
                    out.add(&s, &n, o, &m);
                }
            }
            _ => {}
        },
    })?;
    if !root_ok {
        return Err("not an NUnit report: no <test-results> or <test-run> element".into());
    }
    Ok(out)
}

/// Visual Studio TRX: `<UnitTestResult outcome="Passed|Failed|NotExecuted…">`,
/// the message in `<ErrorInfo><Message>`.
fn trx(bytes: &[u8]) -> Result<TestSummary, String> {
    let mut out = TestSummary::default();
    let mut case: Option<(String, Outcome, String)> = None;
    let mut in_message = false;
    let mut root_ok = false;
    walk(bytes, |ev| match ev {
        Ev::Open { name, attrs } => match name {
            "TestRun" => root_ok = true,
            "UnitTestResult" => {
                let outcome = match attrs.str("outcome") {
                    "Passed" => Outcome::Passed,
                    "NotExecuted" | "Inconclusive" | "Pending" | "Disconnected" | "Warning"
                    | "InProgress" | "NotRunnable" => Outcome::Skipped,
                    _ => Outcome::Failed,
                };
                case = Some((attrs.str("testName").to_string(), outcome, String::new()));
            }
            "Message" => in_message = case.is_some(),
            _ => {}
        },
        Ev::Text(t) => {
            if let Some(c) = case.as_mut().filter(|_| in_message) {
                if c.2.len() < MAX_MESSAGE {
                    c.2.push_str(t);
                }
            }
        }
        Ev::Close { name } => match name {
            "Message" => in_message = false,
            "UnitTestResult" => {
                if let Some((n, o, m)) = case.take() {
                    out.add("", &n, o, &m);
                }
            }
            _ => {}
        },
    })?;
    if !root_ok {
        return Err("not a TRX report: no <TestRun> element".into());
    }
    Ok(out)
}

#[derive(Deserialize)]
struct CucumberFeature {
    #[serde(default)]
    name: String,
    #[serde(default)]
    elements: Vec<CucumberElement>,
}

#[derive(Deserialize)]
struct CucumberElement {
    #[serde(default)]
    name: String,
    #[serde(default, rename = "type")]
    kind: String,
    #[serde(default)]
    steps: Vec<CucumberStep>,
}

#[derive(Deserialize)]
struct CucumberStep {
    #[serde(default)]
    name: String,
    #[serde(default)]
    result: Option<CucumberResult>,
}

fn step_status(s: &CucumberStep) -> &str {
    s.result.as_ref().map_or("", |r| r.status.as_str())
}

#[derive(Deserialize)]
struct CucumberResult {
    #[serde(default)]
    status: String,
    #[serde(default)]
    error_message: Option<String>,
}

/// Cucumber JSON: each scenario is a case; a failed step fails it, all
/// steps passed passes it, anything else (pending, undefined, skipped)
/// skips it.
fn cucumber(bytes: &[u8]) -> Result<TestSummary, String> {
    let features: Vec<CucumberFeature> =
        serde_json::from_slice(bytes).map_err(|e| format!("not a Cucumber JSON report: {e}"))?;
    let mut out = TestSummary::default();
    for f in &features {
        for el in f.elements.iter().filter(|e| e.kind != "background") {
            let failed = el.steps.iter().find(|s| step_status(s) == "failed");
            let outcome = if failed.is_some() {
                Outcome::Failed
            } else if !el.steps.is_empty() && el.steps.iter().all(|s| step_status(s) == "passed") {
                Outcome::Passed
            } else {
                Outcome::Skipped
            };
            let message = failed
                .map(|s| {
                    let m = s
                        .result
                        .as_ref()
                        .and_then(|r| r.error_message.clone())
                        .unwrap_or_default();
                    format!("step `{}`: {m}", s.name.trim())
                })
                .unwrap_or_default();
            out.add(&f.name, &el.name, outcome, &message);
        }
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------
// Success criteria

/// CodeCatalyst `SuccessCriteria` Cove evaluates: minimum percentages.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Criteria {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pass_rate: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line_coverage: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub branch_coverage: Option<f64>,
}

impl Criteria {
    /// From the workflow's `SuccessCriteria` (kept as JSON); unknown keys
    /// are refused at validation ([`crate::support`]).
    pub fn from_json(v: Option<&serde_json::Value>) -> Criteria {
        let num = |k: &str| {
            v.and_then(|v| v.get(k)).and_then(|x| {
                x.as_f64()
                    .or_else(|| x.as_str().and_then(|s| s.trim().parse().ok()))
            })
        };
        Criteria {
            pass_rate: num("PassRate"),
            line_coverage: num("LineCoverage"),
            branch_coverage: num("BranchCoverage"),
        }
    }

    /// Why the report fails its criteria, one line each; empty when it
    /// meets them.
    pub fn failures(&self, data: &ReportData) -> Vec<String> {
        let mut out = Vec::new();
        let mut check = |what: &str, got: f64, min: Option<f64>| {
            if let Some(min) = min {
                if got + 1e-9 < min {
                    out.push(format!("{what} {got:.1}% is below {min}%"));
                }
            }
        };
        match data {
            ReportData::Test(t) => check("pass rate", t.pass_rate(), self.pass_rate),
            ReportData::Coverage(c) => {
                check("line coverage", c.line_rate(), self.line_coverage);
                check("branch coverage", c.branch_rate(), self.branch_coverage);
            }
        }
        out
    }
}

mod coverage;
#[cfg(test)]
mod tests;

use coverage::{clover, cobertura, jacoco, lcov};
