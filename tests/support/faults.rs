//! Relays that fail on purpose: a TCP proxy that can cut every connection and refuse new ones
//! (a relay that drops, or a network that goes away), and a WebSocket server that answers
//! every subscription with garbage.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use nostr_dvm::nostr::{EventBuilder, Keys, Kind};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::AbortHandle;

use super::local_relay::{accept_websocket, ConnectionError};

/// A TCP proxy in front of a relay. While it is [`cut`](Self::cut), every connection through
/// it is closed and new ones are closed as soon as they are accepted.
pub struct Proxy {
    url: String,
    up: Arc<AtomicBool>,
    connections: Arc<Mutex<Vec<AbortHandle>>>,
    accepted: Arc<AtomicUsize>,
}

impl Proxy {
    /// A proxy on 127.0.0.1 for the relay at `target` (a `ws://127.0.0.1:port` URL).
    pub async fn start(target: &str) -> Self {
        let target: SocketAddr = target
            .trim_start_matches("ws://")
            .trim_end_matches('/')
            .parse()
            .expect("a ws://ip:port relay URL");
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("ws://{}", listener.local_addr().unwrap());
        let up = Arc::new(AtomicBool::new(true));
        let connections: Arc<Mutex<Vec<AbortHandle>>> = Arc::default();
        let accepted = Arc::new(AtomicUsize::new(0));
        let (up2, connections2, accepted2) = (up.clone(), connections.clone(), accepted.clone());
        tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                if !up2.load(Ordering::SeqCst) {
                    drop(inbound);
                    continue;
                }
                accepted2.fetch_add(1, Ordering::SeqCst);
                let task = tokio::spawn(async move {
                    if let Ok(mut outbound) = TcpStream::connect(target).await {
                        let _ = inbound.set_nodelay(true);
                        let _ = outbound.set_nodelay(true);
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
                connections2.lock().unwrap().push(task.abort_handle());
            }
        });
        Self {
            url,
            up,
            connections,
            accepted,
        }
    }

    /// The URL to connect to instead of the relay's.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Closes every connection through the proxy and refuses new ones until
    /// [`restore`](Self::restore).
    pub fn cut(&self) {
        self.up.store(false, Ordering::SeqCst);
        for connection in self.connections.lock().unwrap().drain(..) {
            connection.abort();
        }
    }

    /// Lets connections through again.
    pub fn restore(&self) {
        self.up.store(true, Ordering::SeqCst);
    }

    /// How many connections it let through so far.
    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

/// A "relay" that speaks WebSocket and nothing else well: every `REQ` gets malformed JSON,
/// events that are not events, an event whose signature does not match and a `CLOSED`; every
/// second `REQ` on a connection also gets a frame with a reserved opcode, which makes the
/// client drop the connection (not on a [`steady`](Self::steady) one). Every `EVENT` gets
/// `OK false`.
pub struct GarbageRelay {
    url: String,
    requests: Arc<AtomicUsize>,
    garbage: Arc<AtomicUsize>,
}

impl GarbageRelay {
    /// Starts it on 127.0.0.1.
    pub async fn start() -> Self {
        Self::start_dropping(true).await
    }

    /// Starts one that never drops a connection (garbage only).
    pub async fn steady() -> Self {
        Self::start_dropping(false).await
    }

    async fn start_dropping(drops: bool) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("ws://{}", listener.local_addr().unwrap());
        let requests = Arc::new(AtomicUsize::new(0));
        let garbage = Arc::new(AtomicUsize::new(0));
        let (requests2, garbage2) = (requests.clone(), garbage.clone());
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (requests, garbage) = (requests2.clone(), garbage2.clone());
                tokio::spawn(async move {
                    let _ = serve_garbage(stream, requests, garbage, drops).await;
                });
            }
        });
        Self {
            url,
            requests,
            garbage,
        }
    }

    /// Its URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// How many `REQ`s it was sent.
    pub fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }

    /// How many garbage messages it sent.
    pub fn garbage(&self) -> usize {
        self.garbage.load(Ordering::SeqCst)
    }
}

