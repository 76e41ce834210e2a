//! Email notifications: `email` targets (a list of addresses) and mail to one user (an
//! approver, a reviewer, an environment's owner), sent with `lettre` through the SMTP server
//! of `[notify.smtp]`. Messages are built by lettre (headers encoded by it; the subject is one
//! line with control characters removed), so nothing an event carries can add a header.
//!
//! An `email` target keeps its addresses in the target's `url` column as a `mailto:` URI
//! (`mailto:a@example.com,b@example.com`, RFC 6068); addresses are checked when the target is
//! created and when a user sets theirs.

use std::time::Duration;

use lettre::message::{header::ContentType, Mailbox};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::{Address, AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use serde::{Deserialize, Serialize};

use super::config::{SmtpSettings, SmtpTls};

/// Longest address (RFC 5321's path limit).
pub const MAX_ADDRESS: usize = 254;
/// Addresses of one `email` target.
pub const MAX_ADDRESSES: usize = 20;
/// Longest subject, in characters.
const MAX_SUBJECT: usize = 200;
/// Longest one attempt may take (connect, TLS, send).
const SEND_TIMEOUT: Duration = Duration::from_secs(10);

/// The stored body of an email delivery: rendered when the event is enqueued, so every retry
/// sends the same message.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MailBody {
    pub subject: String,
    pub text: String,
}

/// A plain address (`user@example.com`, no display name), or why not.
pub fn parse_address(text: &str) -> Result<Address, String> {
    let shown: String = text.chars().take(60).collect();
    if text.len() > MAX_ADDRESS {
        return Err(format!(
            "the email address is {} bytes; at most {MAX_ADDRESS}",
            text.len()
        ));
    }
    if text.chars().any(|c| c.is_control() || c.is_whitespace()) || text.contains(',') {
        return Err(format!(
            "{shown:?} is not an email address (spaces, commas and control characters are not allowed)"
        ));
    }
    text.parse::<Address>()
        .map_err(|_| format!("{shown:?} is not an email address"))
}

/// The `url` an `email` target is stored with.
pub fn target_url(addresses: &[Address]) -> String {
    let list: Vec<String> = addresses.iter().map(ToString::to_string).collect();
    format!("mailto:{}", list.join(","))
}

/// The addresses of an `email` target's stored `url` (checked again: a stored row that does
/// not parse sends nothing to it).
pub fn target_addresses(url: &str) -> Vec<Address> {
    url.strip_prefix("mailto:")
        .unwrap_or_default()
        .split(',')
        .filter_map(|a| parse_address(a).ok())
        .collect()
}

/// One line: control characters (CR, LF among them) become spaces, at most `MAX_SUBJECT`
/// characters.
fn one_line(text: &str) -> String {
    let mut line: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(MAX_SUBJECT)
        .collect();
    if text.chars().count() > MAX_SUBJECT {
        line.push('…');
    }
    line
}

/// The message of an event: the subject says what happened, the plain-text body repeats it
/// with the link into the web UI.
pub fn render(event: &str, text: &str, url: Option<&str>) -> MailBody {
    let mut body = format!("{text}\n");
    if let Some(url) = url {
        body.push_str(&format!("\n{url}\n"));
    }
    body.push_str(&format!(
        "\n-- \nCove notification ({event}). Your repository's owners choose who gets these.\n"
    ));
    MailBody {
        subject: format!("[Cove] {}", one_line(text)),
        text: body,
    }
}

