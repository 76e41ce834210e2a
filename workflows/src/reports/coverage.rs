//! Coverage report formats: Cobertura, JaCoCo, Clover (XML events) and LCOV (lines).

use std::collections::BTreeMap;

use super::{walk, CoverageSummary, Ev, FileCoverage};

/// Cobertura: `<class filename>` → `<lines><line number hits branch
/// condition-coverage="50% (1/2)">` (the lines directly under the class;
/// a method's lines repeat them).
pub(super) fn cobertura(bytes: &[u8]) -> Result<CoverageSummary, String> {
    let mut files: BTreeMap<String, FileCoverage> = BTreeMap::new();
    let mut stack: Vec<String> = Vec::new();
    let mut file = String::new();
    let mut root_ok = false;
    walk(bytes, |ev| match ev {
        Ev::Open { name, attrs } => {
            match name {
                "coverage" => root_ok = true,
                "class" => file = attrs.str("filename").to_string(),
                "line" if stack.len() >= 2 && stack[stack.len() - 2] == "class" => {
                    let f = files.entry(file.clone()).or_default();
                    f.lines_total += 1;
                    if attrs.num("hits") > 0 {
                        f.lines_covered += 1;
                    }
                    if attrs.str("branch") == "true" {
                        if let Some((c, t)) = condition_coverage(attrs.str("condition-coverage")) {
                            f.branches_covered += c;
                            f.branches_total += t;
                        }
                    }
                }
                _ => {}
            }
            stack.push(name.to_string());
        }
        Ev::Close { .. } => {
            stack.pop();
        }
        Ev::Text(_) => {}
    })?;
    if !root_ok {
        return Err("not a Cobertura report: no <coverage> element".into());
    }
    Ok(CoverageSummary::finish(files))
}

/// `50% (1/2)` → (1, 2).
fn condition_coverage(s: &str) -> Option<(u64, u64)> {
    let inner = s.split_once('(')?.1.split_once(')')?.0;
    let (c, t) = inner.split_once('/')?;
    Some((c.trim().parse().ok()?, t.trim().parse().ok()?))
}

/// JaCoCo: `<package name><sourcefile name><counter type="LINE|BRANCH"
/// missed covered>`.
pub(super) fn jacoco(bytes: &[u8]) -> Result<CoverageSummary, String> {
    let mut files: BTreeMap<String, FileCoverage> = BTreeMap::new();
    let mut stack: Vec<String> = Vec::new();
    let mut package = String::new();
    let mut source: Option<String> = None;
    let mut root_ok = false;
    walk(bytes, |ev| match ev {
        Ev::Open { name, attrs } => {
            match name {
                "report" => root_ok = true,
                "package" => package = attrs.str("name").to_string(),
                "sourcefile" => {
                    let n = attrs.str("name");
                    source = Some(if package.is_empty() {
                        n.to_string()
                    } else {
                        format!("{package}/{n}")
                    });
                }
                "counter" if stack.last().is_some_and(|p| p == "sourcefile") => {
                    if let Some(path) = &source {
                        let f = files.entry(path.clone()).or_default();
                        let (m, c) = (attrs.num("missed"), attrs.num("covered"));
                        match attrs.str("type") {
                            "LINE" => {
                                f.lines_covered += c;
                                f.lines_total += m + c;
                            }
                            "BRANCH" => {
                                f.branches_covered += c;
                                f.branches_total += m + c;
                            }
                            _ => {}
                        }
                    }
                }
                _ => {}
            }
            stack.push(name.to_string());
        }
        Ev::Close { name } => {
            stack.pop();
            if name == "sourcefile" {
                source = None;
            }
        }
        Ev::Text(_) => {}
    })?;
    if !root_ok {
        return Err("not a JaCoCo report: no <report> element".into());
    }
    Ok(CoverageSummary::finish(files))
}

