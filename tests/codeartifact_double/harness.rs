//! Test-side helpers shared by `agent/tests/{broker,gateway,private_net}.rs`
//! (included with `#[path]`): start moto (STS) and the CodeArtifact double
//! on free 127.0.0.1 ports, read the double's counters, plain HTTP/1.0 GETs.
//! Every process is killed when its handle drops.
#![allow(dead_code, clippy::unwrap_used)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub fn double_script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/codeartifact_double/double.py")
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn wait_tcp(addr: SocketAddr, child: &mut Child, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return;
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!("{what} exited before listening: {status}");
        }
        assert!(Instant::now() < deadline, "{what} did not listen on {addr}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `moto_server` on a free port: the STS stand-in.
pub struct Moto {
    child: Child,
    pub port: u16,
    pub host: String,
}

impl Moto {
    /// Starts moto on a port it picks itself (`-p 0`) and reads the port from
    /// its banner: picking a free port first and handing it over races with
    /// other tests that do the same.
    pub fn start() -> Moto {
        Moto::start_on("127.0.0.1")
    }

    /// Moto listening on `host`.
    pub fn start_on(host: &str) -> Moto {
        let mut child = Command::new("moto_server")
            .args(["-H", host, "-p", "0"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("moto_server on PATH (pip install 'moto[server]')");
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            // keep draining moto's request log so it never blocks on a full pipe
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(rest) = line.split("Running on http://").nth(1) {
                    let port = rest
                        .trim()
                        .rsplit_once(':')
                        .and_then(|(_, p)| p.parse::<u16>().ok());
                    let _ = tx.send(port);
                }
            }
        });
        let port = match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(Some(port)) => port,
            other => {
                let _ = child.kill();
                panic!("moto_server did not report its port: {other:?}");
            }
        };
        let addr: SocketAddr = format!("{host}:{port}").parse().unwrap();
        wait_tcp(addr, &mut child, "moto_server");
        Moto {
            child,
            port,
            host: host.to_string(),
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}:{}", self.host, self.port)
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The CodeArtifact double (`double.py`).
pub struct Double {
    child: Child,
    pub host: String,
    pub port: u16,
}

impl Double {
    pub fn start(args: &[&str]) -> Double {
        Double::start_on("127.0.0.1:0", args)
    }

    pub fn start_on(bind: &str, args: &[&str]) -> Double {
        let mut child = Command::new("python3")
            .arg(double_script())
            .args(["--bind", bind])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port = line.trim().parse().unwrap_or_else(|_| {
            let _ = child.kill();
            panic!("double printed {line:?} instead of its port")
        });
        let host = bind.rsplit_once(':').unwrap().0.to_string();
        Double { child, host, port }
    }

    /// `host:port`
    pub fn addr(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr())
    }

    pub fn stats(&self) -> serde_json::Value {
        let (status, body) = http_get(&format!("{}/__double/stats", self.url()));
        assert_eq!(status, 200);
        serde_json::from_slice(&body).unwrap()
    }

    pub fn count(&self, key: &str) -> u64 {
        self.stats()[key].as_u64().unwrap()
    }

    /// Every token the double issued.
    pub fn tokens(&self) -> Vec<String> {
        let (status, body) = http_get(&format!("{}/__double/tokens", self.url()));
        assert_eq!(status, 200);
        serde_json::from_slice(&body).unwrap()
    }

    pub fn expire_tokens(&self) {
        let (status, _) = http_request(
            "POST",
            &format!("{}/__double/expire-tokens", self.url()),
            &[],
        );
        assert_eq!(status, 200);
    }
}

impl Drop for Double {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A one-shot HTTP/1.0 request to `http://host:port/path`; (status, body).
pub fn http_request(method: &str, url: &str, headers: &[(&str, &str)]) -> (u16, Vec<u8>) {
    let rest = url.strip_prefix("http://").unwrap();
    let (hostport, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let path = if path.is_empty() { "/" } else { path };
    let mut s = TcpStream::connect(hostport).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut req = format!("{method} {path} HTTP/1.0\r\nHost: {hostport}\r\ncontent-length: 0\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).unwrap();
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).unwrap();
    parse_response(&buf)
}

pub fn http_get(url: &str) -> (u16, Vec<u8>) {
    http_request("GET", url, &[])
}

pub fn parse_response(buf: &[u8]) -> (u16, Vec<u8>) {
    let text = String::from_utf8_lossy(buf);
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let split = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(buf.len(), |i| i + 4);
    (status, buf[split..].to_vec())
}
