//! The `provider` and `customer` examples earn and pay real sats, run as their binaries with
//! the flags their `--help` shows, over a real relay and a real LNbits (FakeWallet funding
//! source, started by the test support):
//! - the provider invoices from its LNbits wallet (`--lnbits-url`, `--lnbits-invoice-key`),
//!   the customer pays from its own (`--lnbits-admin-key`, `--auto-pay`);
//! - both through Nostr Wallet Connect (`--nwc`): a real NIP-47 service (Alby's, over the
//!   LNbits wallets, tests/support/nwc.rs) on a relay of their own;
//! - the provider is configured from its lightning address alone (`--lightning-address`),
//!   the customer zaps it (`--zap`). Core LNbits has no NIP-57 zaps: the test's zapper
//!   (tests/support/zapper.rs) stands in for a wallet's zap service, with LNbits invoices to
//!   the provider's wallet.
//!
//! Balances move by exactly the price. The example binaries are those `cargo test
//! --all-features` builds next to this test (`target/<profile>/examples/`); `cargo test
//! --test examples_paid` alone does not rebuild them: `cargo build --examples --all-features`
//! first.
#![cfg(all(feature = "lnbits", feature = "test-util"))]

mod support;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use nostr_dvm::nostr::{Keys, ToBech32};
use support::lnbits::{Lnbits, LnbitsTestWallet};
use support::relay;
use support::zapper::LnbitsZapper;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// The price the provider example is run with, in sats.
const PRICE_SATS: u64 = 21;
/// What the customer's wallet holds at the start, in sats.
const FUNDS_SATS: u64 = 1_000;
/// How long one example run may take.
const RUN_TIMEOUT: Duration = Duration::from_secs(90);

/// The binary of example `name`, built by `cargo test --all-features`.
fn example(name: &str) -> PathBuf {
    let test_exe = std::env::current_exe().expect("the test binary's path");
    // target/<profile>/deps/<this test> -> target/<profile>/examples/<name>
    let profile_dir = test_exe
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>/deps");
    let path = profile_dir
        .join("examples")
        .join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    assert!(
        path.exists(),
        "missing example binary {}: run this test through `cargo test --all-features`, which \
         builds the examples (or `cargo build --examples --all-features` first)",
        path.display()
    );
    path
}

/// A command running example `name` with `args`, in a clean environment for its settings.
fn command(name: &str, args: &[String]) -> Command {
    let mut command = Command::new(example(name));
    command
        .args(args)
        .env_remove("NOSTR_DVM_SECRET_KEY")
        .env_remove("NOSTR_DVM_LNBITS_URL")
        .env_remove("NOSTR_DVM_LNBITS_INVOICE_KEY")
        .env_remove("NOSTR_DVM_LNBITS_ADMIN_KEY")
        .env_remove("NOSTR_DVM_LIGHTNING_ADDRESS")
        .env_remove("NOSTR_DVM_NWC")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    command
}

