//! Snapshots of the normalized form (JSON) of real corpus files, plus the
//! run order their plan gives. Update with `UPDATE_EXPECT=1 cargo test -p
//! workflows --test snapshots` and review the diff.

mod common;

use expect_test::{expect_file, ExpectFile};
use workflows::{validate_file, RunPlan};

fn check(rel: &str, expect: ExpectFile) {
    let text = common::corpus_file(rel);
    let (w, warnings) = match validate_file(rel, &text) {
        Ok(ok) => ok,
        Err(diags) => panic!("{rel} rejected: {diags:?}"),
    };
    let plan = RunPlan::new(&w).expect("corpus workflows are acyclic");
    let snapshot = serde_json::json!({
        "workflow": w,
        "warnings": warnings.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "run_order": plan.order(),
    });
    let mut out = serde_json::to_string_pretty(&snapshot).expect("serializable");
    out.push('\n');
    expect.assert_eq(&out);
}

#[test]
fn codecatalyst_sample_implicit_edges() {
    check(
        "codecatalyst/aws.codecatalyst-runner-cli--sample.yaml",
        expect_file!["snapshots/codecatalyst-runner-cli--sample.json"],
    );
}

#[test]
fn codecatalyst_walteh_groups() {
    check(
        "codecatalyst/walteh.webauthn--deployment-pipeline.yaml",
        expect_file!["snapshots/walteh--deployment-pipeline.json"],
    );
}

#[test]
fn codecatalyst_sonarsource_github_runner() {
    check(
        "codecatalyst/florian-thoni-sonarsource.test_python--test.yaml",
        expect_file!["snapshots/sonarsource--test.json"],
    );
}

#[test]
fn codecatalyst_headforthecloud_reports() {
    check(
        "codecatalyst/headforthecloud.codecatalyst-python-pipeline--python-testing-pipeline.yaml",
        expect_file!["snapshots/headforthecloud--python-testing-pipeline.json"],
    );
}

#[test]
fn codecatalyst_santoses_container() {
    check(
        "codecatalyst/santoses-me.infra--deploy.yaml",
        expect_file!["snapshots/santoses--deploy.json"],
    );
}

#[test]
fn buildspec_java_ci_build() {
    check(
        "buildspec/aws.aws-encryption-sdk-java--ci-build.yaml",
        expect_file!["snapshots/aws-encryption-sdk-java--ci-build.json"],
    );
}

#[test]
fn buildspec_crt_java_build_jar() {
    check(
        "buildspec/awslabs.aws-crt-java--build-jar.yaml",
        expect_file!["snapshots/aws-crt-java--build-jar.json"],
    );
}

#[test]
fn buildspec_javascript_publish() {
    check(
        "buildspec/aws.aws-encryption-sdk-javascript--publish.yaml",
        expect_file!["snapshots/aws-encryption-sdk-javascript--publish.json"],
    );
}
