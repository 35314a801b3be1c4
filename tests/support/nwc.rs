//! A real NIP-47 wallet service for the tests: Alby's `NWCWalletService` (npm `@getalby/sdk`,
//! `tests/support/nwc/service.mjs`) over a wallet of the test LNbits, one node process per
//! connection, on a relay the test names.
//!
//! The first use installs the npm packages (`package-lock.json`) into the real-parts cache
//! (`npm ci`, once, under a file lock). Nothing is skipped: without node and npm, or the npm
//! registry, the first test that needs the service fails and says so. The service sends no
//! NIP-47 notifications: payments are found by `lookup_invoice`.

use std::fs;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use nostr_dvm::nostr::Keys;
use nostr_dvm::runtime::NwcWallet;

use super::lnbits::{log_file, realparts_dir, tail, watchdog, Lnbits, LnbitsTestWallet};

/// The `@getalby/sdk` release the service runs (with `package-lock.json`).
pub const SDK_VERSION: &str = "8.0.3";
/// How long the service may take to say it is ready.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// A running wallet service and the connection URI a client uses. Stopped when dropped.
pub struct NwcService {
    child: Child,
    /// `nostr+walletconnect://<wallet key>?relay=..&secret=..`
    pub uri: String,
    /// The wallet service's key and the client's secret (hex), for [`uri_on`](Self::uri_on).
    wallet_key: String,
    client_secret: String,
}

impl Drop for NwcService {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl NwcService {
    /// A service on `relay` spending from and invoicing into `wallet`, that lets the
    /// connection spend `budget_msat` in all (0: no budget). Panics, saying what is missing,
    /// when it cannot run.
    pub async fn start(relay: &str, wallet: &LnbitsTestWallet, budget_msat: u64) -> Self {
        Self::spawn(relay, wallet, budget_msat, "up").await
    }

    /// The connection URI, naming `relay` instead of the service's (a proxy in front of it).
    pub fn uri_on(&self, relay: &str) -> String {
        connection_uri(&self.wallet_key, relay, &self.client_secret)
    }

    /// A service like [`start`](Self::start)'s with no budget, whose `make_invoice` rounds
    /// msat down to whole sats, as a careless wallet would.
    pub async fn start_rounding_down(relay: &str, wallet: &LnbitsTestWallet) -> Self {
        Self::spawn(relay, wallet, 0, "down").await
    }

    async fn spawn(
        relay: &str,
        wallet: &LnbitsTestWallet,
        budget_msat: u64,
        rounding: &str,
    ) -> Self {
        let (relay, wallet, rounding) = (relay.to_owned(), wallet.clone(), rounding.to_owned());
        let service =
            tokio::task::spawn_blocking(move || start(&relay, &wallet, budget_msat, &rounding))
                .await
                .expect("the start thread")
                .unwrap_or_else(|e| panic!("the NWC wallet service cannot run: {e}"));
        // It says it is ready once it sent its subscription, which the relay may not have
        // taken yet: it is ready when it answers.
        let probe = NwcWallet::with_timeout(&service.uri, Duration::from_secs(2)).unwrap();
        let mut tries = 0;
        while let Err(e) = probe.methods().await {
            tries += 1;
            assert!(tries < 15, "the NWC wallet service does not answer: {e}");
        }
        service
    }
}

fn start(
    relay: &str,
    wallet: &LnbitsTestWallet,
    budget_msat: u64,
    rounding: &str,
) -> Result<NwcService, String> {
    let dir = install()?;
    let service_keys = Keys::generate();
    let client_keys = Keys::generate();
    let log = dir.join(format!("service-{}.log", client_keys.public_key().to_hex()));
    let mut child = Command::new("node")
        .arg(dir.join("service.mjs"))
        .args([
            relay,
            Lnbits::shared().url(),
            &wallet.admin_key,
            &wallet.invoice_key,
            &service_keys.secret_key().to_secret_hex(),
            &client_keys.public_key().to_hex(),
            &budget_msat.to_string(),
            rounding,
        ])
        .current_dir(&dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(log_file(&log)?)
        .spawn()
        .map_err(|e| format!("cannot run node (install Node.js 20 and npm): {e}"))?;
    watchdog(&child, None)?;
    let stdout = child.stdout.take().ok_or("no stdout")?;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(key) = line.strip_prefix("ready ") {
                let _ = tx.send(key.trim().to_owned());
            }
        }
    });
    let ready = rx.recv_timeout(START_TIMEOUT).map_err(|_| {
        let _ = child.kill();
        format!("the service did not get ready:\n{}", tail(&log))
    })?;
    if ready != service_keys.public_key().to_hex() {
        return Err(format!("the service runs under another key: {ready}"));
    }
    let client_secret = client_keys.secret_key().to_secret_hex();
    let uri = connection_uri(&ready, relay, &client_secret);
    Ok(NwcService {
        child,
        uri,
        wallet_key: ready,
        client_secret,
    })
}

/// A connection URI to the wallet `wallet_key` on `relay` with the client secret `secret`.
fn connection_uri(wallet_key: &str, relay: &str, secret: &str) -> String {
    let relay_param: String = relay
        .bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect();
    format!("nostr+walletconnect://{wallet_key}?relay={relay_param}&secret={secret}")
}

/// The folder with the service and its npm packages, installed (under a file lock) when
/// missing.
fn install() -> Result<PathBuf, String> {
    let dir = realparts_dir().join(format!("nwc-getalby-sdk-{SDK_VERSION}"));
    fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/nwc");
    // The script is copied each time (atomically): an edit takes effect at once.
    let script = fs::read(source.join("service.mjs")).map_err(|e| e.to_string())?;
    let temporary = dir.join(format!("service.mjs.{}", std::process::id()));
    fs::write(&temporary, script).map_err(|e| e.to_string())?;
    fs::rename(&temporary, dir.join("service.mjs")).map_err(|e| e.to_string())?;
    if dir.join("installed").exists() {
        return Ok(dir);
    }
    for file in ["package.json", "package-lock.json"] {
        fs::copy(source.join(file), dir.join(file)).map_err(|e| format!("{file}: {e}"))?;
    }
    let log = dir.join("install.log");
    eprintln!(
        "installing @getalby/sdk {SDK_VERSION} into {} (once)",
        dir.display()
    );
    let status = Command::new("flock")
        .arg(dir.join(".lock"))
        .args([
            "sh",
            "-c",
            "test -f installed && exit 0; npm ci --no-audit --no-fund && touch installed",
        ])
        .current_dir(&dir)
        .stdout(log_file(&log)?)
        .stderr(log_file(&log)?)
        .status()
        .map_err(|e| format!("cannot run flock and sh to install the npm packages: {e}"))?;
    if !status.success() {
        return Err(format!(
            "npm ci failed ({status}): it needs node and npm, and the npm registry; see {}:\n{}",
            log.display(),
            tail(&log)
        ));
    }
    Ok(dir)
}