/// A provider example process, read until it says it is running; its output so far.
async fn start_provider(args: &[String]) -> (Child, Vec<String>) {
    let mut child = command("provider", args)
        .spawn()
        .expect("the provider starts");
    let stdout = child.stdout.take().expect("piped");
    let mut lines = BufReader::new(stdout).lines();
    let mut seen = Vec::new();
    let ready = tokio::time::timeout(RUN_TIMEOUT, async {
        while let Ok(Some(line)) = lines.next_line().await {
            let running = line.contains("running until");
            seen.push(line);
            if running {
                return true;
            }
        }
        false
    })
    .await;
    if ready != Ok(true) {
        let _ = child.kill().await;
        let out = child.wait_with_output().await.expect("its output");
        panic!(
            "the provider example did not start:\n{}\n{}",
            seen.join("\n"),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // Keep draining its output so that it never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    (child, seen)
}

/// Runs the customer example with `args` to its end: its stdout, after checking it exited 0.
async fn run_customer(args: &[String]) -> String {
    let out = tokio::time::timeout(RUN_TIMEOUT, command("customer", args).output())
        .await
        .expect("the customer example finishes")
        .expect("the customer example runs");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "the customer example failed ({}):\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// Waits for the provider example to stop on its own (`--jobs 1`), exit code 0.
async fn provider_exits(mut child: Child) {
    let status = tokio::time::timeout(RUN_TIMEOUT, child.wait())
        .await
        .expect("the provider stops after its job")
        .expect("its exit status");
    assert!(status.success(), "the provider example exited {status}");
}

/// A directory of its own under the system's temp dir, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Self {
        let name = format!(
            "nostr-dvm-examples-{}",
            Keys::generate().public_key().to_hex()
        );
        let path = std::env::temp_dir().join(name);
        std::fs::create_dir_all(&path).expect("a temp dir");
        Self(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Fresh provider keys in a key file under `dir`: the file's path and the npub.
fn key_file(dir: &Path) -> (String, String) {
    let keys = Keys::generate();
    let path = dir.join("provider.nsec");
    std::fs::write(&path, keys.secret_key().to_bech32().unwrap()).unwrap();
    (
        path.display().to_string(),
        keys.public_key().to_bech32().unwrap(),
    )
}

/// The test LNbits, the provider's empty wallet and the customer's funded one.
async fn wallets() -> (&'static Lnbits, LnbitsTestWallet, LnbitsTestWallet) {
    let lnbits = Lnbits::shared();
    let earner = lnbits.wallet("example-provider").await;
    let payer = lnbits.wallet("example-customer").await;
    lnbits.fund(&payer, FUNDS_SATS).await;
    (lnbits, earner, payer)
}

fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| (*s).to_owned()).collect()
}

/// Checks that exactly the price moved from `payer` to `earner`.
async fn price_moved(lnbits: &Lnbits, earner: &LnbitsTestWallet, payer: &LnbitsTestWallet) {
    assert_eq!(lnbits.balance_msat(earner).await, PRICE_SATS * 1_000);
    assert_eq!(
        lnbits.balance_msat(payer).await,
        (FUNDS_SATS - PRICE_SATS) * 1_000
    );
}

/// The customer example's flags to pay from `payer` through LNbits.
fn lnbits_payer<'a>(lnbits: &'a Lnbits, payer: &'a LnbitsTestWallet) -> [&'a str; 4] {
    [
        "--lnbits-url",
        lnbits.url(),
        "--lnbits-admin-key",
        &payer.admin_key,
    ]
}

/// One paid job between the two examples on a fresh relay: the provider runs with its keys,
/// state, price and `--jobs 1` plus `provider_flags` (and says `provider_says` on start), the
/// customer pays from the wallet `customer_wallet` names within 30 sats with
/// `customer_flags`. Returns the customer's output, after the provider stopped on its own.
async fn paid_job(
    customer_wallet: &[&str],
    provider_flags: &[&str],
    provider_says: &str,
    customer_flags: &[&str],
) -> String {
    let (_relay, url) = relay().await;
    let dir = TempDir::new();
    let (key_path, npub) = key_file(&dir.0);
    let state = dir.0.join("state.json").display().to_string();
    let price = PRICE_SATS.to_string();
    let mut flags = args(&[
        "--relay",
        &url,
        "--key-file",
        &key_path,
        "--state",
        &state,
        "--price",
        &price,
        "--jobs",
        "1",
    ]);
    flags.extend(args(provider_flags));
    let (provider, said) = start_provider(&flags).await;
    assert!(said.iter().any(|l| l.contains(provider_says)), "{said:?}");

    let mut flags = args(&[
        "--relay",
        &url,
        "--provider",
        &npub,
        "--auto-pay",
        "30",
        "--max-fee",
        "5",
        "--timeout",
        "60",
    ]);
    flags.extend(args(customer_wallet));
    flags.extend(args(customer_flags));
    flags.push("Lightning pays for this summary. It is short.".into());
    let stdout = run_customer(&flags).await;
    assert!(stdout.contains("asks 21 sats"), "{stdout}");
    assert!(stdout.contains("result:"), "{stdout}");
    provider_exits(provider).await;
    stdout
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_examples_charge_and_pay_an_lnbits_invoice() {
    let (lnbits, earner, payer) = wallets().await;
    let invoicing = [
        "--lnbits-url",
        lnbits.url(),
        "--lnbits-invoice-key",
        &earner.invoice_key,
    ];
    let paying = lnbits_payer(lnbits, &payer);
    let stdout = paid_job(&paying, &invoicing, "invoices from LNbits", &[]).await;
    assert!(stdout.contains("the wallet pays it"), "{stdout}");
    price_moved(lnbits, &earner, &payer).await;
}

#[cfg(all(feature = "nwc", unix))]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_examples_charge_and_pay_through_nostr_wallet_connect() {
    let (lnbits, earner, payer) = wallets().await;
    // The wallets' own relay, apart from the one the job goes through.
    let (_wallet_relay, wallet_url) = relay().await;
    let earning = support::nwc::NwcService::start(&wallet_url, &earner, 0).await;
    let paying = support::nwc::NwcService::start(&wallet_url, &payer, 0).await;
    let stdout = paid_job(
        &["--nwc", &paying.uri],
        &["--nwc", &earning.uri],
        "invoices from the NWC wallet",
        &[],
    )
    .await;
    assert!(stdout.contains("pays from the NWC wallet"), "{stdout}");
    assert!(stdout.contains("the wallet pays it"), "{stdout}");
    // The connection secrets appear in no output.
    for uri in [&earning.uri, &paying.uri] {
        let secret = uri.rsplit("secret=").next().unwrap();
        assert!(!stdout.contains(secret));
    }
    price_moved(lnbits, &earner, &payer).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_configured_by_its_lightning_address_is_zapped_by_the_customer_example() {
    let (lnbits, earner, payer) = wallets().await;
    // Stands in for a wallet's zap service (core LNbits has none): LNbits invoices to the
    // provider's wallet, receipts signed with its own key once they are paid.
    let zapper = LnbitsZapper::start(lnbits, earner.clone()).await;
    let address = ["--lightning-address", &zapper.address, "--insecure-lnurl"];
    let zap = ["--zap", "--insecure-lnurl"];
    let paying = lnbits_payer(lnbits, &payer);
    let stdout = paid_job(&paying, &address, "takes zaps to", &zap).await;
    // Paid by zaps alone: the payment request carried no invoice.
    assert!(
        stdout.contains("zapping its lightning address (it sent no invoice)"),
        "{stdout}"
    );
    price_moved(lnbits, &earner, &payer).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lightning_address_without_zaps_is_refused_at_start() {
    let lnbits = Lnbits::shared();
    let earner = lnbits.wallet("example-no-zaps").await;
    let (_relay, url) = relay().await;
    // LNbits's own lightning address: LNURL-pay without NIP-57.
    let name = earner.lightning_name.clone().expect("a lightning address");
    let address = lnbits.address(&name);
    let out = tokio::time::timeout(
        RUN_TIMEOUT,
        command(
            "provider",
            &args(&[
                "--relay",
                &url,
                "--price",
                "21",
                "--lightning-address",
                &address,
                "--insecure-lnurl",
            ]),
        )
        .output(),
    )
    .await
    .expect("the provider example stops")
    .expect("it runs");
    assert!(
        !out.status.success(),
        "a provider that cannot be zapped must not start"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("allowsNostr"), "{stderr}");
}
