//! A real LNbits (PyPI `lnbits` 1.6.2, FakeWallet funding source) on 127.0.0.1, one server
//! per test binary, and the HTTP calls the tests make to it.
//!
//! The first use installs LNbits into a cached venv (`$NOSTR_DVM_REALPARTS_DIR`, or
//! `.realparts/` in the repository; about a minute, once) and starts one uvicorn process on a
//! free port with a fresh data folder. Nothing is skipped: when python3 (with `venv` and
//! `pip`) or PyPI is missing, the first test that needs LNbits fails and says so. A watchdog
//! stops the server when the test process ends.
//!
//! FakeWallet invoices are real mainnet BOLT11 invoices signed by LNbits; payments between
//! two wallets of the same LNbits are internal (no routing fee), so balances move by exactly
//! the amounts paid.

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// The LNbits release the tests run.
pub const VERSION: &str = "1.6.2";
/// How long LNbits may take to answer its health check after start.
const START_TIMEOUT: Duration = Duration::from_secs(90);

/// A running LNbits and its super user's token.
#[derive(Debug)]
pub struct Lnbits {
    url: String,
    port: u16,
    admin_token: String,
}

/// A wallet on the test LNbits, with both its keys.
#[derive(Debug, Clone)]
pub struct LnbitsTestWallet {
    /// The wallet id.
    pub id: String,
    /// The admin key: it spends.
    pub admin_key: String,
    /// The invoice key: it makes invoices and reads their status.
    pub invoice_key: String,
    /// The name part of the wallet's lightning address (`name@host`), when LNbits made one.
    pub lightning_name: Option<String>,
}

impl Lnbits {
    /// The test binary's LNbits, installed and started on first use. Panics, saying what is
    /// missing, when it cannot run.
    pub fn shared() -> &'static Lnbits {
        static SHARED: OnceLock<Result<Lnbits, String>> = OnceLock::new();
        let started = SHARED.get_or_init(|| {
            // Started on a thread of its own: the caller may be inside a tokio runtime.
            std::thread::spawn(|| {
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(|e| e.to_string())?
                    .block_on(start())
            })
            .join()
            .unwrap_or_else(|_| Err("the LNbits starter panicked".into()))
        });
        match started {
            Ok(lnbits) => lnbits,
            Err(why) => panic!("the test LNbits cannot run: {why}"),
        }
    }

    /// Its base URL (`http://127.0.0.1:PORT`).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The `name@127.0.0.1:PORT` lightning address of `name`.
    pub fn address(&self, name: &str) -> String {
        format!("{name}@127.0.0.1:{}", self.port)
    }

    /// A new wallet (an account of its own) named `name`.
    pub async fn wallet(&self, name: &str) -> LnbitsTestWallet {
        let answer = check(
            "create a wallet",
            client()
                .post(format!("{}/api/v1/account", self.url))
                .json(&json!({ "name": name }))
                .send()
                .await,
        )
        .await;
        let text = |field: &str| {
            answer[field]
                .as_str()
                .unwrap_or_else(|| panic!("LNbits wallet without {field}: {answer}"))
                .to_owned()
        };
        LnbitsTestWallet {
            id: text("id"),
            admin_key: text("adminkey"),
            invoice_key: text("inkey"),
            lightning_name: answer["lightning_address"].as_str().map(str::to_owned),
        }
    }

    /// Credits `sats` to `wallet` (the super user's top-up).
    pub async fn fund(&self, wallet: &LnbitsTestWallet, sats: u64) {
        check(
            "fund a wallet",
            client()
                .put(format!("{}/users/api/v1/balance", self.url))
                .bearer_auth(&self.admin_token)
                .json(&json!({ "id": wallet.id, "amount": sats }))
                .send()
                .await,
        )
        .await;
    }

    /// The balance of `wallet`, in millisats.
    pub async fn balance_msat(&self, wallet: &LnbitsTestWallet) -> u64 {
        let answer = check(
            "read a balance",
            client()
                .get(format!("{}/api/v1/wallet", self.url))
                .header("X-Api-Key", &wallet.invoice_key)
                .send()
                .await,
        )
        .await;
        answer["balance"]
            .as_u64()
            .unwrap_or_else(|| panic!("LNbits wallet without a balance: {answer}"))
    }

    /// An invoice of `sats` to `wallet`: its BOLT11 and payment hash (hex).
    pub async fn create_invoice(
        &self,
        wallet: &LnbitsTestWallet,
        sats: u64,
        memo: &str,
    ) -> (String, String) {
        let answer = check(
            "create an invoice",
            client()
                .post(format!("{}/api/v1/payments", self.url))
                .header("X-Api-Key", &wallet.invoice_key)
                .json(&json!({ "out": false, "amount": sats, "memo": memo }))
                .send()
                .await,
        )
        .await;
        let text = |field: &str| answer[field].as_str().unwrap_or_default().to_owned();
        (text("bolt11"), text("payment_hash"))
    }

    /// An invoice of `sats` to `wallet` whose description hash is the SHA-256 of
    /// `description`: its BOLT11 and payment hash (hex).
    pub async fn invoice_for_description(
        &self,
        wallet: &LnbitsTestWallet,
        sats: u64,
        description: &[u8],
    ) -> (String, String) {
        let answer = check(
            "create an invoice for a description hash",
            client()
                .post(format!("{}/api/v1/payments", self.url))
                .header("X-Api-Key", &wallet.invoice_key)
                .json(&json!({
                    "out": false,
                    "amount": sats,
                    "unhashed_description": hex::encode(description),
                }))
                .send()
                .await,
        )
        .await;
        let text = |field: &str| answer[field].as_str().unwrap_or_default().to_owned();
        (text("bolt11"), text("payment_hash"))
    }

    /// Pays `bolt11` from `wallet`.
    pub async fn pay(&self, wallet: &LnbitsTestWallet, bolt11: &str) {
        check(
            "pay an invoice",
            client()
                .post(format!("{}/api/v1/payments", self.url))
                .header("X-Api-Key", &wallet.admin_key)
                .json(&json!({ "out": true, "bolt11": bolt11 }))
                .send()
                .await,
        )
        .await;
    }

    /// What LNbits says of the payment `hash` (hex) seen from `wallet`: `paid`, `preimage`...
    pub async fn payment(&self, wallet: &LnbitsTestWallet, hash: &str) -> Value {
        check(
            "read a payment",
            client()
                .get(format!("{}/api/v1/payments/{hash}", self.url))
                .header("X-Api-Key", &wallet.invoice_key)
                .send()
                .await,
        )
        .await
    }

    /// Whether the payment `hash` (hex) is paid, seen from `wallet`.
    pub async fn is_paid(&self, wallet: &LnbitsTestWallet, hash: &str) -> bool {
        self.payment(wallet, hash).await["paid"] == Value::Bool(true)
    }
}

