//! The images `images/build.sh` builds exist, carry the project label, and every tool they
//! ship runs (busybox applets and wget against a local HTTP server; the universal image's tools).

use cove_tests::{docker_ok, require_docker, ALL_IMAGES};

#[test]
fn all_cove_images_exist_and_are_labelled() {
    require_docker();
    let mut missing = Vec::new();
    for tag in ALL_IMAGES {
        match docker_ok([
            "image",
            "inspect",
            "--format",
            "{{index .Config.Labels \"org.opencontainers.image.source\"}}",
            tag,
        ]) {
            Ok(source) => assert_eq!(source, "cove", "label of {tag}"),
            Err(_) => missing.push(tag),
        }
    }
    assert!(
        missing.is_empty(),
        "missing images {missing:?}: run `bash scripts/test-env.sh` (or `images/build.sh`)"
    );
}

#[test]
fn busybox_image_runs_a_command() {
    cove_tests::require_image(cove_tests::IMAGE_BUSYBOX);
    let out = cove_tests::Container::run_once(
        "busybox",
        &["--rm", cove_tests::IMAGE_BUSYBOX, "echo", "hello"],
        cove_tests::DEFAULT_TIMEOUT,
    )
    .expect("docker run cove/busybox");
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "hello");
}

/// A busybox httpd serving `hello-cove` on port 8080, from the image itself.
fn busybox_http_server() -> cove_tests::Container {
    cove_tests::require_image(cove_tests::IMAGE_BUSYBOX);
    cove_tests::Container::start(
        "bb-httpd",
        &[
            cove_tests::IMAGE_BUSYBOX,
            "sh",
            "-c",
            "mkdir -p /www && echo hello-cove >/www/index.html && exec httpd -f -p 8080 -h /www",
        ],
    )
    .expect("start busybox httpd")
}

/// `wget` in cove/busybox fetches from a local HTTP server with every option it documents,
/// and `-T` (which segfaulted with rc 139 in Debian's busybox build) works, from a shell and
/// as the container's command.
#[test]
fn busybox_wget_fetches_from_a_local_http_server() {
    let server = busybox_http_server();
    let net = format!("container:{}", server.id);
    let script = r#"
url=http://127.0.0.1:8080/index.html
i=0; until wget -q -O /dev/null $url 2>/dev/null || [ $i -ge 50 ]; do i=$((i+1)); sleep 0.1; done
check() { name=$1; shift; out=$("$@" 2>&1); rc=$?; echo "$name rc=$rc out=$(echo "$out" | tr '\n' ' ')"; }
check plain wget -O - $url
check quiet wget -q -O - $url
check T5 wget -q -T 5 -O - $url
check T5joined wget -q -T5 -O - $url
check timeout-long wget -q --timeout=5 -O - $url
check T0 wget -q -T 0 -O - $url
check headers wget -q -S -U cove-test --header 'X-Cove: 1' -O - $url
check spider wget -q --spider $url
cd /tmp && check file wget -q -T 3 $url && check cat cat /tmp/index.html
check refused wget -q -T 3 -O - http://127.0.0.1:1/
"#;
    let out = cove_tests::Container::run_once(
        "bb-wget",
        &[
            "--rm",
            "--network",
            &net,
            cove_tests::IMAGE_BUSYBOX,
            "sh",
            "-c",
            script,
        ],
        cove_tests::DEFAULT_TIMEOUT,
    )
    .expect("docker run wget");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let line = |name: &str| {
        text.lines()
            .find(|l| l.starts_with(&format!("{name} ")))
            .unwrap_or_else(|| panic!("no result for {name}: {text} {out:?}"))
            .to_string()
    };
    for name in [
        "plain",
        "quiet",
        "T5",
        "T5joined",
        "timeout-long",
        "T0",
        "headers",
        "cat",
    ] {
        let l = line(name);
        assert!(
            l.contains("rc=0") && l.contains("hello-cove"),
            "wget {name}: {l}"
        );
    }
    assert!(line("spider").contains("rc=0"), "{}", line("spider"));
    assert!(line("file").contains("rc=0"), "{}", line("file"));
    // A refused connection is an ordinary failure (1), not a crash (139).
    assert!(line("refused").contains("rc=1 "), "{}", line("refused"));

    // As the container's command (no shell in between).
    let out = cove_tests::Container::run_once(
        "bb-wget",
        &[
            "--rm",
            "--network",
            &net,
            cove_tests::IMAGE_BUSYBOX,
            "wget",
            "-q",
            "-T",
            "5",
            "-O",
            "-",
            "http://127.0.0.1:8080/index.html",
        ],
        cove_tests::DEFAULT_TIMEOUT,
    )
    .expect("docker run wget");
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "hello-cove");
}