/// Sends one delivery's message to `to`. `Ok(code)`: the SMTP server's reply code (250);
/// `Err((code, error))`: the reply code when the server answered, and why (no credential in
/// it).
pub async fn send(
    smtp: Option<&SmtpSettings>,
    to: &[Address],
    delivery_id: i64,
    body: &str,
) -> Result<u16, (Option<u16>, String)> {
    let Some(smtp) = smtp else {
        return Err((
            None,
            "no SMTP server is configured ([notify.smtp])".to_string(),
        ));
    };
    if to.is_empty() {
        return Err((None, "no email address to send to".to_string()));
    }
    let mail: MailBody = serde_json::from_str(body)
        .map_err(|e| (None, format!("the stored message cannot be read: {e}")))?;
    let mut builder = Message::builder()
        .from(smtp.from.clone())
        .subject(mail.subject)
        .message_id(Some(format!("<{delivery_id}.notify@cove>")))
        .header(ContentType::TEXT_PLAIN);
    for address in to {
        builder = builder.to(Mailbox::new(None, address.clone()));
    }
    let message = builder
        .body(mail.text)
        .map_err(|e| (None, format!("cannot build the message: {e}")))?;
    let transport = transport(smtp).map_err(|e| (None, e))?;
    match tokio::time::timeout(SEND_TIMEOUT, transport.send(message)).await {
        Err(_) => Err((None, "timed out".to_string())),
        Ok(Ok(response)) => Ok(u16::from(response.code())),
        Ok(Err(e)) => Err((e.status().map(u16::from), describe(&e))),
    }
}

fn transport(smtp: &SmtpSettings) -> Result<AsyncSmtpTransport<Tokio1Executor>, String> {
    let tls = |host: &str| {
        TlsParameters::new(host.to_string())
            .map_err(|e| format!("cannot set up TLS for the SMTP server: {e}"))
    };
    let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&smtp.host)
        .port(smtp.port)
        .timeout(Some(SEND_TIMEOUT));
    builder = match smtp.tls {
        SmtpTls::None => builder.tls(Tls::None),
        SmtpTls::StartTls => builder.tls(Tls::Required(tls(&smtp.host)?)),
        SmtpTls::Tls => builder.tls(Tls::Wrapper(tls(&smtp.host)?)),
    };
    if let Some((user, password)) = &smtp.credentials {
        builder = builder.credentials(Credentials::new(user.clone(), password.clone()));
    }
    Ok(builder.build())
}

/// An SMTP error for the delivery log: lettre's description with its causes (the server's
/// reply, the connection error); it never holds the password.
fn describe(e: &lettre::transport::smtp::Error) -> String {
    let mut text = if e.is_transient() || e.is_permanent() {
        format!("SMTP server refused: {e}")
    } else if e.is_timeout() {
        "timed out".to_string()
    } else {
        format!("SMTP failed: {e}")
    };
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text.push_str(&format!(": {s}"));
        source = s.source();
    }
    text.chars().take(500).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_checked() {
        assert!(parse_address("ann@example.com").is_ok());
        for bad in [
            "ann",
            "ann@",
            "Ann <ann@example.com>",
            "ann@example.com\r\nBcc: eve@example.com",
            "ann@example.com,eve@example.com",
            "a b@example.com",
            "",
        ] {
            assert!(parse_address(bad).is_err(), "{bad:?}");
        }
        assert!(parse_address(&format!("{}@example.com", "a".repeat(300))).is_err());
        let list = [
            parse_address("a@example.com").unwrap(),
            parse_address("b@example.org").unwrap(),
        ];
        let url = target_url(&list);
        assert_eq!(url, "mailto:a@example.com,b@example.org");
        assert_eq!(target_addresses(&url), list.to_vec());
    }

    #[test]
    fn the_subject_is_one_line() {
        let m = render(
            "pr_opened",
            "admin/app: #1 Fix\r\nBcc: eve@example.com opened",
            Some("https://cove.example/#/runs/1"),
        );
        assert_eq!(
            m.subject,
            "[Cove] admin/app: #1 Fix  Bcc: eve@example.com opened"
        );
        assert!(m.text.contains("\nhttps://cove.example/#/runs/1\n"));
        let long = render("ping", &"x".repeat(500), None);
        assert!(long.subject.chars().count() <= MAX_SUBJECT + 8);
    }
}
