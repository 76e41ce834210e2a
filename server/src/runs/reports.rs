//! Test and coverage reports (issue 17): an action's `Outputs.Reports` (buildspec
//! `reports:`) travel to the agent as extra output artifacts `cove-report-<i>`, collected
//! after the steps like any artifact (bounded by the artifact cap, also after a failed build);
//! when the job finishes, the server reads each file with `workflows::reports` (off the async
//! workers, bounded), stores the summaries with the run (`run_reports`), and a report whose
//! `SuccessCriteria` fail fails its action, as in CodeCatalyst. `GET /api/v1/runs/{run}/reports`.

use std::collections::BTreeMap;
use std::io::Read;

use axum::extract::State;
use axum::Extension;
use cove_api::{
    CoverageTotals, FailedTestCase, FileCoverageTotals, JobArtifactSpec, RunReport, TestTotals,
};
use workflows::reports::{self, Criteria, ReportData};

use super::RunsError;
use crate::error::ApiError;
use crate::extract::{Json, Path};
use crate::store::{JobRow, RepoRow};
use crate::AppState;

/// Largest report file read; a bigger one is an error for that file.
pub const MAX_REPORT_FILE_BYTES: u64 = 32 << 20;
/// Most files read per report.
pub const MAX_REPORT_FILES: usize = 1000;

/// The artifact that carries report `i` of an action.
fn artifact_name(i: usize) -> String {
    format!("cove-report-{i}")
}

/// The extra output artifacts that collect an action's report files.
pub(super) fn artifact_specs(action: &workflows::Action) -> Vec<JobArtifactSpec> {
    action
        .outputs
        .reports
        .iter()
        .enumerate()
        .filter(|(_, r)| !r.files.is_empty())
        .map(|(i, r)| JobArtifactSpec {
            name: artifact_name(i),
            files: r.files.clone(),
            base_directory: r.base_directory.clone(),
            discard_paths: false,
            exclude_paths: r.exclude_paths.clone(),
        })
        .collect()
}

/// Reads the reports of a finished job, stores their summaries and returns the failed success
/// criteria (`report NAME: …`), which fail the action.
pub(super) async fn collect(
    state: &AppState,
    job: &JobRow,
    action: &workflows::Action,
) -> Result<Vec<String>, RunsError> {
    if action.outputs.reports.is_empty() {
        return Ok(Vec::new());
    }
    // the artifacts were recorded while the job ran: read the row again
    let recorded: Vec<String> = match state.store().job(job.id).await? {
        Some(j) => serde_json::from_str(&j.artifacts_json).unwrap_or_default(),
        None => Vec::new(),
    };
    let mut inputs = Vec::new();
    for (i, r) in action.outputs.reports.iter().enumerate() {
        let name = artifact_name(i);
        let path = recorded
            .contains(&name)
            .then(|| super::artifact_path(state, job.run_id, job.id, &name));
        inputs.push((r.clone(), path));
    }
    let action_id = action.id.clone();
    let built = tokio::task::spawn_blocking(move || {
        inputs
            .into_iter()
            .map(|(r, path)| read_report(&action_id, &r, path.as_deref()))
            .collect::<Vec<_>>()
    })
    .await
    .map_err(|e| RunsError::BadRequest(format!("reading reports failed: {e}")))?;
    let mut failed = Vec::new();
    let mut rows = Vec::new();
    for report in built {
        failed.extend(
            report
                .criteria_failed
                .iter()
                .map(|why| format!("report {}: {why}", report.name)),
        );
        let json =
            serde_json::to_string(&report).map_err(|e| RunsError::BadRequest(e.to_string()))?;
        rows.push((report.name.clone(), json));
    }
    let now = state.runs().clock.now_ms();
    state
        .store()
        .set_job_reports(job.run_id, job.id, &rows, now)
        .await?;
    Ok(failed)
}

