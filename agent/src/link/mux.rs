//! The byte streams of a link, the same on both ends: a table of open streams, credit-based
//! back-pressure (a sender has at most [`STREAM_WINDOW_BYTES`] unacknowledged bytes in flight
//! per stream; the receiver grants credit as its reader consumes them), and the outbound
//! queue every frame goes through.
//!
//! Memory is bounded per stream: a peer that sends past its window loses the stream.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use cove_api::agent::link::{
    encode_data, DataKind, LinkFrame, MAX_CHUNK_BYTES, MAX_STREAMS, STREAM_WINDOW_BYTES,
};
use tokio::sync::{mpsc, Semaphore};
use tokio_util::sync::CancellationToken;

/// A message to write on the link.
#[derive(Debug)]
pub enum Out {
    Frame(LinkFrame),
    /// An encoded data message ([`encode_data`]).
    Data(Vec<u8>),
}

/// The queue of the link's writer.
pub type OutTx = mpsc::Sender<Out>;

/// Frames written per link before senders wait.
pub const OUT_QUEUE: usize = 256;

/// What arrives for one stream.
#[derive(Debug)]
pub enum Inbound {
    Data(DataKind, Vec<u8>),
    Resize(u16, u16),
    Eof,
    Exit(i64),
}

struct Entry {
    inbound: mpsc::UnboundedSender<Inbound>,
    /// Bytes received and not yet granted back.
    in_flight: Arc<AtomicU32>,
    /// Credit for what this end sends.
    credit: Arc<Semaphore>,
    cancel: CancellationToken,
    opened: Option<tokio::sync::oneshot::Sender<Option<String>>>,
}

/// One end's half of a stream.
pub struct StreamParts {
    pub id: u64,
    pub inbound: mpsc::UnboundedReceiver<Inbound>,
    pub in_flight: Arc<AtomicU32>,
    pub credit: Arc<Semaphore>,
    /// Cancelled when the peer closes the stream or the link ends.
    pub cancel: CancellationToken,
    /// Server side: the agent's `Opened` answer.
    pub opened: Option<tokio::sync::oneshot::Receiver<Option<String>>>,
}

/// The open streams of one link.
#[derive(Default)]
pub struct Streams {
    map: Mutex<HashMap<u64, Entry>>,
}

impl Streams {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Entry>> {
        match self.map.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    /// Registers stream `id`; `Err` when too many are open or the id is taken.
    pub fn insert(&self, id: u64, want_opened: bool) -> Result<StreamParts, String> {
        let mut map = self.lock();
        if map.len() >= MAX_STREAMS {
            return Err(format!(
                "more than {MAX_STREAMS} streams are open on this link"
            ));
        }
        if map.contains_key(&id) {
            return Err(format!("stream {id} is already open"));
        }
        let (tx, rx) = mpsc::unbounded_channel();
        let (otx, orx) = if want_opened {
            let (a, b) = tokio::sync::oneshot::channel();
            (Some(a), Some(b))
        } else {
            (None, None)
        };
        let in_flight = Arc::new(AtomicU32::new(0));
        let credit = Arc::new(Semaphore::new(STREAM_WINDOW_BYTES as usize));
        let cancel = CancellationToken::new();
        map.insert(
            id,
            Entry {
                inbound: tx,
                in_flight: in_flight.clone(),
                credit: credit.clone(),
                cancel: cancel.clone(),
                opened: otx,
            },
        );
        Ok(StreamParts {
            id,
            inbound: rx,
            in_flight,
            credit,
            cancel,
            opened: orx,
        })
    }

    /// Forgets stream `id` and cancels its tasks.
    pub fn remove(&self, id: u64) {
        if let Some(e) = self.lock().remove(&id) {
            e.cancel.cancel();
        }
    }

