use super::*;

fn test(format: &str, text: &str) -> TestSummary {
    match parse(format, text.as_bytes()).unwrap_or_else(|e| panic!("{format}: {e}")) {
        ReportData::Test(t) => t,
        other => panic!("{other:?}"),
    }
}

fn cov(format: &str, text: &str) -> CoverageSummary {
    match parse(format, text.as_bytes()).unwrap_or_else(|e| panic!("{format}: {e}")) {
        ReportData::Coverage(c) => c,
        other => panic!("{other:?}"),
    }
}

#[test]
fn junit_counts_failures_errors_and_skips() {
    let t = test(
        "JUNITXML",
        r#"<?xml version="1.0"?>
<testsuites><testsuite name="calc" tests="4">
  <testcase classname="calc.Add" name="adds"/>
  <testcase classname="calc.Add" name="overflows"><failure message="expected 3 &lt; 2">trace</failure></testcase>
  <testcase name="divides"><error type="Panic"><![CDATA[division by zero]]></error></testcase>
  <testcase classname="calc.Add" name="later"><skipped/></testcase>
</testsuite></testsuites>"#,
    );
    assert_eq!((t.total, t.passed, t.failed, t.skipped), (4, 1, 2, 1));
    assert_eq!(t.failures[0].suite, "calc.Add");
    assert_eq!(t.failures[0].message, "expected 3 < 2");
    assert_eq!(t.failures[1].suite, "calc");
    assert_eq!(t.failures[1].message, "division by zero");
    assert!((t.pass_rate() - 100.0 / 3.0).abs() < 1e-9);
}

#[test]
fn testng_nunit_trx_and_cucumber() {
    let t = test(
        "TESTNGXML",
        r#"<testng-results><suite><test><class name="a.B">
<test-method status="PASS" name="setUp" is-config="true"/>
<test-method status="PASS" name="ok"/>
<test-method status="FAIL" name="bad"><exception class="AssertionError"><message><![CDATA[boom]]></message></exception></test-method>
<test-method status="SKIP" name="later"/>
</class></test></suite></testng-results>"#,
    );
    assert_eq!((t.total, t.passed, t.failed, t.skipped), (3, 1, 1, 1));
    assert_eq!(t.failures[0].message, "boom");
    assert_eq!(t.failures[0].suite, "a.B");

    let t = test(
        "NUNITXML",
        r#"<test-results><test-suite><results>
<test-case name="Ns.C.Ok" executed="True" result="Success"/>
<test-case name="Ns.C.Bad" executed="True" result="Failure"><failure><message><![CDATA[nope]]></message></failure></test-case>
<test-case name="Ns.C.Ign" executed="False" result="Ignored"/>
</results></test-suite></test-results>"#,
    );
    assert_eq!((t.total, t.passed, t.failed, t.skipped), (3, 1, 1, 1));
    assert_eq!(
        (t.failures[0].suite.as_str(), t.failures[0].name.as_str()),
        ("Ns.C", "Bad")
    );

    let t = test(
        "NUNIT3XML",
        r#"<test-run><test-suite>
<test-case name="Ok" classname="Ns.C" result="Passed"/>
<test-case name="Bad" classname="Ns.C" result="Failed"><failure><message>expected 1</message></failure></test-case>
</test-suite></test-run>"#,
    );
    assert_eq!((t.total, t.failed), (2, 1));
    assert_eq!(t.failures[0].message, "expected 1");

    let t = test(
        "VISUALSTUDIOTRX",
        r#"<TestRun xmlns="http://microsoft.com/schemas/VisualStudio/TeamTest/2010"><Results>
<UnitTestResult testName="Ok" outcome="Passed"/>
<UnitTestResult testName="Bad" outcome="Failed"><Output><ErrorInfo><Message>Assert.AreEqual failed</Message></ErrorInfo></Output></UnitTestResult>
<UnitTestResult testName="Skip" outcome="NotExecuted"/>
</Results></TestRun>"#,
    );
    assert_eq!((t.total, t.passed, t.failed, t.skipped), (3, 1, 1, 1));
    assert_eq!(t.failures[0].message, "Assert.AreEqual failed");

    let t = test(
        "CUCUMBERJSON",
        r#"[{"name":"Login","elements":[
 {"type":"background","name":"bg","steps":[{"name":"x","result":{"status":"passed"}}]},
 {"type":"scenario","name":"good","steps":[{"name":"a","result":{"status":"passed"}}]},
 {"type":"scenario","name":"bad","steps":[{"name":"I log in","result":{"status":"failed","error_message":"401"}}]},
 {"type":"scenario","name":"todo","steps":[{"name":"b","result":{"status":"undefined"}}]}]}]"#,
    );
    assert_eq!((t.total, t.passed, t.failed, t.skipped), (3, 1, 1, 1));
    assert_eq!(t.failures[0].message, "step `I log in`: 401");
}