/// A client for one call: each test has its own tokio runtime, and a pooled connection does
/// not outlive the runtime that opened it.
fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("an HTTP client")
}

/// The JSON answer of a call that must succeed.
async fn check(what: &str, sent: reqwest::Result<reqwest::Response>) -> Value {
    let response = sent.unwrap_or_else(|e| panic!("LNbits: cannot {what}: {e}"));
    let status = response.status();
    let body = response.text().await.unwrap_or_default();
    assert!(
        status.is_success(),
        "LNbits: cannot {what}: {status} {body}"
    );
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("LNbits: {what}: {e}: {body}"))
}

/// Where installs are cached.
pub fn realparts_dir() -> PathBuf {
    std::env::var_os("NOSTR_DVM_REALPARTS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join(".realparts"))
}

/// The venv with LNbits, installed (under a file lock) when missing.
fn install() -> Result<PathBuf, String> {
    let dir = realparts_dir().join(format!("lnbits-{VERSION}"));
    fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let venv = dir.join("venv");
    if dir.join("installed").exists() {
        return Ok(venv);
    }
    let log = dir.join("install.log");
    let script = format!(
        "test -f installed && exit 0; rm -rf venv && python3 -m venv venv && \
         venv/bin/pip install --quiet 'lnbits=={VERSION}' 'bitstring<5' && touch installed"
    );
    eprintln!("installing LNbits {VERSION} into {} (once)", venv.display());
    let status = Command::new("flock")
        .arg(dir.join(".lock"))
        .args(["sh", "-c", &script])
        .current_dir(&dir)
        .stdout(log_file(&log)?)
        .stderr(log_file(&log)?)
        .status()
        .map_err(|e| format!("cannot run flock and sh to install LNbits: {e}"))?;
    if !status.success() {
        return Err(format!(
            "installing LNbits failed ({status}): it needs python3 with venv and pip, and PyPI; \
             see {}:\n{}",
            log.display(),
            tail(&log)
        ));
    }
    Ok(venv)
}

pub fn log_file(path: &Path) -> Result<File, String> {
    File::options()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| format!("cannot open {}: {e}", path.display()))
}

/// The last lines of a log.
pub fn tail(path: &Path) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

/// A port nobody listens on now.
fn free_port() -> Result<u16, String> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    listener
        .local_addr()
        .map(|a| a.port())
        .map_err(|e| e.to_string())
}

