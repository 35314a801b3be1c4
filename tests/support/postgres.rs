//! A real PostgreSQL server for tests: a throw-away cluster in a temp dir, on a free port of
//! 127.0.0.1, from the server binaries of the system's `postgresql` package
//! (`/usr/lib/postgresql/<version>/bin`, the highest version, or `initdb` on the PATH).
//! Trust authentication, user `dvm`. Durable by default (`fsync` on), like a real server.
//!
//! `initdb` refuses to run as root: as root, the cluster runs as the `postgres` system user
//! (which the package creates) through `runuser`.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Command, Output};

/// A PostgreSQL server of its own: stopped and removed, data and all, when dropped.
pub struct TestPostgres {
    bin: PathBuf,
    dir: PathBuf,
    port: u16,
    as_postgres: bool,
    fsync: bool,
    /// TLS only (the server's certificate and key are in its data directory).
    tls: bool,
    running: bool,
}

impl TestPostgres {
    /// Starts a new, durable cluster. Panics (naming what is missing and how to install it)
    /// when the server binaries are not there: a test that needs PostgreSQL never passes
    /// without it.
    pub fn start() -> Self {
        Self::start_with(true)
    }

    /// Starts a new cluster with `fsync=off`: faster commits that a crash of the machine
    /// (not of a process) may lose. For tests that ask for it only.
    pub fn start_without_fsync() -> Self {
        Self::start_with(false)
    }

    /// Starts a new, durable cluster that takes TCP connections by TLS only, with the
    /// certificate chain `cert_pem` and its private key `key_pem` (connections in the clear
    /// are refused; `pg_hba.conf` says `hostnossl ... reject`).
    pub fn start_with_tls(cert_pem: &str, key_pem: &str) -> Self {
        Self::start_configured(true, Some((cert_pem, key_pem)))
    }

    fn start_with(fsync: bool) -> Self {
        Self::start_configured(fsync, None)
    }

    fn start_configured(fsync: bool, tls: Option<(&str, &str)>) -> Self {
        let bin = server_binaries();
        let as_postgres = running_as_root();
        let dir =
            std::env::temp_dir().join(format!("nostr-dvm-pg-{}-{}", std::process::id(), unique()));
        std::fs::create_dir_all(&dir).expect("a temp dir for PostgreSQL");
        let mut server = Self {
            bin,
            dir,
            port: 0,
            as_postgres,
            fsync,
            tls: tls.is_some(),
            running: false,
        };
        if as_postgres {
            run(Command::new("chown").arg("postgres").arg(&server.dir));
        }
        let data = server.data();
        server.run_pg(
            "initdb",
            &[
                "-D".as_ref(),
                data.as_os_str(),
                "-A".as_ref(),
                "trust".as_ref(),
                "-U".as_ref(),
                "dvm".as_ref(),
                "-E".as_ref(),
                "UTF8".as_ref(),
                // The cluster's files, not its commits: those stay durable.
                "--no-sync".as_ref(),
            ],
        );
        if let Some((cert, key)) = tls {
            let files = [
                ("server.crt", cert),
                ("server.key", key),
                (
                    "pg_hba.conf",
                    "local all all trust\n\
                     hostssl all all 127.0.0.1/32 trust\n\
                     hostnossl all all 0.0.0.0/0 reject\n",
                ),
            ];
            for (name, text) in files {
                let path = data.join(name);
                std::fs::write(&path, text).expect("writes a TLS file of the cluster");
                // PostgreSQL refuses a key that others may read.
                run(Command::new("chmod").arg("600").arg(&path));
                if as_postgres {
                    run(Command::new("chown").arg("postgres").arg(&path));
                }
            }
        }
        // Another process may take the free port before the server does: try a few.
        let mut last = String::new();
        for _ in 0..5 {
            server.port = free_port();
            match server.pg_ctl_start() {
                Ok(()) => {
                    server.running = true;
                    return server;
                }
                Err(e) => last = e,
            }
        }
        panic!("PostgreSQL did not start: {last}");
    }

    /// `postgres://dvm@127.0.0.1:PORT/postgres`.
    pub fn url(&self) -> String {
        self.database_url("postgres")
    }

    /// The URL of database `name` on this server.
    pub fn database_url(&self, name: &str) -> String {
        format!("postgres://dvm@127.0.0.1:{}/{name}", self.port)
    }

    /// The server's port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Creates database `name` (so that each test has its own) and returns its URL. Call it
    /// from a plain thread (the `postgres` client runs a runtime of its own).
    pub fn create_database(&self, name: &str) -> String {
        let mut client = ::postgres::Client::connect(&self.url(), ::postgres::NoTls)
            .expect("connects to the test server");
        client
            .batch_execute(&format!("CREATE DATABASE \"{name}\""))
            .expect("creates the database");
        self.database_url(name)
    }