/// Every applet cove/busybox ships answers `--help` without crashing (no signal, no 126/127).
#[test]
fn busybox_every_applet_answers() {
    cove_tests::require_image(cove_tests::IMAGE_BUSYBOX);
    let script = r#"
n=0
for a in $(busybox --list); do
  n=$((n+1))
  timeout 10 $a --help </dev/null >/dev/null 2>&1; rc=$?
  [ $rc -ge 126 ] && echo "BAD $a rc=$rc"
done
echo "applets=$n"
"#;
    let out = cove_tests::Container::run_once(
        "bb-applets",
        &["--rm", cove_tests::IMAGE_BUSYBOX, "sh", "-c", script],
        cove_tests::DEFAULT_TIMEOUT,
    )
    .expect("docker run applets");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{out:?}");
    assert!(!text.contains("BAD "), "applets that crashed:\n{text}");
    let count: usize = text
        .lines()
        .find_map(|l| l.strip_prefix("applets="))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0);
    assert!(count > 200, "busybox --list gave {count} applets: {text}");
}

/// Every tool cove/universal claims (bash git curl python3 pip boto3 pytest node npm awscli,
/// sftp-server for Cove's SSH `sftp` subsystem, rsync) runs, and curl fetches from a local HTTP server inside the image.
#[test]
fn universal_tools_all_run() {
    cove_tests::require_image(cove_tests::IMAGE_UNIVERSAL);
    let script = r#"
set -u
check() { name=$1; shift; if out=$("$@" 2>&1); then echo "OK $name"; else echo "BAD $name rc=$? $out"; fi; }
check bash bash -c 'echo ok'
check git git --version
check python3 python3 -c 'import boto3, pytest, sys; print(sys.version)'
check pip python3 -m pip --version
check pytest python3 -m pytest --version
check node node -e 'console.log(1+1)'
check npm npm --version
check aws aws --version
check rsync rsync --version
check sftp-server sh -c 'test -x /usr/lib/openssh/sftp-server && /usr/lib/openssh/sftp-server -h 2>&1 | grep -q usage'
mkdir -p /tmp/www && echo hello-universal >/tmp/www/index.html
(cd /tmp/www && exec python3 -m http.server 8080 --bind 127.0.0.1 >/dev/null 2>&1) &
i=0; until curl -fsS http://127.0.0.1:8080/ >/dev/null 2>&1 || [ $i -ge 100 ]; do i=$((i+1)); sleep 0.1; done
check curl sh -c 'curl -fsS --max-time 5 http://127.0.0.1:8080/index.html | grep -q hello-universal'
check git-clone-local sh -c 'cd /tmp && git init -q r && cd r && git -c user.email=a@b -c user.name=a commit -q --allow-empty -m x && git clone -q /tmp/r /tmp/r2'
"#;
    let out = cove_tests::Container::run_once(
        "universal-tools",
        &["--rm", cove_tests::IMAGE_UNIVERSAL, "bash", "-c", script],
        cove_tests::DEFAULT_TIMEOUT,
    )
    .expect("docker run universal");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    for tool in [
        "bash",
        "git",
        "python3",
        "pip",
        "pytest",
        "node",
        "npm",
        "aws",
        "sftp-server",
        "rsync",
        "curl",
        "git-clone-local",
    ] {
        assert!(
            text.lines().any(|l| l == format!("OK {tool}")),
            "{tool} does not work in {}:\n{text}\n{}",
            cove_tests::IMAGE_UNIVERSAL,
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