/// Installs, starts and sets up LNbits.
async fn start() -> Result<Lnbits, String> {
    let venv = install()?;
    let python = venv.join("bin/python");
    let unique = format!(
        "nostr-dvm-lnbits-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0)
    );
    let data = std::env::temp_dir().join(unique);
    // LNbits finds its static files and templates relative to the working directory.
    let run = data.join("run");
    fs::create_dir_all(run.join("lnbits")).map_err(|e| e.to_string())?;
    let package = Command::new(&python)
        .args([
            "-c",
            "import lnbits, os; print(os.path.dirname(lnbits.__file__))",
        ])
        // Importing LNbits writes a key file under ./data: keep it out of the repository.
        .current_dir(&run)
        .output()
        .map_err(|e| format!("cannot run {}: {e}", python.display()))?;
    let package = PathBuf::from(String::from_utf8_lossy(&package.stdout).trim());
    for part in ["static", "templates"] {
        std::os::unix::fs::symlink(package.join(part), run.join("lnbits").join(part))
            .map_err(|e| format!("cannot link LNbits's {part}: {e}"))?;
    }
    let port = free_port()?;
    let log = data.join("lnbits.log");
    let mut server = Command::new(&python)
        .args([
            "-m",
            "uvicorn",
            "lnbits.__main__:app",
            "--host",
            "127.0.0.1",
        ])
        .args(["--port", &port.to_string()])
        .current_dir(&run)
        .env("LNBITS_DATA_FOLDER", data.join("db"))
        .env("LNBITS_BACKEND_WALLET_CLASS", "FakeWallet")
        .env("LNBITS_PRICE_AGGREGATOR_ENABLED", "false")
        .env("LNBITS_EXCHANGE_RATE_PROVIDERS", "[]")
        .env("LNBITS_EXTENSIONS_MANIFESTS", "[]")
        .env("LNBITS_WASM_EXTENSIONS_MANIFESTS", "[]")
        .env("LNBITS_EXTENSIONS_BUILDER_MANIFEST_URL", "")
        .env("LNBITS_ADMIN_UI", "true")
        .env("LNBITS_CALLBACK_URL_RULES", "[]")
        .env("LNBITS_CALLBACK_ALLOW_PRIVATE_IPS", "true")
        .stdin(Stdio::null())
        .stdout(log_file(&log)?)
        .stderr(log_file(&log)?)
        .spawn()
        .map_err(|e| format!("cannot start LNbits: {e}"))?;
    fs::create_dir_all(data.join("db")).map_err(|e| e.to_string())?;
    watchdog(&server, Some(&data))?;

    let url = format!("http://127.0.0.1:{port}");
    wait_healthy(&mut server, &url, &log).await?;
    let answer = client()
        .put(format!("{url}/api/v1/auth/first_install"))
        .json(&json!({
            "username": "admin",
            "password": "password123",
            "password_repeat": "password123",
        }))
        .send()
        .await
        .map_err(|e| format!("first install: {e}"))?;
    let body: Value = answer
        .json()
        .await
        .map_err(|e| format!("first install: {e}"))?;
    let admin_token = body["access_token"]
        .as_str()
        .ok_or_else(|| format!("first install gave no token: {body}"))?
        .to_owned();
    // The server lives as long as the test process: the watchdog stops it.
    std::mem::forget(server);
    Ok(Lnbits {
        url,
        port,
        admin_token,
    })
}

/// Stops `server` (and removes `data`, if given) once this test process is gone.
pub fn watchdog(server: &Child, data: Option<&Path>) -> Result<(), String> {
    let cleanup = data
        .map(|d| format!("; rm -rf '{}'", d.display()))
        .unwrap_or_default();
    let script = format!(
        "while kill -0 {me} 2>/dev/null; do sleep 1; done; kill {child} 2>/dev/null; \
         sleep 3; kill -9 {child} 2>/dev/null{cleanup}",
        me = std::process::id(),
        child = server.id(),
    );
    Command::new("sh")
        .args(["-c", &script])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map(drop)
        .map_err(|e| format!("cannot start the watchdog of a test server: {e}"))
}

/// Waits until LNbits answers its health check, or fails with its log.
async fn wait_healthy(server: &mut Child, url: &str, log: &Path) -> Result<(), String> {
    let began = Instant::now();
    loop {
        if let Ok(Some(status)) = server.try_wait() {
            return Err(format!("LNbits exited ({status}):\n{}", tail(log)));
        }
        let health = client().get(format!("{url}/api/v1/health")).send().await;
        if matches!(&health, Ok(r) if r.status().is_success()) {
            return Ok(());
        }
        if began.elapsed() > START_TIMEOUT {
            let _ = server.kill();
            return Err(format!(
                "LNbits did not answer within {START_TIMEOUT:?}:\n{}",
                tail(log)
            ));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
