//! A TCP relay that can stall: what a leader sees when its apiserver connection hangs (a
//! half-dead load balancer, a network partition) rather than fails. While stalled, the relay
//! keeps every connection open and accepts new ones, but moves no bytes either way, so the
//! client's requests neither complete nor error until its own timeouts fire.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, Result};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A running relay to one address; stops (dropping every connection) when dropped.
pub struct TcpProxy {
    addr: std::net::SocketAddr,
    stalled: Arc<AtomicBool>,
    server: tokio::task::JoinHandle<()>,
}

impl TcpProxy {
    /// Relays `127.0.0.1:<port>` to `target` (`host:port`).
    pub async fn start(target: &str) -> Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await.context("binding the TCP relay")?;
        let addr = listener.local_addr()?;
        let stalled = Arc::new(AtomicBool::new(false));
        let (target, flag) = (target.to_string(), stalled.clone());
        let server = tokio::spawn(async move {
            let mut connections = tokio::task::JoinSet::new();
            while let Ok((client, _)) = listener.accept().await {
                let (target, flag) = (target.clone(), flag.clone());
                connections.spawn(async move {
                    let Ok(upstream) = TcpStream::connect(&target).await else { return };
                    let (client_read, client_write) = client.into_split();
                    let (upstream_read, upstream_write) = upstream.into_split();
                    tokio::join!(
                        pump(client_read, upstream_write, flag.clone()),
                        pump(upstream_read, client_write, flag)
                    );
                });
            }
        });
        Ok(Self { addr, stalled, server })
    }

    /// `127.0.0.1:<port>`.
    pub fn addr(&self) -> std::net::SocketAddr {
        self.addr
    }

    /// From now on no byte moves, either way, on any connection.
    pub fn stall(&self) {
        self.stalled.store(true, Ordering::SeqCst);
    }

    pub fn resume(&self) {
        self.stalled.store(false, Ordering::SeqCst);
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// Copies `from` to `to`, holding any bytes read while stalled until the stall ends.
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    stalled: Arc<AtomicBool>,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        while stalled.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        while stalled.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
    let _ = to.shutdown().await;
}