/// One report from its artifact tar (`None`: no file matched).
fn read_report(action: &str, r: &workflows::Report, tar: Option<&std::path::Path>) -> RunReport {
    let mut errors = Vec::new();
    let mut tests: Option<reports::TestSummary> = None;
    let mut coverage: Option<reports::CoverageSummary> = None;
    let mut files = 0u64;
    let mut add = |data: ReportData| match data {
        ReportData::Test(t) => match tests.as_mut() {
            Some(all) => all.merge(t),
            None => tests = Some(t),
        },
        ReportData::Coverage(c) => match coverage.as_mut() {
            Some(all) => all.merge(c),
            None => coverage = Some(c),
        },
    };
    match tar.map(std::fs::File::open) {
        None => errors.push(format!("no file matched {}", r.files.join(", "))),
        Some(Err(e)) => errors.push(format!("the collected files cannot be read: {e}")),
        Some(Ok(file)) => {
            let mut archive = tar::Archive::new(file);
            match archive.entries() {
                Err(e) => errors.push(format!("the collected files cannot be read: {e}")),
                Ok(entries) => {
                    for entry in entries {
                        let mut entry = match entry {
                            Ok(e) => e,
                            Err(e) => {
                                errors.push(format!("the collected files cannot be read: {e}"));
                                break;
                            }
                        };
                        if !entry.header().entry_type().is_file() {
                            continue;
                        }
                        let path = entry
                            .path()
                            .map(|p| p.display().to_string())
                            .unwrap_or_default();
                        if files as usize >= MAX_REPORT_FILES {
                            errors.push(format!(
                                "more than {MAX_REPORT_FILES} files matched; the rest were not read"
                            ));
                            break;
                        }
                        files += 1;
                        if entry.size() > MAX_REPORT_FILE_BYTES {
                            errors.push(format!(
                                "{path}: larger than {MAX_REPORT_FILE_BYTES} bytes, not read"
                            ));
                            continue;
                        }
                        let mut bytes = Vec::new();
                        if let Err(e) = (&mut entry)
                            .take(MAX_REPORT_FILE_BYTES)
                            .read_to_end(&mut bytes)
                        {
                            errors.push(format!("{path}: {e}"));
                            continue;
                        }
                        match reports::parse(&r.format, &bytes) {
                            Ok(data) => add(data),
                            Err(e) => errors.push(format!("{path}: {e}")),
                        }
                    }
                }
            }
        }
    }
    if files == 0 && errors.is_empty() {
        errors.push(format!("no file matched {}", r.files.join(", ")));
    }
    let kind = if reports::COVERAGE_FORMATS.contains(&r.format.as_str()) {
        "coverage"
    } else {
        "test"
    };
    let criteria = Criteria::from_json(r.success_criteria.as_ref());
    let mut criteria_failed = Vec::new();
    let data = match (&tests, &coverage) {
        (Some(t), _) => Some(ReportData::Test(t.clone())),
        (None, Some(c)) => Some(ReportData::Coverage(c.clone())),
        (None, None) => None,
    };
    match &data {
        Some(d) => criteria_failed = criteria.failures(d),
        None if criteria != Criteria::default() => criteria_failed
            .push("no report file could be read, so its success criteria are not met".into()),
        None => {}
    }
    tracing::info!(action, report = %r.name, files, failed = criteria_failed.len(), "report read");
    RunReport {
        action: action.to_string(),
        name: r.name.clone(),
        format: r.format.clone(),
        kind: kind.to_string(),
        files,
        tests: tests.map(|t| TestTotals {
            pass_rate: t.pass_rate(),
            total: t.total,
            passed: t.passed,
            failed: t.failed,
            skipped: t.skipped,
            failures: t
                .failures
                .into_iter()
                .map(|f| FailedTestCase {
                    suite: f.suite,
                    name: f.name,
                    message: f.message,
                })
                .collect(),
        }),
        coverage: coverage.map(|c| CoverageTotals {
            line_rate: c.line_rate(),
            branch_rate: c.branch_rate(),
            lines_covered: c.lines_covered,
            lines_total: c.lines_total,
            branches_covered: c.branches_covered,
            branches_total: c.branches_total,
            files: c
                .files
                .into_iter()
                .map(|f| FileCoverageTotals {
                    path: f.path,
                    lines_covered: f.lines_covered,
                    lines_total: f.lines_total,
                    branches_covered: f.branches_covered,
                    branches_total: f.branches_total,
                })
                .collect(),
        }),
        criteria_failed,
        errors,
    }
}

/// `GET /api/v1/runs/{run}/reports`: the run's reports, in the order they were stored.
pub async fn list(
    State(state): State<AppState>,
    Extension(repo): Extension<RepoRow>,
    Path(params): Path<BTreeMap<String, String>>,
) -> Result<Json<Vec<RunReport>>, ApiError> {
    let run = super::http::load_run(&state, &repo, &params).await?;
    let mut out = Vec::new();
    for json in state.store().run_reports(run.id).await? {
        let report: RunReport = serde_json::from_str(&json)
            .map_err(|e| ApiError::Internal(anyhow::anyhow!("stored report: {e}")))?;
        out.push(report);
    }
    Ok(Json(out))
}
