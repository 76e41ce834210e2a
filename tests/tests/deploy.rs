//! The systemd units of deploy/systemd/ are valid for systemd itself (`systemd-analyze verify`,
//! from Debian's `systemd` package, which scripts/test-env.sh installs), restart on failure, run
//! as their own users (created by the sysusers file) and stay hardened
//! (`systemd-analyze security --offline`).

use std::path::{Path, PathBuf};
use std::process::Command;

fn deploy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .join("deploy/systemd")
}

fn require(tool: &str) {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    assert!(
        found,
        "{tool} not found: install Debian's systemd package (bash scripts/test-env.sh does)"
    );
}

const UNITS: [(&str, &str, &str); 2] = [
    ("cove-server.service", "/usr/local/bin/cove-server", "cove"),
    (
        "cove-agent.service",
        "/usr/local/bin/cove-agent",
        "cove-agent",
    ),
];

/// Copies of the units whose ExecStart binary exists here (verify checks it is executable).
fn units_in(tmp: &Path) -> Vec<PathBuf> {
    UNITS
        .iter()
        .map(|(name, binary, _)| {
            let text = std::fs::read_to_string(deploy_dir().join(name)).expect("unit file");
            assert!(text.contains(&format!("ExecStart={binary} ")), "{name}");
            let path = tmp.join(name);
            std::fs::write(&path, text.replace(binary, "/bin/true")).expect("write unit");
            path
        })
        .collect()
}

#[test]
fn systemd_units_verify_restart_on_failure_and_run_as_their_own_user() {
    require("systemd-analyze");
    let tmp = tempfile::tempdir().expect("tempdir");
    let units = units_in(tmp.path());
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .args(&units)
        .output()
        .expect("systemd-analyze verify");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.trim().is_empty(), "warnings: {stderr}");
    for ((name, _, user), path) in UNITS.iter().zip(&units) {
        let text = std::fs::read_to_string(path).expect("unit");
        for line in [
            "Restart=on-failure".to_string(),
            format!("User={user}"),
            "NoNewPrivileges=yes".to_string(),
            "ProtectSystem=strict".to_string(),
        ] {
            assert!(text.lines().any(|l| l == line), "{name} lacks `{line}`");
        }
        // Hardened: systemd's own exposure score stays low ("OK", at most 3 of 10).
        let out = Command::new("systemd-analyze")
            .args(["security", "--offline=yes", "--no-pager"])
            .arg(path)
            .output()
            .expect("systemd-analyze security");
        let text = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        let score: f64 = text
            .lines()
            .find_map(|l| {
                let rest = l.split("Overall exposure level for").nth(1)?;
                rest.split_whitespace().nth(1)?.parse().ok()
            })
            .unwrap_or_else(|| panic!("no exposure level for {name}: {text}"));
        assert!(score <= 3.0, "{name} exposure {score}: {text}");
    }
}

#[test]
fn sysusers_creates_both_service_users_in_the_docker_group() {
    require("systemd-sysusers");
    let root = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir_all(root.path().join("etc")).expect("etc");
    std::fs::write(root.path().join("etc/group"), "docker:x:999:\n").expect("group");
    let conf = deploy_dir().join("cove.sysusers.conf");
    let out = Command::new("systemd-sysusers")
        .arg(format!("--root={}", root.path().display()))
        .arg(&conf)
        .output()
        .expect("systemd-sysusers");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let passwd = std::fs::read_to_string(root.path().join("etc/passwd")).expect("passwd");
    let group = std::fs::read_to_string(root.path().join("etc/group")).expect("group");
    for (_, _, user) in UNITS {
        assert!(
            passwd
                .lines()
                .any(|l| l.starts_with(&format!("{user}:")) && l.ends_with(":/usr/sbin/nologin")),
            "{passwd}"
        );
    }
    let docker = group
        .lines()
        .find(|l| l.starts_with("docker:"))
        .expect("docker group");
    assert!(
        docker.ends_with(":cove,cove-agent") || docker.ends_with(":cove-agent,cove"),
        "{docker}"
    );
}