#[test]
fn coverage_formats_give_totals_and_files() {
    let c = cov(
        "COBERTURAXML",
        r#"<?xml version="1.0" ?><!DOCTYPE coverage SYSTEM "coverage-04.dtd">
<coverage line-rate="0.5"><packages><package name="p"><classes>
<class name="A" filename="src/a.py"><methods><method name="m"><lines><line number="1" hits="1"/></lines></method></methods>
<lines><line number="1" hits="1"/><line number="2" hits="0" branch="true" condition-coverage="50% (1/2)"/><line number="3" hits="2"/><line number="4" hits="0"/></lines></class>
</classes></package></packages></coverage>"#,
    );
    assert_eq!(
        (
            c.lines_covered,
            c.lines_total,
            c.branches_covered,
            c.branches_total
        ),
        (2, 4, 1, 2)
    );
    assert_eq!(c.files[0].path, "src/a.py");

    let c = cov(
        "JACOCOXML",
        r#"<?xml version="1.0"?><!DOCTYPE report PUBLIC "-//JACOCO//DTD Report 1.1//EN" "report.dtd"><report name="r">
<package name="com/x"><class name="com/x/A"><counter type="LINE" missed="9" covered="9"/></class>
<sourcefile name="A.java"><line nr="1" mi="0" ci="3"/><counter type="LINE" missed="1" covered="3"/><counter type="BRANCH" missed="2" covered="2"/></sourcefile>
<counter type="LINE" missed="1" covered="3"/></package><counter type="LINE" missed="1" covered="3"/></report>"#,
    );
    assert_eq!(
        (
            c.lines_covered,
            c.lines_total,
            c.branches_covered,
            c.branches_total
        ),
        (3, 4, 2, 4)
    );
    assert_eq!(c.files[0].path, "com/x/A.java");

    let c = cov(
        "CLOVERXML",
        r#"<coverage><project><metrics statements="10" coveredstatements="5"/>
<package name="p"><file name="a.php" path="/src/a.php"><metrics statements="4" coveredstatements="3" conditionals="2" coveredconditionals="1"/><line num="1" type="stmt" count="1"/></file></package>
<file name="b.php"><metrics statements="6" coveredstatements="2"/></file></project></coverage>"#,
    );
    assert_eq!(
        (
            c.lines_covered,
            c.lines_total,
            c.branches_covered,
            c.branches_total
        ),
        (5, 10, 1, 2)
    );
    assert_eq!(c.files.len(), 2);

    let c = cov(
        "LCOV",
        "TN:\nSF:src/a.js\nDA:1,1\nDA:2,0\nBRDA:2,0,0,1\nBRDA:2,0,1,-\nend_of_record\nSF:src/b.js\nDA:1,3\nLF:5\nLH:4\nend_of_record\n",
    );
    assert_eq!(
        (
            c.lines_covered,
            c.lines_total,
            c.branches_covered,
            c.branches_total
        ),
        (5, 7, 1, 2)
    );
    assert_eq!(c.files[1].path, "src/b.js");
}

#[test]
fn criteria_fail_below_their_minimum() {
    let crit = Criteria::from_json(Some(
        &serde_json::json!({"PassRate": 100, "LineCoverage": "80"}),
    ));
    let t = ReportData::Test(TestSummary {
        total: 2,
        passed: 1,
        failed: 1,
        ..TestSummary::default()
    });
    assert_eq!(crit.failures(&t), vec!["pass rate 50.0% is below 100%"]);
    let c = ReportData::Coverage(CoverageSummary {
        lines_covered: 9,
        lines_total: 10,
        ..CoverageSummary::default()
    });
    assert!(crit.failures(&c).is_empty());
    let c = ReportData::Coverage(CoverageSummary {
        lines_covered: 7,
        lines_total: 10,
        ..CoverageSummary::default()
    });
    assert_eq!(crit.failures(&c), vec!["line coverage 70.0% is below 80%"]);
}

#[test]
fn hostile_input_is_an_error_or_bounded() {
    assert!(parse("JUNITXML", b"").is_err());
    assert!(parse("JUNITXML", b"<html/>").is_err());
    assert!(parse("JUNITXML", b"<testsuite><testcase").is_err());
    assert!(parse("CUCUMBERJSON", b"{").is_err());
    assert!(parse("LCOV", b"hello").is_err());
    assert!(parse("SARIFSA", b"{}").is_err());
    let deep = "<testsuite>".repeat(100_000);
    assert!(parse("JUNITXML", deep.as_bytes())
        .unwrap_err()
        .contains("deeper"));
    // an entity bomb is not expanded: quick-xml never expands custom entities
    let bomb = r#"<?xml version="1.0"?><!DOCTYPE l [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">]><testsuite><testcase name="x"><failure message="&b;"/></testcase></testsuite>"#;
    let t = test("JUNITXML", bomb);
    assert!(t.failures[0].message.len() < 100);
    // many failures: all counted, a bounded number kept
    let mut many = String::from("<testsuite>");
    for i in 0..5000 {
        many.push_str(&format!(
            "<testcase name=\"t{i}\"><failure message=\"{}\"/></testcase>",
            "m".repeat(10_000)
        ));
    }
    many.push_str("</testsuite>");
    let t = test("JUNITXML", &many);
    assert_eq!(t.failed, 5000);
    assert_eq!(t.failures.len(), MAX_FAILURES);
    assert!(t
        .failures
        .iter()
        .all(|f| f.message.len() <= MAX_MESSAGE + 3));
}
