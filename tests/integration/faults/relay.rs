//! A TCP relay between the gateway and slapd that the test controls: it can reset every
//! connection passing through it (RST on both sides, as a firewall or a load balancer that
//! forgets its state does) and black-hole them (keep the sockets open, forward nothing, as a
//! partitioned network does).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;

#[derive(Debug, Clone, Copy)]
struct Control {
    /// Bytes are copied both ways; when false, they stay unread in the kernel's buffers.
    forwarding: bool,
    /// Connections accepted under an older generation are reset.
    generation: u64,
}

/// Listens on a free loopback port and relays every connection to `upstream`. Dropping it
/// closes the listener and every relayed connection.
pub struct TcpRelay {
    pub address: SocketAddr,
    control: watch::Sender<Control>,
    accepted: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for TcpRelay {
    fn drop(&mut self) {
        // Aborting the accept task drops its JoinSet, which aborts every connection task.
        self.task.abort();
    }
}

impl TcpRelay {
    pub async fn start(upstream: SocketAddr) -> TcpRelay {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let (control, watching) = watch::channel(Control {
            forwarding: true,
            generation: 0,
        });
        let accepted = Arc::new(AtomicUsize::new(0));
        let counter = accepted.clone();
        let task = tokio::spawn(async move {
            let mut connections = JoinSet::new();
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                    continue;
                };
                counter.fetch_add(1, Ordering::Relaxed);
                connections.spawn(relay(client, upstream, watching.clone()));
                // Reap finished connections so the set does not grow with the test.
                while connections.try_join_next().is_some() {}
            }
        });
        TcpRelay {
            address,
            control,
            accepted,
            task,
        }
    }

    /// `ldap://` URL of the relay.
    pub fn url(&self) -> String {
        format!("ldap://{}", self.address)
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::Relaxed)
    }

    /// Resets every connection open now (SO_LINGER 0, then close: an RST to each side).
    /// Later connections are relayed as usual.
    pub fn reset_all(&self) {
        self.control.send_modify(|c| c.generation += 1);
    }

    /// Stops (`true`) or resumes (`false`) forwarding on every connection, current and future.
    pub fn blackhole(&self, on: bool) {
        self.control.send_modify(|c| c.forwarding = !on);
    }
}

/// One relayed connection, until either side closes it or a reset.
async fn relay(client: TcpStream, upstream: SocketAddr, mut control: watch::Receiver<Control>) {
    let born = control.borrow().generation;
    let Ok(server) = TcpStream::connect(upstream).await else {
        let _ = client.set_zero_linger();
        return;
    };
    let (mut client, mut server) = (client, server);
    let mut from_client = vec![0u8; 16 * 1024];
    let mut from_server = vec![0u8; 16 * 1024];
    loop {
        let now = *control.borrow_and_update();
        if now.generation != born {
            let _ = client.set_zero_linger();
            let _ = server.set_zero_linger();
            return;
        }
        tokio::select! {
            changed = control.changed() => {
                if changed.is_err() {
                    return;
                }
            }
            read = client.read(&mut from_client), if now.forwarding => match read {
                Ok(n) if n > 0 => {
                    if server.write_all(&from_client[..n]).await.is_err() {
                        return;
                    }
                }
                _ => return,
            },
            read = server.read(&mut from_server), if now.forwarding => match read {
                Ok(n) if n > 0 => {
                    if client.write_all(&from_server[..n]).await.is_err() {
                        return;
                    }
                }
                _ => return,
            },
        }
    }
}
