//! The SCIM listeners' TLS configuration: rustls (TLS 1.2 and 1.3, ALPN h2 and http/1.1) from PEM
//! files, and the served certificate's expiry, which the metrics export.

use super::server::ServeError;
use rustls::pki_types::CertificateDer;
use std::path::Path;
use std::sync::Arc;

/// Resumable TLS sessions kept per listener configuration (a few hundred bytes each).
const SESSION_CACHE_ENTRIES: usize = 4096;

/// A loaded server certificate and key, ready for the acceptor.
pub struct ServerTls {
    pub config: Arc<rustls::ServerConfig>,
    /// The leaf certificate's notAfter, in seconds since the Unix epoch.
    pub not_after: i64,
}

fn file_error(path: &Path, message: impl ToString) -> ServeError {
    ServeError::TlsFile {
        path: path.display().to_string(),
        message: message.to_string(),
    }
}

/// Build the rustls server config from PEM files.
pub fn load(t: &crate::config::TlsSettings) -> Result<ServerTls, ServeError> {
    let read = |p: &Path| std::fs::read(p).map_err(|e| file_error(p, e));
    let cert_pem = read(&t.cert_file)?;
    let key_pem = read(&t.key_file)?;
    let certs = rustls_pemfile::certs(&mut cert_pem.as_slice())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| file_error(&t.cert_file, e))?;
    let Some(leaf) = certs.first() else {
        return Err(file_error(&t.cert_file, "no certificate found"));
    };
    let not_after = not_after(leaf).map_err(|e| file_error(&t.cert_file, e))?;
    let key = rustls_pemfile::private_key(&mut key_pem.as_slice())
        .map_err(|e| file_error(&t.key_file, e))?
        .ok_or_else(|| file_error(&t.key_file, "no private key found"))?;
    let mut cfg = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
    .with_no_client_auth()
    .with_single_cert(certs, key)?;
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    // A returning client resumes its session instead of a full handshake (whose signature is
    // its costly part). TLS 1.2 session ids and TLS 1.3 tickets both name an entry of this
    // server-side cache, so there is no ticket key to rotate or to leak; the oldest entries go
    // first when it is full.
    cfg.session_storage = rustls::server::ServerSessionMemoryCache::new(SESSION_CACHE_ENTRIES);
    Ok(ServerTls {
        config: Arc::new(cfg),
        not_after,
    })
}

/// The certificate's notAfter as Unix seconds.
fn not_after(cert: &CertificateDer<'_>) -> Result<i64, String> {
    let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref())
        .map_err(|e| format!("the first certificate does not parse as X.509: {e}"))?;
    Ok(parsed.validity().not_after.timestamp())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::config::TlsSettings;

    /// A self-signed certificate valid until `not_after` (Unix seconds), written with its key.
    fn write_pair(dir: &Path, not_after: i64) -> TlsSettings {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap();
        params.not_after = rcgen::date_time_ymd(1970, 1, 1) + time_offset(not_after);
        let cert = params.self_signed(&key).unwrap();
        let settings = TlsSettings {
            cert_file: dir.join("gw.crt"),
            key_file: dir.join("gw.key"),
        };
        std::fs::write(&settings.cert_file, cert.pem()).unwrap();
        std::fs::write(&settings.key_file, key.serialize_pem()).unwrap();
        settings
    }

    fn time_offset(secs: i64) -> std::time::Duration {
        std::time::Duration::from_secs(u64::try_from(secs).unwrap())
    }

    #[test]
    fn load_reports_the_leaf_certificates_expiry() {
        let dir = tempfile::tempdir().unwrap();
        // 2031-05-17T03:33:20Z
        let settings = write_pair(dir.path(), 1_937_000_000);
        let tls = load(&settings).unwrap();
        assert_eq!(tls.not_after, 1_937_000_000);
        assert_eq!(
            tls.config.alpn_protocols,
            vec![b"h2".to_vec(), b"http/1.1".to_vec()]
        );
        // A renewed certificate in the same files: the new date.
        let settings = write_pair(dir.path(), 1_999_999_999);
        assert_eq!(load(&settings).unwrap().not_after, 1_999_999_999);
    }

    #[test]
    fn missing_or_broken_files_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let settings = write_pair(dir.path(), 1_937_000_000);
        std::fs::write(&settings.cert_file, "not a certificate\n").unwrap();
        let e = load(&settings).err().unwrap().to_string();
        assert!(e.contains("gw.crt") && e.contains("no certificate"), "{e}");

        let garbage = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
        std::fs::write(&settings.cert_file, garbage).unwrap();
        let e = load(&settings).err().unwrap().to_string();
        assert!(e.contains("gw.crt") && e.contains("X.509"), "{e}");

        let settings = write_pair(dir.path(), 1_937_000_000);
        std::fs::remove_file(&settings.key_file).unwrap();
        let e = load(&settings).err().unwrap().to_string();
        assert!(e.contains("gw.key"), "{e}");
    }
}
