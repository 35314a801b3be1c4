//! A NIP-57 zapper the tests run, since core LNbits has no zaps: a lightning address
//! (LUD-16) with `allowsNostr` and a `nostrPubkey`, whose callback makes real invoices on an
//! LNbits wallet (description hash = SHA-256 of the zap request) and which publishes a signed
//! zap receipt with the preimage once LNbits reports the invoice paid. It stands in for a
//! wallet's zap service; the money moves through LNbits for real.

use std::time::Duration;

use nostr_dvm::nostr::{Event, JsonUtil, Keys, Kind, Timestamp};
use nostr_dvm::runtime::nostr_sdk::Client;
use nostr_dvm::testing::{TestInvoice, TestLightningNode, TestZapper};
use rand::rngs::OsRng;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::lnbits::{Lnbits, LnbitsTestWallet};

/// The name part of the zapper's lightning address.
const NAME: &str = "dvm";

/// A running zapper.
pub struct LnbitsZapper {
    /// Its lightning address, `dvm@127.0.0.1:PORT`.
    pub address: String,
    /// The key that signs its receipts (its `nostrPubkey`).
    pub keys: Keys,
}

/// What each connection needs.
#[derive(Clone)]
struct Service {
    lnbits: &'static Lnbits,
    wallet: LnbitsTestWallet,
    keys: Keys,
    port: u16,
}

impl LnbitsZapper {
    /// Starts a zapper on 127.0.0.1 that invoices to `wallet` and publishes receipts to the
    /// relays each zap request names.
    pub async fn start(lnbits: &'static Lnbits, wallet: LnbitsTestWallet) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("a free port");
        let port = listener.local_addr().expect("bound").port();
        let keys = Keys::generate();
        let service = Service {
            lnbits,
            wallet,
            keys: keys.clone(),
            port,
        };
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(serve(service.clone(), stream));
            }
        });
        Self {
            address: format!("{NAME}@127.0.0.1:{port}"),
            keys,
        }
    }
}

/// Answers one HTTP GET.
async fn serve(service: Service, mut stream: TcpStream) {
    let mut request = Vec::new();
    let mut buffer = [0u8; 4096];
    while !request.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut buffer).await {
            Ok(0) | Err(_) => return,
            Ok(n) => request.extend_from_slice(&buffer[..n]),
        }
    }
    let text = String::from_utf8_lossy(&request);
    let target = text.split_whitespace().nth(1).unwrap_or("/").to_owned();
    let (path, query) = target.split_once('?').unwrap_or((&target, ""));
    let (status, body) = match path {
        p if p == format!("/.well-known/lnurlp/{NAME}") => (200, service.pay_request()),
        "/callback" => match service.callback(query).await {
            Ok(body) => (200, body),
            Err(reason) => (200, json!({ "status": "ERROR", "reason": reason })),
        },
        _ => (404, json!({ "status": "ERROR", "reason": "not found" })),
    };
    let body = body.to_string();
    let response = format!(
        "HTTP/1.1 {status} OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.write_all(response.as_bytes()).await;
    let _ = stream.shutdown().await;
}

impl Service {
    /// LUD-06's first answer, with NIP-57's fields.
    fn pay_request(&self) -> Value {
        json!({
            "tag": "payRequest",
            "callback": format!("http://127.0.0.1:{}/callback", self.port),
            "minSendable": 1_000,
            "maxSendable": 100_000_000,
            "metadata": json!([["text/plain", "zaps for a test DVM"]]).to_string(),
            "allowsNostr": true,
            "nostrPubkey": self.keys.public_key().to_hex(),
        })
    }

    /// NIP-57 Appendix D: checks the zap request, invoices it on LNbits, and watches the
    /// invoice to publish the receipt.
    async fn callback(&self, query: &str) -> Result<Value, String> {
        let param = |name: &str| {
            query
                .split('&')
                .filter_map(|pair| pair.split_once('='))
                .find(|(key, _)| *key == name)
                .map(|(_, value)| percent_decode(value))
        };
        let amount_msat: u64 = param("amount")
            .and_then(|a| a.parse().ok())
            .ok_or("no amount")?;
        let json = param("nostr").ok_or("no zap request")?;
        let zap_request = Event::from_json(&json).map_err(|e| e.to_string())?;
        if zap_request.kind != Kind::from(9734) || zap_request.verify().is_err() {
            return Err("not a signed zap request".into());
        }
        if !amount_msat.is_multiple_of(1000) {
            return Err("whole sats only".into());
        }
        let (bolt11, hash) = self
            .lnbits
            .invoice_for_description(&self.wallet, amount_msat / 1000, json.as_bytes())
            .await;
        tokio::spawn(
            self.clone()
                .publish_when_paid(zap_request, bolt11.clone(), hash),
        );
        Ok(json!({ "pr": bolt11, "routes": [] }))
    }

    /// Waits (up to a minute) for the invoice to be paid, then publishes the receipt.
    async fn publish_when_paid(self, zap_request: Event, bolt11: String, hash: String) {
        for _ in 0..300 {
            let status = self.lnbits.payment(&self.wallet, &hash).await;
            if let Some(preimage) = status["preimage"]
                .as_str()
                .filter(|_| status["paid"] == true)
            {
                let preimage: [u8; 32] = hex::decode(preimage)
                    .ok()
                    .and_then(|p| p.try_into().ok())
                    .expect("LNbits's preimage");
                let invoice = TestInvoice {
                    bolt11,
                    preimage,
                    payment_hash: hex::decode(&hash)
                        .ok()
                        .and_then(|h| h.try_into().ok())
                        .expect("a payment hash"),
                };
                let zapper = TestZapper::new(self.keys.clone(), TestLightningNode::new(1));
                let receipt = zapper.receipt(&zap_request, &invoice, Timestamp::now(), &mut OsRng);
                publish(&zap_request, &receipt).await;
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// Publishes `receipt` to the relays of `zap_request`.
async fn publish(zap_request: &Event, receipt: &Event) {
    let client = Client::default();
    let relays = zap_request
        .tags
        .iter()
        .find(|t| t.as_slice().first().map(String::as_str) == Some("relays"))
        .map(|t| t.as_slice()[1..].to_vec())
        .unwrap_or_default();
    for relay in &relays {
        let _ = client.add_relay(relay.as_str()).await;
    }
    client.connect().await;
    client.wait_for_connection(Duration::from_secs(5)).await;
    client
        .send_event(receipt)
        .await
        .expect("the receipt is published");
    client.disconnect().await;
}

/// Decodes `application/x-www-form-urlencoded` text.
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(byte) => {
                        out.push(byte);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            byte => out.push(byte),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}
