//! A loopback TCP proxy a test can cut, to break a client's connections to
//! an emulator without restarting it: kinesis-mock comes back empty from a
//! restart (see [`crate::kinesis`]), so a network fault under an enhanced
//! fan-out subscription is made here instead.
//!
//! [`Proxy::cut`] shuts down every connection open through the proxy and
//! closes new ones at once for a while, as a dropped network would; then
//! connections pass again. Test-only code: failures panic.

use std::io;
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

#[derive(Debug)]
struct Shared {
    target: SocketAddr,
    /// New connections are closed at once until this instant.
    down_until: Mutex<Option<Instant>>,
    open: Mutex<Vec<TcpStream>>,
    stopping: AtomicBool,
    /// Connections shut down by cuts, and refused while down.
    broken: AtomicU64,
}

/// A running proxy on a loopback port; stops on drop.
#[derive(Debug)]
pub struct Proxy {
    port: u16,
    shared: Arc<Shared>,
}

impl Proxy {
    /// Listens on a free loopback port and forwards every connection to
    /// `127.0.0.1:target_port`.
    pub fn start(target_port: u16) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("cannot bind the proxy");
        let port = listener.local_addr().expect("the proxy's address").port();
        let shared = Arc::new(Shared {
            target: SocketAddr::from(([127, 0, 0, 1], target_port)),
            down_until: Mutex::new(None),
            open: Mutex::new(Vec::new()),
            stopping: AtomicBool::new(false),
            broken: AtomicU64::new(0),
        });
        let accepting = shared.clone();
        thread::spawn(move || accept(&listener, &accepting));
        Proxy { port, shared }
    }

    /// The endpoint URL through the proxy.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Shuts down every open connection and refuses new ones for `down`.
    pub fn cut(&self, down: Duration) {
        *self.shared.down_until.lock().unwrap() = Some(Instant::now() + down);
        let mut open = self.shared.open.lock().unwrap();
        for stream in open.drain(..) {
            let _ = stream.shutdown(Shutdown::Both);
            self.shared.broken.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Connections broken so far (shut down by cuts or refused while down).
    pub fn broken(&self) -> u64 {
        self.shared.broken.load(Ordering::Relaxed)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.shared.stopping.store(true, Ordering::Relaxed);
        // Wake the accept loop.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        for stream in self.shared.open.lock().unwrap().drain(..) {
            let _ = stream.shutdown(Shutdown::Both);
        }
    }
}

fn accept(listener: &TcpListener, shared: &Arc<Shared>) {
    for client in listener.incoming() {
        if shared.stopping.load(Ordering::Relaxed) {
            return;
        }
        let Ok(client) = client else { continue };
        let down = shared
            .down_until
            .lock()
            .unwrap()
            .is_some_and(|until| Instant::now() < until);
        if down {
            shared.broken.fetch_add(1, Ordering::Relaxed);
            drop(client);
            continue;
        }
        if let Err(e) = forward(client, shared) {
            eprintln!("proxy: cannot forward a connection: {e}");
        }
    }
}

/// Pipes `client` to the target both ways on two threads.
fn forward(client: TcpStream, shared: &Arc<Shared>) -> io::Result<()> {
    let upstream = TcpStream::connect(shared.target)?;
    let mut open = shared.open.lock().unwrap();
    open.push(client.try_clone()?);
    open.push(upstream.try_clone()?);
    drop(open);
    let (mut client_in, mut upstream_out) = (client.try_clone()?, upstream.try_clone()?);
    thread::spawn(move || {
        let _ = io::copy(&mut client_in, &mut upstream_out);
        let _ = upstream_out.shutdown(Shutdown::Write);
    });
    let (mut upstream_in, mut client_out) = (upstream, client);
    thread::spawn(move || {
        let _ = io::copy(&mut upstream_in, &mut client_out);
        let _ = client_out.shutdown(Shutdown::Write);
    });
    Ok(())
}
