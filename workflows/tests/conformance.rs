//! Every file of `shared/conformance/workflows/` gets the verdict its
//! `INDEX.md` gives, and the "VALID WITH NOTE" decisions are pinned down.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use common::{corpus_dir, corpus_file, corpus_files};
use workflows::{
    interpolate, validate_file, Context, DependencyReason, Diagnostic, PullRequestEvent, RunPlan,
    Severity, Step, Workflow,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    Valid,
    ValidWithWarning,
    Invalid,
}

/// The verdict column of INDEX.md, per file.
fn index_verdicts() -> BTreeMap<String, Verdict> {
    let index = std::fs::read_to_string(corpus_dir().join("INDEX.md")).expect("INDEX.md readable");
    let mut out = BTreeMap::new();
    for line in index.lines() {
        let Some(rest) = line.strip_prefix("| `") else {
            continue;
        };
        let Some((file, _)) = rest.split_once('`') else {
            continue;
        };
        if !(file.starts_with("codecatalyst/") || file.starts_with("buildspec/")) {
            continue;
        }
        let Some((_, last)) = line
            .trim_end()
            .trim_end_matches('|')
            .trim_end()
            .rsplit_once(" | ")
        else {
            continue;
        };
        let verdict = if last.starts_with("INVALID") {
            Verdict::Invalid
        } else if last.starts_with("VALID WITH WARNING") {
            Verdict::ValidWithWarning
        } else if last.starts_with("VALID") {
            Verdict::Valid
        } else {
            // The legend table at the end lists files with commits only.
            continue;
        };
        out.insert(file.to_string(), verdict);
    }
    out
}

/// What each invalid / warned file must report: (line, substring).
fn expected_findings() -> BTreeMap<&'static str, Vec<(usize, &'static str)>> {
    BTreeMap::from([
        (
            "codecatalyst/coreyalejandro.kiro-hackathon-mad-mall--ci.yaml",
            vec![
                (
                    2,
                    "workflow `Name` `CI - Build, Lint, Test` contains characters",
                ),
                (4, "PULLREQUEST trigger requires `Events`"),
                (6, "repetition operator missing expression"),
                (12, "Linux.x86-64.Large"),
            ],
        ),
        (
            "buildspec/avanderm.aws-cicd-cdk--buildspec.yaml",
            vec![(26, "no primary artifact")],
        ),
    ])
}

fn check(rel: &str, text: &str) -> Result<(Workflow, Vec<Diagnostic>), Vec<Diagnostic>> {
    validate_file(rel, text)
}

fn render(diags: &[Diagnostic]) -> String {
    diags.iter().map(|d| format!("{d}\n")).collect()
}

