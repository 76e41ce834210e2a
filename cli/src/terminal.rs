//! Interactive `cove env exec` over the server's terminal WebSocket: the
//! local terminal in raw mode, keystrokes as binary frames, the remote TTY's
//! bytes back, window size changes as resize messages, the remote exit code
//! as ours.

use std::io::{IsTerminal, Read, Write};
use std::net::TcpStream;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use tungstenite::client::IntoClientRequest;
use tungstenite::stream::MaybeTlsStream;
use tungstenite::Message;

/// Whether `cove env exec` should allocate a TTY by default.
pub fn interactive() -> bool {
    std::io::stdin().is_terminal() && std::io::stdout().is_terminal()
}

struct RawMode;

impl RawMode {
    fn enable() -> Result<RawMode> {
        crossterm::terminal::enable_raw_mode().context("cannot switch the terminal to raw mode")?;
        Ok(RawMode)
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        let _ = crossterm::terminal::disable_raw_mode();
    }
}

fn size() -> (u16, u16) {
    crossterm::terminal::size().unwrap_or((80, 24))
}

/// Run `command` (or a login shell when empty) with a TTY; returns its exit code.
pub fn run(
    base_url: &str,
    token: &str,
    env_id: &str,
    component: Option<&str>,
    command: &[String],
) -> Result<i32> {
    let ws_base = if let Some(rest) = base_url.strip_prefix("http://") {
        format!("ws://{rest}")
    } else {
        bail!("interactive exec needs a plain http:// server URL for now; use --no-tty for {base_url}");
    };
    let (cols, rows) = size();
    let mut url =
        format!("{ws_base}/api/v1/environments/{env_id}/terminal?cols={cols}&rows={rows}");
    if let Some(c) = component {
        url.push_str(&format!("&component={c}"));
    }
    if !command.is_empty() {
        let json = serde_json::to_string(command)?;
        let encoded: String = json
            .bytes()
            .map(|b| {
                if b.is_ascii_alphanumeric() {
                    (b as char).to_string()
                } else {
                    format!("%{b:02X}")
                }
            })
            .collect();
        url.push_str(&format!("&cmd={encoded}"));
    }
    let mut socket = connect(&url, token, "the terminal")?;
    if let MaybeTlsStream::Plain(tcp) = socket.get_mut() {
        set_timeout(tcp)?;
    }

    let raw = RawMode::enable().ok();
    let (tx, rx) = mpsc::channel::<Vec<u8>>();
    std::thread::spawn(move || {
        let mut stdin = std::io::stdin();
        let mut buf = [0u8; 4096];
        loop {
            match stdin.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if tx.send(buf[..n].to_vec()).is_err() {
                        break;
                    }
                }
            }
        }
    });
    let mut stdout = std::io::stdout();
    let mut last_size = (cols, rows);
    let mut last_check = Instant::now();
    let mut code = 0;
    loop {
        match socket.read() {
            Ok(Message::Binary(bytes)) => {
                stdout.write_all(&bytes)?;
                stdout.flush()?;
            }
            Ok(Message::Text(text)) => {
                if let Ok(v) = serde_json::from_str::<serde_json::Value>(&text) {
                    if v["type"] == "exit" {
                        code = v["code"].as_i64().unwrap_or(1) as i32;
                    }
                }
            }
            Ok(Message::Close(Some(frame)))
                if frame.code == tungstenite::protocol::frame::coding::CloseCode::Policy =>
            {
                // the server ended the terminal: the caller's access ended (token revoked,
                // logged out, removed from the repository)
                drop(raw);
                bail!("the server closed the terminal: {}", frame.reason);
            }
            Ok(Message::Close(_)) => break,
            Ok(_) => {}
            Err(tungstenite::Error::Io(e))
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed) => break,
            Err(e) => {
                drop(raw);
                bail!("terminal connection failed: {e}");
            }
        }
        while let Ok(bytes) = rx.try_recv() {
            socket.send(Message::Binary(bytes.into()))?;
        }
        if last_check.elapsed() > Duration::from_millis(250) {
            last_check = Instant::now();
            let now = size();
            if now != last_size {
                last_size = now;
                let msg = serde_json::json!({"type": "resize", "cols": now.0, "rows": now.1});
                socket.send(Message::Text(msg.to_string().into()))?;
            }
        }
    }
    drop(raw);
    Ok(code)
}

/// Opens the WebSocket at `url` with the bearer `token`; a refusal names `what` with the
/// server's status and message.
pub fn connect(
    url: &str,
    token: &str,
    what: &str,
) -> Result<tungstenite::WebSocket<MaybeTlsStream<TcpStream>>> {
    let mut request = url.into_client_request()?;
    request
        .headers_mut()
        .insert("Authorization", format!("Bearer {token}").parse()?);
    let (socket, _) = tungstenite::connect(request).map_err(|e| match e {
        tungstenite::Error::Http(resp) => anyhow::anyhow!(
            "the server refused {what} ({}): {}",
            resp.status(),
            resp.body()
                .as_deref()
                .map(String::from_utf8_lossy)
                .unwrap_or_default()
        ),
        other => anyhow::anyhow!("cannot open {what}: {other}"),
    })?;
    Ok(socket)
}

fn set_timeout(tcp: &mut TcpStream) -> Result<()> {
    tcp.set_read_timeout(Some(Duration::from_millis(20)))?;
    Ok(())
}