    /// The link ended: every stream ends.
    pub fn close_all(&self) {
        for (_, e) in self.lock().drain() {
            e.cancel.cancel();
        }
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Data for stream `id`. `false` when the peer overran its window (the stream is
    /// removed; the caller tells the peer with `Close`). Data for an unknown stream is
    /// dropped (it raced a close).
    pub fn on_data(&self, id: u64, kind: DataKind, bytes: &[u8]) -> bool {
        let mut map = self.lock();
        let Some(e) = map.get(&id) else { return true };
        let n = u32::try_from(bytes.len()).unwrap_or(u32::MAX);
        let before = e.in_flight.fetch_add(n, Ordering::AcqRel);
        if before.saturating_add(n) > STREAM_WINDOW_BYTES {
            if let Some(e) = map.remove(&id) {
                e.cancel.cancel();
            }
            return false;
        }
        let _ = e.inbound.send(Inbound::Data(kind, bytes.to_vec()));
        true
    }

    /// Something other than data for stream `id` (dropped when it is unknown).
    pub fn on_inbound(&self, id: u64, what: Inbound) {
        if let Some(e) = self.lock().get(&id) {
            let _ = e.inbound.send(what);
        }
    }

    /// The peer consumed `bytes` of what this end sent.
    pub fn on_credit(&self, id: u64, bytes: u32) {
        if let Some(e) = self.lock().get(&id) {
            // never more than a window outstanding, whatever the peer claims
            let room = (STREAM_WINDOW_BYTES as usize).saturating_sub(e.credit.available_permits());
            e.credit.add_permits((bytes as usize).min(room));
        }
    }

    /// The agent's answer to `Open`.
    pub fn on_opened(&self, id: u64, error: Option<String>) {
        if let Some(tx) = self.lock().get_mut(&id).and_then(|e| e.opened.take()) {
            let _ = tx.send(error);
        }
    }
}

/// Sends `bytes` on `stream` as data messages of at most [`MAX_CHUNK_BYTES`], each after
/// taking its credit. `false` when the stream or the link ended.
pub async fn send_data(
    out: &OutTx,
    credit: &Semaphore,
    cancel: &CancellationToken,
    stream: u64,
    kind: DataKind,
    bytes: &[u8],
) -> bool {
    for chunk in bytes.chunks(MAX_CHUNK_BYTES) {
        let n = u32::try_from(chunk.len()).unwrap_or(u32::MAX);
        let permit = tokio::select! {
            p = credit.acquire_many(n) => p,
            () = cancel.cancelled() => return false,
        };
        match permit {
            Ok(p) => p.forget(),
            Err(_) => return false,
        }
        if out
            .send(Out::Data(encode_data(stream, kind, chunk)))
            .await
            .is_err()
        {
            return false;
        }
    }
    true
}

/// Moves a stream's inbound items to its reader through `deliver` (which waits while the
/// reader is full), granting credit for data once delivered. Ends when the stream ends, the
/// link ends, or `deliver` says the reader is gone (then the peer is told with `Close`).
pub async fn forward_inbound<F, Fut>(mut parts: StreamParts, out: OutTx, mut deliver: F)
where
    F: FnMut(Inbound) -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    loop {
        let item = tokio::select! {
            item = parts.inbound.recv() => item,
            () = parts.cancel.cancelled() => None,
        };
        let Some(item) = item else { return };
        let n = match &item {
            Inbound::Data(_, b) => u32::try_from(b.len()).unwrap_or(u32::MAX),
            _ => 0,
        };
        let exit = matches!(item, Inbound::Exit(_));
        if !deliver(item).await {
            let _ = out
                .send(Out::Frame(LinkFrame::Close { stream: parts.id }))
                .await;
            parts.cancel.cancel();
            return;
        }
        if n > 0 {
            parts.in_flight.fetch_sub(n, Ordering::AcqRel);
            let _ = out
                .send(Out::Frame(LinkFrame::Credit {
                    stream: parts.id,
                    bytes: n,
                }))
                .await;
        }
        if exit {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_peer_past_its_window_loses_the_stream() {
        let s = Streams::default();
        let parts = s.insert(1, false).unwrap();
        let chunk = vec![0u8; MAX_CHUNK_BYTES];
        for _ in 0..(STREAM_WINDOW_BYTES as usize / MAX_CHUNK_BYTES) {
            assert!(s.on_data(1, DataKind::Stdout, &chunk));
        }
        assert!(!s.on_data(1, DataKind::Stdout, b"x"));
        assert!(parts.cancel.is_cancelled());
        assert!(s.is_empty());
    }

    #[tokio::test]
    async fn credit_stops_the_sender_until_the_reader_consumes() {
        let s = Arc::new(Streams::default());
        let parts = s.insert(5, false).unwrap();
        let (out, mut out_rx) = mpsc::channel(OUT_QUEUE);
        let credit = parts.credit.clone();
        let cancel = parts.cancel.clone();
        let big = vec![7u8; STREAM_WINDOW_BYTES as usize + MAX_CHUNK_BYTES];
        let sender = tokio::spawn({
            let out = out.clone();
            async move { send_data(&out, &credit, &cancel, 5, DataKind::Stdout, &big).await }
        });
        // the whole window goes out, then the sender waits
        let mut sent = 0;
        while sent < STREAM_WINDOW_BYTES as usize {
            match out_rx.recv().await.unwrap() {
                Out::Data(m) => sent += m.len() - 9,
                Out::Frame(f) => panic!("unexpected {f:?}"),
            }
        }
        tokio::task::yield_now().await;
        assert!(out_rx.try_recv().is_err(), "sent past the window");
        assert!(!sender.is_finished());
        s.on_credit(5, MAX_CHUNK_BYTES as u32);
        match out_rx.recv().await.unwrap() {
            Out::Data(m) => assert_eq!(m.len() - 9, MAX_CHUNK_BYTES),
            Out::Frame(f) => panic!("unexpected {f:?}"),
        }
        assert!(sender.await.unwrap());
    }
}
