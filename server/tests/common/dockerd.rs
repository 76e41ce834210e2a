//! An extra, separate Docker engine for multi-engine tests (issue 20): its own dockerd with
//! its own `--data-root`, `--exec-root`, `--pidfile` and unix socket under
//! `/tmp/cove-remote-<pid>-<n>/`, a default bridge of its own (`--bridge=cvdNNN`, made here
//! and deleted on drop — never `--bridge=none`, with which dockerd deletes the host's
//! `docker0`, the main engine's bridge), its own address pools, and no iptables of its own
//! (the main engine owns the host's chains). Images are copied
//! from the main engine (`docker save | docker load`). Killed, and its directory removed, on
//! drop.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

static NEXT: AtomicU32 = AtomicU32::new(0);

pub struct ExtraDockerd {
    child: std::process::Child,
    /// The engine's own default bridge (an interface name of at most 15 bytes).
    bridge: String,
    pub dir: PathBuf,
    /// `unix:///…/docker.sock`: the DOCKER_HOST of this engine.
    pub host: String,
}

impl ExtraDockerd {
    /// Starts the engine and waits until it answers; `images` are loaded into it from the
    /// engine of the current DOCKER_HOST.
    pub fn start(images: &[&str]) -> Result<ExtraDockerd> {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir = PathBuf::from(format!("/tmp/cove-remote-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)?;
        let sock = dir.join("docker.sock");
        let host = format!("unix://{}", sock.display());
        // a distinct pool per engine (and per process), away from the main engine's
        let octet = 200 + (std::process::id() % 40) as u8 + (n as u8 % 10);
        let had_docker0 = std::path::Path::new("/sys/class/net/docker0").exists();
        let bridge = format!("cvd{octet}n{n}");
        let made = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "ip link del {bridge} 2>/dev/null; ip link add {bridge} type bridge && \
                 ip addr add 10.{octet}.255.1/24 dev {bridge} && ip link set {bridge} up"
            ))
            .status()
            .context("ip link add")?;
        if !made.success() {
            bail!("could not make the bridge {bridge} for the extra engine");
        }
        let log = std::fs::File::create(dir.join("dockerd.log"))?;
        let child = Command::new("dockerd")
            .arg("--host")
            .arg(&host)
            .arg("--data-root")
            .arg(dir.join("data"))
            .arg("--exec-root")
            .arg(dir.join("exec"))
            .arg("--pidfile")
            .arg(dir.join("pid"))
            .arg(format!("--bridge={bridge}"))
            .args(["--iptables=false", "--ip6tables=false"])
            .arg(format!(
                "--default-address-pool=base=10.{octet}.0.0/17,size=24"
            ))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context("starting dockerd")?;
        let engine = ExtraDockerd {
            child,
            bridge,
            dir,
            host,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let ok = Command::new("docker")
                .args(["-H", &engine.host, "info", "--format", "{{.ID}}"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .map(|s| s.success())
                .unwrap_or(false);
            if ok {
                break;
            }
            if Instant::now() > deadline {
                let log =
                    std::fs::read_to_string(engine.dir.join("dockerd.log")).unwrap_or_default();
                bail!("the extra dockerd did not answer within 60 s:\n{log}");
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        // The main engine's bridge must survive a second engine on the same host.
        if had_docker0 && !std::path::Path::new("/sys/class/net/docker0").exists() {
            bail!(
                "starting the extra dockerd removed the host's docker0 (the main engine's bridge)"
            );
        }
        for image in images {
            let status = Command::new("sh")
                .arg("-c")
                .arg(format!(
                    "docker save {image} | docker -H {} load -q",
                    engine.host
                ))
                .stdout(Stdio::null())
                .status()?;
            if !status.success() {
                bail!("loading {image} into the extra engine failed");
            }
        }
        Ok(engine)
    }

    /// `docker -H <this engine> ARGS…`'s stdout.
    pub fn docker(&self, args: &[&str]) -> String {
        let out = Command::new("docker")
            .args(["-H", &self.host])
            .args(args)
            .output()
            .expect("docker runs");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for ExtraDockerd {
    fn drop(&mut self) {
        // containers first (they hold mounts under the data root), then the engine
        let ids = self.docker(&["ps", "-aq"]);
        for id in ids.split_whitespace() {
            let _ = Command::new("docker")
                .args(["-H", &self.host, "rm", "-f", "-v", id])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "umount -R {0}/data {0}/exec 2>/dev/null; rm -rf {0}; ip link del {1} 2>/dev/null",
                self.dir.display(),
                self.bridge
            ))
            .status();
    }
}
