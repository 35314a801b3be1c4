//! An in-process relay on 127.0.0.1 with Nagle's algorithm off, and the WebSocket handshake it
//! needs. Shared by the examples, the runtime tests (`tests/support`) and the runtime bench,
//! which include this file by path.

use std::net::SocketAddr;

use base64::Engine as _;
use nostr_dvm::nostr::hashes::{sha1, Hash as _};
use nostr_relay_builder::LocalRelay;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// What can go wrong while serving one connection.
pub type ConnectionError = Box<dyn std::error::Error + Send + Sync>;

/// Serves `relay` on 127.0.0.1 and returns its `ws://` URL. It accepts the TCP connections
/// itself so it can turn Nagle off (`LocalRelay::run` leaves it on, which adds ~40 ms to a
/// reply that follows another).
pub async fn serve(relay: LocalRelay) -> std::io::Result<String> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((stream, peer)) = listener.accept().await {
            let relay = relay.clone();
            tokio::spawn(async move {
                if let Err(e) = connection(relay, stream, peer).await {
                    eprintln!("relay connection from {peer}: {e}");
                }
            });
        }
    });
    Ok(format!("ws://{addr}"))
}

async fn connection(
    relay: LocalRelay,
    mut stream: TcpStream,
    peer: SocketAddr,
) -> Result<(), ConnectionError> {
    accept_websocket(&mut stream).await?;
    relay
        .take_connection(stream, peer)
        .await
        .map_err(|e| e.to_string())?;
    Ok(())
}

/// The server side of the WebSocket opening handshake (RFC 6455 §4.2), on a stream with
/// Nagle off. Reads the upgrade request byte by byte, so nothing after it is consumed.
pub async fn accept_websocket(stream: &mut TcpStream) -> Result<(), ConnectionError> {
    stream.set_nodelay(true)?;
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if stream.read(&mut byte).await? == 0 || head.len() > 16 * 1024 {
            return Err("bad HTTP upgrade request".into());
        }
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head);
    let key = head
        .lines()
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("sec-websocket-key"))
        .map(|(_, v)| v.trim().to_owned())
        .ok_or("no Sec-WebSocket-Key")?;
    let digest = sha1::Hash::hash(format!("{key}258EAFA5-E914-47DA-95CA-C5AB0DC85B11").as_bytes());
    let accept = base64::engine::general_purpose::STANDARD.encode(digest.to_byte_array());
    let response = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n"
    );
    stream.write_all(response.as_bytes()).await?;
    Ok(())
}
