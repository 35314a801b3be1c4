//! TLS to a fleet's PostgreSQL database (feature `postgres`): whether to use it (the URL's
//! `sslmode`, or where the server is), and the rustls connector that verifies the server's
//! certificate chain and host name against the webpki roots and the roots the operator adds.

use std::sync::Arc;

use postgres::config::{Host, SslMode};
use postgres::Config;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use tokio_postgres_rustls::MakeRustlsConnect;

/// How the store reaches the server.
#[derive(Clone)]
pub(super) enum Transport {
    /// In the clear: the URL says `sslmode=disable`, or the server is on this host.
    Plain,
    /// TLS, the certificate verified.
    Tls(MakeRustlsConnect),
}

impl Transport {
    /// What [`PostgresStore`](super::PostgresStore)'s `Debug` output says.
    pub(super) fn name(&self) -> &'static str {
        match self {
            Transport::Plain => "plain",
            Transport::Tls(_) => "tls",
        }
    }
}

/// `url` with libpq's `sslmode=verify-full` and `sslmode=verify-ca` (which the client does not
/// parse) read as `require`, since the certificate is always verified, host name included;
/// and whether the URL names an `sslmode` at all.
///
/// Only the options are read: in a `postgres://` URL the query after `?` (a password that
/// happens to hold `sslmode=` changes nothing), in the `key=value` form the whole text.
pub(super) fn normalized_url(url: &str) -> (String, bool) {
    let start = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        url.find('?').unwrap_or(url.len())
    } else {
        0
    };
    let (head, options) = url.split_at(start);
    let explicit = options.contains("sslmode=");
    let options = options
        .replace("sslmode=verify-full", "sslmode=require")
        .replace("sslmode=verify-ca", "sslmode=require");
    (format!("{head}{options}"), explicit)
}

/// Sets `config`'s TLS mode and returns the transport to connect with. The URL's `sslmode`
/// decides when it names one (`disable`: in the clear; `prefer`: TLS when the server offers
/// it; `require`: TLS or no connection). Without one, a server on this host (a Unix socket,
/// `localhost`, a loopback address) is reached in the clear, any other only by TLS. `roots`
/// are PEM bundles of certificates to trust besides the webpki roots (a private CA, a cloud
/// provider's database CA).
pub(super) fn transport(
    config: &mut Config,
    explicit: bool,
    roots: &[Vec<u8>],
) -> Result<Transport, String> {
    if !explicit {
        let mode = if config.get_hosts().iter().all(is_local) {
            SslMode::Disable
        } else {
            SslMode::Require
        };
        config.ssl_mode(mode);
    }
    if config.get_ssl_mode() == SslMode::Disable {
        return Ok(Transport::Plain);
    }
    let mut store = rustls::RootCertStore::empty();
    store.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    for (i, pem) in roots.iter().enumerate() {
        let mut found = 0;
        for cert in CertificateDer::pem_slice_iter(pem) {
            let cert = cert.map_err(|e| format!("root certificate bundle {i}: {e}"))?;
            store
                .add(cert)
                .map_err(|e| format!("root certificate bundle {i}: {e}"))?;
            found += 1;
        }
        if found == 0 {
            return Err(format!("root certificate bundle {i}: no certificate in it"));
        }
    }
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| format!("TLS: {e}"))?
    .with_root_certificates(store)
    .with_no_client_auth();
    Ok(Transport::Tls(MakeRustlsConnect::new(tls)))
}

/// Whether `host` is this machine: a Unix socket, `localhost`, or a loopback address.
fn is_local(host: &Host) -> bool {
    match host {
        Host::Tcp(name) => {
            let name = name.trim_start_matches('[').trim_end_matches(']');
            name.eq_ignore_ascii_case("localhost")
                || name
                    .parse::<std::net::IpAddr>()
                    .is_ok_and(|ip| ip.is_loopback())
        }
        #[cfg(unix)]
        Host::Unix(_) => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decided(url: &str) -> (SslMode, &'static str) {
        let (url, explicit) = normalized_url(url);
        let mut config: Config = url.parse().unwrap();
        let transport = transport(&mut config, explicit, &[]).unwrap();
        (config.get_ssl_mode(), transport.name())
    }

    #[test]
    fn a_remote_server_is_reached_only_by_tls_unless_the_url_says_otherwise() {
        assert_eq!(
            decided("postgres://u@db.example.com/fleet"),
            (SslMode::Require, "tls")
        );
        assert_eq!(
            decided("host=10.0.0.5 user=u dbname=fleet"),
            (SslMode::Require, "tls")
        );
        // One remote host among local ones is enough.
        assert_eq!(
            decided("postgres://u@localhost,db.example.com/fleet"),
            (SslMode::Require, "tls")
        );
        // A password that holds the text does not turn TLS off.
        assert_eq!(
            decided("postgres://u:xsslmode=disable@db.example.com/fleet"),
            (SslMode::Require, "tls")
        );
        assert_eq!(
            decided("postgres://u@db.example.com/fleet?sslmode=disable"),
            (SslMode::Disable, "plain")
        );
        assert_eq!(
            decided("postgres://u@db.example.com/fleet?sslmode=prefer"),
            (SslMode::Prefer, "tls")
        );
    }

    #[test]
    fn a_local_server_is_reached_in_the_clear_unless_the_url_asks_for_tls() {
        for url in [
            "postgres://u@127.0.0.1:5432/fleet",
            "postgres://u@localhost/fleet",
            "postgres://u@[::1]:5432/fleet",
            "host=/var/run/postgresql user=u dbname=fleet",
        ] {
            assert_eq!(decided(url), (SslMode::Disable, "plain"), "{url}");
        }
        assert_eq!(
            decided("postgres://u@localhost/fleet?sslmode=require"),
            (SslMode::Require, "tls")
        );
    }

    #[test]
    fn libpq_verify_modes_mean_require_with_the_certificate_verified() {
        for mode in ["verify-full", "verify-ca"] {
            assert_eq!(
                decided(&format!("postgres://u@localhost/fleet?sslmode={mode}")),
                (SslMode::Require, "tls"),
                "{mode}"
            );
        }
    }

    #[test]
    fn a_root_bundle_without_a_certificate_is_an_error() {
        let mut config: Config = "postgres://u@db.example.com/fleet".parse().unwrap();
        let garbage = b"-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n";
        assert!(transport(&mut config, false, &[garbage.to_vec()]).is_err());
        assert!(transport(&mut config, false, &[b"nothing here".to_vec()]).is_err());
    }
}