/// Clover: `<file path|name><metrics statements coveredstatements
/// conditionals coveredconditionals>`.
pub(super) fn clover(bytes: &[u8]) -> Result<CoverageSummary, String> {
    let mut files: BTreeMap<String, FileCoverage> = BTreeMap::new();
    let mut stack: Vec<String> = Vec::new();
    let mut file: Option<String> = None;
    let mut root_ok = false;
    walk(bytes, |ev| match ev {
        Ev::Open { name, attrs } => {
            match name {
                "coverage" => root_ok = true,
                "file" => {
                    file = Some(
                        attrs
                            .get("path")
                            .or_else(|| attrs.get("name"))
                            .unwrap_or_default()
                            .to_string(),
                    )
                }
                "metrics" if stack.last().is_some_and(|p| p == "file") => {
                    if let Some(path) = &file {
                        let f = files.entry(path.clone()).or_default();
                        f.lines_total += attrs.num("statements");
                        f.lines_covered += attrs.num("coveredstatements");
                        f.branches_total += attrs.num("conditionals");
                        f.branches_covered += attrs.num("coveredconditionals");
                    }
                }
                _ => {}
            }
            stack.push(name.to_string());
        }
        Ev::Close { name } => {
            stack.pop();
            if name == "file" {
                file = None;
            }
        }
        Ev::Text(_) => {}
    })?;
    if !root_ok {
        return Err("not a Clover report: no <coverage> element".into());
    }
    Ok(CoverageSummary::finish(files))
}

/// LCOV tracefile: `SF:` … `end_of_record`, totals from `LF/LH/BRF/BRH`,
/// else counted from `DA`/`BRDA` lines.
pub(super) fn lcov(bytes: &[u8]) -> Result<CoverageSummary, String> {
    let text = String::from_utf8_lossy(bytes);
    let mut files: BTreeMap<String, FileCoverage> = BTreeMap::new();
    let mut seen = false;
    let mut current: Option<(String, FileCoverage, [Option<u64>; 4])> = None;
    let num = |s: &str| s.trim().parse::<u64>().ok();
    for line in text.lines() {
        let line = line.trim();
        if let Some(path) = line.strip_prefix("SF:") {
            seen = true;
            current = Some((path.to_string(), FileCoverage::default(), [None; 4]));
            continue;
        }
        let Some((_, f, declared)) = current.as_mut() else {
            continue;
        };
        if let Some(rest) = line.strip_prefix("DA:") {
            let hits = rest.split(',').nth(1).and_then(num).unwrap_or(0);
            f.lines_total += 1;
            f.lines_covered += u64::from(hits > 0);
        } else if let Some(rest) = line.strip_prefix("BRDA:") {
            let taken = rest.split(',').nth(3).unwrap_or("-");
            f.branches_total += 1;
            f.branches_covered += u64::from(taken != "-" && num(taken).unwrap_or(0) > 0);
        } else if let Some(v) = line.strip_prefix("LF:") {
            declared[0] = num(v);
        } else if let Some(v) = line.strip_prefix("LH:") {
            declared[1] = num(v);
        } else if let Some(v) = line.strip_prefix("BRF:") {
            declared[2] = num(v);
        } else if let Some(v) = line.strip_prefix("BRH:") {
            declared[3] = num(v);
        } else if line == "end_of_record" {
            if let Some((path, mut f, d)) = current.take() {
                if let (Some(lf), Some(lh)) = (d[0], d[1]) {
                    (f.lines_total, f.lines_covered) = (lf, lh.min(lf));
                }
                if let (Some(bf), Some(bh)) = (d[2], d[3]) {
                    (f.branches_total, f.branches_covered) = (bf, bh.min(bf));
                }
                let e = files.entry(path).or_default();
                e.lines_total += f.lines_total;
                e.lines_covered += f.lines_covered;
                e.branches_total += f.branches_total;
                e.branches_covered += f.branches_covered;
            }
        }
    }
    if !seen {
        return Err("not an LCOV tracefile: no `SF:` line".into());
    }
    Ok(CoverageSummary::finish(files))
}
