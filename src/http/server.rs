//! Listeners: TLS termination with rustls (TLS 1.2/1.3, ALPN h2 and http/1.1) and HTTP serving.

use super::{router, AppState};
use crate::config::{Config, TlsSettings};
use crate::directory::ldap::LdapDirectory;
use crate::scim::groups::GroupService;
use crate::scim::users::{UserService, UserServiceSettings};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder;
use hyper_util::service::TowerToHyperService;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

/// How long a client may take to finish the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot read TLS file {path}: {message}")]
    TlsFile { path: String, message: String },
    #[error("invalid TLS configuration: {0}")]
    Tls(#[from] rustls::Error),
    #[error("cannot listen on {address}: {source}")]
    Bind {
        address: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot start the directory pool: {0}")]
    Directory(#[from] crate::directory::ldap::pool::ConnectError),
}

/// Build the rustls server config from PEM files.
pub fn tls_config(t: &TlsSettings) -> Result<Arc<rustls::ServerConfig>, ServeError> {
    let read = |p: &std::path::Path| {
        std::fs::read(p).map_err(|e| ServeError::TlsFile {
            path: p.display().to_string(),
            message: e.to_string(),
        })
    };
    let cert_pem = read(&t.cert_file)?;
    let key_pem = read(&t.key_file)?;
    let certs = rustls_pemfile::certs(&mut cert_pem.as_slice())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| ServeError::TlsFile {
            path: t.cert_file.display().to_string(),
            message: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(ServeError::TlsFile {
            path: t.cert_file.display().to_string(),
            message: "no certificate found".into(),
        });
    }
    let key = rustls_pemfile::private_key(&mut key_pem.as_slice())
        .map_err(|e| ServeError::TlsFile {
            path: t.key_file.display().to_string(),
            message: e.to_string(),
        })?
        .ok_or_else(|| ServeError::TlsFile {
            path: t.key_file.display().to_string(),
            message: "no private key found".into(),
        })?;
    let mut cfg = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
    .with_no_client_auth()
    .with_single_cert(certs, key)?;
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

/// A running gateway. Dropping it does not stop it; call `shutdown`.
pub struct Gateway {
    /// The bound addresses, in listener order (useful when the config asks for port 0).
    pub addresses: Vec<SocketAddr>,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    directory: Arc<LdapDirectory>,
}

impl Gateway {
    /// Bind every listener and start serving.
    pub async fn start(config: Config) -> Result<Gateway, ServeError> {
        let mut allowed = vec![config.users.base.clone()];
        if let crate::mapping::DeletePolicy::Soft { move_to: Some(m) } = &config.users.delete {
            allowed.push(m.clone());
        }
        if let Some(g) = &config.groups {
            allowed.push(g.base.clone());
        }
        let directory = Arc::new(LdapDirectory::start(&config.directory, allowed)?);
        let settings = UserServiceSettings {
            default_page_size: config.scim.default_page_size,
            max_page_size: config.scim.max_page_size,
            version_attribute: config.directory.version_attribute.clone(),
        };
        let users_mapping = Arc::new(config.users.clone());
        let groups_mapping = config.groups.clone().map(Arc::new);
        let users = UserService::new(directory.clone(), users_mapping.clone(), settings.clone())
            .with_groups(groups_mapping.clone());
        let groups = groups_mapping.map(|g| {
            GroupService::new(
                directory.clone(),
                users_mapping.clone(),
                g,
                settings.clone(),
            )
        });
        let tls = match &config.tls {
            Some(t) if config.listeners.iter().any(|l| l.tls) => {
                Some(TlsAcceptor::from(tls_config(t)?))
            }
            _ => None,
        };
        let (stop, stop_rx) = watch::channel(false);
        let mut addresses = Vec::new();
        let mut tasks = Vec::new();
        for l in &config.listeners {
            let listener =
                TcpListener::bind(l.address)
                    .await
                    .map_err(|source| ServeError::Bind {
                        address: l.address,
                        source,
                    })?;
            let local = listener.local_addr().map_err(|source| ServeError::Bind {
                address: l.address,
                source,
            })?;
            addresses.push(local);
            let state = Arc::new(AppState {
                users: users.clone(),
                groups: groups.clone(),
                tokens: super::auth::TokenSet::new(&config.tokens),
                base_path: config.scim.base_path.clone(),
                max_body_bytes: config.scim.max_body_bytes,
                max_page_size: config.scim.max_page_size,
                max_bulk_operations: config.scim.max_bulk_operations,
                retry_after: config.directory.retry_after,
                scheme: if l.tls { "https" } else { "http" },
                fallback_authority: local.to_string(),
            });
            let app = router(state);
            let acceptor = if l.tls { tls.clone() } else { None };
            if acceptor.is_none() {
                tracing::warn!(address = %local, "plaintext HTTP listener: tokens and identity data cross the network unencrypted");
            } else {
                tracing::info!(address = %local, "HTTPS listener ready");
            }
            tasks.push(tokio::spawn(accept_loop(
                listener,
                acceptor,
                app,
                stop_rx.clone(),
            )));
        }
        Ok(Gateway {
            addresses,
            stop,
            tasks,
            directory,
        })
    }

    /// How many LDAP requests the gateway has sent so far (for tests and diagnostics).
    pub fn directory_operations(&self) -> u64 {
        self.directory.operations()
    }

    /// Stop accepting connections and wait for the accept loops to end.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        for t in self.tasks {
            let _ = t.await;
        }
    }
}

async fn accept_loop(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    app: axum::Router,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = stop.changed() => return,
        };
        let (tcp, peer) = match accepted {
            Ok(x) => x,
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let app = app.clone();
        let tls = tls.clone();
        let mut stop = stop.clone();
        tokio::spawn(async move {
            let service = TowerToHyperService::new(app);
            let builder = Builder::new(TokioExecutor::new());
            match tls {
                Some(acceptor) => {
                    let stream =
                        match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                            Ok(Ok(s)) => s,
                            Ok(Err(e)) => {
                                tracing::debug!(%peer, error = %e, "TLS handshake failed");
                                return;
                            }
                            Err(_) => {
                                tracing::debug!(%peer, "TLS handshake timed out");
                                return;
                            }
                        };
                    let conn = builder.serve_connection(TokioIo::new(stream), service);
                    tokio::pin!(conn);
                    tokio::select! {
                        r = conn.as_mut() => if let Err(e) = r { tracing::debug!(%peer, error = %e, "connection error") },
                        _ = stop.changed() => { conn.as_mut().graceful_shutdown(); let _ = conn.await; }
                    }
                }
                None => {
                    let conn = builder.serve_connection(TokioIo::new(tcp), service);
                    tokio::pin!(conn);
                    tokio::select! {
                        r = conn.as_mut() => if let Err(e) = r { tracing::debug!(%peer, error = %e, "connection error") },
                        _ = stop.changed() => { conn.as_mut().graceful_shutdown(); let _ = conn.await; }
                    }
                }
            }
        });
    }
}