    /// Stops the server (`pg_ctl stop -m fast`: connections are cut, commits kept).
    pub fn stop(&mut self) {
        if self.running {
            self.pg_ctl_stop("fast")
                .unwrap_or_else(|e| panic!("PostgreSQL did not stop: {e}"));
            self.running = false;
        }
    }

    /// Starts the stopped server again, on the same port with the same data.
    pub fn start_again(&mut self) {
        if !self.running {
            self.pg_ctl_start()
                .unwrap_or_else(|e| panic!("PostgreSQL did not start again: {e}"));
            self.running = true;
        }
    }

    /// Stops the server and starts it again: every connection is cut.
    pub fn restart(&mut self) {
        self.stop();
        self.start_again();
    }

    fn data(&self) -> PathBuf {
        self.dir.join("data")
    }

    fn pg_ctl_start(&self) -> Result<(), String> {
        let mut options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1",
            self.port,
            self.dir.display()
        );
        if !self.fsync {
            options.push_str(" -c fsync=off");
        }
        if self.tls {
            options.push_str(" -c ssl=on -c ssl_cert_file=server.crt -c ssl_key_file=server.key");
        }
        let log = self.dir.join("server.log");
        let data = self.data();
        let output = self.pg_command(
            "pg_ctl",
            &[
                "-D".as_ref(),
                data.as_os_str(),
                "-l".as_ref(),
                log.as_os_str(),
                "-w".as_ref(),
                "-o".as_ref(),
                options.as_ref(),
                "start".as_ref(),
            ],
        );
        if output.status.success() {
            Ok(())
        } else {
            Err(format!(
                "{}\n{}",
                describe(&output),
                std::fs::read_to_string(&log).unwrap_or_default()
            ))
        }
    }

    fn pg_ctl_stop(&self, mode: &str) -> Result<(), String> {
        let data = self.data();
        let output = self.pg_command(
            "pg_ctl",
            &[
                "-D".as_ref(),
                data.as_os_str(),
                "-m".as_ref(),
                mode.as_ref(),
                "-w".as_ref(),
                "stop".as_ref(),
            ],
        );
        if output.status.success() {
            Ok(())
        } else {
            Err(describe(&output))
        }
    }

    /// Runs server binary `name` (as the `postgres` user when root), panicking on failure.
    fn run_pg(&self, name: &str, args: &[&std::ffi::OsStr]) {
        let output = self.pg_command(name, args);
        assert!(output.status.success(), "{name}: {}", describe(&output));
    }

    fn pg_command(&self, name: &str, args: &[&std::ffi::OsStr]) -> Output {
        let program = self.bin.join(name);
        let mut command = if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&program);
            c
        } else {
            Command::new(&program)
        };
        command
            .args(args)
            .current_dir(&self.dir)
            .output()
            .unwrap_or_else(|e| panic!("{}: {e}", program.display()))
    }
}

impl Drop for TestPostgres {
    fn drop(&mut self) {
        if self.running {
            let _ = self.pg_ctl_stop("immediate");
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The directory of the server binaries: the highest `/usr/lib/postgresql/*/bin`, or that of
/// `initdb` on the PATH. Panics with what to install when there is none.
fn server_binaries() -> PathBuf {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = entry.path().join("bin");
            bin.join("initdb").is_file().then_some((version, bin))
        })
        .collect();
    versions.sort();
    if let Some((_, bin)) = versions.pop() {
        return bin;
    }
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            if dir.join("initdb").is_file() && dir.join("pg_ctl").is_file() {
                return dir;
            }
        }
    }
    panic!(
        "the PostgreSQL tests need the server binaries `initdb` and `pg_ctl` (looked in \
         /usr/lib/postgresql/*/bin and on the PATH): install them with \
         `apt-get install postgresql` (Debian, Ubuntu) or your system's PostgreSQL server \
         package"
    );
}

fn running_as_root() -> bool {
    let output = Command::new("id").arg("-u").output().expect("runs `id -u`");
    String::from_utf8_lossy(&output.stdout).trim() == "0"
}

/// A port of 127.0.0.1 that was free a moment ago.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port on 127.0.0.1")
        .port()
}

/// A number no other server of this process has.
fn unique() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

fn run(command: &mut Command) {
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("{command:?}: {e}"));
    assert!(
        output.status.success(),
        "{command:?}: {}",
        describe(&output)
    );
}

fn describe(output: &Output) -> String {
    format!(
        "{}: {}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}
