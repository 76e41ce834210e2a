//! `cove env port-forward ENV LOCAL:REMOTE …`: listens on 127.0.0.1:LOCAL and carries each
//! accepted connection to REMOTE in the environment over its own authenticated WebSocket
//! `GET /api/v1/environments/{env}/ports/{port}/tunnel`, until either side closes. Also the
//! WebSocket byte bridge that `cove env ssh --stdio` uses. See docs/ports.md.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::sync::mpsc;

use anyhow::{bail, Context, Result};
use tungstenite::stream::MaybeTlsStream;
use tungstenite::Message;

/// One `LOCAL:REMOTE` pair (`PORT` alone means the same port on both ends; LOCAL 0 picks a
/// free port).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Forward {
    pub local: u16,
    pub remote: u16,
}

/// Parses `LOCAL:REMOTE` or `PORT`.
pub fn parse_forward(spec: &str) -> Result<Forward> {
    let port = |s: &str, what: &str| -> Result<u16> {
        s.trim().parse::<u16>().with_context(|| {
            format!("invalid {what} port {s:?} in {spec:?} (expected LOCAL:REMOTE)")
        })
    };
    let f = match spec.split_once(':') {
        Some((l, r)) => Forward {
            local: port(l, "local")?,
            remote: port(r, "remote")?,
        },
        None => {
            let p = port(spec, "")?;
            Forward {
                local: p,
                remote: p,
            }
        }
    };
    if f.remote == 0 {
        bail!("invalid remote port 0 in {spec:?}");
    }
    Ok(f)
}

/// The server's WebSocket URL for an API path.
fn ws_url(base: &str, path: &str) -> Result<String> {
    if let Some(rest) = base.strip_prefix("http://") {
        Ok(format!("ws://{rest}{path}"))
    } else if let Some(rest) = base.strip_prefix("https://") {
        Ok(format!("wss://{rest}{path}"))
    } else {
        bail!("unsupported server URL {base}");
    }
}

/// Copies `input` to the WebSocket at API `path` (binary frames) and the WebSocket's binary
/// frames to `output`, until the server closes or `input` ends. `what` names the service
/// in errors ("SSH", "port 8000").
pub fn bridge(
    base: &str,
    token: &str,
    path: &str,
    what: &str,
    mut input: impl Read + Send + 'static,
    mut output: impl Write,
) -> Result<()> {
    let mut socket = crate::terminal::connect(&ws_url(base, path)?, token, what)?;
    match socket.get_mut() {
        MaybeTlsStream::Plain(tcp) => {
            tcp.set_read_timeout(Some(std::time::Duration::from_millis(10)))?;
        }
        _ => bail!("{what} over https:// is not supported by this cove binary yet"),
    }
    let (tx, rx) = mpsc::channel::<Option<Vec<u8>>>();
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 32 * 1024];
        loop {
            match input.read(&mut buf) {
                Ok(0) | Err(_) => {
                    let _ = tx.send(None);
                    break;
                }
                Ok(n) => {
                    if tx.send(Some(buf[..n].to_vec())).is_err() {
                        break;
                    }
                }
            }
        }
    });
    let mut input_open = true;
    loop {
        match socket.read() {
            Ok(Message::Binary(bytes)) => {
                output.write_all(&bytes)?;
                output.flush()?;
            }
            Ok(Message::Close(_)) => break,
            Ok(_) => {}
            Err(tungstenite::Error::Io(e))
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed) => break,
            Err(e) => bail!("{what}: connection failed: {e}"),
        }
        while input_open {
            match rx.try_recv() {
                Ok(Some(bytes)) => socket.send(Message::Binary(bytes.into()))?,
                Ok(None) | Err(mpsc::TryRecvError::Disconnected) => {
                    // our side closed its end: we are done
                    input_open = false;
                    let _ = socket.close(None);
                }
                Err(mpsc::TryRecvError::Empty) => break,
            }
        }
        if !input_open {
            // drain what the server still sends until it closes
            match socket.flush() {
                Ok(()) => {}
                Err(_) => break,
            }
        }
    }
    Ok(())
}

/// Runs the forwards until interrupted: one listener per pair on 127.0.0.1, one thread and
/// one tunnel per accepted connection. Prints `Forwarding 127.0.0.1:LOCAL -> ENV:REMOTE` per
/// pair once it listens.
pub fn port_forward(
    base: &str,
    token: &str,
    env_id: &str,
    env_name: &str,
    forwards: &[Forward],
) -> Result<()> {
    if forwards.is_empty() {
        bail!("nothing to forward: give LOCAL:REMOTE pairs (e.g. 8000:8000)");
    }
    let mut listeners = Vec::new();
    for f in forwards {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, f.local))
            .with_context(|| format!("cannot listen on 127.0.0.1:{}", f.local))?;
        let local = listener.local_addr()?.port();
        println!("Forwarding 127.0.0.1:{local} -> {env_name}:{}", f.remote);
        listeners.push((listener, f.remote));
    }
    std::io::stdout().flush().ok();
    let mut threads = Vec::new();
    for (listener, remote) in listeners {
        let (base, token, env_id) = (base.to_string(), token.to_string(), env_id.to_string());
        threads.push(std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { continue };
                let (base, token, env_id) = (base.clone(), token.clone(), env_id.clone());
                std::thread::spawn(move || forward_one(&base, &token, &env_id, remote, conn));
            }
        }));
    }
    for t in threads {
        let _ = t.join();
    }
    Ok(())
}

/// Carries one accepted connection; a failure is reported on stderr before the local
/// connection is closed.
fn forward_one(base: &str, token: &str, env_id: &str, remote: u16, conn: TcpStream) {
    let _ = conn.set_nodelay(true);
    let path = format!("/api/v1/environments/{env_id}/ports/{remote}/tunnel");
    let result = conn
        .try_clone()
        .map_err(anyhow::Error::from)
        .and_then(|input| bridge(base, token, &path, &format!("port {remote}"), input, &conn));
    if let Err(e) = result {
        eprintln!("cove: port {remote}: {e:#}");
    }
    let _ = conn.shutdown(std::net::Shutdown::Both);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forward_specs() {
        assert_eq!(
            parse_forward("8080:80").unwrap(),
            Forward {
                local: 8080,
                remote: 80
            }
        );
        assert_eq!(
            parse_forward("8000").unwrap(),
            Forward {
                local: 8000,
                remote: 8000
            }
        );
        assert_eq!(
            parse_forward("0:8000").unwrap(),
            Forward {
                local: 0,
                remote: 8000
            }
        );
        for bad in ["", "a:1", "1:b", "8000:0", "70000:1", "1:2:3"] {
            assert!(parse_forward(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn websocket_urls() {
        assert_eq!(ws_url("http://h:1", "/x").unwrap(), "ws://h:1/x");
        assert_eq!(ws_url("https://h", "/x").unwrap(), "wss://h/x");
        assert!(ws_url("ftp://h", "/x").is_err());
    }
}