#[test]
fn every_file_gets_its_index_verdict() {
    let verdicts = index_verdicts();
    let files = corpus_files();
    let on_disk: BTreeSet<&str> = files.iter().map(|(f, _)| f.as_str()).collect();
    let indexed: BTreeSet<&str> = verdicts.keys().map(String::as_str).collect();
    assert_eq!(on_disk, indexed, "corpus files and INDEX.md rows differ");
    assert_eq!(files.len(), 27, "INDEX.md promises 27 files");

    let findings = expected_findings();
    let mut failures = Vec::new();
    for (rel, text) in &files {
        let verdict = verdicts[rel.as_str()];
        let expected = findings.get(rel.as_str()).cloned().unwrap_or_default();
        match (verdict, check(rel, text)) {
            (Verdict::Invalid, Ok(_)) => {
                failures.push(format!("{rel}: accepted, INDEX.md says INVALID"))
            }
            (Verdict::Invalid, Err(diags)) => {
                assert!(!expected.is_empty(), "{rel}: add its expected findings");
                for (line, needle) in &expected {
                    let hit = diags.iter().any(|d| {
                        d.is_error()
                            && d.line == *line
                            && d.column >= 1
                            && d.to_string().contains(needle)
                    });
                    if !hit {
                        failures.push(format!(
                            "{rel}: no error at line {line} containing {needle:?}; got:\n{}",
                            render(&diags)
                        ));
                    }
                }
                for d in &diags {
                    assert_eq!(d.file, *rel);
                    assert!(d.line >= 1 && d.column >= 1, "{d}");
                }
            }
            (_, Err(diags)) => failures.push(format!(
                "{rel}: rejected, INDEX.md says VALID:\n{}",
                render(&diags)
            )),
            (Verdict::ValidWithWarning, Ok((_, warnings))) => {
                for (line, needle) in &expected {
                    let hit = warnings.iter().any(|d| {
                        d.severity == Severity::Warning
                            && d.line == *line
                            && d.message.contains(needle)
                    });
                    if !hit {
                        failures.push(format!(
                            "{rel}: no warning at line {line} containing {needle:?}; got:\n{}",
                            render(&warnings)
                        ));
                    }
                }
            }
            (Verdict::Valid, Ok((w, warnings))) => {
                assert!(warnings.iter().all(|d| !d.is_error()), "{rel}");
                // "must parse, validate and plan without error"
                if let Err(e) = RunPlan::new(&w) {
                    failures.push(format!("{rel}: cannot plan: {e}"));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

fn load(rel: &str) -> Workflow {
    match validate_file(rel, &corpus_file(rel)) {
        Ok((w, _)) => w,
        Err(d) => panic!("{rel} rejected:\n{}", render(&d)),
    }
}

fn warnings(rel: &str) -> Vec<Diagnostic> {
    validate_file(rel, &corpus_file(rel)).expect("valid").1
}

/// (action, dependency id, reason kind) triples.
fn edges(w: &Workflow) -> Vec<(String, String, &'static str)> {
    let mut out = Vec::new();
    for a in &w.actions {
        for d in &a.depends_on {
            let kind = match d.via {
                DependencyReason::DependsOn(_) => "depends_on",
                DependencyReason::GroupDependsOn(_) => "group",
                DependencyReason::Variable(_) => "variable",
                DependencyReason::Artifact(_) => "artifact",
            };
            out.push((a.id.clone(), d.action.clone(), kind));
        }
    }
    out
}

fn has_edge(w: &Workflow, from: &str, to: &str) -> bool {
    w.action(from)
        .unwrap_or_else(|| panic!("no action {from}"))
        .depends_on
        .iter()
        .any(|d| d.action == to)
}

#[test]
fn sample_orders_everything_through_implicit_edges() {
    let w = load("codecatalyst/aws.codecatalyst-runner-cli--sample.yaml");
    let e = edges(&w);
    assert!(
        e.contains(&("Group1.SubAction1".into(), "FirstAction".into(), "variable")),
        "{e:?}"
    );
    assert!(
        e.contains(&("Group1.SubAction2".into(), "FirstAction".into(), "artifact")),
        "{e:?}"
    );
    assert!(
        e.contains(&("FinalAction".into(), "Group1.SubAction1".into(), "artifact")),
        "{e:?}"
    );
    let plan = RunPlan::new(&w).expect("acyclic");
    let none = BTreeSet::new();
    assert_eq!(plan.ready(&none), vec!["FirstAction"]);
    assert_eq!(plan.order().last(), Some(&"FinalAction"));
}

#[test]
fn custom_action_chain_exists_only_through_references() {
    let w = load("codecatalyst/aws.codecatalyst-runner-cli--custom.yaml");
    assert!(has_edge(&w, "Custom", "FirstAction"));
    assert!(has_edge(&w, "FinalAction", "Custom"));
    assert_eq!(
        RunPlan::new(&w).expect("acyclic").order(),
        vec!["FirstAction", "Custom", "FinalAction"]
    );
    // `${Who}` has no dot: not a workflow reference, kept as data verbatim.
    let custom = w.action("Custom").expect("Custom");
    assert_eq!(custom.configuration.other["whoToGreet"], "${Who}");
}

#[test]
fn cross_level_depends_on_is_accepted_with_a_warning() {
    let w = load("codecatalyst/aws.codecatalyst-runner-cli--shared.yaml");
    assert!(has_edge(&w, "Group1.SubAction2", "FirstAction"));
    assert!(
        warnings("codecatalyst/aws.codecatalyst-runner-cli--shared.yaml")
            .iter()
            .any(|d| d.line == 52 && d.message.contains("outside its group"))
    );
    assert_eq!(
        w.compute.as_ref().and_then(|c| c.shared_instance),
        Some(true)
    );
}

#[test]
fn walteh_sibling_names_resolve_within_the_group() {
    let w = load("codecatalyst/walteh.webauthn--deployment-pipeline.yaml");
    // `${deploy.endpointUrl}` names the sibling `deploy`, not another group's
    let variable_edges: Vec<_> = edges(&w)
        .into_iter()
        .filter(|e| e.2 == "variable")
        .map(|(from, to, _)| (from, to))
        .collect();
    assert_eq!(
        variable_edges,
        vec![
            ("beta.test".to_string(), "beta.deploy".to_string()),
            (
                "gamma_us_east_1.test".to_string(),
                "gamma_us_east_1.deploy".to_string()
            ),
            (
                "gamma_us_west_2.test".to_string(),
                "gamma_us_west_2.deploy".to_string()
            ),
        ]
    );
    // group-level DependsOn: every prod action waits for both gamma groups
    for dep in [
        "gamma_us_east_1.deploy",
        "gamma_us_east_1.test",
        "gamma_us_west_2.test",
    ] {
        assert!(has_edge(&w, "prod_us_west_2.deploy", dep), "{dep}");
    }
    assert_eq!(w.run_mode, workflows::RunMode::Superseded);
    let plan = RunPlan::new(&w).expect("acyclic");
    assert_eq!(
        plan.ready(&BTreeSet::new()),
        vec!["build.package", "build.synth"]
    );
    let skipped = plan.skipped_after_failure("beta.deploy");
    assert!(skipped.contains(&"beta.test") && skipped.contains(&"prod_us_west_2.deploy"));
    assert!(!skipped.contains(&"build.synth"));
}

#[test]
fn vedmichv_fan_in() {
    let w = load("codecatalyst/vedmichv.todoapp-codecatalyst-demo--main_fullstack_workflow.yaml");
    let plan = RunPlan::new(&w).expect("acyclic");
    let mut done: BTreeSet<String> = BTreeSet::new();
    assert_eq!(
        plan.ready(&done),
        vec!["BackendBuildAndPackage", "BackendTest", "FrontendTest"]
    );
    done.insert("BackendBuildAndPackage".into());
    assert!(!plan.ready(&done).contains(&"BackendCDKBootstrapAction"));
    done.insert("BackendTest".into());
    assert!(plan.ready(&done).contains(&"BackendCDKBootstrapAction"));
    // deploy-action outputs are not declared anywhere: no error, but an edge
    assert!(has_edge(&w, "FrontendCDKDeploy", "BackendCDKDeploy"));
}

#[test]
fn chime_artifact_input_orders_the_deploy() {
    let w = load(
        "codecatalyst/aws-samples.amazon-chime-sdk-click-to-call--onPushToMainDeployPipeline.yaml",
    );
    assert_eq!(
        edges(&w),
        vec![(
            "CDKDeploy".to_string(),
            "BuildAndTest".to_string(),
            "artifact"
        )]
    );
}

#[test]
fn lock128_deploy_redundant_edges_are_harmless() {
    let w = load("codecatalyst/Lock128.projen-pipelines-typescript-example--deploy.yaml");
    let plan = RunPlan::new(&w).expect("acyclic");
    let order = plan.order();
    assert_eq!(order.len(), 13);
    assert_eq!(order[0], "SynthCDKApplication");
    let approvals: Vec<_> = w
        .actions
        .iter()
        .filter(|a| a.kind == workflows::ActionKind::Approval)
        .map(|a| a.id.as_str())
        .collect();
    assert_eq!(approvals.len(), 2, "{approvals:?}");
}

#[test]
fn github_expressions_reach_the_shell_byte_for_byte() {
    let w = load("codecatalyst/Lock128.projen-pipelines-typescript-example--release-prod.yaml");
    assert!(w.is_manual_only());
    let ctx = Context::default();
    let mut seen = 0;
    for a in &w.actions {
        for s in &a.configuration.steps {
            let Step::Run { command } = s else { continue };
            assert_eq!(
                interpolate(command, &ctx).expect("no workflow refs"),
                *command
            );
            seen += command.contains("${{github.event.inputs.version}}") as usize;
        }
    }
    assert_eq!(seen, 2);
}

#[test]
fn shell_default_expansion_reaches_the_shell() {
    let w = load("buildspec/aws.aws-encryption-sdk-javascript--version.yaml");
    let Step::Phase(build) = &w.actions[0].configuration.steps[2] else {
        panic!("phase expected")
    };
    let cmd = &build.commands[0];
    assert!(cmd.contains("${VERSION_BUMP:+$VERSION_BUMP --force-publish}"));
    assert_eq!(
        interpolate(cmd, &Context::default()).expect("no refs"),
        *cmd
    );
    assert_eq!(w.actions[0].configuration.git_credential_helper, Some(true));
}

#[test]
fn trigger_table_over_the_codecatalyst_corpus() {
    let cc = |f: &str| load(&format!("codecatalyst/{f}"));
    let open = PullRequestEvent::Open;
    // (file, push main, push feature-x, PR open into main, PR open into feature-x)
    let table: &[(&str, [bool; 4])] = &[
        (
            "clareliguori.summarize-my-document--test.yaml",
            [true, false, true, false],
        ),
        (
            "aws.codecatalyst-runner-cli--sample.yaml",
            [false, false, false, true],
        ),
        (
            "aws.codecatalyst-runner-cli--custom.yaml",
            [false, false, false, true],
        ),
        (
            "aws.codecatalyst-runner-cli--shared.yaml",
            [false, false, false, true],
        ),
        (
            "vedmichv.todoapp-codecatalyst-demo--main_fullstack_workflow.yaml",
            [true, false, false, false],
        ),
        (
            "Lock128.projen-pipelines-typescript-example--release-prod.yaml",
            [false, false, false, false],
        ),
        (
            "Lock128.projen-pipelines-typescript-example--deploy.yaml",
            [true, false, false, false],
        ),
        (
            "walteh.webauthn--deployment-pipeline.yaml",
            [true, false, false, false],
        ),
        (
            "florian-thoni-sonarsource.test_python--test.yaml",
            [true, true, true, true],
        ),
        (
            "headforthecloud.codecatalyst-python-pipeline--python-testing-pipeline.yaml",
            [true, true, false, false],
        ),
        (
            "aws-samples.amazon-chime-sdk-click-to-call--onPushToMainDeployPipeline.yaml",
            [true, false, false, false],
        ),
        (
            "Coykto.foodfeed--dev_backend.yaml",
            [false, false, false, false],
        ),
    ];
    for (file, want) in table {
        let w = cc(file);
        let got = [
            w.matches_push("main", &["README.md"]),
            w.matches_push("feature-x", &["README.md"]),
            w.matches_pull_request(open, "main", &["README.md"]),
            w.matches_pull_request(open, "feature-x", &["README.md"]),
        ];
        assert_eq!(&got, want, "{file}");
    }
    // anchoring: `feature-.*` does not match `my-feature-x`
    let sample = cc("aws.codecatalyst-runner-cli--sample.yaml");
    assert!(!sample.matches_pull_request(PullRequestEvent::Revision, "my-feature-x", &[]));
    assert!(!sample.matches_pull_request(PullRequestEvent::Closed, "feature-x", &[]));
    // `backend\/.*`
    let coykto = cc("Coykto.foodfeed--dev_backend.yaml");
    assert!(coykto.matches_push("backend/api", &[]));
    assert!(!coykto.matches_push("backend", &[]));
    // full-match FilesChanged: `code/` never matches a file below code/
    let santoses = cc("santoses-me.infra--deploy.yaml");
    assert!(!santoses.matches_push("dev", &["code/main.tf"]));
    assert!(santoses.matches_push("dev", &["code/"]));
    assert!(!santoses.matches_push("main", &["code/"]));
    // CLOSED is listed in the sonarsource file
    let sonar = cc("florian-thoni-sonarsource.test_python--test.yaml");
    assert!(sonar.matches_pull_request(PullRequestEvent::Closed, "any", &[]));
}

#[test]
fn buildspec_details() {
    let w = load("buildspec/aws.s2n-tls--buildspec_mem.yaml");
    let a = &w.actions[0];
    assert_eq!(w.schema_version, "0.2");
    assert_eq!(a.configuration.shell.as_deref(), Some("bash"));
    assert!(a
        .inputs
        .variables
        .iter()
        .any(|v| v.name == "CTEST_OUTPUT_ON_FAILURE" && v.value == "1"));
    let Step::Phase(build) = &a.configuration.steps[1] else {
        panic!("phase")
    };
    assert_eq!(build.on_failure, Some(workflows::OnFailure::Abort));

    let tf = load(
        "buildspec/aws-samples.aws-codepipeline-terraform-cicd-samples--buildspec_validate.yaml",
    );
    let Step::Phase(install) = &tf.actions[0].configuration.steps[0] else {
        panic!("phase")
    };
    assert_eq!(install.runtime_versions["python"], "3.9");
    assert_eq!(install.runtime_versions["golang"], "1.14");

    let java = load("buildspec/aws.aws-encryption-sdk-java--ci-build.yaml");
    assert_eq!(java.actions[0].outputs.variables, vec!["VERSION_HASH"]);
    assert!(java.batch.is_some());
}

/// What Cove itself does with each corpus file (`validate_for_cove`): the
/// files valid for their format that use a construct Cove does not run are
/// refused at that construct, never accepted and then ignored.
#[test]
fn cove_refuses_what_it_would_not_run() {
    let expected: BTreeMap<&str, Vec<(usize, &str)>> = BTreeMap::from([
        ("buildspec/avanderm.aws-cicd-cdk--buildspec.yaml", vec![]),
        ("buildspec/avanderm.aws-codeartifact-demo--cdk-buildspec.yaml", vec![]),
        ("buildspec/aws-samples.aws-codebuild-multiple-buildspec--buildspec-rpm.yaml", vec![]),
        ("buildspec/aws-samples.aws-codepipeline-terraform-cicd-samples--buildspec_validate.yaml", vec![]),
        ("buildspec/aws.aws-encryption-sdk-java--ci-build.yaml", vec![(12, "`env.parameter-store`"), (14, "`env.secrets-manager`")]),
        ("buildspec/aws.aws-encryption-sdk-javascript--publish.yaml", vec![(9, "`env.secrets-manager`")]),
        ("buildspec/aws.aws-encryption-sdk-javascript--version.yaml", vec![(9, "`git-credential-helper: yes`")]),
        ("buildspec/aws.aws-lc--run_nonroot_target.yaml", vec![(12, "`run-as`"), (19, "`run-as`")]),
        ("buildspec/aws.aws-lc--run_x509_limbo_reports_target.yaml", vec![]),
        ("buildspec/aws.s2n-tls--buildspec_mem.yaml", vec![]),
        ("buildspec/aws.s2n-tls--buildspec_ubuntu_integrationv2.yaml", vec![]),
        ("buildspec/awslabs.aws-crt-java--build-jar.yaml", vec![]),
        ("buildspec/schoemme.aws-codebuild-parallel-testing--buildspec.yaml", vec![]),
        ("codecatalyst/Coykto.foodfeed--dev_backend.yaml", vec![(27, "`AutoDiscoverReports`"), (46, "the managed action `aws/cdk-bootstrap@v1`"), (61, "the managed action `aws/cdk-deploy@v1`")]),
        ("codecatalyst/Lock128.projen-pipelines-typescript-example--deploy.yaml", vec![]),
        ("codecatalyst/Lock128.projen-pipelines-typescript-example--release-prod.yaml", vec![]),
        ("codecatalyst/aws-samples.amazon-chime-sdk-click-to-call--onPushToMainDeployPipeline.yaml", vec![(21, "`AutoDiscoverReports`"), (39, "the managed action `aws/cdk-deploy@v1`")]),
        ("codecatalyst/aws.codecatalyst-runner-cli--custom.yaml", vec![(23, "custom actions")]),
        ("codecatalyst/aws.codecatalyst-runner-cli--sample.yaml", vec![]),
        ("codecatalyst/aws.codecatalyst-runner-cli--shared.yaml", vec![(10, "`SharedInstance: true`"), (13, "custom actions")]),
        ("codecatalyst/clareliguori.summarize-my-document--test.yaml", vec![]),
        ("codecatalyst/florian-thoni-sonarsource.test_python--test.yaml", vec![(31, "`AutoDiscoverReports`"), (52, "the GitHub Actions runner action `aws/github-actions-runner@v1.0.0`")]),
        ("codecatalyst/headforthecloud.codecatalyst-python-pipeline--python-testing-pipeline.yaml", vec![(35, "the report format `PYLINTJSON`"), (39, "the success criterion `StaticAnalysisQuality`"), (42, "the success criterion `StaticAnalysisSecurity`"), (45, "the success criterion `StaticAnalysisBug`"), (72, "the report format `SARIFSA`"), (76, "the success criterion `StaticAnalysisFinding`")]),
        ("codecatalyst/santoses-me.infra--deploy.yaml", vec![]),
        ("codecatalyst/vedmichv.todoapp-codecatalyst-demo--main_fullstack_workflow.yaml", vec![(29, "`AutoDiscoverReports`"), (43, "the managed action `aws/cdk-bootstrap@v1`"), (58, "the managed action `aws/cdk-deploy@v1`"), (105, "`AutoDiscoverReports`"), (120, "the managed action `aws/cdk-bootstrap@v1`"), (135, "the managed action `aws/cdk-deploy@v1`")]),
        ("codecatalyst/walteh.webauthn--deployment-pipeline.yaml", vec![(37, "`AutoDiscoverReports`"), (64, "`AutoDiscoverReports`"), (87, "the managed action `aws/cdk-deploy@v1`"), (105, "`AutoDiscoverReports`"), (129, "the managed action `aws/cdk-deploy@v1`"), (146, "`AutoDiscoverReports`"), (170, "the managed action `aws/cdk-deploy@v1`"), (187, "`AutoDiscoverReports`"), (212, "the managed action `aws/cdk-deploy@v1`"), (235, "the managed action `aws/cdk-deploy@v1`")]),
    ]);
    let mut seen = 0;
    for (rel, text) in corpus_files() {
        let Some(want) = expected.get(rel.as_str()) else {
            continue;
        };
        seen += 1;
        let got: Vec<(usize, String)> = match workflows::validate_for_cove(&rel, &text) {
            Ok(_) => Vec::new(),
            Err(diags) => diags
                .iter()
                .filter(|d| d.is_error())
                .map(|d| (d.line, d.message.clone()))
                .collect(),
        };
        assert_eq!(got.len(), want.len(), "{rel}: {got:?}");
        for ((line, msg), (wl, needle)) in got.iter().zip(want) {
            assert!(
                *line == *wl && msg.starts_with("not supported by Cove: ") && msg.contains(needle),
                "{rel}: want {wl} `{needle}`, got {line} `{msg}`"
            );
        }
    }
    assert_eq!(seen, expected.len(), "every pinned file is in the corpus");
}