async fn serve_garbage(
    mut stream: TcpStream,
    requests: Arc<AtomicUsize>,
    garbage: Arc<AtomicUsize>,
    drops: bool,
) -> Result<(), ConnectionError> {
    accept_websocket(&mut stream).await?;
    let forger = Keys::generate();
    loop {
        let Some(text) = read_text_frame(&mut stream).await? else {
            return Ok(());
        };
        let Ok(Value::Array(message)) = serde_json::from_str::<Value>(&text) else {
            continue;
        };
        match message.first().and_then(Value::as_str) {
            Some("REQ") => {
                let n = requests.fetch_add(1, Ordering::SeqCst) + 1;
                let sub = message.get(1).cloned().unwrap_or(Value::Null);
                let signed = EventBuilder::new(Kind::from(6050), "a result nobody asked for")
                    .sign_with_keys(&forger)?;
                let mut forged = serde_json::to_value(&signed)?;
                forged["content"] = json!("edited after signing");
                let replies = [
                    "this is not json".to_owned(),
                    "[\"EVENT\"]".to_owned(),
                    json!(["EVENT", sub, {"id": "00", "kind": "x"}]).to_string(),
                    json!(["EVENT", sub, forged]).to_string(),
                    json!(["EVENT", sub, 42, [], null]).to_string(),
                    json!(["NOTICE", "\u{0}\u{1}garbage"]).to_string(),
                    json!(["OK", "zz", "maybe"]).to_string(),
                    json!(["CLOSED", sub, "error: garbage relay"]).to_string(),
                ];
                for reply in replies {
                    write_frame(&mut stream, 0x1, reply.as_bytes()).await?;
                    garbage.fetch_add(1, Ordering::SeqCst);
                }
                if drops && n.is_multiple_of(2) {
                    write_frame(&mut stream, 0x3, b"reserved opcode").await?;
                    garbage.fetch_add(1, Ordering::SeqCst);
                    return Ok(());
                }
            }
            Some("EVENT") => {
                let id = message
                    .get(1)
                    .and_then(|e| e.get("id"))
                    .cloned()
                    .unwrap_or(Value::Null);
                let reply = json!(["OK", id, false, "blocked: garbage relay"]).to_string();
                write_frame(&mut stream, 0x1, reply.as_bytes()).await?;
            }
            _ => {}
        }
    }
}

/// Reads client frames until a whole text message (`None` on close). Client frames are
/// masked; fragmented messages and control frames other than close are skipped.
async fn read_text_frame(stream: &mut TcpStream) -> Result<Option<String>, ConnectionError> {
    loop {
        let mut head = [0u8; 2];
        if stream.read_exact(&mut head).await.is_err() {
            return Ok(None);
        }
        let opcode = head[0] & 0x0f;
        let len = match head[1] & 0x7f {
            126 => u64::from(stream.read_u16().await?),
            127 => stream.read_u64().await?,
            n => u64::from(n),
        };
        if len > 1 << 24 {
            return Err("frame too large".into());
        }
        let mut mask = [0u8; 4];
        if head[1] & 0x80 != 0 {
            stream.read_exact(&mut mask).await?;
        }
        let mut payload = vec![0u8; len as usize];
        stream.read_exact(&mut payload).await?;
        for (i, b) in payload.iter_mut().enumerate() {
            *b ^= mask[i % 4];
        }
        match opcode {
            0x8 => return Ok(None),
            0x1 => return Ok(Some(String::from_utf8(payload)?)),
            _ => continue,
        }
    }
}

/// Writes one unmasked server frame.
async fn write_frame(
    stream: &mut TcpStream,
    opcode: u8,
    payload: &[u8],
) -> Result<(), ConnectionError> {
    let mut frame = vec![0x80 | opcode];
    match payload.len() {
        n if n < 126 => frame.push(n as u8),
        n if n <= usize::from(u16::MAX) => {
            frame.push(126);
            frame.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            frame.push(127);
            frame.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    frame.extend_from_slice(payload);
    stream.write_all(&frame).await?;
    Ok(())
}

/// A relay that takes connections and messages and never answers anything: no `EOSE`, no
/// `OK`, no events.
pub struct SilentRelay {
    url: String,
    events: Arc<AtomicUsize>,
}

impl SilentRelay {
    /// Starts it on 127.0.0.1.
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("ws://{}", listener.local_addr().unwrap());
        let events = Arc::new(AtomicUsize::new(0));
        let counter = events.clone();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let counter = counter.clone();
                tokio::spawn(async move {
                    accept_websocket(&mut stream).await?;
                    while let Some(text) = read_text_frame(&mut stream).await? {
                        if text.starts_with("[\"EVENT\"") {
                            counter.fetch_add(1, Ordering::SeqCst);
                        }
                    }
                    Ok::<(), ConnectionError>(())
                });
            }
        });
        Self { url, events }
    }

    /// Its URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// How many `EVENT` messages it was sent.
    pub fn events(&self) -> usize {
        self.events.load(Ordering::SeqCst)
    }
}
